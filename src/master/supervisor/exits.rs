//! What happens when a worker dies: a retired one finished draining, a
//! replacement failed (the reload fails), or a serving one died (respawn,
//! with backoff if the app failed by itself; give up if nothing ever
//! started).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{
    Decision, ExitCode, KillCause, Level, Notice, Phase, Pool, STABLE_AFTER, STARTUP_ATTEMPTS,
    State,
};
use crate::config::Span;
use crate::master::reap::Exit;

impl Pool {
    /// A process exited: a draining worker, a failed replacement, or a
    /// serving worker. Say so in operator terms, then decide what next.
    pub(super) fn on_exit(&mut self, pid: Pid, exit: Exit, now: Instant, out: &mut Decision) {
        let words = self.last_words.remove(&pid);
        let words = words.as_deref();
        if !self.retired_exited(pid, exit, out)
            && !self.replacement_exited(pid, exit, words, now, out)
        {
            self.serving_exited(pid, exit, words, now, out);
        }
    }

    /// A replaced worker finished draining: nothing more to do.
    fn retired_exited(&mut self, pid: Pid, exit: Exit, out: &mut Decision) -> bool {
        for s in &mut self.slots {
            if let Some(i) = s.retiring.iter().position(|(_, st)| st.pid() == Some(pid)) {
                let (generation, _) = s.retiring.remove(i);
                out.notices.push(exited(s.id, pid, generation, exit));
                return true;
            }
        }
        false
    }

    /// A replacement died before it was ready: the reload fails (unless
    /// hawkey is stopping anyway).
    fn replacement_exited(
        &mut self,
        pid: Pid,
        exit: Exit,
        words: Option<&str>,
        now: Instant,
        out: &mut Decision,
    ) -> bool {
        let Some(s) = self
            .slots
            .iter_mut()
            .find(|s| s.successor.is_some_and(|(_, st)| st.pid() == Some(pid)))
        else {
            return false;
        };
        let (generation, state) = s.successor.take().expect("found above");
        let id = s.id;
        if self.phase != Phase::Running {
            out.notices.push(exited(id, pid, generation, exit));
            return true;
        }
        let why = match state {
            State::Killing {
                cause: KillCause::ReadyTimeout,
                ..
            } => format!("not ready after {}", Span(self.settings.ready_timeout)),
            _ => exit.to_string(),
        };
        let why = format!("{why}{}", in_its_words(words));
        if let Some(reason) = self.slots[id].recycle.in_flight.take() {
            let why = format!("(pid {pid}) {why}");
            self.recycle_failed(id, reason, &why, now, out);
            return true;
        }
        self.new_worker_failed(id, pid, generation, exit, &why, now, out);
        true
    }

    /// A slot's serving (or starting) worker died: fail a reload it was
    /// part of, replace it, or let it go if hawkey is stopping or the slot
    /// is retired.
    fn serving_exited(
        &mut self,
        pid: Pid,
        exit: Exit,
        words: Option<&str>,
        now: Instant,
        out: &mut Decision,
    ) {
        let (phase, target, reloading) = (self.phase, self.target, self.reload.is_some());
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
        let running = phase == Phase::Running && id < target;
        if running
            && s.recycle.in_flight.is_some()
            && let Some((g, successor)) = s.successor.take()
        {
            // Its recycle's successor, already starting, takes over.
            s.recycle = Default::default();
            s.state = successor;
            s.generation = g;
            s.worker_status = None;
            s.restarts += 1;
            self.restarts += 1;
            let next = match successor.pid() {
                Some(p) => format!("its replacement (pid {p}) takes over"),
                None => "its replacement takes over".to_string(),
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
        } else if running
            && reloading
            && generation == self.generation
            && matches!(before, State::Starting { .. } | State::Killing { .. })
        {
            // A new slot's worker of the reload's generation never became
            // ready: the reload fails like a replacement would.
            s.state = State::Pending { at: now };
            let why = format!("{exit}{}", in_its_words(words));
            self.new_worker_failed(id, pid, generation, exit, &why, now, out);
        } else if !running {
            out.notices.push(exited(id, pid, generation, exit));
        } else if matches!(before, State::Stopping { .. }) {
            // Stopped on purpose (a shrink reversed by a grow): replace.
            s.state = State::Pending { at: now };
            out.notices.push(exited(id, pid, generation, exit));
        } else {
            self.restart(id, pid, generation, before, exit, words, now, out);
        }
    }

    /// Replaces a serving worker that died by itself or was killed: with
    /// backoff if the app failed by itself.
    #[allow(clippy::too_many_arguments)]
    fn restart(
        &mut self,
        id: usize,
        pid: Pid,
        generation: u64,
        before: State,
        exit: Exit,
        words: Option<&str>,
        now: Instant,
        out: &mut Decision,
    ) {
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
            State::Killing { cause, .. } => cause != KillCause::Heartbeat,
            _ => true,
        };
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
        // One that never became ready failed to start: say so, beside how
        // it ended (the status or signal is the newcomer's first clue).
        let unready = match before {
            State::Starting { .. } => format!(" before it was ready{}", in_its_words(words)),
            State::Killing {
                cause: KillCause::ReadyTimeout,
                ..
            } => in_its_words(words),
            _ => String::new(),
        };
        out.notices.push(
            Notice::new(
                Level::Warn,
                format!("worker {id} (pid {pid}) {exit}{unready}, {next}"),
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
    pub(super) fn new_worker_failed(
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
            generation,
            format!("worker {id} (pid {pid}) of generation {generation} {why}"),
            now,
            out,
        );
    }

    /// Schedules the replacement of a worker that died (or never started),
    /// with backoff when `quick`, and gives up when nothing ever started.
    pub(super) fn after_death(
        &mut self,
        slot: usize,
        quick: bool,
        now: Instant,
        out: &mut Decision,
    ) {
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
}

/// What a worker that never became ready said last on stderr, to follow
/// how it ended: ` (its last line on stderr: "…")`, escaped (it is the
/// app's text, shown in the operator's log and terminal); nothing if it
/// said nothing hawkey could keep (see `master::tail`).
fn in_its_words(words: Option<&str>) -> String {
    match words {
        Some(line) => format!(" (its last line on stderr: {line:?})"),
        None => String::new(),
    }
}

/// That worker `id` (`pid`, of `generation`) ended so: the expected end.
fn exited(id: usize, pid: Pid, generation: u64, exit: Exit) -> Notice {
    Notice::new(Level::Info, format!("worker {id} (pid {pid}) {exit}"))
        .slot(id)
        .pid(pid)
        .generation(generation)
        .exit(exit)
}
