//! What the master tells about itself: the `STATUS=` line, the systemd
//! watchdog ping, the report for `hawkey status`, and the replies.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::Master;
use super::listeners::Origin;
use crate::control::{self, ClientId, Response};
use crate::worker::notify::Notifier;

impl Master<'_> {
    pub(super) fn status_line(&self) -> String {
        let mut line = self.pool.status_line();
        if let Some(error) = &self.reloads.error {
            line.push_str("; last reload failed: ");
            line.push_str(error);
        }
        line
    }
    pub(super) fn update_status(&mut self) {
        let line = self.status_line();
        self.upstream.send_status(line);
    }
    /// `WATCHDOG=1` every half watchdog period, from this loop only, and
    /// only while the pool is healthy.
    pub(super) fn ping_watchdog(&mut self) {
        let pool = &self.pool;
        self.upstream.ping_watchdog(|now| pool.healthy(now));
    }
    pub(super) fn status_report(&self) -> control::StatusReport {
        let now = Instant::now();
        let ms = |since: Option<Instant>| {
            since.map(|s| now.saturating_duration_since(s).as_millis() as u64)
        };
        let mut workers = Vec::new();
        for s in self.pool.slots() {
            workers.push(control::WorkerStatus {
                slot: s.id,
                pid: s.state.pid().map(|p| p.as_raw()),
                generation: s.generation,
                state: s.state.name().to_string(),
                uptime_ms: ms(s.state.since()),
                restarts: s.restarts,
                recycles: s.recycles,
                last_exit: s.last_exit.map(|e| e.to_string()),
                status: s.worker_status.clone(),
            });
            for (generation, state) in s.successor.iter().chain(&s.retiring) {
                workers.push(control::WorkerStatus {
                    slot: s.id,
                    pid: state.pid().map(|p| p.as_raw()),
                    generation: *generation,
                    state: format!("{} (generation {generation})", state.name()),
                    uptime_ms: ms(state.since()),
                    restarts: s.restarts,
                    recycles: s.recycles,
                    last_exit: None,
                    status: None,
                });
            }
        }
        let listeners = self
            .generations
            .all
            .get(&self.pool.generation())
            .map(|g| g.listeners.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|l| control::ListenerStatus {
                name: l.name.clone(),
                address: match l.origin() {
                    Origin::Systemd => format!("fd {}", l.raw_fd()),
                    Origin::Bound(a) => a.to_string(),
                },
                from_systemd: *l.origin() == Origin::Systemd,
            })
            .collect();
        control::StatusReport {
            master_pid: self.origin.pid,
            uptime_ms: now
                .saturating_duration_since(self.origin.started)
                .as_millis() as u64,
            generation: self.pool.generation(),
            status: self.status_line(),
            listeners,
            workers,
            instance: self.origin.instance.clone(),
        }
    }
    pub(super) fn reply(&mut self, client: ClientId, response: &Response) {
        if let Some(control) = self.control.as_mut() {
            control.reply(client, response);
        }
    }
}

/// The notify connection to the service manager (`NOTIFY_SOCKET`, none
/// outside systemd), and what the master told it: the last `STATUS=`,
/// the watchdog's next ping, whether `READY=1` went up once.
pub(super) struct Upstream {
    notifier: Notifier,
    /// The last `STATUS=` sent.
    status_sent: String,
    /// The systemd watchdog period (`WATCHDOG_USEC`), if any.
    watchdog: Option<Duration>,
    /// When the next `WATCHDOG=1` is due.
    next_ping: Option<Instant>,
    /// The withheld ping was logged: said once until the pool is healthy.
    unhealthy_logged: bool,
    /// When `EXTEND_TIMEOUT_USEC=` was last sent upstream.
    extended_at: Option<Instant>,
    /// `READY=1` went up once: start-up is over.
    pub(super) ready_announced: bool,
    /// `RELOADING=1` went upstream for this SIGHUP already: the reload it
    /// starts need not announce itself again (`Master::reload_signalled`).
    pub(super) reloading_announced: bool,
}

impl Upstream {
    pub(super) fn new(notifier: Notifier, watchdog: Option<Duration>) -> Upstream {
        Upstream {
            notifier,
            status_sent: String::new(),
            watchdog,
            next_ping: watchdog.map(|_| Instant::now()),
            unhealthy_logged: false,
            extended_at: None,
            ready_announced: false,
            reloading_announced: false,
        }
    }

    pub(super) fn notify(&self, states: &[NotifyState<'_>]) {
        if let Err(error) = self.notifier.send(states) {
            tracing::warn!("failed to notify the service manager: {error}");
        }
    }

    /// `STATUS=line`, if it is not what was sent last.
    pub(super) fn send_status(&mut self, line: String) {
        if line != self.status_sent {
            self.notify(&[NotifyState::Status(&line)]);
            self.status_sent = line;
        }
    }

    /// `READY=1` with `STATUS=line` (and the `extra` states before it).
    pub(super) fn send_ready(&mut self, extra: &[NotifyState<'_>], line: String) {
        let mut states = vec![NotifyState::Ready];
        states.extend_from_slice(extra);
        states.push(NotifyState::Status(&line));
        self.notify(&states);
        self.status_sent = line;
    }

    /// `WATCHDOG=1` if it is due and the pool is `healthy` now.
    fn ping_watchdog(&mut self, healthy: impl FnOnce(Instant) -> bool) {
        let (Some(period), Some(next)) = (self.watchdog, self.next_ping) else {
            return;
        };
        let now = Instant::now();
        if now < next {
            return;
        }
        if healthy(now) {
            self.notify(&[NotifyState::Watchdog]);
            self.unhealthy_logged = false;
        } else if !self.unhealthy_logged {
            tracing::error!("the pool is unhealthy: withholding the systemd watchdog ping");
            self.unhealthy_logged = true;
        }
        self.next_ping = Some(now + period / 2);
    }

    /// When the next watchdog ping is due, if there is a watchdog.
    pub(super) fn next_ping(&self) -> Option<Instant> {
        self.next_ping
    }

    /// Sends `extend` (an `EXTEND_TIMEOUT_USEC=`) at most once a second:
    /// a pool of 1024 spawns must not queue 1024 datagrams on systemd's
    /// socket.
    pub(super) fn extend_at_most_once_a_second(&mut self, extend: NotifyState<'_>) {
        let now = Instant::now();
        if self
            .extended_at
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            self.extended_at = Some(now);
            self.notify(&[extend]);
        }
    }
}
