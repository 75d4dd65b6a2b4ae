//! The `hawkey` command line: parse it, run the subcommand, print its error
//! once, and return its exit status.
//!
//! # Parts
//!
//! - [`args`]: the clap definition, from which the man page and the shell
//!   completions are generated.
//! - [`run`]: `hawkey run`, start-up in a safe order up to [`crate::master::run`].
//! - [`check`]: `hawkey check`, the effective configuration.
//! - [`control`]: `hawkey reload` and `hawkey stop`, and finding the
//!   control socket of the master a configuration names.
//! - [`status`]: `hawkey status`, and its table.

use std::path::{Path, PathBuf};

use clap::Parser;

use crate::config::{self, Config};
use crate::exit::Status;

mod args;
mod check;
mod control;
mod run;
mod status;

/// Parses the command line and runs it. `app_heartbeats` says whether the
/// app workers run sends heartbeats ([`crate::App::HEARTBEATS`]).
pub(crate) fn main(app_heartbeats: bool) -> Status {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                Status::Usage
            } else {
                Status::Ok
            };
        }
    };
    match cli.command {
        args::Command::Run(args) => run::run(args.config, app_heartbeats),
        args::Command::Check { config, quiet } => check::check(config.config, quiet),
        args::Command::Status { config, json } => status::status(config.config, json),
        args::Command::Reload { config, wait } => control::command(
            config.config,
            &crate::control::Request::Reload { wait },
            None,
        ),
        args::Command::Stop(config) => {
            control::command(config.config, &crate::control::Request::Stop, None)
        }
        args::Command::Generate { what } => {
            use std::io::Write;
            let _ = std::io::stdout().lock().write_all(&args::generate(what));
            Status::Ok
        }
    }
}

/// Which file to read: `-c`/`HAWKEY_CONFIG` must exist; the default path
/// may be missing, and then the embedded default is used. Returns the
/// configuration and the name of where it came from.
pub(crate) fn load_config(explicit: Option<PathBuf>) -> Result<(Config, String), config::Error> {
    match explicit {
        Some(path) => Ok((Config::load(&path)?, path.display().to_string())),
        None if Path::new(config::DEFAULT_PATH).exists() => {
            let path = Path::new(config::DEFAULT_PATH);
            Ok((Config::load(path)?, config::DEFAULT_PATH.to_string()))
        }
        None => {
            let name = "<built-in default>";
            Ok((
                Config::parse(config::EMBEDDED_DEFAULT, Path::new(name))?,
                name.to_string(),
            ))
        }
    }
}

/// Prints an error once, the way the operator reads it: a located config
/// error as it is, like a compiler's (`FILE:LINE:COL: key: message`),
/// anything else after `hawkey: error: `.
/// A stderr that cannot be written to is ignored (`eprintln!` would panic
/// and turn the exit status into 101).
pub(crate) fn report(error: &dyn std::error::Error, located: bool) {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    let _ = if located {
        writeln!(stderr, "{error}")
    } else {
        writeln!(stderr, "hawkey: error: {error}")
    };
}

/// Reports a configuration error and returns its status (78).
fn config_failed(error: &config::Error) -> Status {
    report(error, matches!(error, config::Error::Invalid { .. }));
    Status::Config
}
