//! The master: start-up in a safe order, then one event loop.
//!
//! Start-up order, each step before the next can need it (the first three
//! are [`crate::cli`]'s `run`):
//! 1. signals blocked (a SIGTERM from now on waits for the loop),
//! 2. config read and validated (nothing started on error: exit 78),
//! 3. logging,
//! 4. pidfile locked (a second instance stops here: exit 75),
//! 5. listeners taken from systemd or bound,
//! 6. worker notify inbox, control socket, spawn plan, then the loop.
//!
//! The loop `poll(2)`s the signalfd, the worker notify inbox and the
//! control socket with the nearest deadline as its timeout (a supervisor
//! deadline, or the next upstream watchdog ping), turns what it reads into
//! [`Event`]s, feeds them to the pure [`Pool`] and carries out the
//! [`Action`]s it returns, logging the [`supervisor::Notice`]s beside
//! them. The master is single-threaded for its whole life: no runtime, no
//! helper threads; that is what makes `fork()` in [`crate::spawn`] sound.
//!
//! A reload reads the config again from where it came from. An invalid one
//! changes nothing: the error is logged, shown in `STATUS=` and returned to
//! `hawkey reload --wait` (exit 78). A valid one becomes a new generation:
//! its own spawn plan and listener set (sockets from systemd are kept as
//! they are; self-bound ones the new config keeps are reused, new ones
//! bound, dropped ones closed once no generation uses them), then the
//! pool's rolling replacement.
//!
//! # Parts
//!
//! - this module: start-up ([`run`]), `Master` and its fixed `Origin`,
//!   and the generations.
//! - `event_loop`: the loop, `poll(2)`, and what each wake-up reads
//!   (`Wake`: what it keeps between wake-ups).
//! - `actions`: what each supervisor [`Action`] does.
//! - `forks`: the children on their way to `execve` (`Forks`).
//! - `notices`: how each supervisor notice is logged.
//! - `reload`: reloads and control requests (`Reloads`: the loader, the
//!   last error, the waiters).
//! - `status`: `STATUS=`, the watchdog ping, the status report
//!   (`Upstream`: the notify connection and what it was told).
//! - `supervisor`: the pure state machine that decides.
//! - `listeners`, `pidfile`, `signals`, `reap`, `inbox`: what the master
//!   owns and reads; `memory`, `cpu`: what it measures of itself.
//! - `sweep`: finding and stopping what stopped workers left behind.
//! - `probe`: seeing starting `ready: auto` workers accept, from `/proc`.
//! - `recycle`: the memory of the workers' process trees, from `/proc`,
//!   for `workers.recycle.memory`.
//! - `tail`: the last line a worker wrote to stderr, for its failed start.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::config::{self, AppKind, Config, Ready};
use crate::control::{self, ClientId};
use crate::env::Environment;
use crate::exit::Status;
use crate::spawn::{self, Plan};
use crate::worker::notify::Notifier;
use inbox::Inbox;
use listeners::Listener;
use pidfile::Pidfile;
use signals::Signals;
use supervisor::{Event, Pool, Settings};

mod actions;
pub(crate) mod cpu;
mod event_loop;
mod forks;
mod inbox;
pub(crate) mod listeners;
mod memory;
mod notices;
pub(crate) mod pidfile;
mod probe;
mod reap;
mod recycle;
mod reload;
pub(crate) mod signals;
mod status;
pub(crate) mod supervisor;
mod sweep;
mod tail;

/// Everything that can end `hawkey run` after the configuration was read,
/// each mapped to its exit status by [`Error::status`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The pidfile could not be locked or written.
    #[error(transparent)]
    Pidfile(pidfile::Error),
    /// The control socket's directory is not fit to hold it.
    #[error(transparent)]
    Directory(config::paths::UnsafeDirectory),
    /// A listener could not be taken or bound.
    #[error(transparent)]
    Listener(listeners::Error),
    /// Signals could not be blocked or the signalfd made.
    #[error("failed to set up signal handling: {0}")]
    Signals(#[source] nix::Error),
    /// The upstream notify socket or the workers' inbox failed.
    #[error("failed to set up the notify socket: {0}")]
    Notify(#[source] std::io::Error),
    /// The first generation's spawn plan could not be made.
    #[error(transparent)]
    Spawn(spawn::Error),
    /// `poll(2)` failed.
    #[error("event loop failed: {0}")]
    Poll(#[source] nix::Error),
}

impl Error {
    /// The exit status this error ends hawkey with.
    pub(crate) fn status(&self) -> Status {
        match self {
            Error::Pidfile(e) => e.status(),
            Error::Directory(_) => Status::CantCreate,
            Error::Spawn(e) => e.status(),
            _ => Status::Failure,
        }
    }
}

/// Reads the configuration again, from where it was first read.
pub(crate) type Loader = dyn Fn() -> Result<(Config, String), config::Error>;

/// What the master was started with, besides the config.
pub(crate) struct Startup {
    /// The blocked signals, read from now on by the loop.
    pub(crate) signals: Signals,
    /// The environment, read once.
    pub(crate) env: Environment,
    /// The instance's name (`hawkey`, the default one), for the status
    /// report.
    pub(crate) instance: String,
    /// The instance's runtime directory (`config::paths::Host`): the
    /// default place of the pidfile and control socket, and the first
    /// place of the workers' notify channels.
    pub(crate) runtime_dir: Option<std::path::PathBuf>,
    /// `HAWKEY_LOG` for builtin workers.
    pub(crate) worker_log: String,
    /// Whether the builtin app sends heartbeats (`App::HEARTBEATS`).
    pub(crate) app_heartbeats: bool,
}

/// Runs the master until it stops; returns its exit status.
pub(crate) fn run(config: Config, loader: Box<Loader>, startup: Startup) -> Result<Status, Error> {
    let pid = std::process::id();
    // A control socket in a directory others can write could be taken over
    // (see `check_directory`): refused before anything starts, as the
    // pidfile's directory is by `pidfile::acquire`.
    let runtime_dir = startup.runtime_dir.as_deref();
    if let Some(path) = config::paths::control_socket(&config, runtime_dir) {
        config::paths::check_directory(&path, "control socket").map_err(Error::Directory)?;
    }
    let mut pidfile = match config::paths::pidfile(&config, runtime_dir) {
        Some(path) => {
            let (mut file, stale) = pidfile::acquire(&path).map_err(Error::Pidfile)?;
            if let Some(stale) = stale {
                tracing::info!("replaced stale pidfile {} of pid {stale}", path.display());
            }
            if let Err(error) = file.stage(pid) {
                // Not an empty pidfile left behind: ours is removed.
                let _ = file.remove();
                return Err(Error::Pidfile(error));
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

/// One configuration generation: what it was read as, its listeners, and
/// how its workers start. The plan's listener fds are `listeners`' own:
/// they are kept together, so the fds stay open while the plan may spawn.
struct Generation {
    config: Config,
    settings: Settings,
    listeners: Vec<Listener>,
    /// The listeners by socket inode, for the `ready: auto` probe.
    inodes: probe::Inodes,
    plan: Plan,
}

/// The master's state: what it owns, and what the loop needs between
/// wake-ups, each part with the state of its role.
struct Master<'p> {
    /// What the master was started as: fixed for its life.
    origin: Origin,
    signals: Signals,
    inbox: Inbox,
    control: Option<control::Server>,
    pidfile: &'p mut Option<Pidfile>,
    generations: Generations,
    pool: Pool,
    queue: VecDeque<Event>,
    /// The notify connection to systemd and what it was told.
    upstream: status::Upstream,
    /// Where reloads read the config, how the last one went, and who
    /// waits for the one under way.
    reloads: reload::Reloads,
    /// The `hawkey stop` clients, answered once the master is done.
    stop_waiters: Vec<ClientId>,
    /// Children on their way to `execve`, and those that failed it.
    forks: forks::Forks,
    /// What the loop keeps from one wake-up to the next.
    wake: event_loop::Wake,
    /// What sweeps found and sent (see `sweep`).
    remains: sweep::Remains,
    /// When to look for starting `ready: auto` workers accepting.
    probe: probe::Probe,
}

/// What the master was started as, fixed for its life.
struct Origin {
    env: Environment,
    /// The instance's name, for the status report.
    instance: String,
    pid: u32,
    started: Instant,
    /// `HAWKEY_LOG` for builtin workers.
    worker_log: String,
    /// Whether the builtin app sends heartbeats (`App::HEARTBEATS`).
    app_heartbeats: bool,
    running_as_root: bool,
    /// The listeners came from systemd: a reload keeps them as they are.
    listeners_from_systemd: bool,
}

/// The configuration generations in use, by number, and the next number.
struct Generations {
    all: BTreeMap<u64, Generation>,
    next: u64,
}

/// Warns when a pool of `count` (with `surge` more during a reload) may
/// not fit in the master's fd limit: each worker holds a notify socket
/// and, while it starts, a pipe; two generations overlap in a reload.
fn warn_if_fds_short(count: usize, surge: usize) {
    let need = (2 * (count + surge) + 64) as u64;
    if let Ok((soft, _)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        && soft < need
    {
        tracing::warn!(
            "the fd limit ({soft}) may be too low for {count} workers (about {need} needed): raise LimitNOFILE="
        );
    }
}

/// Takes the listeners from systemd, or binds the config's; says which.
fn take_listeners(config: &Config) -> Result<(Vec<Listener>, bool), Error> {
    let taken = match listeners::from_systemd().map_err(Error::Listener)? {
        Some(passed) => (passed, true),
        None => (
            listeners::bind_all(&config.listen).map_err(Error::Listener)?,
            false,
        ),
    };
    for l in &taken.0 {
        tracing::info!("listening on {l}");
    }
    Ok(taken)
}

/// Orphans of workers are ours: reaped by us, and found by a sweep (see
/// `sweep`) when the worker they came from is stopped. Under systemd too:
/// the service's cgroup holds them, but systemd stops them only with the
/// whole service, not when a reload retires the worker they came from.
fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this
    // process; it reads no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        tracing::warn!(
            "failed to become a child subreaper: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The workers' notify inbox, in the first fit place (see
/// `inbox::notify_bases`), after the fd limit is raised for it.
fn open_inbox(
    runtime_dir: Option<&std::path::Path>,
    running_as_root: bool,
) -> Result<Inbox, Error> {
    // Refused under a seccomp filter without @resources (as in our
    // unit); `prepare` says so if a pool then does not fit.
    if let Err(error) = spawn::raise_fd_limit() {
        tracing::debug!("failed to raise the fd limit: {error}");
    }
    Inbox::create_in(&inbox::notify_bases(runtime_dir, running_as_root)).map_err(Error::Notify)
}

/// Binds the control socket, if the config has one; a failure leaves the
/// master running without it (signals and the pidfile still work).
fn bind_control(config: &Config, runtime_dir: Option<&std::path::Path>) -> Option<control::Server> {
    let path = config::paths::control_socket(config, runtime_dir)?;
    match control::Server::bind(&path) {
        Ok(server) => Some(server),
        Err(error) => {
            tracing::warn!("no control socket: {error}");
            None
        }
    }
}

impl<'p> Master<'p> {
    /// Start-up steps 5 and 6 (see the module doc): the master, ready for
    /// its loop, with the first generation prepared and `Start` queued.
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
            instance,
            runtime_dir,
            worker_log,
            app_heartbeats,
        } = startup;
        let (listeners, listeners_from_systemd) = take_listeners(&config)?;
        become_subreaper();
        let upstream =
            Notifier::connect(env.get(crate::env::NOTIFY_SOCKET)).map_err(Error::Notify)?;
        let running_as_root = nix::unistd::geteuid().is_root();
        let inbox = open_inbox(runtime_dir.as_deref(), running_as_root)?;
        let control = bind_control(&config, runtime_dir.as_deref());
        let watchdog = env.watchdog();
        let mut master = Master {
            origin: Origin {
                env,
                instance,
                pid,
                started: Instant::now(),
                worker_log,
                app_heartbeats,
                running_as_root,
                listeners_from_systemd,
            },
            signals,
            inbox,
            control,
            pidfile,
            generations: Generations {
                all: BTreeMap::new(),
                next: 1,
            },
            // Replaced below, once the first generation exists.
            pool: Pool::new(Settings::placeholder(), 0),
            queue: VecDeque::new(),
            upstream: status::Upstream::new(upstream, watchdog),
            reloads: reload::Reloads::new(loader),
            stop_waiters: Vec::new(),
            forks: forks::Forks::default(),
            wake: event_loop::Wake::new(),
            remains: sweep::Remains::default(),
            probe: probe::Probe::default(),
        };
        if let Some(w) = watchdog {
            tracing::info!(
                "systemd watchdog: pinging every {} while healthy",
                config::Span(w / 2)
            );
        }
        master.first_generation(config, listeners)?;
        Ok(master)
    }

    /// Prepares the first generation and its pool, and queues `Start`.
    fn first_generation(&mut self, config: Config, listeners: Vec<Listener>) -> Result<(), Error> {
        let generation = self.prepare(config, listeners)?;
        self.log_start(generation);
        self.pool = Pool::new(self.generations.all[&generation].settings, generation);
        self.pool.seed(random_seed());
        self.queue.push_back(Event::Start);
        Ok(())
    }

    /// The first generation's start, as the operator reads it.
    fn log_start(&self, generation: u64) {
        let g = &self.generations.all[&generation];
        let workers = &g.config.workers;
        if !self.origin.running_as_root && (workers.user.is_some() || workers.group.is_some()) {
            tracing::warn!(
                "workers.user and workers.group are ignored: hawkey is not running as root"
            );
        }
        tracing::info!(
            "hawkey {} (pid {}) starting {} {} workers",
            env!("CARGO_PKG_VERSION"),
            self.origin.pid,
            g.settings.count,
            match workers.app {
                AppKind::Builtin => "builtin",
                AppKind::Exec => "exec",
            }
        );
    }

    /// Makes a new generation from a validated config and its listeners.
    fn prepare(&mut self, config: Config, listeners: Vec<Listener>) -> Result<u64, Error> {
        let generation = self.generations.next;
        let workers = &config.workers;
        let count = match workers.count {
            config::WorkerCount::Fixed(n) => n as usize,
            config::WorkerCount::Auto => cpu::available().count,
        };
        warn_if_fds_short(count, config.reload.surge.of(count));
        let heartbeat = workers
            .heartbeat_timeout
            .resolve(workers.app, self.origin.app_heartbeats);
        let inherited: Vec<spawn::Inherited<'_>> =
            listeners.iter().map(Listener::inherited).collect();
        let plan = Plan::new(spawn::Inputs {
            config: &config,
            listeners: &inherited,
            heartbeat,
            environment: &self.origin.env.vars,
            journal: crate::logging::stderr_is_journal(
                self.origin.env.get(crate::env::JOURNAL_STREAM),
            ),
            worker_log: &self.origin.worker_log,
            argv0: &self.origin.env.argv0,
            generation,
            running_as_root: self.origin.running_as_root,
        })
        .map_err(Error::Spawn)?;
        let settings = Settings {
            count,
            ready_on_start: workers.app == AppKind::Exec && workers.ready == Ready::Started,
            ready_when_accepting: workers.app == AppKind::Exec && workers.ready == Ready::Auto,
            ready_timeout: workers.ready_timeout.0,
            heartbeat,
            stop_signal: workers.stop_signal.0,
            stop_timeout: workers.stop_timeout.0,
            backoff_initial: workers.restart_backoff.initial.0,
            backoff_max: workers.restart_backoff.max.0,
            surge: config.reload.surge.of(count),
            recycle: workers.recycle.map(recycling).unwrap_or_default(),
        };
        self.generations.all.insert(
            generation,
            Generation {
                inodes: probe::inodes(&listeners),
                config,
                settings,
                listeners,
                plan,
            },
        );
        self.generations.next += 1;
        Ok(generation)
    }
}

/// `workers.recycle` as the pool applies it.
fn recycling(recycle: config::Recycle) -> supervisor::Recycling {
    supervisor::Recycling {
        memory: recycle.memory.map(|m| m.0),
        age: recycle.age.map(|a| a.0),
        jitter_percent: recycle.jitter.map_or(0, |j| j.0),
    }
}

/// A seed for the pool's age deadlines (`workers.recycle.age`): the
/// standard library's randomly keyed hasher, so two masters started at
/// once do not recycle in step.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
