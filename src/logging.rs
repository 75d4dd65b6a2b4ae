//! Logging: tracing, to journald or to stderr.
//!
//! `log.format: auto` writes to journald when stderr *is* the journal: the
//! `JOURNAL_STREAM` variable systemd sets names the device and inode of the
//! stream, and it only counts if stderr still is that file (a child whose
//! stderr was redirected must not believe it). Journal entries carry the
//! event's fields as their own (`HAWKEY_WORKER`, `WORKER_PID`,
//! `GENERATION`, `EXIT_STATUS`, `SIGNAL`), so `journalctl HAWKEY_WORKER=2`
//! works. Otherwise readable text on stderr, or JSON lines.

use std::ffi::OsStr;
use std::os::fd::AsFd;

use tracing_subscriber::filter::LevelFilter;

use crate::config::{Format, Level};

/// The format actually used once `auto` is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Journald,
    Text,
    Json,
}

impl Sink {
    pub fn name(self) -> &'static str {
        match self {
            Sink::Journald => "journald",
            Sink::Text => "text",
            Sink::Json => "json",
        }
    }

    pub fn from_name(name: &str) -> Option<Sink> {
        match name {
            "journald" => Some(Sink::Journald),
            "text" => Some(Sink::Text),
            "json" => Some(Sink::Json),
            _ => None,
        }
    }
}

pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

fn filter(level: &str) -> LevelFilter {
    match level {
        "error" => LevelFilter::ERROR,
        "warn" => LevelFilter::WARN,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => LevelFilter::INFO,
    }
}

/// Whether `journal_stream` (`JOURNAL_STREAM`, "DEV:INO") is our stderr.
pub fn stderr_is_journal(journal_stream: Option<&OsStr>) -> bool {
    let Some((dev, ino)) = journal_stream
        .and_then(|v| v.to_str())
        .and_then(|v| v.split_once(':'))
    else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr().as_fd()) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(stat.st_dev) && ino.parse::<u64>().ok() == Some(stat.st_ino)
}

/// Resolves `auto`.
pub fn resolve(format: Format, journal_stream: Option<&OsStr>) -> Sink {
    match format {
        Format::Auto if stderr_is_journal(journal_stream) => Sink::Journald,
        Format::Auto | Format::Text => Sink::Text,
        Format::Journald => Sink::Journald,
        Format::Json => Sink::Json,
    }
}

/// Colour only for a person at a terminal: not into files, pipes or a
/// log collector, and never when `NO_COLOR` is set (no-color.org).
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber. `identifier` is the journal's
/// `SYSLOG_IDENTIFIER`. Returns the sink in use (text if journald was asked
/// for but cannot be reached).
pub fn init(level: &str, sink: Sink, identifier: &str) -> Sink {
    use tracing_subscriber::prelude::*;
    let filter = filter(level);
    if sink == Sink::Journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier(identifier.to_string());
                let _ = tracing_subscriber::registry()
                    .with(layer.with_filter(filter))
                    .try_init();
                return Sink::Journald;
            }
            Err(error) => {
                init(level, Sink::Text, identifier);
                tracing::warn!("journald is unreachable ({error}); logging to stderr");
                return Sink::Text;
            }
        }
    }
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .with_target(false)
        .with_max_level(filter);
    let _ = match sink {
        Sink::Json => fmt.json().try_init(),
        _ => fmt.try_init(),
    };
    sink
}
