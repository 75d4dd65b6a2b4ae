//! Reaping children and naming how they ended.
//!
//! The master reaps in a loop, `waitpid(-1, WNOHANG)` until nothing is left,
//! at each wake-up that read SIGCHLD (signals of one kind merge, so one
//! SIGCHLD can stand for many exits: the loop takes them all), and at any
//! other wake-up that comes a second or more after the last reap. That
//! sweep sets no timer of its own: an idle master sleeps, and a child's
//! exit always raises a SIGCHLD, which the blocked signal keeps pending
//! until the signalfd is read. Not on every wake-up: each `waitpid` scans
//! every child, which a pool of 1024 would pay on each heartbeat. Orphans
//! adopted as a child subreaper are reaped by the same loop.

use std::fmt;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// How a process ended, in the terms an operator uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It called `exit(code)`.
    Code(i32),
    /// A signal ended it.
    Signal { signal: Signal, core_dumped: bool },
}

impl Exit {
    /// The journal field value: `EXIT_STATUS` for codes, `SIGNAL` for signals.
    pub(crate) fn code(self) -> Option<i32> {
        match self {
            Exit::Code(code) => Some(code),
            Exit::Signal { .. } => None,
        }
    }

    pub(crate) fn signal(self) -> Option<&'static str> {
        match self {
            Exit::Code(_) => None,
            Exit::Signal { signal, .. } => Some(signal.as_str()),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exited with status {code}"),
            Exit::Signal {
                signal,
                core_dumped: true,
            } => {
                write!(f, "was killed by {} (core dumped)", signal.as_str())
            }
            Exit::Signal { signal, .. } => write!(f, "was killed by {}", signal.as_str()),
        }
    }
}

/// Reaps every child that has exited, without blocking.
pub(crate) fn reap_all() -> Vec<(Pid, Exit)> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => reaped.push((pid, Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, signal, core_dumped)) => {
                reaped.push((
                    pid,
                    Exit::Signal {
                        signal,
                        core_dumped,
                    },
                ));
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(error) => {
                tracing::error!(%error, "waitpid failed");
                break;
            }
        }
    }
    reaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_read_in_operator_terms() {
        assert_eq!(Exit::Code(1).to_string(), "exited with status 1");
        assert_eq!(
            Exit::Signal {
                signal: Signal::SIGKILL,
                core_dumped: false
            }
            .to_string(),
            "was killed by SIGKILL"
        );
        assert_eq!(
            Exit::Signal {
                signal: Signal::SIGSEGV,
                core_dumped: true
            }
            .to_string(),
            "was killed by SIGSEGV (core dumped)"
        );
    }
}
