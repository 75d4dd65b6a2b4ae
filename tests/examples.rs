//! The real-application examples in `examples/` (Node.js and Python apps
//! exec'd by hawkey, `ready: notify`), each run under the real binary with
//! its own `hawkey.yaml`, rewritten only where a test must: a free port,
//! two workers, the example's directory as `cwd`, the pidfile in a temp
//! dir. The Rust example (`examples/hello.rs`) runs in `tests/library.rs`
//! and, under keep-alive clients through reloads, in `tests/keepalive.rs`.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

const LIMIT: Duration = Duration::from_secs(120);
const RELOADS: u64 = 5;

fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// `text` with `from` (which must occur exactly once) replaced by `to`:
/// an example whose config changed shape fails here, not obscurely later.
fn replace_once(text: &str, from: &str, to: &str, file: &Path) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{} must contain {from:?} exactly once",
        file.display()
    );
    text.replacen(from, to, 1)
}

/// The example's `hawkey.yaml`, made runnable here.
fn example_config(name: &str, dir: &TempDir, port: u16) -> PathBuf {
    let file = example_dir(name).join("hawkey.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    let yaml = replace_once(
        &yaml,
        "address: \"127.0.0.1:8080\"",
        &format!("address: \"127.0.0.1:{port}\""),
        &file,
    );
    let yaml = replace_once(&yaml, "count: auto", "count: 2", &file);
    let yaml = replace_once(
        &yaml,
        "cwd: /srv/app",
        &format!("cwd: {}", example_dir(name).display()),
        &file,
    );
    assert!(
        !yaml.lines().any(|l| l.starts_with("pidfile:")),
        "{} sets a pidfile",
        file.display()
    );
    let yaml = format!("{yaml}pidfile: {}\n", dir.join("hawkey.pid").display());
    let config = write_config(dir, &yaml);
    let (code, out, err) = hawkey_cli(&["check", "--quiet"], &config);
    assert_eq!(code, 0, "{}: {out}{err}", file.display());
    config
}

/// The sockets the processes `pids` hold open (`socket:[inode]`).
fn sockets_of(pids: &[i32]) -> BTreeSet<String> {
    pids.iter()
        .flat_map(|pid| proc_fds(*pid))
        .map(|(_, target)| target)
        .filter(|target| target.starts_with("socket:"))
        .collect()
}

/// Each worker's own `STATUS=` line, as `hawkey status --json` shows it.
fn worker_statuses(config: &Path) -> Vec<String> {
    let (code, out, err) = hawkey_cli(&["status", "--json"], config);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    report["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["status"].as_str().unwrap_or("").to_string())
        .collect()
}

/// GET `path` on a keep-alive connection: the response (read by its
/// content-length), leaving the connection open.
fn keep_alive_get(stream: &mut TcpStream, path: &str) -> (u16, String) {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    let (status, _) = parse_response(&head).unwrap();
    (status, String::from_utf8(body).unwrap())
}

/// The whole life of an example app under hawkey: start, readiness through
/// the workers' own notify, both workers serving, rolling reloads under
/// load, and a graceful stop with a slow request in flight and an idle
/// keep-alive connection open (closed by the app within `idle_close`).
fn run_example(name: &str, program: &str, idle_close: Duration) {
    let dir = TempDir::new(&format!("examples-{name}"));
    let port = free_port();
    let config = example_config(name, &dir, port);

    // READY=1 upstream comes only once both workers sent READY=1 to their
    // own NOTIFY_SOCKET (ready: notify), and their STATUS= lines arrived.
    let (mut hawkey, notify, started) = start_ready(&dir, &config);
    assert!(
        started
            .last()
            .unwrap()
            .contains("STATUS=2/2 workers ready, generation 1"),
        "{started:?}"
    );
    assert_eq!(
        worker_statuses(&config),
        ["accepting on fd 3, generation 1"; 2]
    );
    let workers = hawkey.wait_workers(2, program, Duration::from_secs(10));

    // Both workers answer, each naming itself.
    let mut seen = std::collections::BTreeMap::new();
    wait_until(Duration::from_secs(20), "both workers to answer", || {
        let (status, body) = http_get(port, "/").unwrap();
        assert_eq!(status, 200, "{body}");
        let words: Vec<&str> = body.split_whitespace().collect();
        assert_eq!(
            (words[0], words[1], words[3], words[5], words.len()),
            (name, "worker", "pid", "generation", 7),
            "{body:?}"
        );
        assert!(body.ends_with(" generation 1\n"), "{body:?}");
        seen.insert(words[2].to_string(), words[4].parse::<i32>().unwrap());
        (seen.len() == 2).then_some(())
    });
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["0", "1"]);
    let mut pids: Vec<i32> = seen.values().copied().collect();
    pids.sort();
    assert_eq!(pids, workers);

    let workers = reloads_under_load(name, program, port, &config, &notify, &mut hawkey);
    stop_with_requests_in_flight(name, port, hawkey, workers, idle_close);
}

/// Rolling reloads under load: no request fails, no connection is
/// refused, and the old generation drains away; the new workers' pids.
fn reloads_under_load(
    name: &str,
    program: &str,
    port: u16,
    config: &Path,
    notify: &NotifySocket,
    hawkey: &mut Hawkey,
) -> Vec<i32> {
    // Rolling reloads under load: no request fails, no connection is refused.
    let load = Load::start(port, 4, "/delay/5", LIMIT);
    let t0 = Instant::now();
    let mut each = Vec::new();
    for i in 0..RELOADS {
        let t = Instant::now();
        let (code, out, err) = hawkey_cli(&["reload", "--wait"], config);
        each.push(t.elapsed());
        assert_eq!(code, 0, "reload {i}: {out}{err}");
        assert_eq!(out.trim(), format!("reload finished: generation {}", 2 + i));
        let messages = reload_messages(notify, 2);
        assert!(
            messages[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{messages:?}"
        );
    }
    let took = t0.elapsed();
    let counts = load.finish();
    eprintln!("{name}: {RELOADS} reloads in {took:?} ({each:?}) under load: {counts:?}");
    assert_eq!(counts.connect_errors, 0, "{counts:?}");
    assert_eq!(counts.failed, 0, "{counts:?}");
    assert!(counts.ok > 50, "the load ran: {counts:?}");
    let last = 1 + RELOADS;
    let (_, body) = http_get(port, "/").unwrap();
    assert!(body.ends_with(&format!(" generation {last}\n")), "{body:?}");
    // The replaced workers have drained and exited.
    wait_until(Duration::from_secs(20), "the old generation gone", || {
        (hawkey.workers().len() == 2).then_some(())
    });
    assert_eq!(
        worker_statuses(config),
        vec![format!("accepting on fd 3, generation {last}"); 2]
    );
    hawkey.wait_workers(2, program, Duration::from_secs(10))
}

/// Graceful stop: an idle keep-alive connection is closed by the app, a
/// slow request already accepted completes, every worker drains and exits
/// 0 by itself.
fn stop_with_requests_in_flight(
    name: &str,
    port: u16,
    mut hawkey: Hawkey,
    workers: Vec<i32>,
    idle_close: Duration,
) {
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (status, _) = keep_alive_get(&mut idle, "/");
    assert_eq!(status, 200);
    // Accepted means a worker holds a socket it did not hold before (no
    // other connection is being opened now).
    let before = sockets_of(&workers);
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        slow,
        "GET /delay/2000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "the slow request accepted", || {
        (!sockets_of(&workers).is_subset(&before)).then_some(())
    });
    let stopped_at = Instant::now();
    hawkey.signal(libc::SIGTERM);
    idle.set_read_timeout(Some(idle_close + Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    let eof = idle.read_to_end(&mut rest);
    let idle_closed = stopped_at.elapsed();
    assert!(
        eof.is_ok() && rest.is_empty(),
        "the idle connection: {eof:?} {rest:?}"
    );
    // Not a figure but which of two behaviours: closed by the app's drain
    // on SIGTERM (at once), or only by its idle timeout (5 s in both
    // apps), which `idle_close` (3 s) tells apart with a wide margin.
    assert!(
        idle_closed < idle_close,
        "the idle keep-alive connection was closed {idle_closed:?} after SIGTERM"
    );
    let mut response = String::new();
    slow.read_to_string(&mut response).unwrap();
    let (status, body) = parse_response(&response).unwrap();
    assert_eq!(status, 200, "{response}");
    assert!(body.starts_with(&format!("{name} worker ")), "{body:?}");
    let status = hawkey.wait_exit(Duration::from_secs(30));
    let stop_took = stopped_at.elapsed();
    eprintln!(
        "{name}: idle keep-alive closed {idle_closed:?} and stopped {stop_took:?} after SIGTERM"
    );
    assert_eq!(status.code(), Some(0), "{}", hawkey.log_text());
    for pid in workers {
        assert!(!alive(pid), "worker {pid} outlived hawkey");
    }
    // Every worker, replaced or stopped, drained and exited 0 by itself:
    // none needed SIGKILL.
    let spawned = 2 * (1 + RELOADS as usize);
    assert_eq!(
        (
            hawkey.count_log(") exited with status 0"),
            hawkey.count_log(") exited with status"),
            hawkey.count_log("was killed by"),
        ),
        (spawned, spawned, 0),
        "{}",
        hawkey.log_text()
    );
}

/// Node.js must be there: the suite's command installs it, so a machine
/// without it fails here, loudly, rather than skipping the Node example.
fn require_node() {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {
            eprintln!("node {}", String::from_utf8_lossy(&out.stdout).trim());
        }
        other => panic!("`node --version` failed ({other:?}): install Node.js (Debian: nodejs)"),
    }
}

#[test]
#[ignore = "needs node (Debian: nodejs)"]
fn the_node_example_serves_reloads_and_drains_under_hawkey() {
    require_node();
    run_example("node", "node", Duration::from_secs(3));
}

#[test]
fn the_python_example_serves_reloads_and_drains_under_hawkey() {
    run_example("python", "python3", Duration::from_secs(3));
}

#[test]
fn the_example_configs_are_valid_as_shipped_but_for_cwd() {
    let rust = example_dir("rust").join("hawkey.yaml");
    let (code, out, err) = hawkey_cli(&["check", "--quiet"], &rust);
    assert_eq!(code, 0, "{out}{err}");
    // Node and Python assume /srv/app, which must exist to be valid.
    for name in ["node", "python"] {
        let file = example_dir(name).join("hawkey.yaml");
        let (code, out, err) = hawkey_cli(&["check"], &file);
        if Path::new("/srv/app").is_dir() {
            assert_eq!(code, 0, "{out}{err}");
        } else {
            assert_eq!(code, 78, "{out}{err}");
            assert!(err.contains("workers.cwd"), "{err}");
        }
    }
}

#[test]
#[ignore = "needs node (Debian: nodejs)"]
fn the_example_apps_refuse_to_run_on_sockets_not_passed_to_them() {
    require_node();
    // LISTEN_PID of another process: fd 3 is not theirs, whatever it is.
    for (name, program, script) in [
        ("node", "node", "server.js"),
        ("python", "python3", "server.py"),
    ] {
        let out = Command::new(program)
            .arg(script)
            .current_dir(example_dir(name))
            .env("LISTEN_FDS", "1")
            .env("LISTEN_PID", "1")
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(&format!(
                "{script}: no listening socket was passed to this process (LISTEN_FDS=1, LISTEN_PID=1, own pid "
            )) && err.contains("Run it under hawkey"),
            "{name}: {err}"
        );
    }
}
