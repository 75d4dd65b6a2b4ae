//! A re-executed library worker's start: what runs before the app.
//!
//! The master executes `/proc/self/exe` with `HAWKEY_ROLE=worker` for each
//! library worker (see [`crate::spawn`]); [`crate::main`] sees the role and
//! comes here instead of the CLI: logging as the master said
//! (`HAWKEY_LOG`), the [`Worker`] read from the environment once, the
//! process-scoped variables removed (see [`crate::env::WORKER_VARS`]), then
//! the app.

use crate::env::{self, Scope, WORKER_VARS};
use crate::exit::Status;
use crate::logging;
use crate::worker::{App, Worker};

/// Whether this process is a re-executed worker.
pub(crate) fn is_worker() -> bool {
    std::env::var_os(env::HAWKEY_ROLE).is_some_and(|v| v == "worker")
}

/// Runs `app` as this worker; returns its exit status (1 if it failed).
pub(crate) fn run<A: App>(app: A) -> Status {
    let (level, sink) = std::env::var(env::HAWKEY_LOG)
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
        None,
    );
    let worker = match Worker::from_environment() {
        Ok(w) => w,
        Err(error) => {
            tracing::error!("{error}");
            return Status::Failure;
        }
    };
    // The variables were for this process; the app's own children must not
    // take them as theirs.
    for var in WORKER_VARS.iter().filter(|v| v.scope == Scope::Process) {
        // SAFETY: a worker runs this before the app starts any thread (the
        // documented contract of `crate::main`), so no other thread reads
        // the environment concurrently.
        unsafe { std::env::remove_var(var.name) };
    }
    let slot = worker.slot();
    match app.run(worker) {
        Ok(()) => Status::Ok,
        Err(error) => {
            tracing::error!(hawkey_worker = slot, "worker {slot} failed: {error}");
            Status::Failure
        }
    }
}
