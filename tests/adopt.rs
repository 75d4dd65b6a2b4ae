//! Bind adoption (`workers.adopt`, docs/adopt.md): unmodified programs
//! that bind their own port serve through hawkey's one listener on every
//! worker, through the preload library built in this repository
//! (`target/<profile>/libhawkey_preload.so`, beside the hawkey binary).
//!
//! The programs are not ours: `python3 -m http.server`, a Node `http` app
//! as any tutorial writes it, a one-line Perl server, and Express, Flask's
//! development server and uvicorn from their registries (the recipes'
//! pins, `tests/recipes/install.sh`: `target/recipes-venv` and
//! `target/recipes-node`) with apps as their docs write them
//! (`tests/fixtures/unmodified/`), all run unchanged.
//! The proofs are in /proc: every worker holds hawkey's listener (the same
//! socket inode) where its own socket was, nothing listens on the port the
//! program asked for, and the connections are accepted by the workers.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// Hang guard for a pool of unmodified programs to have bound and for a
/// request to be answered: far above the second they take.
const GUARD: Duration = Duration::from_secs(60);

/// The socket inode an fd link names (`socket:[123]`).
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The inode of the listener the worker got at fd 3.
fn listener_inode(pid: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/3")).ok()?;
    socket_inode(&link.to_string_lossy())
}

/// How many of `pid`'s fds are the socket `inode`.
fn fds_on(pid: i32, inode: u64) -> usize {
    proc_fds(pid)
        .iter()
        .filter(|(_, link)| socket_inode(link) == Some(inode))
        .count()
}

/// Whether `pid`'s fd 3 (the listener's open file description, shared
/// by every worker) is non-blocking, from /proc/PID/fdinfo.
fn listener_nonblocking(pid: i32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/3")).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
        .unwrap();
    flags & libc::O_NONBLOCK as u32 != 0
}

/// The backlog of the socket listening on 127.0.0.1:`port`, as ss(8)
/// shows it (Send-Q of a listening socket).
fn backlog(port: u16) -> u32 {
    let out = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss");
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    fields
        .get(2)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("ss: {text}"))
}

/// One row of /proc/net/tcp{,6}: local port, remote port, state, inode.
struct TcpRow {
    local_port: u16,
    remote_port: u16,
    listening: bool,
    inode: u64,
}

fn tcp_rows() -> Vec<TcpRow> {
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next().unwrap(), 16).unwrap();
    let mut rows = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            rows.push(TcpRow {
                local_port: port(f[1]),
                remote_port: port(f[2]),
                listening: f[3] == "0A",
                inode: f[9].parse().unwrap(),
            });
        }
    }
    rows
}

/// The inodes of the sockets listening on `port`, any address.
fn listening_on(port: u16) -> BTreeSet<u64> {
    tcp_rows()
        .into_iter()
        .filter(|r| r.listening && r.local_port == port)
        .map(|r| r.inode)
        .collect()
}

/// Waits until every worker in `pids` holds the listener twice: at fd 3
/// and where its own socket was (adopted), and returns the listener's
/// inode. Fails if any worker holds another listener than the first.
fn wait_adopted(hawkey: &Hawkey, pids: &[i32]) -> u64 {
    let inode = listener_inode(pids[0]).expect("the worker has a listener at fd 3");
    for &pid in pids {
        assert_eq!(listener_inode(pid), Some(inode), "worker {pid} fd 3");
        let adopted = std::panic::catch_unwind(|| {
            wait_until(GUARD, "the worker's own socket to be adopted", || {
                (fds_on(pid, inode) >= 2).then_some(())
            })
        });
        assert!(
            adopted.is_ok(),
            "worker {pid} fds {:?}; log:\n{}",
            proc_fds(pid),
            hawkey.log_text()
        );
    }
    inode
}

/// Opens a connection to `port` and returns it with the worker (of
/// `pids`) that accepted it: the one holding the server side's socket.
fn accepted_by(port: u16, pids: &[i32]) -> (TcpStream, i32) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_port = stream.local_addr().unwrap().port();
    let owner = wait_until(GUARD, "a worker to accept the connection", || {
        let server_side = tcp_rows()
            .into_iter()
            .find(|r| r.local_port == port && r.remote_port == client_port && r.inode != 0)?;
        pids.iter()
            .copied()
            .find(|&pid| fds_on(pid, server_side.inode) > 0)
    });
    (stream, owner)
}

/// Sends a GET on `stream` and returns the status code.
fn get_on(mut stream: TcpStream) -> u16 {
    stream.set_read_timeout(Some(GUARD)).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    parse_response(&response).unwrap().0
}

/// The pid a response body holds, plain or as the one chunk of a
/// chunked body (an ASGI app that sends no Content-Length).
fn pid_in(body: &str) -> i32 {
    let chunk = || body.split("\r\n").nth(1)?.parse().ok();
    body.trim()
        .parse()
        .ok()
        .or_else(chunk)
        .unwrap_or_else(|| panic!("not a pid: {body:?}"))
}

/// GETs `/` over new connections until responses came from every pid in
/// `pids` (the body is the pid that answered), at most `tries` times.
fn responses_from_each(port: u16, pids: &[i32], tries: usize) -> BTreeSet<i32> {
    let want: BTreeSet<i32> = pids.iter().copied().collect();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + GUARD;
    for _ in 0..tries {
        let (status, body) = http_get(port, "/").unwrap();
        assert_eq!(status, 200, "{body}");
        let pid = pid_in(&body);
        assert!(want.contains(&pid), "answered by {pid}, not a worker");
        seen.insert(pid);
        if seen == want || Instant::now() > deadline {
            break;
        }
    }
    seen
}

fn exec_yaml(listen: u16, count: usize, command: &str, adopt: &str, extra: &str) -> String {
    format!(
        "listen:\n  - {{name: http, address: '127.0.0.1:{listen}'}}\nworkers:\n  count: {count}\n  app: exec\n  command: {command}\n  adopt: {adopt}\n  stop_timeout: 10s\n{extra}pidfile: null\ncontrol_socket: null\n"
    )
}

#[test]
fn python_http_server_serves_through_hawkeys_listener_on_every_worker() {
    preload_built();
    let dir = TempDir::new("adopt-python");
    let (listen, app) = (free_port(), free_port());
    let config = write_config(
        &dir,
        &exec_yaml(
            listen,
            2,
            &format!("[python3, -m, http.server, '{app}']"),
            &format!("{{http: {app}}}"),
            &format!("  cwd: {}\n", dir.path().display()),
        ),
    );
    let mut hawkey = Hawkey::start(&config);
    let pids = hawkey.wait_workers(2, "python3", GUARD);
    let inode = wait_adopted(&hawkey, &pids);
    assert_eq!(listening_on(listen), BTreeSet::from([inode]));
    assert_eq!(listening_on(app), BTreeSet::new(), "nothing else on {app}");
    // Python's listen(5) left the shared queue as hawkey made it, and its
    // blocking socket made the listener blocking.
    assert_eq!(backlog(listen), 1024);
    assert!(!listener_nonblocking(pids[0]));
    // Connections until both workers accepted one; each then answers.
    let mut answered = BTreeSet::new();
    for _ in 0..200 {
        let (stream, owner) = accepted_by(listen, &pids);
        if answered.insert(owner) {
            assert_eq!(get_on(stream), 200, "worker {owner}");
        }
        if answered.len() == pids.len() {
            break;
        }
    }
    assert_eq!(
        answered,
        pids.iter().copied().collect(),
        "{}",
        hawkey.log_text()
    );
    hawkey.stop_cleanly();
}

#[test]
#[ignore = "needs node (Debian: nodejs)"]
fn an_unmodified_node_app_listening_on_its_port_is_adopted_by_the_wildcard_rule() {
    preload_built();
    let dir = TempDir::new("adopt-node");
    let (listen, app) = (free_port(), free_port());
    // As any tutorial writes it; Node binds `::` (dual-stack).
    write_file(
        &dir,
        "server.js",
        "const http = require('http');\n\
         http.createServer((req, res) => res.end(String(process.pid)))\n  \
         .listen(process.env.PORT || 3000);\n",
    );
    let config = write_config(
        &dir,
        &exec_yaml(
            listen,
            2,
            "[node, server.js]",
            &format!("{{http: '0.0.0.0:{app}'}}"),
            &format!(
                "  cwd: {}\n  env: {{PORT: '{app}'}}\n",
                dir.path().display()
            ),
        ),
    );
    let mut hawkey = Hawkey::start(&config);
    let pids = hawkey.wait_workers(2, "node", GUARD);
    let inode = wait_adopted(&hawkey, &pids);
    assert_eq!(listening_on(app), BTreeSet::new(), "nothing else on {app}");
    assert_eq!(listening_on(listen), BTreeSet::from([inode]));
    // libuv's sockets are non-blocking: so is the shared listener now.
    assert!(listener_nonblocking(pids[0]));
    assert_eq!(backlog(listen), 1024, "Node's listen(511) changed nothing");
    let seen = responses_from_each(listen, &pids, 2000);
    assert_eq!(
        seen,
        pids.iter().copied().collect(),
        "{}",
        hawkey.log_text()
    );
    hawkey.stop_cleanly();
}

#[test]
fn binds_of_other_addresses_ports_and_kinds_are_left_alone() {
    preload_built();
    let dir = TempDir::new("adopt-other");
    let (listen, app, other) = (free_port(), free_port(), free_port());
    let out = dir.join("out");
    // Adopted: 127.0.0.1:APP. Not: 127.0.0.1:OTHER (another port) and a
    // UDP socket on 127.0.0.1:APP (not a stream).
    let script = format!(
        "import socket, time\n\
         def tcp(addr):\n    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n    s.bind(addr); s.listen(8); return s\n\
         a = tcp(('127.0.0.1', {app}))\n\
         b = tcp(('127.0.0.1', {other}))\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', {app}))\n\
         open('{out}.tmp', 'w').write(' '.join(str(s.getsockname()[1]) for s in (a, b, u)))\n\
         import os; os.rename('{out}.tmp', '{out}')\n\
         time.sleep(1000)\n",
        out = out.display()
    );
    let script_path = write_file(&dir, "app.py", &script);
    let config = write_config(
        &dir,
        &exec_yaml(
            listen,
            1,
            &format!("[python3, {}]", script_path.display()),
            &format!("{{http: '127.0.0.1:{app}'}}"),
            "",
        ),
    );
    let mut hawkey = Hawkey::start(&config);
    let ports = wait_until(GUARD, "the app to report its sockets", || {
        std::fs::read_to_string(&out).ok()
    });
    assert_eq!(
        ports,
        format!("{listen} {other} {app}"),
        "{}",
        hawkey.log_text()
    );
    let pid = hawkey.wait_workers(1, "python3", GUARD)[0];
    let inode = listener_inode(pid).unwrap();
    assert_eq!(fds_on(pid, inode), 2, "fd 3 and the adopted socket");
    let others = listening_on(other);
    assert_eq!(others.len(), 1, "the program's own listener on {other}");
    assert!(!others.contains(&inode));
    assert_eq!(listening_on(app), BTreeSet::new(), "the adopted address");
    hawkey.stop_cleanly();
}

#[test]
fn a_listener_systemd_passes_is_adopted_by_its_name() {
    preload_built();
    let dir = TempDir::new("adopt-activate");
    let (passed, configured, app) = (free_port(), free_port(), free_port());
    // `listen` is used only when systemd passes no socket; the name is
    // systemd's FileDescriptorName=.
    let yaml = format!(
        "listen:\n  - {{name: web, address: '127.0.0.1:{configured}'}}\nworkers:\n  count: 2\n  app: exec\n  command: [python3, -m, http.server, '{app}']\n  cwd: {}\n  adopt: {{web: {app}}}\npidfile: null\ncontrol_socket: null\n",
        dir.path().display()
    );
    let config = write_config(&dir, &yaml);
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("-l")
        .arg(format!("127.0.0.1:{passed}"))
        .arg("--fdname=web")
        .arg(BIN)
        .args(["run", "-c"])
        .arg(&config);
    plain_env(&mut cmd);
    let mut hawkey = Hawkey::spawn(cmd);
    // systemd-socket-activate runs hawkey at the first connection.
    hawkey.wait_log("Listening on", GUARD);
    let first = TcpStream::connect(("127.0.0.1", passed)).unwrap();
    let pids = hawkey.wait_workers(2, "python3", GUARD);
    let inode = wait_adopted(&hawkey, &pids);
    assert_eq!(listening_on(passed), BTreeSet::from([inode]));
    assert_eq!(listening_on(configured), BTreeSet::new());
    assert_eq!(listening_on(app), BTreeSet::new());
    assert_eq!(get_on(first), 200, "{}", hawkey.log_text());
    let (stream, owner) = accepted_by(passed, &pids);
    assert_eq!(get_on(stream), 200, "worker {owner}");
    hawkey.stop_cleanly();
}

#[test]
fn sixty_four_workers_each_adopt_the_one_listener() {
    preload_built();
    let dir = TempDir::new("adopt-64");
    let (listen, app) = (free_port(), free_port());
    // A one-line Perl server: answers its pid and closes.
    let server = format!(
        "use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => {app}, Listen => 5, ReuseAddr => 1) or die \"bind: $!\"; while (my $c = $s->accept) {{ while (<$c>) {{ last if /^\\r?$/ }} print $c \"HTTP/1.0 200 OK\\r\\n\\r\\n$$\"; close $c }}"
    );
    let script = write_file(&dir, "server.pl", &server);
    let config = write_config(
        &dir,
        &exec_yaml(
            listen,
            64,
            &format!("[perl, {}]", script.display()),
            &format!("{{http: {app}}}"),
            "",
        ),
    );
    let mut hawkey = Hawkey::start(&config);
    let pids = hawkey.wait_workers(64, "perl", GUARD);
    let inode = wait_adopted(&hawkey, &pids);
    assert_eq!(listening_on(listen), BTreeSet::from([inode]));
    assert_eq!(listening_on(app), BTreeSet::new(), "nothing else on {app}");
    let want: BTreeSet<i32> = pids.iter().copied().collect();
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        let (status, body) = http_get(listen, "/").unwrap();
        assert_eq!(status, 200);
        let pid: i32 = body.trim().parse().unwrap();
        assert!(want.contains(&pid), "answered by {pid}, not a worker");
        seen.insert(pid);
    }
    assert!(seen.len() >= 2, "200 requests all went to {seen:?}");
    assert_eq!(hawkey.count_log("exited"), 0, "{}", hawkey.log_text());
    hawkey.stop_cleanly();
}

/// A copy of the hawkey binary in a directory of its own: it finds the
/// library only where this test puts it.
fn lonely_hawkey(dir: &TempDir) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let copy = bin.join("hawkey");
    std::fs::copy(BIN, &copy).unwrap();
    copy
}

#[test]
fn without_the_library_adopt_is_refused_in_one_line_with_exit_78() {
    assert!(
        !Path::new("/usr/lib/x86_64-linux-gnu/hawkey/libhawkey_preload.so").exists(),
        "this test needs the .deb's library not installed"
    );
    let dir = TempDir::new("adopt-missing");
    let hawkey = lonely_hawkey(&dir);
    let yaml = exec_yaml(free_port(), 1, "[sleep, '1000']", "{http: 3000}", "");
    let config = write_config(&dir, &yaml);
    for verb in ["check", "run"] {
        let mut cmd = Command::new(&hawkey);
        cmd.args([verb, "-c"]).arg(&config);
        plain_env(&mut cmd);
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{verb}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains("preload library"))
            .unwrap_or_else(|| panic!("{verb}: {stderr}"));
        assert!(
            line.contains("workers.adopt")
                && line.contains("libhawkey_preload.so, which is not installed")
                && line.contains(&format!(
                    "{}/bin/libhawkey_preload.so",
                    dir.path().display()
                )),
            "{verb}: {line}"
        );
    }
}

#[test]
fn the_library_is_found_in_the_multiarch_directory_beside_the_binary() {
    let library = preload_built();
    let dir = TempDir::new("adopt-lib-dir");
    let hawkey = lonely_hawkey(&dir);
    let multiarch = format!("{}-linux-gnu", std::env::consts::ARCH);
    let lib = dir.join("lib").join(&multiarch).join("hawkey");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::copy(&library, lib.join("libhawkey_preload.so")).unwrap();
    let yaml = exec_yaml(free_port(), 1, "[sleep, '1000']", "{http: 3000}", "");
    let config = write_config(&dir, &yaml);
    let mut cmd = Command::new(&hawkey);
    cmd.args(["check", "-c"]).arg(&config);
    plain_env(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The effective configuration names the library it found.
    let found = std::fs::canonicalize(lib.join("libhawkey_preload.so")).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "# workers.adopt: through the preload library {}\n",
            found.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("  adopt:\n    http: \"*:3000\"\n"),
        "{stdout}"
    );
}

#[test]
fn check_refuses_adopt_for_a_static_binary_and_warns_without_it() {
    preload_built();
    let dir = TempDir::new("adopt-static");
    let source = write_file(&dir, "s.c", "int main(void) { return 0; }\n");
    let program = dir.join("static-app");
    let built = Command::new("gcc")
        .args(["-static", "-o"])
        .arg(&program)
        .arg(&source)
        .status()
        .expect("gcc, to build a static program");
    assert!(built.success());
    // A script whose interpreter, found through env(1), is the static one.
    let script = write_file(
        &dir,
        "app.sh",
        &format!("#!/usr/bin/env {}\n", program.display()),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for command in [program.display().to_string(), script.display().to_string()] {
        let check = |adopt: &str| {
            let yaml =
                format!("workers:\n  app: exec\n  command: ['{command}']\n{adopt}pidfile: null\n");
            let config = write_config(&dir, &yaml);
            let out = hawkey_command(&["check", "-q", "-c"])
                .arg(&config)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (code, stderr) = check("  adopt: {http: 3000}\n");
        assert_eq!(code, Some(78), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "hawkey: error: {}: workers.adopt: '{}' (workers.command) is statically linked",
                dir.join("hawkey.yaml").display(),
                program.display()
            )),
            "{stderr}"
        );
        let (code, stderr) = check("");
        assert_eq!(code, Some(0), "{stderr}");
        assert!(
            stderr.starts_with("hawkey: warning: workers.command[0]: '")
                && stderr.contains("is statically linked"),
            "{stderr}"
        );
    }
}

#[test]
fn exec_workers_get_the_library_before_their_own_preload_and_builtin_ones_nothing() {
    let library = preload_built();
    let dir = TempDir::new("adopt-env");
    let (listen, app) = (free_port(), free_port());
    let config = write_config(
        &dir,
        &exec_yaml(
            listen,
            1,
            "[sleep, '1000']",
            &format!("{{http: {app}}}"),
            "  ready: started\n  env: {LD_PRELOAD: libc.so.6, NODE_OPTIONS: --no-warnings}\n",
        ),
    );
    let mut hawkey = Hawkey::start(&config);
    let pid = hawkey.wait_workers(1, "sleep", GUARD)[0];
    let library = std::fs::canonicalize(library).unwrap();
    assert_eq!(
        env_of(pid, "LD_PRELOAD"),
        Some(format!("{}:libc.so.6", library.display()))
    );
    assert_eq!(env_of(pid, "HAWKEY_ADOPT"), Some(format!("3=*:{app}")));
    assert_eq!(
        env_of(pid, "HAWKEY_READY_PROBE"),
        None,
        "not under ready: started"
    );
    let node_options = env_of(pid, "NODE_OPTIONS").unwrap();
    assert!(
        node_options.starts_with("--require /")
            && node_options.ends_with("/hawkey-drain.cjs --no-warnings"),
        "{node_options}"
    );
    hawkey.stop_cleanly();

    let builtin = write_config(&dir, &builtin_yaml(&dir, free_port(), 1, ""));
    let (mut hawkey, _notify, _) = start_ready(&dir, &builtin);
    let pid = hawkey.workers()[0];
    for name in [
        "LD_PRELOAD",
        "HAWKEY_ADOPT",
        "HAWKEY_READY_PROBE",
        "NODE_OPTIONS",
    ] {
        assert_eq!(env_of(pid, name), None, "builtin worker: {name}");
    }
    hawkey.stop_cleanly();
}

/// Runs `child` (Python code) with the preload library loaded, a listener
/// at fd 3, `NOTIFY_SOCKET` pointing at a socket of the test's, and
/// `HAWKEY_READY_PROBE` naming the listener's inode when `probe`; returns
/// the datagrams it sent within a bounded wait after it exited.
fn reports_of(child: &str, probe: bool) -> Vec<String> {
    let library = preload_built();
    let dir = TempDir::new("adopt-report");
    let notify = NotifySocket::new(&dir);
    // A launcher without the library: it makes the listener, then execs
    // the child with the library loaded.
    let launcher = format!(
        "import os, socket, sys\n\
         s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)\n\
         if s.fileno() != 3: os.dup2(s.fileno(), 3)\n\
         os.set_inheritable(3, True)\n\
         env = dict(os.environ, LD_PRELOAD='{lib}', NOTIFY_SOCKET='{notify}')\n\
         if {probe}: env['HAWKEY_READY_PROBE'] = str(os.fstat(3).st_ino)\n\
         os.execvpe('python3', ['python3', '-c', sys.argv[1]], env)\n",
        lib = library.display(),
        notify = notify.path.display(),
        probe = if probe { "True" } else { "False" },
    );
    let status = Command::new("python3")
        .args(["-c", &launcher, child])
        .env_remove("HAWKEY_READY_PROBE")
        .status()
        .unwrap();
    assert!(status.success());
    let mut got = Vec::new();
    while let Some(m) = notify.recv(Duration::from_millis(500)) {
        got.push(m);
        assert!(got.len() < 100, "{got:?}");
    }
    got
}

#[test]
fn the_library_reports_accepting_once_per_process_and_only_for_probed_listeners() {
    // Two waits on the listener, then a forked child's: one report each.
    let waits = "import os, select, socket\n\
                 s = socket.socket(fileno=3)\n\
                 select.select([s], [], [], 0); p = select.poll(); p.register(s, select.POLLIN); p.poll(0)\n\
                 pid = os.fork()\n\
                 if pid == 0:\n    select.select([s], [], [], 0); os._exit(0)\n\
                 os.waitpid(pid, 0)\n";
    assert_eq!(reports_of(waits, true), ["HAWKEY_ACCEPTING=1"; 2]);
    // No probe: nothing, whatever the program waits on.
    assert_eq!(reports_of(waits, false), Vec::<String>::new());
    // Waiting on other fds (a socket pair, stdin) is not accepting.
    let other = "import select, socket\n\
                 a, b = socket.socketpair()\n\
                 select.select([a, 0], [], [], 0); e = select.epoll(); e.register(a.fileno(), select.EPOLLIN)\n";
    assert_eq!(reports_of(other, true), Vec::<String>::new());
    // epoll_ctl(ADD) and accept4 of the listener are.
    let epoll = "import select, socket\n\
                 s = socket.socket(fileno=3); e = select.epoll(); e.register(s.fileno(), select.EPOLLIN)\n";
    assert_eq!(reports_of(epoll, true), ["HAWKEY_ACCEPTING=1"]);
    let accept = "import socket\n\
                  s = socket.socket(fileno=3); s.setblocking(False)\n\
                  try:\n    s.accept()\nexcept BlockingIOError:\n    pass\n";
    assert_eq!(reports_of(accept, true), ["HAWKEY_ACCEPTING=1"]);
}

#[test]
fn check_warns_that_a_setuid_program_may_ignore_the_library() {
    preload_built();
    let dir = TempDir::new("adopt-setuid");
    let program = dir.join("setuid-sleep");
    std::fs::copy("/bin/sleep", &program).unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    let yaml = format!(
        "workers:\n  app: exec\n  command: ['{}', '100']\n  adopt: {{http: 3000}}\npidfile: null\n",
        program.display()
    );
    let config = write_config(&dir, &yaml);
    let out = hawkey_command(&["check", "-q", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "hawkey: warning: workers.command[0]: '{}' is setuid or setgid",
            program.display()
        )),
        "{stderr}"
    );
}

/// A program that adopts its listener, `shutdown(SHUT_RDWR)`s it, and
/// exits: the shutdown is the library's no-op, so the other worker (and
/// the one that replaces the leaver) keep accepting on the shared socket;
/// a shutdown of any other socket still happens.
#[test]
fn a_worker_that_shuts_its_adopted_listener_down_leaves_it_serving_for_the_others() {
    preload_built();
    let dir = TempDir::new("adopt-shutdown");
    let (listen, app) = (free_port(), free_port());
    let (mark, out) = (dir.join("mark"), dir.join("out"));
    // The first worker to create `mark` shuts down and exits; the others
    // (the second one and the first one's replacement) serve their pid.
    let script = format!(
        "import http.server, os, socket\n\
         class H(http.server.BaseHTTPRequestHandler):\n    \
             def do_GET(self):\n        \
                 body = str(os.getpid()).encode()\n        \
                 self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n        \
                 self.wfile.write(body)\n\
         srv = http.server.HTTPServer(('', {app}), H)\n\
         try:\n    os.close(os.open('{mark}', os.O_CREAT | os.O_EXCL))\n\
         except FileExistsError:\n    srv.serve_forever()\n\
         adopted = os.fstat(srv.fileno()).st_ino == os.fstat(3).st_ino\n\
         srv.socket.shutdown(socket.SHUT_RDWR)\n\
         a, b = socket.socketpair(); a.shutdown(socket.SHUT_WR); eof = b.recv(1) == b''\n\
         open('{out}.tmp', 'w').write(f'{{os.getpid()}} {{adopted}} {{eof}}')\n\
         os.rename('{out}.tmp', '{out}')\n",
        mark = mark.display(),
        out = out.display()
    );
    let script = write_file(&dir, "app.py", &script);
    let config = write_config(
        &dir,
        &exec_yaml(
            listen,
            2,
            &format!("[python3, {}]", script.display()),
            &format!("{{http: {app}}}"),
            "  ready: started\n",
        ),
    );
    let mut hawkey = Hawkey::start(&config);
    let report = wait_until(GUARD, "a worker to shut its listener down", || {
        std::fs::read_to_string(&out).ok()
    });
    let fields: Vec<&str> = report.split(' ').collect();
    let leaver: i32 = fields[0].parse().unwrap();
    assert_eq!(
        fields[1], "True",
        "the shut-down fd was the adopted listener"
    );
    // Any other socket's shutdown is the real one: the peer reads EOF.
    assert_eq!(fields[2], "True", "a socket pair's shutdown(SHUT_WR)");
    wait_until(GUARD, "the worker that shut down to be gone", || {
        (!hawkey.workers().contains(&leaver)).then_some(())
    });
    let pids = hawkey.wait_workers(2, "python3", GUARD);
    assert!(!pids.contains(&leaver));
    let inode = wait_adopted(&hawkey, &pids);
    assert_eq!(
        listening_on(listen),
        BTreeSet::from([inode]),
        "the shared listener still listens"
    );
    assert_eq!(listening_on(app), BTreeSet::new(), "nothing else on {app}");
    let seen = responses_from_each(listen, &pids, 2000);
    assert_eq!(
        seen,
        pids.iter().copied().collect(),
        "{}",
        hawkey.log_text()
    );
    hawkey.stop_cleanly();
}

/// A path under `<repo>/target` that `tests/recipes/install.sh` (the
/// recipes' pinned PyPI and npm packages) makes; missing is a failure
/// naming that command, not a skip.
fn installed(rel: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(rel);
    assert!(
        path.exists(),
        "{} is missing: install the pinned PyPI and npm packages with \
         `tests/recipes/install.sh` (into target/recipes-venv and target/recipes-node)",
        path.display()
    );
    path
}

/// Copies the app of `tests/fixtures/unmodified/<name>/` into `dir`.
fn unmodified_app(dir: &TempDir, name: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/unmodified")
        .join(name);
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(&entry.file_name().to_string_lossy())).unwrap();
    }
}

/// The proof for an unmodified third-party app: two workers of `command`
/// (running `comm`), which binds `app` itself, under `adopt: {http: APP}`
/// and `ready: started`: both hold hawkey's listener where their own
/// socket was, nothing listens on `app` (/proc/net/tcp and tcp6), both
/// pids answer through hawkey's listener, and hawkey stops cleanly.
fn prove_unmodified(tag: &str, fixture: &str, comm: &str, command: &str, env: &str, app: u16) {
    preload_built();
    let dir = TempDir::new(tag);
    unmodified_app(&dir, fixture);
    let listen = free_port();
    let config = write_config(
        &dir,
        &exec_yaml(
            listen,
            2,
            command,
            &format!("{{http: {app}}}"),
            &format!(
                "  ready: started\n  cwd: {}\n  env: {{PYTHONDONTWRITEBYTECODE: '1'{env}}}\n",
                dir.path().display()
            ),
        ),
    );
    let mut hawkey = Hawkey::start(&config);
    let pids = hawkey.wait_workers(2, comm, GUARD);
    let inode = wait_adopted(&hawkey, &pids);
    assert_eq!(listening_on(listen), BTreeSet::from([inode]));
    assert_eq!(listening_on(app), BTreeSet::new(), "nothing else on {app}");
    let seen = responses_from_each(listen, &pids, 2000);
    assert_eq!(
        seen,
        pids.iter().copied().collect(),
        "{}",
        hawkey.log_text()
    );
    assert_eq!(hawkey.count_log("exited"), 0, "{}", hawkey.log_text());
    hawkey.stop_cleanly();
}

#[test]
#[ignore = "needs the recipes' PyPI and npm packages (tests/recipes/install.sh)"]
fn an_unmodified_express_app_listening_on_process_env_port_serves_on_every_worker() {
    let modules = installed("recipes-node/node_modules/express");
    let modules = modules.parent().unwrap().display().to_string();
    let app = free_port();
    prove_unmodified(
        "adopt-express",
        "express",
        "node",
        "[node, app.js]",
        &format!(", NODE_PATH: '{modules}', PORT: '{app}'"),
        app,
    );
}

#[test]
#[ignore = "needs the recipes' PyPI and npm packages (tests/recipes/install.sh)"]
fn an_unmodified_flask_app_on_its_development_server_serves_on_every_worker() {
    let flask = installed("recipes-venv/bin/flask");
    let app = free_port();
    prove_unmodified(
        "adopt-flask",
        "flask",
        "flask",
        &format!("['{}', --app, app, run, --port, '{app}']", flask.display()),
        "",
        app,
    );
}

#[test]
#[ignore = "needs the recipes' PyPI and npm packages (tests/recipes/install.sh)"]
fn uvicorn_with_its_own_port_serves_on_every_worker() {
    let uvicorn = installed("recipes-venv/bin/uvicorn");
    let app = free_port();
    prove_unmodified(
        "adopt-uvicorn",
        "uvicorn",
        "uvicorn",
        &format!("['{}', 'main:app', --port, '{app}']", uvicorn.display()),
        "",
        app,
    );
}
