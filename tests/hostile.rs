//! Hostile neighbours (issue #11, part 5 and its tests in part 6): what
//! another local user can put in hawkey's way (a process listening where
//! the control socket should be, a lock held on the pidfile, a directory
//! anyone may write), and bad inputs an operator can hand it by accident
//! (an emptied config, a FIFO as the config), on the real binary. Each test
//! is named as the invariant it holds; an attack that needs another uid
//! runs as uid 65534 (`nobody`), so its test needs root and fails, loudly,
//! without it.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// A hang guard for one CLI command, far above what any takes.
const CLI_GUARD: Duration = Duration::from_secs(20);

/// `dir/name`, created mode 1777 like /tmp: anyone may create entries.
fn shared_dir(dir: &TempDir, name: &str) -> PathBuf {
    let shared = dir.join(name);
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    shared
}

/// `program ARGS` as uid/gid 65534 with no supplementary groups.
fn as_nobody(program: &str) -> Command {
    as_uid(65534, program)
}

/// A process of another uid, killed on drop.
struct Intruder(Child);

impl Drop for Intruder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` to completion within [`CLI_GUARD`] (killed and failed
/// beyond it): (exit code, stdout, stderr).
fn bounded(mut cmd: Command) -> (i32, String, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(CLI_GUARD) {
        Ok(out) => {
            let out = out.unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            // SAFETY: kill(2) on our own child's pid; it has not been
            // reaped (wait_with_output has not returned).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{cmd:?} did not finish within {CLI_GUARD:?}");
        }
    }
}

/// A server, run as nobody, listening at `socket` and answering every
/// connection as a master that just stopped would; it appends what each
/// client sent to `log`.
fn impostor(socket: &Path, log: &Path) -> Intruder {
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(16)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    got = b''
    try:
        c.sendall(b'{"response":"ok","message":"stopped"}\n')
        while True:
            chunk = c.recv(4096)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    c.close()
    with open(sys.argv[2], 'a') as f:
        f.write('connection sent %d bytes\n' % len(got))
"#;
    let child = as_nobody("/usr/bin/python3")
        .args(["-c", script])
        .arg(socket)
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let intruder = Intruder(child);
    wait_until(Duration::from_secs(10), "the impostor to listen", || {
        std::os::unix::net::UnixStream::connect(socket)
            .ok()
            .map(|_| ())
    });
    // The probe above was one connection; wait for its line.
    wait_until(Duration::from_secs(10), "the impostor's first line", || {
        std::fs::read_to_string(log)
            .ok()
            .filter(|l| l.lines().count() == 1)
    });
    intruder
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn an_impostor_control_socket_is_not_believed() {
    require_root("an_impostor_control_socket_is_not_believed (runs the impostor as uid 65534)");
    let dir = TempDir::new("hostile-impostor");
    let shared = shared_dir(&dir, "shared");
    let socket = shared.join("hawkey.sock");
    let log = shared.join("impostor.log");
    // With no pidfile, and with one (in a private directory) naming a pid
    // that is not the impostor's, owned by root.
    let pidfile = dir.join("hawkey.pid");
    std::fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
    let configs = [
        ("no pidfile", "pidfile: null\n".to_string()),
        ("a pidfile", format!("pidfile: {}\n", pidfile.display())),
    ];
    let _intruder = impostor(&socket, &log);
    let mut connections = 1;
    for (what, pidfile_key) in configs {
        let config = write_config(
            &dir,
            &format!("{pidfile_key}control_socket: {}\n", socket.display()),
        );
        for command in ["stop", "status"] {
            let (code, out, err) = bounded(cli_command(&[command], &config));
            assert_ne!(
                code, 0,
                "{command} with {what}: believed the impostor: {out}{err}"
            );
            assert_eq!(out, "", "{command} with {what}");
            assert!(!err.contains("stopped"), "{command} with {what}: {err}");
            assert!(
                err.starts_with(&format!(
                    "hawkey: error: refusing to believe the process listening on '{}' (pid ",
                    socket.display()
                )) && err.contains(", uid 65534): ")
                    && err.ends_with("; it is not this hawkey's master\n"),
                "{command} with {what}: {err}"
            );
            // It was told nothing: the request is sent only to a master
            // the CLI believes.
            connections += 1;
            let lines = wait_until(Duration::from_secs(10), "the impostor's line", || {
                std::fs::read_to_string(&log)
                    .ok()
                    .filter(|l| l.lines().count() == connections)
            });
            assert_eq!(
                lines.lines().last(),
                Some("connection sent 0 bytes"),
                "{command} with {what}"
            );
        }
    }
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn a_pidfile_directory_others_can_write_is_refused_before_a_squatter_can_hold_the_lock() {
    require_root(
        "a_pidfile_directory_others_can_write_is_refused_before_a_squatter_can_hold_the_lock (runs the squatter as uid 65534)",
    );
    let dir = TempDir::new("hostile-squatter");
    let shared = shared_dir(&dir, "shared");
    let pidfile = shared.join("hawkey.pid");
    let held = shared.join("held");
    // nobody creates the pidfile first, writes a pid of its choosing and
    // holds the lock: every start used to fail as "another hawkey (pid 1)".
    let script = "import fcntl, os, sys, time\n\
                  f = open(sys.argv[1], 'w')\n\
                  fcntl.flock(f, fcntl.LOCK_EX)\n\
                  f.write('1\\n'); f.flush()\n\
                  open(sys.argv[2], 'w').close()\n\
                  time.sleep(1000)\n";
    let _squatter = Intruder(
        as_nobody("/usr/bin/python3")
            .args(["-c", script])
            .arg(&pidfile)
            .arg(&held)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(
        Duration::from_secs(10),
        "the squatter to hold the lock",
        || held.exists().then_some(()),
    );
    let port = free_port();
    let config = write_config(
        &dir,
        &format!(
            "listen:\n  - {{name: web, address: '127.0.0.1:{port}'}}\nworkers:\n  count: 1\n  app: exec\n  ready: started\n  command: [sleep, '1000']\npidfile: {}\ncontrol_socket: {}\n",
            pidfile.display(),
            dir.join("hawkey.sock").display()
        ),
    );
    let mut hawkey = Hawkey::start(&config);
    let status = hawkey.wait_exit(STOP_GUARD);
    let log = hawkey.log_text();
    assert_eq!(status.code(), Some(73), "{log}");
    assert!(
        log.contains(&format!(
            "refusing pidfile directory '{}': it is writable by other users (mode 1777); make it writable by its owner only",
            shared.display()
        )),
        "{log}"
    );
    assert!(!log.contains("another hawkey"), "{log}");
    assert!(!log.contains("listening on"), "{log}");
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

#[test]
fn a_control_socket_directory_others_can_write_is_refused_before_anything_starts() {
    let dir = TempDir::new("hostile-socket-dir");
    let shared = shared_dir(&dir, "shared");
    let pidfile = dir.join("hawkey.pid");
    let port = free_port();
    let config = write_config(
        &dir,
        &format!(
            "listen:\n  - {{name: web, address: '127.0.0.1:{port}'}}\nworkers:\n  count: 1\n  app: exec\n  ready: started\n  command: [sleep, '1000']\npidfile: {}\ncontrol_socket: {}\n",
            pidfile.display(),
            shared.join("hawkey.sock").display()
        ),
    );
    let mut hawkey = Hawkey::start(&config);
    let status = hawkey.wait_exit(STOP_GUARD);
    let log = hawkey.log_text();
    assert_eq!(status.code(), Some(73), "{log}");
    assert!(
        log.contains(&format!(
            "refusing control socket directory '{}': it is writable by other users (mode 1777); make it writable by its owner only",
            shared.display()
        )),
        "{log}"
    );
    assert!(!pidfile.exists(), "{log}");
    assert!(entries(&shared).is_empty());
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

/// A builtin pool of two on `port` whose pidfile and control socket are in
/// the runtime directory `dir` (no `pidfile` key), as under systemd's
/// `RuntimeDirectory=`: an emptied file still leads the CLI to the master.
fn runtime_dir_pool(dir: &TempDir, port: u16) -> PathBuf {
    write_config(
        dir,
        &format!(
            "listen:\n  - {{name: http, address: '127.0.0.1:{port}'}}\nworkers:\n  count: 2\n  stop_timeout: 10s\n"
        ),
    )
}

fn in_runtime_dir(dir: &TempDir, mut cmd: Command) -> Command {
    cmd.env("RUNTIME_DIRECTORY", dir.path());
    cmd
}

/// The generation `hawkey status --json` reports; `config` is a valid
/// file naming the same runtime directory.
fn generation(dir: &TempDir, config: &Path) -> u64 {
    let (code, out, err) = bounded(in_runtime_dir(
        dir,
        cli_command(&["status", "--json"], config),
    ));
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    json["generation"].as_u64().unwrap()
}

#[test]
fn an_empty_config_on_reload_is_refused_and_the_running_config_keeps_serving() {
    // Was: the empty file reloaded as "every default", replacing the app
    // with the built-in demo, and `reload --wait` exited 0.
    let dir = TempDir::new("hostile-empty-reload");
    let port = free_port();
    let config = runtime_dir_pool(&dir, port);
    let probe = write_file(
        &dir,
        "probe.yaml",
        &std::fs::read_to_string(&config).unwrap(),
    );
    let (mut hawkey, _notify, _) = start_ready_with(&dir, in_runtime_dir(&dir, command(&config)));
    assert_eq!(http_get(port, "/").unwrap().0, 200);

    for text in ["", "# emptied by accident\n"] {
        std::fs::write(&config, text).unwrap();
        let (code, out, err) = bounded(in_runtime_dir(
            &dir,
            cli_command(&["reload", "--wait"], &config),
        ));
        assert_eq!(code, 78, "{text:?}: {out}{err}");
        let at = if text.is_empty() { "1:1" } else { "2:1" };
        assert_eq!(
            err,
            format!(
                "{}:{at}: the file holds no settings (write {{}} for every default)\n",
                config.display()
            )
        );
        assert_eq!(generation(&dir, &probe), 1);
        assert_eq!(http_get(port, "/").unwrap().0, 200);
    }
    // SIGHUP reads it the same way.
    hawkey.signal(libc::SIGHUP);
    hawkey.wait_log("the file holds no settings", READY_GUARD);
    assert_eq!(generation(&dir, &probe), 1);
    assert_eq!(http_get(port, "/").unwrap().0, 200);
    hawkey.stop_cleanly();
}

#[test]
fn a_fifo_config_on_reload_is_refused_at_once_and_the_master_still_stops() {
    // Was: SIGHUP made the master block in open(2) on the FIFO for good: no
    // reaping, no respawn, SIGTERM not acted on.
    let dir = TempDir::new("hostile-fifo-reload");
    let port = free_port();
    let config = runtime_dir_pool(&dir, port);
    let probe = write_file(
        &dir,
        "probe.yaml",
        &std::fs::read_to_string(&config).unwrap(),
    );
    let (mut hawkey, _notify, _) = start_ready_with(&dir, in_runtime_dir(&dir, command(&config)));
    std::fs::remove_file(&config).unwrap();
    nix::unistd::mkfifo(&config, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

    hawkey.signal(libc::SIGHUP);
    hawkey.wait_log(
        &format!(
            "failed to read config '{}': is a FIFO, not a regular file",
            config.display()
        ),
        READY_GUARD,
    );
    assert_eq!(http_get(port, "/").unwrap().0, 200);
    assert_eq!(generation(&dir, &probe), 1);
    hawkey.stop_cleanly();
}

#[test]
fn a_workers_status_line_reaches_the_operators_terminal_with_escapes_defused() {
    // A worker's STATUS= text went to `hawkey status` raw: an escape
    // sequence in it could retitle the terminal, clear it, or fake lines.
    let dir = TempDir::new("hostile-status-escapes");
    let script = dir.join("worker.py");
    std::fs::write(
        &script,
        "import os, socket, time\n\
         a = os.environ['NOTIFY_SOCKET']\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.connect('\\0' + a[1:] if a[0] == '@' else a)\n\
         s.send(b'READY=1\\nSTATUS=ok \\x1b]0;pwned\\x07\\x1b[2J\\rfake \\xc2\\x9b31m')\n\
         time.sleep(1000)\n",
    )
    .unwrap();
    let config = write_config(
        &dir,
        &format!(
            "listen:\n  - {{name: web, address: '127.0.0.1:{}'}}\nworkers:\n  count: 1\n  app: exec\n  ready: notify\n  command: [python3, '{}']\npidfile: {}\n",
            free_port(),
            script.display(),
            dir.join("hawkey.pid").display()
        ),
    );
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let out = wait_until(READY_GUARD, "the worker's status line", || {
        let (code, out, _) = bounded(cli_command(&["status"], &config));
        (code == 0 && out.contains("worker status:")).then_some(out)
    });
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    assert!(
        out.contains("  0  ok \\x1b]0;pwned\\x07\\x1b[2J\\rfake \\u{9b}31m\n"),
        "{out:?}"
    );
    hawkey.stop_cleanly();
}
