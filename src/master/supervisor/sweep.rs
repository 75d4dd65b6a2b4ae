//! Nothing left behind: what remains of a stopped worker's process tree,
//! and the orphans the master adopted, are stopped like the worker.
//!
//! A worker leads its own session and process group, and the master
//! signals the group; but a child of the worker may call `setsid()` (or
//! `setpgid()`) and leave it, or ignore the stop signal and outlive the
//! worker, still holding the listening socket. So each worker the pool
//! stops (a graceful stop, or a reload retiring it) gets a [`Sweep`] of
//! [`Scope::Tree`], and the final stop one more of [`Scope::Everything`].
//! A sweep sends the stop signal to what is in its scope, SIGKILL at the
//! worker's own `kill_at`, and ends when the master reports the scope
//! empty ([`Event::Swept`](super::Event::Swept)): the stop is over (exit)
//! and a reload is reported finished only once no sweep is left.
//!
//! What is in a scope is for the master to find (`crate::master::sweep`
//! says how); the pool only decides when to look and which signal to
//! send. Nothing tells the master when a process that is not its child
//! ends, so while a sweep runs it looks again every [`PROBE_EVERY`], and at
//! once after any exit it reaps: the one wait here that polls, bounded by
//! the stop timeout and [`KILL_GRACE`](super::KILL_GRACE).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{Action, Decision, KILL_GRACE, Level, Notice, Pool};

/// How often a running sweep looks again for what is left.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(100);

/// Which processes a sweep is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scope {
    /// What is left of worker `pid`'s tree (the worker itself aside, which
    /// its slot stops): its descendants, its process group and session,
    /// and the orphans the master adopted that came from it.
    Tree(Pid),
    /// Every process descended from the master that is not a worker, and
    /// every one any sweep found before: the final stop leaves nothing.
    Everything,
}

/// One sweep's order to the master: send `signal` to what `scope` holds
/// (once per process and signal), and report it empty if it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Order {
    pub(crate) scope: Scope,
    pub(crate) signal: Signal,
}

/// A running sweep: the stop signal until `kill_at`, SIGKILL after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sweep {
    pub(crate) scope: Scope,
    signal: Signal,
    kill_at: Instant,
    /// When SIGKILL was sent.
    killed: Option<Instant>,
    /// When to look again.
    probe_at: Instant,
}

impl Pool {
    /// Starts sweeping `scope` now: `signal`, then SIGKILL at `kill_at`.
    /// A scope already swept keeps its sweep (the sooner deadline wins).
    pub(super) fn sweep(&mut self, scope: Scope, signal: Signal, kill_at: Instant, now: Instant) {
        if let Some(s) = self.sweeps.iter_mut().find(|s| s.scope == scope) {
            s.kill_at = s.kill_at.min(kill_at);
            s.probe_at = now;
            return;
        }
        self.sweeps.push(Sweep {
            scope,
            signal,
            kill_at,
            killed: None,
            probe_at: now,
        });
    }

    /// A fast stop: every sweep goes to SIGKILL now.
    pub(super) fn sweep_fast(&mut self, now: Instant) {
        for s in &mut self.sweeps {
            s.kill_at = s.kill_at.min(now);
            s.probe_at = now;
        }
    }

    /// Something exited: look again at once (an orphan reaped, or a
    /// worker gone whose tree can now be found whole).
    pub(super) fn sweep_soon(&mut self, now: Instant) {
        for s in &mut self.sweeps {
            s.probe_at = s.probe_at.min(now);
        }
    }

    /// The master found nothing left in `scope`.
    pub(super) fn swept(&mut self, scope: Scope) {
        self.sweeps.retain(|s| s.scope != scope);
    }

    /// The nearest instant a sweep has work to do.
    pub(super) fn sweep_deadline(&self) -> Option<Instant> {
        self.sweeps
            .iter()
            .map(|s| match s.killed {
                None => s.probe_at.min(s.kill_at),
                Some(_) => s.probe_at,
            })
            .min()
    }

    /// Orders every sweep that is due: SIGKILL at its deadline, a look
    /// (with its signal) when its probe is due; gives up on a scope that
    /// outlived SIGKILL by [`KILL_GRACE`], so the stop can end.
    pub(super) fn run_sweeps(&mut self, now: Instant, out: &mut Decision) {
        let mut orders = Vec::new();
        self.sweeps.retain_mut(|s| {
            if let Some(killed) = s.killed
                && now.saturating_duration_since(killed) > KILL_GRACE
            {
                out.notices.push(Notice::new(
                    Level::Error,
                    format!(
                        "{} still running {} after SIGKILL; giving up on it",
                        describe(s.scope),
                        crate::config::Span(KILL_GRACE)
                    ),
                ));
                return false;
            }
            if s.killed.is_none() && s.kill_at <= now {
                s.killed = Some(now);
                s.signal = Signal::SIGKILL;
                s.probe_at = now;
            }
            if s.probe_at <= now {
                s.probe_at = now + PROBE_EVERY;
                orders.push(Order {
                    scope: s.scope,
                    signal: s.signal,
                });
            }
            true
        });
        if !orders.is_empty() {
            out.actions.push(Action::Sweep { orders });
        }
    }

    /// Whether a sweep still runs.
    pub(crate) fn sweeping(&self) -> bool {
        !self.sweeps.is_empty()
    }
}

/// A scope as the operator reads it.
pub(crate) fn describe(scope: Scope) -> String {
    match scope {
        Scope::Tree(pid) => format!("what is left of worker pid {pid}"),
        Scope::Everything => "a process the workers left behind".to_string(),
    }
}
