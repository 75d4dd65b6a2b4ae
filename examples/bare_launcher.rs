//! `bare_launcher`: the physical limit hawkey's data path is measured
//! against (P1, docs/goals.md), used by `bench/run.sh`. Not part of hawkey.
//!
//! It binds ADDR once, then forks N copies of a program that inherit the
//! listening socket exactly as hawkey's workers do — and does nothing else:
//! no configuration, no supervision, no respawn, no logging, no control
//! socket. What remains is the cost every pre-fork server pays (N processes
//! accepting on one shared socket), so "app under hawkey / app under
//! `bare_launcher`" is hawkey's own overhead.
//!
//! ```sh
//! bare_launcher [--role-worker] [--wait-exec] [--wait-ready] [--backlog N] ADDR N PROGRAM [ARGS...]
//! # the hawkey binary itself, as N builtin workers, minus the master:
//! HAWKEY_LOG=warn/text bare_launcher --role-worker 127.0.0.1:8080 2 target/release/hawkey
//! ```
//!
//! Each child gets, as from hawkey (`src/spawn.rs`, `src/child.rs`):
//! the listener at fd 3 and no other fd but 0 (`/dev/null`), 1 and 2;
//! `LISTEN_FDS=1`, `LISTEN_FDNAMES=http`, `LISTEN_PID` = its own pid (written
//! into a buffer prepared before `fork`, with async-signal-safe calls only);
//! `HAWKEY_WORKER=i`, `HAWKEY_GENERATION=1`; with `--role-worker` also
//! `HAWKEY_ROLE=worker`, so the hawkey binary runs as a builtin worker;
//! its own process group, an empty signal mask and `PR_SET_PDEATHSIG=SIGKILL`.
//! The rest of the launcher's environment passes through, minus `LISTEN_*`,
//! `NOTIFY_SOCKET`, `WATCHDOG_*` and `HAWKEY_{WORKER,GENERATION,ROLE}`
//! (`HAWKEY_LOG` passes, to give builtin workers hawkey's log level).
//!
//! `--wait-ready` gives the children a `NOTIFY_SOCKET` of the launcher's own
//! (`@bare-launcher/<pid>/notify`, `SO_PASSCRED`) and waits for `READY=1`
//! from each: once all are ready it prints one JSON line on stderr (each
//! worker's fork → `READY=1` in µs: the app's own boot) and, if the launcher
//! itself was given a `NOTIFY_SOCKET`, sends `READY=1` there — so start →
//! `READY=1` is measured the same way for hawkey and for the limit.
//! Without it, the launcher is "ready" as soon as it has forked.
//!
//! `--wait-exec` waits, after each fork, until the child's `execve` has
//! succeeded (end of file on a close-on-exec pipe), exactly as hawkey's
//! `spawn` does, and prints the whole spawn loop's duration on stderr: the
//! operating system's cost of starting N exec'd workers one by one.
//!
//! SIGTERM or SIGINT: SIGTERM to every child, SIGKILL to what is left after
//! 5 s, exit 0. A child that dies is reported on stderr and not replaced;
//! when none is left the launcher exits 1.

use std::collections::HashMap;
use std::ffi::{CString, OsString, c_char};
use std::io::IoSliceMut;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Room for a pid's digits in `LISTEN_PID=`.
const PID_ROOM: usize = 20;

/// Environment names the launcher sets itself or never passes on.
const FILTERED: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "HAWKEY_WORKER",
    "HAWKEY_GENERATION",
    "HAWKEY_ROLE",
];

struct Options {
    role_worker: bool,
    wait_exec: bool,
    wait_ready: bool,
    backlog: i32,
    addr: String,
    count: usize,
    command: Vec<OsString>,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: bare_launcher [--role-worker] [--wait-exec] [--wait-ready] [--backlog N] ADDR N PROGRAM [ARGS...]"
    );
    ExitCode::from(64)
}

fn parse_args() -> Option<Options> {
    let mut args = std::env::args_os().skip(1).peekable();
    let mut role_worker = false;
    let mut wait_exec = false;
    let mut wait_ready = false;
    let mut backlog = 1024;
    while let Some(flag) = args.peek().and_then(|a| a.to_str()).map(str::to_owned) {
        match flag.as_str() {
            "--role-worker" => role_worker = true,
            "--wait-exec" => wait_exec = true,
            "--wait-ready" => wait_ready = true,
            "--backlog" => {
                args.next();
                backlog = args.peek()?.to_str()?.parse().ok()?;
            }
            _ => break,
        }
        args.next();
    }
    let addr = args.next()?.into_string().ok()?;
    let count = args.next()?.to_str()?.parse().ok().filter(|n| *n > 0)?;
    let command: Vec<OsString> = args.collect();
    if command.is_empty() {
        return None;
    }
    Some(Options {
        role_worker,
        wait_exec,
        wait_ready,
        backlog,
        addr,
        count,
        command,
    })
}

/// `PROGRAM` as `execve` needs it: a path, looked up in `PATH` when it has no `/`.
fn resolve(program: &OsString) -> OsString {
    if program.as_bytes().contains(&b'/') {
        return program.clone();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .map(|p| p.into_os_string())
        .unwrap_or_else(|| program.clone())
}

fn cstring(bytes: Vec<u8>) -> CString {
    CString::new(bytes).expect("arguments and environment hold no NUL byte")
}

/// One child, as the launcher knows it.
struct Child {
    slot: usize,
    forked: Instant,
    ready_us: Option<u128>,
}

fn main() -> ExitCode {
    let Some(options) = parse_args() else {
        return usage();
    };
    let started = Instant::now();
    let signals = block_signals();
    let Some(listener) = bind(&options) else {
        return ExitCode::from(1);
    };
    let upstream = std::env::var_os("NOTIFY_SOCKET");
    let inbox = options.wait_ready.then(open_inbox);
    let prepared = Prepared::new(&options, inbox.as_ref().map(|(_, name)| name.as_str()));
    let children = spawn_all(&options, &prepared, &listener, started);
    if children.is_empty() {
        return ExitCode::from(1);
    }
    supervise(children, &signals, inbox, upstream, started)
}

/// Signals are read from a signalfd: block them first. Children get an
/// empty mask back before exec.
fn block_signals() -> SignalFd {
    let mut mask = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGCHLD,
        Signal::SIGHUP,
    ] {
        mask.add(signal);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).expect("block signals");
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).expect("signalfd")
}

/// The listener, with hawkey's default backlog; `None` (said why) if it
/// cannot be had.
fn bind(options: &Options) -> Option<TcpListener> {
    let listener = match TcpListener::bind(&options.addr) {
        Ok(l) => l,
        Err(error) => {
            eprintln!("bare_launcher: failed to bind '{}': {error}", options.addr);
            return None;
        }
    };
    // The same backlog as hawkey's default (`listen[].backlog: 1024`);
    // listen(2) on a listening socket just updates it.
    // SAFETY: listen(2) on a socket we own.
    if unsafe { libc::listen(listener.as_raw_fd(), options.backlog) } != 0 {
        eprintln!("bare_launcher: listen: {}", std::io::Error::last_os_error());
        return None;
    }
    Some(listener)
}

/// The children's notify socket (`--wait-ready`), and its name.
fn open_inbox() -> (UnixDatagram, String) {
    let name = format!("bare-launcher/{}/notify", std::process::id());
    let socket = UnixDatagram::bind_addr(
        &SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name"),
    )
    .expect("bind the notify socket");
    socket.set_nonblocking(true).expect("non-blocking");
    setsockopt(&socket, sockopt::PassCred, &true).expect("SO_PASSCRED");
    (socket, format!("@{name}"))
}

/// Everything the children need, prepared before the first fork.
struct Prepared {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    slot_entries: Vec<CString>,
    devnull: std::fs::File,
}

impl Prepared {
    fn new(options: &Options, notify: Option<&str>) -> Prepared {
        let mut env: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| !FILTERED.iter().any(|f| k.as_bytes() == f.as_bytes()))
            .map(|(k, v)| {
                let mut e = k.into_vec();
                e.push(b'=');
                e.extend_from_slice(v.as_bytes());
                cstring(e)
            })
            .collect();
        for fixed in ["LISTEN_FDS=1", "LISTEN_FDNAMES=http", "HAWKEY_GENERATION=1"] {
            env.push(cstring(fixed.into()));
        }
        if options.role_worker {
            env.push(cstring(b"HAWKEY_ROLE=worker".to_vec()));
        }
        if let Some(name) = notify {
            env.push(cstring(format!("NOTIFY_SOCKET={name}").into_bytes()));
        }
        Prepared {
            program: cstring(resolve(&options.command[0]).into_vec()),
            argv: options
                .command
                .iter()
                .map(|a| cstring(a.as_bytes().to_vec()))
                .collect(),
            env,
            slot_entries: (0..options.count)
                .map(|i| cstring(format!("HAWKEY_WORKER={i}").into_bytes()))
                .collect(),
            devnull: std::fs::File::open("/dev/null").expect("open /dev/null"),
        }
    }
}

/// Forks one child per slot; the children, by pid.
fn spawn_all(
    options: &Options,
    prepared: &Prepared,
    listener: &TcpListener,
    started: Instant,
) -> HashMap<i32, Child> {
    let mut argv: Vec<*const c_char> = prepared.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let parent = std::process::id() as libc::pid_t;
    let listen_fd = listener.as_raw_fd();
    let mut children: HashMap<i32, Child> = HashMap::new();
    let first_fork = Instant::now();
    for (slot, slot_entry) in prepared.slot_entries.iter().enumerate() {
        // With --wait-exec: the child holds the write end until execve
        // closes it (close-on-exec), so end of file means it has executed.
        let exec_pipe = if options.wait_exec {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2");
            Some((std::fs::File::from(read), write))
        } else {
            None
        };
        let mut pid_entry = b"LISTEN_PID=".to_vec();
        let pid_at = pid_entry.len();
        pid_entry.resize(pid_at + PID_ROOM + 1, 0);
        let mut envp: Vec<*const c_char> = prepared.env.iter().map(|e| e.as_ptr()).collect();
        envp.push(slot_entry.as_ptr());
        envp.push(pid_entry.as_ptr().cast());
        envp.push(std::ptr::null());
        // SAFETY: `pid_at` is inside `pid_entry`, which has PID_ROOM bytes
        // and a NUL after it and outlives the fork.
        let pid_place = unsafe { pid_entry.as_mut_ptr().add(pid_at) };
        let forked = Instant::now();
        // SAFETY: the launcher is single-threaded; the child only runs
        // `child`, which makes async-signal-safe calls over data prepared
        // above and ends in execve or _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            eprintln!("bare_launcher: fork: {}", std::io::Error::last_os_error());
            break;
        }
        if pid == 0 {
            // SAFETY: we are the forked child; every pointer is valid here.
            unsafe {
                child(ChildPlan {
                    program: prepared.program.as_ptr(),
                    argv: argv.as_ptr(),
                    envp: envp.as_ptr(),
                    pid_place,
                    listener: listen_fd,
                    stdin: prepared.devnull.as_raw_fd(),
                    parent,
                })
            }
        }
        if let Some((mut read, write)) = exec_pipe {
            drop(write);
            let mut byte = [0u8; 1];
            while matches!(std::io::Read::read(&mut read, &mut byte), Ok(n) if n > 0) {}
        }
        children.insert(
            pid,
            Child {
                slot,
                forked,
                ready_us: None,
            },
        );
        drop(pid_entry);
    }
    if options.wait_exec {
        eprintln!(
            "{{\"bare_spawned\":{{\"workers\":{},\"since_start_us\":{},\"spawn_loop_us\":{}}}}}",
            children.len(),
            started.elapsed().as_micros(),
            first_fork.elapsed().as_micros()
        );
    }
    children
}

/// The launcher's loop: readiness, signals and exits, until every child
/// is gone.
fn supervise(
    mut children: HashMap<i32, Child>,
    signals: &SignalFd,
    inbox: Option<(UnixDatagram, String)>,
    upstream: Option<OsString>,
    started: Instant,
) -> ExitCode {
    let mut all_ready = inbox.is_none();
    if all_ready {
        announce_ready(upstream.as_ref());
    }
    let mut stopping: Option<Instant> = None;
    loop {
        let timeout = stop_timeout(stopping, &children);
        {
            let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            if let Some((socket, _)) = &inbox {
                fds.push(PollFd::new(socket.as_fd(), PollFlags::POLLIN));
            }
            let _ = poll(&mut fds, timeout);
        }
        if let Some((socket, _)) = &inbox {
            note_ready(socket, &mut children);
            if !all_ready && children.values().all(|c| c.ready_us.is_some()) {
                all_ready = true;
                print_boots(&children, started);
                announce_ready(upstream.as_ref());
            }
        }
        while let Ok(Some(info)) = signals.read_signal() {
            let signo = info.ssi_signo as i32;
            if (signo == libc::SIGTERM || signo == libc::SIGINT) && stopping.is_none() {
                stopping = Some(Instant::now());
                for pid in children.keys() {
                    // SAFETY: kill(2) of our own child.
                    unsafe { libc::kill(*pid, libc::SIGTERM) };
                }
            }
        }
        reap(&mut children, stopping.is_some());
        if children.is_empty() {
            return ExitCode::from(if stopping.is_some() { 0 } else { 1 });
        }
    }
}

/// The poll timeout: none until stopping; then the rest of the 5 s grace,
/// after which every child is killed.
fn stop_timeout(stopping: Option<Instant>, children: &HashMap<i32, Child>) -> PollTimeout {
    let Some(since) = stopping else {
        return PollTimeout::NONE;
    };
    let left = Duration::from_secs(5).saturating_sub(since.elapsed());
    if left.is_zero() {
        for pid in children.keys() {
            // SAFETY: kill(2) of our own child.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        PollTimeout::from(100u16)
    } else {
        PollTimeout::try_from(left.as_millis() as i32 + 1).unwrap_or(PollTimeout::MAX)
    }
}

/// Notes the children that said `READY=1`.
fn note_ready(socket: &UnixDatagram, children: &mut HashMap<i32, Child>) {
    for (sender, ready) in drain(socket) {
        if !ready {
            continue;
        }
        if let Some(child) = children.get_mut(&sender)
            && child.ready_us.is_none()
        {
            child.ready_us = Some(child.forked.elapsed().as_micros());
        }
    }
}

/// Every child is ready: their fork-to-ready times, as one JSON line.
fn print_boots(children: &HashMap<i32, Child>, started: Instant) {
    let mut boots: Vec<(usize, u128)> = children
        .values()
        .map(|c| (c.slot, c.ready_us.unwrap_or(0)))
        .collect();
    boots.sort();
    let list: Vec<String> = boots.iter().map(|(_, us)| us.to_string()).collect();
    eprintln!(
        "{{\"bare_ready\":{{\"workers\":{},\"since_start_us\":{},\"fork_to_ready_us\":[{}]}}}}",
        children.len(),
        started.elapsed().as_micros(),
        list.join(",")
    );
}

/// Reaps every exited child; one that ends while not stopping is said so.
fn reap(children: &mut HashMap<i32, Child>, stopping: bool) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(status) => {
                let Some(pid) = status.pid() else { break };
                if let Some(child) = children.remove(&pid.as_raw())
                    && !stopping
                {
                    eprintln!(
                        "bare_launcher: worker {} (pid {pid}) ended: {status:?}; not replaced",
                        child.slot
                    );
                }
            }
        }
    }
}

fn announce_ready(upstream: Option<&OsString>) {
    let Some(name) = upstream.filter(|n| !n.is_empty()) else {
        return;
    };
    let bytes = name.as_bytes();
    let addr = match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        _ => SocketAddr::from_pathname(name),
    };
    let message = format!("READY=1\nMAINPID={}\n", std::process::id());
    if let (Ok(addr), Ok(socket)) = (addr, UnixDatagram::unbound()) {
        let _ = socket.send_to_addr(message.as_bytes(), &addr);
    }
}

/// Every queued datagram: (sender pid, whether it said `READY=1`).
fn drain(socket: &UnixDatagram) -> Vec<(i32, bool)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let Ok(msg) = recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT,
        ) else {
            break;
        };
        let mut pid = 0;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmCredentials(creds) = c {
                    pid = creds.pid();
                }
            }
        }
        let len = msg.bytes;
        let ready = buf[..len].split(|b| *b == b'\n').any(|l| l == b"READY=1");
        out.push((pid, ready));
    }
    out
}

/// What the child needs, all prepared before `fork`.
struct ChildPlan {
    program: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    pid_place: *mut u8,
    listener: RawFd,
    stdin: RawFd,
    parent: libc::pid_t,
}

/// The child's steps to `execve`: async-signal-safe calls only, no
/// allocation, no locks.
///
/// # Safety
///
/// Only in the child of `fork`, with every pointer of `plan` valid.
unsafe fn child(plan: ChildPlan) -> ! {
    // SAFETY: every call below is async-signal-safe and works on memory
    // prepared before the fork; on any failure the child ends in _exit.
    unsafe {
        // LISTEN_PID=<our pid>: digits into the prepared buffer.
        let mut pid = libc::getpid() as u64;
        let mut digits = [0u8; PID_ROOM];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (pid % 10) as u8;
            n += 1;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        for i in 0..n {
            *plan.pid_place.add(i) = digits[n - 1 - i];
        }
        *plan.pid_place.add(n) = 0;

        libc::setpgid(0, 0);
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != plan.parent {
            libc::_exit(1);
        }
        if libc::dup2(plan.stdin, 0) < 0 {
            libc::_exit(126);
        }
        if plan.listener == 3 {
            let flags = libc::fcntl(3, libc::F_GETFD);
            libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
        } else if libc::dup2(plan.listener, 3) < 0 {
            libc::_exit(126);
        }
        // Every other fd of the launcher is close-on-exec already; make
        // sure (CLOSE_RANGE_CLOEXEC), so exec closes them all — the
        // --wait-exec pipe included, which is how the parent learns of
        // the exec.
        libc::syscall(
            libc::SYS_close_range,
            4u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(plan.program, plan.argv, plan.envp);
        libc::_exit(127);
    }
}
