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
use crate::config::Span;
pub(crate) use notice::{Decision, Level, Notice};

mod notice;

/// Ready this long, a worker counts as having started well: its next death
/// is not part of a crash loop.
pub const STABLE_AFTER: Duration = Duration::from_secs(1);

/// Failed starts per slot, with no worker ever ready, before giving up.
pub const STARTUP_ATTEMPTS: u32 = 3;

/// A process still alive this long after SIGKILL makes the pool unhealthy.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub count: usize,
    /// exec workers with `ready: started` are ready once executed.
    pub ready_on_start: bool,
    pub ready_timeout: Duration,
    /// Longest silence allowed between `WATCHDOG=1` from a ready worker.
    pub heartbeat: Option<Duration>,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Settings {
    /// Settings for a pool that exists only until the first generation's
    /// replace it (the master's start-up).
    pub(crate) fn placeholder() -> Settings {
        Settings {
            count: 1,
            ready_on_start: false,
            ready_timeout: Duration::ZERO,
            heartbeat: None,
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::ZERO,
            backoff_initial: Duration::ZERO,
            backoff_max: Duration::ZERO,
        }
    }
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
        beat_by: Option<Instant>,
    },
    /// Asked to stop with the stop signal; SIGKILL at `kill_at`.
    Stopping {
        pid: Pid,
        since: Instant,
        kill_at: Instant,
    },
    /// SIGKILL sent at `at`; waiting to reap.
    Killing {
        pid: Pid,
        since: Instant,
        at: Instant,
    },
    /// No process, and none to start.
    Stopped,
}

impl State {
    pub fn pid(&self) -> Option<Pid> {
        match *self {
            State::Starting { pid, .. }
            | State::Ready { pid, .. }
            | State::Stopping { pid, .. }
            | State::Killing { pid, .. } => Some(pid),
            State::Pending { .. } | State::Spawning | State::Stopped => None,
        }
    }

    /// When the process in this state was started.
    pub fn since(&self) -> Option<Instant> {
        match *self {
            State::Starting { since, .. }
            | State::Ready { since, .. }
            | State::Stopping { since, .. }
            | State::Killing { since, .. } => Some(since),
            _ => None,
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

    fn is_ready(&self) -> bool {
        matches!(self, State::Ready { .. })
    }

    /// Sends `signal` to a live process and returns its next state.
    fn signal(
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
pub struct Slot {
    pub id: usize,
    pub state: State,
    /// The generation of the worker in `state` (or of the last one).
    pub generation: u64,
    /// During a reload: the new-generation worker starting beside `state`.
    pub successor: Option<(u64, State)>,
    /// Replaced workers still draining: (generation, state).
    pub retiring: Vec<(u64, State)>,
    /// Workers started in this slot after the first.
    pub restarts: u32,
    /// The last `STATUS=` line the worker in `state` sent.
    pub worker_status: Option<String>,
    /// Quick deaths in a row (see the module doc).
    failures: u32,
    /// Failed starts while no worker of the pool was ever ready.
    startup_failures: u32,
    /// The worker in `state` was killed because it missed a heartbeat.
    killed_for_heartbeat: bool,
    pub last_exit: Option<Exit>,
}

impl Slot {
    fn new(id: usize, generation: u64, now: Instant) -> Slot {
        Slot {
            id,
            state: State::Pending { at: now },
            generation,
            successor: None,
            retiring: Vec::new(),
            restarts: 0,
            worker_status: None,
            failures: 0,
            startup_failures: 0,
            killed_for_heartbeat: false,
            last_exit: None,
        }
    }

    /// Whether `pid` is this slot's serving worker or its replacement
    /// being started (not one retiring after a reload).
    pub fn runs(&self, pid: Pid) -> bool {
        self.state.pid() == Some(pid) || self.successor.is_some_and(|(_, st)| st.pid() == Some(pid))
    }

    fn has_process(&self) -> bool {
        self.state.pid().is_some()
            || self.state == State::Spawning
            || self.successor.is_some()
            || !self.retiring.is_empty()
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

/// How a reload ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Every slot runs the new generation.
    Done { generation: u64 },
    /// A new worker failed; the previous generation serves again.
    RolledBack { reason: String },
    /// Not started: another reload runs, or hawkey is stopping.
    Rejected { reason: String },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
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
    Ready {
        pid: Pid,
    },
    Heartbeat {
        pid: Pid,
    },
    /// A worker's `STATUS=` line.
    WorkerStatus {
        pid: Pid,
        text: String,
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
    /// Time passed; deadlines may be due.
    Tick,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
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
    Exit(ExitCode),
}

#[derive(Clone, Debug)]
struct Reload {
    /// The settings and generation to go back to; `None` while rolling back.
    previous: Option<(Settings, u64)>,
    /// Why the reload is being rolled back.
    failure: Option<String>,
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

pub struct Pool {
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
}

impl Pool {
    pub fn new(settings: Settings, generation: u64) -> Pool {
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
        }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn is_reloading(&self) -> bool {
        self.reload.is_some()
    }

    /// Generations some process or a possible rollback still needs.
    pub fn generations_in_use(&self) -> BTreeSet<u64> {
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
    pub fn status_line(&self) -> String {
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
    pub fn healthy(&self, now: Instant) -> bool {
        let stuck = |state: &State| matches!(state, State::Killing { at, .. } if now.saturating_duration_since(*at) > KILL_GRACE);
        !self.master_fault
            && !self.slots.iter().any(|s| {
                stuck(&s.state)
                    || s.successor.is_some_and(|(_, st)| stuck(&st))
                    || s.retiring.iter().any(|(_, st)| stuck(st))
            })
    }

    /// The nearest instant at which [`Event::Tick`] has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
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
            Event::Ready { pid } => self.on_ready(pid, now, &mut out),
            Event::Heartbeat { pid } => self.on_heartbeat(pid, now),
            Event::WorkerStatus { pid, text } => {
                if let Some(s) = self.slots.iter_mut().find(|s| s.state.pid() == Some(pid)) {
                    s.worker_status = Some(text);
                }
            }
            Event::Exited { pid, exit } => self.on_exit(pid, exit, now, &mut out),
            Event::Stop { fast } => self.stop(fast, ExitCode::Clean, now, &mut out),
            Event::Grow => self.grow(now, &mut out),
            Event::Shrink => self.shrink(now, &mut out),
            Event::Reload {
                settings,
                generation,
            } => self.start_reload(settings, generation, &mut out),
            Event::Stalled => self.after_stall(now, &mut out),
            Event::Tick => self.on_tick(now, &mut out),
        }
        self.schedule(now, &mut out);
        self.advance_reload(now, &mut out);
        self.check_done(&mut out);
        let in_use = self.generations_in_use();
        self.stops.retain(|g, _| in_use.contains(g));
        out
    }

    /// Whether `pid` is a serving worker or a replacement being started.
    pub fn has_worker(&self, pid: Pid) -> bool {
        self.slots.iter().any(|s| s.runs(pid))
    }

    fn on_spawned(
        &mut self,
        slot: usize,
        generation: u64,
        pid: Pid,
        now: Instant,
        out: &mut Decision,
    ) {
        self.master_fault = false;
        let settings = self.settings;
        let starting = State::Starting {
            pid,
            since: now,
            deadline: now + settings.ready_timeout,
        };
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        out.notices.push(
            Notice::new(Level::Debug, "worker started".into())
                .slot(slot)
                .pid(pid)
                .generation(generation),
        );
        let successor = matches!(s.successor, Some((g, State::Spawning)) if g == generation);
        if successor {
            s.successor = Some((generation, starting));
        } else {
            s.state = starting;
            s.generation = generation;
            s.worker_status = None;
        }
        if self.phase != Phase::Running {
            // A stop arrived while this worker was being forked.
            let (signal, kill_at) = stop_of(&self.stops, &settings, generation, now);
            if successor {
                s.successor = Some((
                    generation,
                    starting.signal(signal, kill_at, now, &mut out.actions),
                ));
            } else {
                s.state = starting.signal(signal, kill_at, now, &mut out.actions);
            }
        } else if settings.ready_on_start {
            self.on_ready(pid, now, out);
        }
    }

    fn on_spawn_failed(
        &mut self,
        slot: usize,
        generation: u64,
        error: &str,
        master_fault: bool,
        now: Instant,
        out: &mut Decision,
    ) {
        self.master_fault = master_fault;
        out.notices.push(
            Notice::new(Level::Error, format!("{error}"))
                .slot(slot)
                .generation(generation),
        );
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if matches!(s.successor, Some((g, State::Spawning)) if g == generation) {
            s.successor = None;
            self.reload_failed(
                format!("worker {slot} of generation {generation}: {error}"),
                now,
                out,
            );
            return;
        }
        s.state = State::Stopped;
        if self.phase == Phase::Running {
            self.after_death(slot, true, now, out);
        }
    }

    fn on_ready(&mut self, pid: Pid, now: Instant, out: &mut Decision) {
        let heartbeat = self.settings.heartbeat;
        let Some(s) = self.slots.iter_mut().find(|s| s.runs(pid)) else {
            return;
        };
        let ready = |since| State::Ready {
            pid,
            since,
            ready_at: now,
            beat_by: heartbeat.map(|h| now + h),
        };
        match (s.state, s.successor) {
            (State::Starting { pid: p, since, .. }, _) if p == pid => {
                s.state = ready(since);
                out.notices.push(
                    Notice::new(Level::Info, format!("worker {} (pid {pid}) is ready", s.id))
                        .slot(s.id)
                        .pid(pid)
                        .generation(s.generation),
                );
            }
            (old, Some((generation, State::Starting { since, .. }))) => {
                // The replacement is ready: it serves, the old worker drains,
                // stopped as its own generation says.
                let (signal, kill_at) = stop_of(&self.stops, &self.settings, s.generation, now);
                let retired = old.signal(signal, kill_at, now, &mut out.actions);
                if retired.pid().is_some() {
                    s.retiring.push((s.generation, retired));
                }
                out.notices.push(
                    Notice::new(
                        Level::Info,
                        format!(
                            "worker {} (pid {pid}) of generation {generation} is ready{}",
                            s.id,
                            match old.pid() {
                                Some(o) =>
                                    format!(", stopping pid {o} of generation {}", s.generation),
                                None => String::new(),
                            }
                        ),
                    )
                    .slot(s.id)
                    .pid(pid)
                    .generation(generation),
                );
                s.state = ready(since);
                s.generation = generation;
                s.successor = None;
                s.worker_status = None;
            }
            _ => return,
        }
        self.any_ready_ever = true;
        if !self.announced && self.reload.is_none() && self.all_ready() {
            self.announced = true;
            out.actions.push(Action::AnnounceReady);
        }
    }

    fn on_heartbeat(&mut self, pid: Pid, now: Instant) {
        let Some(heartbeat) = self.settings.heartbeat else {
            return;
        };
        for s in &mut self.slots {
            if let State::Ready {
                pid: p, beat_by, ..
            } = &mut s.state
                && *p == pid
            {
                *beat_by = Some(now + heartbeat);
            }
        }
    }

    fn all_ready(&self) -> bool {
        self.slots.len() == self.target && self.slots.iter().all(|s| s.state.is_ready())
    }

    /// A process exited: a draining worker, a failed replacement, or a
    /// serving worker. Log it in operator terms, then decide what next.
    fn on_exit(&mut self, pid: Pid, exit: Exit, now: Instant, out: &mut Decision) {
        let exited = |id: usize, generation: u64| {
            Notice::new(Level::Info, format!("worker {id} (pid {pid}) {exit}"))
                .slot(id)
                .pid(pid)
                .generation(generation)
                .exit(exit)
        };
        // A replaced worker finished draining.
        for s in &mut self.slots {
            if let Some(i) = s.retiring.iter().position(|(_, st)| st.pid() == Some(pid)) {
                let (generation, _) = s.retiring.remove(i);
                out.notices.push(exited(s.id, generation));
                return;
            }
        }
        // A replacement died before it was ready: the reload fails.
        if let Some(s) = self
            .slots
            .iter_mut()
            .find(|s| s.successor.is_some_and(|(_, st)| st.pid() == Some(pid)))
        {
            let (generation, state) = s.successor.take().expect("found above");
            let id = s.id;
            if self.phase != Phase::Running {
                out.notices.push(exited(id, generation));
                return;
            }
            let why = match state {
                State::Killing { .. } => {
                    format!("not ready after {}", Span(self.settings.ready_timeout))
                }
                _ => exit.to_string(),
            };
            self.new_worker_failed(id, pid, generation, exit, &why, now, out);
            return;
        }
        let phase = self.phase;
        let target = self.target;
        let Some(s) = self.slots.iter_mut().find(|s| s.state.pid() == Some(pid)) else {
            // An orphan adopted as subreaper, or a spawn that failed (and
            // was reaped) before its pid reached us.
            out.notices.push(
                Notice::new(Level::Debug, format!("reaped {pid}, not a worker: {exit}")).pid(pid),
            );
            return;
        };
        let before = s.state;
        s.last_exit = Some(exit);
        s.state = State::Stopped;
        let (id, generation) = (s.id, s.generation);
        if phase == Phase::Running
            && self.reload.is_some()
            && generation == self.generation
            && matches!(before, State::Starting { .. } | State::Killing { .. })
            && id < target
        {
            // A new slot's worker of the reload's generation never became
            // ready: the reload fails like a replacement would.
            self.slots[id].state = State::Pending { at: now };
            self.new_worker_failed(id, pid, generation, exit, &exit.to_string(), now, out);
            return;
        }
        if phase != Phase::Running || id >= target {
            out.notices.push(exited(id, generation));
            return;
        }
        if matches!(before, State::Stopping { .. }) {
            // Stopped on purpose (a shrink reversed by a grow): replace.
            s.state = State::Pending { at: now };
            out.notices.push(exited(id, generation));
            return;
        }
        // Backoff is for an app that fails by itself: one that died soon
        // after it was ready, or never was. A worker that hung (killed for a
        // missed heartbeat) had started well, and a ready worker SIGKILLed
        // from outside (the OOM killer, an operator) did not fail on its own.
        let killed_from_outside = exit
            == Exit::Signal {
                signal: Signal::SIGKILL,
                core_dumped: false,
            };
        let quick = match before {
            State::Ready { .. } if killed_from_outside => false,
            State::Ready { ready_at, .. } => now.saturating_duration_since(ready_at) < STABLE_AFTER,
            State::Killing { .. } => !s.killed_for_heartbeat,
            _ => true,
        };
        s.killed_for_heartbeat = false;
        self.after_death(id, quick, now, out);
        let delay = match self.slots[id].state {
            State::Pending { at } => at.saturating_duration_since(now),
            _ => Duration::ZERO,
        };
        let next = match (self.phase, delay.is_zero()) {
            (Phase::Stopping { .. }, _) => "giving up".to_string(),
            (_, true) => "restarting".to_string(),
            (_, false) => format!("restarting in {}", Span(delay)),
        };
        out.notices.push(
            Notice::new(
                Level::Warn,
                format!("worker {id} (pid {pid}) {exit}, {next}"),
            )
            .slot(id)
            .pid(pid)
            .generation(generation)
            .exit(exit),
        );
    }

    /// A worker of a reload's generation died before it was ready (`why`):
    /// log it and fail the reload.
    #[allow(clippy::too_many_arguments)]
    fn new_worker_failed(
        &mut self,
        id: usize,
        pid: Pid,
        generation: u64,
        exit: Exit,
        why: &str,
        now: Instant,
        out: &mut Decision,
    ) {
        out.notices.push(
            Notice::new(
                Level::Warn,
                format!("new worker {id} (pid {pid}) of generation {generation} {why}"),
            )
            .slot(id)
            .pid(pid)
            .generation(generation)
            .exit(exit),
        );
        self.reload_failed(
            format!("worker {id} (pid {pid}) of generation {generation} {why}"),
            now,
            out,
        );
    }

    /// Schedules the replacement of a worker that died (or never started),
    /// with backoff when `quick`, and gives up when nothing ever started.
    fn after_death(&mut self, slot: usize, quick: bool, now: Instant, out: &mut Decision) {
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
                out.notices.push(Notice::new(Level::Error, format!("no worker became ready after {STARTUP_ATTEMPTS} attempts per slot; giving up")));
                self.stop(false, ExitCode::NoWorkerStarted, now, out);
            }
        }
    }

    fn start_reload(&mut self, settings: Settings, generation: u64, out: &mut Decision) {
        let reject = |reason: &str| {
            Action::ReloadFinished(ReloadOutcome::Rejected {
                reason: reason.to_string(),
            })
        };
        if self.phase != Phase::Running {
            out.actions.push(reject("hawkey is stopping"));
            return;
        }
        if self.reload.is_some() {
            out.actions.push(reject("a reload is already in progress"));
            return;
        }
        out.notices.push(Notice::new(
            Level::Info,
            format!(
                "reloading: generation {} -> {generation}, {} workers",
                self.generation,
                settings.count.max(1)
            ),
        ));
        self.reload = Some(Reload {
            previous: Some((self.settings, self.generation)),
            failure: None,
        });
        self.settings = settings;
        self.stops
            .insert(generation, (settings.stop_signal, settings.stop_timeout));
        self.target = settings.count.max(1);
        self.generation = generation;
        out.actions.push(Action::AnnounceReloading);
    }

    /// A replacement failed: roll back, or give up rolling back.
    fn reload_failed(&mut self, reason: String, _now: Instant, out: &mut Decision) {
        match self.reload.take() {
            Some(Reload {
                previous: Some((settings, generation)),
                ..
            }) => {
                out.notices.push(Notice::new(Level::Warn, format!("reload to generation {} failed: {reason}; rolling back to generation {generation}", self.generation)));
                self.settings = settings;
                self.target = settings.count.max(1);
                self.generation = generation;
                self.reload = Some(Reload {
                    previous: None,
                    failure: Some(reason),
                });
            }
            Some(Reload {
                previous: None,
                failure,
            }) => {
                let first = failure.unwrap_or_default();
                out.notices.push(Notice::new(
                    Level::Error,
                    format!("rolling back failed too: {reason}; the pool recovers by restarts"),
                ));
                out.actions
                    .push(Action::ReloadFinished(ReloadOutcome::RolledBack {
                        reason: format!("{first}; rolling back failed too: {reason}"),
                    }));
                out.actions.push(Action::AnnounceReady);
            }
            None => {}
        }
    }

    /// Starts the next replacement of a reload, or finishes it.
    fn advance_reload(&mut self, now: Instant, out: &mut Decision) {
        if self.phase != Phase::Running || self.reload.is_none() {
            return;
        }
        if self.slots.iter().any(|s| s.successor.is_some()) {
            return;
        }
        let (generation, target) = (self.generation, self.target);
        if let Some(s) = self
            .slots
            .iter_mut()
            .find(|s| s.id < target && s.generation != generation && s.state.is_ready())
        {
            s.successor = Some((generation, State::Spawning));
            out.actions.push(Action::Spawn {
                slot: s.id,
                generation,
            });
            return;
        }
        // Done only when every slot serves the target generation: old
        // workers not serving yet (starting, restarting) are waited for and
        // replaced once they serve; new slots must become ready.
        if !self
            .slots
            .iter()
            .filter(|s| s.id < target)
            .all(|s| s.generation == generation && s.state.is_ready())
        {
            return;
        }
        // Slots the new configuration no longer has stop last.
        for s in self.slots.iter_mut().filter(|s| s.id >= target) {
            let (signal, kill_at) = stop_of(&self.stops, &self.settings, s.generation, now);
            if matches!(
                s.state,
                State::Starting { .. } | State::Ready { .. } | State::Pending { .. }
            ) {
                s.state = s.state.signal(signal, kill_at, now, &mut out.actions);
            }
        }
        let reload = self.reload.take().expect("checked above");
        let outcome = match reload.failure {
            None => ReloadOutcome::Done { generation },
            Some(reason) => ReloadOutcome::RolledBack { reason },
        };
        match &outcome {
            ReloadOutcome::Done { generation } => {
                out.notices.push(Notice::new(
                    Level::Info,
                    format!("reload finished: generation {generation}"),
                ));
            }
            ReloadOutcome::RolledBack { reason } => {
                out.notices.push(Notice::new(
                    Level::Warn,
                    format!(
                        "reload failed and was rolled back to generation {generation}: {reason}"
                    ),
                ));
            }
            ReloadOutcome::Rejected { .. } => {}
        }
        out.actions.push(Action::ReloadFinished(outcome));
        out.actions.push(Action::AnnounceReady);
    }

    fn stop(&mut self, fast: bool, code: ExitCode, now: Instant, out: &mut Decision) {
        if let Phase::Stopping { .. } = self.phase {
            if !fast {
                out.notices
                    .push(Notice::new(Level::Info, "already stopping".into()));
                return;
            }
            out.notices.push(Notice::new(
                Level::Info,
                "fast stop: killing the remaining workers".into(),
            ));
        } else {
            self.phase = Phase::Stopping { code };
            out.actions.push(Action::AnnounceStopping);
            if self.reload.take().is_some() {
                out.actions
                    .push(Action::ReloadFinished(ReloadOutcome::Rejected {
                        reason: "hawkey is stopping".into(),
                    }));
            }
            if fast {
                out.notices.push(Notice::new(
                    Level::Info,
                    "fast stop: killing every worker".into(),
                ));
            } else {
                out.notices.push(Notice::new(
                    Level::Info,
                    format!(
                        "stopping: sending {} to every worker, SIGKILL after {}",
                        self.settings.stop_signal.as_str(),
                        Span(self.settings.stop_timeout)
                    ),
                ));
            }
        }
        // Each worker as its generation says; SIGKILL for a fast stop.
        let how = |generation| {
            let (signal, kill_at) = stop_of(&self.stops, &self.settings, generation, now);
            (if fast { Signal::SIGKILL } else { signal }, kill_at)
        };
        for s in &mut self.slots {
            let (signal, kill_at) = how(s.generation);
            s.state = s.state.signal(signal, kill_at, now, &mut out.actions);
            if let Some((g, st)) = s.successor {
                let (signal, kill_at) = how(g);
                // A replacement still being forked is stopped by on_spawned.
                s.successor = Some((g, st.signal(signal, kill_at, now, &mut out.actions)));
            }
            if fast {
                for (_, st) in &mut s.retiring {
                    *st = st.signal(Signal::SIGKILL, kill_at, now, &mut out.actions);
                }
            }
        }
    }

    fn grow(&mut self, now: Instant, out: &mut Decision) {
        if self.phase != Phase::Running || self.target >= crate::config::MAX_WORKERS as usize {
            return;
        }
        self.target += 1;
        out.notices.push(Notice::new(
            Level::Info,
            format!("SIGTTIN: growing the pool to {} workers", self.target),
        ));
        if self.slots.len() < self.target {
            let id = self.slots.len();
            self.slots.push(Slot::new(id, self.generation, now));
        }
        // Otherwise the slot is still retiring; its exit respawns it.
    }

    fn shrink(&mut self, now: Instant, out: &mut Decision) {
        if self.phase != Phase::Running {
            return;
        }
        if self.target <= 1 {
            out.notices.push(Notice::new(
                Level::Info,
                "SIGTTOU: the pool is at its minimum of 1 worker".into(),
            ));
            return;
        }
        self.target -= 1;
        out.notices.push(Notice::new(
            Level::Info,
            format!("SIGTTOU: shrinking the pool to {} workers", self.target),
        ));
        let s = &mut self.slots[self.target];
        let (signal, kill_at) = stop_of(&self.stops, &self.settings, s.generation, now);
        s.state = s.state.signal(signal, kill_at, now, &mut out.actions);
    }

    fn after_stall(&mut self, now: Instant, out: &mut Decision) {
        let Some(heartbeat) = self.settings.heartbeat else {
            return;
        };
        out.notices.push(Notice::new(
            Level::Warn,
            "the master was not running for a while; heartbeat deadlines start afresh".into(),
        ));
        for s in &mut self.slots {
            if let State::Ready { beat_by, .. } = &mut s.state {
                *beat_by = Some(now + heartbeat);
            }
        }
    }

    fn on_tick(&mut self, now: Instant, out: &mut Decision) {
        let Pool {
            settings, slots, ..
        } = self;
        for s in slots.iter_mut() {
            let id = s.id;
            let generation = s.generation;
            match s.state {
                State::Starting { pid, deadline, .. } if deadline <= now => {
                    out.notices.push(
                        Notice::new(
                            Level::Warn,
                            format!(
                                "worker {id} (pid {pid}) not ready after {}, killing it",
                                Span(settings.ready_timeout)
                            ),
                        )
                        .slot(id)
                        .pid(pid)
                        .generation(generation),
                    );
                    s.state = s.state.signal(Signal::SIGKILL, now, now, &mut out.actions);
                }
                State::Ready {
                    pid,
                    beat_by: Some(beat_by),
                    ..
                } if beat_by <= now => {
                    out.notices.push(
                        Notice::new(
                            Level::Warn,
                            format!(
                                "worker {id} (pid {pid}) sent no heartbeat for {}, killing it",
                                Span(settings.heartbeat.unwrap_or_default())
                            ),
                        )
                        .slot(id)
                        .pid(pid)
                        .generation(generation),
                    );
                    s.state = s.state.signal(Signal::SIGKILL, now, now, &mut out.actions);
                    s.killed_for_heartbeat = true;
                }
                State::Stopping { pid, kill_at, .. } if kill_at <= now => {
                    out.notices.push(Notice::new(Level::Warn, format!("worker {id} (pid {pid}) still running at the stop timeout, killing it")).slot(id).pid(pid).generation(generation));
                    s.state = s.state.signal(Signal::SIGKILL, now, now, &mut out.actions);
                }
                _ => {}
            }
            if let Some((g, State::Starting { pid, deadline, .. })) = s.successor
                && deadline <= now
            {
                out.notices.push(Notice::new(Level::Warn, format!("new worker {id} (pid {pid}) of generation {g} not ready after {}, killing it", Span(settings.ready_timeout))).slot(id).pid(pid).generation(g));
                let st = s.successor.expect("matched").1;
                s.successor = Some((g, st.signal(Signal::SIGKILL, now, now, &mut out.actions)));
            }
            for (g, st) in &mut s.retiring {
                if let State::Stopping { pid, kill_at, .. } = *st
                    && kill_at <= now
                {
                    out.notices.push(Notice::new(Level::Warn, format!("replaced worker {id} (pid {pid}) still running at the stop timeout, killing it")).slot(id).pid(pid).generation(*g));
                    *st = st.signal(Signal::SIGKILL, now, now, &mut out.actions);
                }
            }
        }
    }

    /// Starts every pending slot that is due.
    fn schedule(&mut self, now: Instant, out: &mut Decision) {
        if self.phase != Phase::Running {
            return;
        }
        // A reload (or its rollback) to more workers adds slots.
        while !self.slots.is_empty() && self.slots.len() < self.target {
            let id = self.slots.len();
            self.slots.push(Slot::new(id, self.generation, now));
        }
        for s in &mut self.slots {
            if s.id < self.target
                && let State::Pending { at } = s.state
                && at <= now
            {
                s.state = State::Spawning;
                out.actions.push(Action::Spawn {
                    slot: s.id,
                    generation: self.generation,
                });
            }
        }
        // Retired slots at the end go away once their workers are gone.
        while self.slots.len() > self.target
            && self
                .slots
                .last()
                .is_some_and(|s| s.state == State::Stopped && !s.has_process())
        {
            self.slots.pop();
        }
    }

    fn check_done(&mut self, out: &mut Decision) {
        if let Phase::Stopping { code } = self.phase
            && !self.slots.iter().any(Slot::has_process)
            && !out.actions.iter().any(|a| matches!(a, Action::Exit(_)))
        {
            out.actions.push(Action::Exit(code));
        }
    }
}

#[cfg(test)]
mod tests;
