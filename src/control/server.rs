//! The master's end of the control socket: non-blocking, polled by the
//! event loop, never waiting (see "Never blocking the master" in
//! [`crate::control`]).

use std::fs::{self, DirBuilder};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr, getsockopt, sockopt,
};
use nix::sys::stat::{FchmodatFlags, Mode};
use nix::unistd::UnlinkatFlags;

use super::Error;
use super::protocol::{ClientId, MAX_REQUEST, REQUEST_TIMEOUT, Request, Response};
use crate::exit::Status;

/// How many connections the server holds at once; more wait in the backlog.
pub(crate) const MAX_CLIENTS: usize = 64;

/// The `listen(2)` backlog.
const BACKLOG: i32 = 16;

/// How long accepting pauses after `accept(2)` ran out of descriptors or
/// memory; the listener stays readable meanwhile, so polling it would spin.
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// How many reads a waiting client gets per [`Server::drain`] to show it
/// hung up; whatever it sends meanwhile is discarded.
const MAX_IDLE_READS: usize = 16;

/// The process-wide umask is narrowed around `bind(2)`; this keeps two
/// binds in one process (threads in tests, an embedding program) from
/// restoring each other's value.
static UMASK: Mutex<()> = Mutex::new(());

/// The master's end: the listening socket and the connections it holds.
#[derive(Debug)]
pub(crate) struct Server {
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
    /// Binds `path`: refuses a directory others can write
    /// (`config::paths::check_directory`), refuses to replace anything that
    /// is not a socket or a socket someone listens on; a stale socket file
    /// (connect gets `ECONNREFUSED`) is replaced. The file is mode 0600
    /// from before it can be reached; listen backlog 16. If the directory
    /// is missing, its last component is created (mode 0755).
    ///
    /// The socket is bound in a private directory beside `path` (mode 0700,
    /// made by `mkdtemp(3)`), given its mode and set listening there, then
    /// `rename(2)`d to `path`: when it appears at `path` it is complete. A
    /// path-based `chmod` after binding at `path` would follow whatever a
    /// racer swapped in meanwhile (a symlink to a root-owned file), and
    /// `fchmod(2)` on a socket descriptor does not reach the file on Linux.
    /// Inside the private directory nobody else can add or swap an entry,
    /// so the mode is set there with `fchmodat(2)` relative to the
    /// directory's descriptor, which covers a directory whose default ACL
    /// overrides the umask; the umask is narrowed around `bind(2)` too, so
    /// the file is never wider even inside it.
    ///
    /// The umask is narrowed for the duration of `bind(2)`: call this in
    /// start-up, while no other thread creates files.
    pub(crate) fn bind(path: &Path) -> Result<Server, Error> {
        let bind_error = |source: io::Error| Error::Bind {
            path: path.to_path_buf(),
            source,
        };
        crate::config::paths::check_directory(path, "control socket")?;
        create_parent(path).map_err(bind_error)?;
        refuse_live_or_foreign(path)?;
        let owner = nix::unistd::geteuid().as_raw();
        let socket = nix::sys::socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| bind_error(e.into()))?;
        let staging = Staging::new(path).map_err(bind_error)?;
        let inode = staging.bind(&socket).map_err(bind_error)?;
        // From the rename on the file is at `path` and ours: dropping
        // `server` removes it (the drop of `staging` only removes its
        // directory).
        staging.publish(path).map_err(bind_error)?;
        Ok(Server {
            listener: UnixListener::from(socket),
            path: path.to_path_buf(),
            inode,
            bound_by: std::process::id(),
            owner,
            clients: Vec::new(),
            next_id: 1,
            accept_paused_until: None,
        })
    }

    /// The socket's path, as given to [`Server::bind`].
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The fds to poll for readability: the listener (unless the server
    /// holds [`MAX_CLIENTS`] or accepting is paused) and every client,
    /// including those waiting for a reply (readable means they hung up).
    pub(crate) fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
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
    pub(crate) fn drain(&mut self, now: Instant) -> Vec<(ClientId, Request)> {
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
                                exit_code: Status::Usage.code(),
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
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
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
    pub(crate) fn reply(&mut self, id: ClientId, response: &Response) {
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
                    exit_code: Status::NoPermission.code(),
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
    pub(crate) fn unlink(&mut self) {
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

/// The private directory a control socket is bound in before it is
/// renamed to its path: mode 0700, beside the path (so the rename stays in
/// one file system), removed with whatever is left in it when dropped.
struct Staging {
    dir: PathBuf,
    fd: OwnedFd,
}

/// The socket's name inside [`Staging`].
const STAGED: &str = "s";

impl Staging {
    fn new(path: &Path) -> io::Result<Staging> {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = nix::unistd::mkdtemp(&parent.join(".hawkey-bind-XXXXXX"))?;
        let opened = nix::fcntl::open(
            &dir,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        );
        match opened {
            Ok(fd) => Ok(Staging { dir, fd }),
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                Err(e.into())
            }
        }
    }

    /// Binds `socket` in the directory with the umask narrowed to 0177,
    /// makes the file 0600, starts listening; returns the file's device
    /// and inode.
    fn bind(&self, socket: &OwnedFd) -> io::Result<(u64, u64)> {
        let direct = self.dir.join(STAGED);
        // A path too long for `sun_path` is reached through the directory's
        // descriptor instead.
        let addr = UnixAddr::new(&direct).or_else(|_| {
            UnixAddr::new(&PathBuf::from(format!(
                "/proc/self/fd/{}/{STAGED}",
                self.fd.as_raw_fd()
            )))
        })?;
        bind_owner_only(socket, &addr)?;
        nix::sys::stat::fchmodat(
            &self.fd,
            STAGED,
            Mode::from_bits_truncate(0o600),
            FchmodatFlags::FollowSymlink,
        )?;
        let backlog = Backlog::new(BACKLOG)?;
        nix::sys::socket::listen(socket, backlog)?;
        let stat = nix::sys::stat::fstatat(&self.fd, STAGED, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        Ok((stat.st_dev, stat.st_ino))
    }

    /// Moves the bound socket to `path`, replacing a stale socket there.
    fn publish(&self, path: &Path) -> io::Result<()> {
        nix::fcntl::renameat(&self.fd, STAGED, nix::fcntl::AT_FDCWD, path)?;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = nix::unistd::unlinkat(&self.fd, STAGED, UnlinkatFlags::NoRemoveDir);
        let _ = fs::remove_dir(&self.dir);
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

/// Looks at what is at `path` before a socket is renamed over it: nothing,
/// or a socket nobody listens on, may be replaced; a live socket or
/// anything that is not a socket is an error.
fn refuse_live_or_foreign(path: &Path) -> Result<(), Error> {
    let bind_error = |source: io::Error| Error::Bind {
        path: path.to_path_buf(),
        source,
    };
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
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
        Err(Errno::ECONNREFUSED | Errno::ENOENT) => Ok(()),
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
