//! What the supervisor tells the operator: [`Notice`]s, returned beside
//! its actions in a [`Decision`] and logged by the master (the decisions
//! stay pure: the supervisor itself never logs).

use nix::unistd::Pid;

use super::Action;
use super::recycle::Reason;
use crate::master::reap::Exit;

/// How much a notice matters, as the log level it is written at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// For someone debugging hawkey.
    Debug,
    /// The expected course of things.
    Info,
    /// Something went wrong and hawkey deals with it; says what happens next.
    Warn,
    /// Something went wrong that hawkey cannot mend by itself.
    Error,
}

/// One thing that happened, in operator terms, with the worker it is about
/// (its slot, pid and generation) and how a process ended, as fields for
/// the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Notice {
    pub(crate) level: Level,
    pub(crate) text: String,
    pub(crate) slot: Option<usize>,
    pub(crate) pid: Option<Pid>,
    pub(crate) generation: Option<u64>,
    pub(crate) exit: Option<Exit>,
    /// Why the worker is (being) recycled.
    pub(crate) recycle: Option<Reason>,
}

impl Notice {
    /// A notice about the pool as a whole.
    pub(crate) fn new(level: Level, text: String) -> Notice {
        Notice {
            level,
            text,
            slot: None,
            pid: None,
            generation: None,
            exit: None,
            recycle: None,
        }
    }

    /// About the worker in `slot`.
    pub(crate) fn slot(mut self, slot: usize) -> Notice {
        self.slot = Some(slot);
        self
    }

    /// About the process `pid`.
    pub(crate) fn pid(mut self, pid: Pid) -> Notice {
        self.pid = Some(pid);
        self
    }

    /// About a worker of `generation`.
    pub(crate) fn generation(mut self, generation: u64) -> Notice {
        self.generation = Some(generation);
        self
    }

    /// About a recycle, for `reason`.
    pub(crate) fn recycle(mut self, reason: Reason) -> Notice {
        self.recycle = Some(reason);
        self
    }

    /// About a process that ended so.
    pub(crate) fn exit(mut self, exit: Exit) -> Notice {
        self.exit = Some(exit);
        self
    }
}

/// What [`super::Pool::handle`] decided: actions to carry out, in order,
/// and notices to log.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    pub(crate) actions: Vec<Action>,
    pub(crate) notices: Vec<Notice>,
}
