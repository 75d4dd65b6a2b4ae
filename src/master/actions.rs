//! What each supervisor [`Action`] does: the syscalls and the messages.

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use sd_notify::NotifyState;

use super::Master;
use super::forks::Settled;
use super::supervisor::{Action, Event, ExitCode, ReloadOutcome};
use crate::control::Response;
use crate::exit::Status;

/// systemd's start, reload and stop timeouts are kept this far ahead of
/// hawkey's own (`ready_timeout`, `stop_timeout`).
const EXTEND_MARGIN: Duration = Duration::from_secs(5);

/// `EXTEND_TIMEOUT_USEC=` for `timeout` plus the margin.
fn extend_timeout(timeout: Duration) -> NotifyState<'static> {
    let usec = (timeout + EXTEND_MARGIN).as_micros().min(u32::MAX as u128) as u32;
    NotifyState::ExtendTimeoutUsec(usec)
}

/// `MONOTONIC_USEC=` now, as `RELOADING=1` carries it (`sd_notify(3)`).
pub(super) fn monotonic_now() -> NotifyState<'static> {
    NotifyState::monotonic_usec_now().unwrap_or(NotifyState::MonotonicUsec(0))
}

impl Master<'_> {
    /// Carries out one action; `Some(status)` when the master is done.
    pub(super) fn act(&mut self, action: Action) -> Option<Status> {
        match action {
            Action::Spawn { slot, generation } => self.spawn(slot, generation),
            Action::Signal { pid, signal } => {
                if send(pid, signal) {
                    self.remains.group_signalled(pid, signal);
                }
            }
            // Carried out once the turn's events are handled (see
            // `Master::carry_out_sweeps`): one look at /proc for all.
            Action::Sweep { orders } => self.remains.order(orders),
            Action::MeasureMemory { pids, fresh } => self.measure_memory(&pids, fresh),
            Action::AnnounceReady => self.announce_ready(),
            Action::AnnounceReloading => {
                if !std::mem::take(&mut self.upstream.reloading_announced) {
                    self.upstream
                        .notify(&[NotifyState::Reloading, monotonic_now()]);
                }
            }
            Action::AnnounceStopping => {
                let stop_timeout = self
                    .generations
                    .all
                    .values()
                    .map(|g| g.settings.stop_timeout)
                    .max()
                    .unwrap_or_default();
                self.upstream
                    .notify(&[NotifyState::Stopping, extend_timeout(stop_timeout)]);
            }
            Action::ReloadFinished(outcome) => self.reload_finished(outcome),
            Action::Exit(code) => return Some(self.exit(code)),
        }
        None
    }

    /// Forks the worker of `slot` in `generation`; queues how it went.
    fn spawn(&mut self, slot: usize, generation: u64) {
        let Some(g) = self.generations.all.get(&generation) else {
            self.queue.push_back(Event::SpawnFailed {
                slot,
                generation,
                error: format!("no plan for generation {generation}"),
                master_fault: true,
            });
            return;
        };
        // The worker's own notify channel, bound before the fork.
        let channel = match g.plan.notifies() {
            false => None,
            true => match self.inbox.open(g.plan.worker_uid()) {
                Ok(channel) => Some(channel),
                Err(error) => {
                    self.queue.push_back(Event::SpawnFailed {
                        slot,
                        generation,
                        error: format!("failed to make the worker's notify socket: {error}"),
                        master_fault: true,
                    });
                    return;
                }
            },
        };
        let event = match g.plan.fork(slot, channel.as_ref().map(|c| c.path())) {
            Ok(forked) => {
                // Its channel is heard from now on; the pool learns of the
                // worker once its execve is known (`settle`).
                if let Some(channel) = channel
                    && let Err(error) = self.inbox.attach(forked.pid, channel)
                {
                    // Unheard, it is killed at its ready_timeout and
                    // started again.
                    tracing::error!(
                        "failed to watch the notify socket of pid {}: {error}",
                        forked.pid
                    );
                }
                self.forks.insert(forked.pid, slot, generation, forked);
                None
            }
            Err(error) => Some(Event::SpawnFailed {
                slot,
                generation,
                master_fault: !error.is_worker_fault(),
                error: error.to_string(),
            }),
        };
        if !self.upstream.ready_announced || self.pool.is_reloading() {
            // Starting takes as long as it legitimately takes: keep
            // systemd's start/reload timeout ahead of ready_timeout (once
            // a second is enough).
            let extend = extend_timeout(g.settings.ready_timeout);
            self.upstream.extend_at_most_once_a_second(extend);
        }
        self.queue.extend(event);
    }

    /// Queues how the forked child `pid` ended its way to `execve`, if that
    /// is known now; whether it is (or `pid` was not being forked).
    pub(super) fn settle(&mut self, pid: Pid) -> bool {
        let (slot, generation, outcome) = match self.forks.settle(pid) {
            Settled::NotForking => return true,
            Settled::Pending => return false,
            Settled::Known {
                slot,
                generation,
                outcome,
            } => (slot, generation, outcome),
        };
        let event = match outcome {
            Ok(()) => Event::Spawned {
                slot,
                generation,
                pid,
            },
            Err(error) => {
                // It exits right after saying so; its exit is not a
                // worker's (the pool never knew it: `forks` remembers).
                self.inbox.detach(pid);
                let program = self
                    .generations
                    .all
                    .get(&generation)
                    .map(|g| g.plan.program());
                Event::SpawnFailed {
                    slot,
                    generation,
                    master_fault: !error.is_worker_fault(),
                    error: start_failure(&error, program),
                }
            }
        };
        self.queue.push_back(event);
        true
    }

    /// Every slot is ready: the pidfile, `READY=1`, `MAINPID=`, `STATUS=`.
    fn announce_ready(&mut self) {
        if let Some(file) = self.pidfile.as_mut()
            && let Err(error) = file.publish(self.origin.pid)
        {
            tracing::error!("{error}");
        }
        if !self.upstream.ready_announced {
            self.upstream.ready_announced = true;
            tracing::info!(
                "all {} workers ready, {}ms after start",
                self.pool.slots().len(),
                self.origin.started.elapsed().as_millis()
            );
        }
        if self.pool.is_reloading() {
            // The reload is reported finished once the retired workers
            // drained (see `report_reload`): keep systemd's reload timeout
            // (`ExecReload=hawkey reload --wait`) ahead of their stop.
            let drain = self
                .generations
                .all
                .values()
                .map(|g| g.settings.stop_timeout)
                .max()
                .unwrap_or_default();
            self.upstream.notify(&[extend_timeout(drain)]);
        }
        // Start-up (or a reload) is over: its one-off code need not stay
        // in the master's page tables. Done once the loop is about to
        // sleep, after the rest of this turn's work.
        self.wake.release_pages();
        let line = self.status_line();
        self.upstream
            .send_ready(&[NotifyState::MainPid(self.origin.pid)], line);
    }

    /// Answers every `hawkey reload --wait` with how the reload ended.
    fn reload_finished(&mut self, outcome: ReloadOutcome) {
        let response = match outcome {
            ReloadOutcome::Done { generation } => Response::Ok {
                message: format!("reload finished: generation {generation}"),
            },
            ReloadOutcome::RolledBack { reason } => {
                let message = format!("reload failed and was rolled back: {reason}");
                self.reloads.error = Some(message.clone());
                Response::Error {
                    exit_code: Status::Failure.code(),
                    message,
                }
            }
            ReloadOutcome::Rejected { reason } => Response::Error {
                exit_code: Status::TempFail.code(),
                message: format!("reload rejected: {reason}"),
            },
        };
        for waiter in std::mem::take(&mut self.reloads.waiters) {
            self.reply(waiter, &response);
        }
    }

    /// Every worker is gone: clean up, answer `hawkey stop`, and say how
    /// the master ends.
    fn exit(&mut self, code: ExitCode) -> Status {
        let status = match code {
            ExitCode::Clean => {
                let dropped = crate::logging::dropped_lines();
                if dropped > 0 {
                    tracing::warn!("{dropped} log lines could not be written and were dropped");
                }
                tracing::info!("stopped");
                Status::Ok
            }
            ExitCode::NoWorkerStarted => Status::NoWorker,
        };
        // Clean up before answering `hawkey stop`: when it returns,
        // nothing of this master is left to trip over.
        if let Some(file) = self.pidfile.take()
            && let Err(error) = file.remove()
        {
            tracing::warn!("{error}");
        }
        if let Some(control) = self.control.as_mut() {
            control.unlink();
        }
        for waiter in std::mem::take(&mut self.stop_waiters) {
            self.reply(
                waiter,
                &Response::Ok {
                    message: "stopped".into(),
                },
            );
        }
        status
    }
}

/// What went wrong on a child's way to `execve`, for the operator: a
/// failed exec names the program and the OS error, as the shell would
/// ("cannot execute /usr/bin/nodee: No such file or directory (os error
/// 2)"); another step says which.
fn start_failure(error: &crate::spawn::Error, program: Option<&std::ffi::CStr>) -> String {
    match (error.exec_errno(), program) {
        (Some(errno), Some(program)) => format!(
            "cannot execute {}: {}",
            program.to_string_lossy(),
            std::io::Error::from_raw_os_error(errno as i32)
        ),
        _ => error.to_string(),
    }
}

/// Signals a worker's process group (the worker leads it); if the group is
/// already gone, the worker itself. Whether the group got it.
fn send(pid: Pid, signal: Signal) -> bool {
    if killpg(pid, signal).is_err() {
        let _ = nix::sys::signal::kill(pid, signal);
        return false;
    }
    true
}
