//! systemd's SIGCONT after SIGTERM is no stall.

mod support;

use std::time::Duration;

use support::*;

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
