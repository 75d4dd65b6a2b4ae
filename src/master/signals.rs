//! The master's signals, as events.
//!
//! Every signal the master acts on is blocked from the first moment of
//! `hawkey run` and read from a `signalfd(2)` in the event loop, so a
//! handler never runs and nothing is lost: a SIGTERM that arrives while the
//! config is still being read waits in the queue and is acted on by the loop
//! like any other. This is the one place that turns signal numbers into
//! meanings:
//!
//! | signal            | meaning                                            |
//! |-------------------|----------------------------------------------------|
//! | SIGTERM, SIGINT   | graceful stop                                      |
//! | SIGQUIT           | fast stop: SIGKILL the workers                     |
//! | SIGHUP            | reload                                             |
//! | SIGTTIN / SIGTTOU | one worker more / fewer                            |
//! | SIGCHLD           | a child changed state: reap                        |
//! | SIGCONT           | the master was stopped: heartbeat deadlines afresh |
//!
//! Workers get an empty mask and default dispositions back before they
//! exec (see `spawn`).

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// What a received signal asks the master to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// SIGTERM or SIGINT (the signal is kept for the log line).
    Stop(Signal),
    FastStop,
    Reload,
    Grow,
    Shrink,
    /// SIGCHLD: one or more children exited.
    Reap,
    /// SIGCONT: the master was stopped (SIGSTOP, SIGTSTP) and goes on.
    Continued,
}

const HANDLED: [Signal; 9] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGCHLD,
    Signal::SIGCONT,
    Signal::SIGUSR2,
];

fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    for signal in HANDLED {
        set.add(signal);
    }
    set
}

fn meaning(signal: Signal) -> Option<Request> {
    Some(match signal {
        Signal::SIGTERM | Signal::SIGINT => Request::Stop(signal),
        Signal::SIGQUIT => Request::FastStop,
        Signal::SIGHUP => Request::Reload,
        Signal::SIGTTIN => Request::Grow,
        Signal::SIGTTOU => Request::Shrink,
        Signal::SIGCHLD => Request::Reap,
        // Blocking SIGCONT does not keep it from resuming the process; it
        // then waits on the signalfd to say the master was stopped.
        Signal::SIGCONT => Request::Continued,
        // Blocked so that a stray SIGUSR2 (einhorn and unicorn use it for
        // upgrades) cannot kill the master; it has no meaning here yet.
        _ => return None,
    })
}

/// The blocked signals and the signalfd they arrive on.
pub(crate) struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks the handled signals in this (the only) thread and opens the
    /// signalfd, non-blocking and close-on-exec.
    pub(crate) fn block() -> nix::Result<Signals> {
        let set = handled_set();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Signals { fd })
    }

    /// Every pending signal, in arrival order, as requests. Signals of the
    /// same number that arrived together are merged by the kernel; the
    /// caller treats `Reap` as "reap everything", so that is harmless.
    pub(crate) fn drain(&mut self) -> Vec<Request> {
        let mut requests = Vec::new();
        while let Ok(Some(info)) = self.fd.read_signal() {
            let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match meaning(signal) {
                Some(request) => requests.push(request),
                None => tracing::info!(signal = signal.as_str(), "ignoring signal"),
            }
        }
        requests
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_handled_signal_has_one_meaning_or_is_deliberately_inert() {
        assert_eq!(
            meaning(Signal::SIGTERM),
            Some(Request::Stop(Signal::SIGTERM))
        );
        assert_eq!(meaning(Signal::SIGINT), Some(Request::Stop(Signal::SIGINT)));
        assert_eq!(meaning(Signal::SIGQUIT), Some(Request::FastStop));
        assert_eq!(meaning(Signal::SIGHUP), Some(Request::Reload));
        assert_eq!(meaning(Signal::SIGTTIN), Some(Request::Grow));
        assert_eq!(meaning(Signal::SIGTTOU), Some(Request::Shrink));
        assert_eq!(meaning(Signal::SIGCHLD), Some(Request::Reap));
        assert_eq!(meaning(Signal::SIGUSR2), None);
    }
}
