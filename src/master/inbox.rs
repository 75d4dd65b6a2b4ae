//! The master's end of its workers' `sd_notify(3)` messages.
//!
//! The master plays systemd's part for its workers: it binds one datagram
//! socket in the abstract namespace (`@hawkey/<pid>/notify`, no file to
//! clean up, gone with the master) with `SO_PASSCRED`, so the kernel stamps
//! each message with the sender's pid and a message is credited to the
//! worker with that pid only. Builtin workers always get it as their
//! `NOTIFY_SOCKET`; exec workers with `ready: notify` too. Never systemd's
//! own socket: the master filters that out of every worker's environment.
//! Workers send with [`crate::worker::notify::Notifier`].

use std::ffi::{OsStr, OsString};
use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::unistd::Pid;

/// What a worker said in one datagram, of what the master acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Message {
    /// `READY=1`.
    pub(crate) ready: bool,
    /// `WATCHDOG=1`: a heartbeat.
    pub(crate) watchdog: bool,
    /// `STATUS=`, the worker's own status line.
    pub(crate) status: Option<String>,
}

/// Parses `KEY=VALUE` lines; other keys (`STOPPING=1` among them: the
/// master decides when a worker stops) are ignored, as systemd ignores
/// unknown ones.
pub(crate) fn parse(datagram: &[u8]) -> Message {
    let mut message = Message::default();
    for line in datagram.split(|b| *b == b'\n') {
        match line {
            b"READY=1" => message.ready = true,
            b"WATCHDOG=1" => message.watchdog = true,
            _ => {
                if let Some(status) = line.strip_prefix(b"STATUS=") {
                    message.status = Some(String::from_utf8_lossy(status).into_owned());
                }
            }
        }
    }
    message
}

/// The master's socket for its workers' notifications.
pub(crate) struct Inbox {
    socket: UnixDatagram,
    name: OsString,
}

impl Inbox {
    /// Binds `@hawkey/<pid>/notify` (with a suffix if that is taken),
    /// non-blocking, close-on-exec, with `SO_PASSCRED`.
    pub(crate) fn bind() -> io::Result<Inbox> {
        let pid = std::process::id();
        let mut last_error = None;
        for attempt in 0..16 {
            let name = if attempt == 0 {
                format!("hawkey/{pid}/notify")
            } else {
                format!("hawkey/{pid}/notify.{attempt}")
            };
            let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
            match UnixDatagram::bind_addr(&addr) {
                Ok(socket) => {
                    socket.set_nonblocking(true)?;
                    setsockopt(&socket, sockopt::PassCred, &true)?;
                    let mut value = OsString::from("@");
                    value.push(&name);
                    return Ok(Inbox {
                        socket,
                        name: value,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no free notify socket name")))
    }

    /// The `NOTIFY_SOCKET` value workers get.
    pub(crate) fn name(&self) -> &OsStr {
        &self.name
    }

    /// Every waiting message, with the pid the kernel vouches for and that
    /// process's group (see [`Sender`]).
    pub(crate) fn drain(&self) -> Vec<(Sender, Message)> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!(libc::ucred, [std::os::fd::RawFd; 8]);
            let (len, pid, fds) = match recvmsg::<()>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let (mut pid, mut fds) = (None, Vec::new());
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for cmsg in cmsgs {
                            match cmsg {
                                ControlMessageOwned::ScmCredentials(cred) => pid = Some(cred.pid()),
                                ControlMessageOwned::ScmRights(received) => fds.extend(received),
                                _ => {}
                            }
                        }
                    }
                    (msg.bytes, pid, fds)
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            };
            // The sender's group is read while it is surely still there:
            // `systemd-notify` waits until its barrier fd (below) is closed.
            let sender = pid.map(|pid| Sender {
                pid: Pid::from_raw(pid),
                group: process_group(pid),
            });
            // Descriptors are not part of the worker protocol: close them,
            // which also releases a sender waiting on a barrier.
            for fd in fds {
                let _ = nix::unistd::close(fd);
            }
            if let Some(sender) = sender {
                out.push((sender, parse(&buf[..len])));
            }
        }
        out
    }
}

/// Who sent a notify message: its pid, and its process group as read when
/// the message was received (a helper such as `systemd-notify` runs in its
/// worker's group, see `Master::credited_worker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sender {
    pub(crate) pid: Pid,
    pub(crate) group: Option<Pid>,
}

/// The process group of `pid` (`getpgid(2)`), if it still exists.
fn process_group(pid: i32) -> Option<Pid> {
    nix::unistd::getpgid(Some(Pid::from_raw(pid))).ok()
}

impl std::os::fd::AsFd for Inbox {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::notify::Notifier;
    use sd_notify::NotifyState;

    #[test]
    fn messages_parse_like_systemd() {
        let m = parse(b"READY=1\nSTATUS=serving 3 clients\nX_CUSTOM=1\n");
        assert!(m.ready);
        assert_eq!(m.status.as_deref(), Some("serving 3 clients"));
        assert!(!parse(b"READY=0").ready);
        assert!(parse(b"WATCHDOG=1").watchdog);
    }

    #[test]
    fn inbox_credits_messages_to_the_sending_pid() {
        let inbox = Inbox::bind().unwrap();
        let notifier = Notifier::connect(Some(inbox.name())).unwrap();
        notifier
            .send(&[NotifyState::Ready, NotifyState::Status("up")])
            .unwrap();
        let got = inbox.drain();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.pid.as_raw() as u32, std::process::id());
        assert_eq!(got[0].0.group, Some(nix::unistd::getpgrp()));
        assert!(got[0].1.ready);
        assert_eq!(got[0].1.status.as_deref(), Some("up"));
    }

    #[test]
    fn a_reader_that_never_reads_cannot_block_the_sender() {
        let inbox = Inbox::bind().unwrap();
        let notifier = Notifier::connect(Some(inbox.name())).unwrap();
        let mut dropped = false;
        for _ in 0..10_000 {
            if let Err(e) = notifier.send(&[NotifyState::Status("x")]) {
                assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                dropped = true;
                break;
            }
        }
        assert!(dropped, "the queue never filled");
    }
}
