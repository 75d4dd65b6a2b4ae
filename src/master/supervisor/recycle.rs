//! Recycling (`workers.recycle`): a ready worker whose process tree uses
//! more memory than `memory`, or that has been ready longer than `age`
//! (give or take `jitter`), is replaced the way a reload replaces it: a
//! successor of the same generation starts beside it, and only once that
//! one is ready is the old worker stopped (stop signal, `stop_timeout`,
//! SIGKILL). So the pool never has fewer than N ready workers.
//!
//! - **Memory** is measured by the master, not here: while a limit is
//!   set, every [`MEMORY_EVERY`] the pool asks for it
//!   ([`Action::MeasureMemory`]) and gets the figures back
//!   ([`Event::Memory`]). No limit, no deadline: the idle master sleeps.
//! - **Age**: each worker's deadline is drawn when it becomes ready, from
//!   a pseudo-random sequence whose seed the master passes in
//!   ([`Pool::seed`]): the pool stays pure and its tests deterministic.
//! - At most `reload.surge` recycles run at once, and none while a
//!   reload runs: a reload replaces every worker anyway, so the recycles
//!   in flight are abandoned, and the new workers draw new deadlines.
//! - A successor that fails (exits, or misses `ready_timeout`) leaves the
//!   old worker serving; the recycle is tried again after
//!   [`RETRY_INITIAL`], doubling up to [`RETRY_MAX`].
//! - The serving worker dying during its recycle: its successor, already
//!   starting, takes the slot over.

use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::{Action, Decision, Level, Notice, Phase, Pool, Slot, State, stop_of};
use crate::config::Span;

/// How often the memory of the workers is measured while `memory` is set.
pub(crate) const MEMORY_EVERY: Duration = Duration::from_secs(5);

/// The wait before a failed recycle is tried again, doubled with each
/// failure in a row up to [`RETRY_MAX`]. Long beside a restart's backoff:
/// the old worker still serves, nothing is lost by waiting.
pub(crate) const RETRY_INITIAL: Duration = Duration::from_secs(10);

/// The longest wait before a failed recycle is tried again.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(300);

/// `workers.recycle`, as the pool applies it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Recycling {
    /// Bytes of resident memory a worker's process tree may use.
    pub(crate) memory: Option<u64>,
    /// How long a worker may be ready.
    pub(crate) age: Option<Duration>,
    /// How far (in percent of `age`, either way) each worker's own age
    /// may be from `age`.
    pub(crate) jitter_percent: u32,
}

/// Why a worker is recycled (`RECYCLE_REASON` in the journal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Its process tree used `bytes`, over the limit.
    Memory { bytes: u64 },
    /// It had been ready for `up`, past its age.
    Age { up: Duration },
}

impl Reason {
    /// The word for the journal field.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Reason::Memory { .. } => "memory",
            Reason::Age { .. } => "age",
        }
    }
}

/// What a slot knows about recycling its worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SlotRecycle {
    /// When the serving worker's age is up.
    pub(super) due: Option<Instant>,
    /// The serving worker's memory at the last measure, when over the limit.
    pub(super) over: Option<u64>,
    /// A recycle in flight: its successor is the slot's `successor`.
    pub(super) in_flight: Option<Reason>,
    /// Not before then, after a failed recycle.
    pub(super) retry_at: Option<Instant>,
    /// Failed recycles in a row.
    pub(super) failures: u32,
    /// Over the limit already when it became ready: never recycled for
    /// its memory, since its replacement would be too (see `on_memory`).
    pub(super) exempt: bool,
}

/// `bytes` for the log: "530 MiB" (or KiB below 1 MiB).
fn mib(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

impl Pool {
    /// Seeds the sequence the age deadlines are drawn from.
    pub(crate) fn seed(&mut self, seed: u64) {
        self.rng = seed;
    }

    /// The next number of the sequence (splitmix64).
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The age deadline of a worker ready at `now`: `age` scaled by a
    /// factor drawn evenly from `1 ± jitter`.
    pub(super) fn draw_due(&mut self, now: Instant) -> Option<Instant> {
        let Recycling {
            age,
            jitter_percent,
            ..
        } = self.settings.recycle;
        let age = age?;
        let unit = (self.next_random() >> 11) as f64 / (1u64 << 53) as f64;
        let factor = 1.0 + f64::from(jitter_percent) / 100.0 * (2.0 * unit - 1.0);
        Some(now + age.mul_f64(factor))
    }

    /// Whether recycles may start now: running, no reload.
    fn may_recycle(&self) -> bool {
        self.phase == Phase::Running && !self.is_reloading()
    }

    /// How many more recycles may start beside those in flight.
    fn recycle_room(&self) -> usize {
        let in_flight = self
            .slots
            .iter()
            .filter(|s| s.recycle.in_flight.is_some())
            .count();
        self.settings.surge.max(1).saturating_sub(in_flight)
    }

    /// Whether `s` could start a recycle, reason and retry backoff aside:
    /// its ready worker of the target generation, nothing in flight.
    fn could_recycle(&self, s: &Slot) -> bool {
        s.id < self.target
            && s.successor.is_none()
            && s.recycle.in_flight.is_none()
            && s.generation == self.generation
            && s.state.is_ready()
    }

    /// Whether `s` may start a recycle at `now`, reason aside.
    fn eligible(&self, s: &Slot, now: Instant) -> bool {
        self.could_recycle(s) && s.recycle.retry_at.is_none_or(|at| at <= now)
    }

    /// The nearest instant at which recycling has work to do.
    pub(super) fn recycle_deadline(&self) -> Option<Instant> {
        if self.phase != Phase::Running {
            return None;
        }
        let mut next = self.memory_check_at;
        if self.may_recycle() && self.recycle_room() > 0 {
            for s in self.slots.iter().filter(|s| self.could_recycle(s)) {
                // Over the limit and not in backoff, it starts this very
                // turn: no deadline for it.
                let wanted = match (s.recycle.over, s.recycle.due, s.recycle.retry_at) {
                    (Some(_), _, retry) => retry,
                    (None, Some(due), retry) => Some(retry.map_or(due, |r| r.max(due))),
                    (None, None, _) => None,
                };
                next = [next, wanted].into_iter().flatten().min();
            }
        }
        next
    }

    /// A worker has just become ready: with a memory limit, its size is
    /// measured now, as that of a fresh worker (see `on_memory`).
    pub(super) fn measure_fresh(&self, pid: Pid, out: &mut Decision) {
        if self.settings.recycle.memory.is_some() {
            out.actions.push(Action::MeasureMemory {
                pids: vec![pid],
                fresh: true,
            });
        }
    }

    /// The master measured memory: `usage` is each ready worker's tree's
    /// resident bytes; `fresh`, of workers that had just become ready.
    ///
    /// A fresh worker over the limit is one its replacement would be no
    /// better than: recycling it would replace workers every
    /// [`MEMORY_EVERY`] for nothing. It is not recycled for memory, and the
    /// limit is warned about (once per limit); age still applies.
    pub(super) fn on_memory(&mut self, usage: &[(Pid, u64)], fresh: bool, out: &mut Decision) {
        let Some(limit) = self.settings.recycle.memory else {
            return;
        };
        let mut warn = None;
        for &(pid, bytes) in usage {
            let Some(s) = self
                .slots
                .iter_mut()
                .find(|s| s.state.is_ready() && s.state.pid() == Some(pid))
            else {
                continue;
            };
            if fresh && bytes > limit {
                s.recycle.exempt = true;
                warn.get_or_insert((s.id, pid, s.generation, bytes));
            }
            s.recycle.over = (bytes > limit && !s.recycle.exempt).then_some(bytes);
        }
        if let Some((slot, pid, generation, bytes)) = warn
            && self.fresh_over_warned != Some(limit)
        {
            self.fresh_over_warned = Some(limit);
            out.notices.push(
                Notice::new(
                    Level::Warn,
                    format!(
                        "worker {slot} (pid {pid}) uses {} as soon as it is ready, over recycle.memory {}: a replacement would be no smaller, so workers over the limit when fresh are not recycled for memory; raise recycle.memory above a fresh worker's size",
                        mib(bytes),
                        mib(limit)
                    ),
                )
                .slot(slot)
                .pid(pid)
                .generation(generation),
            );
        }
    }

    /// Asks for the memory figures when due, and starts the recycles that
    /// are due, up to the room `surge` leaves.
    pub(super) fn advance_recycles(&mut self, now: Instant, out: &mut Decision) {
        if self.phase != Phase::Running || self.settings.recycle.memory.is_none() {
            self.memory_check_at = None;
        } else if self.memory_check_at.is_none() {
            self.memory_check_at = Some(now + MEMORY_EVERY);
        }
        if let Some(at) = self.memory_check_at
            && at <= now
        {
            self.memory_check_at = Some(now + MEMORY_EVERY);
            let pids: Vec<Pid> = self
                .slots
                .iter()
                .filter(|s| s.state.is_ready())
                .filter_map(|s| s.state.pid())
                .collect();
            if !pids.is_empty() {
                out.actions
                    .push(Action::MeasureMemory { pids, fresh: false });
            }
        }
        if !self.may_recycle() {
            return;
        }
        let mut room = self.recycle_room();
        for i in 0..self.slots.len() {
            if room == 0 {
                break;
            }
            if !self.eligible(&self.slots[i], now) {
                continue;
            }
            let s = &mut self.slots[i];
            let State::Ready { pid, ready_at, .. } = s.state else {
                continue;
            };
            let reason = match (s.recycle.over, s.recycle.due) {
                (Some(bytes), _) => Reason::Memory { bytes },
                (None, Some(due)) if due <= now => Reason::Age {
                    up: Duration::from_secs(now.saturating_duration_since(ready_at).as_secs()),
                },
                _ => continue,
            };
            let why = match reason {
                Reason::Memory { bytes } => format!(
                    "uses {}, over recycle.memory {}",
                    mib(bytes),
                    mib(self.settings.recycle.memory.unwrap_or_default())
                ),
                Reason::Age { up } => format!("has been up {}, past recycle.age", Span(up)),
            };
            out.notices.push(
                Notice::new(
                    Level::Info,
                    format!(
                        "worker {} (pid {pid}) {why}: starting its replacement",
                        s.id
                    ),
                )
                .slot(s.id)
                .pid(pid)
                .generation(s.generation)
                .recycle(reason),
            );
            s.recycle.in_flight = Some(reason);
            s.successor = Some((s.generation, State::Spawning));
            out.actions.push(Action::Spawn {
                slot: s.id,
                generation: s.generation,
            });
            room -= 1;
        }
    }

    /// The successor of a recycle in `slot` failed (`what` it did: "(pid
    /// 4300) exited with status 1", "failed: ..."): the old worker serves
    /// on; the recycle is tried again after a backoff.
    pub(super) fn recycle_failed(
        &mut self,
        slot: usize,
        reason: Reason,
        what: &str,
        now: Instant,
        out: &mut Decision,
    ) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        s.recycle.failures += 1;
        let factor = 1u32.checked_shl(s.recycle.failures - 1).unwrap_or(u32::MAX);
        let delay = RETRY_INITIAL.saturating_mul(factor).min(RETRY_MAX);
        s.recycle.retry_at = Some(now + delay);
        let mut notice = Notice::new(
            Level::Warn,
            format!(
                "worker {}{}: its replacement {what}; the worker serves on, recycling it again in {}",
                s.id,
                s.state
                    .pid()
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default(),
                Span(delay)
            ),
        )
        .slot(s.id)
        .generation(s.generation)
        .recycle(reason);
        if let Some(p) = s.state.pid() {
            notice = notice.pid(p);
        }
        out.notices.push(notice);
    }

    /// Abandons the recycle in flight in `slot`, if any: its successor is
    /// stopped (one still being forked is stopped by `on_spawned`, as a
    /// worker of a generation no longer wanted, or here once known).
    pub(super) fn cancel_recycle(&mut self, slot: usize, now: Instant, out: &mut Decision) {
        let (stops, settings) = (&self.stops, &self.settings);
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        s.recycle.over = None;
        s.recycle.retry_at = None;
        if s.recycle.in_flight.take().is_none() {
            return;
        }
        if let Some((g, st)) = s.successor
            && st.pid().is_some()
        {
            let (signal, kill_at) = stop_of(stops, settings, g, now);
            s.successor = None;
            s.retiring
                .push((g, st.signal(signal, kill_at, now, &mut out.actions)));
        }
    }

    /// A reload starts: it replaces everyone, recycles in flight end.
    pub(super) fn cancel_recycles(&mut self, now: Instant, out: &mut Decision) {
        for slot in 0..self.slots.len() {
            self.cancel_recycle(slot, now, out);
        }
    }
}

#[cfg(test)]
mod tests;
