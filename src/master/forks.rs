//! The fork bookkeeping: children forked whose `execve` is not known yet
//! (their report pipe is polled by the loop), and those whose start failed
//! before `execve`, whose exit is not reported to the pool.

use std::collections::{BTreeMap, BTreeSet};

use nix::unistd::Pid;

use crate::spawn;

/// A worker forked for `slot` of `generation`, on its way to `execve`.
pub(super) struct Forking {
    pub(super) slot: usize,
    pub(super) generation: u64,
    pub(super) forked: spawn::Forked,
}

/// The children between `fork` and a known `execve`, by pid, and the
/// ones that failed on the way.
#[derive(Default)]
pub(super) struct Forks {
    pub(super) forking: BTreeMap<Pid, Forking>,
    /// Children whose start failed before `execve`: their exit is not
    /// reported to the pool.
    pub(super) failed: BTreeSet<Pid>,
}

/// What [`Forks::settle`] knows of a child.
pub(super) enum Settled {
    /// It was not being forked.
    NotForking,
    /// Its `execve` is not known yet.
    Pending,
    /// It executed, or failed on the way (it exits right after).
    Known {
        slot: usize,
        generation: u64,
        outcome: Result<(), spawn::Error>,
    },
}

impl Forks {
    /// `pid` was forked for `slot` of `generation`.
    pub(super) fn insert(&mut self, pid: Pid, slot: usize, generation: u64, forked: spawn::Forked) {
        let forking = Forking {
            slot,
            generation,
            forked,
        };
        self.forking.insert(pid, forking);
    }

    /// How `pid`'s way to `execve` ended, if that is known now; once it
    /// is, `pid` is no longer forking (and a failure is remembered).
    pub(super) fn settle(&mut self, pid: Pid) -> Settled {
        let Some(forking) = self.forking.get_mut(&pid) else {
            return Settled::NotForking;
        };
        let Some(outcome) = forking.forked.outcome() else {
            return Settled::Pending;
        };
        let Forking {
            slot, generation, ..
        } = self.forking.remove(&pid).expect("found above");
        if outcome.is_err() {
            self.failed.insert(pid);
        }
        Settled::Known {
            slot,
            generation,
            outcome,
        }
    }

    /// Whether `pid`'s start failed before `execve` (its exit is then not
    /// a worker's); forgets it.
    pub(super) fn take_failed(&mut self, pid: Pid) -> bool {
        self.failed.remove(&pid)
    }

    /// The children still on their way to `execve`.
    pub(super) fn pids(&self) -> Vec<Pid> {
        self.forking.keys().copied().collect()
    }
}
