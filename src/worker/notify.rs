//! The client half of `sd_notify(3)`: one datagram per message to the
//! socket named by a `NOTIFY_SOCKET` value.
//!
//! Used both ways up the tree: the master tells its own manager (systemd)
//! `READY=1`, `STATUS=`, `STOPPING=1` and `MAINPID=`, and a worker tells the
//! master the same words (the master plays systemd's part for its workers,
//! see `master::inbox`). Outside systemd `NOTIFY_SOCKET` is unset and every
//! send is a no-op. The message words come from the `sd-notify` crate; the
//! socket is ours, connected once at start-up from the value read then, so
//! nothing reads the environment later and tests can point it anywhere.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use sd_notify::NotifyState;

/// A connected notify socket, or nothing when `NOTIFY_SOCKET` is unset.
#[derive(Debug)]
pub(crate) struct Notifier {
    socket: Option<UnixDatagram>,
    /// How long a send may wait for room in the reader's queue; zero:
    /// not at all (the message is dropped).
    patience: Duration,
}

/// How long a worker's message waits for room in its channel's queue
/// before it is given up: far longer than the master takes to read it,
/// far shorter than any heartbeat timeout that makes sense.
pub(crate) const WORKER_PATIENCE: Duration = Duration::from_secs(1);

fn address(value: &OsStr) -> io::Result<SocketAddr> {
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(value),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "unsupported NOTIFY_SOCKET '{}' (a path or @abstract name)",
                value.to_string_lossy()
            ),
        )),
    }
}

impl Notifier {
    /// A notifier that sends nothing.
    pub(crate) fn none() -> Notifier {
        Notifier {
            socket: None,
            patience: Duration::ZERO,
        }
    }

    /// Connects to the socket named by a `NOTIFY_SOCKET` value; sends
    /// never wait (the master's messages to systemd: the supervision loop
    /// must not block on a slow reader).
    pub(crate) fn connect(value: Option<&OsStr>) -> io::Result<Notifier> {
        Notifier::connect_patient(value, Duration::ZERO)
    }

    /// As [`Notifier::connect`], but a send waits up to `patience` for
    /// room in the reader's queue rather than drop the message: a worker's
    /// `READY=1` or heartbeat must not be lost to a moment of backlog.
    pub(crate) fn connect_patient(
        value: Option<&OsStr>,
        patience: Duration,
    ) -> io::Result<Notifier> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(Notifier::none());
        };
        let socket = UnixDatagram::unbound()?;
        socket.connect_addr(&address(value)?)?;
        // Non-blocking: a full queue reports WouldBlock, and `send` waits
        // for room only as long as its patience allows.
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            socket: Some(socket),
            patience,
        })
    }

    /// Sends the states as one datagram. If the reader's queue is full,
    /// waits for room up to the notifier's patience, then gives up with
    /// `WouldBlock` (the message is dropped).
    pub(crate) fn send(&self, states: &[NotifyState<'_>]) -> io::Result<()> {
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        let mut text = String::new();
        for state in states {
            text.push_str(&state.to_string());
            text.push('\n');
        }
        let deadline = Instant::now() + self.patience;
        loop {
            match socket.send(text.as_bytes()) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(e);
                    }
                    // A connected datagram socket polls writable once the
                    // peer's queue has room.
                    let ms = left.as_millis().clamp(1, u16::MAX as u128) as u16;
                    let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLOUT)];
                    let _ = poll(&mut fds, PollTimeout::from(ms));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patient_sender_waits_for_room_and_an_impatient_one_does_not() {
        let (reader, writer) = UnixDatagram::pair().unwrap();
        writer.set_nonblocking(true).unwrap();
        let patient = Notifier {
            socket: Some(writer.try_clone().unwrap()),
            patience: Duration::from_secs(30),
        };
        let impatient = Notifier {
            socket: Some(writer),
            patience: Duration::ZERO,
        };
        // Fill the reader's queue.
        let mut queued = 0;
        while impatient.send(&[NotifyState::Watchdog]).is_ok() {
            queued += 1;
            assert!(queued < 100_000, "the queue never filled");
        }
        std::thread::scope(|scope| {
            let sent = scope.spawn(|| patient.send(&[NotifyState::Ready]));
            // The reader takes one message out: room for the waiting one.
            let mut buf = [0u8; 64];
            reader.recv(&mut buf).unwrap();
            sent.join().unwrap().unwrap();
        });
        let mut last = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..queued {
            let n = reader.recv(&mut buf).unwrap();
            last = buf[..n].to_vec();
        }
        assert_eq!(last, b"READY=1\n", "the waiting message arrived, last");
    }

    #[test]
    fn no_socket_means_no_op() {
        assert!(Notifier::connect(None).unwrap().socket.is_none());
        Notifier::none().send(&[NotifyState::Ready]).unwrap();
        assert!(Notifier::connect(Some(OsStr::new("vsock:1:2"))).is_err());
    }
}
