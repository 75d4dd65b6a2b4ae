//! The one place that forks.
//!
//! A [`Plan`] is made once per configuration generation, in the master,
//! where allocation and errors are fine: the program, argv and environment
//! as C strings, the credentials to drop to, the listener fds. Spawning a
//! worker then only fills in the slot number, forks, and lets the child run
//! `child`'s async-signal-safe steps to `execve`.
//!
//! Every worker is exec'd, builtin ones included: a builtin worker runs
//! `/proc/self/exe` (the very binary the master runs, even if the package
//! was upgraded since) with `HAWKEY_ROLE=worker`, and the library's entry
//! point sends it to the app instead of the CLI. We chose re-exec over
//! running the app in the forked copy because the copy would inherit the
//! master's whole state — its logger and journal socket, signalfd, pidfile
//! lock, allocator state and heap — and the app would run in a process that
//! must never allocate until it has cleaned all that up. After exec the
//! worker is a fresh process that got exactly the listeners and environment
//! it should, by the same path as any exec'd program; the cost is one
//! `execve` per spawn (about a millisecond).
//!
//! The parent learns whether `execve` succeeded through a close-on-exec
//! pipe: end-of-file means it did; otherwise the child wrote which step
//! failed and its errno, and the spawn fails with that. The master does
//! not wait for it: [`Plan::fork`] returns at once with the pipe
//! ([`Forked`]), which the master's loop polls beside everything else, so
//! a pool of 256 is forked in one go rather than one `execve` after
//! another.

use std::ffi::{CString, OsStr, OsString, c_char};
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork};

use crate::config::{self, AppKind, Ready};
use crate::env;
use child::{Creds, Step};

mod child;
pub(crate) mod inject;

/// A listener as a plan passes it on: its name (`LISTEN_FDNAMES`) and its
/// fd, owned by the master for as long as the plan may spawn.
pub(crate) struct Inherited<'a> {
    /// The listener's name.
    pub(crate) name: &'a str,
    /// The listening socket.
    pub(crate) fd: BorrowedFd<'a>,
}

/// How one generation of workers is started.
pub(crate) struct Plan {
    program: CString,
    /// argv without the per-slot name of builtin workers.
    argv: Vec<CString>,
    /// `Some(prefix)`: `argv[0]` is `"{prefix}: worker {slot}"`.
    builtin_name: Option<String>,
    env: Vec<CString>,
    cwd: Option<CString>,
    creds: Option<Credentials>,
    /// The listeners' fds, owned by the master's generation that owns
    /// this plan (see `master::Generation`).
    listeners: Vec<RawFd>,
    stdin: OwnedFd,
    /// `WATCHDOG_USEC` given to workers, if they must send heartbeats.
    heartbeat_usec: Option<u128>,
    /// Whether workers get a notify channel (`NOTIFY_SOCKET`): builtin
    /// ones and exec ones with `ready: notify`.
    notifies: bool,
    /// When the master's stderr is the journal: each worker connects a
    /// stream of its own, so journald credits its lines to its pid.
    journal: Option<JournalPlan>,
    master: Pid,
    max_fd: RawFd,
    nofile: libc::rlimit,
}

/// The fd limit hawkey was started with, recorded by [`raise_fd_limit`]:
/// what workers get back.
static STARTED_NOFILE: std::sync::OnceLock<libc::rlimit> = std::sync::OnceLock::new();

/// Raises the master's soft fd limit to its hard one, as systemd does for
/// itself: the master holds a notify socket per worker, and a pool of 1024
/// would not fit in the usual 1024. Workers get the limit hawkey started
/// with back (a program using `select(2)` breaks above 1024). Returns the
/// new soft limit.
pub(crate) fn raise_fd_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    STARTED_NOFILE.get_or_init(|| libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    });
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard)
}

struct JournalPlan {
    addr: libc::sockaddr_un,
    addr_len: libc::socklen_t,
    header: Vec<u8>,
}

/// journald's stream socket (`systemd-journald.socket`).
const JOURNAL_STDOUT: &[u8] = b"/run/systemd/journal/stdout";

impl JournalPlan {
    /// `identifier` names the worker's lines (`SYSLOG_IDENTIFIER`).
    fn new(identifier: &str) -> JournalPlan {
        // SAFETY: sockaddr_un is plain data; all zero is a valid value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in addr.sun_path.iter_mut().zip(JOURNAL_STDOUT) {
            *dst = *src as libc::c_char;
        }
        let addr_len = (std::mem::size_of::<libc::sa_family_t>() + JOURNAL_STDOUT.len() + 1)
            as libc::socklen_t;
        // The stream protocol's header: identifier, unit (empty: journald
        // finds it from the cgroup), priority 6 (info), level prefixes
        // ("<3>error") honoured, no forwarding to syslog, kmsg or console.
        let identifier: String = identifier.chars().filter(|c| !c.is_control()).collect();
        let header = format!("{identifier}\n\n6\n1\n0\n0\n0\n").into_bytes();
        JournalPlan {
            addr,
            addr_len,
            header,
        }
    }
}

struct Credentials {
    uid: Uid,
    gid: Gid,
    groups: Vec<libc::gid_t>,
    /// The highest capability number the kernel knows, for emptying the
    /// bounding set in the child.
    last_cap: libc::c_int,
}

/// `/proc/sys/kernel/cap_last_cap`, read here because the child may read
/// no file; if it cannot be read, 63 (the child stops at the first
/// capability the kernel calls invalid).
fn last_capability() -> libc::c_int {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|n| (0..64).contains(n))
        .unwrap_or(63)
}

/// What a plan needs to know about the world, read once by the caller.
pub(crate) struct Inputs<'a> {
    pub(crate) config: &'a config::Config,
    pub(crate) listeners: &'a [Inherited<'a>],
    /// The heartbeat timeout in force, if workers must send heartbeats.
    pub(crate) heartbeat: Option<std::time::Duration>,
    /// The master's environment at start-up.
    pub(crate) environment: &'a [(OsString, OsString)],
    /// `HAWKEY_LOG` for builtin workers: `level/format`.
    pub(crate) worker_log: &'a str,
    /// Whether the master's stderr is the journal stream.
    pub(crate) journal: bool,
    /// `argv[0]` of the master, to name builtin workers after it.
    pub(crate) argv0: &'a OsStr,
    pub(crate) generation: u64,
    pub(crate) running_as_root: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("failed to prepare workers: {what} contains a NUL byte")]
    Nul { what: String },
    #[error("failed to look up {what}: {source}")]
    Lookup { what: String, source: Errno },
    #[error("failed to open /dev/null: {0}")]
    DevNull(#[source] std::io::Error),
    #[error("failed to fork: {0}")]
    Fork(#[source] Errno),
    #[error("worker failed to {}: {}", step.describe(), crate::logging::errno_text(*errno))]
    Child { step: Step, errno: Errno },
    #[error("failed to read the worker's start-up report: {0}")]
    Report(#[source] std::io::Error),
    /// `workers.adopt` is set and the preload library is not installed.
    #[error("workers.adopt {message}")]
    PreloadMissing { message: String },
    /// `workers.adopt` names a listener hawkey was not given (systemd
    /// passed sockets under other names).
    #[error(
        "workers.adopt names listener '{name}', which hawkey was not given (listeners: {available})"
    )]
    AdoptListener { name: String, available: String },
    /// `workers.adopt` names a listener that is not a TCP socket.
    #[error("workers.adopt names listener '{name}', which is not a TCP socket")]
    AdoptNotTcp { name: String },
}

impl Error {
    /// A failure of the worker's own making (a bad program, a bad cwd) as
    /// opposed to one of the master's (cannot fork at all).
    pub(crate) fn is_worker_fault(&self) -> bool {
        matches!(self, Error::Child { .. })
    }

    /// The OS error of a failed `execve` (not of another step).
    pub(crate) fn exec_errno(&self) -> Option<Errno> {
        match self {
            Error::Child {
                step: Step::Exec,
                errno,
            } => Some(*errno),
            _ => None,
        }
    }

    /// The exit status a plan that cannot be made ends hawkey with: an
    /// installation or sockets that cannot give what the configuration
    /// asks for is `EX_CONFIG`, as `hawkey check` says; the rest are
    /// runtime failures.
    pub(crate) fn status(&self) -> crate::exit::Status {
        match self {
            Error::PreloadMissing { .. }
            | Error::AdoptListener { .. }
            | Error::AdoptNotTcp { .. } => crate::exit::Status::Config,
            _ => crate::exit::Status::Failure,
        }
    }
}

fn cstring(bytes: impl Into<Vec<u8>>, what: &str) -> Result<CString, Error> {
    CString::new(bytes).map_err(|_| Error::Nul {
        what: what.to_string(),
    })
}

fn env_entry(name: &[u8], value: &[u8]) -> Result<CString, Error> {
    let mut entry = name.to_vec();
    entry.push(b'=');
    entry.extend_from_slice(value);
    cstring(
        entry,
        &format!("environment variable {}", String::from_utf8_lossy(name)),
    )
}

impl Plan {
    /// Prepares how `inputs.config`'s workers start: everything but the
    /// slot number, as C strings, once per generation.
    pub(crate) fn new(inputs: Inputs<'_>) -> Result<Plan, Error> {
        let workers = &inputs.config.workers;
        let (program, argv, builtin_name) = program(&inputs)?;
        let heartbeat_usec = inputs.heartbeat.map(|h| h.as_micros());
        let env = environment(&inputs, heartbeat_usec)?;
        let journal = inputs
            .journal
            .then(|| JournalPlan::new(&journal_identifier(&inputs)));
        let cwd = workers
            .cwd
            .as_ref()
            .map(|c| cstring(c.as_os_str().as_bytes(), "workers.cwd"))
            .transpose()?;
        let creds = if inputs.running_as_root && (workers.user.is_some() || workers.group.is_some())
        {
            Some(credentials(
                workers.user.as_deref(),
                workers.group.as_deref(),
            )?)
        } else {
            None
        };
        let stdin = std::fs::OpenOptions::new()
            .read(true)
            .open("/dev/null")
            .map_err(Error::DevNull)?
            .into();
        let current = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE);
        let max_fd = current
            .map(|(soft, _)| soft.min(1 << 20) as RawFd)
            .unwrap_or(1 << 16);
        let nofile = STARTED_NOFILE.get().copied().unwrap_or_else(|| {
            let (soft, hard) = current.unwrap_or((1024, 1024));
            libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            }
        });
        Ok(Plan {
            program,
            argv,
            builtin_name,
            env,
            cwd,
            creds,
            listeners: inputs.listeners.iter().map(|l| l.fd.as_raw_fd()).collect(),
            stdin,
            heartbeat_usec,
            notifies: workers.app == AppKind::Builtin || workers.ready != Ready::Started,
            journal,
            master: nix::unistd::getpid(),
            max_fd,
            nofile,
        })
    }

    /// Whether this generation's workers get a notify channel: then
    /// [`Plan::fork`] wants its path.
    pub(crate) fn notifies(&self) -> bool {
        self.notifies
    }

    /// The program workers execute (resolved on `PATH`), for messages.
    pub(crate) fn program(&self) -> &std::ffi::CStr {
        &self.program
    }

    /// The uid workers run as, when the plan drops privileges.
    pub(crate) fn worker_uid(&self) -> Option<Uid> {
        self.creds.as_ref().map(|c| c.uid)
    }

    /// Forks the worker for `slot`, with `notify` as its `NOTIFY_SOCKET`
    /// (its own channel, see `master::inbox`), and returns at once: the
    /// child runs its steps to `execve`, and [`Forked::outcome`] tells how
    /// that went.
    pub(crate) fn fork(&self, slot: usize, notify: Option<&OsStr>) -> Result<Forked, Error> {
        // Everything the child touches is built here, before the fork.
        let mut buffers = self.buffers(slot, notify)?;
        let journal = self.journal.as_ref().map(|j| child::Journal {
            addr: &j.addr,
            addr_len: j.addr_len,
            header: j.header.as_ptr(),
            header_len: j.header.len(),
            stream_place: buffers.stream_place,
        });
        let creds = self.creds.as_ref().map(|c| Creds {
            uid: c.uid.as_raw(),
            gid: c.gid.as_raw(),
            groups: c.groups.as_ptr(),
            group_count: c.groups.len(),
            last_cap: c.last_cap,
        });
        // Non-blocking, for the read end the master's loop polls; the
        // child's one write of 5 bytes into the empty pipe never waits.
        use nix::fcntl::OFlag;
        let (read_end, write_end) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(Error::Fork)?;
        let steps = child::Steps {
            program: self.program.as_ptr(),
            argv: buffers.argv.as_ptr(),
            envp: buffers.envp.as_ptr(),
            pid_places: buffers.pid_places.as_ptr(),
            pid_place_count: buffers.pid_places.len(),
            stdin: self.stdin.as_raw_fd(),
            listeners: self.listeners.as_ptr(),
            listener_count: self.listeners.len(),
            scratch: buffers.scratch.as_mut_ptr(),
            cwd: self.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            creds,
            master: self.master.as_raw(),
            empty_mask: buffers.empty_mask.as_ptr(),
            error_pipe: write_end.as_raw_fd(),
            max_fd: self.max_fd,
            journal,
            nofile: self.nofile,
        };

        // SAFETY: the master is single-threaded (no other thread can hold a
        // lock the child would need), and the child only runs
        // `child::run`, which makes async-signal-safe calls over `steps`.
        match unsafe { fork() }.map_err(Error::Fork)? {
            ForkResult::Child => {
                // SAFETY: we are the forked child; every pointer in `steps`
                // points into `buffers` or `self`, which fork copied into
                // this address space, where nothing frees or moves them
                // before `child::run` ends in execve or _exit.
                unsafe { child::run(&steps) }
            }
            ForkResult::Parent { child } => {
                drop(write_end);
                // The child works on its own copy of the buffers (fork, not
                // vfork): the parent's may go now.
                drop(buffers);
                Ok(Forked {
                    pid: child,
                    report: std::fs::File::from(read_end),
                })
            }
        }
    }

    /// The per-slot buffers the child reads and fills in: argv with the
    /// slot's name, the environment with the slot and room for the pids
    /// and the journal stream, scratch room for moving the listeners.
    fn buffers(&self, slot: usize, notify: Option<&OsStr>) -> Result<SlotBuffers, Error> {
        let name = match &self.builtin_name {
            Some(prefix) => Some(cstring(format!("{prefix}: worker {slot}"), "argv")?),
            None => None,
        };
        let mut argv: Vec<*const c_char> =
            name.iter().chain(&self.argv).map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let slot_entry = env_entry(env::HAWKEY_WORKER.as_bytes(), slot.to_string().as_bytes())?;
        let notify_entry = notify
            .map(|path| env_entry(env::NOTIFY_SOCKET.as_bytes(), path.as_bytes()))
            .transpose()?;
        // "LISTEN_PID=" (and "WATCHDOG_PID=") then room for the digits and
        // the NUL, filled in by the child.
        let mut pid_entries: Vec<Vec<u8>> = std::iter::once(env::LISTEN_PID)
            .chain(self.heartbeat_usec.is_some().then_some(env::WATCHDOG_PID))
            .map(|name| {
                let mut entry = format!("{name}=").into_bytes();
                entry.resize(name.len() + 1 + child::PID_ROOM + 1, 0);
                entry
            })
            .collect();
        let mut stream_entry = format!("{}=", env::JOURNAL_STREAM).into_bytes();
        let stream_at = stream_entry.len();
        stream_entry.resize(stream_at + child::STREAM_ROOM + 1, 0);
        let mut envp: Vec<*const c_char> = self.env.iter().map(|e| e.as_ptr()).collect();
        envp.push(slot_entry.as_ptr());
        envp.extend(notify_entry.iter().map(|e| e.as_ptr()));
        envp.extend(pid_entries.iter().map(|e| e.as_ptr().cast::<c_char>()));
        if self.journal.is_some() {
            envp.push(stream_entry.as_ptr().cast());
        }
        envp.push(std::ptr::null());
        // SAFETY: `stream_at` is within `stream_entry`, resized to hold
        // STREAM_ROOM bytes and a NUL after it.
        let stream_place = unsafe { stream_entry.as_mut_ptr().add(stream_at) };
        let pid_places: Vec<*mut u8> = pid_entries
            .iter_mut()
            .map(|entry| {
                let name_len = entry.len() - child::PID_ROOM - 1;
                // SAFETY: `name_len` is within `entry` (its name part); the
                // child writes at most PID_ROOM digits and a NUL after it,
                // which is exactly the room `entry` was resized to.
                unsafe { entry.as_mut_ptr().add(name_len) }
            })
            .collect();
        let mut empty_mask = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given.
        unsafe { libc::sigemptyset(empty_mask.as_mut_ptr()) };
        Ok(SlotBuffers {
            _name: name,
            _slot_entry: slot_entry,
            _notify_entry: notify_entry,
            _pid_entries: pid_entries,
            _stream_entry: stream_entry,
            argv,
            envp,
            pid_places,
            stream_place,
            scratch: vec![-1; self.listeners.len()],
            empty_mask,
        })
    }
}

/// The program, its argv (without a builtin worker's per-slot name) and,
/// for builtin workers, the prefix of that name: `/proc/self/exe` (this
/// very binary) for builtin workers, `workers.command` resolved on `PATH`
/// as `hawkey check` resolved it for exec ones.
fn program(inputs: &Inputs<'_>) -> Result<(CString, Vec<CString>, Option<String>), Error> {
    let workers = &inputs.config.workers;
    if workers.app == AppKind::Builtin {
        let prefix = std::path::Path::new(inputs.argv0)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "hawkey".into());
        return Ok((
            cstring("/proc/self/exe", "program")?,
            Vec::new(),
            Some(prefix),
        ));
    }
    let path_var = inputs
        .environment
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_os_str());
    // As `hawkey check` resolved it: from the worker's cwd, where it runs.
    let resolved: PathBuf =
        config::resolve_program_in(&workers.command[0], path_var, workers.cwd.as_deref())
            .unwrap_or_else(|| PathBuf::from(&workers.command[0]));
    let argv = workers
        .command
        .iter()
        .map(|a| cstring(a.as_bytes(), "workers.command"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        cstring(resolved.into_os_string().into_vec(), "workers.command[0]")?,
        argv,
        None,
    ))
}

/// The environment every worker of the generation gets, but for the
/// per-slot entries: the master's own without the names hawkey sets
/// (`env::WORKER_VARS`) or `workers.env` overrides, then `workers.env`,
/// then what `inject` adds for exec'd workers (`LD_PRELOAD` and
/// `NODE_OPTIONS` merged with the values they replace), then hawkey's
/// variables.
fn environment(inputs: &Inputs<'_>, heartbeat_usec: Option<u128>) -> Result<Vec<CString>, Error> {
    let workers = &inputs.config.workers;
    let builtin = workers.app == AppKind::Builtin;
    let injected = inject::variables(inputs)?;
    let merged = |name: &str| injected.iter().any(|(n, _)| *n == name);
    let mut env = Vec::new();
    for (name, value) in inputs.environment {
        let name_str = name.to_string_lossy();
        if env::is_reserved(&name_str)
            || workers.env.contains_key(name_str.as_ref())
            || merged(&name_str)
        {
            continue;
        }
        env.push(env_entry(name.as_bytes(), value.as_bytes())?);
    }
    for (name, value) in &workers.env {
        if merged(name) {
            continue;
        }
        env.push(env_entry(name.as_bytes(), value.as_bytes())?);
    }
    for (name, value) in &injected {
        env.push(env_entry(name.as_bytes(), value.as_bytes())?);
    }
    let names: Vec<&str> = inputs.listeners.iter().map(|l| l.name).collect();
    let (count, joined) = (inputs.listeners.len().to_string(), names.join(":"));
    let generation = inputs.generation.to_string();
    let mut ours: Vec<(&str, &[u8])> = vec![
        (env::LISTEN_FDS, count.as_bytes()),
        (env::LISTEN_FDNAMES, joined.as_bytes()),
        (env::HAWKEY_GENERATION, generation.as_bytes()),
        // The signal the master will stop this worker with, so that an
        // app (the built-in one too) can drain on it.
        (
            env::HAWKEY_STOP_SIGNAL,
            workers.stop_signal.0.as_str().as_bytes(),
        ),
    ];
    let usec = heartbeat_usec.map(|u| u.to_string());
    if let Some(usec) = &usec {
        ours.push((env::WATCHDOG_USEC, usec.as_bytes()));
    }
    if builtin {
        ours.push((env::HAWKEY_ROLE, b"worker"));
        ours.push((env::HAWKEY_LOG, inputs.worker_log.as_bytes()));
    }
    for (name, value) in ours {
        env.push(env_entry(name.as_bytes(), value)?);
    }
    Ok(env)
}

/// `SYSLOG_IDENTIFIER` of the workers' journal lines: `hawkey-worker` for
/// builtin ones, the program's file name for exec ones.
fn journal_identifier(inputs: &Inputs<'_>) -> String {
    let workers = &inputs.config.workers;
    if workers.app == AppKind::Builtin {
        return "hawkey-worker".to_string();
    }
    std::path::Path::new(&workers.command[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "hawkey-worker".into())
}

/// What [`Plan::fork`] builds for one slot. The pointer vectors point
/// into the owned buffers (and the plan); moving this struct moves none of
/// the heap data they point to.
struct SlotBuffers {
    _name: Option<CString>,
    _slot_entry: CString,
    _notify_entry: Option<CString>,
    _pid_entries: Vec<Vec<u8>>,
    _stream_entry: Vec<u8>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    pid_places: Vec<*mut u8>,
    stream_place: *mut u8,
    scratch: Vec<RawFd>,
    empty_mask: std::mem::MaybeUninit<libc::sigset_t>,
}

/// A forked worker whose `execve` is not known to have happened yet: its
/// pid, and the read end of its close-on-exec report pipe.
pub(crate) struct Forked {
    pub(crate) pid: Pid,
    report: std::fs::File,
}

impl Forked {
    /// How the child's steps went, if it is known yet: `Some(Ok(()))` once
    /// it executed (end-of-file: the pipe closed at `execve`), `Some(Err)`
    /// with the step that failed (the child exits right after saying so),
    /// `None` while it is still on its way. Never blocks. Known for sure
    /// once the child sent anything (it runs its program then) or exited.
    pub(crate) fn outcome(&mut self) -> Option<Result<(), Error>> {
        let mut report = [0u8; 5];
        loop {
            return match self.report.read(&mut report) {
                Ok(0) => Some(Ok(())),
                // The child writes its 5 bytes in one write(2), shorter
                // than PIPE_BUF: they arrive together.
                Ok(_) => {
                    let step = Step::from_u8(report[0]).unwrap_or(Step::Exec);
                    let errno = Errno::from_raw(i32::from_ne_bytes([
                        report[1], report[2], report[3], report[4],
                    ]));
                    Some(Err(Error::Child { step, errno }))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                // Cannot happen on a pipe we own; say it went wrong.
                Err(e) => Some(Err(Error::Report(e))),
            };
        }
    }
}

impl std::os::fd::AsFd for Forked {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.report.as_fd()
    }
}

fn credentials(user: Option<&str>, group: Option<&str>) -> Result<Credentials, Error> {
    let lookup = |what: String| move |source| Error::Lookup { what, source };
    let user_entry = match user {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .map_err(lookup(format!("user '{name}'")))?
                .ok_or(Error::Lookup {
                    what: format!("user '{name}'"),
                    source: Errno::ENOENT,
                })?,
        ),
        None => None,
    };
    let gid = match group {
        Some(name) => {
            nix::unistd::Group::from_name(name)
                .map_err(lookup(format!("group '{name}'")))?
                .ok_or(Error::Lookup {
                    what: format!("group '{name}'"),
                    source: Errno::ENOENT,
                })?
                .gid
        }
        None => user_entry
            .as_ref()
            .map(|u| u.gid)
            .unwrap_or_else(nix::unistd::getgid),
    };
    let uid = user_entry
        .as_ref()
        .map(|u| u.uid)
        .unwrap_or_else(nix::unistd::getuid);
    let groups = match &user_entry {
        // The user's supplementary groups, as login(1) would set them.
        Some(u) => {
            let name = cstring(u.name.as_bytes(), "user name")?;
            nix::unistd::getgrouplist(&name, gid)
                .map_err(lookup(format!("groups of user '{}'", u.name)))?
                .into_iter()
                .map(|g| g.as_raw())
                .collect()
        }
        None => vec![gid.as_raw()],
    };
    Ok(Credentials {
        uid,
        gid,
        groups,
        last_cap: last_capability(),
    })
}
