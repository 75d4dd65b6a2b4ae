//! systemd socket activation (`sd_listen_fds(3)`), with the real
//! `systemd-socket-activate` from Debian's systemd package passing real
//! sockets, and the strict `LISTEN_PID` check.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

fn config(dir: &TempDir, own_port: u16) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "listen:\n  - {{name: own, address: '127.0.0.1:{own_port}'}}\nworkers:\n  count: 2\n  app: exec\n  ready: started\n  command: [sleep, '1000']\npidfile: null\n"
        ),
    )
}

#[test]
fn sockets_passed_by_systemd_are_used_with_their_names_and_the_config_is_not_bound() {
    assert!(
        std::path::Path::new(ACTIVATE).exists(),
        "{ACTIVATE} is missing: install Debian's systemd package (the test command does)"
    );
    let dir = TempDir::new("activation");
    let (passed, own) = (free_port(), free_port());
    let config = config(&dir, own);
    let mut cmd = Command::new(ACTIVATE);
    cmd.arg("-l")
        .arg(format!("127.0.0.1:{passed}"))
        .arg("-l")
        .arg(dir.join("api.sock"))
        .arg("--fdname=web:api")
        .arg(BIN)
        .args(["run", "-c"])
        .arg(&config);
    for name in [
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "JOURNAL_STREAM",
    ] {
        cmd.env_remove(name);
    }
    let mut hawkey = Hawkey::spawn(cmd);
    // systemd-socket-activate starts the program on the first connection.
    let _wake = wait_until(Duration::from_secs(5), "the activating socket", || {
        std::net::TcpStream::connect(("127.0.0.1", passed)).ok()
    });
    hawkey.wait_log(
        "listening on 'web' (fd 3 from systemd)",
        Duration::from_secs(10),
    );
    hawkey.wait_log(
        "listening on 'api' (fd 4 from systemd)",
        Duration::from_secs(10),
    );
    let workers = hawkey.wait_workers(2, "sleep", Duration::from_secs(10));
    for pid in &workers {
        assert_eq!(env_of(*pid, "LISTEN_FDNAMES").as_deref(), Some("web:api"));
        assert_eq!(env_of(*pid, "LISTEN_FDS").as_deref(), Some("2"));
        assert_eq!(env_of(*pid, "LISTEN_PID"), Some(pid.to_string()));
        let fds = proc_fds(*pid);
        assert_eq!(
            fds.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4],
            "{fds:?}"
        );
    }
    // The config's own listener was not bound: its port is free.
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", own)).is_ok(),
        "config listener bound despite activation"
    );
    hawkey.stop_cleanly();
}

#[test]
fn listen_fds_meant_for_another_process_are_ignored() {
    let dir = TempDir::new("activation-pid");
    let own = free_port();
    let config = config(&dir, own);
    let mut cmd = command(&config);
    // LISTEN_PID names pid 1, not hawkey: the variables are not for us.
    cmd.env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDNAMES", "stolen");
    let mut hawkey = Hawkey::spawn(cmd);
    hawkey.wait_log(
        &format!("listening on 'own' on 127.0.0.1:{own}"),
        Duration::from_secs(5),
    );
    let workers = hawkey.wait_workers(2, "sleep", Duration::from_secs(5));
    assert_eq!(env_of(workers[0], "LISTEN_FDNAMES").as_deref(), Some("own"));
    hawkey.stop_cleanly();
}
