# A Rack app as Puma runs it; answers with its pid (the harness counts the
# workers by it).
run ->(env) { [200, { 'content-type' => 'text/plain' }, ["puma worker #{Process.pid}\n"]] }
