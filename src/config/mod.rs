//! `hawkey.yaml`: parsing, validation and the effective configuration.
//!
//! The file is read in two layers: the raw layer mirrors the file exactly
//! (serde, unknown keys rejected, source locations kept where a later check
//! needs them); [`Config`] is what the rest of hawkey uses, with every
//! default filled in and every cross-key rule checked. Nothing is applied
//! until the whole file has validated.
//!
//! Every error is one line, `FILE:LINE:COL: key.path: what is wrong (what is
//! allowed)`, and maps to exit status 78 (`EX_CONFIG`). LINE and COL (from
//! 1, columns in characters) point at the offending token; `key.path` is the
//! innermost key or sequence index whose value holds it, written as
//! `listen[0].address` or `workers.env.NAME` (empty, with its `: `, at the
//! top level). The one exception is a file over 1 MiB, refused before it
//! is read.
//!
//! # Parts
//!
//! - this file: the validated [`Config`] and its parts, [`Error`], and
//!   [`Config::load`] / [`Config::parse`], which run the layers below in turn;
//! - `schema`: the raw layer, the serde types the file deserializes into;
//! - `limits`: the limits a file must stay within (alias bombs, depth,
//!   size);
//! - `diagnostics`: serde and YAML errors turned into located one-line
//!   messages (which token, which key, in words for the reader);
//! - `events`: a second reading of the YAML, event by event, run only once
//!   an error is found, for the locations serde cannot give;
//! - `validate`: raw layer to [`Config`], one function per decision;
//! - `units`: durations, sizes, percentages, signal names and file modes, which YAML has no type for;
//! - `adopt`: `workers.adopt`, checked against the listeners;
//! - `recycle`: `workers.recycle`, when a worker is replaced for its
//!   memory or its age;
//! - `keys`: the one table of every key, its type, default and meaning
//!   (hawkey.yaml(5) is rendered from it);
//! - `paths`: where a config's pidfile and control socket are, once resolved;
//! - `overrides`: the flags of `hawkey run` and `check` laid over a file.
//!
//! The YAML crate lives behind this module only (`serde-saphyr`, the
//! maintained successor of the archived `serde_yaml`): it reports line and
//! column, rejects duplicate keys and bounds alias expansion and document
//! size, which is what a config file read by root needs.

mod adopt;
mod diagnostics;
mod events;
mod flow;
pub(crate) mod keys;
mod limits;
mod overrides;
pub(crate) mod paths;
mod recycle;
mod schema;
pub(crate) mod units;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use self::diagnostics::{Located, one_line};
pub(crate) use self::overrides::Overrides;
pub(crate) use self::validate::resolve_program_in;

pub(crate) use self::units::{Mode, Percent, SignalName, Size, Span};

/// The configuration hawkey ships with, also embedded in the binary: used
/// when the default path does not exist, so `hawkey run` works out of the box.
pub(crate) const EMBEDDED_DEFAULT: &str = include_str!("../../hawkey.yaml");

/// The largest config file accepted: far beyond any real config, small
/// enough that a runaway file cannot exhaust memory.
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The most workers `workers.count` accepts.
pub(crate) const MAX_WORKERS: u32 = 1024;

/// A validated, complete configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    pub(crate) listen: Vec<Listen>,
    pub(crate) workers: Workers,
    #[serde(skip_serializing_if = "Pidfile::is_default")]
    pub(crate) pidfile: Pidfile,
    /// Where `hawkey status/reload/stop` reach the master; same shape as
    /// the pidfile key (`Default`: beside the pidfile).
    #[serde(skip_serializing_if = "Pidfile::is_default")]
    pub(crate) control_socket: Pidfile,
    pub(crate) log: Log,
    pub(crate) reload: Reload,
}

/// The `reload` section: how a rolling reload proceeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Reload {
    pub(crate) surge: Surge,
}

/// `reload.surge`: how many new workers a rolling reload may start beside
/// the old ones at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Surge {
    /// That many workers (at most the pool).
    Workers(u32),
    /// That share of the pool, rounded up: `100%` replaces the whole
    /// generation at once.
    Percent(u32),
}

impl Surge {
    /// How many at once in a pool of `count` workers: from 1 to `count`.
    pub(crate) fn of(self, count: usize) -> usize {
        let n = match self {
            Surge::Workers(n) => n as usize,
            Surge::Percent(p) => (count * p as usize).div_ceil(100),
        };
        n.clamp(1, count.max(1))
    }
}

impl Serialize for Surge {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Surge::Workers(n) => serializer.serialize_u32(*n),
            Surge::Percent(p) => serializer.serialize_str(&format!("{p}%")),
        }
    }
}

/// The `pidfile` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pidfile {
    /// Absent: `hawkey.pid` in the runtime directory (see [`crate::pidfile::runtime_dir`]).
    Default,
    Path(PathBuf),
    /// `null`: no pidfile.
    Disabled,
}

impl Pidfile {
    fn is_default(&self) -> bool {
        *self == Pidfile::Default
    }
}

impl Serialize for Pidfile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Pidfile::Default => serializer.serialize_none(),
            Pidfile::Path(p) => p.serialize(serializer),
            Pidfile::Disabled => serializer.serialize_none(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Listen {
    pub(crate) name: String,
    pub(crate) address: Address,
    pub(crate) backlog: u32,
    /// File mode of a unix socket; `None` for TCP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mode: Option<Mode>,
}

/// Where a self-bound listener listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "{addr}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WorkerCount {
    /// CPUs this process may use, capped by the cgroup CPU quota.
    Auto,
    Fixed(u32),
}

impl Serialize for WorkerCount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            WorkerCount::Auto => serializer.serialize_str("auto"),
            WorkerCount::Fixed(n) => serializer.serialize_u32(*n),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AppKind {
    /// The built-in HTTP app (or, for a program that embeds hawkey, its own
    /// worker function), run in a re-executed copy of this binary.
    Builtin,
    /// Any program, started with the `LISTEN_FDS` protocol.
    Exec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Ready {
    /// The default: ready on `READY=1`, or once the master sees the worker
    /// (or a descendant) accepting on a listener, whichever comes first.
    /// Builtin and library workers send `READY=1` when they enter their
    /// accept loop, so for them this is [`Ready::Notify`].
    Auto,
    /// Ready when the worker sends `READY=1` to its `NOTIFY_SOCKET`.
    Notify,
    /// Ready as soon as the program has been executed (explicit only).
    Started,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Workers {
    pub(crate) count: WorkerCount,
    pub(crate) app: AppKind,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) command: Vec<String>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) user: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) ready: Ready,
    pub(crate) ready_timeout: Span,
    #[serde(skip_serializing_if = "Heartbeat::is_default")]
    pub(crate) heartbeat_timeout: Heartbeat,
    pub(crate) stop_signal: SignalName,
    pub(crate) stop_timeout: Span,
    pub(crate) restart_backoff: Backoff,
    /// `workers.recycle`: `None`, no recycling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) recycle: Option<Recycle>,
    /// `workers.adopt`, in file order: whose `bind(2)` gets which
    /// listener (see `docs/adopt.md`).
    #[serde(skip_serializing_if = "Adopt::is_empty")]
    pub(crate) adopt: Adopt,
    /// `workers.preload`: whether exec'd workers get hawkey's preload
    /// library (`LD_PRELOAD`: adoption, the accepting report) and its Node
    /// drain shim (`NODE_OPTIONS`). On by default; `false` injects nothing.
    pub(crate) preload: bool,
}

/// `workers.adopt`: the listeners an unmodified program gets when it binds
/// their addresses itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Adopt(pub(crate) Vec<(String, AdoptSpec)>);

impl Adopt {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Adopt {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, spec) in &self.0 {
            map.serialize_entry(name, &spec.to_string())?;
        }
        map.end()
    }
}

/// The address a program's own `bind(2)` must name to get a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AdoptSpec {
    /// A bare port (`3000` or `*:3000`): any address of it.
    Port(u16),
    /// An address; a wildcard (`0.0.0.0`, `[::]`) matches a wildcard bind
    /// of either family.
    Addr(SocketAddr),
}

impl fmt::Display for AdoptSpec {
    /// The `HAWKEY_ADOPT` form of the spec, also how `hawkey check`
    /// prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdoptSpec::Port(port) => write!(f, "*:{port}"),
            AdoptSpec::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

/// `workers.heartbeat_timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Heartbeat {
    /// Absent: 30s for apps that send heartbeats (the built-in app), none
    /// for exec workers.
    Default,
    Every(Span),
    /// `null`: no heartbeats required.
    Off,
}

/// The heartbeat timeout of an app that sends heartbeats when the key is absent.
pub(crate) const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

impl Heartbeat {
    fn is_default(&self) -> bool {
        *self == Heartbeat::Default
    }

    /// The timeout in force: `app_heartbeats` says whether a builtin app
    /// sends heartbeats at all.
    pub(crate) fn resolve(self, app: AppKind, app_heartbeats: bool) -> Option<Duration> {
        match (self, app) {
            (Heartbeat::Off, _) => None,
            (Heartbeat::Every(s), AppKind::Exec) => Some(s.0),
            (Heartbeat::Every(s), AppKind::Builtin) => app_heartbeats.then_some(s.0),
            (Heartbeat::Default, AppKind::Builtin) => app_heartbeats.then_some(DEFAULT_HEARTBEAT),
            (Heartbeat::Default, AppKind::Exec) => None,
        }
    }
}

impl Serialize for Heartbeat {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Heartbeat::Every(s) => s.serialize(serializer),
            Heartbeat::Default | Heartbeat::Off => serializer.serialize_none(),
        }
    }
}

/// `workers.recycle`: when a ready worker is replaced (as a reload
/// replaces it: its successor ready first, then it drains).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Recycle {
    /// Once its process tree's resident memory passes this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) memory: Option<Size>,
    /// Once it has been ready this long, give or take `jitter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) age: Option<Span>,
    /// How far each worker's age may be from `age`, either way; set
    /// exactly when `age` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) jitter: Option<Percent>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct Backoff {
    pub(crate) initial: Span,
    pub(crate) max: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    /// journald when stderr is the journal stream, text otherwise.
    Auto,
    Journald,
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Log {
    pub(crate) level: Level,
    pub(crate) format: Format,
}

/// A config error, already located. `Display` is the one line the
/// operator sees.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("failed to read config '{}': {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The path names something other than a regular file (a FIFO, a
    /// device, a directory, a socket); refused unread, at once.
    #[error("failed to read config '{}': is {kind}, not a regular file", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is instead ("a FIFO").
        kind: &'static str,
    },
    /// The file is over the size limit (1 MiB); refused unread.
    #[error("{}: file is larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file was read but is not a valid configuration: the one line
    /// `FILE:LINE:COL: key.path: message`.
    #[error("{}:{line}:{column}: {key}{message}", one_line(&path.display().to_string()), key = key_prefix(key))]
    Invalid {
        /// The file, as it was named.
        path: PathBuf,
        /// The offending token's line, from 1.
        line: u32,
        /// The offending token's column, from 1, in characters.
        column: u32,
        /// The key path whose value holds the token (`listen[0].address`);
        /// empty at the top level.
        key: String,
        /// What is wrong, and what is allowed.
        message: String,
    },
    /// Flags of `hawkey run`/`check` (`--count`, `--listen`, `--adopt`,
    /// `-- COMMAND`) that make the configuration invalid: the one line
    /// `FLAGS over SOURCE: key.path: message` (see `overrides`).
    #[error("{} over {}: {key}{message}", one_line(flags), one_line(source_name), key = key_prefix(key))]
    Flags {
        /// The flags, as given.
        flags: String,
        /// The file (or the built-in default) they were laid over.
        source_name: String,
        /// The key the flags made invalid.
        key: String,
        /// What is wrong, and what is allowed.
        message: String,
    },
}

impl Error {
    /// The exit status: 64 (usage) for bad flags, 78 for a bad file.
    pub(crate) fn status(&self) -> crate::exit::Status {
        match self {
            Error::Flags { .. } => crate::exit::Status::Usage,
            _ => crate::exit::Status::Config,
        }
    }
}

/// Reads the regular file at `path`, at most [`MAX_FILE_BYTES`], without
/// ever blocking on what is there: a FIFO would block `open(2)` until a
/// writer came (the master could then neither reap nor stop, `hawkey
/// check` would hang), a device could be read for ever. So `stat(2)` first
/// (nothing but a regular file is opened), then `open(2)` with
/// `O_NONBLOCK` (a FIFO swapped in meanwhile opens at once) and
/// `O_NOCTTY` (std adds `O_CLOEXEC`), and `fstat(2)` of what was opened,
/// the check that counts. Symlinks are followed: `/etc/hawkey/hawkey.yaml`
/// may well be one.
fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let refuse_unless_file = |meta: std::fs::Metadata| match file_kind(&meta.file_type()) {
        None => Ok(()),
        Some(kind) => Err(Error::NotAFile {
            path: path.to_owned(),
            kind,
        }),
    };
    refuse_unless_file(std::fs::metadata(path).map_err(read_err)?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read_err)?;
    refuse_unless_file(file.metadata().map_err(read_err)?)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// What a file that is not a regular file is, in words; `None` for a
/// regular file.
fn file_kind(kind: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    Some(if kind.is_file() {
        return None;
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "of an unknown kind"
    })
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let bytes = read_file(path)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            // Locate the first byte that is not UTF-8, like any other error.
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let (line, column) = events::position_after(&String::from_utf8_lossy(good));
            // The key whose value holds it, read from the file with each bad
            // sequence replaced: what comes before it is unchanged.
            let key = events::path_at(&String::from_utf8_lossy(e.as_bytes()), line, column);
            Located {
                line,
                column,
                key,
                message: "invalid UTF-8 (a config file must be UTF-8)".into(),
            }
            .at(path)
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
        let raw = schema::parse(text).map_err(|e| e.at(path))?;
        raw.validate(text).map_err(|e| e.at(path))
    }

    /// The `pidfile` and `control_socket` keys of a file that may not
    /// validate as a whole (see `schema::RawLocator`); `None` if even those
    /// cannot be read.
    pub(crate) fn locate(path: &Path) -> Option<(Pidfile, Pidfile)> {
        let text = String::from_utf8(read_file(path).ok()?).ok()?;
        schema::parse_locator(&text).map(schema::RawLocator::into_keys)
    }

    /// The configuration as `hawkey check` prints it: YAML that parses back
    /// to the same `Config`.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("a validated config always serializes")
    }
}

#[cfg(test)]
mod tests;
