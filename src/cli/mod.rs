//! The `hawkey` command line: parse it, run the subcommand, print its error
//! once, and return its exit status.
//!
//! # Parts
//!
//! - [`args`]: the clap definition, from which hawkey(1) and the shell
//!   completions are generated.
//! - [`man`]: hawkey(1) and hawkey.yaml(5), rendered from the clap
//!   definition and the tables they document.
//! - [`run`]: `hawkey run`, start-up in a safe order up to [`crate::master::run`].
//! - [`check`]: `hawkey check`, the effective configuration.
//! - [`preflight`]: what `hawkey run` would refuse, found by `check` first.
//! - [`control`]: `hawkey reload` and `hawkey stop`, and finding the
//!   control socket of the master a configuration names.
//! - [`status`]: `hawkey status NAME`, one master's detail, and its table.
//! - [`hosts`]: `hawkey status` with no name: every instance on the host.
//! - [`usage`]: CPU and memory of process trees, read from `/proc`.
//!
//! A command is about a [`Target`]: `-c FILE`, or an instance by name
//! (`hawkey status api`), found through the [`Host`]'s directories.

use std::path::{Path, PathBuf};

use crate::config::paths::{Host, Instance};
use crate::config::{self, Config};
use crate::exit::Status;

mod args;
mod check;
mod control;
mod hosts;
mod man;
mod preflight;
mod run;
mod status;
mod usage;

/// Parses the command line and runs it. `app_heartbeats` says whether the
/// app workers run sends heartbeats ([`crate::App::HEARTBEATS`]).
pub(crate) fn main(app_heartbeats: bool) -> Status {
    use clap::{CommandFactory, FromArgMatches};
    let parsed = args::Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((args::Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                Status::Usage
            } else {
                Status::Ok
            };
        }
    };
    // `-c` from HAWKEY_CONFIG gives way to a NAME on the command line.
    let from_env = matches.subcommand().is_some_and(|(_, sub)| {
        sub.try_get_raw("config").is_ok_and(|v| v.is_some())
            && sub.value_source("config") == Some(clap::parser::ValueSource::EnvVariable)
    });
    let target = |arg: args::ConfigArg| Target::of(arg, from_env);
    let result = match cli.command {
        args::Command::Run { config, flags } => {
            target(config).map(|t| run::run(t, flags.into_overrides(), app_heartbeats))
        }
        args::Command::Check {
            config,
            flags,
            quiet,
        } => target(config).map(|t| check::check(t, &flags.into_overrides(), quiet)),
        // With no target named, every instance on the host.
        args::Command::Status { config, json } => target(config).map(|t| match t {
            Target::Instance { named: false, .. } => hosts::list(json),
            t => status::status(t, json),
        }),
        args::Command::Reload { config, wait } => target(config)
            .map(|t| control::command(t, &crate::control::Request::Reload { wait }, None)),
        args::Command::Stop(config) => {
            target(config).map(|t| control::command(t, &crate::control::Request::Stop, None))
        }
        args::Command::Generate { what } => {
            use std::io::Write;
            let _ = std::io::stdout().lock().write_all(&args::generate(what));
            Ok(Status::Ok)
        }
    };
    result.unwrap_or_else(|status| status)
}

/// What a command is about: a configuration file, or an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `-c FILE` or `HAWKEY_CONFIG`: that file, with the default
    /// instance's runtime directory unless the file names its paths.
    File(PathBuf),
    /// An instance: `NAME`, or the default instance when nothing was
    /// named (`named: false`; `hawkey status` then lists the host).
    Instance { instance: Instance, named: bool },
}

impl Target {
    /// The target of the command line; an invalid name is a usage error
    /// (64), reported here in one line.
    fn of(arg: args::ConfigArg, config_from_env: bool) -> Result<Target, Status> {
        match (arg.instance, arg.config) {
            (Some(name), Some(file)) if !config_from_env => {
                let message = format!(
                    "the instance '{}' and -c '{}' name two configurations: give one",
                    name.escape_debug(),
                    file.display()
                );
                report(&std::io::Error::other(message), false);
                Err(Status::Usage)
            }
            (Some(name), _) => match Instance::parse(&name) {
                Ok(instance) => Ok(Target::Instance {
                    instance,
                    named: true,
                }),
                Err(e) => {
                    report(&e, false);
                    Err(Status::Usage)
                }
            },
            (None, Some(file)) => Ok(Target::File(file)),
            (None, None) => Ok(Target::Instance {
                instance: Instance::default_instance(),
                named: false,
            }),
        }
    }

    /// The instance whose runtime directory and name the command uses:
    /// the default one for `-c`.
    pub(crate) fn instance(&self) -> Instance {
        match self {
            Target::File(_) => Instance::default_instance(),
            Target::Instance { instance, .. } => instance.clone(),
        }
    }

    /// The file the target reads: `-c`'s, or `NAME.yaml` in the host's
    /// configuration directory.
    pub(crate) fn file(&self, host: &Host) -> PathBuf {
        match self {
            Target::File(path) => path.clone(),
            Target::Instance { instance, .. } => host.config_file(instance),
        }
    }
}

/// Which file to read: `-c`/`HAWKEY_CONFIG` and a named instance's
/// `NAME.yaml` must exist; the default instance's may be missing, and then
/// the embedded default is used. `flags` are laid over it. Returns the
/// configuration and the name of where it came from.
pub(crate) fn load_config(
    target: &Target,
    host: &Host,
    flags: &config::Overrides,
) -> Result<(Config, String), config::Error> {
    let path = target.file(host);
    let may_be_missing =
        matches!(target, Target::Instance { instance, .. } if instance.is_default());
    let (config, source) = if may_be_missing && !path.exists() {
        let name = "<built-in default>";
        (
            Config::parse(config::EMBEDDED_DEFAULT, Path::new(name))?,
            name.to_string(),
        )
    } else {
        (Config::load(&path)?, path.display().to_string())
    };
    if flags.is_empty() {
        return Ok((config, source));
    }
    let config = flags.apply(config, &source)?;
    Ok((config, format!("{source} with {}", flags.describe())))
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

/// Reports a configuration error and returns its status (78; 64 for bad
/// flags).
fn config_failed(error: &config::Error) -> Status {
    report(error, matches!(error, config::Error::Invalid { .. }));
    error.status()
}
