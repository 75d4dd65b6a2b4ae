//! What the master decides, as a pure state machine.
//!
//! [`Pool::handle`] takes one event and the current time and returns the
//! actions to take; it makes no system call. The event loop in
//! [`crate::master`] turns signals, exits and notifications into events and
//! actions into syscalls. Unit tests drive the machine with invented pids
//! and instants, no process involved. "What happens when a worker dies" is
//! `Pool::on_exit`.
//!
//! Each slot `0..N-1` holds one serving worker ([`Slot::state`]), and during
//! a reload also its would-be replacement ([`Slot::successor`]) and the
//! workers it replaced that are still draining ([`Slot::retiring`]). A
//! [`State`] carries exactly what exists in it: a pid only where there is a
//! process, every wait as a deadline (`at`, `deadline`, `kill_at`,
//! `beat_by`) that the loop sleeps towards, never a sleep.
//!
//! **Respawn.** A worker that dies after it was ready for at least
//! [`STABLE_AFTER`] is replaced at once, and so is a ready worker killed
//! by SIGKILL from outside (the OOM killer, an operator): neither is the
//! app failing by itself. One that dies sooner (or never became ready)
//! waits `restart_backoff.initial`, doubling with each such death in a
//! row, up to `restart_backoff.max`. If no worker has ever
//! become ready and every slot has failed [`STARTUP_ATTEMPTS`] times, the
//! pool gives up: exit 69, and systemd's `Restart=` decides what next.
//!
//! **Rolling reload.** A reload makes the new configuration the target
//! generation, then replaces slots one at a time: the new worker starts
//! beside the old one, and only once it is ready is the old one told to
//! stop, so the number of ready workers never drops below N. If a new
//! worker exits or misses `ready_timeout`, the reload is rolled back: the
//! previous configuration becomes the target again and the slots already
//! replaced are replaced back the same way. Either way the reload ends
//! with `READY=1`.
//!
//! **Recycling** (`workers.recycle`, see `recycle`): a ready worker over
//! its memory limit or past its age is replaced as a reload replaces it,
//! one slot at a time (up to `surge`), never below N ready.
//!
//! **Heartbeats.** With `heartbeat_timeout`, a ready worker must send
//! `WATCHDOG=1` at least that often; one that does not is killed with
//! SIGKILL and replaced. After the master itself was stalled (SIGSTOP), every
//! heartbeat deadline starts afresh: a master that could not listen cannot
//! blame a worker for not being heard.
//!
//! **Health** (what the upstream `WATCHDOG=1` vouches for): the supervision
//! loop runs, no process has resisted SIGKILL for more than
//! [`KILL_GRACE`], and the last attempt to start a worker did not fail on
//! the master's side (fork or pipe failure). Workers crash-looping inside
//! their backoff leave the pool healthy: the master is doing its job.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::reap::Exit;
pub(crate) use notice::{Decision, Level, Notice};
pub(crate) use state::{KillCause, Slot, State};

mod exits;
mod lifecycle;
mod notice;
mod recycle;
mod reload;
mod state;
mod sweep;

pub(crate) use recycle::Recycling;
use reload::Reload;
use sweep::Sweep;
pub(crate) use sweep::{Order, Scope};

/// Ready this long, a worker counts as having started well: its next death
/// is not part of a crash loop.
pub(crate) const STABLE_AFTER: Duration = Duration::from_secs(1);

/// Failed starts per slot, with no worker ever ready, before giving up.
pub(crate) const STARTUP_ATTEMPTS: u32 = 3;

/// A process still alive this long after SIGKILL makes the pool unhealthy.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Settings {
    pub(crate) count: usize,
    /// exec workers with `ready: started` are ready once executed.
    pub(crate) ready_on_start: bool,
    /// exec workers with `ready: auto`: also ready once seen accepting
    /// ([`Event::Accepting`]), not only on `READY=1`.
    pub(crate) ready_when_accepting: bool,
    pub(crate) ready_timeout: Duration,
    /// Longest silence allowed between `WATCHDOG=1` from a ready worker.
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) stop_signal: Signal,
    pub(crate) stop_timeout: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    /// How many new workers a rolling reload may start at once, beside
    /// the old ones (`reload.surge`, at least 1).
    pub(crate) surge: usize,
    /// `workers.recycle`: when ready workers are replaced.
    pub(crate) recycle: Recycling,
}

impl Settings {
    /// Settings for a pool that exists only until the first generation's
    /// replace it (the master's start-up).
    pub(crate) fn placeholder() -> Settings {
        Settings {
            count: 1,
            ready_on_start: false,
            ready_when_accepting: false,
            ready_timeout: Duration::ZERO,
            heartbeat: None,
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::ZERO,
            backoff_initial: Duration::ZERO,
            backoff_max: Duration::ZERO,
            surge: 1,
            recycle: Recycling::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    /// Stopping every worker; exit with `code` once all are reaped.
    Stopping {
        code: ExitCode,
    },
}

/// How the master ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitCode {
    /// Stopped on request: 0.
    Clean,
    /// No worker ever became ready: 69.
    NoWorkerStarted,
}

/// How a reload ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReloadOutcome {
    /// Every slot runs the new generation.
    Done { generation: u64 },
    /// A new worker failed; the previous generation serves again.
    RolledBack { reason: String },
    /// Not started: another reload runs, or hawkey is stopping.
    Rejected { reason: String },
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Event {
    Start,
    Spawned {
        slot: usize,
        generation: u64,
        pid: Pid,
    },
    SpawnFailed {
        slot: usize,
        generation: u64,
        error: String,
        master_fault: bool,
    },
    /// `READY=1` from the worker or a descendant.
    Ready {
        pid: Pid,
    },
    /// The worker or a descendant accepts on a listener: what makes a
    /// worker under `ready: auto` ready if `READY=1` did not come first.
    Accepting {
        pid: Pid,
        by: Accepting,
    },
    Heartbeat {
        pid: Pid,
    },
    /// A worker's `STATUS=` line.
    WorkerStatus {
        pid: Pid,
        text: String,
    },
    /// The last line `pid` wrote to stderr, read as it ended (just before
    /// its [`Event::Exited`]); said with its exit if it was never ready.
    LastWords {
        pid: Pid,
        line: String,
    },
    Exited {
        pid: Pid,
        exit: Exit,
    },
    Stop {
        fast: bool,
    },
    Grow,
    Shrink,
    /// A valid new configuration: replace every worker with one of `generation`.
    Reload {
        settings: Settings,
        generation: u64,
    },
    /// The loop did not run for a while (the master was stopped).
    Stalled,
    /// Nothing is left in a sweep's scope (see `sweep`).
    Swept {
        scope: Scope,
    },
    /// The resident memory of each ready worker's process tree, in
    /// bytes, as [`Action::MeasureMemory`] asked (a vanished one is left
    /// out); `fresh` as asked.
    Memory {
        usage: Vec<(Pid, u64)>,
        fresh: bool,
    },
    /// Time passed; deadlines may be due.
    Tick,
}

/// How a worker was found accepting ([`Event::Accepting`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Accepting {
    /// hawkey's preload library in it sent `HAWKEY_ACCEPTING=1`.
    Reported,
    /// The master's `/proc` probe saw it (or a descendant) waiting for
    /// connections on the listener of that name.
    Seen { listener: String },
}

/// What made a worker ready, as its "is ready (...)" notice says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// `ready: started`: executed.
    Started,
    /// `READY=1`.
    Notified,
    /// Found accepting.
    Accepting(Accepting),
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readiness::Started => f.write_str("started"),
            Readiness::Notified => f.write_str("READY=1"),
            Readiness::Accepting(Accepting::Reported) => f.write_str("HAWKEY_ACCEPTING=1"),
            Readiness::Accepting(Accepting::Seen { listener }) => {
                write!(f, "seen accepting on {listener}")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Spawn {
        slot: usize,
        generation: u64,
    },
    /// Send `signal` to the worker's process group.
    Signal {
        pid: Pid,
        signal: Signal,
    },
    /// Every slot ready: `READY=1` (first start, or the end of a reload).
    AnnounceReady,
    /// `RELOADING=1`.
    AnnounceReloading,
    /// `STOPPING=1`.
    AnnounceStopping,
    ReloadFinished(ReloadOutcome),
    /// Stop what is left behind (see `sweep`): each order's signal to what
    /// its scope holds; `Event::Swept` for each scope found empty.
    Sweep {
        orders: Vec<Order>,
    },
    /// Measure the resident memory of each of these workers' process
    /// trees; answer with [`Event::Memory`]. `fresh`: a worker that has
    /// just become ready, whose size says what a fresh worker needs.
    MeasureMemory {
        pids: Vec<Pid>,
        fresh: bool,
    },
    Exit(ExitCode),
}

/// How a worker of `generation` is stopped: its signal, and when it is
/// killed if it has not exited. A function of the two fields (not a `Pool`
/// method) so it can be used while a slot is borrowed.
fn stop_of(
    stops: &BTreeMap<u64, (Signal, Duration)>,
    current: &Settings,
    generation: u64,
    now: Instant,
) -> (Signal, Instant) {
    let (signal, timeout) = stops
        .get(&generation)
        .copied()
        .unwrap_or((current.stop_signal, current.stop_timeout));
    (signal, now + timeout)
}

pub(crate) struct Pool {
    settings: Settings,
    /// Each live generation's stop signal and timeout: a worker is stopped
    /// the way the configuration it was started with says, also when it
    /// drains after a reload that changed them.
    stops: BTreeMap<u64, (Signal, Duration)>,
    /// How many slots should exist (changes with SIGTTIN/SIGTTOU and reloads).
    target: usize,
    slots: Vec<Slot>,
    phase: Phase,
    /// The target generation: what every slot should run.
    generation: u64,
    reload: Option<Reload>,
    announced: bool,
    any_ready_ever: bool,
    restarts: u64,
    master_fault: bool,
    /// What is left of stopped workers, being stopped too.
    sweeps: Vec<Sweep>,
    /// A reload that is over but for its retired workers and what they
    /// left: reported once they are gone.
    finished: Option<ReloadOutcome>,
    /// [`Event::LastWords`] of processes whose exit comes next.
    last_words: BTreeMap<Pid, String>,
    /// The state of the sequence age deadlines are drawn from (see `recycle`).
    rng: u64,
    /// When the workers' memory is measured next (only with `recycle.memory`).
    memory_check_at: Option<Instant>,
    /// The `recycle.memory` limit a fresh worker was found over, once
    /// said: warned about once per limit, not at every worker.
    fresh_over_warned: Option<u64>,
}

impl Pool {
    pub(crate) fn new(settings: Settings, generation: u64) -> Pool {
        Pool {
            target: settings.count.max(1),
            stops: BTreeMap::from([(generation, (settings.stop_signal, settings.stop_timeout))]),
            settings,
            slots: Vec::new(),
            phase: Phase::Running,
            generation,
            reload: None,
            announced: false,
            any_ready_ever: false,
            restarts: 0,
            master_fault: false,
            sweeps: Vec::new(),
            finished: None,
            last_words: BTreeMap::new(),
            rng: 0,
            memory_check_at: None,
            fresh_over_warned: None,
        }
    }

    pub(crate) fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether a stop was requested (the pool only winds down now).
    pub(crate) fn is_stopping(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. })
    }

    /// Whether a reload runs, or is over but for its retired workers.
    pub(crate) fn is_reloading(&self) -> bool {
        self.reload.is_some() || self.finished.is_some()
    }

    /// Every pid the pool has a process for: serving, starting, retiring.
    pub(crate) fn pids(&self) -> BTreeSet<Pid> {
        self.slots
            .iter()
            .flat_map(|s| {
                std::iter::once(s.state.pid())
                    .chain(s.successor.map(|(_, st)| st.pid()))
                    .chain(s.retiring.iter().map(|(_, st)| st.pid()))
            })
            .flatten()
            .collect()
    }

    /// Generations some process or a possible rollback still needs.
    pub(crate) fn generations_in_use(&self) -> BTreeSet<u64> {
        let mut set = BTreeSet::from([self.generation]);
        for s in &self.slots {
            set.insert(s.generation);
            set.extend(s.successor.map(|(g, _)| g));
            set.extend(s.retiring.iter().map(|(g, _)| *g));
        }
        if let Some(Reload {
            previous: Some((_, g)),
            ..
        }) = &self.reload
        {
            set.insert(*g);
        }
        set
    }

    /// The `STATUS=` line: "2/2 workers ready, generation 1, 0 restarts".
    pub(crate) fn status_line(&self) -> String {
        let ready = self.slots.iter().filter(|s| s.state.is_ready()).count();
        match self.phase {
            Phase::Running => {
                let mut line = format!(
                    "{ready}/{} workers ready, generation {}, {} restarts",
                    self.target, self.generation, self.restarts
                );
                match &self.reload {
                    Some(Reload {
                        failure: Some(_), ..
                    }) => line.push_str(", rolling back a failed reload"),
                    Some(_) => line.push_str(", reloading"),
                    None if self.slots.iter().any(|s| s.recycle.in_flight.is_some()) => {
                        line.push_str(", recycling");
                    }
                    None => {}
                }
                line
            }
            Phase::Stopping { .. } => {
                let left: usize = self
                    .slots
                    .iter()
                    .map(|s| {
                        usize::from(s.state.pid().is_some())
                            + usize::from(s.successor.is_some())
                            + s.retiring.len()
                    })
                    .sum();
                format!("stopping, {left} workers left")
            }
        }
    }

    /// Whether the pool is healthy, as the module doc defines it.
    pub(crate) fn healthy(&self, now: Instant) -> bool {
        let stuck = |state: &State| matches!(state, State::Killing { at, .. } if now.saturating_duration_since(*at) > KILL_GRACE);
        !self.master_fault
            && !self.slots.iter().any(|s| {
                stuck(&s.state)
                    || s.successor.is_some_and(|(_, st)| stuck(&st))
                    || s.retiring.iter().any(|(_, st)| stuck(st))
            })
    }

    /// The nearest instant at which [`Event::Tick`] has work to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let due = |state: &State| match *state {
            State::Pending { at } if self.phase == Phase::Running => Some(at),
            State::Starting { deadline, .. } => Some(deadline),
            State::Ready { beat_by, .. } => beat_by,
            State::Stopping { kill_at, .. } => Some(kill_at),
            _ => None,
        };
        self.slots
            .iter()
            .flat_map(|s| {
                std::iter::once(due(&s.state))
                    .chain(s.successor.iter().map(|(_, st)| due(st)))
                    .chain(s.retiring.iter().map(|(_, st)| due(st)))
            })
            .flatten()
            .chain(self.sweep_deadline())
            .chain(self.recycle_deadline())
            .min()
    }

    /// Decides what to do about `event` at `now`: the actions to carry out,
    /// in order, and what to tell the operator.
    pub(crate) fn handle(&mut self, event: Event, now: Instant) -> Decision {
        let mut out = Decision::default();
        match event {
            Event::Start => {
                self.slots = (0..self.target)
                    .map(|id| Slot::new(id, self.generation, now))
                    .collect();
            }
            Event::Spawned {
                slot,
                generation,
                pid,
            } => self.on_spawned(slot, generation, pid, now, &mut out),
            Event::SpawnFailed {
                slot,
                generation,
                error,
                master_fault,
            } => self.on_spawn_failed(slot, generation, &error, master_fault, now, &mut out),
            Event::Ready { pid } => self.on_ready(pid, Readiness::Notified, now, &mut out),
            Event::Accepting { pid, by } => {
                if self.settings.ready_when_accepting {
                    self.on_ready(pid, Readiness::Accepting(by), now, &mut out);
                }
            }
            Event::Heartbeat { pid } => self.on_heartbeat(pid, now),
            Event::WorkerStatus { pid, text } => {
                if let Some(s) = self.slots.iter_mut().find(|s| s.state.pid() == Some(pid)) {
                    s.worker_status = Some(text);
                }
            }
            Event::LastWords { pid, line } => {
                self.last_words.insert(pid, line);
            }
            Event::Exited { pid, exit } => {
                self.sweep_soon(now);
                self.on_exit(pid, exit, now, &mut out);
            }
            Event::Stop { fast } => self.stop(fast, ExitCode::Clean, now, &mut out),
            Event::Grow => self.grow(now, &mut out),
            Event::Shrink => self.shrink(now, &mut out),
            Event::Reload {
                settings,
                generation,
            } => self.start_reload(settings, generation, now, &mut out),
            Event::Stalled => self.after_stall(now, &mut out),
            Event::Swept { scope } => self.swept(scope),
            Event::Memory { usage, fresh } => self.on_memory(&usage, fresh, &mut out),
            Event::Tick => self.on_tick(now, &mut out),
        }
        self.schedule(now, &mut out);
        self.advance_reload(now, &mut out);
        self.advance_recycles(now, &mut out);
        self.run_sweeps(now, &mut out);
        self.report_reload(now, &mut out);
        self.check_done(&mut out);
        let in_use = self.generations_in_use();
        self.stops.retain(|g, _| in_use.contains(g));
        out
    }
}

#[cfg(test)]
mod tests;
