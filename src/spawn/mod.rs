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
//!
//! # Parts
//!
//! - this file: [`Plan`] (made by [`Plan::new`]), the one `fork` in
//!   [`Plan::fork`] with the per-slot buffers it prepares, [`Forked`],
//!   the fd limit, and [`Error`].
//! - `command`: the program, argv and environment, as C strings.
//! - `credentials`: the user and groups to drop to, looked up in advance.
//! - `journal`: the journal stream each worker connects, prepared.
//! - `inject`: what `workers.adopt` adds to an exec'd worker's
//!   environment (the preload library, Node's `--require`).
//! - `child`: the child's async-signal-safe steps from `fork` to `execve`.

use std::ffi::{CString, OsStr, OsString, c_char};
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid, Uid, fork};

use crate::config::{self, AppKind, Ready};
use crate::env;
use child::{Creds, Step};
use command::{cstring, env_entry, environment, program};
use credentials::{Credentials, credentials};
use journal::{JournalPlan, journal_identifier};

mod child;
mod command;
mod credentials;
pub(crate) mod inject;
mod journal;

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
