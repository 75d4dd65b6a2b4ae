//! What the master decides, as a pure state machine.
//!
//! [`Pool::handle`] takes one event and the current time and returns the
//! actions to take; it makes no system call. The event loop in
//! [`crate::master`] turns signals, exits and notifications into events and
//! actions into syscalls. Unit tests drive the machine with invented pids
//! and instants, no process involved. "What happens when a worker dies" is
//! `Pool::on_exit`.
//!
//! Each slot `0..N-1` holds at most one worker. A slot's [`State`] carries
//! exactly what exists in that state: a pid only where there is a process,
//! and every wait as a deadline (`at`, `deadline`, `kill_at`) that the loop
//! sleeps towards, never a sleep.
//!
//! Respawn policy: a worker that dies after it was ready for at least
//! [`STABLE_AFTER`] is replaced at once. One that dies sooner (or never
//! became ready) waits `restart_backoff.initial`, doubling with each such
//! death in a row, up to `restart_backoff.max`. If no worker has ever
//! become ready and every slot has failed [`STARTUP_ATTEMPTS`] times, the
//! pool gives up: exit 69, and systemd's `Restart=` decides what next.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::reap::Exit;

/// Ready this long, a worker counts as having started well: its next death
/// is not part of a crash loop.
pub const STABLE_AFTER: Duration = Duration::from_secs(1);

/// Failed starts per slot, with no worker ever ready, before giving up.
pub const STARTUP_ATTEMPTS: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub count: usize,
    /// exec workers with `ready: started` are ready once executed.
    pub ready_on_start: bool,
    pub ready_timeout: Duration,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
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
    },
    /// Asked to stop with the stop signal; SIGKILL at `kill_at`.
    Stopping { pid: Pid, kill_at: Instant },
    /// SIGKILL sent; waiting to reap.
    Killing { pid: Pid },
    /// No process, and none to start.
    Stopped,
}

impl State {
    pub fn pid(&self) -> Option<Pid> {
        match *self {
            State::Starting { pid, .. }
            | State::Ready { pid, .. }
            | State::Stopping { pid, .. }
            | State::Killing { pid } => Some(pid),
            State::Pending { .. } | State::Spawning | State::Stopped => None,
        }
    }

    pub fn name(&self) -> &'static str {
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
}

#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub id: usize,
    pub state: State,
    /// Workers started in this slot after the first.
    pub restarts: u32,
    /// Quick deaths in a row (see the module doc).
    failures: u32,
    /// Failed starts while no worker of the pool was ever ready.
    startup_failures: u32,
    pub last_exit: Option<Exit>,
}

impl Slot {
    fn new(id: usize, now: Instant) -> Slot {
        Slot {
            id,
            state: State::Pending { at: now },
            restarts: 0,
            failures: 0,
            startup_failures: 0,
            last_exit: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Stopping every worker; exit with `code` once all are reaped.
    Stopping {
        code: ExitCode,
    },
}

/// How the master ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// Stopped on request: 0.
    Clean,
    /// No worker ever became ready: 69.
    NoWorkerStarted,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Start,
    Spawned {
        slot: usize,
        pid: Pid,
    },
    SpawnFailed {
        slot: usize,
        error: String,
    },
    Ready {
        pid: Pid,
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
    /// Time passed; deadlines may be due.
    Tick,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Spawn {
        slot: usize,
    },
    /// Send `signal` to the worker's process group.
    Signal {
        pid: Pid,
        signal: Signal,
    },
    /// Every slot is ready for the first time: `READY=1`, pidfile.
    AnnounceReady,
    /// `STOPPING=1`.
    AnnounceStopping,
    Exit(ExitCode),
}

pub struct Pool {
    settings: Settings,
    /// How many slots should exist (changes with SIGTTIN/SIGTTOU).
    target: usize,
    slots: Vec<Slot>,
    phase: Phase,
    generation: u64,
    announced: bool,
    any_ready_ever: bool,
    restarts: u64,
}

impl Pool {
    pub fn new(settings: Settings, generation: u64) -> Pool {
        Pool {
            target: settings.count.max(1),
            settings,
            slots: Vec::new(),
            phase: Phase::Running,
            generation,
            announced: false,
            any_ready_ever: false,
            restarts: 0,
        }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The `STATUS=` line: "2/2 workers ready, generation 1, 0 restarts".
    pub fn status_line(&self) -> String {
        let ready = self
            .slots
            .iter()
            .filter(|s| matches!(s.state, State::Ready { .. }))
            .count();
        match self.phase {
            Phase::Running => format!(
                "{ready}/{} workers ready, generation {}, {} restarts",
                self.target, self.generation, self.restarts
            ),
            Phase::Stopping { .. } => {
                let left = self
                    .slots
                    .iter()
                    .filter(|s| s.state.pid().is_some())
                    .count();
                format!("stopping, {left} workers left")
            }
        }
    }

    /// The nearest instant at which [`Event::Tick`] has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| match s.state {
                State::Pending { at } if self.phase == Phase::Running => Some(at),
                State::Starting { deadline, .. } => Some(deadline),
                State::Stopping { kill_at, .. } => Some(kill_at),
                _ => None,
            })
            .min()
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Start => {
                self.slots = (0..self.target).map(|id| Slot::new(id, now)).collect();
            }
            Event::Spawned { slot, pid } => self.on_spawned(slot, pid, now, &mut actions),
            Event::SpawnFailed { slot, error } => {
                if let Some(s) = self.slots.get_mut(slot) {
                    s.state = State::Stopped;
                }
                tracing::error!(
                    hawkey_worker = slot,
                    generation = self.generation,
                    "{error}"
                );
                self.after_death(slot, true, now, &mut actions);
            }
            Event::Ready { pid } => self.on_ready(pid, now, &mut actions),
            Event::Exited { pid, exit } => self.on_exit(pid, exit, now, &mut actions),
            Event::Stop { fast } => self.stop(fast, ExitCode::Clean, now, &mut actions),
            Event::Grow => self.grow(now),
            Event::Shrink => self.shrink(now, &mut actions),
            Event::Tick => self.on_tick(now, &mut actions),
        }
        self.schedule(now, &mut actions);
        self.check_done(&mut actions);
        actions
    }

    fn slot_of(&mut self, pid: Pid) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.state.pid() == Some(pid))
    }

    fn on_spawned(&mut self, slot: usize, pid: Pid, now: Instant, actions: &mut Vec<Action>) {
        let ready_on_start = self.settings.ready_on_start;
        let deadline = now + self.settings.ready_timeout;
        let generation = self.generation;
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        s.state = State::Starting {
            pid,
            since: now,
            deadline,
        };
        tracing::debug!(
            hawkey_worker = slot,
            worker_pid = pid.as_raw(),
            generation,
            "worker started"
        );
        if self.phase != Phase::Running {
            // A stop arrived while this worker was being forked.
            s.state = State::Stopping {
                pid,
                kill_at: now + self.settings.stop_timeout,
            };
            actions.push(Action::Signal {
                pid,
                signal: self.settings.stop_signal,
            });
        } else if ready_on_start {
            self.on_ready(pid, now, actions);
        }
    }

    fn on_ready(&mut self, pid: Pid, now: Instant, actions: &mut Vec<Action>) {
        let generation = self.generation;
        let Some(s) = self.slot_of(pid) else { return };
        let State::Starting { since, .. } = s.state else {
            return;
        };
        s.state = State::Ready {
            pid,
            since,
            ready_at: now,
        };
        tracing::info!(
            hawkey_worker = s.id,
            worker_pid = pid.as_raw(),
            generation,
            "worker {} (pid {pid}) is ready",
            s.id
        );
        self.any_ready_ever = true;
        if !self.announced && self.all_ready() {
            self.announced = true;
            actions.push(Action::AnnounceReady);
        }
    }

    fn all_ready(&self) -> bool {
        self.slots.len() == self.target
            && self
                .slots
                .iter()
                .all(|s| matches!(s.state, State::Ready { .. }))
    }

    /// A worker exited: log it in operator terms, then decide its slot's
    /// future.
    fn on_exit(&mut self, pid: Pid, exit: Exit, now: Instant, actions: &mut Vec<Action>) {
        let phase = self.phase;
        let target = self.target;
        let generation = self.generation;
        let Some(s) = self.slot_of(pid) else {
            // An orphan adopted as subreaper, or a spawn that failed (and
            // was reaped) before its pid reached us.
            tracing::debug!(pid = pid.as_raw(), "reaped {pid}, not a worker: {exit}");
            return;
        };
        let before = s.state;
        s.last_exit = Some(exit);
        s.state = State::Stopped;
        let id = s.id;
        let expected = matches!(before, State::Stopping { .. } | State::Killing { .. });
        if phase != Phase::Running || id >= target {
            tracing::info!(
                hawkey_worker = id,
                worker_pid = pid.as_raw(),
                generation,
                exit_status = exit.code(),
                signal = exit.signal(),
                "worker {id} (pid {pid}) {exit}"
            );
            return;
        }
        if expected && !matches!(before, State::Killing { .. }) {
            // Stopped on purpose (a shrink reversed by a grow): replace.
            s.state = State::Pending { at: now };
            return;
        }
        let quick = match before {
            State::Ready { ready_at, .. } => now.saturating_duration_since(ready_at) < STABLE_AFTER,
            _ => true,
        };
        self.after_death(id, quick, now, actions);
        let s = &self.slots[id];
        let delay = match s.state {
            State::Pending { at } => at.saturating_duration_since(now),
            _ => Duration::ZERO,
        };
        let next = match (self.phase, delay.is_zero()) {
            (Phase::Stopping { .. }, _) => "giving up".to_string(),
            (_, true) => "restarting".to_string(),
            (_, false) => format!("restarting in {}", crate::config::Span(delay)),
        };
        tracing::warn!(
            hawkey_worker = id,
            worker_pid = pid.as_raw(),
            generation,
            exit_status = exit.code(),
            signal = exit.signal(),
            "worker {id} (pid {pid}) {exit}, {next}"
        );
    }

    /// Schedules the replacement of a worker that died (or never started),
    /// with backoff when `quick`, and gives up when nothing ever started.
    fn after_death(&mut self, slot: usize, quick: bool, now: Instant, actions: &mut Vec<Action>) {
        let (initial, max) = (self.settings.backoff_initial, self.settings.backoff_max);
        let any_ready_ever = self.any_ready_ever;
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        s.restarts += 1;
        self.restarts += 1;
        let delay = if quick {
            s.failures += 1;
            let factor = 1u32.checked_shl(s.failures - 1).unwrap_or(u32::MAX);
            initial.saturating_mul(factor).min(max)
        } else {
            s.failures = 0;
            Duration::ZERO
        };
        s.state = State::Pending { at: now + delay };
        if !any_ready_ever {
            s.startup_failures += 1;
            if self
                .slots
                .iter()
                .all(|s| s.startup_failures >= STARTUP_ATTEMPTS)
            {
                tracing::error!(
                    "no worker became ready after {STARTUP_ATTEMPTS} attempts per slot; giving up"
                );
                self.stop(false, ExitCode::NoWorkerStarted, now, actions);
            }
        }
    }

    fn stop(&mut self, fast: bool, code: ExitCode, now: Instant, actions: &mut Vec<Action>) {
        if let Phase::Stopping { code: current } = self.phase {
            if !fast {
                tracing::info!("already stopping");
                return;
            }
            tracing::info!("fast stop: killing the remaining workers");
            self.phase = Phase::Stopping { code: current };
        } else {
            self.phase = Phase::Stopping { code };
            actions.push(Action::AnnounceStopping);
            if fast {
                tracing::info!("fast stop: killing every worker");
            } else {
                tracing::info!(
                    "stopping: sending {} to every worker, SIGKILL after {}",
                    self.settings.stop_signal.as_str(),
                    crate::config::Span(self.settings.stop_timeout)
                );
            }
        }
        let kill_at = now + self.settings.stop_timeout;
        for s in &mut self.slots {
            s.state = match s.state {
                State::Pending { .. } | State::Stopped => State::Stopped,
                // Its Spawned event will see the phase and stop it.
                State::Spawning => State::Spawning,
                State::Starting { pid, .. }
                | State::Ready { pid, .. }
                | State::Stopping { pid, .. }
                    if fast =>
                {
                    actions.push(Action::Signal {
                        pid,
                        signal: Signal::SIGKILL,
                    });
                    State::Killing { pid }
                }
                State::Starting { pid, .. } | State::Ready { pid, .. } => {
                    actions.push(Action::Signal {
                        pid,
                        signal: self.settings.stop_signal,
                    });
                    State::Stopping { pid, kill_at }
                }
                other @ (State::Stopping { .. } | State::Killing { .. }) => other,
            };
        }
    }

    fn grow(&mut self, now: Instant) {
        if self.phase != Phase::Running || self.target >= crate::config::MAX_WORKERS as usize {
            return;
        }
        self.target += 1;
        tracing::info!("SIGTTIN: growing the pool to {} workers", self.target);
        if self.slots.len() < self.target {
            let id = self.slots.len();
            self.slots.push(Slot::new(id, now));
        }
        // Otherwise the slot is still retiring; its exit respawns it.
    }

    fn shrink(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.phase != Phase::Running {
            return;
        }
        if self.target <= 1 {
            tracing::info!("SIGTTOU: the pool is at its minimum of 1 worker");
            return;
        }
        self.target -= 1;
        tracing::info!("SIGTTOU: shrinking the pool to {} workers", self.target);
        let kill_at = now + self.settings.stop_timeout;
        let signal = self.settings.stop_signal;
        let s = &mut self.slots[self.target];
        s.state = match s.state {
            State::Starting { pid, .. } | State::Ready { pid, .. } => {
                actions.push(Action::Signal { pid, signal });
                State::Stopping { pid, kill_at }
            }
            State::Pending { .. } | State::Stopped => State::Stopped,
            other => other,
        };
    }

    fn on_tick(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let generation = self.generation;
        let ready_timeout = self.settings.ready_timeout;
        for s in &mut self.slots {
            match s.state {
                State::Starting { pid, deadline, .. } if deadline <= now => {
                    tracing::warn!(
                        hawkey_worker = s.id,
                        worker_pid = pid.as_raw(),
                        generation,
                        "worker {} (pid {pid}) not ready after {}, killing it",
                        s.id,
                        crate::config::Span(ready_timeout)
                    );
                    actions.push(Action::Signal {
                        pid,
                        signal: Signal::SIGKILL,
                    });
                    s.state = State::Killing { pid };
                }
                State::Stopping { pid, kill_at } if kill_at <= now => {
                    tracing::warn!(
                        hawkey_worker = s.id,
                        worker_pid = pid.as_raw(),
                        generation,
                        "worker {} (pid {pid}) still running at the stop timeout, killing it",
                        s.id
                    );
                    actions.push(Action::Signal {
                        pid,
                        signal: Signal::SIGKILL,
                    });
                    s.state = State::Killing { pid };
                }
                _ => {}
            }
        }
    }

    /// Starts every pending slot that is due.
    fn schedule(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.phase != Phase::Running {
            return;
        }
        for s in &mut self.slots {
            if s.id < self.target
                && let State::Pending { at } = s.state
                && at <= now
            {
                s.state = State::Spawning;
                actions.push(Action::Spawn { slot: s.id });
            }
        }
        // Retired slots at the end go away once their worker is gone.
        while self.slots.len() > self.target
            && self.slots.last().is_some_and(|s| s.state == State::Stopped)
        {
            self.slots.pop();
        }
    }

    fn check_done(&mut self, actions: &mut Vec<Action>) {
        if let Phase::Stopping { code } = self.phase
            && self
                .slots
                .iter()
                .all(|s| s.state.pid().is_none() && s.state != State::Spawning)
            && !actions.iter().any(|a| matches!(a, Action::Exit(_)))
        {
            actions.push(Action::Exit(code));
        }
    }
}

#[cfg(test)]
mod tests;
