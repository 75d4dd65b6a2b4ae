//! The master's signals, as events.
//!
//! Every signal the master acts on is blocked from the first moment of
//! `hawkey run` and read from a `signalfd(2)` in the event loop, so a
//! handler never runs and nothing is lost: a SIGTERM that arrives while the
//! config is still being read waits in the queue and is acted on by the loop
//! like any other. This is the one place that turns signal numbers into
//! meanings, listed in [`TABLE`] (hawkey(1)'s SIGNALS is rendered from it,
//! and a test holds it to [`HANDLED`] and [`meaning`]).
//!
//! That is every signal `kill(1)` can send whose default action ends the
//! process, but for SIGKILL and SIGSTOP, which cannot be caught, SIGABRT
//! and SIGTRAP (asked-for core dumps: systemd's `WatchdogSignal=` is
//! SIGABRT), SIGSYS, and the synchronous faults SIGSEGV, SIGBUS, SIGILL
//! and SIGFPE, which must stay fatal (the kernel forces those through a
//! blocked mask anyway). SIGPIPE is ignored (Rust's runtime already does)
//! so that a write to a closed pipe fails with EPIPE and is dropped (see
//! `logging`). Ignoring the realtime signals takes the raw syscall:
//! glibc's `sigaction` refuses 32 and 33, which it keeps for threads the
//! single-threaded master never starts.
//!
//! Workers get an empty mask and default dispositions back before they
//! exec (see `spawn`: every number from 1 to 64 is reset).

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
    /// SIGUSR1, logrotate's "reopen your logs": hawkey has no log file.
    ReopenLogs,
}

/// What each signal does to the master: signal names (comma-separated)
/// and their meaning, the one table of them.
pub(crate) const TABLE: &[(&str, &str)] = &[
    (
        "SIGTERM, SIGINT",
        "graceful stop: STOPPING=1, workers.stop_signal to every worker, SIGKILL to those still running workers.stop_timeout later; every child reaped, the pidfile removed, exit 0",
    ),
    (
        "SIGQUIT",
        "fast stop: SIGKILL the workers, clean up, exit 0",
    ),
    (
        "SIGHUP",
        "reload: read and check the configuration again; valid, the workers are replaced by a rolling reload; invalid, the running workers are kept and the error reported",
    ),
    (
        "SIGTTIN, SIGTTOU",
        "one worker more, one fewer (never below 1)",
    ),
    (
        "SIGCHLD",
        "a child changed state: reap every exited child, log how it ended, and replace it (with backoff) unless stopping",
    ),
    (
        "SIGCONT",
        "the master was stopped and goes on: heartbeat deadlines start afresh",
    ),
    ("SIGUSR1", "logged: hawkey has no log file to reopen"),
    (
        "SIGUSR2, SIGALRM, SIGPWR, SIGVTALRM, SIGPROF, SIGIO, SIGSTKFLT, SIGXCPU, SIGXFSZ",
        "logged and ignored",
    ),
    ("SIGPIPE, realtime signals (32 to 64)", "ignored (SIG_IGN)"),
];

/// The signals the master blocks and reads from its signalfd.
const HANDLED: [Signal; 18] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGCHLD,
    Signal::SIGCONT,
    Signal::SIGUSR2,
    Signal::SIGUSR1,
    Signal::SIGALRM,
    Signal::SIGPWR,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGIO,
    Signal::SIGSTKFLT,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
];

/// The first realtime signal number and the last (`SIGRTMAX` on Linux).
const REALTIME: std::ops::RangeInclusive<libc::c_int> = 32..=64;

/// Ignores SIGPIPE and every realtime signal, whose default action would
/// end the master.
fn ignore_the_rest() -> nix::Result<()> {
    // SAFETY: setting SIG_IGN through sigaction has no handler to run.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // The kernel's struct sigaction: {handler, flags, restorer, mask};
    // handler 1 is SIG_IGN.
    let ignore = [1u64, 0, 0, 0];
    for signal in REALTIME {
        // SAFETY: rt_sigaction with a valid action and no old one; the
        // action lives on this frame for the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                ignore.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
        if r != 0 {
            return Err(nix::errno::Errno::last());
        }
    }
    Ok(())
}

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
        Signal::SIGUSR1 => Request::ReopenLogs,
        // Blocked so that a stray one cannot kill the master: SIGUSR2
        // (einhorn and unicorn use it for upgrades), timers, power
        // events, resource limits; no meaning here.
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
        ignore_the_rest()?;
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

    /// The signals a [`TABLE`] row names.
    fn names(row: &(&'static str, &str)) -> Vec<&'static str> {
        row.0.split(", ").collect()
    }

    #[test]
    fn the_table_names_every_handled_signal_once_with_its_meaning() {
        for signal in HANDLED {
            let rows: Vec<_> = TABLE
                .iter()
                .filter(|row| names(row).contains(&signal.as_str()))
                .collect();
            assert_eq!(rows.len(), 1, "{signal} in {rows:?}");
            let (_, said) = rows[0];
            assert_eq!(
                meaning(signal).is_none(),
                said.contains("ignored"),
                "{signal}: {said}"
            );
        }
        let (last, handled) = TABLE.split_last().unwrap();
        for row in handled {
            for name in names(row) {
                let signal: Signal = name.parse().unwrap();
                assert!(HANDLED.contains(&signal), "{name} is not handled");
            }
        }
        assert!(names(last).contains(&"SIGPIPE"));
    }

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
        assert_eq!(meaning(Signal::SIGUSR1), Some(Request::ReopenLogs));
        for inert in &HANDLED[9..] {
            if *inert != Signal::SIGUSR1 {
                assert_eq!(meaning(*inert), None, "{inert}");
            }
        }
    }

    /// signal(7): every signal whose default action ends the process.
    /// Each one is blocked (read from the signalfd), ignored, or on the
    /// list of those left fatal on purpose.
    #[test]
    fn no_signal_kill_can_send_ends_the_master_by_default() {
        const FATAL_ON_PURPOSE: [Signal; 9] = [
            Signal::SIGKILL,
            Signal::SIGSTOP,
            Signal::SIGABRT,
            Signal::SIGTRAP,
            Signal::SIGSYS,
            Signal::SIGSEGV,
            Signal::SIGBUS,
            Signal::SIGILL,
            Signal::SIGFPE,
        ];
        const TERMINATING: [Signal; 22] = [
            Signal::SIGHUP,
            Signal::SIGINT,
            Signal::SIGQUIT,
            Signal::SIGILL,
            Signal::SIGTRAP,
            Signal::SIGABRT,
            Signal::SIGBUS,
            Signal::SIGFPE,
            Signal::SIGKILL,
            Signal::SIGUSR1,
            Signal::SIGSEGV,
            Signal::SIGUSR2,
            Signal::SIGPIPE,
            Signal::SIGALRM,
            Signal::SIGTERM,
            Signal::SIGSTKFLT,
            Signal::SIGXCPU,
            Signal::SIGXFSZ,
            Signal::SIGVTALRM,
            Signal::SIGPROF,
            Signal::SIGIO,
            Signal::SIGPWR,
        ];
        for signal in TERMINATING {
            assert!(
                HANDLED.contains(&signal)
                    || signal == Signal::SIGPIPE
                    || FATAL_ON_PURPOSE.contains(&signal),
                "{signal} would end the master"
            );
        }
        assert_eq!(REALTIME, 32..=64);
    }
}
