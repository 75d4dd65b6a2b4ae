//! Draining without failing keep-alive clients: [`Drain`].
//!
//! A worker told to stop (its stop signal) must not simply close its
//! connections. A keep-alive client that does not retry (Python's
//! `http.client`, a reverse proxy's upstream pool, `wrk`) may be sending
//! its next request at the very moment the server closes an "idle"
//! connection: the request is lost, and the client sees a reset or an
//! empty reply. HTTP/1.1 gives the server one clean way out: answer a
//! request with `Connection: close`, and the client opens a new connection
//! (which another worker accepts) for the next one.
//!
//! So a draining worker
//!
//! 1. stops accepting: it closes its copies of the shared listening
//!    sockets, and connections still queued in the kernel stay there for
//!    the other workers (or this slot's successor);
//! 2. finishes the requests in flight;
//! 3. answers the next request on each open connection with
//!    `Connection: close`, then closes that connection;
//! 4. closes a connection with no request in flight only once it has been
//!    idle for the grace period ([`IDLE_GRACE`] unless set), counted from
//!    its last response or from the start of the drain, whichever is later.
//!    A client that sends requests back to back is answered (with
//!    `Connection: close`) well within it; one that went quiet gets a
//!    plain close.
//!
//! [`Drain`] holds the part of this that is the same for every server: when
//! the drain started, and the decisions that follow from it. The app's
//! connection loop consults it; the built-in app (hyper) and
//! `examples/hello.rs` (a blocking server) both do.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};

/// How long a draining worker keeps a connection with no request in flight
/// open before it closes it (see [`Drain`]).
///
/// One second is far longer than the gap between a keep-alive client's
/// back-to-back requests on loopback or a LAN, and far shorter than
/// `workers.stop_timeout` (25 s by default): keep `stop_timeout` above it
/// plus the longest request, or the master's SIGKILL comes first.
pub const IDLE_GRACE: Duration = Duration::from_secs(1);

/// A worker's drain: whether it has started, and what a connection loop
/// does about it.
///
/// Clones share one state: make one per worker, hand a clone to every
/// connection, and call [`Drain::start`] on the stop signal. Until then
/// every answer is `None`/`false` and connections live as usual.
///
/// - [`Drain::is_draining`]: a response produced while this is true carries
///   `Connection: close`, and the connection closes after it;
/// - [`Drain::close_idle_at`]: when a connection with no request in flight
///   may be closed;
/// - the drain is also a file descriptor ([`AsFd`], an `eventfd(2)`) that
///   becomes readable when the drain starts and stays so, for loops that
///   wait in `poll(2)`/epoll rather than on a flag.
///
/// ```
/// use std::time::{Duration, Instant};
/// use hawkey::worker::Drain;
///
/// let drain = Drain::new()?;
/// // A connection's loop, after its last response:
/// let idle_since = Instant::now();
/// assert!(!drain.is_draining()); // keep-alive as usual
/// assert_eq!(drain.close_idle_at(idle_since), None); // no reason to close
///
/// drain.clone().start(); // on the stop signal, anywhere
///
/// assert!(drain.is_draining()); // the next response says `Connection: close`
/// let at = drain.close_idle_at(idle_since).unwrap();
/// assert!(at >= idle_since + drain.idle_grace()); // an idle one closes then
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    idle_grace: Duration,
    started: OnceLock<Instant>,
    /// Readable from the start of the drain on: written once, never read.
    wake: EventFd,
}

impl Drain {
    /// A drain that has not started, with the grace period [`IDLE_GRACE`].
    ///
    /// Fails only if the `eventfd(2)` cannot be created (out of file
    /// descriptors).
    pub fn new() -> io::Result<Drain> {
        Drain::with_idle_grace(IDLE_GRACE)
    }

    /// A drain that has not started, closing connections idle for
    /// `idle_grace` once it has.
    pub fn with_idle_grace(idle_grace: Duration) -> io::Result<Drain> {
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        Ok(Drain {
            inner: Arc::new(Inner {
                idle_grace,
                started: OnceLock::new(),
                wake,
            }),
        })
    }

    /// Starts the drain (the stop signal came); later calls change nothing.
    /// The app stops accepting itself: closing its listeners is its part.
    pub fn start(&self) {
        let mut first = false;
        self.inner.started.get_or_init(|| {
            first = true;
            Instant::now()
        });
        if first {
            // Cannot fail: one write of 1 to a fresh counter is far below its limit.
            let _ = self.inner.wake.write(1);
        }
    }

    /// Whether the drain has started: a response produced now must carry
    /// `Connection: close` (and its connection closes after it).
    pub fn is_draining(&self) -> bool {
        self.inner.started.get().is_some()
    }

    /// How long a connection with no request in flight stays open once the
    /// drain has started.
    pub fn idle_grace(&self) -> Duration {
        self.inner.idle_grace
    }

    /// When a connection with no request in flight, idle since
    /// `idle_since` (its last response, or its accept), may be closed:
    /// `None` while not draining, else the grace period after `idle_since`
    /// or after the start of the drain, whichever is later. A connection
    /// that receives a request before then answers it (with
    /// `Connection: close`) instead.
    pub fn close_idle_at(&self, idle_since: Instant) -> Option<Instant> {
        let started = *self.inner.started.get()?;
        Some(idle_since.max(started) + self.inner.idle_grace)
    }
}

impl AsFd for Drain {
    /// An `eventfd(2)`, close-on-exec and non-blocking, readable once the
    /// drain has started. Wait on it; do not read it (that would make it
    /// unreadable for the other waiters).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.wake.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

    fn readable(drain: &Drain) -> bool {
        let mut fds = [PollFd::new(drain.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap() == 1
    }

    #[test]
    fn nothing_closes_before_the_drain_starts() {
        let drain = Drain::new().unwrap();
        assert!(!drain.is_draining());
        assert_eq!(drain.close_idle_at(Instant::now()), None);
        assert_eq!(drain.idle_grace(), IDLE_GRACE);
        assert!(!readable(&drain));
    }

    #[test]
    fn an_idle_connection_gets_the_grace_after_its_last_response_or_the_start() {
        let grace = Duration::from_millis(300);
        let drain = Drain::with_idle_grace(grace).unwrap();
        let long_idle = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        drain.clone().start();
        let started = *drain.inner.started.get().unwrap();
        assert!(started > long_idle);
        assert!(drain.is_draining());
        assert!(readable(&drain));
        // Idle since before the drain: the grace counts from the drain.
        assert_eq!(drain.close_idle_at(long_idle), Some(started + grace));
        // Answered during the drain: the grace counts from that answer.
        let later = started + Duration::from_millis(100);
        assert_eq!(drain.close_idle_at(later), Some(later + grace));
        // A second start moves nothing.
        drain.start();
        assert_eq!(drain.close_idle_at(long_idle), Some(started + grace));
        assert!(readable(&drain));
    }
}
