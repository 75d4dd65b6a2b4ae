//! The life of a worker up to its death: spawned, ready, heartbeats,
//! deadlines (ready, heartbeat and stop timeouts), stopping, and the
//! pool growing and shrinking.

use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::recycle::SlotRecycle;
use super::{
    Action, Decision, ExitCode, KillCause, Level, Notice, Phase, Pool, Readiness, ReloadOutcome,
    Scope, Slot, State, stop_of,
};
use crate::config::Span;

/// The notice of `pid`, of `generation`, taking slot `s` over from `old`
/// (which it recycles, or replaces in a reload); counts a recycle.
fn took_over(s: &mut Slot, old: State, pid: Pid, generation: u64, by: Readiness) -> Notice {
    match (s.recycle.in_flight, old.pid()) {
        (Some(reason), Some(o)) => {
            s.recycles += 1;
            Notice::new(
                Level::Info,
                format!("worker {} recycled: pid {o} replaced by pid {pid}", s.id),
            )
            .recycle(reason)
        }
        _ => Notice::new(
            Level::Info,
            format!(
                "worker {} (pid {pid}) of generation {generation} is ready ({by}){}",
                s.id,
                match old.pid() {
                    Some(o) => format!(", stopping pid {o} of generation {}", s.generation),
                    None => String::new(),
                }
            ),
        ),
    }
}

impl Pool {
    pub(super) fn on_spawned(
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
        // A reload's successor whose reload is being rolled back, or a
        // recycle's whose recycle was abandoned (a reload began, the slot
        // was shrunk away).
        let abandoned = successor && (generation != self.generation || slot >= self.target);
        if self.phase != Phase::Running || abandoned {
            // A stop arrived while this worker was being forked, or the
            // reload it was started for is being rolled back.
            let (signal, kill_at) = stop_of(&self.stops, &settings, generation, now);
            if abandoned {
                // It drains as a retired worker: its end fails nothing.
                s.successor = None;
                s.retiring.push((
                    generation,
                    starting.signal(signal, kill_at, now, &mut out.actions),
                ));
            } else if successor {
                s.successor = Some((
                    generation,
                    starting.signal(signal, kill_at, now, &mut out.actions),
                ));
            } else {
                s.state = starting.signal(signal, kill_at, now, &mut out.actions);
            }
        } else if settings.ready_on_start {
            self.on_ready(pid, Readiness::Started, now, out);
        }
    }

    pub(super) fn on_spawn_failed(
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
            Notice::new(Level::Error, format!("worker {slot}: {error}"))
                .slot(slot)
                .generation(generation),
        );
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if matches!(s.successor, Some((g, State::Spawning)) if g == generation) {
            s.successor = None;
            if let Some(reason) = s.recycle.in_flight.take() {
                self.recycle_failed(slot, reason, &format!("failed: {error}"), now, out);
                return;
            }
            self.reload_failed(
                generation,
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

    /// `pid` became ready, as `by` says: a starting worker serves, a
    /// replacement takes over from the worker it replaces.
    pub(super) fn on_ready(&mut self, pid: Pid, by: Readiness, now: Instant, out: &mut Decision) {
        let heartbeat = self.settings.heartbeat;
        let Some(i) = self.slots.iter().position(|s| s.runs(pid)) else {
            return;
        };
        let due = self.draw_due(now);
        let s = &mut self.slots[i];
        // A worker this makes retire: its tree is swept with it.
        let mut tree = None;
        let ready = |since| State::Ready {
            pid,
            since,
            ready_at: now,
            beat_by: heartbeat.map(|h| now + h),
        };
        match (s.state, s.successor) {
            (State::Starting { pid: p, since, .. }, _) if p == pid => {
                s.state = ready(since);
                s.recycle = SlotRecycle {
                    due,
                    ..SlotRecycle::default()
                };
                out.notices.push(
                    Notice::new(
                        Level::Info,
                        format!("worker {} (pid {pid}) is ready ({by})", s.id),
                    )
                    .slot(s.id)
                    .pid(pid)
                    .generation(s.generation),
                );
            }
            (old, Some((generation, State::Starting { pid: p, since, .. }))) if p == pid => {
                // The replacement is ready: it serves, the old worker drains,
                // stopped as its own generation says.
                let (signal, kill_at) = stop_of(&self.stops, &self.settings, s.generation, now);
                let retired = old.signal(signal, kill_at, now, &mut out.actions);
                if let Some(p) = retired.pid() {
                    s.retiring.push((s.generation, retired));
                    tree = Some((p, signal, kill_at));
                }
                let notice = took_over(s, old, pid, generation, by);
                out.notices
                    .push(notice.slot(s.id).pid(pid).generation(generation));
                s.recycle = SlotRecycle {
                    due,
                    ..SlotRecycle::default()
                };
                s.state = ready(since);
                s.generation = generation;
                s.successor = None;
                s.worker_status = None;
            }
            _ => return,
        }
        if let Some((p, signal, kill_at)) = tree {
            self.sweep(Scope::Tree(p), signal, kill_at, now);
        }
        self.measure_fresh(pid, out);
        self.any_ready_ever = true;
        if !self.announced && self.reload.is_none() && self.all_ready() {
            self.announced = true;
            out.actions.push(Action::AnnounceReady);
        }
    }

    pub(super) fn on_heartbeat(&mut self, pid: Pid, now: Instant) {
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

    pub(super) fn all_ready(&self) -> bool {
        self.slots.len() == self.target && self.slots.iter().all(|s| s.state.is_ready())
    }

    pub(super) fn stop(&mut self, fast: bool, code: ExitCode, now: Instant, out: &mut Decision) {
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
        // What each worker leaves behind goes with it (see `sweep`), and
        // so does everything else descended from the master.
        let mut trees = Vec::new();
        for s in &self.slots {
            let (signal, kill_at) = stop_of(&self.stops, &self.settings, s.generation, now);
            trees.extend(s.state.pid().map(|p| (p, signal, kill_at)));
            if let Some((g, st)) = s.successor {
                let (signal, kill_at) = stop_of(&self.stops, &self.settings, g, now);
                trees.extend(st.pid().map(|p| (p, signal, kill_at)));
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
        for (pid, signal, kill_at) in trees {
            self.sweep(Scope::Tree(pid), signal, kill_at, now);
        }
        let (signal, timeout) = (self.settings.stop_signal, self.settings.stop_timeout);
        self.sweep(Scope::Everything, signal, now + timeout, now);
        if fast {
            self.sweep_fast(now);
        }
        // A reload over but for its retired workers: they are stopped
        // with the rest now.
        if let Some(outcome) = self.finished.take() {
            out.actions.push(Action::ReloadFinished(outcome));
        }
    }

    pub(super) fn grow(&mut self, now: Instant, out: &mut Decision) {
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

    pub(super) fn shrink(&mut self, now: Instant, out: &mut Decision) {
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
        self.cancel_recycle(self.target, now, out);
        let s = &mut self.slots[self.target];
        let (signal, kill_at) = stop_of(&self.stops, &self.settings, s.generation, now);
        s.state = s.state.signal(signal, kill_at, now, &mut out.actions);
    }

    pub(super) fn after_stall(&mut self, now: Instant, out: &mut Decision) {
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

    pub(super) fn on_tick(&mut self, now: Instant, out: &mut Decision) {
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
                    s.state = s.state.kill(KillCause::ReadyTimeout, now, &mut out.actions);
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
                    s.state = s.state.kill(KillCause::Heartbeat, now, &mut out.actions);
                }
                State::Stopping { pid, kill_at, .. } if kill_at <= now => {
                    out.notices.push(Notice::new(Level::Warn, format!("worker {id} (pid {pid}) still running at the stop timeout, killing it")).slot(id).pid(pid).generation(generation));
                    s.state = s.state.kill(KillCause::StopTimeout, now, &mut out.actions);
                }
                _ => {}
            }
            if let Some((g, State::Starting { pid, deadline, .. })) = s.successor
                && deadline <= now
            {
                out.notices.push(Notice::new(Level::Warn, format!("new worker {id} (pid {pid}) of generation {g} not ready after {}, killing it", Span(settings.ready_timeout))).slot(id).pid(pid).generation(g));
                let st = s.successor.expect("matched").1;
                s.successor = Some((g, st.kill(KillCause::ReadyTimeout, now, &mut out.actions)));
            }
            for (g, st) in &mut s.retiring {
                if let State::Stopping { pid, kill_at, .. } = *st
                    && kill_at <= now
                {
                    out.notices.push(Notice::new(Level::Warn, format!("replaced worker {id} (pid {pid}) still running at the stop timeout, killing it")).slot(id).pid(pid).generation(*g));
                    *st = st.kill(KillCause::StopTimeout, now, &mut out.actions);
                }
            }
        }
    }

    /// Starts every pending slot that is due.
    pub(super) fn schedule(&mut self, now: Instant, out: &mut Decision) {
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

    pub(super) fn check_done(&mut self, out: &mut Decision) {
        if let Phase::Stopping { code } = self.phase
            && !self.slots.iter().any(Slot::has_process)
            && !self.sweeping()
            && !out.actions.iter().any(|a| matches!(a, Action::Exit(_)))
        {
            out.actions.push(Action::Exit(code));
        }
    }
}
