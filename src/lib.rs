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
//! exit statuses), `logging`.

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
/// Call it first thing in `main`, before any thread exists: the worker
/// path tidies its environment, which is only sound single-threaded.
pub fn main<A: App>(app: A) -> ExitCode {
    if worker::bootstrap::is_worker() {
        return worker::bootstrap::run(app).into();
    }
    cli::main(A::HEARTBEATS).into()
}
