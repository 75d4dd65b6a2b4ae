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

use sd_notify::NotifyState;

/// A connected notify socket, or nothing when `NOTIFY_SOCKET` is unset.
#[derive(Debug)]
pub(crate) struct Notifier {
    socket: Option<UnixDatagram>,
}

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
        Notifier { socket: None }
    }

    /// Connects to the socket named by a `NOTIFY_SOCKET` value.
    pub(crate) fn connect(value: Option<&OsStr>) -> io::Result<Notifier> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(Notifier::none());
        };
        let socket = UnixDatagram::unbound()?;
        socket.connect_addr(&address(value)?)?;
        // Never block the supervision loop on a slow reader: a full queue
        // drops the message (send reports WouldBlock) instead.
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            socket: Some(socket),
        })
    }

    /// Sends the states as one datagram, without waiting: if the reader's
    /// queue is full the error is `WouldBlock` and the message is dropped.
    pub(crate) fn send(&self, states: &[NotifyState<'_>]) -> io::Result<()> {
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        let mut text = String::new();
        for state in states {
            text.push_str(&state.to_string());
            text.push('\n');
        }
        socket.send(text.as_bytes()).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_socket_means_no_op() {
        assert!(Notifier::connect(None).unwrap().socket.is_none());
        Notifier::none().send(&[NotifyState::Ready]).unwrap();
        assert!(Notifier::connect(Some(OsStr::new("vsock:1:2"))).is_err());
    }
}
