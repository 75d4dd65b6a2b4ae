//! G11, the pidfile, on the real binary: published whole once every worker
//! is ready, removed on a clean stop, never followed through a symlink,
//! taken over when stale whatever pid it holds, and held against a second
//! instance (exit 75). Exit 73 when it cannot be used.

mod support;

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::*;

const START: Duration = Duration::from_secs(10);
const STOP: Duration = Duration::from_secs(10);

/// YAML of an exec pool of `count` sleeps on a loopback port; `pidfile` is
/// the YAML value of the `pidfile` key.
fn pool_yaml(port: u16, count: usize, pidfile: &str) -> String {
    format!(
        "listen:\n  - {{name: web, address: '127.0.0.1:{port}'}}\nworkers:\n  count: {count}\n  app: exec\n  ready: started\n  command: [sleep, '1000']\npidfile: {pidfile}\n"
    )
}

/// Writes `hawkey.yaml` for a pool of `count` sleeps with its pidfile at `pidfile`.
fn pool_config(dir: &TempDir, port: u16, count: usize, pidfile: &Path) -> PathBuf {
    write_config(dir, &pool_yaml(port, count, &pidfile.display().to_string()))
}

fn content(path: &Path) -> Option<String> {
    match std::fs::read(path) {
        Ok(bytes) => Some(String::from_utf8(bytes).expect("pidfile is UTF-8")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

/// Waits until the pidfile holds exactly "PID\n".
fn wait_pidfile_holds(hawkey: &Hawkey, path: &Path) {
    let want = format!("{}\n", hawkey.pid());
    let what = format!("{} to hold {want:?}", path.display());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(START, &what, || {
            (content(path).as_deref() == Some(want.as_str())).then_some(())
        })
    }));
    if result.is_err() {
        panic!(
            "timed out waiting for {what}; it holds {:?}; log:\n{}",
            content(path),
            hawkey.log_text()
        );
    }
}

/// A pid that certainly belonged to a process that is gone.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Whole pid as hawkey writes it: digits without a leading 0, then "\n".
fn whole_pid(bytes: &[u8]) -> Option<u32> {
    let digits = bytes.strip_suffix(b"\n")?;
    if digits.is_empty() || digits[0] == b'0' || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[test]
fn once_all_workers_are_ready_the_pidfile_holds_exactly_the_master_pid_and_a_clean_stop_removes_it()
{
    let dir = TempDir::new("pid-publish");
    let pidfile = dir.join("hawkey.pid");
    let config = pool_config(&dir, free_port(), 2, &pidfile);
    let mut hawkey = Hawkey::start(&config);
    // The pidfile is published before "all workers ready" is logged: once
    // the line is there, the file must already hold the pid.
    hawkey.wait_log("all 2 workers ready", START);
    assert_eq!(
        std::fs::read(&pidfile).unwrap(),
        format!("{}\n", hawkey.pid()).into_bytes()
    );
    hawkey.wait_workers(2, "sleep", START);
    assert_eq!(
        content(&pidfile),
        Some(format!("{}\n", hawkey.pid())),
        "still the same while running"
    );
    // Written through a temp file and a rename: nothing else is left.
    // (the control socket lives beside the pidfile)
    assert_eq!(
        entries(dir.path()),
        ["hawkey.pid", "hawkey.sock", "hawkey.yaml"]
    );
    // The master keeps the published file open: that is its lock.
    let pidfile_text = pidfile.display().to_string();
    assert!(
        proc_fds(hawkey.pid())
            .iter()
            .any(|(_, t)| *t == pidfile_text),
        "{:?}",
        proc_fds(hawkey.pid())
    );

    hawkey.stop_cleanly();
    assert!(!pidfile.exists(), "{}", hawkey.log_text());
    assert_eq!(entries(dir.path()), ["hawkey.yaml"]);
}

#[test]
fn the_pidfile_stays_empty_and_locked_until_every_worker_is_ready() {
    let dir = TempDir::new("pid-notready");
    let pidfile = dir.join("hawkey.pid");
    let started = dir.join("started");
    let trigger = dir.join("trigger");
    let script = dir.join("worker.py");
    std::fs::write(
        &script,
        format!(
            "import os, socket, time\n\
             open({started:?}, 'w').close()\n\
             while not os.path.exists({trigger:?}):\n    time.sleep(0.01)\n\
             a = os.environ['NOTIFY_SOCKET']\n\
             s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
             s.connect('\\0' + a[1:] if a[0] == '@' else a)\n\
             s.send(b'READY=1')\n\
             time.sleep(1000)\n",
            started = started.display().to_string(),
            trigger = trigger.display().to_string(),
        ),
    )
    .unwrap();
    let config = write_config(
        &dir,
        &format!(
            "listen:\n  - {{name: web, address: '127.0.0.1:{}'}}\nworkers:\n  count: 1\n  app: exec\n  ready: notify\n  command: [python3, '{}']\npidfile: {}\n",
            free_port(),
            script.display(),
            pidfile.display()
        ),
    );
    let mut hawkey = Hawkey::start(&config);
    wait_until(START, "the worker to run", || {
        started.exists().then_some(())
    });
    // Started, not ready: the file is there (locked) and empty.
    assert_eq!(
        content(&pidfile).as_deref(),
        Some(""),
        "{}",
        hawkey.log_text()
    );

    // A second instance now is refused; with no pid published it names none.
    let second = write_file(
        &dir,
        "second.yaml",
        &pool_yaml(free_port(), 1, &pidfile.display().to_string()),
    );
    let mut other = Hawkey::start(&second);
    assert_eq!(
        other.wait_exit(STOP).code(),
        Some(75),
        "{}",
        other.log_text()
    );
    assert!(
        other.log_text().contains(&format!(
            "another hawkey holds the lock on '{}'",
            pidfile.display()
        )),
        "{}",
        other.log_text()
    );
    assert_eq!(content(&pidfile).as_deref(), Some(""));

    std::fs::write(&trigger, "").unwrap();
    hawkey.wait_log("all 1 workers ready", START);
    assert_eq!(content(&pidfile), Some(format!("{}\n", hawkey.pid())));
    hawkey.stop_cleanly();
    assert!(!pidfile.exists());
}

#[test]
fn a_symlink_at_the_pidfile_path_is_refused_with_73_and_its_target_is_untouched() {
    let dir = TempDir::new("pid-symlink");
    let pidfile = dir.join("hawkey.pid");
    let target = write_file(&dir, "precious", "precious content\n");
    std::os::unix::fs::symlink(&target, &pidfile).unwrap();
    let port = free_port();
    let config = pool_config(&dir, port, 2, &pidfile);

    let mut hawkey = Hawkey::start(&config);
    let status = hawkey.wait_exit(STOP);
    let log = hawkey.log_text();
    assert_eq!(status.code(), Some(73), "{log}");
    assert!(
        log.contains(&format!(
            "refusing pidfile '{}': it is a symlink",
            pidfile.display()
        )),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "precious content\n"
    );
    assert!(
        std::fs::symlink_metadata(&pidfile)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_link(&pidfile).unwrap(), target);
    // Refused before anything was bound or started.
    assert!(!log.contains("listening on"), "{log}");
    TcpListener::bind(("127.0.0.1", port)).unwrap();
    assert_eq!(
        entries(dir.path()),
        ["hawkey.pid", "hawkey.yaml", "precious"]
    );
}

#[test]
fn a_dangling_symlink_at_the_pidfile_path_is_refused_and_its_target_never_created() {
    let dir = TempDir::new("pid-dangling");
    let pidfile = dir.join("hawkey.pid");
    let target = dir.join("not-there");
    std::os::unix::fs::symlink(&target, &pidfile).unwrap();
    let config = pool_config(&dir, free_port(), 1, &pidfile);

    let mut hawkey = Hawkey::start(&config);
    let status = hawkey.wait_exit(STOP);
    assert_eq!(status.code(), Some(73), "{}", hawkey.log_text());
    assert!(
        hawkey.log_text().contains(&format!(
            "refusing pidfile '{}': it is a symlink",
            pidfile.display()
        )),
        "{}",
        hawkey.log_text()
    );
    assert!(!target.exists());
    assert_eq!(std::fs::read_link(&pidfile).unwrap(), target);
}

#[test]
fn a_directory_at_the_pidfile_path_is_refused_with_73() {
    let dir = TempDir::new("pid-isdir");
    let pidfile = dir.join("hawkey.pid");
    std::fs::create_dir(&pidfile).unwrap();
    let config = pool_config(&dir, free_port(), 1, &pidfile);

    let mut hawkey = Hawkey::start(&config);
    let status = hawkey.wait_exit(STOP);
    assert_eq!(status.code(), Some(73), "{}", hawkey.log_text());
    assert!(
        hawkey.log_text().contains(&format!(
            "refusing pidfile '{}': not a regular file",
            pidfile.display()
        )),
        "{}",
        hawkey.log_text()
    );
    assert!(pidfile.is_dir());
}

#[test]
fn a_stale_pidfile_holding_a_dead_pid_is_taken_over() {
    let dir = TempDir::new("pid-stale-dead");
    let pidfile = dir.join("hawkey.pid");
    let stale = dead_pid();
    std::fs::write(&pidfile, format!("{stale}\n")).unwrap();
    let config = pool_config(&dir, free_port(), 2, &pidfile);

    let mut hawkey = Hawkey::start(&config);
    wait_pidfile_holds(&hawkey, &pidfile);
    assert!(
        hawkey.log_text().contains(&format!(
            "replaced stale pidfile {} of pid {stale}",
            pidfile.display()
        )),
        "{}",
        hawkey.log_text()
    );
    hawkey.wait_workers(2, "sleep", START);
    hawkey.stop_cleanly();
    assert!(!pidfile.exists());
}

#[test]
fn a_stale_pidfile_holding_a_live_unrelated_pid_is_taken_over_because_only_the_lock_counts() {
    let dir = TempDir::new("pid-stale-live");
    let pidfile = dir.join("hawkey.pid");
    // Our own pid: alive, and not a hawkey.
    let ours = std::process::id();
    std::fs::write(&pidfile, format!("{ours}\n")).unwrap();
    let config = pool_config(&dir, free_port(), 2, &pidfile);

    let mut hawkey = Hawkey::start(&config);
    wait_pidfile_holds(&hawkey, &pidfile);
    assert!(
        hawkey.log_text().contains(&format!(
            "replaced stale pidfile {} of pid {ours}",
            pidfile.display()
        )),
        "{}",
        hawkey.log_text()
    );
    hawkey.wait_workers(2, "sleep", START);
    hawkey.stop_cleanly();
    assert!(!pidfile.exists());
}

#[test]
fn a_second_instance_on_the_same_pidfile_exits_75_naming_the_first_and_leaves_it_unaffected() {
    let dir = TempDir::new("pid-second");
    let pidfile = dir.join("hawkey.pid");
    let first_port = free_port();
    let config = pool_config(&dir, first_port, 2, &pidfile);
    let mut first = Hawkey::start(&config);
    wait_pidfile_holds(&first, &pidfile);
    let workers = first.wait_workers(2, "sleep", START);
    let inode = std::fs::metadata(&pidfile).unwrap().ino();

    // Same config but another port: the bind cannot be what stops it.
    let second_port = free_port();
    assert_ne!(second_port, first_port);
    let second_config = write_file(
        &dir,
        "second.yaml",
        &pool_yaml(second_port, 2, &pidfile.display().to_string()),
    );
    let mut second = Hawkey::start(&second_config);
    let status = second.wait_exit(STOP);
    let log = second.log_text();
    assert_eq!(status.code(), Some(75), "{log}");
    assert!(
        log.contains(&format!(
            "another hawkey (pid {}) holds the lock on '{}'",
            first.pid(),
            pidfile.display()
        )),
        "{log}"
    );
    assert!(!log.contains("listening on"), "{log}");
    TcpListener::bind(("127.0.0.1", second_port)).expect("the second bound its port");

    // The first carries on exactly as before.
    assert!(first.child.try_wait().unwrap().is_none(), "first exited");
    assert_eq!(content(&pidfile), Some(format!("{}\n", first.pid())));
    assert_eq!(std::fs::metadata(&pidfile).unwrap().ino(), inode);
    assert_eq!(first.workers(), workers);
    assert!(workers.iter().all(|p| alive(*p)));
    TcpStream::connect(("127.0.0.1", first_port)).expect("first's listener is still there");
    assert!(
        !first.log_text().contains("was killed") && !first.log_text().contains("exited"),
        "{}",
        first.log_text()
    );
    first.stop_cleanly();
    assert!(!pidfile.exists());
}

#[test]
fn a_pidfile_whose_directory_has_no_parent_exits_73_and_creates_nothing() {
    let dir = TempDir::new("pid-grandparent");
    let missing = dir.join("a").join("b");
    let pidfile = missing.join("hawkey.pid");
    let port = free_port();
    let config = pool_config(&dir, port, 1, &pidfile);

    let mut hawkey = Hawkey::start(&config);
    let status = hawkey.wait_exit(STOP);
    let log = hawkey.log_text();
    assert_eq!(status.code(), Some(73), "{log}");
    assert!(
        log.contains(&format!(
            "failed to create pidfile directory '{}'",
            missing.display()
        )),
        "{log}"
    );
    assert!(!log.contains("listening on"), "{log}");
    assert_eq!(entries(dir.path()), ["hawkey.yaml"]);
    TcpListener::bind(("127.0.0.1", port)).unwrap();
}

#[test]
fn a_missing_pidfile_directory_is_created_with_mode_0755_when_its_parent_exists() {
    let dir = TempDir::new("pid-mkdir");
    let run = dir.join("run");
    let pidfile = run.join("hawkey.pid");
    let config = pool_config(&dir, free_port(), 2, &pidfile);
    let mut cmd = command(&config);
    // With no umask, the mode is exactly the one hawkey asks for.
    // SAFETY: umask(2) is async-signal-safe and cannot fail.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::umask(0);
            Ok(())
        });
    }
    let mut hawkey = Hawkey::spawn(cmd);
    wait_pidfile_holds(&hawkey, &pidfile);
    let meta = std::fs::metadata(&run).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    hawkey.wait_workers(2, "sleep", START);
    hawkey.stop_cleanly();
    assert!(!pidfile.exists());
}

#[test]
fn the_pidfile_is_only_ever_absent_empty_or_a_whole_pid_across_starts_and_stops() {
    let dir = TempDir::new("pid-atomic");
    let pidfile = dir.join("hawkey.pid");
    let config = pool_config(&dir, free_port(), 2, &pidfile);

    #[derive(Default)]
    struct Seen {
        reads: u64,
        absent: u64,
        empty: u64,
        pids: BTreeSet<u32>,
        bad: Vec<String>,
    }
    let seen = Mutex::new(Seen::default());
    let stop = AtomicBool::new(false);
    let mut masters = Vec::new();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let read = std::fs::read(&pidfile);
                let mut seen = seen.lock().unwrap();
                seen.reads += 1;
                match read {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => seen.absent += 1,
                    Err(e) => seen.bad.push(format!("read error {e}")),
                    Ok(bytes) if bytes.is_empty() => seen.empty += 1,
                    Ok(bytes) => match whole_pid(&bytes) {
                        Some(pid) => {
                            seen.pids.insert(pid);
                        }
                        None => seen.bad.push(format!("{bytes:?}")),
                    },
                }
            }
        });
        let cycles = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for _ in 0..3 {
                let mut hawkey = Hawkey::start(&config);
                let pid = hawkey.pid() as u32;
                masters.push(pid);
                wait_pidfile_holds(&hawkey, &pidfile);
                // The reader saw this master's pid too before it goes.
                wait_until(START, "the reader to see the pid", || {
                    seen.lock().unwrap().pids.contains(&pid).then_some(())
                });
                hawkey.stop_cleanly();
                assert!(!pidfile.exists());
                let absent = seen.lock().unwrap().absent;
                wait_until(STOP, "the reader to see it gone", || {
                    (seen.lock().unwrap().absent > absent).then_some(())
                });
            }
        }));
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        if let Err(panic) = cycles {
            std::panic::resume_unwind(panic);
        }
    });
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.bad.is_empty(),
        "partial or odd content: {:?}",
        seen.bad
    );
    assert_eq!(
        seen.pids,
        masters.iter().copied().collect::<BTreeSet<u32>>(),
        "pids other than the masters'"
    );
    assert!(seen.reads > 0 && seen.absent > 0);
}

#[test]
fn pidfile_null_creates_no_pidfile() {
    let dir = TempDir::new("pid-null");
    let config = write_config(&dir, &pool_yaml(free_port(), 2, "null"));
    let mut hawkey = Hawkey::start(&config);
    hawkey.wait_log("all 2 workers ready", START);
    hawkey.wait_workers(2, "sleep", START);
    assert!(
        hawkey.log_text().contains("no pidfile"),
        "{}",
        hawkey.log_text()
    );
    // Not here, and not in the default runtime directory either: the
    // master holds no pidfile open anywhere.
    assert_eq!(entries(dir.path()), ["hawkey.yaml"]);
    let held: Vec<String> = proc_fds(hawkey.pid())
        .into_iter()
        .map(|(_, target)| target)
        .filter(|t| t.ends_with(".pid") || t.contains("hawkey.pid"))
        .collect();
    assert!(held.is_empty(), "{held:?}");
    hawkey.stop_cleanly();
    assert_eq!(entries(dir.path()), ["hawkey.yaml"]);
}

/// A tmpfs of one page mounted on `dir`, unmounted on drop (also when the
/// test fails).
struct TinyTmpfs(PathBuf);

impl TinyTmpfs {
    fn mount(dir: &Path) -> TinyTmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4k,mode=0755", "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs on {}", dir.display());
        TinyTmpfs(dir.to_path_buf())
    }

    /// Writes one file until the file system is full; returns its name.
    fn fill(&self) -> &'static str {
        use std::io::Write;
        let mut file = std::fs::File::create(self.0.join("fill")).unwrap();
        let block = [0u8; 1024];
        let mut full = false;
        for _ in 0..64 {
            if let Err(e) = file.write_all(&block) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                full = true;
                break;
            }
        }
        assert!(full, "a 4k tmpfs took 64k");
        "fill"
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn a_pidfile_that_cannot_be_written_in_full_fails_the_start_with_73_and_leaves_nothing() {
    // Was: the master ran on for ever with an empty pidfile (the write
    // after readiness failed with ENOSPC and was only logged).
    require_root(
        "a_pidfile_that_cannot_be_written_in_full_fails_the_start_with_73_and_leaves_nothing (mounts a tmpfs)",
    );
    let dir = TempDir::new("pid-enospc");
    let full = TinyTmpfs::mount(&dir.join("run"));
    let fill = full.fill();
    let pidfile = full.0.join("hawkey.pid");
    let port = free_port();
    let config = pool_config(&dir, port, 1, &pidfile);

    let mut hawkey = Hawkey::start(&config);
    let status = hawkey.wait_exit(STOP);
    let log = hawkey.log_text();
    assert_eq!(status.code(), Some(73), "{log}");
    assert!(
        log.contains(&format!(
            "failed to write temporary pidfile '{}': No space left on device (os error 28)",
            full.0
                .join(format!(".hawkey.pid.{}.tmp", hawkey.pid()))
                .display()
        )),
        "{log}"
    );
    assert!(!log.contains("listening on"), "{log}");
    assert_eq!(
        entries(&full.0),
        [fill],
        "no pidfile, empty or not, is left"
    );
    TcpListener::bind(("127.0.0.1", port)).unwrap();
}
