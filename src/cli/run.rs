//! `hawkey run`: start-up in a safe order, then the master.
//!
//! Signals are blocked first (a SIGTERM during start-up then waits for the
//! event loop instead of killing a half-started master), the standard fds
//! are made sure of, the environment is read once, the configuration
//! validated (nothing started on error: exit 78), logging set up; the rest
//! of the order is [`crate::master::run`]'s.

use crate::config::paths::Host;
use crate::env::Environment;
use crate::exit::Status;
use crate::logging;
use crate::master::{self, signals::Signals};

/// Runs the master of `target` (the instance's configuration, or `-c`'s);
/// returns its exit status.
pub(super) fn run(
    target: super::Target,
    flags: crate::config::Overrides,
    app_heartbeats: bool,
) -> Status {
    let signals = match Signals::block() {
        Ok(s) => s,
        Err(e) => {
            super::report(&master::Error::Signals(e), false);
            return Status::Failure;
        }
    };
    ensure_standard_fds();
    let env = Environment::capture();
    let host = Host::of(&env);
    let instance = target.instance();
    let (config, source) = match super::load_config(&target, &host, &flags) {
        Ok(loaded) => loaded,
        Err(e) => return super::config_failed(&e),
    };
    let sink = logging::resolve(config.log.format, env.get(crate::env::JOURNAL_STREAM));
    let level = logging::level_name(config.log.level);
    let sink = logging::init(level, sink, &instance.identifier(), Some(instance.name()));
    tracing::info!("configuration from {source}");
    let worker_log = format!("{level}/{}", sink.name());
    let runtime_dir = host.runtime_dir(&instance);
    if super::preflight::lacks_runtime_directory(&config, runtime_dir.as_deref()) {
        tracing::warn!("{}", super::preflight::NO_RUNTIME_DIRECTORY);
    }
    let loader = Box::new(move || super::load_config(&target, &host, &flags));
    let startup = master::Startup {
        signals,
        env,
        instance: instance.name().to_string(),
        runtime_dir,
        worker_log,
        app_heartbeats,
    };
    match master::run(config, loader, startup) {
        Ok(status) => status,
        Err(error) => {
            // Logged once; on stderr too unless the log already is stderr.
            tracing::error!("{error}");
            if sink != logging::Sink::Text {
                super::report(&error, false);
            }
            error.status()
        }
    }
}

/// A master started with fd 0, 1 or 2 closed would hand that number to a
/// listener, and workers would take it for stdin or stdout: open
/// /dev/null on any of them first.
fn ensure_standard_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD on a number only asks whether it is open; it
        // touches no descriptor, so it is sound whether or not `fd` is.
        // (A `BorrowedFd` cannot be used here: it promises an open fd.)
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // Opening /dev/null takes the lowest free number: `fd`.
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null");
            if let Ok(file) = null {
                // The descriptor must stay open as fd 0, 1 or 2 for good.
                std::mem::forget(file);
            }
        }
    }
}
