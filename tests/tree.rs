//! Nothing left behind, and nothing to attack from a worker: what a
//! worker's descendants leave is stopped with it (a graceful stop, a
//! reload retiring it), every worker leads its own session with no
//! controlling terminal, and a dropped worker can gain no privilege.

mod support;

use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use support::*;

/// An exec'd worker whose grandchild outlives it unless hawkey stops it,
/// holding the listening socket (fd 3, inherited): in slot 0 the
/// grandchild calls `setsid()` and its parent exits at once (so the
/// master adopts it); in slot 1 it moves to a process group of its own
/// and ignores SIGTERM, its parent staying in the worker's group. Each
/// worker writes its grandchild's pid to `DIR/grandchild.GEN.SLOT`, then
/// sends READY=1.
const LEAVER: &str = r#"
import os, signal, socket, sys, time
slot, gen = os.environ['HAWKEY_WORKER'], os.environ['HAWKEY_GENERATION']
r, w = os.pipe()
if os.fork() == 0:
    if os.fork() == 0:
        # Not the test's stderr pipe: a survivor must fail the test, not
        # hang its log reader.
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 1)
        os.dup2(null, 2)
        if slot == '0':
            os.setsid()
        else:
            os.setpgid(0, 0)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.write(w, b'%d\n' % os.getpid())
        while True:
            time.sleep(1)
    if slot == '0':
        os._exit(0)
    while True:
        time.sleep(1)
os.close(w)
pid = os.read(r, 64).decode().strip()
path = os.path.join(sys.argv[1], 'grandchild.%s.%s' % (gen, slot))
with open(path + '.tmp', 'w') as f:
    f.write(pid)
os.rename(path + '.tmp', path)
a = os.environ['NOTIFY_SOCKET']
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
n.connect('\0' + a[1:] if a[0] == '@' else a)
n.send(b'READY=1')
while True:
    time.sleep(1)
"#;

fn leaver_config(dir: &TempDir, port: u16) -> PathBuf {
    leaver_config_of(dir, port, 2)
}

fn leaver_config_of(dir: &TempDir, port: u16, count: usize) -> PathBuf {
    let app = write_file(dir, "leaver.py", LEAVER);
    write_config(
        dir,
        &format!(
            "listen:\n  - {{name: http, address: '127.0.0.1:{port}'}}\nworkers:\n  count: {count}\n  app: exec\n  ready: notify\n  command: [python3, '{}', '{}']\n  stop_timeout: 2s\npidfile: {}\n",
            app.display(),
            dir.path().display(),
            dir.join("hawkey.pid").display()
        ),
    )
}

/// The grandchildren of generation `generation`'s two workers.
fn grandchildren(dir: &TempDir, generation: u32) -> [i32; 2] {
    [0, 1].map(|slot| {
        let path = dir.join(&format!("grandchild.{generation}.{slot}"));
        wait_until(Duration::from_secs(10), "a grandchild's pid", || {
            std::fs::read_to_string(&path).ok()?.trim().parse().ok()
        })
    })
}

/// (tty_nr, session) from /proc/PID/stat.
fn tty_and_session(pid: i32) -> (i32, i32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    (fields[4].parse().unwrap(), fields[3].parse().unwrap())
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn after_a_graceful_stop_nothing_a_worker_left_runs_and_the_port_is_free() {
    let dir = TempDir::new("tree-stop");
    let port = free_port();
    let config = leaver_config(&dir, port);
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let [setsid, stubborn] = grandchildren(&dir, 1);
    assert!(alive(setsid) && alive(stubborn));
    assert_eq!(tty_and_session(setsid).1, setsid, "it called setsid()");
    assert!(!port_is_free(port), "the pool listens");
    hawkey.stop_cleanly();
    assert!(!alive(setsid), "the setsid() grandchild survived the stop");
    assert!(
        !alive(stubborn),
        "the grandchild ignoring SIGTERM survived the stop"
    );
    assert!(port_is_free(port), "{}", hawkey.log_text());
    // Each got the stop signal first, once; the one ignoring it SIGKILL.
    for (pid, signal, times) in [
        (setsid, "SIGTERM", 1),
        (setsid, "SIGKILL", 0),
        (stubborn, "SIGTERM", 1),
        (stubborn, "SIGKILL", 1),
    ] {
        assert_eq!(
            hawkey.count_log(&format!("sending {signal} to pid {pid} ")),
            times,
            "{signal} to {pid}: {}",
            hawkey.log_text()
        );
    }
}

#[test]
fn when_reload_wait_returns_the_retired_workers_descendants_are_gone() {
    let dir = TempDir::new("tree-reload");
    let port = free_port();
    let config = leaver_config(&dir, port);
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let old = grandchildren(&dir, 1);
    assert!(old.iter().all(|p| alive(*p)));
    let (code, out, err) = hawkey_cli(&["reload", "--wait"], &config);
    assert_eq!(code, 0, "{out}{err}{}", hawkey.log_text());
    for p in old {
        assert!(!alive(p), "pid {p} of generation 1 outlived the reload");
    }
    let new = grandchildren(&dir, 2);
    assert!(
        new.iter().all(|p| alive(*p)),
        "the new generation's are left alone"
    );
    hawkey.stop_cleanly();
    assert!(new.iter().all(|p| !alive(*p)));
    assert!(port_is_free(port));
}

#[test]
fn a_reload_that_drops_a_slot_stops_what_its_worker_left() {
    let dir = TempDir::new("tree-shrink");
    let port = free_port();
    let config = leaver_config(&dir, port);
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let [_, stubborn] = grandchildren(&dir, 1);
    leaver_config_of(&dir, port, 1);
    let (code, out, err) = hawkey_cli(&["reload", "--wait"], &config);
    assert_eq!(code, 0, "{out}{err}{}", hawkey.log_text());
    assert!(
        !alive(stubborn),
        "slot 1's grandchild outlived the reload that dropped the slot"
    );
    let (_, status, _) = hawkey_cli(&["status"], &config);
    assert!(
        status.contains("1/1 workers ready, generation 2"),
        "{status}"
    );
    hawkey.stop_cleanly();
    assert!(port_is_free(port));
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
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
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
            "listen:\n  - {{name: http, address: '127.0.0.1:{}'}}\nworkers:\n  count: 1\n  app: exec\n  ready: started\n  command: [sleep, '1000']\n  user: nobody\npidfile: {}\n",
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
