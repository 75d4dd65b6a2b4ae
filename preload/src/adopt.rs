//! Adoption: an unmodified program's own `bind(2)` of an address
//! `workers.adopt` names gets hawkey's inherited listener instead
//! (`dup3(2)` onto the program's fd), and `listen(2)` and `shutdown(2)` on
//! an adopted listener succeed without touching the socket every worker
//! shares. The matching rule is `spec`'s; the table was read at load.

use std::ffi::{c_int, c_void};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use libc::{sockaddr, socklen_t};

use crate::ready::report;
use crate::{Adopted, KeepErrno, Real, State, errno, set_errno, socket_inode, state};

pub(crate) static REAL_BIND: Real = Real::new(c"bind");
pub(crate) static REAL_LISTEN: Real = Real::new(c"listen");
pub(crate) static REAL_SHUTDOWN: Real = Real::new(c"shutdown");

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
