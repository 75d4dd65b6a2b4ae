//! What the master tells about itself: the `STATUS=` line, the systemd
//! watchdog ping, the report for `hawkey status`, and the replies.

use std::time::Instant;

use sd_notify::NotifyState;

use super::Master;
use super::listeners::Origin;
use crate::control::{self, ClientId, Response};

impl Master<'_> {
    pub(super) fn status_line(&self) -> String {
        let mut line = self.pool.status_line();
        if let Some(error) = &self.reload_error {
            line.push_str("; last reload failed: ");
            line.push_str(error);
        }
        line
    }
    pub(super) fn update_status(&mut self) {
        let line = self.status_line();
        if line != self.status_sent {
            self.notify(&[NotifyState::Status(&line)]);
            self.status_sent = line;
        }
    }
    /// `WATCHDOG=1` every half watchdog period, from this loop only, and
    /// only while the pool is healthy.
    pub(super) fn ping_watchdog(&mut self) {
        let (Some(period), Some(next)) = (self.watchdog, self.next_ping) else {
            return;
        };
        let now = Instant::now();
        if now < next {
            return;
        }
        if self.pool.healthy(now) {
            self.notify(&[NotifyState::Watchdog]);
            self.unhealthy_logged = false;
        } else if !self.unhealthy_logged {
            tracing::error!("the pool is unhealthy: withholding the systemd watchdog ping");
            self.unhealthy_logged = true;
        }
        self.next_ping = Some(now + period / 2);
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
            master_pid: self.pid,
            uptime_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            generation: self.pool.generation(),
            status: self.status_line(),
            listeners,
            workers,
            instance: self.instance.clone(),
        }
    }
    pub(super) fn reply(&mut self, client: ClientId, response: &Response) {
        if let Some(control) = self.control.as_mut() {
            control.reply(client, response);
        }
    }
    pub(super) fn notify(&self, states: &[NotifyState<'_>]) {
        if let Err(error) = self.upstream.send(states) {
            tracing::warn!("failed to notify the service manager: {error}");
        }
    }
}
