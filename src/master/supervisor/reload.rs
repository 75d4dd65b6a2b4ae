//! Rolling reloads and their rollback: the new configuration becomes the
//! target generation, slots are replaced up to `surge` at a time (each new
//! worker ready before the old one of its slot is told to stop, so never
//! fewer than N serve), and a failure makes the previous generation the
//! target again: the new workers still starting are stopped, and the
//! failures among them are not failures of the rollback.

use std::time::Instant;

use super::{
    Action, Decision, KILL_GRACE, Level, Notice, Phase, Pool, ReloadOutcome, Scope, Settings,
    State, stop_of,
};

#[derive(Clone, Debug)]
pub(super) struct Reload {
    /// The settings and generation to go back to; `None` while rolling back.
    pub(super) previous: Option<(Settings, u64)>,
    /// Why the reload is being rolled back.
    pub(super) failure: Option<String>,
}

impl Pool {
    pub(super) fn start_reload(
        &mut self,
        settings: Settings,
        generation: u64,
        now: Instant,
        out: &mut Decision,
    ) {
        let reject = |reason: &str| {
            Action::ReloadFinished(ReloadOutcome::Rejected {
                reason: reason.to_string(),
            })
        };
        if self.phase != Phase::Running {
            out.actions.push(reject("hawkey is stopping"));
            return;
        }
        if self.reload.is_some() || self.finished.is_some() {
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
        self.cancel_recycles(now, out);
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

    /// A worker of `failed` (a generation) failed to start: roll back, or
    /// give up rolling back. A worker of a generation already abandoned
    /// (started beside the one that failed first) changes nothing.
    pub(super) fn reload_failed(
        &mut self,
        failed: u64,
        reason: String,
        now: Instant,
        out: &mut Decision,
    ) {
        if failed != self.generation {
            return;
        }
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
                self.abandon(failed, now, out);
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

    /// Stops the replacements of generation `abandoned` still starting:
    /// the slot's old worker serves on, and the replacement drains as a
    /// retired worker would. One still being forked is stopped once its
    /// pid is known (`on_spawned`).
    fn abandon(&mut self, abandoned: u64, now: Instant, out: &mut Decision) {
        let (signal, kill_at) = stop_of(&self.stops, &self.settings, abandoned, now);
        for s in &mut self.slots {
            if let Some((g, state)) = s.successor
                && g == abandoned
                && state.pid().is_some()
            {
                s.successor = None;
                s.retiring
                    .push((g, state.signal(signal, kill_at, now, &mut out.actions)));
            }
        }
    }

    /// Starts the next replacements of a reload (up to `surge` at once),
    /// or finishes it.
    pub(super) fn advance_reload(&mut self, now: Instant, out: &mut Decision) {
        if self.phase != Phase::Running || self.reload.is_none() {
            return;
        }
        let (generation, target) = (self.generation, self.target);
        let in_flight = self.slots.iter().filter(|s| s.successor.is_some()).count();
        let room = self.settings.surge.max(1).saturating_sub(in_flight);
        for s in self
            .slots
            .iter_mut()
            .filter(|s| {
                s.id < target
                    && s.successor.is_none()
                    && s.generation != generation
                    && s.state.is_ready()
            })
            .take(room)
        {
            s.successor = Some((generation, State::Spawning));
            out.actions.push(Action::Spawn {
                slot: s.id,
                generation,
            });
        }
        if self.slots.iter().any(|s| s.successor.is_some()) {
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
        let mut trees = Vec::new();
        for s in self.slots.iter_mut().filter(|s| s.id >= target) {
            let (signal, kill_at) = stop_of(&self.stops, &self.settings, s.generation, now);
            if matches!(
                s.state,
                State::Starting { .. } | State::Ready { .. } | State::Pending { .. }
            ) {
                trees.extend(s.state.pid().map(|p| (p, signal, kill_at)));
                s.state = s.state.signal(signal, kill_at, now, &mut out.actions);
            }
        }
        for (pid, signal, kill_at) in trees {
            self.sweep(Scope::Tree(pid), signal, kill_at, now);
        }
        let reload = self.reload.take().expect("checked above");
        self.finished = Some(match reload.failure {
            None => ReloadOutcome::Done { generation },
            Some(reason) => ReloadOutcome::RolledBack { reason },
        });
        out.actions.push(Action::AnnounceReady);
    }

    /// Reports a reload that is over once its retired workers, and all
    /// they left behind, are gone (`hawkey reload --wait` returns then).
    /// A retired worker that outlived SIGKILL by [`KILL_GRACE`] (stuck in
    /// the kernel: the pool is unhealthy for it) no longer holds the
    /// report back, nor every later reload with it.
    pub(super) fn report_reload(&mut self, now: Instant, out: &mut Decision) {
        let draining = |st: &State| !matches!(st, State::Killing { at, .. } if now.saturating_duration_since(*at) > KILL_GRACE);
        if self.finished.is_none()
            || self.sweeping()
            || self
                .slots
                .iter()
                .any(|s| s.retiring.iter().any(|(_, st)| draining(st)))
        {
            return;
        }
        let outcome = self.finished.take().expect("checked above");
        let generation = self.generation;
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
    }
}
