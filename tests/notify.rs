//! Each worker's private notify channel, attacked as another local user
//! and by processes outside the worker's tree, and used by pools far
//! larger than this machine's core count.
//!
//! The first release had one abstract datagram socket for the whole pool:
//! any local user could send to it, its queue of 10 dropped the readiness
//! of a pool of 10 or more, 9 descriptors in one datagram leaked 8, and a
//! process that joined a worker's process group spoke for it.

mod support;

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use support::*;

/// The worker's `NOTIFY_SOCKET`, read from its environment.
fn notify_socket_of(worker: i32) -> String {
    env_of(worker, "NOTIFY_SOCKET").expect("the worker has a NOTIFY_SOCKET")
}

/// Runs a Python snippet with `args` (as `sys.argv[1:]`), as `uid` when
/// given; its exit code and output.
fn python(uid: Option<u32>, code: &str, args: &[&str]) -> (i32, String) {
    let mut cmd = match uid {
        // Not a per-user shim (pyenv's, in root's home): the system's
        // interpreter, which any user may run.
        Some(uid) => as_uid(uid, "/usr/bin/python3"),
        None => Command::new("python3"),
    };
    let out = cmd.args(["-c", code]).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Connects to a datagram socket and sends `READY=1`: prints `sent`, or
/// the error's name.
const SEND_ONCE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
try:
    s.connect(sys.argv[1])
    s.send(b"READY=1\nWATCHDOG=1\n")
    print("sent")
except OSError as e:
    print(type(e).__name__)
"#;

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn another_uid_cannot_reach_a_workers_notify_socket() {
    require_root("another_uid_cannot_reach_a_workers_notify_socket");
    let dir = TempDir::new("notify-uid");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, "  app: builtin\n"));
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let workers = hawkey.workers();
    assert_eq!(workers.len(), 2);
    let path = notify_socket_of(workers[0]);
    assert!(path.starts_with('/'), "a path socket, not abstract: {path}");
    assert_ne!(
        notify_socket_of(workers[0]),
        notify_socket_of(workers[1]),
        "each worker has a channel of its own"
    );
    // Nothing of hawkey's in the abstract namespace any more, where every
    // local user can see (/proc/net/unix) and reach it.
    // (This master's own name: a master of another checkout may run.)
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap();
    let abstract_name = format!("@hawkey/{}/notify", hawkey.pid());
    assert!(!unix.contains(&abstract_name), "{abstract_name} is listed");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);
    let (code, out) = python(Some(65534), SEND_ONCE, &[&path]);
    assert_eq!((code, out.trim()), (0, "PermissionError"), "{out}");
    // The directory cannot be listed by others either.
    let parent = std::path::Path::new(&path).parent().unwrap();
    let list = "import os, sys\ntry:\n    os.listdir(sys.argv[1]); print('listed')\nexcept OSError as e:\n    print(type(e).__name__)\n";
    let (_, out) = python(Some(65534), list, &[parent.to_str().unwrap()]);
    assert_eq!(out.trim(), "PermissionError");
    hawkey.stop_cleanly();
    assert!(!parent.exists(), "the channel directory is removed at exit");
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn a_dropped_worker_reaches_its_channel_when_the_runtime_directory_is_0750() {
    require_root("a_dropped_worker_reaches_its_channel_when_the_runtime_directory_is_0750");
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("notify-0750");
    // As systemd makes it for our unit (RuntimeDirectoryMode=0750), owned
    // by root here: nobody cannot pass through it.
    let run = dir.join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o750)).unwrap();
    let port = free_port();
    let config = write_config(
        &dir,
        &builtin_yaml(&dir, port, 2, "  app: builtin\n  user: nobody\n"),
    );
    let mut cmd = command(&config);
    cmd.env("RUNTIME_DIRECTORY", &run);
    let (mut hawkey, _notify, _) = start_ready_with(&dir, cmd);
    let path = notify_socket_of(hawkey.workers()[0]);
    assert!(!path.starts_with(run.to_str().unwrap()), "{path}");
    hawkey.stop_cleanly();
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn a_dropped_worker_owns_its_channel_and_other_users_still_cannot_send() {
    require_root("a_dropped_worker_owns_its_channel_and_other_users_still_cannot_send");
    let dir = TempDir::new("notify-dropped");
    let port = free_port();
    let config = write_config(
        &dir,
        &builtin_yaml(&dir, port, 2, "  app: builtin\n  user: nobody\n"),
    );
    // READY=1 upstream means both dropped workers reached their channel.
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let workers = hawkey.workers();
    assert_eq!(workers.len(), 2);
    let path = notify_socket_of(workers[0]);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (65534, 0o600));
    // uid 1 (daemon) is neither the master nor the worker.
    let (code, out) = python(Some(1), SEND_ONCE, &[&path]);
    assert_eq!((code, out.trim()), (0, "PermissionError"), "{out}");
    hawkey.stop_cleanly();
}

/// Sends `count` datagrams of `READY=1`, each carrying `per` descriptors
/// (of /dev/null), blocking as the queue allows; prints how many went.
const SEND_FDS: &str = r#"
import array, os, socket, sys
path, count, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(per)]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(path)
s.settimeout(10)
sent = 0
for _ in range(count):
    s.sendmsg([b"READY=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    sent += 1
print(sent)
"#;

#[test]
fn descriptors_passed_into_a_channel_are_all_closed() {
    let dir = TempDir::new("notify-fds");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, "  app: builtin\n"));
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let workers = hawkey.workers();
    assert_eq!(workers.len(), 2);
    let path = notify_socket_of(workers[0]);
    // The master's own fds, once settled: the same set 200 ms apart (the
    // exec-report pipes of the workers it just started may still be open
    // when READY=1 comes; seen once on a loaded machine, whose count then
    // never came back down to a "before" that held them).
    let before = wait_until(Duration::from_secs(10), "a settled fd count", || {
        let a = fd_numbers(hawkey.pid());
        std::thread::sleep(Duration::from_millis(200));
        (a == fd_numbers(hawkey.pid())).then_some(a.len())
    });
    // 10 000 datagrams of 9 descriptors (the first release had room for 8
    // and leaked them all), then some of the most one may carry.
    let (code, out) = python(None, SEND_FDS, &[&path, "10000", "9"]);
    assert_eq!((code, out.trim()), (0, "10000"), "{out}");
    let (code, out) = python(None, SEND_FDS, &[&path, "100", "253"]);
    assert_eq!((code, out.trim()), (0, "100"), "{out}");
    // The master reads the channel dry on its next wake-ups. Descriptors
    // it kept of the 115 300 sent would show here (the first release kept
    // every one past the 8th of each datagram).
    wait_until(Duration::from_secs(20), "the master's fds back", || {
        (fd_numbers(hawkey.pid()).len() <= before).then_some(())
    });
    // Still serving, still in charge: both workers there and ready.
    assert_eq!(http_get(port, "/").unwrap().0, 200);
    let (code, out, err) = hawkey_cli(&["status"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2/2 workers ready"), "{out}");
    hawkey.stop_cleanly();
}

/// Joins the process group given (if the kernel lets it) and sends
/// `WATCHDOG=1` to the path every 100 ms, for `seconds`.
const IMPOSTOR: &str = r#"
import os, socket, sys, time
path, group, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    os.setpgid(0, group)
    print("joined", flush=True)
except OSError as e:
    print("not joined:", type(e).__name__, flush=True)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(path)
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        s.send(b"WATCHDOG=1\n")
    except BlockingIOError:
        pass
    time.sleep(0.1)
"#;

#[test]
fn a_process_outside_a_workers_tree_cannot_keep_it_alive() {
    let dir = TempDir::new("notify-impostor");
    let port = free_port();
    let config = write_config(
        &dir,
        &builtin_yaml(&dir, port, 1, "  app: builtin\n  heartbeat_timeout: 2s\n"),
    );
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let worker = hawkey.workers()[0];
    let path = notify_socket_of(worker);
    // The worker hangs; an impostor that got hold of its socket (same uid:
    // nothing stops that but the tree check) beats for it, from the
    // worker's process group if the kernel allows it to join.
    let group = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(worker))).unwrap();
    let impostor = std::thread::spawn({
        let path = path.clone();
        move || python(None, IMPOSTOR, &[&path, &group.to_string(), "8"])
    });
    // SAFETY: kill(2) on the worker's pid, a process of this test's tree.
    unsafe { libc::kill(worker, libc::SIGSTOP) };
    hawkey.wait_log(
        &format!("(pid {worker}) sent no heartbeat for 2s, killing it"),
        Duration::from_secs(15),
    );
    // The impostor may be gone with the worker's group (it joined it, as
    // the first release allowed): either way it was not heard.
    let (_code, out) = impostor.join().unwrap();
    assert!(out.contains("joined"), "the impostor never ran: {out}");
    // Its replacement is heard as usual.
    wait_until(READY_GUARD, "the replacement ready", || {
        (hawkey.count_log("is ready") >= 2).then_some(())
    });
    hawkey.stop_cleanly();
}

/// A pool of `count` built-in workers with 3 s heartbeats: every worker
/// ready, and none lost to a dropped message.
fn scale_yaml(dir: &TempDir, port: u16, count: usize) -> String {
    builtin_yaml(
        dir,
        port,
        count,
        "  app: builtin\n  heartbeat_timeout: 3s\n  ready_timeout: 120s\n",
    )
}

#[test]
fn at_64_workers_every_worker_is_ready() {
    let dir = TempDir::new("notify-64");
    let port = free_port();
    let config = write_config(&dir, &scale_yaml(&dir, port, 64));
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let (code, out, err) = hawkey_cli(&["status"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("64/64 workers ready"), "{out}");
    assert!(out.contains(" 0 restarts"), "{out}");
    hawkey.stop_cleanly();
}

/// The 256-worker tests one at a time: two such pools starting together
/// on 2 cores (a debug build, 256 Python interpreters beside 256 builtin
/// workers) starve each other for tens of seconds.
static ONE_BIG_POOL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A guard far above a start of 256 workers on a loaded 2-core machine.
const BIG_START_GUARD: Duration = Duration::from_secs(180);

/// `hawkey run -c CONFIG` with a notify socket, waited for (up to
/// [`BIG_START_GUARD`]) until READY=1.
fn start_big(dir: &TempDir, config: &std::path::Path) -> (Hawkey, NotifySocket) {
    let notify = NotifySocket::new(dir);
    let mut cmd = command(config);
    cmd.env("NOTIFY_SOCKET", &notify.path);
    let hawkey = Hawkey::spawn(cmd);
    notify.until("READY=1", BIG_START_GUARD);
    (hawkey, notify)
}

#[test]
#[ignore = "long tier: tests/run.sh runs it (cargo test -- --ignored)"]
fn at_256_workers_every_worker_is_ready_beats_for_a_minute_reloads_and_stops() {
    let _one = ONE_BIG_POOL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("notify-256");
    let port = free_port();
    let config = write_config(&dir, &scale_yaml(&dir, port, 256));
    let (mut hawkey, notify) = start_big(&dir, &config);
    let status = || {
        let (code, out, err) = hawkey_cli(&["status"], &config);
        assert_eq!(code, 0, "{err}");
        out
    };
    let out = status();
    assert!(out.contains("256/256 workers ready"), "{out}");
    let first = hawkey.workers();
    assert_eq!(first.len(), 256);
    // A minute of heartbeats, 256 workers each beating every second: not
    // one missed (a dropped WATCHDOG=1 would be a kill and a restart).
    std::thread::sleep(Duration::from_secs(60));
    assert_eq!(
        hawkey.count_log("sent no heartbeat"),
        0,
        "{}",
        hawkey.log_text()
    );
    let out = status();
    assert!(out.contains("256/256 workers ready"), "{out}");
    assert!(out.contains(" 0 restarts"), "{out}");
    // A rolling reload replaces every one of them.
    let (code, out, err) = hawkey_cli(&["reload", "--wait"], &config);
    assert_eq!(code, 0, "{out}{err}");
    let out = status();
    assert!(out.contains("256/256 workers ready, generation 2"), "{out}");
    let second = hawkey.workers();
    assert_eq!(
        second.len(),
        256,
        "the retired workers are gone once the reload finished"
    );
    assert!(first.iter().all(|pid| !second.contains(pid)));
    drop(notify);
    hawkey.signal(libc::SIGTERM);
    let exit = hawkey.wait_exit(Duration::from_secs(60));
    assert!(exit.success(), "{exit:?}");
    assert!(
        second.iter().all(|pid| !alive(*pid)),
        "a worker outlived the master"
    );
}

#[test]
#[ignore = "long tier: tests/run.sh runs it (cargo test -- --ignored)"]
fn at_256_exec_workers_every_worker_is_ready_and_stops() {
    let dir = TempDir::new("notify-256-exec");
    let port = free_port();
    let yaml = format!(
        "listen:\n  - {{name: http, address: '127.0.0.1:{port}'}}\nworkers:\n  count: 256\n  app: exec\n  ready: notify\n  ready_timeout: 120s\n  command: [python3, '{}']\npidfile: {}\n",
        python_app().display(),
        dir.join("hawkey.pid").display()
    );
    let config = write_config(&dir, &yaml);
    let _one = ONE_BIG_POOL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut hawkey, _notify) = start_big(&dir, &config);
    let (code, out, err) = hawkey_cli(&["status"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("256/256 workers ready"), "{out}");
    assert!(out.contains(" 0 restarts"), "{out}");
    let workers = hawkey.wait_workers(256, "python3", READY_GUARD);
    hawkey.signal(libc::SIGTERM);
    let exit = hawkey.wait_exit(Duration::from_secs(60));
    assert!(exit.success(), "{exit:?}");
    assert!(
        workers.iter().all(|pid| !alive(*pid)),
        "a worker outlived the master"
    );
}

/// For `seconds`, sends `WATCHDOG=1` as fast as the queues take it to
/// every socket in the directory (listed afresh, so sockets of workers
/// started meanwhile too); prints how many went and how many were
/// refused.
const FLOOD: &str = r#"
import os, socket, sys, time
dir, seconds = sys.argv[1], float(sys.argv[2])
sent = refused = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        names = os.listdir(dir)
    except OSError:
        names = [n for n in sys.argv[3:]]
    for name in names:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setblocking(False)
        try:
            s.connect(os.path.join(dir, name))
            for _ in range(200):
                s.send(b"WATCHDOG=1\nSTATUS=flood\n")
                sent += 1
        except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
            pass
        except PermissionError:
            refused += 1
        finally:
            s.close()
print(sent, refused)
"#;

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn notify_floods_during_heartbeats_and_a_reload_kill_no_healthy_worker() {
    require_root("notify_floods_during_heartbeats_and_a_reload_kill_no_healthy_worker");
    let dir = TempDir::new("notify-flood");
    let port = free_port();
    let config = write_config(
        &dir,
        &builtin_yaml(&dir, port, 2, "  app: builtin\n  heartbeat_timeout: 3s\n"),
    );
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let first = notify_socket_of(hawkey.workers()[0]);
    let channels = std::path::Path::new(&first).parent().unwrap().to_owned();
    let names: Vec<String> = std::fs::read_dir(&channels)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // Two floods from root (the workers' own uid: it can reach the
    // sockets, its messages are not credited), two from nobody (who cannot
    // list the directory, so is given the names).
    let floods: Vec<_> = [None, None, Some(65534), Some(65534)]
        .into_iter()
        .map(|uid| {
            let (channels, names) = (channels.clone(), names.clone());
            std::thread::spawn(move || {
                let mut args = vec![channels.to_str().unwrap().to_string(), "12".to_string()];
                args.extend(names);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                (uid, python(uid, FLOOD, &args))
            })
        })
        .collect();
    // Four heartbeat timeouts of flood, a reload in the middle of it.
    std::thread::sleep(Duration::from_secs(3));
    let (code, out, err) = hawkey_cli(&["reload", "--wait"], &config);
    assert_eq!(code, 0, "{out}{err}");
    for flood in floods {
        let (uid, (code, out)) = flood.join().unwrap();
        assert_eq!(code, 0, "{out}");
        let counts: Vec<u64> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
        match uid {
            None => assert!(counts[0] > 0, "the root flood sent nothing: {out}"),
            Some(_) => assert_eq!(counts[0], 0, "another uid reached a channel: {out}"),
        }
    }
    assert_eq!(
        hawkey.count_log("sent no heartbeat"),
        0,
        "{}",
        hawkey.log_text()
    );
    let (code, out, err) = hawkey_cli(&["status"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("2/2 workers ready, generation 2, 0 restarts"),
        "{out}"
    );
    assert!(
        !out.contains("flood"),
        "a flood's STATUS= was credited: {out}"
    );
    hawkey.stop_cleanly();
}

#[test]
fn status_escape_sequences_from_a_worker_never_reach_the_operators_terminal() {
    let dir = TempDir::new("notify-status-escape");
    let app = write_file(
        &dir,
        "app.py",
        "import os, socket, time\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.connect(os.environ['NOTIFY_SOCKET'])\n\
         s.send(b'READY=1\\nSTATUS=\\x1b]0;owned\\x07\\x1b[2Jcleared')\n\
         time.sleep(1000)\n",
    );
    let yaml = format!(
        "listen:\n  - {{name: http, address: '127.0.0.1:{}'}}\nworkers:\n  count: 1\n  app: exec\n  ready: notify\n  command: [python3, '{}']\npidfile: {}\n",
        free_port(),
        app.display(),
        dir.join("hawkey.pid").display()
    );
    let config = write_config(&dir, &yaml);
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let (code, out, err) = hawkey_cli(&["status"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("\\x1b]0;owned\\x07\\x1b[2Jcleared"), "{out}");
    hawkey.stop_cleanly();
}

/// `hawkey run -c CONFIG` under `ulimit` settings (a shell runs it).
fn run_with_limits(config: &std::path::Path, limits: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{limits}; exec \"$0\" run -c \"$1\""))
        .arg(BIN)
        .arg(config);
    plain_env(&mut cmd);
    cmd
}

/// `Max open files` of a process: (soft, hard).
fn fd_limits(pid: i32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_string(), fields[4].to_string())
}

#[test]
fn the_master_raises_its_fd_limit_and_workers_get_the_original_back() {
    let dir = TempDir::new("notify-nofile");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, "  app: builtin\n"));
    let (mut hawkey, _notify, _) = start_ready_with(
        &dir,
        run_with_limits(&config, "ulimit -S -n 1024; ulimit -H -n 4096"),
    );
    // The shell exec'd hawkey: same pid.
    assert_eq!(fd_limits(hawkey.pid()), ("4096".into(), "4096".into()));
    for worker in hawkey.workers() {
        assert_eq!(fd_limits(worker), ("1024".into(), "4096".into()));
    }
    assert_eq!(hawkey.count_log("fd limit"), 0, "{}", hawkey.log_text());
    hawkey.stop_cleanly();
}

#[test]
fn a_pool_larger_than_the_fd_limit_allows_is_warned_about() {
    let dir = TempDir::new("notify-nofile-low");
    let port = free_port();
    let config = write_config(&dir, &scale_yaml(&dir, port, 100));
    let (mut hawkey, _notify, _) =
        start_ready_with(&dir, run_with_limits(&config, "ulimit -n 256"));
    hawkey.wait_log(
        "the fd limit (256) may be too low for 100 workers (about 266 needed): raise LimitNOFILE=",
        Duration::from_secs(5),
    );
    // It still does what it can: here, everything.
    let (code, out, err) = hawkey_cli(&["status"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("100/100 workers ready"), "{out}");
    hawkey.stop_cleanly();
}

/// The Python that has the `sdnotify` package from PyPI: the venv
/// `tests/run.sh` makes (`target/test-venv`), or `HAWKEY_TEST_VENV`.
fn sdnotify_python() -> std::path::PathBuf {
    let venv = std::env::var_os("HAWKEY_TEST_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv")
        });
    let python = venv.join("bin/python3");
    let ok = Command::new(&python)
        .args(["-c", "import sdnotify"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} has no sdnotify: tests/run.sh installs it from PyPI (python3 -m venv target/test-venv && target/test-venv/bin/pip install sdnotify), or set HAWKEY_TEST_VENV",
        python.display()
    );
    python
}

/// A pool of 2 exec'd workers running `program` with the script `script`
/// (written to a file), `ready: notify`: READY=1 upstream means both were
/// heard; then heartbeats for two heartbeat timeouts, none missed.
fn two_ready_with(name: &str, program: &str, script: &str) {
    let dir = TempDir::new(name);
    let app = write_file(&dir, "app", script);
    let yaml = format!(
        "listen:\n  - {{name: http, address: '127.0.0.1:{}'}}\nworkers:\n  count: 2\n  app: exec\n  ready: notify\n  heartbeat_timeout: 2s\n  command: ['{program}', '{}']\npidfile: {}\n",
        free_port(),
        app.display(),
        dir.join("hawkey.pid").display()
    );
    let config = write_config(&dir, &yaml);
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    std::thread::sleep(Duration::from_secs(5));
    let (code, out, err) = hawkey_cli(&["status"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("2/2 workers ready, generation 1, 0 restarts"),
        "{name}: {out}\n{}",
        hawkey.log_text()
    );
    hawkey.stop_cleanly();
}

#[test]
#[ignore = "long tier: tests/run.sh runs it (cargo test -- --ignored)"]
fn standard_sd_notify_clients_reach_their_channel() {
    // PyPI's sdnotify (its own socket code).
    let python = sdnotify_python();
    two_ready_with(
        "notify-sdnotify",
        python.to_str().unwrap(),
        "import sdnotify, time\n\
         n = sdnotify.SystemdNotifier(debug=True)\n\
         n.notify('READY=1')\n\
         while True:\n    n.notify('WATCHDOG=1')\n    time.sleep(0.5)\n",
    );
    // libsystemd's sd_notify(3), through Debian's python3-systemd.
    two_ready_with(
        "notify-libsystemd",
        "/usr/bin/python3",
        "from systemd import daemon\nimport time\n\
         assert daemon.notify('READY=1')\n\
         while True:\n    daemon.notify('WATCHDOG=1')\n    time.sleep(0.5)\n",
    );
    // systemd-notify(1), run by a shell that stays the worker.
    two_ready_with(
        "notify-systemd-notify",
        "sh",
        "systemd-notify --ready\nwhile :; do systemd-notify WATCHDOG=1; sleep 0.5; done\n",
    );
}

/// The datagrams a SIGHUP brings, up to the `READY=1` that ends its
/// reload: what systemd's `Type=notify-reload` waits for.
fn sighup_messages(hawkey: &Hawkey, notify: &NotifySocket) -> Vec<String> {
    notify.drain();
    hawkey.signal(libc::SIGHUP);
    let messages = notify.until("READY=1", Duration::from_secs(30));
    let reloading = messages
        .iter()
        .position(|m| m.starts_with("RELOADING=1\nMONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no RELOADING=1 with MONOTONIC_USEC: {messages:?}"));
    let usec: u64 = messages[reloading]
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("MONOTONIC_USEC is no number: {messages:?}"));
    assert!(usec > 0, "{messages:?}");
    let ready = messages.len() - 1;
    assert!(
        reloading < ready,
        "READY=1 before RELOADING=1: {messages:?}"
    );
    messages
}

#[test]
fn a_sighup_with_a_valid_config_is_announced_reloading_then_ready() {
    let dir = TempDir::new("notify-reload-good");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, ""));
    let (mut hawkey, notify, _) = start_ready(&dir, &config);
    let messages = sighup_messages(&hawkey, &notify);
    let last = messages.last().unwrap();
    assert!(
        last.contains("STATUS=2/2 workers ready, generation 2"),
        "{messages:?}"
    );
    hawkey.stop_cleanly();
}

#[test]
fn a_sighup_with_an_invalid_config_is_announced_reloading_then_ready_with_the_error() {
    let dir = TempDir::new("notify-reload-bad");
    let port = free_port();
    let good = builtin_yaml(&dir, port, 2, "");
    let config = write_config(&dir, &good);
    let (mut hawkey, notify, _) = start_ready(&dir, &config);
    let before = hawkey.workers();
    std::fs::write(&config, good.replace("count: 2", "count: lots")).unwrap();
    let messages = sighup_messages(&hawkey, &notify);
    let last = messages.last().unwrap();
    assert!(
        last.contains("STATUS=2/2 workers ready, generation 1")
            && last.contains("last reload failed"),
        "{messages:?}"
    );
    // Nothing was touched, and the pool still serves.
    assert_eq!(hawkey.workers(), before);
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
    hawkey.stop_cleanly();
}

#[test]
fn a_sighup_during_a_reload_is_announced_and_ended_by_that_reloads_ready() {
    let dir = TempDir::new("notify-reload-twice");
    let port = free_port();
    // Workers ready 2 s after they start: the second SIGHUP comes while
    // the first one's reload waits for them.
    let extra = format!(
        "  app: exec\n  ready: notify\n  command: [sh, -c, 'sleep 2; exec python3 {}']\n",
        python_app().display()
    );
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, &extra));
    let (mut hawkey, notify, _) = start_ready(&dir, &config);
    notify.drain();
    hawkey.signal(libc::SIGHUP);
    let mut messages = notify.until("RELOADING=1", Duration::from_secs(10));
    hawkey.signal(libc::SIGHUP);
    messages.extend(notify.until("READY=1", Duration::from_secs(30)));
    let announced = messages
        .iter()
        .filter(|m| m.starts_with("RELOADING=1\nMONOTONIC_USEC="))
        .count();
    assert_eq!(announced, 2, "one RELOADING=1 per SIGHUP: {messages:?}");
    assert!(
        messages.last().unwrap().contains("generation 2"),
        "one reload, ended by READY=1: {messages:?}"
    );
    hawkey.stop_cleanly();
}
