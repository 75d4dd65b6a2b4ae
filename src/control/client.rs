//! The CLI's end of the control socket: an ordinary blocking exchange
//! with an overall deadline.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

use super::Error;
use super::protocol::{MAX_RESPONSE, Request, Response};

/// Client side, for the CLI: connects to `path`, sends the request line and
/// reads the one response line, all within `timeout` (`None`: wait as long
/// as it takes, for `reload --wait`).
pub(crate) fn request(
    path: &Path,
    request: &Request,
    timeout: Option<Duration>,
) -> Result<Response, Error> {
    let client = Connection::open(path, timeout)?;
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
