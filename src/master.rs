//! The master: start-up in a safe order, then one event loop.
//!
//! Start-up order, each step before the next can need it:
//! 1. signals blocked (a SIGTERM from now on waits for the loop),
//! 2. config read and validated (nothing started on error: exit 78),
//! 3. logging,
//! 4. pidfile locked (a second instance stops here: exit 75),
//! 5. listeners taken from systemd or bound,
//! 6. worker notify socket, control socket, spawn plan, then the loop.
//!
//! The loop `poll(2)`s the signalfd, the worker notify socket and the
//! control socket with the nearest deadline as its timeout (a supervisor
//! deadline, or the next upstream watchdog ping), turns what it reads into
//! [`Event`]s, feeds them to the pure [`Pool`] and carries out the
//! [`Action`]s it returns. The master is single-threaded for its whole
//! life: no runtime, no helper threads; that is what makes `fork()` in
//! [`crate::spawn`] sound.
//!
//! A reload reads the config again from where it came from. An invalid one
//! changes nothing: the error is logged, shown in `STATUS=` and returned to
//! `hawkey reload --wait` (exit 78). A valid one becomes a new generation:
//! its own spawn plan and listener set (sockets from systemd are kept as
//! they are; self-bound ones the new config keeps are reused, new ones
//! bound, dropped ones closed once no generation uses them), then the
//! pool's rolling replacement.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use sd_notify::NotifyState;

use crate::config::{self, AppKind, Config, Ready};
use crate::control::{self, ClientId, Request, Response};
use crate::listener::{self, Listener, Origin};
use crate::notify::{Inbox, Notifier, Sender};
use crate::pidfile::{self, Pidfile};
use crate::reap::reap_all;
use crate::signals::{Request as SignalRequest, Signals};
use crate::spawn::{self, Plan};
use crate::supervisor::{Action, Event, ExitCode, Pool, ReloadOutcome, Settings};
use crate::{Error, cpu, exit};

/// A loop wake-up this much later than its timeout means the master was
/// not running (SIGSTOP, a frozen VM): see [`Event::Stalled`].
const STALL_SLACK: Duration = Duration::from_secs(1);

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

    /// systemd's watchdog for this process: `WATCHDOG_USEC`, if
    /// `WATCHDOG_PID` is unset or names us (`sd_watchdog_enabled(3)`).
    fn watchdog(&self) -> Option<Duration> {
        let usec: u64 = self.get("WATCHDOG_USEC")?.to_str()?.parse().ok()?;
        if let Some(pid) = self.get("WATCHDOG_PID")
            && pid.to_str()?.parse::<u32>().ok()? != std::process::id()
        {
            return None;
        }
        (usec > 0).then(|| Duration::from_micros(usec))
    }
}

fn runtime_dir(env: &Environment) -> Option<PathBuf> {
    pidfile::runtime_dir(
        env.get("RUNTIME_DIRECTORY"),
        env.get("XDG_RUNTIME_DIR"),
        nix::unistd::geteuid().is_root(),
    )
}

/// Resolves the pidfile path of the config against the runtime directory.
pub fn pidfile_path(config: &Config, env: &Environment) -> Option<PathBuf> {
    match &config.pidfile {
        config::Pidfile::Disabled => None,
        config::Pidfile::Path(p) => Some(p.clone()),
        config::Pidfile::Default => runtime_dir(env).map(|dir| dir.join("hawkey.pid")),
    }
}

/// Resolves the control socket path: beside the pidfile (same name,
/// `.sock`), else `hawkey.sock` in the runtime directory.
pub fn control_path(config: &Config, env: &Environment) -> Option<PathBuf> {
    match &config.control_socket {
        config::Pidfile::Disabled => None,
        config::Pidfile::Path(p) => Some(p.clone()),
        config::Pidfile::Default => match pidfile_path(config, env) {
            Some(pid) => Some(pid.with_extension("sock")),
            None => runtime_dir(env).map(|dir| dir.join("hawkey.sock")),
        },
    }
}

/// Reads the configuration again, from where it was first read.
pub type Loader = dyn Fn() -> Result<(Config, String), config::Error>;

/// What the master was started with, besides the config.
pub struct Startup {
    pub signals: Signals,
    pub env: Environment,
    /// `HAWKEY_LOG` for builtin workers.
    pub worker_log: String,
    /// Whether the builtin app sends heartbeats (`App::HEARTBEATS`).
    pub app_heartbeats: bool,
}

/// Runs the master until it stops; returns the process exit code.
pub fn run(config: Config, loader: Box<Loader>, startup: Startup) -> Result<u8, Error> {
    let pid = std::process::id();
    let mut pidfile = match pidfile_path(&config, &startup.env) {
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
    let result =
        Master::start(config, loader, startup, &mut pidfile, pid).and_then(|mut m| m.run());
    if let Some(file) = pidfile
        && let Err(error) = file.remove()
    {
        tracing::warn!("{error}");
    }
    result
}

/// One configuration generation: what it was read as and how its workers start.
struct Generation {
    config: Config,
    settings: Settings,
    plan: Plan,
}

struct Master<'p> {
    env: Environment,
    signals: Signals,
    loader: Box<Loader>,
    upstream: Notifier,
    inbox: Inbox,
    control: Option<control::Server>,
    pidfile: &'p mut Option<Pidfile>,
    pid: u32,
    started: Instant,
    worker_log: String,
    app_heartbeats: bool,
    running_as_root: bool,
    listeners_from_systemd: bool,
    generations: BTreeMap<u64, Generation>,
    next_generation: u64,
    pool: Pool,
    queue: VecDeque<Event>,
    status_sent: String,
    reload_error: Option<String>,
    reload_waiters: Vec<ClientId>,
    stop_waiters: Vec<ClientId>,
    watchdog: Option<Duration>,
    next_ping: Option<Instant>,
    unhealthy_logged: bool,
    ready_announced: bool,
    /// Release the start-up pages before the loop next sleeps (see
    /// `memory`): set when the pool becomes ready.
    release_pages: bool,
}

impl<'p> Master<'p> {
    fn start(
        config: Config,
        loader: Box<Loader>,
        startup: Startup,
        pidfile: &'p mut Option<Pidfile>,
        pid: u32,
    ) -> Result<Master<'p>, Error> {
        let Startup {
            signals,
            env,
            worker_log,
            app_heartbeats,
        } = startup;
        let (listeners, listeners_from_systemd) =
            match listener::from_systemd().map_err(Error::Listener)? {
                Some(passed) => (passed, true),
                None => (
                    listener::bind_all(&config.listen).map_err(Error::Listener)?,
                    false,
                ),
            };
        for l in &listeners {
            tracing::info!("listening on {l}");
        }
        // As PID 1 of a container, or started by hand, orphans of workers
        // are ours to reap; under systemd, the service's cgroup holds them.
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
        let control = match control_path(&config, &env) {
            Some(path) => match control::Server::bind(&path) {
                Ok(server) => Some(server),
                Err(error) => {
                    // Signals and the pidfile still work; say what is missing.
                    tracing::warn!("no control socket: {error}");
                    None
                }
            },
            None => None,
        };
        let running_as_root = nix::unistd::geteuid().is_root();
        let watchdog = env.watchdog();
        let mut master = Master {
            env,
            signals,
            loader,
            upstream,
            inbox,
            control,
            pidfile,
            pid,
            started: Instant::now(),
            worker_log,
            app_heartbeats,
            running_as_root,
            listeners_from_systemd,
            generations: BTreeMap::new(),
            next_generation: 1,
            // Replaced below, once the first generation exists.
            pool: Pool::new(
                Settings {
                    count: 1,
                    ready_on_start: false,
                    ready_timeout: Duration::ZERO,
                    heartbeat: None,
                    stop_signal: Signal::SIGTERM,
                    stop_timeout: Duration::ZERO,
                    backoff_initial: Duration::ZERO,
                    backoff_max: Duration::ZERO,
                },
                0,
            ),
            queue: VecDeque::new(),
            status_sent: String::new(),
            reload_error: None,
            reload_waiters: Vec::new(),
            stop_waiters: Vec::new(),
            watchdog,
            next_ping: watchdog.map(|_| Instant::now()),
            unhealthy_logged: false,
            ready_announced: false,
            release_pages: false,
        };
        if let Some(w) = watchdog {
            tracing::info!(
                "systemd watchdog: pinging every {} while healthy",
                config::Span(w / 2)
            );
        }
        let generation = master.prepare(config, listeners)?;
        let g = &master.generations[&generation];
        if !running_as_root && (g.config.workers.user.is_some() || g.config.workers.group.is_some())
        {
            tracing::warn!(
                "workers.user and workers.group are ignored: hawkey is not running as root"
            );
        }
        tracing::info!(
            "hawkey {} (pid {pid}) starting {} {} workers",
            env!("CARGO_PKG_VERSION"),
            g.settings.count,
            match g.config.workers.app {
                AppKind::Builtin => "builtin",
                AppKind::Exec => "exec",
            }
        );
        master.pool = Pool::new(g.settings, generation);
        master.queue.push_back(Event::Start);
        Ok(master)
    }

    /// Makes a new generation from a validated config and its listeners.
    fn prepare(&mut self, config: Config, listeners: Vec<Listener>) -> Result<u64, Error> {
        let generation = self.next_generation;
        let workers = &config.workers;
        let count = match workers.count {
            config::WorkerCount::Fixed(n) => n as usize,
            config::WorkerCount::Auto => cpu::available().count,
        };
        let heartbeat = workers
            .heartbeat_timeout
            .resolve(workers.app, self.app_heartbeats);
        let plan = Plan::new(spawn::Inputs {
            config: &config,
            listeners: &listeners,
            heartbeat,
            environment: &self.env.vars,
            inbox: self.inbox.name(),
            journal: crate::logging::stderr_is_journal(self.env.get("JOURNAL_STREAM")),
            worker_log: &self.worker_log,
            argv0: &self.env.argv0,
            generation,
            running_as_root: self.running_as_root,
        })
        .map_err(Error::Spawn)?;
        let settings = Settings {
            count,
            ready_on_start: workers.app == AppKind::Exec && workers.ready == Ready::Started,
            ready_timeout: workers.ready_timeout.0,
            heartbeat,
            stop_signal: workers.stop_signal.0,
            stop_timeout: workers.stop_timeout.0,
            backoff_initial: workers.restart_backoff.initial.0,
            backoff_max: workers.restart_backoff.max.0,
        };
        self.generations.insert(
            generation,
            Generation {
                config,
                settings,
                plan,
            },
        );
        self.next_generation += 1;
        Ok(generation)
    }

    fn run(&mut self) -> Result<u8, Error> {
        loop {
            if let Some(code) = self.process_queue() {
                return Ok(code);
            }
            // Generations no process and no rollback needs any more go,
            // and with them listeners no generation uses.
            let in_use = self.pool.generations_in_use();
            self.generations.retain(|g, _| in_use.contains(g));
            self.update_status();
            self.ping_watchdog();
            if std::mem::take(&mut self.release_pages) {
                let released = crate::memory::release_startup_pages();
                tracing::debug!("released {released} KiB of start-up pages");
            }
            self.wait()?;
        }
    }

    /// Feeds queued events to the pool and carries out its actions until
    /// the queue is empty; `Some(code)` when the master is done.
    fn process_queue(&mut self) -> Option<u8> {
        while let Some(event) = self.queue.pop_front() {
            for action in self.pool.handle(event, Instant::now()) {
                if let Some(code) = self.act(action) {
                    return Some(code);
                }
            }
        }
        None
    }

    fn act(&mut self, action: Action) -> Option<u8> {
        match action {
            Action::Spawn { slot, generation } => {
                let Some(g) = self.generations.get(&generation) else {
                    self.queue.push_back(Event::SpawnFailed {
                        slot,
                        generation,
                        error: format!("no plan for generation {generation}"),
                        master_fault: true,
                    });
                    return None;
                };
                let event = match g.plan.spawn(slot) {
                    Ok(pid) => Event::Spawned {
                        slot,
                        generation,
                        pid,
                    },
                    Err(error) => Event::SpawnFailed {
                        slot,
                        generation,
                        master_fault: !error.is_worker_fault(),
                        error: error.to_string(),
                    },
                };
                if !self.ready_announced || self.pool.is_reloading() {
                    // Starting takes as long as it legitimately takes: keep
                    // systemd's start/reload timeout ahead of ready_timeout.
                    let extend = g.settings.ready_timeout + Duration::from_secs(5);
                    self.notify(&[NotifyState::ExtendTimeoutUsec(
                        extend.as_micros().min(u32::MAX as u128) as u32,
                    )]);
                }
                self.queue.push_back(event);
            }
            Action::Signal { pid, signal } => send(pid, signal),
            Action::AnnounceReady => {
                if let Some(file) = self.pidfile.as_mut()
                    && let Err(error) = file.publish(self.pid)
                {
                    tracing::error!("{error}");
                }
                if !self.ready_announced {
                    self.ready_announced = true;
                    tracing::info!(
                        "all {} workers ready, {}ms after start",
                        self.pool.slots().len(),
                        self.started.elapsed().as_millis()
                    );
                }
                // Start-up (or a reload) is over: its one-off code need
                // not stay in the master's page tables. Done once the loop
                // is about to sleep, after the rest of this turn's work.
                self.release_pages = true;
                let line = self.status_line();
                self.notify(&[
                    NotifyState::Ready,
                    NotifyState::MainPid(self.pid),
                    NotifyState::Status(&line),
                ]);
                self.status_sent = line;
            }
            Action::AnnounceReloading => {
                let now =
                    NotifyState::monotonic_usec_now().unwrap_or(NotifyState::MonotonicUsec(0));
                self.notify(&[NotifyState::Reloading, now]);
            }
            Action::AnnounceStopping => {
                let stop_timeout = self
                    .generations
                    .values()
                    .map(|g| g.settings.stop_timeout)
                    .max()
                    .unwrap_or_default();
                let extend = (stop_timeout + Duration::from_secs(5))
                    .as_micros()
                    .min(u32::MAX as u128) as u32;
                self.notify(&[
                    NotifyState::Stopping,
                    NotifyState::ExtendTimeoutUsec(extend),
                ]);
            }
            Action::ReloadFinished(outcome) => {
                let response = match outcome {
                    ReloadOutcome::Done { generation } => Response::Ok {
                        message: format!("reload finished: generation {generation}"),
                    },
                    ReloadOutcome::RolledBack { reason } => {
                        let message = format!("reload failed and was rolled back: {reason}");
                        self.reload_error = Some(message.clone());
                        Response::Error {
                            exit_code: exit::FAILURE,
                            message,
                        }
                    }
                    ReloadOutcome::Rejected { reason } => Response::Error {
                        exit_code: exit::TEMP_FAIL,
                        message: format!("reload rejected: {reason}"),
                    },
                };
                for waiter in std::mem::take(&mut self.reload_waiters) {
                    self.reply(waiter, &response);
                }
            }
            Action::Exit(code) => {
                let code = match code {
                    ExitCode::Clean => {
                        tracing::info!("stopped");
                        exit::OK
                    }
                    ExitCode::NoWorkerStarted => exit::NO_WORKER,
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
                return Some(code);
            }
        }
        None
    }

    /// Blocks in poll until something happens or the nearest deadline, then
    /// queues what happened.
    fn wait(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        let deadline = [
            self.pool.next_deadline(),
            self.next_ping,
            self.control.as_ref().and_then(|c| c.next_deadline()),
        ]
        .into_iter()
        .flatten()
        .min();
        let requested = deadline.map(|d| d.saturating_duration_since(now));
        let timeout = match requested {
            None => PollTimeout::NONE,
            // Round up so the deadline has passed when poll returns.
            Some(wait) => {
                let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        {
            let mut fds = vec![
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.inbox.as_fd(), PollFlags::POLLIN),
            ];
            if let Some(control) = &self.control {
                fds.extend(
                    control
                        .poll_fds()
                        .into_iter()
                        .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
                );
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(error) => return Err(Error::Poll(error)),
            }
        }
        let woke = Instant::now();
        // Notifications first: a heartbeat that waited in the queue while
        // the master was stopped must count before any deadline does.
        for (sender, message) in self.inbox.drain() {
            let Some(pid) = self.credited_worker(sender) else {
                tracing::debug!(
                    pid = sender.pid.as_raw(),
                    "ignoring a notify message from pid {}: not a worker's",
                    sender.pid
                );
                continue;
            };
            if message.ready {
                self.queue.push_back(Event::Ready { pid });
            }
            if message.watchdog {
                self.queue.push_back(Event::Heartbeat { pid });
            }
            if let Some(text) = message.status {
                self.queue.push_back(Event::WorkerStatus { pid, text });
            }
        }
        // Stopped while asleep: woken well after the timeout. Stopped while
        // busy (the timeout was computed after): SIGCONT says so.
        let mut stalled = requested
            .is_some_and(|requested| woke.saturating_duration_since(now) > requested + STALL_SLACK);
        for request in self.signals.drain() {
            match request {
                SignalRequest::Stop(signal) => {
                    tracing::info!("received {}", signal.as_str());
                    self.queue.push_back(Event::Stop { fast: false });
                }
                SignalRequest::FastStop => self.queue.push_back(Event::Stop { fast: true }),
                SignalRequest::Reload => {
                    tracing::info!("received SIGHUP: reloading");
                    self.reload(None);
                }
                SignalRequest::Grow => self.queue.push_back(Event::Grow),
                SignalRequest::Shrink => self.queue.push_back(Event::Shrink),
                SignalRequest::Reap => {}
                SignalRequest::Continued => stalled = true,
            }
        }
        if stalled {
            self.queue.push_back(Event::Stalled);
        }
        // Reap on every wake-up, not only on SIGCHLD: cheap, and a merged
        // or early signal can never leave a zombie behind.
        for (pid, exit) in reap_all() {
            self.queue.push_back(Event::Exited { pid, exit });
        }
        let requests = match self.control.as_mut() {
            Some(control) => control.drain(woke),
            None => Vec::new(),
        };
        for (client, request) in requests {
            self.on_control(client, request);
        }
        self.queue.push_back(Event::Tick);
        Ok(())
    }

    /// The worker a notify message counts for: the sender itself, or the
    /// worker whose process group the sender is in. Each worker leads its
    /// own group, so a helper it runs (`systemd-notify --ready`, which is
    /// how Node.js apps notify) speaks for it — as systemd's
    /// `NotifyAccess=all` lets a service's helpers, by cgroup. Anyone else
    /// is not heard.
    fn credited_worker(&self, sender: Sender) -> Option<nix::unistd::Pid> {
        if self.pool.has_worker(sender.pid) {
            return Some(sender.pid);
        }
        sender.group.filter(|g| self.pool.has_worker(*g))
    }

    fn on_control(&mut self, client: ClientId, request: Request) {
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

    /// Reads the config again and, if it is valid, starts a rolling reload.
    fn reload(&mut self, waiter: Option<ClientId>) {
        let fail = |master: &mut Master<'_>, exit_code: u8, message: String| {
            tracing::error!("reload failed, the running workers are unchanged: {message}");
            master.reload_error = Some(message.clone());
            if let Some(w) = waiter {
                master.reply(w, &Response::Error { exit_code, message });
            }
        };
        if self.pool.is_reloading() {
            if let Some(w) = waiter {
                let message = "reload rejected: a reload is already in progress".to_string();
                self.reply(
                    w,
                    &Response::Error {
                        exit_code: exit::TEMP_FAIL,
                        message,
                    },
                );
            }
            return;
        }
        let (config, source) = match (self.loader)() {
            Ok(loaded) => loaded,
            Err(error) => return fail(self, exit::CONFIG, error.to_string()),
        };
        let current = &self.generations[&self.pool.generation()];
        if config.pidfile != current.config.pidfile
            || config.control_socket != current.config.control_socket
            || config.log != current.config.log
        {
            tracing::warn!(
                "pidfile, control_socket and log changes take effect at the next restart"
            );
        }
        let listeners = match self.reload_listeners(current.plan.listeners(), &config.listen) {
            Ok(listeners) => listeners,
            Err(error) => return fail(self, exit::FAILURE, error.to_string()),
        };
        let generation = match self.prepare(config, listeners) {
            Ok(g) => g,
            Err(error) => return fail(self, error.exit_code(), error.to_string()),
        };
        tracing::info!("configuration from {source} is generation {generation}");
        self.reload_error = None;
        let settings = self.generations[&generation].settings;
        let actions = self.pool.handle(
            Event::Reload {
                settings,
                generation,
            },
            Instant::now(),
        );
        if let Some(w) = waiter {
            self.reload_waiters.push(w);
        }
        for action in actions {
            // A reload cannot end the master; `act` only returns Some on Exit.
            let _ = self.act(action);
        }
    }

    /// The listeners of a new generation: systemd's as they are; otherwise
    /// the config's, reusing the sockets of addresses already bound.
    fn reload_listeners(
        &self,
        current: &[Listener],
        specs: &[config::Listen],
    ) -> Result<Vec<Listener>, listener::Error> {
        if self.listeners_from_systemd {
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
                        let l = listener::bind_listener(spec)?;
                        tracing::info!("listening on {l}");
                        Ok(l)
                    }
                }
            })
            .collect()
    }

    fn status_line(&self) -> String {
        let mut line = self.pool.status_line();
        if let Some(error) = &self.reload_error {
            line.push_str("; last reload failed: ");
            line.push_str(error);
        }
        line
    }

    fn update_status(&mut self) {
        let line = self.status_line();
        if line != self.status_sent {
            self.notify(&[NotifyState::Status(&line)]);
            self.status_sent = line;
        }
    }

    /// `WATCHDOG=1` every half watchdog period, from this loop only, and
    /// only while the pool is healthy.
    fn ping_watchdog(&mut self) {
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

    fn status_report(&self) -> control::StatusReport {
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
                    last_exit: None,
                    status: None,
                });
            }
        }
        let listeners = self
            .generations
            .get(&self.pool.generation())
            .map(|g| g.plan.listeners())
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
        }
    }

    fn reply(&mut self, client: ClientId, response: &Response) {
        if let Some(control) = self.control.as_mut() {
            control.reply(client, response);
        }
    }

    fn notify(&self, states: &[NotifyState<'_>]) {
        if let Err(error) = self.upstream.send(states) {
            tracing::warn!("failed to notify the service manager: {error}");
        }
    }
}

/// Signals a worker's process group (the worker leads it); if the group is
/// already gone, the worker itself.
fn send(pid: nix::unistd::Pid, signal: Signal) {
    if killpg(pid, signal).is_err() {
        let _ = nix::sys::signal::kill(pid, signal);
    }
}
