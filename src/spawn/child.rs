//! What a new worker process does between `fork()` and `execve()`.
//!
//! After `fork()` the child is a copy of the master, and although the master
//! is single-threaded, the rule is the one `fork(2)` gives multi-threaded
//! programs and that Rust's std and systemd's `safe_fork` follow: only
//! async-signal-safe system calls, over data the parent prepared before the
//! fork. No allocation, no formatting, no logging, no locks, no `Drop` of
//! anything the parent owns. Every step is a raw syscall on plain memory;
//! the process ends in `execve` or `_exit`.
//!
//! A failed step writes `[step, errno as 4 bytes]` to the close-on-exec
//! error pipe and exits 127; the parent reads the pipe: end-of-file means
//! `execve` succeeded.

use std::ffi::c_char;
use std::os::fd::RawFd;

/// Everything the child needs, as raw pointers into memory the parent
/// keeps alive and unchanged until the fork returns.
pub(crate) struct Steps {
    pub(crate) program: *const c_char,
    pub(crate) argv: *const *const c_char,
    pub(crate) envp: *const *const c_char,
    /// Where the digits of this process's pid go (`LISTEN_PID=`,
    /// `WATCHDOG_PID=`): each place has room for [`PID_ROOM`] digits and a NUL.
    pub(crate) pid_places: *const *mut u8,
    pub(crate) pid_place_count: usize,
    pub(crate) stdin: RawFd,
    pub(crate) listeners: *const RawFd,
    pub(crate) listener_count: usize,
    /// Scratch space of `listener_count` entries.
    pub(crate) scratch: *mut RawFd,
    pub(crate) cwd: *const c_char,
    pub(crate) creds: Option<Creds>,
    pub(crate) master: libc::pid_t,
    pub(crate) empty_mask: *const libc::sigset_t,
    pub(crate) error_pipe: RawFd,
    /// Highest fd number to close by hand if `close_range(2)` is missing.
    pub(crate) max_fd: RawFd,
    /// Give stdout and stderr a journal stream of the worker's own.
    pub(crate) journal: Option<Journal>,
    /// The fd limit the worker gets: the one hawkey started with (the
    /// master raises its own, see `spawn::raise_fd_limit`).
    pub(crate) nofile: libc::rlimit,
}

/// A connection to journald's stdout stream socket, opened by the worker
/// itself so that journald credits its lines to the worker's pid.
#[derive(Clone, Copy)]
pub(crate) struct Journal {
    pub(crate) addr: *const libc::sockaddr_un,
    pub(crate) addr_len: libc::socklen_t,
    /// The stream header (identifier, unit, priority, …), see
    /// systemd's stdout stream protocol.
    pub(crate) header: *const u8,
    pub(crate) header_len: usize,
    /// Where `DEV:INO` of the stream goes (`JOURNAL_STREAM=`), with room
    /// for [`STREAM_ROOM`] bytes and a NUL.
    pub(crate) stream_place: *mut u8,
}

/// Room for "DEV:INO": two 20-digit numbers and a colon.
pub(crate) const STREAM_ROOM: usize = 41;

/// Writes `n` in decimal at `at`, returns the digits written.
///
/// # Safety
/// `at` must have room for 20 bytes.
unsafe fn put_decimal(at: *mut u8, mut n: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        // SAFETY: the caller gives room for 20 bytes; len <= 20.
        unsafe { *at.add(i) = digits[len - 1 - i] };
    }
    len
}

/// Connects stdout and stderr to journald as a stream of this process.
/// On any failure the inherited stdout and stderr stay: output is never
/// dropped for want of a journal.
///
/// # Safety
/// Only in the forked child, with `j`'s pointers valid.
unsafe fn connect_journal(j: Journal) {
    // SAFETY: socket, connect, shutdown, write, dup2, close and fstat are
    // async-signal-safe; the pointers were prepared before the fork.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return;
        }
        if libc::connect(fd, j.addr.cast(), j.addr_len) != 0 {
            libc::close(fd);
            return;
        }
        libc::shutdown(fd, libc::SHUT_RD);
        let mut written = 0;
        while written < j.header_len {
            let n = libc::write(fd, j.header.add(written).cast(), j.header_len - written);
            if n <= 0 {
                libc::close(fd);
                return;
            }
            written += n as usize;
        }
        if libc::dup2(fd, 1) < 0 || libc::dup2(fd, 2) < 0 {
            libc::close(fd);
            return;
        }
        libc::close(fd);
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        if libc::fstat(2, st.as_mut_ptr()) == 0 {
            let st = st.assume_init();
            let dev = put_decimal(j.stream_place, st.st_dev);
            *j.stream_place.add(dev) = b':';
            let ino = put_decimal(j.stream_place.add(dev + 1), st.st_ino);
            *j.stream_place.add(dev + 1 + ino) = 0;
        }
    }
}

/// Digits a pid place holds (a 64-bit number has at most 20), NUL after.
pub(crate) const PID_ROOM: usize = 20;

#[derive(Clone, Copy)]
pub(crate) struct Creds {
    pub(crate) uid: libc::uid_t,
    pub(crate) gid: libc::gid_t,
    pub(crate) groups: *const libc::gid_t,
    pub(crate) group_count: usize,
    /// The highest capability number (`/proc/sys/kernel/cap_last_cap`,
    /// read before the fork): the bounding set is emptied up to it.
    pub(crate) last_cap: libc::c_int,
}

/// Step numbers, reported to the parent on failure.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Session = 1,
    Fds = 2,
    Chdir = 3,
    Groups = 4,
    Gid = 5,
    Uid = 6,
    VerifyCreds = 7,
    ParentDeath = 8,
    Exec = 9,
    Capabilities = 10,
    NoNewPrivileges = 11,
}

impl Step {
    pub(crate) fn from_u8(n: u8) -> Option<Step> {
        Some(match n {
            1 => Step::Session,
            2 => Step::Fds,
            3 => Step::Chdir,
            4 => Step::Groups,
            5 => Step::Gid,
            6 => Step::Uid,
            7 => Step::VerifyCreds,
            8 => Step::ParentDeath,
            9 => Step::Exec,
            10 => Step::Capabilities,
            11 => Step::NoNewPrivileges,
            _ => return None,
        })
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Step::Session => "start a session of its own",
            Step::Fds => "set up the listening sockets",
            Step::Chdir => "change to workers.cwd",
            Step::Groups => "set supplementary groups",
            Step::Gid => "set the group id",
            Step::Uid => "set the user id",
            Step::VerifyCreds => "verify the dropped privileges",
            Step::ParentDeath => "arrange to die with the master",
            Step::Exec => "execute",
            Step::Capabilities => "empty the capability bounding set",
            Step::NoNewPrivileges => "set no_new_privs",
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Reports the failed step to the parent and exits.
///
/// # Safety
/// Only in the forked child; `pipe` is the write end of the error pipe.
unsafe fn fail(pipe: RawFd, step: Step, errno: i32) -> ! {
    let e = errno.to_ne_bytes();
    let message = [step as u8, e[0], e[1], e[2], e[3]];
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `message` lives
    // on this stack frame.
    unsafe {
        libc::write(pipe, message.as_ptr().cast(), message.len());
        libc::_exit(127)
    }
}

/// Closes every fd in `first..=last`.
///
/// # Safety
/// Only in the forked child.
unsafe fn close_from(first: RawFd, last: RawFd, max_fd: RawFd) {
    if first > last {
        return;
    }
    // SAFETY: close_range(2) is a plain syscall on integers.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32) };
    if r != 0 {
        // Kernels before 5.9: close one by one, up to the fd limit read
        // before the fork.
        for fd in first..=last.min(max_fd) {
            // SAFETY: close(2) is async-signal-safe; EBADF is harmless.
            unsafe { libc::close(fd) };
        }
    }
}

/// Runs the steps and executes the worker. Never returns.
///
/// # Safety
/// Call only in the child of `fork()`, with every pointer in `s` valid
/// (prepared by `spawn` before the fork).
pub(crate) unsafe fn run(s: &Steps) -> ! {
    // SAFETY: the child's steps, each making only async-signal-safe
    // syscalls (signal-safety(7)) over memory prepared before the fork,
    // with the pointers of `s` valid as the caller promised; nothing
    // allocates or takes a lock.
    unsafe {
        reset_signal_dispositions();
        // Its own session, so its own process group too (pgid = sid =
        // its pid): no controlling terminal, so nothing it runs can push
        // input into the operator's terminal (TIOCSTI) or get its signals;
        // a terminal's Ctrl-C reaches only the master, which stops workers
        // in order; the master signals the whole group, so a worker's own
        // children are stopped with it. The fork's child leads no group
        // yet, so setsid cannot fail with EPERM.
        if libc::setsid() < 0 {
            fail(s.error_pipe, Step::Session, errno());
        }
        let pipe = arrange_fds(s);
        if !s.cwd.is_null() && libc::chdir(s.cwd) != 0 {
            fail(pipe, Step::Chdir, errno());
        }
        if let Some(c) = s.creds {
            drop_privileges(c, pipe);
        }
        // Die with the master. Set after the privilege drop, which clears
        // it; then check the master did not die before it took effect.
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            fail(pipe, Step::ParentDeath, errno());
        }
        if libc::getppid() != s.master {
            libc::_exit(1);
        }
        if let Some(journal) = s.journal {
            connect_journal(journal);
        }
        // LISTEN_PID and WATCHDOG_PID are this process: only known now.
        let pid = libc::getpid() as u64;
        for place in 0..s.pid_place_count {
            let at = *s.pid_places.add(place);
            let len = put_decimal(at, pid);
            *at.add(len) = 0;
        }
        // Lowering a limit to at most its hard value cannot fail; if it
        // did, the worker would only keep the master's higher limit.
        libc::setrlimit(libc::RLIMIT_NOFILE, &s.nofile);
        libc::sigprocmask(libc::SIG_SETMASK, s.empty_mask, std::ptr::null_mut());
        libc::execve(s.program, s.argv, s.envp);
        fail(pipe, Step::Exec, errno())
    }
}

/// Default dispositions for every signal: Rust's runtime ignores SIGPIPE
/// in the master, and ignored signals survive execve. The raw syscall also
/// resets 32 and 33, which glibc's wrappers refuse to touch but which an
/// ignoring ancestor may have passed down. The kernel's struct sigaction
/// is {handler, flags, restorer, mask}; all zero is SIG_DFL with no flags.
/// Signals stay blocked until just before execve.
///
/// # Safety
/// Only in the forked child (see [`run`]).
unsafe fn reset_signal_dispositions() {
    let default_action = [0u64; 4];
    for signal in 1..=64 {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // SAFETY: rt_sigaction with a valid action and no old one;
            // async-signal-safe.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    default_action.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                );
            }
        }
    }
}

/// fds: stdin from /dev/null, listeners to 3.., nothing else; returns the
/// error pipe's new number (moved above the listeners).
///
/// # Safety
/// Only in the forked child, with `s`'s pointers valid (see [`run`]).
unsafe fn arrange_fds(s: &Steps) -> RawFd {
    // SAFETY: dup2, fcntl and close on numbers only, and reads/writes of
    // `s.listeners` and `s.scratch`, which hold `listener_count` entries.
    unsafe {
        let n = s.listener_count as RawFd;
        if libc::dup2(s.stdin, 0) < 0 {
            fail(s.error_pipe, Step::Fds, errno());
        }
        // First move every listener (and the error pipe) above 3+n so no
        // dup2 below can overwrite a source it still needs.
        let pipe = libc::fcntl(s.error_pipe, libc::F_DUPFD_CLOEXEC, 3 + n);
        if pipe < 0 {
            fail(s.error_pipe, Step::Fds, errno());
        }
        for i in 0..s.listener_count {
            let fd = libc::fcntl(*s.listeners.add(i), libc::F_DUPFD_CLOEXEC, 3 + n);
            if fd < 0 {
                fail(pipe, Step::Fds, errno());
            }
            *s.scratch.add(i) = fd;
        }
        // dup2 gives the copy at 3+i without close-on-exec: inherited.
        for i in 0..s.listener_count {
            if libc::dup2(*s.scratch.add(i), 3 + i as RawFd) < 0 {
                fail(pipe, Step::Fds, errno());
            }
        }
        close_from(3 + n, pipe - 1, s.max_fd);
        close_from(pipe + 1, RawFd::MAX, s.max_fd);
        pipe
    }
}

/// Privileges: groups, then gid, then an empty capability bounding set
/// (which needs CAP_SETPCAP, so before setuid), then uid (after setuid the
/// others are no longer allowed), then prove it, then `no_new_privs`: a
/// setuid-root or file-capability program the worker runs gains nothing
/// (with an empty bounding set, not even a worker left at uid 0 by a
/// group-only drop keeps a capability across execve). Any failure ends
/// the child.
///
/// # Safety
/// Only in the forked child, with `c.groups` valid for `c.group_count`.
unsafe fn drop_privileges(c: Creds, pipe: RawFd) {
    // SAFETY: setgroups reads `group_count` gids from `groups`, prepared
    // before the fork; the other calls (set*id, get*id, prctl) are raw
    // syscalls that take numbers only, touch no memory of ours and take
    // no lock, so they are safe after fork.
    unsafe {
        if libc::setgroups(c.group_count, c.groups) != 0 {
            fail(pipe, Step::Groups, errno());
        }
        if libc::setgid(c.gid) != 0 {
            fail(pipe, Step::Gid, errno());
        }
        for cap in 0..=c.last_cap {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                let e = errno();
                // A kernel with fewer capabilities than cap_last_cap said
                // (it could not be read, so the fallback guessed high).
                if e == libc::EINVAL && cap > 0 {
                    break;
                }
                fail(pipe, Step::Capabilities, e);
            }
        }
        if libc::setuid(c.uid) != 0 {
            fail(pipe, Step::Uid, errno());
        }
        let dropped = libc::getuid() == c.uid
            && libc::geteuid() == c.uid
            && libc::getgid() == c.gid
            && libc::getegid() == c.gid
            && libc::getgroups(0, std::ptr::null_mut()) == c.group_count as i32
            && (c.uid == 0 || libc::setuid(0) != 0);
        if !dropped {
            fail(pipe, Step::VerifyCreds, libc::EPERM);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
            fail(pipe, Step::NoNewPrivileges, errno());
        }
    }
}
