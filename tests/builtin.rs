//! `app: builtin`: the built-in HTTP app in re-exec'd workers, served by
//! the real binary; readiness and stop reported over a real datagram
//! `NOTIFY_SOCKET`.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use support::*;

fn builtin_config(dir: &TempDir, port: u16, workers: usize) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "listen:\n  - {{name: http, address: '127.0.0.1:{port}'}}\n  - {{name: local, address: 'unix:{}'}}\nworkers:\n  count: {workers}\n  stop_timeout: 10s\npidfile: {}\n",
            dir.join("http.sock").display(),
            dir.join("hawkey.pid").display()
        ),
    )
}

#[test]
fn ready_1_comes_once_every_worker_accepts_with_mainpid_and_status() {
    let dir = TempDir::new("builtin-ready");
    let port = free_port();
    let config = builtin_config(&dir, port, 2);
    let (mut hawkey, notify, messages) = start_ready(&dir, &config);
    let pid = hawkey.pid();
    // Before READY=1 only progress: STATUS lines, and the start timeout
    // extended past ready_timeout (30s + 5s) as workers start, at most
    // once a second: once for two workers started together.
    let extends = messages
        .iter()
        .filter(|m| *m == "EXTEND_TIMEOUT_USEC=35000000\n")
        .count();
    assert_eq!(extends, 1, "{messages:?}");
    for early in &messages[..messages.len() - 1] {
        assert!(
            early.starts_with("EXTEND_TIMEOUT_USEC=")
                || early.starts_with("STATUS=") && early.contains("/2 workers ready"),
            "{early:?}"
        );
    }
    assert_eq!(
        messages.last().unwrap(),
        &format!("READY=1\nMAINPID={pid}\nSTATUS=2/2 workers ready, generation 1, 0 restarts\n")
    );
    // Ready means serving, right away, on both listeners.
    assert_eq!(
        http_get(port, "/healthz").unwrap(),
        (200, "ok\n".to_string())
    );
    let mut unix = UnixStream::connect(dir.join("http.sock")).unwrap();
    unix.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    unix.read_to_string(&mut response).unwrap();
    assert_eq!(
        parse_response(&response).unwrap(),
        (200, "ok\n".to_string())
    );
    // The pidfile holds the master once ready.
    assert_eq!(
        std::fs::read_to_string(dir.join("hawkey.pid")).unwrap(),
        format!("{pid}\n")
    );

    hawkey.signal(libc::SIGTERM);
    let stopping = notify.until("STOPPING=1", Duration::from_secs(5));
    assert!(
        !stopping.iter().any(|m| m.contains("READY=1")),
        "{stopping:?}"
    );
    assert_eq!(hawkey.wait_exit(Duration::from_secs(15)).code(), Some(0));
    assert!(
        !dir.join("hawkey.pid").exists(),
        "pidfile removed on clean exit"
    );
    assert!(
        !dir.join("http.sock").exists(),
        "unix socket file removed on clean exit"
    );
    assert!(hawkey.log_text().contains("stopped"));
}

#[test]
fn every_worker_serves_and_names_its_slot_and_pid() {
    let dir = TempDir::new("builtin-spread");
    let port = free_port();
    let config = builtin_config(&dir, port, 2);
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let workers = hawkey.workers();
    assert_eq!(workers.len(), 2);
    for pid in &workers {
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            cmdline.starts_with("hawkey: worker "),
            "argv0 names the worker: {cmdline:?}"
        );
    }
    // Concurrent slow requests must be spread over both workers: one
    // worker is busy sleeping only inside its runtime, but the kernel
    // wakes every worker waiting on the shared socket.
    let mut seen = BTreeSet::new();
    for _round in 0..20 {
        let handles: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(move || http_get(port, "/delay/20").unwrap()))
            .collect();
        for h in handles {
            let (status, body) = h.join().unwrap();
            assert_eq!(status, 200);
            seen.insert(body);
        }
        let slots: BTreeSet<String> = seen
            .iter()
            .filter_map(|b| b.split_whitespace().nth(4).map(String::from))
            .collect();
        if slots.len() == 2 {
            break;
        }
    }
    let (_, body) = http_get(port, "/").unwrap();
    let pid: i32 = body.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(workers.contains(&pid), "answered by a worker: {body}");
    let slots: BTreeSet<String> = seen
        .iter()
        .filter_map(|b| b.split_whitespace().nth(4).map(String::from))
        .collect();
    assert_eq!(slots.len(), 2, "both workers served: {seen:?}");
    hawkey.stop_cleanly();
}

/// Counts socket fds in the given processes.
fn socket_fds(pids: &[i32]) -> usize {
    pids.iter()
        .map(|p| {
            proc_fds(*p)
                .iter()
                .filter(|(_, t)| t.starts_with("socket:"))
                .count()
        })
        .sum()
}

#[test]
fn graceful_stop_lets_in_flight_requests_finish() {
    let dir = TempDir::new("builtin-drain");
    let port = free_port();
    let config = builtin_config(&dir, port, 2);
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let workers = hawkey.workers();
    let baseline = socket_fds(&workers);
    let t0 = Instant::now();
    let client = std::thread::spawn(move || http_get(port, "/delay/1500"));
    // In flight = accepted by a worker: one more socket fd among them.
    wait_until(Duration::from_secs(5), "the request to be accepted", || {
        (socket_fds(&workers) > baseline).then_some(())
    });
    hawkey.signal(libc::SIGTERM);
    let (status, body) = client.join().unwrap().expect("in-flight request completes");
    assert_eq!(status, 200);
    assert!(body.starts_with("slept 1500ms"), "{body}");
    assert!(t0.elapsed() >= Duration::from_millis(1500));
    assert_eq!(hawkey.wait_exit(Duration::from_secs(15)).code(), Some(0));
    assert!(
        hawkey.log_text().contains("builtin app stopped"),
        "workers drained: {}",
        hawkey.log_text()
    );
    // Every worker exited by itself, not by the stop timeout.
    assert!(!hawkey.log_text().contains("stop timeout"));
}

/// A configured `stop_signal` other than SIGTERM/SIGINT/SIGQUIT drains the
/// built-in app too: the master passes it as HAWKEY_STOP_SIGNAL.
#[test]
fn the_configured_stop_signal_drains_builtin_workers() {
    let dir = TempDir::new("builtin-stop-signal");
    let port = free_port();
    let config = write_config(
        &dir,
        &format!(
            "listen:\n  - {{name: http, address: '127.0.0.1:{port}'}}\nworkers:\n  count: 1\n  stop_signal: SIGUSR2\n  stop_timeout: 10s\npidfile: null\n"
        ),
    );
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let workers = hawkey.workers();
    assert_eq!(
        env_of(workers[0], "HAWKEY_STOP_SIGNAL").as_deref(),
        Some("SIGUSR2")
    );
    let baseline = socket_fds(&workers);
    let client = std::thread::spawn(move || http_get(port, "/delay/1000"));
    wait_until(Duration::from_secs(5), "the request to be accepted", || {
        (socket_fds(&workers) > baseline).then_some(())
    });
    hawkey.signal(libc::SIGTERM);
    let (status, body) = client.join().unwrap().expect("in-flight request completes");
    assert_eq!(
        (status, body.starts_with("slept 1000ms")),
        (200, true),
        "{body}"
    );
    assert_eq!(hawkey.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let log = hawkey.log_text();
    assert!(
        log.contains("signal=\"SIGUSR2\"") || log.contains("SIGUSR2"),
        "{log}"
    );
    assert!(log.contains("builtin app stopped"), "{log}");
    assert!(!log.contains("stop timeout"), "{log}");
}

#[test]
fn a_killed_builtin_worker_is_replaced_and_the_pool_serves_again() {
    let dir = TempDir::new("builtin-kill");
    let port = free_port();
    let config = builtin_config(&dir, port, 2);
    let (mut hawkey, notify, _) = start_ready(&dir, &config);
    let before = hawkey.workers();
    // SAFETY: kill(2) on our worker.
    unsafe { libc::kill(before[0], libc::SIGKILL) };
    let status = notify.until(
        "STATUS=2/2 workers ready, generation 1, 1 restarts",
        Duration::from_secs(5),
    );
    assert!(
        status
            .iter()
            .any(|m| m.contains("STATUS=1/2 workers ready")),
        "{status:?}"
    );
    let after = hawkey.workers();
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&before[0]));
    for _ in 0..20 {
        assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
    }
    hawkey.stop_cleanly();
}

#[test]
fn builtin_workers_hold_nothing_of_the_master() {
    let dir = TempDir::new("builtin-hygiene");
    let config = builtin_config(&dir, free_port(), 2);
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    for pid in hawkey.workers() {
        let fds = proc_fds(pid);
        for (n, target) in &fds {
            assert!(
                !target.contains("hawkey.pid"),
                "worker {pid} holds the pidfile at fd {n}"
            );
            assert!(
                !target.contains("signalfd"),
                "worker {pid} holds a signalfd at fd {n}"
            );
            assert!(
                !target.contains("hawkey.yaml"),
                "worker {pid} holds the config at fd {n}"
            );
        }
        // The two listeners at 3 and 4, as the protocol says.
        assert!(
            fds.iter().any(|(n, t)| *n == 3 && t.starts_with("socket:")),
            "{fds:?}"
        );
        assert!(
            fds.iter().any(|(n, t)| *n == 4 && t.starts_with("socket:")),
            "{fds:?}"
        );
        assert_eq!(env_of(pid, "LISTEN_PID"), Some(pid.to_string()));
        assert_eq!(proc_status(pid, "PPid"), Some(hawkey.pid().to_string()));
    }
    hawkey.stop_cleanly();
}

#[test]
fn sigquit_stops_fast_without_draining() {
    let dir = TempDir::new("builtin-quit");
    let port = free_port();
    let config = builtin_config(&dir, port, 2);
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let workers = hawkey.workers();
    let baseline = socket_fds(&workers);
    let client = std::thread::spawn(move || http_get(port, "/delay/5000"));
    wait_until(Duration::from_secs(5), "the request to be accepted", || {
        (socket_fds(&workers) > baseline).then_some(())
    });
    let t0 = Instant::now();
    hawkey.signal(libc::SIGQUIT);
    // A hang guard: how fast is printed, not judged.
    assert_eq!(hawkey.wait_exit(Duration::from_secs(20)).code(), Some(0));
    eprintln!("SIGQUIT: stopped {:?} after", t0.elapsed());
    // The request in flight was cut off: no response came back.
    let result = client.join().unwrap();
    assert!(result.is_err(), "a fast stop does not drain: {result:?}");
    // Killed at once, not at the end of stop_timeout (10s).
    let log = hawkey.log_text();
    assert!(log.contains("was killed by SIGKILL"), "{log}");
    assert!(!log.contains("stop timeout"), "{log}");
    assert!(!dir.join("hawkey.pid").exists());
}
