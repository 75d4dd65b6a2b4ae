//! The control socket: how `hawkey status`, `hawkey reload` and `hawkey
//! stop` talk to a running master.
//!
//! # Role
//!
//! The master binds one unix stream socket in its runtime directory
//! (`/run/hawkey/hawkey.sock` as root; the directory is chosen like the
//! pidfile's, see `pidfile::runtime_dir`) and serves it from its event loop
//! with a [`Server`]. The CLI side is [`request`]. The socket is an extra,
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
//! guard it. The socket file is created mode 0600, owned by the master's
//! user (the umask is narrowed around `bind(2)` so it is never wider, even
//! for an instant, and `chmod(2)` afterwards covers a directory whose
//! default ACL overrides the umask). And every accepted connection's peer
//! credentials (`SO_PEERCRED`, taken by the kernel at `connect(2)`) must
//! name uid 0 or the master's effective uid; anyone else is told
//! `permission denied` (exit code 77, `EX_NOPERM`) and disconnected. The
//! file mode alone is not enough: a process may have inherited a connected
//! descriptor, the path may sit in a directory others can write (and so
//! replace or re-link), and permission checks on socket files have not
//! always been honoured everywhere.
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
//! The client side, [`request`], is an ordinary blocking exchange with an
//! overall deadline, for the CLI.

use std::fs::{self, DirBuilder};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr, getsockopt, sockopt,
};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

/// The longest request line, newline included.
pub const MAX_REQUEST: usize = 4096;

/// The longest response line [`request`] accepts. Far above what the
/// master sends; it only bounds what a confused peer can make us buffer.
pub const MAX_RESPONSE: usize = 1 << 20;

/// How long a client has, from connecting, to send its whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How many connections the server holds at once; more wait in the backlog.
pub const MAX_CLIENTS: usize = 64;

/// The `listen(2)` backlog.
const BACKLOG: i32 = 16;

/// How long accepting pauses after `accept(2)` ran out of descriptors or
/// memory; the listener stays readable meanwhile, so polling it would spin.
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// How many times [`Server::bind`] binds again after removing a stale
/// socket file (or finding the path emptied) before giving up.
const MAX_BIND_TRIES: u32 = 5;

/// How many reads a waiting client gets per [`Server::drain`] to show it
/// hung up; whatever it sends meanwhile is discarded.
const MAX_IDLE_READS: usize = 16;

/// The process-wide umask is narrowed around `bind(2)`; this keeps two
/// binds in one process (threads in tests, an embedding program) from
/// restoring each other's value.
static UMASK: Mutex<()> = Mutex::new(());

/// A connection the master holds, named in [`Server::drain`]'s result and
/// answered with [`Server::reply`].
pub type ClientId = u64;

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "lowercase")]
pub enum Request {
    /// The master, its listeners and its workers, now.
    Status,
    /// Re-read the configuration and replace the workers; with `wait`, the
    /// answer comes once the reload has finished or failed.
    Reload { wait: bool },
    /// Stop gracefully, as `SIGTERM` does.
    Stop,
}

/// The master's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "lowercase")]
pub enum Response {
    Status(StatusReport),
    /// Done; `message` for the operator ("reload finished: generation 3").
    Ok {
        message: String,
    },
    /// Failed; `exit_code` is what the CLI exits with (e.g. 78 invalid
    /// config, 1 other), `message` one line.
    Error {
        exit_code: u8,
        message: String,
    },
}

/// The answer to [`Request::Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub master_pid: u32,
    pub uptime_ms: u64,
    pub generation: u64,
    /// The pool's status line, as sent in `STATUS=`.
    pub status: String,
    pub listeners: Vec<ListenerStatus>,
    pub workers: Vec<WorkerStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerStatus {
    pub name: String,
    pub address: String,
    pub from_systemd: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub slot: usize,
    /// The running process, if there is one in this slot.
    pub pid: Option<i32>,
    pub generation: u64,
    pub state: String,
    pub uptime_ms: Option<u64>,
    pub restarts: u32,
    /// How the slot's previous process ended ("exited with status 1").
    pub last_exit: Option<String>,
    /// The worker's own last `STATUS=` line, if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Why the control socket could not be bound or a request not answered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `socket`, `bind`, `chmod` or `listen` failed for the server socket.
    #[error("failed to bind the control socket '{}'", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another live process listens on the path.
    #[error("another hawkey is listening on '{}'", path.display())]
    InUse { path: PathBuf },
    /// Something other than a socket is at the path; it was left alone.
    #[error("refusing to replace '{}' with the control socket: not a socket", path.display())]
    NotASocket { path: PathBuf },
    /// The client could not connect, for a reason other than those below.
    #[error("failed to connect to the control socket '{}'", path.display())]
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
    #[error("failed to {op} on the control socket '{}'", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The exit status for this error, from sysexits(3) where one fits:
    /// 77 (`EX_NOPERM`) for a permission error, 76 (`EX_PROTOCOL`) for a
    /// protocol error, 75 (`EX_TEMPFAIL`) when another hawkey holds the
    /// path or the answer timed out, 73 (`EX_CANTCREAT`) when the socket
    /// cannot be created, 1 otherwise (including "not running").
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::PermissionDenied { .. } => 77,
            Error::Protocol(_) => 76,
            Error::InUse { .. } | Error::Timeout { .. } => 75,
            Error::Bind { .. } | Error::NotASocket { .. } => 73,
            Error::Connect { .. } | Error::NotRunning { .. } | Error::Io { .. } => 1,
        }
    }
}

/// The master's end: the listening socket and the connections it holds.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file we bound, to remove only that.
    inode: (u64, u64),
    /// The process that bound it: only that one removes the file.
    bound_by: u32,
    /// The effective uid allowed besides root.
    owner: u32,
    clients: Vec<Client>,
    next_id: ClientId,
    /// Set when `accept(2)` ran out of resources: accept again after this.
    accept_paused_until: Option<Instant>,
}

#[derive(Debug)]
struct Client {
    id: ClientId,
    stream: UnixStream,
    state: ClientState,
}

#[derive(Debug)]
enum ClientState {
    /// Still sending its request: what has arrived, and until when it may.
    Reading {
        received: Vec<u8>,
        deadline: Instant,
    },
    /// Its request went to the master; it waits for [`Server::reply`].
    Waiting,
}

/// What one look at a reading client found.
enum Progress {
    /// Nothing more yet.
    Pending,
    Request(Request),
    /// Malformed: answer with exit code 64 and this message, then close.
    Invalid(String),
    /// Hung up, or the connection failed: close without an answer.
    Gone,
}

impl Server {
    /// Binds `path`: refuses to replace anything that is not a socket; a
    /// stale socket file (connect gets `ECONNREFUSED`) is replaced, a live
    /// one is an error; the file gets mode 0600; listen backlog 16. If the
    /// directory is missing, its last component is created (mode 0755).
    ///
    /// The umask is narrowed for the duration of `bind(2)`: call this in
    /// start-up, while no other thread creates files.
    pub fn bind(path: &Path) -> Result<Server, Error> {
        let bind_error = |source: io::Error| Error::Bind {
            path: path.to_path_buf(),
            source,
        };
        create_parent(path).map_err(bind_error)?;
        let addr = UnixAddr::new(path).map_err(|e| bind_error(e.into()))?;
        let owner = nix::unistd::geteuid().as_raw();
        for _ in 0..MAX_BIND_TRIES {
            let socket = nix::sys::socket::socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                None,
            )
            .map_err(|e| bind_error(e.into()))?;
            match bind_owner_only(&socket, &addr) {
                Ok(()) => {}
                Err(Errno::EADDRINUSE) => {
                    remove_if_stale(path)?;
                    continue;
                }
                Err(e) => return Err(bind_error(e.into())),
            }
            let meta = fs::symlink_metadata(path).map_err(bind_error)?;
            // From here the file is ours, and dropping `server` on an error
            // below removes it.
            let server = Server {
                listener: UnixListener::from(socket),
                path: path.to_path_buf(),
                inode: (meta.dev(), meta.ino()),
                bound_by: std::process::id(),
                owner,
                clients: Vec::new(),
                next_id: 1,
                accept_paused_until: None,
            };
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
            let backlog = Backlog::new(BACKLOG).map_err(|e| bind_error(e.into()))?;
            nix::sys::socket::listen(&server.listener, backlog)
                .map_err(|e| bind_error(e.into()))?;
            return Ok(server);
        }
        Err(bind_error(io::Error::other(format!(
            "the path was taken again after removing a stale socket, {MAX_BIND_TRIES} times"
        ))))
    }

    /// The socket's path, as given to [`Server::bind`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fds to poll for readability: the listener (unless the server
    /// holds [`MAX_CLIENTS`] or accepting is paused) and every client,
    /// including those waiting for a reply (readable means they hung up).
    pub fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = Vec::with_capacity(self.clients.len() + 1);
        if self.accepting() {
            fds.push(self.listener.as_fd());
        }
        fds.extend(self.clients.iter().map(|c| c.stream.as_fd()));
        fds
    }

    /// Accepts every pending connection (refusing peers other than root and
    /// the master's user with exit code 77), reads whatever each client
    /// sent, and returns the requests now complete. A malformed request is
    /// answered with exit code 64 and closed; a client that has not sent
    /// its whole request by its deadline, or hung up, is dropped. Call it on
    /// every wake-up of the loop, with the loop's notion of now.
    pub fn drain(&mut self, now: Instant) -> Vec<(ClientId, Request)> {
        if self.accept_paused_until.is_some_and(|until| now >= until) {
            self.accept_paused_until = None;
        }
        self.accept_all(now);
        let mut requests = Vec::new();
        self.clients.retain_mut(|client| match &mut client.state {
            ClientState::Reading { received, deadline } => {
                match read_request(&mut client.stream, received) {
                    Progress::Pending => now < *deadline,
                    Progress::Request(request) => {
                        client.state = ClientState::Waiting;
                        requests.push((client.id, request));
                        true
                    }
                    Progress::Invalid(message) => {
                        send_line(
                            &client.stream,
                            &Response::Error {
                                exit_code: 64,
                                message,
                            },
                        );
                        false
                    }
                    Progress::Gone => false,
                }
            }
            ClientState::Waiting => still_there(&mut client.stream),
        });
        requests
    }

    /// When [`Server::drain`] next has something to do without a wake-up:
    /// the earliest request deadline, or the end of an accept pause.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients
            .iter()
            .filter_map(|c| match c.state {
                ClientState::Reading { deadline, .. } => Some(deadline),
                ClientState::Waiting => None,
            })
            .chain(self.accept_paused_until)
            .min()
    }

    /// Writes the response as one JSON line and closes the client. A client
    /// that went away, or whose buffer is full, is simply dropped; an id
    /// the server no longer holds is ignored. Never blocks, never raises
    /// `SIGPIPE`.
    pub fn reply(&mut self, id: ClientId, response: &Response) {
        if let Some(index) = self.clients.iter().position(|c| c.id == id) {
            let client = self.clients.remove(index);
            send_line(&client.stream, response);
        }
    }

    fn accepting(&self) -> bool {
        self.clients.len() < MAX_CLIENTS && self.accept_paused_until.is_none()
    }

    fn accept_all(&mut self, now: Instant) {
        while self.accepting() {
            // std accepts with `accept4(SOCK_CLOEXEC)`; the listener is
            // non-blocking, so this ends with `WouldBlock`.
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream, now),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                }
                Err(_) => break,
            }
        }
    }

    /// Checks a new connection's peer and starts reading its request.
    fn admit(&mut self, stream: UnixStream, now: Instant) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let Ok(peer) = getsockopt(&stream, sockopt::PeerCredentials) else {
            return;
        };
        let uid = peer.uid();
        if uid != 0 && uid != self.owner {
            let message = format!(
                "permission denied: uid {uid} may not control this hawkey (owner uid {})",
                self.owner
            );
            send_line(
                &stream,
                &Response::Error {
                    exit_code: 77,
                    message,
                },
            );
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.clients.push(Client {
            id,
            stream,
            state: ClientState::Reading {
                received: Vec::new(),
                deadline: now + REQUEST_TIMEOUT,
            },
        });
    }
}

impl Server {
    /// Removes the socket file now (if the inode at the path is still the
    /// one bound, and only in the process that bound it). Connections
    /// already accepted stay usable: `hawkey stop` is answered after this,
    /// so a new master started at once finds no leftover.
    pub fn unlink(&mut self) {
        if std::process::id() != self.bound_by {
            return;
        }
        if let Ok(meta) = fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.inode
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.unlink();
    }
}

/// Creates the socket's directory if it is missing: that one component
/// only, mode 0755 (as the pidfile does).
fn create_parent(path: &Path) -> io::Result<()> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    match fs::symlink_metadata(parent) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match DirBuilder::new().mode(0o755).create(parent) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) => Err(e),
    }
}

/// `bind(2)` with the umask narrowed to 0177, so the file is created 0600.
fn bind_owner_only(socket: &OwnedFd, addr: &UnixAddr) -> nix::Result<()> {
    let _guard = UMASK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let previous = nix::sys::stat::umask(Mode::from_bits_truncate(0o177));
    let result = nix::sys::socket::bind(socket.as_raw_fd(), addr);
    nix::sys::stat::umask(previous);
    result
}

/// Called when something is at `path`: removes it if it is a socket nobody
/// listens on; errors if it is live or not a socket.
fn remove_if_stale(path: &Path) -> Result<(), Error> {
    let bind_error = |source: io::Error| Error::Bind {
        path: path.to_path_buf(),
        source,
    };
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        // Gone meanwhile: bind again.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(bind_error(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::NotASocket {
            path: path.to_path_buf(),
        });
    }
    // A non-blocking probe: a live listener with a full backlog answers
    // EAGAIN at once instead of making us wait for it.
    let probe = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| bind_error(e.into()))?;
    let addr = UnixAddr::new(path).map_err(|e| bind_error(e.into()))?;
    match nix::sys::socket::connect(probe.as_raw_fd(), &addr) {
        Ok(()) | Err(Errno::EAGAIN | Errno::EINPROGRESS) => Err(Error::InUse {
            path: path.to_path_buf(),
        }),
        Err(Errno::ECONNREFUSED) => match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(bind_error(e)),
        },
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(bind_error(e.into())),
    }
}

/// Reads what has arrived of a request into `received`, up to the first
/// newline or [`MAX_REQUEST`] bytes.
fn read_request(stream: &mut UnixStream, received: &mut Vec<u8>) -> Progress {
    let mut chunk = [0u8; MAX_REQUEST];
    loop {
        // `received` stays below MAX_REQUEST bytes here: the checks below
        // end the read before it gets there.
        let room = MAX_REQUEST - received.len();
        match stream.read(&mut chunk[..room]) {
            Ok(0) if received.is_empty() => return Progress::Gone,
            Ok(0) => {
                return Progress::Invalid("invalid request: it does not end in a newline".into());
            }
            Ok(n) => {
                let start = received.len();
                received.extend_from_slice(&chunk[..n]);
                if let Some(i) = received[start..].iter().position(|&b| b == b'\n') {
                    let line = &received[..start + i];
                    return match serde_json::from_slice(line) {
                        Ok(request) => Progress::Request(request),
                        Err(e) => Progress::Invalid(format!("invalid request: {e}")),
                    };
                }
                if received.len() >= MAX_REQUEST {
                    return Progress::Invalid(format!(
                        "invalid request: longer than {MAX_REQUEST} bytes"
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Pending,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Progress::Gone,
        }
    }
}

/// Whether a client waiting for its reply is still connected; anything it
/// sent after its request is read and discarded.
fn still_there(stream: &mut UnixStream) -> bool {
    let mut scratch = [0u8; 1024];
    for _ in 0..MAX_IDLE_READS {
        match stream.read(&mut scratch) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    // Still talking: check again on the next wake-up.
    true
}

/// Sends `response` as one line, as far as the socket takes it without
/// waiting; the caller closes the connection after.
fn send_line(stream: &UnixStream, response: &Response) {
    let Ok(mut line) = serde_json::to_vec(response) else {
        return;
    };
    line.push(b'\n');
    let mut rest = &line[..];
    while !rest.is_empty() {
        match nix::sys::socket::send(
            stream.as_raw_fd(),
            rest,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => {}
            // Gone (EPIPE, ECONNRESET) or full (EAGAIN): nothing to wait for.
            Err(_) => return,
        }
    }
}

/// Client side, for the CLI: connects to `path`, sends the request line and
/// reads the one response line, all within `timeout` (`None`: wait as long
/// as it takes, for `reload --wait`).
pub fn request(
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

/// Human-readable status for `hawkey status`: a header line (master pid,
/// uptime, generation, status line), the listeners, then one row per
/// worker with aligned columns. Every line ends in `\n`.
pub fn render_status(report: &StatusReport) -> String {
    let mut out = format!(
        "master pid {}, up {}, generation {}",
        report.master_pid,
        format_duration(report.uptime_ms),
        report.generation
    );
    if !report.status.is_empty() {
        out.push_str(": ");
        out.push_str(&report.status);
    }
    out.push('\n');
    if report.listeners.is_empty() {
        out.push_str("listeners: none\n");
    } else {
        out.push_str("listeners:\n");
        let rows: Vec<Vec<String>> = report
            .listeners
            .iter()
            .map(|l| {
                let origin = if l.from_systemd { "(from systemd)" } else { "" };
                vec![l.name.clone(), l.address.clone(), origin.to_string()]
            })
            .collect();
        out.push_str(&table(&rows, "  "));
    }
    out.push('\n');
    let mut rows = vec![
        [
            "SLOT",
            "PID",
            "GEN",
            "STATE",
            "UPTIME",
            "RESTARTS",
            "LAST-EXIT",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for w in &report.workers {
        rows.push(vec![
            w.slot.to_string(),
            w.pid.map_or_else(|| "-".to_string(), |p| p.to_string()),
            w.generation.to_string(),
            w.state.clone(),
            w.uptime_ms.map_or_else(|| "-".to_string(), format_duration),
            w.restarts.to_string(),
            w.last_exit.clone().unwrap_or_else(|| "-".to_string()),
        ]);
    }
    out.push_str(&table(&rows, ""));
    let said: Vec<Vec<String>> = report
        .workers
        .iter()
        .filter_map(|w| Some(vec![w.slot.to_string(), w.status.clone()?]))
        .collect();
    if !said.is_empty() {
        out.push_str("\nworker status:\n");
        out.push_str(&table(&said, "  "));
    }
    out
}

/// Rows with every column but the last padded to its widest cell, two
/// spaces apart, no trailing blanks.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_string();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 < row.len() {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// "45s", "12m5s", "3h12m", "2d3h": the two largest units, the second left
/// out when zero; under a second is "0s".
fn format_duration(ms: u64) -> String {
    let s = ms / 1000;
    let (big, big_unit, small, small_unit) = match s {
        0..60 => return format!("{s}s"),
        60..3600 => (s / 60, "m", s % 60, "s"),
        3600..86400 => (s / 3600, "h", s % 3600 / 60, "m"),
        _ => (s / 86400, "d", s % 86400 / 3600, "h"),
    };
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit}{small}{small_unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    use std::thread;

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

    /// How long any test waits for anything before failing.
    const PATIENCE: Duration = Duration::from_secs(10);

    use crate::test_util::TestDir;

    /// Waits (at most `at_most`) until one of the server's fds is readable,
    /// as the master's loop does.
    fn wait_readable(server: &Server, at_most: Duration) {
        let mut fds: Vec<PollFd<'_>> = server
            .poll_fds()
            .into_iter()
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        let timeout = PollTimeout::try_from(at_most).unwrap();
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => panic!("poll: {e}"),
        }
    }

    /// Drives the server until one request arrives.
    fn next_request(server: &mut Server) -> (ClientId, Request) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut got = server.drain(Instant::now());
            assert!(got.len() <= 1, "more than one request: {got:?}");
            if let Some(request) = got.pop() {
                return request;
            }
            assert!(Instant::now() < deadline, "no request within {PATIENCE:?}");
            wait_readable(server, Duration::from_millis(50));
        }
    }

    /// Drives the server until `done` says so; no request may arrive.
    fn serve_until(server: &mut Server, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            let got = server.drain(Instant::now());
            assert!(got.is_empty(), "unexpected request: {got:?}");
            assert!(Instant::now() < deadline, "not done within {PATIENCE:?}");
            wait_readable(server, Duration::from_millis(20));
        }
    }

    /// A raw client: connects, sends `bytes` (the server may close before
    /// taking them all), and returns everything it gets until end of file.
    fn raw_exchange(path: &Path, bytes: &[u8]) -> Vec<u8> {
        let mut stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let _ = stream.write_all(bytes);
        read_to_eof(&mut stream)
    }

    fn read_to_eof(stream: &mut UnixStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                // The server closed with our bytes unread: what it sent
                // before is still delivered first.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return out,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn parse_line(bytes: &[u8]) -> Response {
        let text = std::str::from_utf8(bytes).unwrap();
        let line = text
            .strip_suffix('\n')
            .expect("one line ending in a newline");
        assert!(!line.contains('\n'), "more than one line: {text:?}");
        serde_json::from_str(line).unwrap()
    }

    fn two_worker_report() -> StatusReport {
        StatusReport {
            master_pid: 4242,
            uptime_ms: (3 * 3600 + 12 * 60 + 7) * 1000 + 250,
            generation: 3,
            status: "2 of 2 workers ready".into(),
            listeners: vec![
                ListenerStatus {
                    name: "http".into(),
                    address: "0.0.0.0:8080".into(),
                    from_systemd: true,
                },
                ListenerStatus {
                    name: "admin-api".into(),
                    address: "127.0.0.1:9000".into(),
                    from_systemd: false,
                },
            ],
            workers: vec![
                WorkerStatus {
                    slot: 0,
                    pid: Some(4243),
                    generation: 3,
                    state: "ready".into(),
                    uptime_ms: Some(11_527_000),
                    restarts: 0,
                    last_exit: None,
                    status: None,
                },
                WorkerStatus {
                    slot: 1,
                    pid: None,
                    generation: 2,
                    state: "backoff".into(),
                    uptime_ms: None,
                    restarts: 12,
                    last_exit: Some("exited with status 1".into()),
                    status: None,
                },
            ],
        }
    }

    /// The client calls `request` on a thread; the test thread plays the
    /// master.
    fn round_trip(request: Request, response: Response) {
        let dir = TestDir::new("round-trip");
        let path = dir.join("hawkey.sock");
        let mut server = Server::bind(&path).unwrap();
        let client = {
            let (path, request) = (path.clone(), request.clone());
            thread::spawn(move || super::request(&path, &request, Some(PATIENCE)))
        };
        let (id, got) = next_request(&mut server);
        assert_eq!(got, request);
        server.reply(id, &response);
        assert_eq!(client.join().unwrap().unwrap(), response);
        assert_eq!(server.poll_fds().len(), 1, "the client is closed");
    }

    #[test]
    fn status_round_trips() {
        round_trip(Request::Status, Response::Status(two_worker_report()));
    }

    #[test]
    fn reload_round_trips_with_and_without_wait() {
        round_trip(
            Request::Reload { wait: true },
            Response::Ok {
                message: "reload finished: generation 3".into(),
            },
        );
        round_trip(
            Request::Reload { wait: false },
            Response::Error {
                exit_code: 78,
                message: "invalid configuration: workers.count: expected a number".into(),
            },
        );
    }

    #[test]
    fn stop_round_trips() {
        round_trip(
            Request::Stop,
            Response::Ok {
                message: "stopping".into(),
            },
        );
    }

    #[test]
    fn the_wire_format_is_one_tagged_json_object_per_line() {
        let json = |r: &Request| serde_json::to_string(r).unwrap();
        assert_eq!(json(&Request::Status), r#"{"request":"status"}"#);
        assert_eq!(
            json(&Request::Reload { wait: true }),
            r#"{"request":"reload","wait":true}"#
        );
        assert_eq!(json(&Request::Stop), r#"{"request":"stop"}"#);
        let ok = Response::Ok {
            message: "done".into(),
        };
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"response":"ok","message":"done"}"#
        );
        let error = Response::Error {
            exit_code: 78,
            message: "bad".into(),
        };
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"response":"error","exit_code":78,"message":"bad"}"#
        );
        let status = serde_json::to_value(Response::Status(two_worker_report())).unwrap();
        assert_eq!(status["response"], "status");
        assert_eq!(status["master_pid"], 4242);
        assert_eq!(status["workers"][1]["pid"], serde_json::Value::Null);
    }

    #[test]
    fn garbage_gets_exit_code_64_and_is_closed() {
        let dir = TestDir::new("garbage");
        let path = dir.join("hawkey.sock");
        let mut server = Server::bind(&path).unwrap();
        for garbage in [&b"hello\n"[..], b"{\"request\":\"dance\"}\n", b"\xff\xfe\n"] {
            let client = {
                let path = path.clone();
                thread::spawn(move || raw_exchange(&path, garbage))
            };
            serve_until(&mut server, || client.is_finished());
            let answer = parse_line(&client.join().unwrap());
            let Response::Error { exit_code, message } = answer else {
                panic!("not an error: {answer:?}");
            };
            assert_eq!(exit_code, 64);
            assert!(message.starts_with("invalid request: "), "{message}");
            assert_eq!(server.poll_fds().len(), 1);
        }
    }

    #[test]
    fn a_request_may_be_4096_bytes_but_no_more() {
        let dir = TestDir::new("long");
        let path = dir.join("hawkey.sock");
        let mut server = Server::bind(&path).unwrap();
        let padded = |total: usize| {
            let mut line = br#"{"request":"status"}"#.to_vec();
            line.resize(total - 1, b' ');
            line.push(b'\n');
            line
        };

        let longest = padded(MAX_REQUEST);
        let client = {
            let path = path.clone();
            thread::spawn(move || raw_exchange(&path, &longest))
        };
        let (id, request) = next_request(&mut server);
        assert_eq!(request, Request::Status);
        let ok = Response::Ok {
            message: "fits".into(),
        };
        server.reply(id, &ok);
        assert_eq!(parse_line(&client.join().unwrap()), ok);

        for too_long in [padded(MAX_REQUEST + 1), vec![b'{'; 3 * MAX_REQUEST]] {
            let client = {
                let path = path.clone();
                thread::spawn(move || raw_exchange(&path, &too_long))
            };
            serve_until(&mut server, || client.is_finished());
            assert_eq!(
                parse_line(&client.join().unwrap()),
                Response::Error {
                    exit_code: 64,
                    message: "invalid request: longer than 4096 bytes".into()
                }
            );
        }
    }

    #[test]
    fn a_request_split_across_reads_is_assembled() {
        let dir = TestDir::new("split");
        let path = dir.join("hawkey.sock");
        let mut server = Server::bind(&path).unwrap();
        let mut stream = UnixStream::connect(&path).unwrap();
        stream.write_all(br#"{"request":"rel"#).unwrap();
        assert!(server.drain(Instant::now()).is_empty());
        stream.write_all(br#"oad","wait":false}"#).unwrap();
        assert!(server.drain(Instant::now()).is_empty());
        stream.write_all(b"\n").unwrap();
        let got = server.drain(Instant::now());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, Request::Reload { wait: false });
    }

    #[test]
    fn a_silent_client_is_dropped_at_its_deadline() {
        let dir = TestDir::new("silent");
        let path = dir.join("hawkey.sock");
        let mut server = Server::bind(&path).unwrap();
        assert_eq!(server.next_deadline(), None);
        let mut stream = UnixStream::connect(&path).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();

        // `connect` returned, so the connection is queued: drain takes it.
        let now = Instant::now();
        assert!(server.drain(now).is_empty());
        assert_eq!(server.poll_fds().len(), 2);
        assert_eq!(server.next_deadline(), Some(now + REQUEST_TIMEOUT));

        assert!(server.drain(now + Duration::from_millis(4999)).is_empty());
        assert_eq!(server.poll_fds().len(), 2, "kept before its deadline");

        assert!(server.drain(now + REQUEST_TIMEOUT).is_empty());
        assert_eq!(server.poll_fds().len(), 1, "dropped at its deadline");
        assert_eq!(server.next_deadline(), None);
        assert!(
            read_to_eof(&mut stream).is_empty(),
            "closed without an answer"
        );
    }

    #[test]
    fn a_waiting_client_that_hangs_up_is_dropped_by_drain() {
        let dir = TestDir::new("hang-up");
        let path = dir.join("hawkey.sock");
        let mut server = Server::bind(&path).unwrap();
        let mut stream = UnixStream::connect(&path).unwrap();
        stream
            .write_all(b"{\"request\":\"reload\",\"wait\":true}\nextra bytes are ignored")
            .unwrap();
        let (id, _) = next_request(&mut server);

        assert!(server.drain(Instant::now()).is_empty());
        assert_eq!(server.poll_fds().len(), 2, "still waiting for its reply");
        assert_eq!(server.next_deadline(), None, "no deadline while waiting");

        drop(stream);
        assert!(server.drain(Instant::now()).is_empty());
        assert_eq!(server.poll_fds().len(), 1);
        // Answering it later is harmless.
        server.reply(
            id,
            &Response::Ok {
                message: "late".into(),
            },
        );
    }

    fn sigpipe_pending() -> bool {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigpending fills the set it is given; it is read only
        // after that succeeds.
        let pending = unsafe {
            assert_eq!(libc::sigpending(set.as_mut_ptr()), 0);
            set.assume_init()
        };
        // SAFETY: `pending` is an initialised signal set.
        unsafe { libc::sigismember(&pending, libc::SIGPIPE) == 1 }
    }

    /// Blocks (`how` = SIG_BLOCK) or unblocks SIGPIPE for this thread.
    fn mask_sigpipe(how: libc::c_int) {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: the set is initialised by sigemptyset before any other
        // use, and pthread_sigmask only changes this thread's mask.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
            assert_eq!(
                libc::pthread_sigmask(how, set.as_ptr(), std::ptr::null_mut()),
                0
            );
        }
    }

    #[test]
    fn replying_to_a_client_that_hung_up_raises_no_sigpipe() {
        let dir = TestDir::new("sigpipe");
        let path = dir.join("hawkey.sock");
        let mut server = Server::bind(&path).unwrap();
        let mut stream = UnixStream::connect(&path).unwrap();
        stream.write_all(b"{\"request\":\"stop\"}\n").unwrap();
        let (id, _) = next_request(&mut server);
        drop(stream);

        // A SIGPIPE sent to this thread while it is blocked stays pending
        // (even though the test harness ignores it), so it can be seen.
        mask_sigpipe(libc::SIG_BLOCK);
        let before = sigpipe_pending();
        server.reply(
            id,
            &Response::Ok {
                message: "stopping".into(),
            },
        );
        let raised = sigpipe_pending() && !before;
        mask_sigpipe(libc::SIG_UNBLOCK);
        assert!(!raised, "reply raised SIGPIPE");
        assert_eq!(server.poll_fds().len(), 1);
    }

    #[test]
    fn a_reply_too_big_for_the_socket_buffer_drops_the_client_instead_of_blocking() {
        let dir = TestDir::new("full");
        let path = dir.join("hawkey.sock");
        let mut server = Server::bind(&path).unwrap();
        let mut stream = UnixStream::connect(&path).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.write_all(b"{\"request\":\"status\"}\n").unwrap();
        let (id, _) = next_request(&mut server);
        // Nobody reads while the reply is sent: a blocking send would hang.
        let huge = "x".repeat(16 << 20);
        server.reply(id, &Response::Ok { message: huge });
        assert_eq!(server.poll_fds().len(), 1);
        let got = read_to_eof(&mut stream);
        assert!(got.len() < 16 << 20, "the whole reply fit");
        assert!(!got.contains(&b'\n'), "a cut reply has no end of line");
    }

    #[test]
    fn the_listener_leaves_the_poll_set_while_the_server_is_full() {
        let dir = TestDir::new("full-table");
        let path = dir.join("hawkey.sock");
        let mut server = Server::bind(&path).unwrap();
        let now = Instant::now();
        let mut streams = Vec::new();
        while streams.len() < MAX_CLIENTS {
            // The backlog holds 16; accept between batches.
            for _ in 0..8 {
                streams.push(UnixStream::connect(&path).unwrap());
            }
            server.drain(now);
        }
        assert_eq!(server.poll_fds().len(), MAX_CLIENTS, "no listener");
        streams.push(UnixStream::connect(&path).unwrap());
        server.drain(now);
        assert_eq!(
            server.poll_fds().len(),
            MAX_CLIENTS,
            "one waits in the backlog"
        );

        // Deadlines free the table; then the one in the backlog is taken.
        server.drain(now + REQUEST_TIMEOUT);
        assert_eq!(server.poll_fds().len(), 1, "only the listener");
        server.drain(now + REQUEST_TIMEOUT);
        assert_eq!(server.poll_fds().len(), 1 + 1);
    }

    #[test]
    fn the_socket_file_is_mode_0600() {
        let dir = TestDir::new("mode");
        let path = dir.join("hawkey.sock");
        let server = Server::bind(&path).unwrap();
        let meta = fs::symlink_metadata(server.path()).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o600);
    }

    #[test]
    fn bind_creates_a_missing_directory() {
        let dir = TestDir::new("parent");
        let path = dir.join("run").join("hawkey.sock");
        let _server = Server::bind(&path).unwrap();
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    }

    #[test]
    fn a_stale_socket_file_is_replaced() {
        let dir = TestDir::new("stale");
        let path = dir.join("hawkey.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(matches!(
            UnixStream::connect(&path).map_err(|e| e.raw_os_error()),
            Err(Some(libc::ECONNREFUSED))
        ));

        let mut server = Server::bind(&path).unwrap();
        let client = {
            let path = path.clone();
            thread::spawn(move || super::request(&path, &Request::Stop, Some(PATIENCE)))
        };
        let (id, _) = next_request(&mut server);
        let ok = Response::Ok {
            message: "stopping".into(),
        };
        server.reply(id, &ok);
        assert_eq!(client.join().unwrap().unwrap(), ok);
    }

    #[test]
    fn a_live_socket_refuses_bind() {
        let dir = TestDir::new("live");
        let path = dir.join("hawkey.sock");
        let first = Server::bind(&path).unwrap();
        let inode = fs::symlink_metadata(&path).unwrap().ino();

        let error = Server::bind(&path).unwrap_err();
        assert!(matches!(error, Error::InUse { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("another hawkey is listening on '{}'", path.display())
        );
        assert_eq!(fs::symlink_metadata(&path).unwrap().ino(), inode);
        drop(first);
        assert!(!path.exists(), "the first server removes its socket");
    }

    #[test]
    fn something_that_is_not_a_socket_is_never_removed() {
        let dir = TestDir::new("regular");
        let path = dir.join("hawkey.sock");
        fs::write(&path, "precious\n").unwrap();
        let error = Server::bind(&path).unwrap_err();
        assert!(matches!(error, Error::NotASocket { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "refusing to replace '{}' with the control socket: not a socket",
                path.display()
            )
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "precious\n");

        let link = dir.join("link.sock");
        std::os::unix::fs::symlink("hawkey.sock", &link).unwrap();
        assert!(matches!(Server::bind(&link), Err(Error::NotASocket { .. })));
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "precious\n");
    }

    #[test]
    fn drop_removes_the_socket_only_while_it_is_ours() {
        let dir = TestDir::new("drop");
        let path = dir.join("hawkey.sock");
        drop(Server::bind(&path).unwrap());
        assert!(!path.exists());

        let server = Server::bind(&path).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, "someone else's\n").unwrap();
        drop(server);
        assert_eq!(fs::read_to_string(&path).unwrap(), "someone else's\n");
    }

    #[test]
    fn request_without_a_listener_says_not_running() {
        let dir = TestDir::new("not-running");
        let missing = dir.join("hawkey.sock");
        let error = request(&missing, &Request::Status, Some(PATIENCE)).unwrap_err();
        assert!(matches!(error, Error::NotRunning { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "hawkey is not running (no control socket at '{}')",
                missing.display()
            )
        );

        let stale = dir.join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap());
        let error = request(&stale, &Request::Stop, None).unwrap_err();
        assert!(matches!(error, Error::NotRunning { .. }), "{error:?}");
    }

    #[test]
    fn request_times_out_when_nobody_answers() {
        let dir = TestDir::new("timeout");
        let path = dir.join("hawkey.sock");
        // Bound and listening, but nobody drains it.
        let _server = Server::bind(&path).unwrap();
        let started = Instant::now();
        let error = request(&path, &Request::Status, Some(Duration::from_millis(100))).unwrap_err();
        assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
        assert!(started.elapsed() < PATIENCE);
        assert_eq!(
            error.to_string(),
            format!("no answer from hawkey on '{}' within 100ms", path.display())
        );
    }

    const PEER_SOCKET_ENV: &str = "HAWKEY_CONTROL_TEST_SOCKET";

    /// Not a test on its own: run by the tests below, as another user, in
    /// a copy of this test binary. Prints what `request` returned.
    #[test]
    #[ignore = "run as another user by the peer credential tests"]
    fn peer_client() {
        let Some(path) = std::env::var_os(PEER_SOCKET_ENV) else {
            return;
        };
        match request(Path::new(&path), &Request::Stop, Some(PATIENCE)) {
            // On a line of its own, after the harness's "test … ".
            Ok(response) => println!("\nresponse: {}", serde_json::to_string(&response).unwrap()),
            Err(error) => println!("\nerror: {error:?}"),
        }
    }

    /// Runs `peer_client` as uid/gid 65534 against `path` while `server`
    /// (if any) is driven; returns the line it printed.
    fn run_as_nobody(path: &Path, server: Option<&mut Server>) -> String {
        assert!(nix::unistd::geteuid().is_root(), "needs root");
        let module = module_path!().split_once("::").unwrap().1;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("{module}::peer_client"),
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PEER_SOCKET_ENV, path)
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        let mut exited = || match child.try_wait().unwrap() {
            Some(_) => true,
            None if Instant::now() < deadline => false,
            None => {
                let _ = child.kill();
                panic!("the client running as uid 65534 did not finish");
            }
        };
        match server {
            Some(server) => serve_until(server, exited),
            None => {
                while !exited() {
                    thread::sleep(Duration::from_millis(5));
                }
            }
        }
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "client failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            .find(|l| l.starts_with("response: ") || l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no outcome in {stdout:?}"))
            .to_string()
    }

    /// A directory uid 65534 can get through (the umask of a concurrent
    /// bind may have narrowed it).
    fn traversable(dir: &TestDir) {
        fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_peer_that_is_neither_root_nor_the_owner_gets_exit_code_77() {
        let dir = TestDir::new("peer");
        traversable(&dir);
        let path = dir.join("hawkey.sock");
        let mut server = Server::bind(&path).unwrap();
        // Let anyone reach the socket, so only the credential check is left.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();

        let outcome = run_as_nobody(&path, Some(&mut server));
        let expected = Response::Error {
            exit_code: 77,
            message: "permission denied: uid 65534 may not control this hawkey (owner uid 0)"
                .into(),
        };
        assert_eq!(
            outcome,
            format!("response: {}", serde_json::to_string(&expected).unwrap())
        );
        assert_eq!(server.poll_fds().len(), 1, "the peer was closed");
    }

    #[test]
    fn a_user_who_cannot_open_the_socket_gets_permission_denied() {
        let dir = TestDir::new("eacces");
        traversable(&dir);
        let path = dir.join("hawkey.sock");
        let _server = Server::bind(&path).unwrap();
        let outcome = run_as_nobody(&path, None);
        assert!(
            outcome.starts_with("error: PermissionDenied {"),
            "{outcome}"
        );
        let error = Error::PermissionDenied {
            path: path.clone(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            error.to_string(),
            format!(
                "permission denied on the control socket '{}': run this as root or as the user hawkey runs as",
                path.display()
            )
        );
        assert_eq!(error.exit_code(), 77);
    }

    #[test]
    fn render_status_prints_a_header_listeners_and_aligned_workers() {
        assert_eq!(
            render_status(&two_worker_report()),
            "\
master pid 4242, up 3h12m, generation 3: 2 of 2 workers ready
listeners:
  http       0.0.0.0:8080    (from systemd)
  admin-api  127.0.0.1:9000

SLOT  PID   GEN  STATE    UPTIME  RESTARTS  LAST-EXIT
0     4243  3    ready    3h12m   0         -
1     -     2    backoff  -       12        exited with status 1
"
        );
    }

    #[test]
    fn render_status_without_listeners_or_workers() {
        let report = StatusReport {
            master_pid: 7,
            uptime_ms: 999,
            generation: 1,
            status: String::new(),
            listeners: vec![],
            workers: vec![],
        };
        assert_eq!(
            render_status(&report),
            "master pid 7, up 0s, generation 1\nlisteners: none\n\n\
             SLOT  PID  GEN  STATE  UPTIME  RESTARTS  LAST-EXIT\n"
        );
    }

    #[test]
    fn durations_show_their_two_largest_units() {
        let cases = [
            (0, "0s"),
            (999, "0s"),
            (45_000, "45s"),
            (59_999, "59s"),
            (60_000, "1m"),
            (725_000, "12m5s"),
            (3_600_000, "1h"),
            (11_527_000, "3h12m"),
            (86_400_000, "1d"),
            (183_600_000, "2d3h"),
        ];
        for (ms, text) in cases {
            assert_eq!(format_duration(ms), text, "{ms}ms");
        }
    }
}
