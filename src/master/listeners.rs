//! The listening sockets every worker inherits.
//!
//! Under systemd socket activation (`sd_listen_fds(3)`), the sockets come
//! from `LISTEN_FDS` — only when `LISTEN_PID` is this process, so variables
//! meant for a parent are never taken — named by `LISTEN_FDNAMES` (systemd's
//! `FileDescriptorName=`), and `listen:` in the config is not used: systemd
//! owns them, so they survive hawkey restarts and no connection is refused
//! meanwhile. Otherwise the master binds each `listen:` entry itself.
//!
//! One shared socket per listener, never one `SO_REUSEPORT` socket per
//! worker: a per-worker socket takes its queued connections with it when
//! its worker dies, a shared one does not. Every fd here is close-on-exec;
//! only the spawn path passes them on, at fds 3, 4, … in this order.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::rc::Rc;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, UnixAddr, bind,
    getsockopt, listen, setsockopt, socket, sockopt,
};
use nix::sys::stat::{Mode, umask};

use crate::config::{self, Address};

/// One listening socket, as a generation of workers sees it: a name and a
/// socket shared with other generations (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct Listener {
    pub(crate) name: String,
    pub(crate) socket: Rc<Socket>,
}

/// The socket itself; closed (and its unix socket file removed, if the
/// master made it) when the last generation using it is gone.
#[derive(Debug)]
pub(crate) struct Socket {
    pub(crate) fd: OwnedFd,
    pub(crate) origin: Origin,
}

impl Listener {
    fn new(name: String, fd: OwnedFd, origin: Origin) -> Listener {
        Listener {
            name,
            socket: Rc::new(Socket { fd, origin }),
        }
    }

    pub(crate) fn origin(&self) -> &Origin {
        &self.socket.origin
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.socket.fd.as_raw_fd()
    }

    /// The name and fd a spawn plan passes on to workers.
    pub(crate) fn inherited(&self) -> crate::spawn::Inherited<'_> {
        crate::spawn::Inherited {
            name: &self.name,
            fd: self.socket.fd.as_fd(),
        }
    }

    /// The same socket under another name (a reload renamed it).
    pub(crate) fn renamed(&self, name: &str) -> Listener {
        Listener {
            name: name.to_string(),
            socket: self.socket.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Passed by systemd: not ours to close or unlink.
    Systemd,
    /// Bound by the master from the config.
    Bound(Address),
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.socket.origin {
            Origin::Systemd => write!(f, "'{}' (fd {} from systemd)", self.name, self.raw_fd()),
            Origin::Bound(address) => write!(f, "'{}' on {address}", self.name),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("invalid socket activation from systemd: {0}")]
    Activation(#[source] io::Error),
    #[error("fd {fd} ('{name}') passed by systemd is not a listening socket")]
    NotListening { fd: RawFd, name: String },
    #[error("failed to bind '{address}': {}", crate::logging::errno_text(*source))]
    Bind {
        address: Address,
        #[source]
        source: Errno,
    },
    #[error("failed to bind '{address}': {reason}")]
    UnixPath { address: Address, reason: String },
}

/// The sockets systemd passed, if it passed any to this process.
pub(crate) fn from_systemd() -> Result<Option<Vec<Listener>>, Error> {
    // Ask the pid-checked count first: sd-notify 0.5's
    // `listen_fds_with_names` compares LISTEN_FDNAMES with the (zero) fds
    // even when LISTEN_PID names another process, and fails on variables
    // that were never meant for us.
    if sd_notify::listen_fds().map_err(Error::Activation)?.len() == 0 {
        return Ok(None);
    }
    let fds = sd_notify::listen_fds_with_names().map_err(Error::Activation)?;
    let mut listeners = Vec::new();
    for (fd, name) in fds {
        // SAFETY: `listen_fds_with_names` checked LISTEN_PID is this process,
        // so systemd passed these fds to us; nothing else owns them.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if !getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false) {
            return Err(Error::NotListening {
                fd: fd.as_raw_fd(),
                name,
            });
        }
        listeners.push(Listener::new(name, fd, Origin::Systemd));
    }
    Ok(Some(listeners))
}

/// Binds one `listen:` entry.
pub(crate) fn bind_listener(spec: &config::Listen) -> Result<Listener, Error> {
    bind_one(spec)
        .map(|fd| Listener::new(spec.name.clone(), fd, Origin::Bound(spec.address.clone())))
}

/// Binds every `listen:` entry, or none: on error, what was bound is closed
/// (and unix socket files removed).
pub(crate) fn bind_all(specs: &[config::Listen]) -> Result<Vec<Listener>, Error> {
    let mut listeners = Vec::new();
    for spec in specs {
        match bind_one(spec) {
            Ok(fd) => listeners.push(Listener::new(
                spec.name.clone(),
                fd,
                Origin::Bound(spec.address.clone()),
            )),
            Err(error) => {
                release(listeners);
                return Err(error);
            }
        }
    }
    Ok(listeners)
}

/// Closes the listeners and removes the unix socket files the master made.
pub(crate) fn release(listeners: Vec<Listener>) {
    drop(listeners);
}

impl Drop for Socket {
    /// A unix socket the master bound is removed with the master's last
    /// reference to it (at exit, or when a reload dropped it). Only the
    /// master has these: workers are exec'd and never run this.
    fn drop(&mut self) {
        if let Origin::Bound(Address::Unix(path)) = &self.origin
            && is_socket(path)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false)
}

fn bind_one(spec: &config::Listen) -> Result<OwnedFd, Error> {
    let address = &spec.address;
    let fail = |source| Error::Bind {
        address: address.clone(),
        source,
    };
    let backlog = Backlog::new(spec.backlog as i32).unwrap_or(Backlog::MAXCONN);
    match address {
        Address::Tcp(addr) => {
            let family = if addr.is_ipv4() {
                AddressFamily::Inet
            } else {
                AddressFamily::Inet6
            };
            let fd =
                socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(fail)?;
            // Rebinding right after a restart must not fail on TIME_WAIT.
            setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(fail)?;
            match addr {
                std::net::SocketAddr::V4(v4) => bind(fd.as_raw_fd(), &SockaddrIn::from(*v4)),
                std::net::SocketAddr::V6(v6) => {
                    // As nginx: [::]:80 means IPv6 only; list 0.0.0.0:80 too for both.
                    setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(fail)?;
                    bind(fd.as_raw_fd(), &SockaddrIn6::from(*v6))
                }
            }
            .map_err(fail)?;
            listen(&fd, backlog).map_err(fail)?;
            Ok(fd)
        }
        Address::Unix(path) => {
            clear_stale_socket(path).map_err(|reason| Error::UnixPath {
                address: address.clone(),
                reason,
            })?;
            let fd = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .map_err(fail)?;
            let unix_addr = UnixAddr::new(path.as_path()).map_err(fail)?;
            let mode = spec.mode.map(|m| m.0).unwrap_or(0o660);
            // The socket file is created by bind(2) with the umask applied:
            // narrow the umask around it so the file is never wider than
            // `mode`, even for an instant. The master is single-threaded.
            let old = umask(Mode::from_bits_truncate(!mode & 0o777));
            let bound = bind(fd.as_raw_fd(), &unix_addr);
            umask(old);
            bound.map_err(fail)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| fail(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
            listen(&fd, backlog).map_err(fail)?;
            Ok(fd)
        }
    }
}

/// A socket file left by a dead process is removed; a live one (something
/// accepts connections on it) or any other kind of file is left alone.
fn clear_stale_socket(path: &Path) -> Result<(), String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    if !meta.file_type().is_socket() {
        return Err(format!("'{}' exists and is not a socket", path.display()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err("address already in use (a process accepts connections on it)".into()),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            std::fs::remove_file(path).map_err(|e| format!("failed to remove stale socket: {e}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(address: &str) -> config::Listen {
        config::Listen {
            name: "t".into(),
            address: Address::Tcp(address.parse().unwrap()),
            backlog: 16,
            mode: None,
        }
    }

    #[test]
    fn bound_sockets_listen_and_are_close_on_exec() {
        let listeners = bind_all(&[tcp("127.0.0.1:0")]).unwrap();
        let fd = &listeners[0].socket.fd;
        assert!(getsockopt(fd, sockopt::AcceptConn).unwrap());
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn a_port_in_use_is_a_clear_error() {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        let err = bind_all(&[tcp(&format!("127.0.0.1:{port}"))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("failed to bind '127.0.0.1:{port}': address already in use")
        );
    }

    #[test]
    fn stale_unix_sockets_are_replaced_and_live_ones_refused() {
        let dir = std::env::temp_dir().join(format!("hawkey-listener-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let spec = config::Listen {
            name: "u".into(),
            address: Address::Unix(path.clone()),
            backlog: 16,
            mode: Some(config::Mode(0o600)),
        };
        // A stale socket file: bound, then its owner is gone.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let listeners = bind_all(std::slice::from_ref(&spec)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Live: a second bind is refused and the file stays.
        let err = bind_all(std::slice::from_ref(&spec)).unwrap_err();
        assert!(err.to_string().contains("already in use"), "{err}");
        release(listeners);
        assert!(!path.exists());
        // A regular file is never removed.
        std::fs::write(&path, "data").unwrap();
        assert!(
            bind_all(std::slice::from_ref(&spec))
                .unwrap_err()
                .to_string()
                .contains("not a socket")
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
