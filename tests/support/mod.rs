//! Shared helpers for the integration tests: run the real `hawkey` binary in
//! a temp dir with real signals, wait on deadlines (never fixed sleeps),
//! inspect processes through /proc, read a real datagram `NOTIFY_SOCKET`.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hawkey");

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A unique temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("hawkey-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port on 127.0.0.1 that is this test's alone.
///
/// Picking a port with `bind(:0)` and releasing it races: until hawkey binds
/// it, the kernel may hand the same port to anyone's `bind(:0)` or outgoing
/// connection (a load generator's, another test's). So ports come from
/// below the kernel's ephemeral range (`ip_local_port_range`), which it
/// never hands out by itself, and each is reserved across processes by a
/// `flock(2)` on a file named after it (in a directory of this uid's),
/// held until this test process exits; one process never gets a port twice.
/// tests/recipes/run.py takes its ports the same way.
pub fn free_port() -> u16 {
    static TAKEN: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let mut taken = TAKEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = port_directory();
    let (low, high) = port_range();
    let span = u32::from(high - low);
    // Start where another process is unlikely to be.
    let start = std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(taken.len() as u32)
        % span;
    for i in 0..span {
        let port = low + ((start + i) % span) as u16;
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
        else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        // Not in use by something outside the suite either.
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        taken.push(file);
        return port;
    }
    panic!("no free port in {low}..{high} that no other test holds");
}

/// The ports tests take: [10000, start of the ephemeral range).
fn port_range() -> (u16, u16) {
    let range =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let ephemeral_low = range
        .split_whitespace()
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(32768);
    assert!(
        ephemeral_low > 12000,
        "ip_local_port_range starts at {ephemeral_low}: the tests need ports 10000..12000 outside it"
    );
    (10000, ephemeral_low)
}

/// `$TMPDIR/hawkey-test-ports-UID`, this uid's own (never a link or a
/// directory someone else made).
fn port_directory() -> PathBuf {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    // SAFETY: geteuid(2) cannot fail.
    let uid = unsafe { libc::geteuid() };
    let dir = std::env::temp_dir().join(format!("hawkey-test-ports-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    let meta = std::fs::symlink_metadata(&dir).expect("the test ports directory");
    assert!(
        meta.is_dir() && meta.uid() == uid && meta.mode() & 0o022 == 0,
        "{} is not a private directory of uid {uid}: remove it",
        dir.display()
    );
    dir
}

/// A datagram socket standing in for systemd's notify socket.
pub struct NotifySocket {
    pub path: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    pub fn new(dir: &TempDir) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        NotifySocket { path, socket }
    }

    /// The next datagram, if one arrives within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        None
    }

    /// Every datagram already queued, without waiting.
    pub fn drain(&self) -> Vec<String> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        self.socket.set_nonblocking(true).unwrap();
        while let Ok(n) = self.socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.socket.set_nonblocking(false).unwrap();
        got
    }

    /// Datagrams until one contains `needle` (which is included).
    pub fn until(&self, needle: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while Instant::now() < deadline {
            if let Some(m) = self.recv(Duration::from_millis(100)) {
                let done = m.contains(needle);
                got.push(m);
                if done {
                    return got;
                }
            }
        }
        panic!("no notify message with {needle:?} within {timeout:?}; got {got:?}");
    }
}

/// A running `hawkey` with its stderr captured line by line.
pub struct Hawkey {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// `cmd` with the environment of a plain shell: nothing from systemd, no
/// `HAWKEY_CONFIG`, no colour.
pub fn plain_env(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("JOURNAL_STREAM")
        .env_remove("HAWKEY_CONFIG")
        .env_remove("INVOCATION_ID")
        .env("NO_COLOR", "1")
}

/// `hawkey ARGS` in a plain environment ([`plain_env`]).
pub fn hawkey_command(args: &[&str]) -> Command {
    // Exec'd workers get the preload library by default: run hawkey as
    // shipped, with the library beside it.
    preload_built();
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    plain_env(&mut cmd);
    cmd
}

/// The preload library beside the hawkey binary under test
/// (`target/<profile>/libhawkey_preload.so`, where hawkey finds it), built
/// once per test binary: `cargo test` builds hawkey's targets, not the
/// library's `cdylib`.
pub fn preload_built() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let profile_dir = Path::new(BIN).parent().unwrap();
            let release = profile_dir.file_name() == Some("release".as_ref());
            let mut cargo = Command::new(env!("CARGO"));
            cargo
                .args(["build", "-j", "1", "-p", "hawkey-preload"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if release {
                cargo.arg("--release");
            }
            let status = cargo
                .status()
                .expect("run cargo to build the preload library");
            assert!(status.success(), "building hawkey-preload failed");
            let library = profile_dir.join("libhawkey_preload.so");
            assert!(library.is_file(), "{} was not built", library.display());
            library
        })
        .clone()
}

/// The built example `NAME` (target/debug/examples/NAME).
pub fn example(name: &str) -> PathBuf {
    // target/debug/deps/TEST-HASH -> target/debug/examples/NAME
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build --examples` (plain `cargo test` also builds it; `--all-targets` alone does not)",
        path.display()
    );
    path
}

/// `hawkey run -c CONFIG` in a plain environment.
pub fn command(config: &Path) -> Command {
    let mut cmd = hawkey_command(&["run", "-c"]);
    cmd.arg(config);
    cmd
}

/// A hang guard for a start up to READY=1, far above any start's time.
pub const READY_GUARD: Duration = Duration::from_secs(30);
/// A hang guard for a stop, far above any `stop_timeout` the tests set.
pub const STOP_GUARD: Duration = Duration::from_secs(20);

/// Runs `cmd` (a `hawkey run`) with a notify socket in `dir` and waits
/// for READY=1: the running hawkey, the socket, and the datagrams up to
/// and including READY=1.
pub fn start_ready_with(dir: &TempDir, mut cmd: Command) -> (Hawkey, NotifySocket, Vec<String>) {
    let notify = NotifySocket::new(dir);
    cmd.env("NOTIFY_SOCKET", &notify.path);
    let hawkey = Hawkey::spawn(cmd);
    let messages = notify.until("READY=1", READY_GUARD);
    (hawkey, notify, messages)
}

/// [`start_ready_with`] for `hawkey run -c CONFIG`.
pub fn start_ready(dir: &TempDir, config: &Path) -> (Hawkey, NotifySocket, Vec<String>) {
    start_ready_with(dir, command(config))
}

/// A builtin pool on 127.0.0.1:`port` with `count` workers, `extra`
/// lines under `workers:`, and the pidfile (so the control socket) in
/// `dir`.
pub fn builtin_yaml(dir: &TempDir, port: u16, count: usize, extra: &str) -> String {
    format!(
        "listen:\n  - {{name: http, address: '127.0.0.1:{port}'}}\nworkers:\n  count: {count}\n  stop_timeout: 10s\n{extra}pidfile: {}\n",
        dir.join("hawkey.pid").display()
    )
}

/// The names in `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

impl Hawkey {
    pub fn start(config: &Path) -> Hawkey {
        Hawkey::spawn(command(config))
    }

    pub fn spawn(mut cmd: Command) -> Hawkey {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start hawkey");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Hawkey {
            child,
            log,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits for a log line containing `needle`; on timeout, fails with
    /// the whole log so far.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count_log(needle) == 0 {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for log line {needle:?}; the log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn count_log(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// SIGTERM, then a clean exit (status 0) within [`STOP_GUARD`].
    pub fn stop_cleanly(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(STOP_GUARD);
        assert_eq!(status.code(), Some(0), "{}", self.log_text());
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let status = wait_until(timeout, "hawkey to exit", || self.child.try_wait().unwrap());
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }

    /// Live worker pids (children of the master), sorted.
    pub fn workers(&self) -> Vec<i32> {
        children_of(self.pid())
    }

    /// Waits until `n` workers have exec'd `comm` (not still a fork of the master).
    pub fn wait_workers(&self, n: usize, comm: &str, timeout: Duration) -> Vec<i32> {
        let what = format!("{n} workers running {comm} (log so far below)");
        let log = self.log.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(timeout, &what, || {
                let pids: Vec<i32> = self
                    .workers()
                    .into_iter()
                    .filter(|p| proc_comm(*p).as_deref() == Some(comm))
                    .collect();
                (pids.len() == n).then_some(pids)
            })
        }));
        match result {
            Ok(pids) => pids,
            Err(_) => {
                let log = log.lock().unwrap();
                let tail = &log[log.len().saturating_sub(30)..];
                panic!(
                    "timed out waiting for {n} workers running {comm}; children {:?}; log tail:\n{}",
                    self.workers(),
                    tail.join("\n")
                )
            }
        }
    }
}

impl Drop for Hawkey {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Pids whose parent is `parent`, from /proc, sorted; zombies included.
pub fn children_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if proc_stat(pid).is_some_and(|(ppid, _)| ppid == parent) {
            out.push(pid);
        }
    }
    out.sort();
    out
}

/// (ppid, state) from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// The master's voluntary context switches so far: each sleep in poll
/// that ends is one.
pub fn switches(pid: i32) -> u64 {
    proc_status(pid, "voluntary_ctxt_switches")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Waits until `pid` sleeps in `poll(2)` with no deadline sooner than
/// `beyond` (or none at all), with nothing pending that would wake it: the
/// event an idle-master test measures from, where a fixed sleep would
/// guess it (and guess wrong on a loaded machine). Read from
/// `/proc/PID/syscall` (x86_64's poll: number 7, timeout the third
/// argument, in ms) and the task's state, twice with no wake-up between.
pub fn wait_until_asleep_without_deadline(pid: i32, beyond: Duration) {
    let asleep = || {
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
        let mut fields = syscall.split_whitespace();
        let number: i64 = fields.next()?.parse().ok()?;
        let timeout = fields.nth(2)?;
        let timeout = u64::from_str_radix(timeout.trim_start_matches("0x"), 16).ok()? as u32 as i32;
        let long_enough =
            number == 7 && (timeout < 0 || u128::from(timeout as u32) > beyond.as_millis());
        (long_enough && proc_stat(pid)?.1 == 'S').then_some(())
    };
    const {
        assert!(
            cfg!(target_arch = "x86_64"),
            "reads x86_64's syscall numbers from /proc/PID/syscall"
        )
    };
    wait_until(
        Duration::from_secs(30),
        "the master to sleep without a deadline",
        || {
            let before = switches(pid);
            asleep()?;
            std::thread::sleep(Duration::from_millis(50));
            asleep()?;
            (switches(pid) == before).then_some(())
        },
    );
}

pub fn proc_comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

pub fn alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|(_, state)| state != 'Z')
}

/// A `Field:` line of /proc/PID/status.
pub fn proc_status(pid: i32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(&format!("{field}:"))
            .map(|v| v.trim().to_string())
    })
}

pub fn proc_environ(pid: i32) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let e = String::from_utf8_lossy(e);
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

pub fn env_of(pid: i32, name: &str) -> Option<String> {
    proc_environ(pid)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// fd number -> link target of /proc/PID/fd.
pub fn proc_fds(pid: i32) -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().parse().ok()?;
                    let target = std::fs::read_link(e.path()).ok()?;
                    Some((n, target.to_string_lossy().into_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    fds
}

pub fn fd_numbers(pid: i32) -> BTreeSet<i32> {
    proc_fds(pid).into_iter().map(|(n, _)| n).collect()
}

/// One HTTP/1.1 GET over a new connection: (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(35)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    parse_response(&response)
}

pub fn parse_response(response: &str) -> std::io::Result<(u16, String)> {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Every datagram until the next READY=1, asserting the pool never showed
/// fewer than `n` ready workers.
pub fn reload_messages(notify: &NotifySocket, n: usize) -> Vec<String> {
    let messages = notify.until("READY=1", Duration::from_secs(30));
    for m in &messages {
        if let Some(status) = m.lines().find_map(|l| l.strip_prefix("STATUS=")) {
            let ready: usize = status.split('/').next().unwrap().parse().unwrap();
            assert!(ready >= n, "fewer than {n} ready during a reload: {status}");
        }
    }
    messages
}

/// Writes `dir/name` and returns its path.
pub fn write_file(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes a config file and returns its path.
pub fn write_config(dir: &TempDir, yaml: &str) -> PathBuf {
    write_file(dir, "hawkey.yaml", yaml)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `program` as `uid` (its gid the same number) with no supplementary
/// groups, through `setpriv`: the test's other local user (65534 is
/// `nobody`). Needs root.
pub fn as_uid(uid: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", "--"])
        .arg(program);
    cmd
}

/// Tests that need root fail, loudly, without it: a test that cannot run
/// is never counted as passed. The suite's command runs as root.
pub fn require_root(test: &str) {
    assert!(
        is_root(),
        "{test} needs root: run the test suite as root (see README)"
    );
}

/// What a load run saw, counted exactly.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub ok: u64,
    /// connect(2) failed: the listening socket refused or was gone.
    pub connect_errors: u64,
    /// Connected, but no complete 2xx response (reset, timeout, non-2xx).
    pub failed: u64,
}

/// Background load on loopback: `threads` clients each sending GET `path`
/// on a new connection per request, until [`Load::finish`] (and never
/// longer than `limit`, so a forgotten load cannot run on).
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handles: Vec<std::thread::JoinHandle<Counts>>,
}

impl Load {
    pub fn start(port: u16, threads: usize, path: &str, limit: Duration) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                let path = path.to_string();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    let mut counts = Counts::default();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && started.elapsed() < limit
                    {
                        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                            counts.connect_errors += 1;
                            continue;
                        };
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        let request =
                            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                        let mut response = String::new();
                        let good = stream.write_all(request.as_bytes()).is_ok()
                            && stream.read_to_string(&mut response).is_ok()
                            && parse_response(&response)
                                .is_ok_and(|(status, _)| (200..300).contains(&status));
                        if good {
                            counts.ok += 1;
                        } else {
                            counts.failed += 1;
                        }
                    }
                    counts
                })
            })
            .collect();
        Load { stop, handles }
    }

    pub fn finish(self) -> Counts {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = Counts::default();
        for handle in self.handles {
            let c = handle.join().unwrap();
            total.ok += c.ok;
            total.connect_errors += c.connect_errors;
            total.failed += c.failed;
        }
        total
    }
}

/// Runs `hawkey ARGS -c CONFIG` to completion: (exit code, stdout, stderr).
pub fn hawkey_cli(args: &[&str], config: &Path) -> (i32, String, String) {
    cli_output(&mut cli_command(args, config))
}

/// `hawkey ARGS -c CONFIG` without `HAWKEY_CONFIG` and `NOTIFY_SOCKET`.
pub fn cli_command(args: &[&str], config: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("-c")
        .arg(config)
        .env_remove("HAWKEY_CONFIG")
        .env_remove("NOTIFY_SOCKET");
    cmd
}

/// Runs `cmd` to completion, stdin from /dev/null: (exit code, or -1 if
/// killed by a signal; stdout; stderr).
pub fn cli_output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The exec'd Python test app (tests/fixtures/app.py).
pub fn python_app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/app.py")
}
