//! The master never dies of stray signals, and systemd's SIGCONT after
//! SIGTERM is no stall.

mod support;

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
