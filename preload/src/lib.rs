//! hawkey's preload library: `LD_PRELOAD`ed into exec'd workers, it gives
//! an unmodified program hawkey's inherited listener when the program
//! binds the address `workers.adopt` names, and tells the master when the
//! program starts accepting. See `docs/adopt.md` for the whole story.
//!
//! Parts:
//! - `spec`: `HAWKEY_ADOPT` and `HAWKEY_READY_PROBE` read into fixed
//!   tables, and the matching rule for a `bind(2)` address;
//! - `tail`: the worker's last line on stderr, kept in the tail file the
//!   master made beside its notify socket (interposes `write`, `writev`,
//!   `fwrite`, `fputs`), for the report of a worker that dies before it is
//!   ready;
//! - `adopt`: the interposed `bind`, `listen` and `shutdown`, which hand
//!   an adopted address the inherited listener;
//! - `ready`: the readiness report, and the hooks that send it (`accept`,
//!   `poll`, `select`, `epoll_ctl` and their kin);
//! - this file: the state read once at load (an `.init_array`
//!   constructor), the real functions found with `dlsym(RTLD_NEXT, ...)`,
//!   and the small helpers (socket inodes, `errno`) the hooks share.
//!
//! Interposed: `bind` (an adopted address: `dup3(2)` the listener onto the
//! program's own fd, keeping that fd's `FD_CLOEXEC`, and give the shared
//! open file description the program socket's `O_NONBLOCK`), `listen` (on
//! an adopted listener: succeed without calling the real `listen`, which
//! would change the shared queue's backlog), `shutdown` (on an adopted
//! listener: succeed without the real `shutdown`, which would stop the
//! socket every worker shares), and the readiness hooks
//! `accept`, `accept4`, `poll`, `ppoll`, `select`, `pselect` and
//! `epoll_ctl(EPOLL_CTL_ADD)`: the first of them to name a listener whose
//! inode is in `HAWKEY_READY_PROBE` (and the `listen` of an adopted fd)
//! sends `HAWKEY_ACCEPTING=1` to the `NOTIFY_SOCKET` read at load, once
//! per process. Every other call goes to libc untouched.
//!
//! Fork: the state is written once, by the constructor, before `main`,
//! into static memory; after that it is only read, so a child that
//! `fork(2)` made (gunicorn's workers, Node's cluster) finds it valid as
//! it was. Nothing here allocates or takes a lock: no hook can deadlock in
//! a child forked while another thread held one. The only state that
//! changes is the "reported" flag, an atomic, reset in each forked child
//! (`pthread_atfork`) so that "once per process" holds.

use std::cell::UnsafeCell;
use std::ffi::{CStr, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libc::socklen_t;

mod spec;

use spec::{MAX_ADOPT, MAX_PROBE, Spec};

/// The datagram that tells the master this process is accepting.
const REPORT: &[u8] = b"HAWKEY_ACCEPTING=1";

/// An adopted listener: its `HAWKEY_ADOPT` entry and its socket's inode,
/// checked at load to be a listening TCP socket.
#[derive(Clone, Copy)]
struct Adopted {
    spec: Spec,
    ino: u64,
}

/// What the constructor read from the environment.
struct State {
    adopt: [Adopted; MAX_ADOPT],
    adopt_len: usize,
    probe: [u64; MAX_PROBE],
    probe_len: usize,
    /// Whether `HAWKEY_READY_PROBE` was set: the master wants reports.
    probing: bool,
    notify: libc::sockaddr_un,
    /// 0: no `NOTIFY_SOCKET`.
    notify_len: socklen_t,
}

/// The one `State`, written by [`init`] only, before [`LOADED`] is set.
struct Shared(UnsafeCell<State>);

// SAFETY: the state is written only by `init`, which runs once, in the
// constructor, before `LOADED` is released; every reader acquires `LOADED`
// first and only reads. No two threads ever write it.
unsafe impl Sync for Shared {}

static STATE: Shared = Shared(UnsafeCell::new(State {
    adopt: [Adopted {
        spec: Spec::EMPTY,
        ino: 0,
    }; MAX_ADOPT],
    adopt_len: 0,
    probe: [0; MAX_PROBE],
    probe_len: 0,
    probing: false,
    notify: libc::sockaddr_un {
        sun_family: 0,
        sun_path: [0; 108],
    },
    notify_len: 0,
}));

/// Set (release) once `STATE` is complete.
static LOADED: AtomicBool = AtomicBool::new(false);
/// Whether this process still owes the master its readiness report: set
/// by `init` under `HAWKEY_READY_PROBE`, cleared by the first report, set
/// again in each forked child. The early-out of every readiness hook.
static OWES_REPORT: AtomicBool = AtomicBool::new(false);

/// The state, once the constructor has read it.
fn state() -> Option<&'static State> {
    if LOADED.load(Ordering::Acquire) {
        // SAFETY: LOADED is released only after `init` finished writing;
        // from then on the state is never written again (see `Shared`).
        Some(unsafe { &*STATE.0.get() })
    } else {
        None
    }
}

/// The constructor, run by the dynamic loader before `main`.
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    if LOADED.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: the loader runs constructors one at a time, before `main`
    // and before any thread of the program exists; nothing reads STATE
    // until LOADED is released below.
    let state = unsafe { &mut *STATE.0.get() };
    if let Some(text) = env(c"HAWKEY_ADOPT") {
        let mut specs = [Spec::EMPTY; MAX_ADOPT];
        let n = spec::parse_adopt(text, &mut specs);
        for spec in &specs[..n] {
            if let Some(ino) = listening_tcp_inode(spec.fd) {
                state.adopt[state.adopt_len] = Adopted { spec: *spec, ino };
                state.adopt_len += 1;
            }
        }
    }
    if let Some(text) = env(c"HAWKEY_READY_PROBE") {
        state.probing = true;
        state.probe_len = spec::parse_probe(text, &mut state.probe);
    }
    if let Some(path) = env(c"NOTIFY_SOCKET") {
        // `@name` is an abstract socket: a leading NUL.
        if !path.is_empty() && path.len() < state.notify.sun_path.len() {
            state.notify.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (dst, src) in state.notify.sun_path.iter_mut().zip(path) {
                *dst = *src as libc::c_char;
            }
            if path[0] == b'@' {
                state.notify.sun_path[0] = 0;
            }
            let base = std::mem::size_of::<libc::sa_family_t>();
            let nul = usize::from(path[0] != b'@');
            state.notify_len = (base + path.len() + nul) as socklen_t;
        }
        tail::open(path);
    }
    for real in REALS {
        real.resolve();
    }
    if state.probing && state.notify_len != 0 {
        OWES_REPORT.store(true, Ordering::Relaxed);
        // SAFETY: registering a fork handler is allowed in a constructor;
        // the handler only stores to an atomic (async-signal-safe).
        unsafe { libc::pthread_atfork(None, None, Some(owe_again)) };
    }
    // SAFETY: as above; the handler only stores to an atomic.
    unsafe { libc::pthread_atfork(None, None, Some(tail::after_fork)) };
    LOADED.store(true, Ordering::Release);
}

/// In each forked child: it is a process of its own and owes its report.
extern "C" fn owe_again() {
    OWES_REPORT.store(true, Ordering::Relaxed);
}

/// A variable's value, read with `getenv(3)` (no allocation).
fn env(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; in a constructor nothing changes
    // the environment concurrently, and the value points into `environ`,
    // which lives as long as the process unless the program replaces it,
    // which it cannot have done yet. The bytes are parsed at once.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    Some(unsafe { CStr::from_ptr(value) }.to_bytes())
}

/// The inode of `fd` if it is a listening TCP socket (IPv4 or IPv6).
fn listening_tcp_inode(fd: c_int) -> Option<u64> {
    let ino = socket_inode(fd)?;
    let int_opt = |opt: c_int| -> Option<c_int> {
        let mut v: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as socklen_t;
        // SAFETY: `v` and `len` are valid for getsockopt to write an int.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&raw mut v).cast::<c_void>(),
                &mut len,
            )
        };
        (rc == 0).then_some(v)
    };
    let tcp = int_opt(libc::SO_TYPE)? == libc::SOCK_STREAM
        && matches!(int_opt(libc::SO_DOMAIN)?, libc::AF_INET | libc::AF_INET6)
        && int_opt(libc::SO_ACCEPTCONN)? == 1;
    tcp.then_some(ino)
}

/// The inode of `fd` if it is a socket.
fn socket_inode(fd: c_int) -> Option<u64> {
    if fd < 0 {
        return None;
    }
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` into the buffer it is given.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it initialised the buffer.
    let st = unsafe { st.assume_init() };
    (st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some(st.st_ino)
}

/// This thread's `errno`.
fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Sets this thread's `errno`.
fn set_errno(value: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value };
}

/// Keeps `errno` as it was across the hook's own calls.
struct KeepErrno(c_int);

impl KeepErrno {
    fn new() -> KeepErrno {
        KeepErrno(errno())
    }
}

impl Drop for KeepErrno {
    fn drop(&mut self) {
        set_errno(self.0);
    }
}

/// A libc function found with `dlsym(RTLD_NEXT, name)`, cached.
struct Real {
    name: &'static CStr,
    addr: AtomicUsize,
}

impl Real {
    const fn new(name: &'static CStr) -> Real {
        Real {
            name,
            addr: AtomicUsize::new(0),
        }
    }

    /// The function's address: found at load; found here if a hook runs
    /// before the constructor did (another library's constructor).
    fn resolve(&self) -> usize {
        let addr = self.addr.load(Ordering::Relaxed);
        if addr != 0 {
            return addr;
        }
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
        let found = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) } as usize;
        self.addr.store(found, Ordering::Relaxed);
        found
    }
}

static REALS: [&Real; 14] = [
    &tail::REAL_WRITE,
    &tail::REAL_WRITEV,
    &tail::REAL_FWRITE,
    &tail::REAL_FPUTS,
    &adopt::REAL_BIND,
    &adopt::REAL_LISTEN,
    &ready::REAL_ACCEPT,
    &ready::REAL_ACCEPT4,
    &ready::REAL_POLL,
    &ready::REAL_PPOLL,
    &ready::REAL_SELECT,
    &ready::REAL_PSELECT,
    &ready::REAL_EPOLL_CTL,
    &adopt::REAL_SHUTDOWN,
];

/// Calls the real function `$real` as type `$ty`; `ENOSYS` if libc has
/// none (cannot happen with glibc).
macro_rules! call_real {
    ($real:expr, $ty:ty, $($arg:expr),*) => {{
        let addr = $real.resolve();
        if addr == 0 {
            // SAFETY: __errno_location returns this thread's errno.
            unsafe { *libc::__errno_location() = libc::ENOSYS };
            return -1;
        }
        // SAFETY: `addr` is libc's own definition of this very function,
        // whose C prototype `$ty` spells out; the arguments are passed on
        // unchanged from the caller, who vouches for them.
        let f: $ty = unsafe { std::mem::transmute::<usize, $ty>(addr) };
        // SAFETY: as above.
        unsafe { f($($arg),*) }
    }};
}

mod adopt;
mod ready;
mod tail;
