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
//! and read from a signalfd; worker notifications arrive on a datagram
//! socket of their own each; children are reaped in a loop at each
//! wake-up that read SIGCHLD (and at any other wake-up a second or more
//! after the last reap; no timer wakes an idle master for it). All of it
//! becomes events for a pure state machine (the supervisor) that decides,
//! and returns actions and notices; a thin loop (the master) carries out
//! the actions and logs the notices. Workers are started in one place, the
//! only `fork`, whose child does only async-signal-safe steps before
//! `execve`. `ARCHITECTURE.md` walks through it with file and line.
//!
//! # As a library
//!
//! A Rust program gets the master for free by handing its worker function
//! to [`main`]: the same binary is then the master (with hawkey's whole
//! command line: `run`, `check`, …) and, re-executed by the master, each
//! worker, which gets a [`Worker`]: its slot, its generation, its
//! listeners, and the calls that tell the master it is ready and alive.
//! See `examples/hello.rs`:
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
//!
//! # Public surface
//!
//! - [`main`]: the entry point, master and worker in one.
//! - [`worker`]: what a worker gets ([`Worker`], [`App`], [`worker::Socket`]).
//! - [`config`]: `hawkey.yaml` parsed and validated, as `hawkey check` does.
//! - `builtin` (cargo feature `builtin`, on by default): the HTTP app the
//!   `hawkey` binary runs, written against the same worker API.
//!
//! # Inside (crate-private)
//!
//! `cli` (the subcommands), `master` (the event loop and what it owns:
//! listeners, pidfile, signals, reaping, the workers' notify inbox, and the
//! pure `master::supervisor`), `spawn` (the one fork), `control` (the
//! control socket protocol, server and client), `env` (the environment,
//! read once, and the table of variables hawkey sets), `exit` (the table of
//! exit statuses), `pid` (a pidfile's content), `procfs`
//! (the one reader of `/proc/PID/stat`), `logging`.

#![warn(unreachable_pub, missing_docs)]

#[cfg(feature = "builtin")]
pub mod builtin;
mod cli;
pub mod config;
mod control;
mod env;
mod exit;
mod logging;
mod master;
mod pid;
mod procfs;
mod spawn;
#[cfg(test)]
mod test_util;
pub mod worker;

use std::process::ExitCode;

pub use worker::{App, Worker};

/// hawkey's entry point, for the `hawkey` binary and for programs that
/// embed it: a re-executed worker runs `app`; otherwise the command line
/// is parsed and the master (or `check`, `status`, …) runs.
///
/// # Contract: one thread
///
/// Call it first thing in `main`, before any thread exists. Both paths
/// are sound only in a single-threaded process: the worker path removes
/// variables from the environment (`std::env::remove_var`), and the
/// master blocks its signals with a mask that is per thread and forks
/// its workers, which is safe only while no other thread can hold a lock
/// the child would need. So `main` counts the process's threads first
/// (`Threads:` in `/proc/self/status`) and, when there is more than one,
/// prints one line to stderr and returns exit status 64 (usage error:
/// the calling program used the library wrongly) without doing anything
/// else. Where `/proc` cannot be read the count is unknown and the check
/// is skipped.
pub fn main<A: App>(app: A) -> ExitCode {
    if let Err(threads) = single_threaded() {
        cli::report(&MultiThreaded(threads), false);
        return exit::Status::Usage.into();
    }
    if worker::bootstrap::is_worker() {
        return worker::bootstrap::run(app).into();
    }
    cli::main(A::HEARTBEATS).into()
}

/// [`main`] was called with other threads running.
#[derive(Debug, thiserror::Error)]
#[error(
    "hawkey::main was called with {0} threads running: call it first in main, before any thread starts"
)]
struct MultiThreaded(usize);

/// `Ok` when this process has one thread (or the count cannot be read);
/// otherwise the number of threads.
fn single_threaded() -> Result<(), usize> {
    match procfs::threads() {
        Some(n) if n > 1 => Err(n),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_threaded_caller_is_refused() {
        let (started, wait) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            started.send(()).unwrap();
            let _ = stopped.recv();
        });
        wait.recv().unwrap();
        // This thread and the one just started, at least (the test
        // harness may run more).
        assert!(matches!(single_threaded(), Err(n) if n >= 2));
        stop.send(()).unwrap();
        thread.join().unwrap();
    }

    #[test]
    fn the_refusal_is_one_line() {
        let message = MultiThreaded(2).to_string();
        assert!(!message.contains('\n'));
        assert!(message.starts_with("hawkey::main was called with 2 threads running"));
    }
}
