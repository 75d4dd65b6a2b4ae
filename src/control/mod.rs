//! The control socket: how `hawkey status`, `hawkey reload` and `hawkey
//! stop` talk to a running master.
//!
//! # Role
//!
//! The master binds one unix stream socket in its runtime directory
//! (`/run/hawkey/hawkey.sock` as root; the directory is chosen like the
//! pidfile's, see `pidfile::runtime_dir`) and serves it from its event loop
//! with a [`Server`]. The CLI side is [`request_trusting`]. The socket is an extra,
//! not a dependency: signals (`SIGHUP`, `SIGTERM`, …) and the pidfile work
//! the same without it, so a master whose socket could not be bound still
//! runs, and scripts that signal it keep working.
//!
//! # Protocol
//!
//! One connection carries one exchange, one JSON object per line each way.
//! The client connects and writes a [`Request`] as one line ending in
//! `\n`, at most [`MAX_REQUEST`] bytes with the newline; the master writes
//! one [`Response`] line and closes the connection:
//!
//! ```text
//! > {"request":"status"}
//! < {"response":"status","master_pid":812,"uptime_ms":5000,"generation":1,…}
//! > {"request":"reload","wait":true}
//! < {"response":"ok","message":"reload finished: generation 3"}
//! > {"request":"stop"}
//! < {"response":"error","exit_code":78,"message":"…"}
//! ```
//!
//! The client keeps its end open, write side included, until it has the
//! answer: an end of file from a client means it gave up (Ctrl-C on
//! `hawkey reload --wait`), and the master drops it. Bytes after the
//! request line are ignored, and so are unknown fields, so a newer CLI can
//! add optional ones. A request that is not one line of valid JSON within
//! 4096 bytes gets `{"response":"error","exit_code":64,…}` (`EX_USAGE`); a
//! client that has not sent a whole line within 5 seconds of connecting is
//! disconnected without an answer. Exit codes in `error` responses are what
//! the CLI exits with (sysexits(3) where one fits: 64 bad request, 77 not
//! allowed, 78 invalid configuration; 1 otherwise).
//!
//! # Security
//!
//! Whoever can talk to this socket can stop the service, so two checks
//! guard it. The socket file is mode 0600, owned by the master's user,
//! before anyone can reach it: it is bound in a private directory beside
//! its path (the umask narrowed around `bind(2)`, and `fchmodat(2)` there
//! for a directory whose default ACL overrides the umask), then renamed
//! into place (see [`Server::bind`]); nothing is ever `chmod`ed by a path
//! others could swap, and a directory others can write is refused. And
//! every accepted connection's peer credentials (`SO_PEERCRED`, taken by
//! the kernel at `connect(2)`) must name uid 0 or the master's effective
//! uid; anyone else is told
//! `permission denied` (exit code 77, `EX_NOPERM`) and disconnected. The
//! file mode alone is not enough: a process may have inherited a connected
//! descriptor, the path may sit in a directory others can write (and so
//! replace or re-link), and permission checks on socket files have not
//! always been honoured everywhere.
//!
//! The CLI checks the other way too: it believes only a server whose peer
//! credentials name root, its own uid or the pidfile's owner, and the pid
//! the pidfile names (`client::Trust`), so a process listening at the path
//! first cannot answer in the master's place.
//!
//! [`Server::bind`] replaces a socket file nobody listens on (a master that
//! died without cleaning up leaves one: `connect(2)` to it fails with
//! `ECONNREFUSED`), refuses while another process listens on it, and never
//! removes anything that is not a socket. That stale check is not a lock:
//! one hawkey per runtime directory is the pidfile's job. Dropping the
//! [`Server`] removes the file if the inode at the path is still the one it
//! bound.
//!
//! # Never blocking the master
//!
//! The master is single-threaded: one `poll(2)` loop reads signals, worker
//! notifications and this socket, so anything here that waited would stall
//! supervision (restarts, stop deadlines) for every worker. Hence no
//! threads and no sleeps: every descriptor is non-blocking and
//! close-on-exec from its creation, the master polls
//! [`Server::poll_fds`], calls [`Server::drain`] on every wake-up and wakes
//! by [`Server::next_deadline`] at the latest. A request is assembled from
//! whatever has arrived, across as many wake-ups as it takes, up to its
//! deadline. [`Server::reply`] sends without waiting (`MSG_DONTWAIT`) and
//! without `SIGPIPE` (`MSG_NOSIGNAL`); a client whose receive buffer is full
//! is dropped rather than waited for (answers are a few KiB at most).
//! At most [`MAX_CLIENTS`] connections are held at once; beyond that, and
//! for a second after `accept(2)` runs out of descriptors, the listener is
//! left out of the poll set, so new connections wait in the backlog instead
//! of spinning the loop.
//!
//! The client side, [`request_trusting`], is an ordinary blocking exchange with an
//! overall deadline, for the CLI.

//!
//! # Parts
//!
//! - [`protocol`]: the request and response lines and their limits.
//! - [`server`]: the master's non-blocking end, polled by its loop.
//! - [`client`]: the CLI's blocking end, with an overall deadline.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::exit::Status;

pub(crate) mod client;
pub(crate) mod protocol;
pub(crate) mod server;
#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) use client::request;
pub(crate) use client::{Trust, request_trusting};
pub(crate) use protocol::{
    ClientId, ListenerStatus, Request, Response, StatusReport, WorkerStatus,
};
pub(crate) use server::Server;

/// Why the control socket could not be bound or a request not answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// `socket`, `bind`, `chmod` or `listen` failed for the server socket.
    #[error("failed to bind the control socket '{}': {source}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The socket's directory is not fit to hold it (writable by others…).
    #[error(transparent)]
    Directory(#[from] crate::config::paths::UnsafeDirectory),
    /// Another live process listens on the path.
    #[error("another hawkey is listening on '{}'", path.display())]
    InUse { path: PathBuf },
    /// Something other than a socket is at the path; it was left alone.
    #[error("refusing to replace '{}' with the control socket: not a socket", path.display())]
    NotASocket { path: PathBuf },
    /// The client could not connect, for a reason other than those below.
    #[error("failed to connect to the control socket '{}': {source}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The client may not open the socket (`EACCES`).
    #[error(
        "permission denied on the control socket '{}': run this as root or as the user hawkey runs as",
        path.display()
    )]
    PermissionDenied {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The process listening at the path is not the master the CLI
    /// expects (see `client::Trust`); nothing was sent to it.
    #[error(
        "refusing to believe the process listening on '{}' (pid {pid}, uid {uid}): {why}; it is not this hawkey's master",
        path.display()
    )]
    Impostor {
        path: PathBuf,
        pid: i32,
        uid: u32,
        why: String,
    },
    /// No socket at the path, or nobody listening on it.
    #[error("hawkey is not running (no control socket at '{}')", path.display())]
    NotRunning { path: PathBuf },
    /// The exchange did not finish within the client's timeout.
    #[error("no answer from hawkey on '{}' within {timeout:?}", path.display())]
    Timeout { path: PathBuf, timeout: Duration },
    /// The other side broke the protocol: no answer, or not a valid one.
    #[error("control protocol error: {0}")]
    Protocol(String),
    /// Sending or receiving failed; `op` names it ("send the request", …).
    #[error("failed to {op} on the control socket '{}': {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The status a CLI command that met this error exits with: 3 when
    /// the master is not running (LSB), 77 (`EX_NOPERM`) when it may not be
    /// talked to, 1 otherwise. (The master only logs its own bind errors.)
    pub(crate) fn status(&self) -> Status {
        match self {
            Error::NotRunning { .. } => Status::NotRunning,
            Error::PermissionDenied { .. } => Status::NoPermission,
            _ => Status::Failure,
        }
    }
}
