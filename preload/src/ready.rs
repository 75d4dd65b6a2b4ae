//! Readiness: the first `accept`, `accept4`, `poll`, `ppoll`, `select`,
//! `pselect` or `epoll_ctl(EPOLL_CTL_ADD)` that names a listener the
//! master probes (`HAWKEY_READY_PROBE`), or the `listen` of an adopted
//! one, sends `HAWKEY_ACCEPTING=1` to the `NOTIFY_SOCKET` read at load,
//! once per process. Until then each hook costs one relaxed atomic load
//! more than libc's own call; after it, the same.

use std::ffi::c_int;
use std::sync::atomic::Ordering;

use libc::{fd_set, nfds_t, pollfd, sigset_t, sockaddr, socklen_t, timespec, timeval};

use crate::{KeepErrno, OWES_REPORT, REPORT, Real, State, socket_inode, state};

pub(crate) static REAL_ACCEPT: Real = Real::new(c"accept");
pub(crate) static REAL_ACCEPT4: Real = Real::new(c"accept4");
pub(crate) static REAL_POLL: Real = Real::new(c"poll");
pub(crate) static REAL_PPOLL: Real = Real::new(c"ppoll");
pub(crate) static REAL_SELECT: Real = Real::new(c"select");
pub(crate) static REAL_PSELECT: Real = Real::new(c"pselect");
pub(crate) static REAL_EPOLL_CTL: Real = Real::new(c"epoll_ctl");

/// Sends the readiness report if this process still owes it.
pub(crate) fn report() {
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
