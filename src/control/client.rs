//! The CLI's end of the control socket: an ordinary blocking exchange
//! with an overall deadline, with a master it has checked first.
//!
//! # Whom the CLI believes
//!
//! A socket path proves nothing: in a directory others can write (a 1777
//! one, say) anyone can listen at the name first and answer `hawkey stop`
//! with "stopped" while the master runs on. So before it sends anything
//! the client reads the peer credentials of the process listening there
//! (`SO_PEERCRED`, taken by the kernel at its `listen(2)`) and goes on
//! only if its uid is root, the CLI's own, or the owner of the pidfile,
//! and, when the pidfile names a pid, only if it is that pid ([`Trust`]).
//! A pidfile in a directory others can write is not believed either: it
//! could be anyone's.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr, getsockopt, sockopt,
};

use super::Error;
use super::protocol::{MAX_RESPONSE, Request, Response};

/// Who may answer at the control socket: root, the CLI's own uid, the
/// owner of the pidfile; and only the pid the pidfile names, when it names
/// one. Read from the pidfile before connecting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Trust {
    /// The pidfile it was read from, for the error.
    pidfile: Option<PathBuf>,
    /// The pidfile's owner.
    owner: Option<u32>,
    /// The pid the pidfile names.
    pid: Option<u32>,
}

impl Trust {
    /// What the pidfile at `path` says (nothing if there is none, it
    /// cannot be read, or its directory is writable by group or others).
    /// It is read without blocking and never through a symlink.
    pub(crate) fn from_pidfile(path: Option<&Path>) -> Trust {
        let Some(path) = path else {
            return Trust::default();
        };
        let dir_is_private = path
            .parent()
            .and_then(|dir| std::fs::metadata(dir).ok())
            .is_some_and(|meta| meta.is_dir() && meta.mode() & 0o022 == 0);
        if !dir_is_private {
            return Trust::default();
        }
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
        else {
            return Trust::default();
        };
        let Ok(meta) = file.metadata() else {
            return Trust::default();
        };
        if !meta.is_file() {
            return Trust::default();
        }
        let mut content = Vec::new();
        let pid = file
            .take(64)
            .read_to_end(&mut content)
            .ok()
            .and_then(|_| crate::pid::parse(&content));
        Trust {
            pidfile: Some(path.to_path_buf()),
            owner: Some(meta.uid()),
            pid,
        }
    }

    /// Why the peer `(pid, uid)` is not to be believed, if it is not.
    pub(super) fn refuses(&self, pid: i32, uid: u32) -> Option<String> {
        let own = nix::unistd::geteuid().as_raw();
        let pidfile = || {
            self.pidfile
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        if uid != 0 && uid != own && Some(uid) != self.owner {
            return Some(match self.owner {
                Some(owner) => format!(
                    "its uid is not root, uid {own} or uid {owner} (the owner of the pidfile '{}')",
                    pidfile()
                ),
                None => format!("its uid is not root or uid {own}, and no pidfile names another"),
            });
        }
        match self.pid {
            Some(expected) if u32::try_from(pid).ok() != Some(expected) => {
                Some(format!("the pidfile '{}' names pid {expected}", pidfile()))
            }
            _ => None,
        }
    }
}

/// [`request_trusting`] with the default [`Trust`]: only root or the
/// caller's own uid is believed (the unit tests' server).
#[cfg(test)]
pub(crate) fn request(
    path: &Path,
    request: &Request,
    timeout: Option<Duration>,
) -> Result<Response, Error> {
    request_trusting(path, request, timeout, &Trust::default())
}

/// Client side, for the CLI: connects to `path`, checks that the process
/// listening there is one `trust` admits (anyone else is an
/// [`Error::Impostor`], told nothing and not listened to), sends the
/// request line and reads the one response line, all within `timeout`
/// (`None`: wait as long as it takes, for `reload --wait`).
pub(crate) fn request_trusting(
    path: &Path,
    request: &Request,
    timeout: Option<Duration>,
    trust: &Trust,
) -> Result<Response, Error> {
    let client = Connection::open(path, timeout)?;
    client.check_peer(trust)?;
    let mut line = serde_json::to_vec(request)
        .map_err(|e| Error::Protocol(format!("cannot encode the request: {e}")))?;
    line.push(b'\n');
    match client.send(&line) {
        Ok(()) => client.receive(),
        Err(e @ Error::Timeout { .. }) => Err(e),
        // The master may have answered and closed before reading (permission
        // denied): read what it said; failing that, report the send.
        Err(send_error) => client.receive().map_err(|_| send_error),
    }
}

/// A blocking connection to the master, with an overall deadline.
struct Connection<'a> {
    stream: UnixStream,
    path: &'a Path,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
}

impl Connection<'_> {
    fn open(path: &Path, timeout: Option<Duration>) -> Result<Connection<'_>, Error> {
        let connect_error = |source: io::Error| Error::Connect {
            path: path.to_path_buf(),
            source,
        };
        let socket = nix::sys::socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| connect_error(e.into()))?;
        let connection = Connection {
            stream: UnixStream::from(socket),
            path,
            timeout,
            deadline: timeout.map(|t| Instant::now() + t),
        };
        let addr = UnixAddr::new(path).map_err(|e| connect_error(e.into()))?;
        loop {
            // Linux bounds a blocking unix connect (full backlog) by the
            // send timeout.
            connection.arm()?;
            match nix::sys::socket::connect(connection.stream.as_raw_fd(), &addr) {
                Ok(()) => return Ok(connection),
                Err(Errno::EINTR) => {}
                Err(Errno::ENOENT | Errno::ECONNREFUSED) => {
                    return Err(Error::NotRunning {
                        path: path.to_path_buf(),
                    });
                }
                Err(e @ (Errno::EACCES | Errno::EPERM)) => {
                    return Err(Error::PermissionDenied {
                        path: path.to_path_buf(),
                        source: e.into(),
                    });
                }
                Err(Errno::EAGAIN) => return Err(connection.timed_out()),
                Err(e) => return Err(connect_error(e.into())),
            }
        }
    }

    /// Sets the socket's send and receive timeouts to what is left of the
    /// deadline.
    fn arm(&self) -> Result<(), Error> {
        let Some(deadline) = self.deadline else {
            return Ok(());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        let set = |r: io::Result<()>| {
            r.map_err(|source| Error::Io {
                op: "set a timeout",
                path: self.path.to_path_buf(),
                source,
            })
        };
        set(self.stream.set_read_timeout(Some(left)))?;
        set(self.stream.set_write_timeout(Some(left)))
    }

    /// Errors unless the process listening at the socket is one `trust`
    /// admits.
    fn check_peer(&self, trust: &Trust) -> Result<(), Error> {
        let peer = getsockopt(&self.stream, sockopt::PeerCredentials).map_err(|e| Error::Io {
            op: "read the peer credentials",
            path: self.path.to_path_buf(),
            source: e.into(),
        })?;
        match trust.refuses(peer.pid(), peer.uid()) {
            None => Ok(()),
            Some(why) => Err(Error::Impostor {
                path: self.path.to_path_buf(),
                pid: peer.pid(),
                uid: peer.uid(),
                why,
            }),
        }
    }

    fn timed_out(&self) -> Error {
        Error::Timeout {
            path: self.path.to_path_buf(),
            timeout: self.timeout.unwrap_or_default(),
        }
    }

    fn send(&self, mut rest: &[u8]) -> Result<(), Error> {
        while !rest.is_empty() {
            self.arm()?;
            match nix::sys::socket::send(self.stream.as_raw_fd(), rest, MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => rest = &rest[n..],
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return Err(self.timed_out()),
                Err(e) => {
                    return Err(Error::Io {
                        op: "send the request",
                        path: self.path.to_path_buf(),
                        source: e.into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Reads up to the first newline and parses what came before it.
    fn receive(&self) -> Result<Response, Error> {
        let mut received = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            self.arm()?;
            match (&self.stream).read(&mut chunk) {
                Ok(0) => {
                    return Err(Error::Protocol(
                        "hawkey closed the connection without a complete answer".into(),
                    ));
                }
                Ok(n) => {
                    let start = received.len();
                    received.extend_from_slice(&chunk[..n]);
                    if let Some(i) = received[start..].iter().position(|&b| b == b'\n') {
                        return serde_json::from_slice(&received[..start + i]).map_err(|e| {
                            Error::Protocol(format!("invalid answer from hawkey: {e}"))
                        });
                    }
                    if received.len() > MAX_RESPONSE {
                        return Err(Error::Protocol(format!(
                            "answer from hawkey longer than {MAX_RESPONSE} bytes"
                        )));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(self.timed_out());
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(Error::Protocol(
                        "hawkey closed the connection without a complete answer".into(),
                    ));
                }
                Err(source) => {
                    return Err(Error::Io {
                        op: "receive the answer",
                        path: self.path.to_path_buf(),
                        source,
                    });
                }
            }
        }
    }
}
