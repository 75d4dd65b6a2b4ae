//! The worker side of hawkey's library API.
//!
//! A program that links hawkey and calls [`crate::main`] with its app is
//! both master and worker (the seed pattern of Node's `cluster`: "if
//! master, fork; else run the worker"). The master re-executes the same
//! binary for each worker with `HAWKEY_ROLE=worker`; [`crate::main`] sees
//! that and calls the app with a [`Worker`]: its slot, its generation, and
//! the listening sockets it inherited by the `sd_listen_fds(3)` protocol.
//!
//! The app must accept on those sockets, call [`Worker::ready`] once it
//! does (the master counts the worker as started only then), and on
//! its stop signal ([`Worker::stop_signal`], `SIGTERM` unless configured)
//! stop accepting, finish what it is doing and return. [`Drain`] says how an
//! HTTP server does that without failing a keep-alive client: in-flight
//! requests finish, the next request on each connection is answered with
//! `Connection: close`, and only connections idle for [`IDLE_GRACE`] are
//! closed.
//!
//! # Parts
//!
//! - this module: [`App`], [`Worker`] and what it hands out.
//! - `drain`: [`Drain`], the drain's state and decisions for a connection
//!   loop.
//! - `bootstrap`: what runs in a re-executed worker before the app.
//! - `notify`: the `sd_notify(3)` client, used by workers to tell the
//!   master and by the master to tell systemd.

use std::ffi::OsString;
use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use nix::sys::signal::Signal;
use nix::sys::socket::AddressFamily;
use sd_notify::NotifyState;

use crate::env;
use notify::Notifier;

pub(crate) mod bootstrap;
mod drain;
pub(crate) mod notify;

pub use drain::{Drain, IDLE_GRACE};

/// A boxed error an app may return; it is logged and the worker exits 1.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a worker runs. Implemented for every `FnOnce(Worker) -> Result<(), BoxError>`.
pub trait App {
    /// Whether the app sends heartbeats ([`Worker::heartbeat`]) at least
    /// every [`Worker::heartbeat_interval`]. Only then does the master hold
    /// it to `workers.heartbeat_timeout` and kill a worker that falls
    /// silent (it hangs). Plain functions do not.
    const HEARTBEATS: bool = false;

    /// Runs the worker until it is told to stop (its stop signal) or fails;
    /// an error is logged and the worker exits 1.
    fn run(self, worker: Worker) -> Result<(), BoxError>;
}

impl<F> App for F
where
    F: FnOnce(Worker) -> Result<(), BoxError>,
{
    fn run(self, worker: Worker) -> Result<(), BoxError> {
        self(worker)
    }
}

/// One inherited listening socket.
#[derive(Debug)]
pub enum Socket {
    /// A TCP socket (IPv4 or IPv6).
    Tcp(TcpListener),
    /// A unix stream socket.
    Unix(UnixListener),
}

/// A listening socket and its name (`listen[].name`, or systemd's
/// `FileDescriptorName=`).
#[derive(Debug)]
pub struct Listener {
    /// Its name: what `LISTEN_FDNAMES` said for it.
    pub name: String,
    /// The listening socket, ready to accept.
    pub socket: Socket,
}

/// The worker's view of itself.
#[derive(Debug)]
pub struct Worker {
    slot: usize,
    generation: u64,
    listeners: Vec<Listener>,
    notifier: Notifier,
    heartbeat_timeout: Option<std::time::Duration>,
    stop_signal: Signal,
}

/// Why a process could not start as a worker.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("not started by a hawkey master: {0} is missing or invalid")]
    Environment(&'static str),
    #[error("failed to take the inherited sockets: {0}")]
    Sockets(#[source] io::Error),
    #[error("inherited fd {0} is not a TCP or unix stream socket")]
    SocketKind(i32),
    #[error("failed to connect to the master's notify socket: {0}")]
    Notify(#[source] io::Error),
}

impl Worker {
    /// The worker's slot, `0..N-1`, stable across restarts (`HAWKEY_WORKER`).
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The configuration generation that started this worker.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The inherited listeners, in the master's order (fds 3, 4, …).
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Takes the sockets out, to move them into a server.
    pub fn take_listeners(&mut self) -> Vec<Listener> {
        std::mem::take(&mut self.listeners)
    }

    /// Tells the master this worker accepts connections (`READY=1`).
    pub fn ready(&self) -> io::Result<()> {
        self.notifier.send(&[NotifyState::Ready])
    }

    /// How often to call [`Worker::heartbeat`], if the master expects it: a
    /// third of `workers.heartbeat_timeout` (`WATCHDOG_USEC`), so one lost
    /// or late beat is not fatal.
    pub fn heartbeat_interval(&self) -> Option<std::time::Duration> {
        self.heartbeat_timeout.map(|t| t / 3)
    }

    /// Tells the master this worker is alive (`WATCHDOG=1`). Call it from
    /// the loop that does the work, so that a stuck loop stops beating.
    pub fn heartbeat(&self) -> io::Result<()> {
        self.notifier.send(&[NotifyState::Watchdog])
    }

    /// The signal the master stops this worker with (`workers.stop_signal`,
    /// passed as `HAWKEY_STOP_SIGNAL`; SIGTERM if absent): drain on it.
    pub fn stop_signal(&self) -> Signal {
        self.stop_signal
    }

    /// A free-form status line for the master (`STATUS=`).
    pub fn status(&self, text: &str) -> io::Result<()> {
        self.notifier.send(&[NotifyState::Status(text)])
    }

    /// Reads what the master passed, once, at worker start-up: the
    /// listeners (only if `LISTEN_PID` is this process), the slot, the
    /// generation and the notify socket.
    pub(crate) fn from_environment() -> Result<Worker, Error> {
        let var = |name: &'static str| std::env::var(name).map_err(|_| Error::Environment(name));
        let slot = var(env::HAWKEY_WORKER)?
            .parse()
            .map_err(|_| Error::Environment(env::HAWKEY_WORKER))?;
        let generation = var(env::HAWKEY_GENERATION)?
            .parse()
            .map_err(|_| Error::Environment(env::HAWKEY_GENERATION))?;
        let notify: Option<OsString> = std::env::var_os(env::NOTIFY_SOCKET);
        let notifier = Notifier::connect_patient(notify.as_deref(), notify::WORKER_PATIENCE)
            .map_err(Error::Notify)?;
        let mut listeners = Vec::new();
        for (fd, name) in sd_notify::listen_fds_with_names().map_err(Error::Sockets)? {
            // SAFETY: listen_fds_with_names checked LISTEN_PID is this
            // process: these fds were passed to us and nothing owns them.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let socket = match socket_family(&owned) {
                Some(AddressFamily::Inet | AddressFamily::Inet6) => {
                    Socket::Tcp(TcpListener::from(owned))
                }
                Some(AddressFamily::Unix) => Socket::Unix(UnixListener::from(owned)),
                _ => return Err(Error::SocketKind(fd)),
            };
            listeners.push(Listener { name, socket });
        }
        // WATCHDOG_USEC, if WATCHDOG_PID is unset or this process.
        let heartbeat_timeout = sd_notify::watchdog_enabled().filter(|t| !t.is_zero());
        let stop_signal = match std::env::var(env::HAWKEY_STOP_SIGNAL) {
            Ok(name) => name
                .parse()
                .map_err(|_| Error::Environment(env::HAWKEY_STOP_SIGNAL))?,
            Err(_) => Signal::SIGTERM,
        };
        Ok(Worker {
            slot,
            generation,
            listeners,
            notifier,
            heartbeat_timeout,
            stop_signal,
        })
    }
}

/// The socket's address family, to tell TCP from unix listeners.
fn socket_family(fd: impl std::os::fd::AsFd) -> Option<AddressFamily> {
    use nix::sys::socket::SockaddrLike;
    use std::os::fd::AsRawFd;
    let addr: nix::sys::socket::SockaddrStorage =
        nix::sys::socket::getsockname(fd.as_fd().as_raw_fd()).ok()?;
    addr.family()
}
