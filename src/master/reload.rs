//! Reloads (SIGHUP, `hawkey reload`) and the other control requests.
//!
//! A SIGHUP is what systemd sends for `systemctl reload` under
//! `Type=notify-reload` (systemd ≥ 253, see `systemd.service(5)`): it then
//! waits for `RELOADING=1` with a `MONOTONIC_USEC=` newer than its signal,
//! and for `READY=1` after it, before the reload job ends. So every SIGHUP
//! gets that pair, whatever becomes of it: a rolling reload announces
//! `RELOADING=1` as it starts and `READY=1` when the new generation serves;
//! a SIGHUP during a reload announces `RELOADING=1`, which that reload's
//! `READY=1` answers; a config that cannot be loaded gets both at once,
//! `STATUS=` saying why. Without that, `systemctl reload` would hang until
//! `TimeoutStartSec=`. systemd 253 to 257 take no failure from the service
//! itself in that protocol (`ERRNO=` only sets `StatusErrno=`): the unit's
//! `ExecReload=hawkey check` is what fails the job (see systemd/hawkey.service).

use sd_notify::NotifyState;

use super::actions::monotonic_now;
use super::listeners::{self, Listener, Origin};
use super::supervisor::Event;
use super::{Error, Loader, Master};
use crate::config;
use crate::control::{ClientId, Request, Response};
use crate::exit::Status;

/// The reloads' state: where the config is read again from, the error of
/// the last reload (shown in `STATUS=` until one works), and the
/// `hawkey reload --wait` clients of the reload under way.
pub(super) struct Reloads {
    pub(super) loader: Box<Loader>,
    pub(super) error: Option<String>,
    pub(super) waiters: Vec<ClientId>,
}

impl Reloads {
    pub(super) fn new(loader: Box<Loader>) -> Reloads {
        Reloads {
            loader,
            error: None,
            waiters: Vec::new(),
        }
    }
}

impl Master<'_> {
    /// Answers a request from the control socket.
    pub(super) fn on_control(&mut self, client: ClientId, request: Request) {
        match request {
            Request::Status => {
                let report = self.status_report();
                self.reply(client, &Response::Status(report));
            }
            Request::Reload { wait } => {
                tracing::info!("reload requested over the control socket");
                if wait {
                    self.reload(Some(client));
                } else {
                    self.reload(None);
                    self.reply(
                        client,
                        &Response::Ok {
                            message: "reload started".into(),
                        },
                    );
                }
            }
            Request::Stop => {
                tracing::info!("stop requested over the control socket");
                self.stop_waiters.push(client);
                self.queue.push_back(Event::Stop { fast: false });
            }
        }
    }

    /// SIGHUP: a reload, bracketed by `RELOADING=1` … `READY=1` whatever
    /// becomes of it (module docs). `RELOADING=1` goes first, before the
    /// config is read, so that it reaches systemd before the unit's
    /// `ExecReload=hawkey check` (started beside the signal) ends. Before
    /// the pool was first ready, and while it stops, nothing is
    /// announced: `READY=1` would be a lie.
    pub(super) fn reload_signalled(&mut self) {
        let announce = self.upstream.ready_announced && !self.pool.is_stopping();
        let reloading = self.pool.is_reloading();
        if announce {
            self.upstream
                .notify(&[NotifyState::Reloading, monotonic_now()]);
            // A reload under way ends with READY=1: it answers this one.
            self.upstream.reloading_announced = !reloading;
        }
        self.reload(None);
        self.upstream.reloading_announced = false;
        if announce && !reloading && !self.pool.is_reloading() && !self.pool.is_stopping() {
            // No reload started (the config was refused): over at once.
            let line = self.status_line();
            self.upstream.send_ready(&[], line);
        }
    }

    /// Reads the config again and, if it is valid, starts a rolling reload;
    /// `waiter` is answered when it ends (or at once, if it cannot start).
    pub(super) fn reload(&mut self, waiter: Option<ClientId>) {
        if self.pool.is_reloading() {
            if let Some(w) = waiter {
                let message = "reload rejected: a reload is already in progress".to_string();
                self.reply(
                    w,
                    &Response::Error {
                        exit_code: Status::TempFail.code(),
                        message,
                    },
                );
            }
            return;
        }
        let generation = match self.prepare_reload() {
            Ok(generation) => generation,
            Err((status, message)) => {
                tracing::error!("reload failed, the running workers are unchanged: {message}");
                self.reloads.error = Some(message.clone());
                if let Some(w) = waiter {
                    let exit_code = status.code();
                    self.reply(w, &Response::Error { exit_code, message });
                }
                return;
            }
        };
        self.reloads.error = None;
        if let Some(w) = waiter {
            self.reloads.waiters.push(w);
        }
        let settings = self.generations.all[&generation].settings;
        // A reload cannot end the master: only `Exit` returns a status.
        let _ = self.handle(Event::Reload {
            settings,
            generation,
        });
    }

    /// Reads and validates the config and prepares its generation, or says
    /// why not (nothing changed then).
    fn prepare_reload(&mut self) -> Result<u64, (Status, String)> {
        let (config, source) =
            (self.reloads.loader)().map_err(|e| (Status::Config, e.to_string()))?;
        let current = &self.generations.all[&self.pool.generation()];
        if config.pidfile != current.config.pidfile
            || config.control_socket != current.config.control_socket
            || config.log != current.config.log
        {
            tracing::warn!(
                "pidfile, control_socket and log changes take effect at the next restart"
            );
        }
        let listeners = self
            .reload_listeners(&current.listeners, &config.listen)
            .map_err(|e| (Status::Failure, e.to_string()))?;
        let generation = self
            .prepare(config, listeners)
            .map_err(|e: Error| (e.status(), e.to_string()))?;
        tracing::info!("configuration from {source} is generation {generation}");
        Ok(generation)
    }

    /// The listeners of a new generation: systemd's as they are; otherwise
    /// the config's, reusing the sockets of addresses already bound.
    fn reload_listeners(
        &self,
        current: &[Listener],
        specs: &[config::Listen],
    ) -> Result<Vec<Listener>, listeners::Error> {
        if self.origin.listeners_from_systemd {
            return Ok(current.to_vec());
        }
        specs
            .iter()
            .map(|spec| {
                let same = current
                    .iter()
                    .find(|l| matches!(l.origin(), Origin::Bound(a) if *a == spec.address));
                match same {
                    Some(l) => Ok(l.renamed(&spec.name)),
                    None => {
                        let l = listeners::bind_listener(spec)?;
                        tracing::info!("listening on {l}");
                        Ok(l)
                    }
                }
            })
            .collect()
    }
}
