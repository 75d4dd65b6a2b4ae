//! hawkey: a pre-fork service manager for systemd hosts, and a library.
//!
//! # Theory of operation
//!
//! One master, N workers, shared sockets. The master takes its listening
//! sockets from systemd socket activation or binds them itself, then starts
//! one worker per usable CPU. Every worker inherits every listener, so the
//! kernel spreads connections over the workers and the master never touches
//! the data path: it only supervises.
//!
//! The master is single-threaded for its whole life. Signals are blocked
//! and read from a signalfd ([`signals`]); worker notifications arrive on a
//! datagram socket ([`notify`]); children are reaped in a loop ([`reap`]).
//! All of it becomes events for a pure state machine ([`supervisor`]) whose
//! actions a thin loop carries out ([`master`]). Workers are started in one
//! place ([`spawn`], the only `fork`), whose child does only
//! async-signal-safe steps (`child`) before `execve`.
//!
//! # As a library
//!
//! A Rust program gets the master for free by handing its worker function
//! to [`main`]: the same binary is then the master (with hawkey's whole
//! command line: `run`, `check`, …) and, re-executed by the master, each
//! worker. See `examples/hello.rs`:
//!
//! ```no_run
//! use std::io::Write;
//! use hawkey::worker::{Socket, Worker};
//!
//! fn app(mut worker: Worker) -> Result<(), hawkey::worker::BoxError> {
//!     let Some(listener) = worker.take_listeners().pop() else { return Ok(()) };
//!     let Socket::Tcp(listener) = listener.socket else { return Ok(()) };
//!     worker.ready()?;
//!     for stream in listener.incoming() {
//!         let mut stream = stream?;
//!         write!(stream, "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nhi\n")?;
//!     }
//!     Ok(())
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     hawkey::main(app)
//! }
//! ```

pub mod builtin;
mod child;
pub mod cli;
pub mod config;
pub mod control;
pub mod cpu;
pub mod exit;
pub mod listener;
pub mod logging;
pub mod master;
mod memory;
pub mod notify;
pub mod pidfile;
pub mod reap;
pub mod signals;
pub mod spawn;
pub mod supervisor;
#[cfg(test)]
mod test_util;
pub mod worker;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

pub use worker::{App, Worker};

/// Everything that can end `hawkey run` or `hawkey check` early, each
/// mapped to its exit status by [`Error::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Pidfile(pidfile::Error),
    #[error(transparent)]
    Listener(listener::Error),
    #[error("failed to set up signal handling: {0}")]
    Signals(#[source] nix::Error),
    #[error("failed to set up the notify socket: {0}")]
    Notify(#[source] std::io::Error),
    #[error(transparent)]
    Spawn(spawn::Error),
    #[error("event loop failed: {0}")]
    Poll(#[source] nix::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => exit::CONFIG,
            Error::Pidfile(e) => e.exit_code(),
            _ => exit::FAILURE,
        }
    }
}

/// hawkey's entry point, for the `hawkey` binary and for programs that
/// embed it: a re-executed worker runs `app`; otherwise the command line
/// is parsed and the master (or `check`) runs.
///
/// Call it first thing in `main`, before any thread exists: the worker
/// path tidies its environment, which is only sound single-threaded.
pub fn main<A: App>(app: A) -> ExitCode {
    if std::env::var_os(spawn::ROLE_ENV).is_some_and(|v| v == "worker") {
        return ExitCode::from(run_worker(app));
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let code = match cli.command {
        cli::Command::Run(args) => run(args.config, A::HEARTBEATS),
        cli::Command::Check { config, quiet } => check(config.config, quiet),
        cli::Command::Status { config, json } => status(config.config, json),
        cli::Command::Reload { config, wait } => {
            control_command(config.config, &control::Request::Reload { wait }, None)
        }
        cli::Command::Stop(config) => control_command(config.config, &control::Request::Stop, None),
        cli::Command::Generate { what } => {
            use std::io::Write;
            let _ = std::io::stdout().lock().write_all(&cli::generate(what));
            exit::OK
        }
    };
    ExitCode::from(code)
}

/// Which file to read: `-c`/`HAWKEY_CONFIG` must exist; the default path
/// may be missing, and then the embedded default is used.
fn load_config(explicit: Option<PathBuf>) -> Result<(config::Config, String), config::Error> {
    match explicit {
        Some(path) => Ok((config::Config::load(&path)?, path.display().to_string())),
        None if Path::new(config::DEFAULT_PATH).exists() => {
            let path = Path::new(config::DEFAULT_PATH);
            Ok((
                config::Config::load(path)?,
                config::DEFAULT_PATH.to_string(),
            ))
        }
        None => {
            let name = "<built-in default>";
            Ok((
                config::Config::parse(config::EMBEDDED_DEFAULT, Path::new(name))?,
                name.to_string(),
            ))
        }
    }
}

fn report(error: &Error) {
    match error {
        // Located config errors are printed as they are, like a compiler's:
        // FILE:LINE:COL: key: message.
        Error::Config(e @ config::Error::Invalid { .. }) => eprintln!("{e}"),
        other => eprintln!("hawkey: error: {other}"),
    }
}

fn run(config_path: Option<PathBuf>, app_heartbeats: bool) -> u8 {
    // Block signals before anything else: a SIGTERM during start-up then
    // waits for the event loop instead of killing a half-started master.
    let signals = match signals::Signals::block() {
        Ok(s) => s,
        Err(e) => {
            report(&Error::Signals(e));
            return exit::FAILURE;
        }
    };
    ensure_standard_fds();
    let env = master::Environment::capture();
    let (config, source) = match load_config(config_path.clone()) {
        Ok(loaded) => loaded,
        Err(e) => {
            let e = Error::Config(e);
            report(&e);
            return e.exit_code();
        }
    };
    let sink = logging::resolve(config.log.format, env.get("JOURNAL_STREAM"));
    let level = logging::level_name(config.log.level);
    let sink = logging::init(level, sink, "hawkey");
    tracing::info!("configuration from {source}");
    let worker_log = format!("{level}/{}", sink.name());
    let loader = Box::new(move || load_config(config_path.clone()));
    let startup = master::Startup {
        signals,
        env,
        worker_log,
        app_heartbeats,
    };
    match master::run(config, loader, startup) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error}");
            if sink != logging::Sink::Text {
                report(&error);
            }
            error.exit_code()
        }
    }
}

fn check(config_path: Option<PathBuf>, quiet: bool) -> u8 {
    let env = master::Environment::capture();
    let (mut config, source) = match load_config(config_path) {
        Ok(loaded) => loaded,
        Err(e) => {
            let e = Error::Config(e);
            report(&e);
            return e.exit_code();
        }
    };
    if quiet {
        return exit::OK;
    }
    let mut out = format!("# {source}: valid\n");
    if config.workers.count == config::WorkerCount::Auto {
        let cpus = cpu::available();
        let quota = match cpus.quota {
            Some(q) => format!("a CPU quota of {q:.2}"),
            None => "no CPU quota".to_string(),
        };
        out.push_str(&format!(
            "# workers.count: auto = {} ({} CPUs in the affinity mask, {quota})\n",
            cpus.count, cpus.affinity
        ));
        config.workers.count = config::WorkerCount::Fixed(cpus.count as u32);
    }
    config.pidfile = match master::pidfile_path(&config, &env) {
        Some(path) => config::Pidfile::Path(path),
        None => config::Pidfile::Disabled,
    };
    out.push_str(&config.to_yaml());
    // A reader that went away (`hawkey check | head -1`) is not an error
    // of ours: stop writing, as cat(1) does.
    use std::io::Write;
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            eprintln!("hawkey: error: failed to write to stdout: {e}");
            return exit::FAILURE;
        }
    }
    exit::OK
}

/// Finds the control socket the configuration names, or says why not. A
/// file that no longer validates still names it: the master then gets the
/// request and reports the configuration error itself (for `reload`).
fn control_socket(config_path: Option<PathBuf>) -> Result<PathBuf, u8> {
    let env = master::Environment::capture();
    let config = match load_config(config_path.clone()) {
        Ok((config, _)) => config,
        Err(e) => {
            let file = config_path.unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
            let keys = matches!(e, config::Error::Invalid { .. })
                .then(|| config::Config::locate(&file))
                .flatten();
            let Some((pidfile, control_socket)) = keys else {
                let e = Error::Config(e);
                report(&e);
                return Err(e.exit_code());
            };
            let mut fallback = config::Config::parse("", Path::new("<built-in default>"))
                .expect("the empty config is valid");
            fallback.pidfile = pidfile;
            fallback.control_socket = control_socket;
            fallback
        }
    };
    master::control_path(&config, &env).ok_or_else(|| {
        eprintln!(
            "hawkey: error: the configuration disables the control socket (control_socket: null)"
        );
        exit::USAGE
    })
}

/// Exit status when a CLI command cannot reach the master.
fn control_error(error: &control::Error) -> u8 {
    eprintln!("hawkey: error: {error}");
    match error {
        control::Error::NotRunning { .. } => exit::NOT_RUNNING,
        control::Error::PermissionDenied { .. } => exit::NO_PERMISSION,
        _ => exit::FAILURE,
    }
}

fn status(config_path: Option<PathBuf>, json: bool) -> u8 {
    let path = match control_socket(config_path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match control::request(
        &path,
        &control::Request::Status,
        Some(std::time::Duration::from_secs(10)),
    ) {
        Ok(control::Response::Status(report)) => {
            let text = if json {
                serde_json::to_string_pretty(&report).expect("a status report serializes") + "\n"
            } else {
                control::render_status(&report)
            };
            use std::io::Write;
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            exit::OK
        }
        Ok(other) => respond(other),
        Err(error) => control_error(&error),
    }
}

fn control_command(
    config_path: Option<PathBuf>,
    request: &control::Request,
    timeout: Option<std::time::Duration>,
) -> u8 {
    let path = match control_socket(config_path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match control::request(&path, request, timeout) {
        Ok(response) => respond(response),
        Err(error) => control_error(&error),
    }
}

fn respond(response: control::Response) -> u8 {
    match response {
        control::Response::Ok { message } => {
            println!("{message}");
            exit::OK
        }
        // A located config error is printed as it is, as everywhere else.
        control::Response::Error { exit_code, message } => {
            if exit_code == exit::CONFIG {
                eprintln!("{message}");
            } else {
                eprintln!("hawkey: error: {message}");
            }
            exit_code
        }
        control::Response::Status(_) => exit::OK,
    }
}

/// A master started with fd 0, 1 or 2 closed would hand that number to a
/// listener, and workers would take it for stdin or stdout: open
/// /dev/null on any of them first.
fn ensure_standard_fds() {
    for fd in 0..3 {
        if nix::fcntl::fcntl(
            // SAFETY: only asks whether `fd` is open; nothing is closed or kept.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_GETFD,
        )
        .is_err()
        {
            // Opening /dev/null takes the lowest free number: `fd`.
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null");
            if let Ok(file) = null {
                std::mem::forget(file);
            }
        }
    }
}

fn run_worker<A: App>(app: A) -> u8 {
    let (level, sink) = std::env::var("HAWKEY_LOG")
        .ok()
        .and_then(|v| {
            v.split_once('/')
                .map(|(l, s)| (l.to_string(), s.to_string()))
        })
        .unwrap_or_else(|| ("info".into(), "text".into()));
    logging::init(
        &level,
        logging::Sink::from_name(&sink).unwrap_or(logging::Sink::Text),
        "hawkey-worker",
    );
    let worker = match Worker::from_environment() {
        Ok(w) => w,
        Err(error) => {
            tracing::error!("{error}");
            return exit::FAILURE;
        }
    };
    // The variables were for this process; the app's own children must not
    // take them as theirs.
    for name in [
        "HAWKEY_ROLE",
        "HAWKEY_LOG",
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
    ] {
        // SAFETY: a worker runs this before the app starts any thread (the
        // documented contract of `main`), so no other thread reads the
        // environment concurrently.
        unsafe { std::env::remove_var(name) };
    }
    let slot = worker.slot();
    match app.run(worker) {
        Ok(()) => exit::OK,
        Err(error) => {
            tracing::error!(hawkey_worker = slot, "worker {slot} failed: {error}");
            exit::FAILURE
        }
    }
}
