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
//! - this file: the state read once at load (an `.init_array`
//!   constructor), the real functions found with `dlsym(RTLD_NEXT, ...)`,
//!   and the interposed calls.
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
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libc::{fd_set, nfds_t, pollfd, sigset_t, sockaddr, socklen_t, timespec, timeval};

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

/// Sends the readiness report if this process still owes it.
fn report() {
    if !OWES_REPORT.swap(false, Ordering::Relaxed) {
        return;
    }
    let Some(state) = state() else { return };
    let _errno = KeepErrno::new();
    // SAFETY: plain socket calls on an fd this function owns from
    // `socket` to `close`; the address is a complete sockaddr_un of
    // `notify_len` bytes (set only when the path fit).
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return;
        }
        libc::sendto(
            fd,
            REPORT.as_ptr().cast(),
            REPORT.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            (&raw const state.notify).cast(),
            state.notify_len,
        );
        libc::close(fd);
    }
}

/// Whether `fd` is a listener the master probes: the readiness hooks'
/// check, after the early-out.
fn probed(state: &State, fd: c_int) -> bool {
    let _errno = KeepErrno::new();
    socket_inode(fd).is_some_and(|ino| state.probe[..state.probe_len].contains(&ino))
}

/// Reports if `fd` is a probed listener. Cheap once reported, and when
/// the master does not probe: one relaxed atomic load.
fn watch(fd: c_int) {
    if !OWES_REPORT.load(Ordering::Relaxed) {
        return;
    }
    if let Some(state) = state()
        && probed(state, fd)
    {
        report();
    }
}

/// As [`watch`], for each fd `fds` yields.
fn watch_any(fds: impl Iterator<Item = c_int>) {
    if !OWES_REPORT.load(Ordering::Relaxed) {
        return;
    }
    let Some(state) = state() else { return };
    for fd in fds {
        if probed(state, fd) {
            report();
            return;
        }
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

static REAL_BIND: Real = Real::new(c"bind");
static REAL_LISTEN: Real = Real::new(c"listen");
static REAL_ACCEPT: Real = Real::new(c"accept");
static REAL_ACCEPT4: Real = Real::new(c"accept4");
static REAL_POLL: Real = Real::new(c"poll");
static REAL_PPOLL: Real = Real::new(c"ppoll");
static REAL_SELECT: Real = Real::new(c"select");
static REAL_PSELECT: Real = Real::new(c"pselect");
static REAL_EPOLL_CTL: Real = Real::new(c"epoll_ctl");
static REAL_SHUTDOWN: Real = Real::new(c"shutdown");
static REALS: [&Real; 14] = [
    &tail::REAL_WRITE,
    &tail::REAL_WRITEV,
    &tail::REAL_FWRITE,
    &tail::REAL_FPUTS,
    &REAL_BIND,
    &REAL_LISTEN,
    &REAL_ACCEPT,
    &REAL_ACCEPT4,
    &REAL_POLL,
    &REAL_PPOLL,
    &REAL_SELECT,
    &REAL_PSELECT,
    &REAL_EPOLL_CTL,
    &REAL_SHUTDOWN,
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

mod tail;

/// The address a `bind(2)` names, if it is IPv4 or IPv6.
///
/// # Safety
/// `addr` must point to `len` readable bytes (or be null).
unsafe fn socket_addr(addr: *const sockaddr, len: socklen_t) -> Option<SocketAddr> {
    if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: at least the family is readable (checked above).
    let family = c_int::from(unsafe { (*addr).sa_family });
    match family {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the caller's buffer holds a whole sockaddr_in; read
            // unaligned, as the caller's may be a byte buffer.
            let a = unsafe { addr.cast::<libc::sockaddr_in>().read_unaligned() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, a whole sockaddr_in6.
            let a = unsafe { addr.cast::<libc::sockaddr_in6>().read_unaligned() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The adopted listener a bind of `addr` on `fd` is meant for, if any:
/// the address matches an entry, `fd` is a stream socket, and the
/// entry's fd is still the listener found at load.
fn adoption_for(state: &State, fd: c_int, addr: &SocketAddr) -> Option<Adopted> {
    let entry = *state.adopt[..state.adopt_len]
        .iter()
        .find(|a| a.spec.matches(addr))?;
    let mut kind: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: `kind` and `len` are valid for getsockopt to write an int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut kind).cast::<c_void>(),
            &mut len,
        )
    };
    let still_there = socket_inode(entry.spec.fd) == Some(entry.ino);
    (rc == 0 && kind == libc::SOCK_STREAM && still_there).then_some(entry)
}

/// Puts the listener of `entry` in place of `fd`: same fd number, same
/// `FD_CLOEXEC` as the program's socket had, and the shared open file
/// description's `O_NONBLOCK` as the program's socket had it (the
/// listener's status flags are shared by every worker that adopts it;
/// all workers run the same program, so they agree). Returns bind's 0 or
/// -1 with `errno`.
fn adopt(fd: c_int, entry: Adopted) -> c_int {
    if fd == entry.spec.fd {
        return 0;
    }
    // SAFETY: fcntl and dup3 on fds the program passed or that are ours;
    // dup3 atomically replaces `fd` (closing the program's own socket),
    // which is what bind's caller expects to find at that number.
    unsafe {
        let fd_flags = libc::fcntl(fd, libc::F_GETFD);
        let status = libc::fcntl(fd, libc::F_GETFL);
        if fd_flags < 0 || status < 0 {
            return -1;
        }
        let cloexec = if fd_flags & libc::FD_CLOEXEC != 0 {
            libc::O_CLOEXEC
        } else {
            0
        };
        if libc::dup3(entry.spec.fd, fd, cloexec) < 0 {
            return -1;
        }
        let shared = libc::fcntl(fd, libc::F_GETFL);
        if shared >= 0 {
            let wanted = (shared & !libc::O_NONBLOCK) | (status & libc::O_NONBLOCK);
            if wanted != shared {
                libc::fcntl(fd, libc::F_SETFL, wanted);
            }
        }
    }
    0
}

/// `bind(2)`: an adopted address gets the inherited listener.
///
/// # Safety
/// As `bind(2)`: `addr` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    if let Some(state) = state()
        && state.adopt_len > 0
    {
        // SAFETY: the caller's contract, passed on.
        let target = unsafe { socket_addr(addr, len) };
        if let Some(target) = target {
            let saved = errno();
            if let Some(entry) = adoption_for(state, fd, &target) {
                let rc = adopt(fd, entry);
                if rc == 0 {
                    set_errno(saved);
                }
                // On failure the errno of the failed step is the answer.
                return rc;
            }
            set_errno(saved);
        }
    }
    call_real!(
        REAL_BIND,
        unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int,
        fd,
        addr,
        len
    )
}

/// Whether `fd` is one of the adopted listeners (at the program's fd or
/// at the inherited one): the same socket inode.
fn is_adopted(state: &State, fd: c_int) -> bool {
    let _errno = KeepErrno::new();
    socket_inode(fd).is_some_and(|ino| state.adopt[..state.adopt_len].iter().any(|a| a.ino == ino))
}

/// `listen(2)`: on an adopted listener, succeed without touching the
/// shared queue's backlog, and report.
///
/// # Safety
/// As `listen(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    if let Some(state) = state()
        && state.adopt_len > 0
        && is_adopted(state, fd)
    {
        report();
        return 0;
    }
    call_real!(
        REAL_LISTEN,
        unsafe extern "C" fn(c_int, c_int) -> c_int,
        fd,
        backlog
    )
}

/// `shutdown(2)`: on an adopted listener, succeed without shutting the
/// socket down. A shutdown acts on the socket, not the fd: on the shared
/// listener it would stop accepting for every worker and the master. A
/// program that shuts its listener down is done with it and closes or
/// exits next, which releases only its own fd.
///
/// # Safety
/// As `shutdown(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    if let Some(state) = state()
        && state.adopt_len > 0
        && is_adopted(state, fd)
    {
        return 0;
    }
    call_real!(
        REAL_SHUTDOWN,
        unsafe extern "C" fn(c_int, c_int) -> c_int,
        fd,
        how
    )
}

/// `accept(2)`, watched for readiness.
///
/// # Safety
/// As `accept(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    watch(fd);
    call_real!(
        REAL_ACCEPT,
        unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int,
        fd,
        addr,
        len
    )
}

/// `accept4(2)`, watched for readiness.
///
/// # Safety
/// As `accept4(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    watch(fd);
    call_real!(
        REAL_ACCEPT4,
        unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int,
        fd,
        addr,
        len,
        flags
    )
}

/// The fds of a `pollfd` array that wait to read.
///
/// # Safety
/// `fds` points to `n` readable `pollfd`s (or is null).
unsafe fn poll_fds(fds: *const pollfd, n: nfds_t) -> impl Iterator<Item = c_int> {
    let all: &[pollfd] = if fds.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(fds, n as usize) }
    };
    all.iter()
        .filter(|p| p.events & libc::POLLIN != 0)
        .map(|p| p.fd)
}

/// `poll(2)`, watched for readiness.
///
/// # Safety
/// As `poll(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int {
    if OWES_REPORT.load(Ordering::Relaxed) {
        // SAFETY: the caller's contract.
        watch_any(unsafe { poll_fds(fds, n) });
    }
    call_real!(
        REAL_POLL,
        unsafe extern "C" fn(*mut pollfd, nfds_t, c_int) -> c_int,
        fds,
        n,
        timeout
    )
}

/// `ppoll(2)`, watched for readiness.
///
/// # Safety
/// As `ppoll(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    n: nfds_t,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    if OWES_REPORT.load(Ordering::Relaxed) {
        // SAFETY: the caller's contract.
        watch_any(unsafe { poll_fds(fds, n) });
    }
    call_real!(
        REAL_PPOLL,
        unsafe extern "C" fn(*mut pollfd, nfds_t, *const timespec, *const sigset_t) -> c_int,
        fds,
        n,
        timeout,
        mask
    )
}

/// The fds a `select` read set holds.
///
/// # Safety
/// `set` points to a readable `fd_set` (or is null).
unsafe fn select_fds(n: c_int, set: *const fd_set) -> impl Iterator<Item = c_int> {
    let n = if set.is_null() {
        0
    } else {
        n.clamp(0, libc::FD_SETSIZE as c_int)
    };
    // SAFETY: `set` is readable and `fd` below FD_SETSIZE.
    (0..n).filter(move |&fd| unsafe { libc::FD_ISSET(fd, set) })
}

/// `select(2)`, watched for readiness.
///
/// # Safety
/// As `select(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn select(
    n: c_int,
    read: *mut fd_set,
    write: *mut fd_set,
    except: *mut fd_set,
    timeout: *mut timeval,
) -> c_int {
    if OWES_REPORT.load(Ordering::Relaxed) {
        // SAFETY: the caller's contract.
        watch_any(unsafe { select_fds(n, read) });
    }
    call_real!(
        REAL_SELECT,
        unsafe extern "C" fn(c_int, *mut fd_set, *mut fd_set, *mut fd_set, *mut timeval) -> c_int,
        n,
        read,
        write,
        except,
        timeout
    )
}

/// `pselect(2)`, watched for readiness.
///
/// # Safety
/// As `pselect(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pselect(
    n: c_int,
    read: *mut fd_set,
    write: *mut fd_set,
    except: *mut fd_set,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    if OWES_REPORT.load(Ordering::Relaxed) {
        // SAFETY: the caller's contract.
        watch_any(unsafe { select_fds(n, read) });
    }
    call_real!(
        REAL_PSELECT,
        unsafe extern "C" fn(
            c_int,
            *mut fd_set,
            *mut fd_set,
            *mut fd_set,
            *const timespec,
            *const sigset_t,
        ) -> c_int,
        n,
        read,
        write,
        except,
        timeout,
        mask
    )
}

/// `epoll_ctl(2)`: an `EPOLL_CTL_ADD` of a probed listener is watched for
/// readiness.
///
/// # Safety
/// As `epoll_ctl(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    fd: c_int,
    event: *mut libc::epoll_event,
) -> c_int {
    if op == libc::EPOLL_CTL_ADD {
        watch(fd);
    }
    call_real!(
        REAL_EPOLL_CTL,
        unsafe extern "C" fn(c_int, c_int, c_int, *mut libc::epoll_event) -> c_int,
        epfd,
        op,
        fd,
        event
    )
}
