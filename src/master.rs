//! The master: start-up in a safe order, then one event loop.
//!
//! Start-up order, each step before the next can need it:
//! 1. signals blocked (a SIGTERM from now on waits for the loop),
//! 2. config read and validated (nothing started on error: exit 78),
//! 3. logging,
//! 4. pidfile locked (a second instance stops here: exit 75),
//! 5. listeners taken from systemd or bound,
//! 6. worker notify socket, spawn plan, then the loop.
//!
//! The loop `poll(2)`s the signalfd and the worker notify socket with the
//! nearest supervisor deadline as its timeout, turns what it reads into
//! [`Event`]s, feeds them to the pure [`Pool`] and carries out the
//! [`Action`]s it returns. The master is single-threaded for its whole
//! life: no runtime, no helper threads; that is what makes `fork()` in
//! [`crate::spawn`] sound.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use sd_notify::NotifyState;

use crate::config::{AppKind, Config, Ready};
use crate::listener::{self, Listener, Origin};
use crate::notify::{Inbox, Notifier};
use crate::pidfile::{self, Pidfile};
use crate::reap::reap_all;
use crate::signals::{Request, Signals};
use crate::spawn::{self, Plan};
use crate::supervisor::{Action, Event, ExitCode, Pool, Settings};
use crate::{Error, cpu};

/// The world as the master found it at start-up, read once.
pub struct Environment {
    pub vars: Vec<(OsString, OsString)>,
    pub argv0: OsString,
}

impl Environment {
    pub fn capture() -> Environment {
        Environment {
            vars: std::env::vars_os().collect(),
            argv0: std::env::args_os()
                .next()
                .unwrap_or_else(|| "hawkey".into()),
        }
    }

    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_os_str())
    }

    /// Whether a service manager runs us (systemd sets `INVOCATION_ID`).
    fn under_systemd(&self) -> bool {
        self.get("INVOCATION_ID").is_some() || self.get("NOTIFY_SOCKET").is_some()
    }
}

/// Resolves the pidfile path of the config against the runtime directory.
pub fn pidfile_path(config: &Config, env: &Environment) -> Option<PathBuf> {
    match &config.pidfile {
        crate::config::Pidfile::Disabled => None,
        crate::config::Pidfile::Path(p) => Some(p.clone()),
        crate::config::Pidfile::Default => pidfile::runtime_dir(
            env.get("RUNTIME_DIRECTORY"),
            env.get("XDG_RUNTIME_DIR"),
            nix::unistd::geteuid().is_root(),
        )
        .map(|dir| dir.join("hawkey.pid")),
    }
}

/// Runs the master until it stops; returns the process exit code.
pub fn run(
    config: Config,
    signals: Signals,
    env: Environment,
    worker_log: String,
) -> Result<u8, Error> {
    let pid = std::process::id();
    let mut pidfile = match pidfile_path(&config, &env) {
        Some(path) => {
            let (file, stale) = pidfile::acquire(&path).map_err(Error::Pidfile)?;
            if let Some(stale) = stale {
                tracing::info!("replaced stale pidfile {} of pid {stale}", path.display());
            }
            Some(file)
        }
        None => {
            tracing::info!("no pidfile");
            None
        }
    };
    let result = serve(&config, signals, &env, &worker_log, &mut pidfile, pid);
    if let Some(file) = pidfile
        && let Err(error) = file.remove()
    {
        tracing::warn!("{error}");
    }
    result
}

fn serve(
    config: &Config,
    mut signals: Signals,
    env: &Environment,
    worker_log: &str,
    pidfile: &mut Option<Pidfile>,
    pid: u32,
) -> Result<u8, Error> {
    let listeners: Vec<Listener> = match listener::from_systemd().map_err(Error::Listener)? {
        Some(passed) => passed,
        None => listener::bind_all(&config.listen).map_err(Error::Listener)?,
    };
    for l in &listeners {
        match l.origin {
            Origin::Systemd => tracing::info!("listening on {l}"),
            Origin::Bound(_) => tracing::info!("listening on {l}"),
        }
    }
    let result = supervise(
        config,
        &mut signals,
        env,
        worker_log,
        pidfile,
        pid,
        &listeners,
    );
    listener::release(listeners);
    result
}

#[allow(clippy::too_many_arguments)]
fn supervise(
    config: &Config,
    signals: &mut Signals,
    env: &Environment,
    worker_log: &str,
    pidfile: &mut Option<Pidfile>,
    pid: u32,
    listeners: &[Listener],
) -> Result<u8, Error> {
    // As PID 1 of a container, or started by hand, orphans of workers are
    // ours to reap; under systemd, the service's cgroup holds them anyway.
    if pid == 1 || !env.under_systemd() {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            tracing::warn!(
                "failed to become a child subreaper: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    let upstream = Notifier::connect(env.get("NOTIFY_SOCKET")).map_err(Error::Notify)?;
    let inbox = Inbox::bind().map_err(Error::Notify)?;
    let count = match config.workers.count {
        crate::config::WorkerCount::Fixed(n) => n as usize,
        crate::config::WorkerCount::Auto => cpu::available().count,
    };
    let running_as_root = nix::unistd::geteuid().is_root();
    if !running_as_root && (config.workers.user.is_some() || config.workers.group.is_some()) {
        tracing::warn!("workers.user and workers.group are ignored: hawkey is not running as root");
    }
    let generation = 1;
    let plan = Plan::new(spawn::Inputs {
        config,
        listeners,
        environment: &env.vars,
        inbox: inbox.name(),
        worker_log,
        argv0: &env.argv0,
        generation,
        running_as_root,
    })
    .map_err(Error::Spawn)?;
    let workers = &config.workers;
    let settings = Settings {
        count,
        ready_on_start: workers.app == AppKind::Exec && workers.ready == Ready::Started,
        ready_timeout: workers.ready_timeout.0,
        stop_signal: workers.stop_signal.0,
        stop_timeout: workers.stop_timeout.0,
        backoff_initial: workers.restart_backoff.initial.0,
        backoff_max: workers.restart_backoff.max.0,
    };
    tracing::info!(
        "hawkey {} (pid {pid}) starting {count} {} workers",
        env!("CARGO_PKG_VERSION"),
        match workers.app {
            AppKind::Builtin => "builtin",
            AppKind::Exec => "exec",
        }
    );
    let started = Instant::now();
    let mut pool = Pool::new(settings, generation);
    let mut queue = VecDeque::from([Event::Start]);
    let mut status = String::new();
    loop {
        while let Some(event) = queue.pop_front() {
            for action in pool.handle(event, Instant::now()) {
                match action {
                    Action::Spawn { slot } => queue.push_back(match plan.spawn(slot) {
                        Ok(pid) => Event::Spawned { slot, pid },
                        Err(error) => Event::SpawnFailed {
                            slot,
                            error: error.to_string(),
                        },
                    }),
                    Action::Signal { pid, signal } => send(pid, signal),
                    Action::AnnounceReady => {
                        if let Some(file) = pidfile.as_mut()
                            && let Err(error) = file.publish(pid)
                        {
                            tracing::error!("{error}");
                        }
                        tracing::info!(
                            "all {} workers ready in {}ms",
                            pool.slots().len(),
                            started.elapsed().as_millis()
                        );
                        let line = pool.status_line();
                        notify(
                            &upstream,
                            &[
                                NotifyState::Ready,
                                NotifyState::MainPid(pid),
                                NotifyState::Status(&line),
                            ],
                        );
                        status = line;
                    }
                    Action::AnnounceStopping => notify(&upstream, &[NotifyState::Stopping]),
                    Action::Exit(code) => {
                        return Ok(match code {
                            ExitCode::Clean => {
                                tracing::info!("stopped");
                                0
                            }
                            ExitCode::NoWorkerStarted => crate::exit::NO_WORKER,
                        });
                    }
                }
            }
        }
        let line = pool.status_line();
        if line != status {
            notify(&upstream, &[NotifyState::Status(&line)]);
            status = line;
        }

        let timeout = match pool.next_deadline() {
            None => PollTimeout::NONE,
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                // Round up so the deadline has passed when poll returns.
                let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(inbox.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(error) => return Err(Error::Poll(error)),
        }
        for request in signals.drain() {
            match request {
                Request::Stop(signal) => {
                    tracing::info!("received {}", signal.as_str());
                    queue.push_back(Event::Stop { fast: false });
                }
                Request::FastStop => queue.push_back(Event::Stop { fast: true }),
                Request::Reload => tracing::warn!(
                    "received SIGHUP: reloading is not supported by this version; the running workers are unchanged"
                ),
                Request::Grow => queue.push_back(Event::Grow),
                Request::Shrink => queue.push_back(Event::Shrink),
                Request::Reap => {}
            }
        }
        // Reap on every wake-up, not only on SIGCHLD: cheap, and a merged
        // or early signal can never leave a zombie behind.
        for (pid, exit) in reap_all() {
            queue.push_back(Event::Exited { pid, exit });
        }
        for (pid, message) in inbox.drain() {
            if message.ready {
                queue.push_back(Event::Ready { pid });
            }
        }
        queue.push_back(Event::Tick);
    }
}

/// Signals a worker's process group (the worker leads it); if the group is
/// already gone, the worker itself.
fn send(pid: nix::unistd::Pid, signal: Signal) {
    if killpg(pid, signal).is_err() {
        let _ = nix::sys::signal::kill(pid, signal);
    }
}

fn notify(upstream: &Notifier, states: &[NotifyState<'_>]) {
    if let Err(error) = upstream.send(states) {
        tracing::warn!("failed to notify the service manager: {error}");
    }
}
