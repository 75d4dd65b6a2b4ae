//! The master never dies of stray signals or of its own output, and
//! systemd's SIGCONT after SIGTERM is no stall.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::*;

fn healthz(port: u16) -> (u16, String) {
    http_get(port, "/healthz").expect("GET /healthz")
}

#[test]
fn stray_signals_leave_the_master_running_and_serving() {
    let dir = TempDir::new("signals-stray");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 1, ""));
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let workers = hawkey.workers();
    // logrotate's SIGUSR1, timers, a power event, a realtime signal.
    for signal in [
        libc::SIGUSR1,
        libc::SIGALRM,
        libc::SIGPWR,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGIO,
        libc::SIGXCPU,
        libc::SIGRTMIN() + 2,
    ] {
        hawkey.signal(signal);
        // Signals of one kind merge while pending: each is sent after the
        // last was read. SIGUSR1 says so; the others only when debugging,
        // so a status request (answered by the same loop) is the proof.
        if signal == libc::SIGUSR1 {
            hawkey.wait_log("SIGUSR1: nothing to reopen", Duration::from_secs(5));
        }
        let (code, out, err) = hawkey_cli(&["status"], &config);
        assert_eq!(
            code,
            0,
            "after signal {signal}: {out}{err}{}",
            hawkey.log_text()
        );
        assert!(
            hawkey.child.try_wait().unwrap().is_none(),
            "signal {signal} ended the master: {}",
            hawkey.log_text()
        );
    }
    assert_eq!(healthz(port), (200, "ok\n".to_string()));
    assert_eq!(hawkey.workers(), workers, "no worker was touched");
    hawkey.stop_cleanly();
}

#[test]
fn sigcont_right_after_sigterm_is_no_stall_and_the_stop_is_clean() {
    let dir = TempDir::new("signals-cont");
    let port = free_port();
    let config = write_config(
        &dir,
        &builtin_yaml(&dir, port, 2, "  heartbeat_timeout: 1s\n"),
    );
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    // Idle for longer than the stall slack, as a master between requests is.
    std::thread::sleep(Duration::from_millis(1500));
    // What systemctl stop (and timeout(1)) send.
    hawkey.signal(libc::SIGTERM);
    hawkey.signal(libc::SIGCONT);
    let status = hawkey.wait_exit(STOP_GUARD);
    assert_eq!(status.code(), Some(0), "{}", hawkey.log_text());
    assert_eq!(
        hawkey.count_log("not running for a while"),
        0,
        "{}",
        hawkey.log_text()
    );
}

#[test]
fn a_closed_stderr_stops_neither_the_master_nor_its_workers() {
    let dir = TempDir::new("signals-stderr");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, ""));
    // `hawkey run 2>&1 | head -3` once head is gone: a pipe nobody reads.
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let notify = NotifySocket::new(&dir);
    let mut cmd = command(&config);
    cmd.env("NOTIFY_SOCKET", &notify.path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(nix::unistd::dup(&write).unwrap()))
        .stderr(Stdio::from(write));
    let mut child = cmd.spawn().unwrap();
    notify.until("READY=1", READY_GUARD);
    // More to write: a worker more (the master logs it, the worker logs
    // its start), requests.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTTIN) };
    let status = || hawkey_cli(&["status"], &config).1;
    wait_until(Duration::from_secs(10), "a third worker, ready", || {
        status().contains("3/3 workers ready").then_some(())
    });
    for _ in 0..20 {
        assert_eq!(healthz(port), (200, "ok\n".to_string()));
    }
    assert!(child.try_wait().unwrap().is_none(), "the master died");
    // No worker died of its own log lines (the third logged its start).
    let now = status();
    assert!(
        now.contains("3/3 workers ready, generation 1, 0 restarts"),
        "{now}"
    );
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_until(STOP_GUARD, "hawkey to exit", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0), "{status:?}");
}
