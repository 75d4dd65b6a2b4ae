//! Nothing to attack from a worker: every worker leads its own session
//! with no controlling terminal, and a dropped worker can gain no
//! privilege.

mod support;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use support::*;

/// (tty_nr, session) from /proc/PID/stat.
fn tty_and_session(pid: i32) -> (i32, i32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    (fields[4].parse().unwrap(), fields[3].parse().unwrap())
}

/// Opens a pseudo-terminal: (master side, path of the other side).
fn open_pty() -> (OwnedFd, std::ffi::CString) {
    // SAFETY: posix_openpt returns a new fd or -1; grantpt, unlockpt and
    // ptsname_r work on it and write into the buffer they are given.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(fd >= 0);
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        let name = std::ffi::CStr::from_ptr(name.as_ptr()).to_owned();
        (OwnedFd::from_raw_fd(fd), name)
    }
}

#[test]
fn a_worker_has_no_controlling_terminal_and_leads_its_own_session() {
    let dir = TempDir::new("tree-tty");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 1, ""));
    let (_pty, name) = open_pty();
    let mut cmd = command(&config);
    // SAFETY: in the forked child only setsid, open and ioctl, all
    // async-signal-safe, on a name prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(name.as_ptr(), libc::O_RDWR);
            if fd < 0 || libc::ioctl(fd, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    let (mut hawkey, _notify, _) = start_ready_with(&dir, cmd);
    let (master_tty, _) = tty_and_session(hawkey.pid());
    assert_ne!(
        master_tty, 0,
        "the master has the terminal (the test's setup)"
    );
    let worker = hawkey.workers()[0];
    assert_eq!(
        tty_and_session(worker),
        (0, worker),
        "no controlling terminal, its own session"
    );
    hawkey.stop_cleanly();
}

#[test]
fn a_dropped_worker_has_no_new_privileges_and_an_empty_bounding_set() {
    require_root("a_dropped_worker_has_no_new_privileges_and_an_empty_bounding_set");
    let dir = TempDir::new("tree-nnp");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = write_config(
        &dir,
        &format!(
            "listen:\n  - {{name: http, address: '127.0.0.1:{}'}}\nworkers:\n  count: 1\n  app: exec\n  command: [sleep, '1000']\n  user: nobody\npidfile: {}\n",
            free_port(),
            dir.join("hawkey.pid").display()
        ),
    );
    let mut hawkey = Hawkey::start(&config);
    let worker = hawkey.wait_workers(1, "sleep", Duration::from_secs(10))[0];
    assert_eq!(proc_status(worker, "NoNewPrivs").as_deref(), Some("1"));
    assert_eq!(
        proc_status(worker, "CapBnd").as_deref(),
        Some("0000000000000000")
    );
    // The master keeps its own: it is not a dropped worker.
    assert_ne!(
        proc_status(hawkey.pid(), "CapBnd").as_deref(),
        Some("0000000000000000")
    );
    hawkey.stop_cleanly();
}
