//! `hawkey reload` and `hawkey stop`, and how every control command finds
//! the master's control socket: the target's configuration names it, in
//! the instance's runtime directory by default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Target;
use crate::config::paths::{self, Host};
use crate::config::{self, Config};
use crate::control::{self, Request, Response, Trust};
use crate::env::Environment;
use crate::exit::Status;

/// Where the CLI looks for instances: the environment's [`Host`], and
/// `/run` for a user without a runtime directory of their own.
pub(super) fn cli_host() -> Host {
    Host::of(&Environment::capture()).or_system_root()
}

/// Finds the control socket the target's configuration names, and whom
/// to believe there (read from its pidfile), or says why not.
pub(super) fn socket_path(target: &Target) -> Result<(PathBuf, Trust), Status> {
    let host = cli_host();
    let runtime_dir = host.runtime_dir(&target.instance());
    locate(target, &host, runtime_dir.as_deref()).map_err(|e| match e {
        Located::Config(e) => super::config_failed(&e),
        Located::Disabled => {
            line(
                false,
                "hawkey: error: the configuration disables the control socket (control_socket: null)",
            );
            Status::Usage
        }
    })
}

/// Why [`locate`] found no control socket.
pub(super) enum Located {
    /// The configuration cannot be read, not even its paths.
    Config(config::Error),
    /// `control_socket: null`.
    Disabled,
}

/// The control socket and pidfile trust of the target, its runtime
/// directory being `runtime_dir`. A file that no longer validates still
/// names them: the master then gets the request and reports the
/// configuration error itself (for `reload`).
pub(super) fn locate(
    target: &Target,
    host: &Host,
    runtime_dir: Option<&Path>,
) -> Result<(PathBuf, Trust), Located> {
    let config = match super::load_config(target, host, &config::Overrides::default()) {
        Ok((config, _)) => config,
        Err(e) => {
            let keys = matches!(e, config::Error::Invalid { .. })
                .then(|| Config::locate(&target.file(host)))
                .flatten();
            let Some((pidfile, control_socket)) = keys else {
                return Err(Located::Config(e));
            };
            let mut fallback = Config::parse("{}", Path::new("<built-in default>"))
                .expect("the empty mapping is a valid config");
            fallback.pidfile = pidfile;
            fallback.control_socket = control_socket;
            fallback
        }
    };
    let trust = Trust::from_pidfile(paths::pidfile(&config, runtime_dir).as_deref());
    let path = paths::control_socket(&config, runtime_dir).ok_or(Located::Disabled)?;
    Ok((path, trust))
}

/// Reports that the master could not be reached; returns the status.
pub(super) fn unreachable(error: &control::Error) -> Status {
    super::report(error, false);
    error.status()
}

/// Sends `request` to the master the configuration names and prints its
/// answer (`reload`, `stop`).
pub(super) fn command(target: Target, request: &Request, timeout: Option<Duration>) -> Status {
    let (path, trust) = match socket_path(&target) {
        Ok(found) => found,
        Err(status) => return status,
    };
    match control::request_trusting(&path, request, timeout, &trust) {
        Ok(response) => respond(response),
        Err(error) => unreachable(&error),
    }
}

/// Prints an answer that is not a status report; returns the status the
/// master chose.
pub(super) fn respond(response: Response) -> Status {
    match response {
        Response::Ok { message } => {
            line(true, &message);
            Status::Ok
        }
        // A located config error is printed as it is, as everywhere else.
        Response::Error { exit_code, message } => {
            if exit_code == Status::Config.code() {
                line(false, &message);
            } else {
                line(false, &format!("hawkey: error: {message}"));
            }
            Status::from_code(exit_code)
        }
        Response::Status(_) => Status::Ok,
    }
}

/// Writes one line to stdout (`out`) or stderr. A reader that went away
/// (`hawkey reload | head -0`) or a closed stderr is not worth a panic
/// (`println!` would give exit 101): the line is dropped, the status
/// stays the master's answer.
fn line(out: bool, text: &str) {
    use std::io::Write;
    let _ = if out {
        writeln!(std::io::stdout().lock(), "{text}")
    } else {
        writeln!(std::io::stderr().lock(), "{text}")
    };
}
