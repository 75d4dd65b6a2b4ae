//! What a slot holds: its workers' [`State`]s, each carrying exactly what
//! exists in it (a pid only where there is a process, every wait as a
//! deadline), and the [`Slot`] around them.

use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::Action;
use super::recycle::SlotRecycle;
use crate::master::reap::Exit;

/// Why a worker was sent SIGKILL: what its death then means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KillCause {
    /// It did not become ready within `ready_timeout`.
    ReadyTimeout,
    /// It sent no heartbeat within `heartbeat_timeout`: it hung, after it
    /// had started well.
    Heartbeat,
    /// It was still running at its stop timeout.
    StopTimeout,
    /// A fast stop (SIGQUIT) killed it.
    FastStop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// No process; to be started at `at`.
    Pending { at: Instant },
    /// Being forked right now (between the `Spawn` action and its result).
    Spawning,
    Starting {
        pid: Pid,
        since: Instant,
        deadline: Instant,
    },
    Ready {
        pid: Pid,
        since: Instant,
        ready_at: Instant,
        beat_by: Option<Instant>,
    },
    /// Asked to stop with the stop signal; SIGKILL at `kill_at`.
    Stopping {
        pid: Pid,
        since: Instant,
        kill_at: Instant,
    },
    /// SIGKILL sent at `at` for `cause`; waiting to reap.
    Killing {
        pid: Pid,
        since: Instant,
        at: Instant,
        cause: KillCause,
    },
    /// No process, and none to start.
    Stopped,
}

impl State {
    pub(crate) fn pid(&self) -> Option<Pid> {
        match *self {
            State::Starting { pid, .. }
            | State::Ready { pid, .. }
            | State::Stopping { pid, .. }
            | State::Killing { pid, .. } => Some(pid),
            State::Pending { .. } | State::Spawning | State::Stopped => None,
        }
    }

    /// When the process in this state was started.
    pub(crate) fn since(&self) -> Option<Instant> {
        match *self {
            State::Starting { since, .. }
            | State::Ready { since, .. }
            | State::Stopping { since, .. }
            | State::Killing { since, .. } => Some(since),
            _ => None,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            State::Pending { .. } => "waiting",
            State::Spawning => "spawning",
            State::Starting { .. } => "starting",
            State::Ready { .. } => "ready",
            State::Stopping { .. } => "stopping",
            State::Killing { .. } => "killing",
            State::Stopped => "stopped",
        }
    }

    pub(super) fn is_ready(&self) -> bool {
        matches!(self, State::Ready { .. })
    }

    /// Sends SIGKILL to a live process for `cause`; returns its next state.
    pub(super) fn kill(self, cause: KillCause, now: Instant, actions: &mut Vec<Action>) -> State {
        match self {
            State::Starting { pid, since, .. }
            | State::Ready { pid, since, .. }
            | State::Stopping { pid, since, .. } => {
                actions.push(Action::Signal {
                    pid,
                    signal: Signal::SIGKILL,
                });
                State::Killing {
                    pid,
                    since,
                    at: now,
                    cause,
                }
            }
            State::Pending { .. } | State::Stopped => State::Stopped,
            other => other,
        }
    }

    /// Sends `signal` to a live process and returns its next state
    /// (SIGKILL: a fast stop).
    pub(super) fn signal(
        self,
        signal: Signal,
        kill_at: Instant,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> State {
        match self {
            State::Starting { pid, since, .. }
            | State::Ready { pid, since, .. }
            | State::Stopping { pid, since, .. }
                if signal == Signal::SIGKILL =>
            {
                actions.push(Action::Signal { pid, signal });
                State::Killing {
                    pid,
                    since,
                    at: now,
                    cause: KillCause::FastStop,
                }
            }
            State::Starting { pid, since, .. } | State::Ready { pid, since, .. } => {
                actions.push(Action::Signal { pid, signal });
                State::Stopping {
                    pid,
                    since,
                    kill_at,
                }
            }
            State::Pending { .. } | State::Stopped => State::Stopped,
            other => other,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Slot {
    pub(crate) id: usize,
    pub(crate) state: State,
    /// The generation of the worker in `state` (or of the last one).
    pub(crate) generation: u64,
    /// During a reload: the new-generation worker starting beside `state`.
    pub(crate) successor: Option<(u64, State)>,
    /// Replaced workers still draining: (generation, state).
    pub(crate) retiring: Vec<(u64, State)>,
    /// Workers started in this slot after the first.
    pub(crate) restarts: u32,
    /// Times this slot's worker was recycled (`workers.recycle`).
    pub(crate) recycles: u32,
    /// What recycling knows about the serving worker.
    pub(super) recycle: SlotRecycle,
    /// The last `STATUS=` line the worker in `state` sent.
    pub(crate) worker_status: Option<String>,
    /// Quick deaths in a row (see the module doc).
    pub(super) failures: u32,
    /// Failed starts while no worker of the pool was ever ready.
    pub(super) startup_failures: u32,
    pub(crate) last_exit: Option<Exit>,
}

impl Slot {
    pub(super) fn new(id: usize, generation: u64, now: Instant) -> Slot {
        Slot {
            id,
            state: State::Pending { at: now },
            generation,
            successor: None,
            retiring: Vec::new(),
            restarts: 0,
            recycles: 0,
            recycle: SlotRecycle::default(),
            worker_status: None,
            failures: 0,
            startup_failures: 0,
            last_exit: None,
        }
    }

    /// Whether `pid` is this slot's serving worker or its replacement
    /// being started (not one retiring after a reload).
    pub(crate) fn runs(&self, pid: Pid) -> bool {
        self.state.pid() == Some(pid) || self.successor.is_some_and(|(_, st)| st.pid() == Some(pid))
    }

    pub(super) fn has_process(&self) -> bool {
        self.state.pid().is_some()
            || self.state == State::Spawning
            || self.successor.is_some()
            || !self.retiring.is_empty()
    }
}
