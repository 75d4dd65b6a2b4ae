# Puma's settings for this recipe (puma -C puma.rb).
environment 'production'
threads 4, 4
# Take the listener from LISTEN_FDS only: without this Puma also binds its
# default tcp://0.0.0.0:9292 beside it.
bind_to_activated_sockets 'only'
# No reactor: each thread reads its client's request itself. With the
# reactor (the default), a connection Puma accepted but whose request has
# not arrived yet is closed at a graceful stop, and its client fails.
queue_requests false
