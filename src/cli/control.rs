//! `hawkey reload` and `hawkey stop`, and how every control command finds
//! the master's control socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{self, Config, paths};
use crate::control::{self, Request, Response, Trust};
use crate::env::Environment;
use crate::exit::Status;

/// Finds the control socket the configuration names, and whom to believe
/// there (read from its pidfile), or says why not. A file that no longer
/// validates still names them: the master then gets the request and
/// reports the configuration error itself (for `reload`).
pub(super) fn socket_path(config_path: Option<PathBuf>) -> Result<(PathBuf, Trust), Status> {
    let env = Environment::capture();
    let config = match super::load_config(config_path.clone()) {
        Ok((config, _)) => config,
        Err(e) => {
            let file = config_path.unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
            let keys = matches!(e, config::Error::Invalid { .. })
                .then(|| Config::locate(&file))
                .flatten();
            let Some((pidfile, control_socket)) = keys else {
                return Err(super::config_failed(&e));
            };
            let mut fallback = Config::parse("{}", Path::new("<built-in default>"))
                .expect("the empty mapping is a valid config");
            fallback.pidfile = pidfile;
            fallback.control_socket = control_socket;
            fallback
        }
    };
    let trust = Trust::from_pidfile(paths::pidfile(&config, &env).as_deref());
    let path = paths::control_socket(&config, &env).ok_or_else(|| {
        line(
            false,
            "hawkey: error: the configuration disables the control socket (control_socket: null)",
        );
        Status::Usage
    })?;
    Ok((path, trust))
}

/// Reports that the master could not be reached; returns the status.
pub(super) fn unreachable(error: &control::Error) -> Status {
    super::report(error, false);
    error.status()
}

/// Sends `request` to the master the configuration names and prints its
/// answer (`reload`, `stop`).
pub(super) fn command(
    config_path: Option<PathBuf>,
    request: &Request,
    timeout: Option<Duration>,
) -> Status {
    let (path, trust) = match socket_path(config_path) {
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
