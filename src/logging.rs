//! Logging: tracing, to journald or to stderr.
//!
//! `log.format: auto` writes to journald when stderr *is* the journal: the
//! `JOURNAL_STREAM` variable systemd sets names the device and inode of the
//! stream, and it only counts if stderr still is that file (a child whose
//! stderr was redirected must not believe it). Journal entries carry the
//! event's fields as their own (`HAWKEY_WORKER`, `WORKER_PID`,
//! `GENERATION`, `EXIT_STATUS`, `SIGNAL`, `RECYCLE_REASON`), so
//! `journalctl HAWKEY_WORKER=2` works; the master's also carry
//! `HAWKEY_INSTANCE=NAME` (`hawkey` for the default instance) and the
//! syslog identifier `hawkey-NAME` (`hawkey`), so
//! `journalctl HAWKEY_INSTANCE=api` and `journalctl -t hawkey-api` find
//! one instance's records. Otherwise readable text on stderr, or JSON lines.
//!
//! Logging never ends the process: a line that cannot be written (stderr
//! a pipe whose reader is gone, a full disk, journald restarting) is
//! dropped and counted ([`dropped_lines`]), in the master and in built-in
//! workers alike. SIGPIPE is ignored (Rust's runtime does so before
//! `main`; the master's signal set keeps it so), so such a write fails
//! with EPIPE instead of killing the process, and tracing-subscriber is
//! told not to report its own write errors with `eprintln!`, which panics
//! when stderr is broken. tracing-journald drops failed sends by itself.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::filter::LevelFilter;

use crate::config::{Format, Level};

/// The journal field naming the master's instance on its own records.
pub(crate) const INSTANCE_FIELD: &str = "HAWKEY_INSTANCE";

/// The format actually used once `auto` is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sink {
    /// Native journal entries with fields.
    Journald,
    /// Readable lines on stderr.
    Text,
    /// JSON lines on stderr.
    Json,
}

impl Sink {
    /// The name used in `HAWKEY_LOG` and `log.format`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Sink::Journald => "journald",
            Sink::Text => "text",
            Sink::Json => "json",
        }
    }

    /// The sink [`Sink::name`] names.
    pub(crate) fn from_name(name: &str) -> Option<Sink> {
        match name {
            "journald" => Some(Sink::Journald),
            "text" => Some(Sink::Text),
            "json" => Some(Sink::Json),
            _ => None,
        }
    }
}

/// The name of a configured level, as [`filter`] reads it.
pub(crate) fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// The filter for a level name (`info`, …; what [`level_name`] gives),
/// by tracing's own parser; an unknown name is `info`.
fn filter(level: &str) -> LevelFilter {
    level.parse().unwrap_or(LevelFilter::INFO)
}

/// Whether `journal_stream` (`JOURNAL_STREAM`, "DEV:INO") is our stderr.
pub(crate) fn stderr_is_journal(journal_stream: Option<&OsStr>) -> bool {
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
pub(crate) fn resolve(format: Format, journal_stream: Option<&OsStr>) -> Sink {
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

/// Log lines that could not be written to stderr.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// How many log lines could not be written to stderr (and were dropped).
pub(crate) fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// stderr for the log: a failed write is counted and reported as done,
/// so neither tracing nor anything above it sees an error to act on.
struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match std::io::stderr().write(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                    return Ok(buf.len());
                }
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the global subscriber. `identifier` is the journal's
/// `SYSLOG_IDENTIFIER` (`hawkey`, `hawkey-NAME`, `hawkey-worker`), and
/// `instance`, when there is one, the value of the `HAWKEY_INSTANCE` field
/// on every journal entry (`journalctl HAWKEY_INSTANCE=api`). Returns the
/// sink in use (text if journald was asked for but cannot be reached).
pub(crate) fn init(level: &str, sink: Sink, identifier: &str, instance: Option<&str>) -> Sink {
    use tracing_subscriber::prelude::*;
    let filter = filter(level);
    if sink == Sink::Journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier(identifier.to_string())
                    .with_custom_fields(instance.map(|name| (INSTANCE_FIELD, name)));
                let _ = tracing_subscriber::registry()
                    .with(layer.with_filter(filter))
                    .try_init();
                return Sink::Journald;
            }
            Err(error) => {
                init(level, Sink::Text, identifier, instance);
                tracing::warn!("journald is unreachable ({error}); logging to stderr");
                return Sink::Text;
            }
        }
    }
    let fmt = tracing_subscriber::fmt()
        .with_writer(|| LossyStderr)
        .log_internal_errors(false)
        .with_ansi(colour())
        .with_target(false)
        .with_max_level(filter);
    let _ = match sink {
        Sink::Json => fmt.json().try_init(),
        _ => fmt.try_init(),
    };
    sink
}

/// An errno as a message reads it: "address already in use".
pub(crate) fn errno_text(errno: nix::errno::Errno) -> String {
    let text = errno.desc();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A closed pipe as stderr: the write is counted, not an error.
    #[test]
    fn a_write_to_a_broken_stderr_is_counted_not_an_error() {
        // While fd 2 is the broken pipe, no other test's child may inherit
        // it; both descriptors made here are close-on-exec.
        let _no_forks = crate::test_util::no_forks();
        let (read, write) = std::io::pipe().unwrap();
        drop(read);
        let saved = std::io::stderr().as_fd().try_clone_to_owned().unwrap();
        nix::unistd::dup2_stderr(&write).unwrap();
        let before = dropped_lines();
        let result = LossyStderr.write_all(b"a line nobody reads\n");
        nix::unistd::dup2_stderr(&saved).unwrap();
        assert!(result.is_ok());
        assert_eq!(dropped_lines(), before + 1);
    }
}
