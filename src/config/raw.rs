//! The config file exactly as written, and the checks that turn it into a
//! [`Config`]. Values that a later, cross-key check may reject are kept
//! `Spanned`, so that error can point at the offending token too.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::events;
use super::{
    Address, AppKind, Backoff, Config, Format, Heartbeat, Level, Listen, Located, Log, MAX_WORKERS,
    Mode, Pidfile, RESERVED_ENV, Ready, SignalName, Span, WorkerCount, Workers, resolve_program,
    valid_env_name,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    listen: Option<Spanned<Vec<RawListen>>>,
    #[serde(default)]
    workers: RawWorkers,
    /// Absent: `None`; `null`: `Some(None)`; a path: `Some(Some(path))`.
    #[serde(default, deserialize_with = "present")]
    pidfile: Option<Option<Spanned<PathBuf>>>,
    #[serde(default, deserialize_with = "present")]
    control_socket: Option<Option<Spanned<PathBuf>>>,
    #[serde(default)]
    log: RawLog,
}

type Pairs = Vec<(Spanned<String>, Spanned<String>)>;

/// A mapping as its entries in file order, keys located too (so an error
/// about a key can point at it). Duplicate keys never get here: the
/// parser refuses them.
fn pairs<'de, D>(deserializer: D) -> Result<Pairs, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Pairs;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a mapping of NAME: value")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::new();
            while let Some(pair) = map.next_entry()? {
                pairs.push(pair);
            }
            Ok(pairs)
        }
    }
    deserializer.deserialize_map(Visitor)
}

/// Tells a key written as `null` apart from an absent one.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    name: Spanned<String>,
    address: Spanned<String>,
    backlog: Option<Spanned<u32>>,
    mode: Option<Spanned<Mode>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkers {
    count: Option<Spanned<RawCount>>,
    app: Option<Spanned<AppName>>,
    command: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default, deserialize_with = "pairs")]
    env: Pairs,
    cwd: Option<Spanned<PathBuf>>,
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    ready: Option<Spanned<ReadyName>>,
    ready_timeout: Option<Spanned<Span>>,
    #[serde(default, deserialize_with = "present")]
    heartbeat_timeout: Option<Option<Spanned<Span>>>,
    stop_signal: Option<SignalName>,
    stop_timeout: Option<Span>,
    restart_backoff: Option<Spanned<RawBackoff>>,
}

/// `expecting` cannot name `MAX_WORKERS`; a test keeps the two equal.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected auto or a whole number of workers from 1 to 1024"
)]
enum RawCount {
    Number(i64),
    Word(String),
}

#[derive(Debug, Clone, Copy)]
enum AppName {
    Builtin,
    Exec,
}

#[derive(Debug, Clone, Copy)]
enum ReadyName {
    Started,
    Notify,
}

/// An enum written as one lowercase word. Read from the scalar's text (not
/// serde's enum forms, which would also accept `app: {builtin: null}`), so
/// only the words themselves are accepted, and the error lists them.
macro_rules! word_enum {
    ($($ty:ident { $($variant:ident => $word:literal),+ })+) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                const WORDS: &[&str] = &[$($word),+];
                struct Word;
                impl<'de> serde::de::Visitor<'de> for Word {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        write!(f, "one of {}", WORDS.join(", "))
                    }
                    fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<$ty, E> {
                        match word {
                            $($word => Ok($ty::$variant),)+
                            _ => Err(E::custom(format!(
                                "unknown variant '{word}', expected one of {}",
                                WORDS.join(", ")
                            ))),
                        }
                    }
                    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_unit<E: serde::de::Error>(self) -> Result<$ty, E> {
                        Err(E::custom(format!("expected one of {} (found null)", WORDS.join(", "))))
                    }
                    fn visit_none<E: serde::de::Error>(self) -> Result<$ty, E> {
                        self.visit_unit()
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<$ty, A::Error> {
                        Err(serde::de::Error::custom(format!(
                            "expected one of {} (a plain value, not a list)",
                            WORDS.join(", ")
                        )))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<$ty, A::Error> {
                        Err(serde::de::Error::custom(format!(
                            "expected one of {} (a plain value, not a mapping)",
                            WORDS.join(", ")
                        )))
                    }
                }
                deserializer.deserialize_any(Word)
            }
        }
    )+};
}

word_enum! {
    AppName { Builtin => "builtin", Exec => "exec" }
    ReadyName { Started => "started", Notify => "notify" }
    LevelName { Error => "error", Warn => "warn", Info => "info", Debug => "debug", Trace => "trace" }
    FormatName { Auto => "auto", Journald => "journald", Text => "text", Json => "json" }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    initial: Option<Spanned<Span>>,
    max: Option<Spanned<Span>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<LevelName>,
    format: Option<FormatName>,
}

#[derive(Debug, Clone, Copy)]
enum LevelName {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy)]
enum FormatName {
    Auto,
    Journald,
    Text,
    Json,
}

/// The limits a config file must stay within: far above any real config,
/// far below what would cost hawkey time or memory (alias bombs, deep
/// nesting, huge documents). Checked by serde-saphyr while it reads.
mod limits {
    pub(crate) const EVENTS: usize = 200_000;
    pub(crate) const ALIASES: usize = 1_000;
    pub(crate) const ANCHORS: usize = 1_000;
    pub(crate) const DEPTH: usize = 32;
    pub(crate) const NODES: usize = 100_000;
    pub(crate) const SCALAR_BYTES: usize = 1024 * 1024;
    /// An alias storm: at least this many aliases, and more than
    /// `PER_ANCHOR` for each anchor defined.
    pub(crate) const STORM_ALIASES: usize = 100;
    pub(crate) const PER_ANCHOR: usize = 10;
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = limits::EVENTS;
    budget.max_aliases = limits::ALIASES;
    budget.max_anchors = limits::ANCHORS;
    budget.max_depth = limits::DEPTH;
    budget.max_documents = 1;
    budget.max_nodes = limits::NODES;
    budget.max_total_scalar_bytes = limits::SCALAR_BYTES;
    budget.alias_anchor_min_aliases = limits::STORM_ALIASES;
    budget.alias_anchor_ratio_multiplier = limits::PER_ANCHOR;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    options.strict_booleans = true;
    options
}

/// Parses the YAML text into the raw layer, with the key path of the first
/// error recorded beside serde-saphyr's location.
pub(super) fn parse(text: &str) -> Result<RawConfig, Located> {
    if text.trim().is_empty() {
        // An empty file is a valid config with every default.
        return parse("{}");
    }
    let mut path = String::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize::<_, RawConfig>(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|error| locate(text, &clean_path(&path), error.without_snippet()))
}

/// Turns serde-saphyr's error into ours: the location of the offending
/// token, the key path whose value holds it, and words for the reader.
fn locate(text: &str, serde_path: &str, error: &serde_saphyr::Error) -> Located {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach;
    let (mut line, mut column) = error
        .location()
        .map(|l| (l.line() as u32, l.column() as u32))
        .unwrap_or((1, 1));
    let mut message = describe(error);
    match error {
        // Judged once the whole document is read, so reported at its end:
        // find the alias where the storm began instead.
        E::Budget {
            breach: BudgetBreach::AliasAnchorRatio { .. },
            ..
        } => {
            if let Some((line, column, key, aliases, anchors)) =
                events::alias_storm(text, limits::STORM_ALIASES, limits::PER_ANCHOR)
            {
                return Located {
                    line,
                    column,
                    key,
                    message: storm(aliases, anchors),
                };
            }
        }
        // The parser scans ahead of serde: a deep `[[[[...` can reach its
        // flow nesting limit (256) before serde counts 33 levels.
        E::ExternalMessage { msg, .. } if msg == "recursion limit exceeded" => {
            if let Some((line, column, key)) = events::too_deep(text, limits::DEPTH) {
                return Located {
                    line,
                    column,
                    key,
                    message: describe_depth(),
                };
            }
        }
        // serde notices a missing field at the end of the mapping; the
        // mapping that lacks it is the token to show.
        E::SerdeMissingField { .. } => {
            if let Some((l, c)) = events::value_start(text, serde_path) {
                (line, column) = (l, c);
            }
        }
        _ => {}
    }
    if let Some((l, c, m)) = refine(text, line, column, &message) {
        (line, column, message) = (l, c, m);
    }
    // serde knows the path of what it was deserializing, but the parser
    // reads ahead of it (a broken quote in `workers.user` surfaces while
    // serde stands at `workers`), and a key it could not read is '?' to
    // it. Where the events find the location deeper inside serde's path,
    // they name the value exactly; elsewhere serde's path stands: at an
    // unknown key, or where an alias or merge repeats a node written
    // under another key.
    let here = events::path_at(text, line, column);
    let key = if events::within(&here, serde_path) {
        here
    } else {
        serde_path.to_string()
    };
    Located {
        line,
        column,
        key,
        message,
    }
}

/// Two parser errors that point away from the mistake:
/// - a tab indenting a key after a plain value is reported at that value
///   ("while scanning a plain scalar, found a tab"): show the token the tab
///   indents, in the words the parser uses for the same tab elsewhere;
/// - a `- item` line inside a mapping is reported at the item: show the `-`.
fn refine(text: &str, line: u32, column: u32, message: &str) -> Option<(u32, u32, String)> {
    let lines: Vec<&str> = text.split('\n').collect();
    if message == "while scanning a plain scalar, found a tab" {
        for (n, l) in lines.iter().enumerate().skip(line as usize) {
            let indent: String = l.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
            if indent.contains('\t') && indent.len() < l.len() {
                return Some((
                    n as u32 + 1,
                    indent.chars().count() as u32 + 1,
                    "tabs disallowed within this context (block indentation)".into(),
                ));
            }
            if !l.trim().is_empty() {
                break;
            }
        }
    }
    if message.ends_with("did not find expected key") {
        let before: String = lines
            .get((line as usize).checked_sub(1)?)?
            .chars()
            .take((column as usize).saturating_sub(1))
            .collect();
        let entry = before.trim_end();
        if entry.trim_start() == "-" {
            return Some((line, entry.chars().count() as u32, message.to_string()));
        }
    }
    None
}

fn max_unsigned(ty: &str) -> u64 {
    match ty {
        "u8" => u8::MAX.into(),
        "u16" => u16::MAX.into(),
        "u32" => u32::MAX.into(),
        _ => u64::MAX,
    }
}

fn describe_depth() -> String {
    format!("nested more than {} levels deep", limits::DEPTH)
}

fn storm(aliases: usize, anchors: usize) -> String {
    format!(
        "{aliases} aliases for {anchors} anchor(s): more than {} per anchor is refused as an alias bomb",
        limits::PER_ANCHOR
    )
}

/// The message for the reader: serde-saphyr's own words where they are
/// clear, ours where they speak of Rust types or internal counters.
fn describe(error: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    match error {
        E::Budget { breach, .. } => match breach {
            B::Documents { .. } => "a second YAML document (a config file is one document)".into(),
            B::Depth { .. } => describe_depth(),
            B::Nodes { .. } => format!(
                "more than {} values, counting what aliases repeat (refused as an alias bomb or a runaway file)",
                limits::NODES
            ),
            B::ScalarBytes { .. } => format!(
                "more than {} MiB of text, counting what aliases repeat (refused as an alias bomb)",
                limits::SCALAR_BYTES >> 20
            ),
            B::Aliases { .. } => format!("more than {} aliases", limits::ALIASES),
            B::Anchors { .. } => format!("more than {} anchors", limits::ANCHORS),
            B::Events { .. } => format!("more than {} YAML events", limits::EVENTS),
            B::AliasAnchorRatio { aliases, anchors } => storm(*aliases, *anchors),
            other => format!("too large or complex a document ({other:?})"),
        },
        E::RecursiveReferencesRequireWeakTypes { .. } => {
            "alias refers to the node that contains it (a recursive alias)".into()
        }
        E::InvalidScalar { ty, .. } => match *ty {
            "u8" | "u16" | "u32" | "u64" | "usize" => {
                format!("expected a whole number from 0 to {}", max_unsigned(ty))
            }
            "i8" | "i16" | "i32" | "i64" | "isize" => "expected a whole number".into(),
            "f32" | "f64" => "expected a number".into(),
            "bool" => "expected true or false".into(),
            other => format!("invalid {other}"),
        },
        E::TaggedScalarCannotDeserializeIntoString { .. } => {
            "expected a plain string (remove the '!!' tag)".into()
        }
        E::NullIntoString { .. } => "expected a value, found null (nothing written)".into(),
        E::Unexpected { expected, .. } => match *expected {
            "string scalar" => "expected a single value, not a list or mapping".into(),
            "mapping start" => "expected a mapping (key: value)".into(),
            other => format!("expected {other}"),
        },
        other => clean_message(&other.to_string()),
    }
}

/// serde_path_to_error names positions inside our `Spanned` wrappers
/// `….value`, and unknown positions `?`; neither helps the reader.
fn clean_path(path: &str) -> String {
    let path = path.strip_suffix(".value").unwrap_or(path);
    let path = path.replace(".value[", "[").replace(".value.", ".");
    let path = path.trim_end_matches(".?").trim_end_matches('?');
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

/// serde-saphyr appends " at line L, column C" to messages; the location
/// already leads our line.
fn clean_message(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    message
        .replace(
            "set DuplicateKeyPolicy in Options if acceptable",
            "each key may appear once",
        )
        .replace('`', "'")
}

fn located<T>(spanned: &Spanned<T>, key: impl Into<String>, message: impl Into<String>) -> Located {
    Located {
        line: spanned.referenced.line() as u32,
        column: spanned.referenced.column() as u32,
        key: key.into(),
        message: message.into(),
    }
}

impl RawConfig {
    /// Checks every rule that spans keys, fills in defaults and returns the
    /// effective configuration. `path_var` is the `PATH` used to find
    /// `workers.command[0]`.
    pub(super) fn validate_with(self, path_var: Option<&OsStr>) -> Result<Config, Located> {
        let listen = validate_listen(self.listen)?;
        let workers = self.workers.validate(path_var)?;
        let pidfile = match self.pidfile {
            None => Pidfile::Default,
            Some(None) => Pidfile::Disabled,
            Some(Some(p)) if p.value.is_absolute() => Pidfile::Path(p.value),
            Some(Some(p)) => {
                return Err(located(
                    &p,
                    "pidfile",
                    "must be an absolute path (or null to disable it)",
                ));
            }
        };
        let control_socket = match self.control_socket {
            None => Pidfile::Default,
            Some(None) => Pidfile::Disabled,
            Some(Some(p)) if p.value.is_absolute() && p.value.as_os_str().len() <= 107 => {
                Pidfile::Path(p.value)
            }
            Some(Some(p)) => {
                return Err(located(
                    &p,
                    "control_socket",
                    "must be an absolute path of at most 107 bytes (or null to disable it)",
                ));
            }
        };
        let log = Log {
            level: match self.log.level.unwrap_or(LevelName::Info) {
                LevelName::Error => Level::Error,
                LevelName::Warn => Level::Warn,
                LevelName::Info => Level::Info,
                LevelName::Debug => Level::Debug,
                LevelName::Trace => Level::Trace,
            },
            format: match self.log.format.unwrap_or(FormatName::Auto) {
                FormatName::Auto => Format::Auto,
                FormatName::Journald => Format::Journald,
                FormatName::Text => Format::Text,
                FormatName::Json => Format::Json,
            },
        };
        Ok(Config {
            listen,
            workers,
            pidfile,
            control_socket,
            log,
        })
    }

    pub(super) fn validate(self) -> Result<Config, Located> {
        let path_var = std::env::var_os("PATH");
        self.validate_with(path_var.as_deref())
    }
}

fn validate_listen(listen: Option<Spanned<Vec<RawListen>>>) -> Result<Vec<Listen>, Located> {
    let Some(listen) = listen else {
        return Ok(vec![Listen {
            name: "http".into(),
            address: Address::Tcp("127.0.0.1:8080".parse().expect("valid literal")),
            backlog: 1024,
            mode: None,
        }]);
    };
    if listen.value.is_empty() {
        return Err(located(&listen, "listen", "needs at least one listener"));
    }
    let mut out: Vec<Listen> = Vec::new();
    for (i, entry) in listen.value.into_iter().enumerate() {
        let key = |k: &str| format!("listen[{i}].{k}");
        let name = &entry.name.value;
        if name.is_empty()
            || name.len() > 255
            || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        {
            return Err(located(
                &entry.name,
                key("name"),
                format!("invalid name '{name}' (1 to 255 printable characters, no ':' or spaces)"),
            ));
        }
        if out.iter().any(|l| &l.name == name) {
            return Err(located(
                &entry.name,
                key("name"),
                format!("duplicate listener name '{name}'"),
            ));
        }
        let address = parse_address(&entry.address.value)
            .map_err(|m| located(&entry.address, key("address"), m))?;
        if let Some(other) = out.iter().find(|l| l.address == address) {
            return Err(located(
                &entry.address,
                key("address"),
                format!("'{address}' is already used by listener '{}'", other.name),
            ));
        }
        let backlog = match entry.backlog {
            None => 1024,
            Some(b) if (1..=65535).contains(&b.value) => b.value,
            Some(b) => {
                return Err(located(
                    &b,
                    key("backlog"),
                    format!("{} is out of range (1 to 65535)", b.value),
                ));
            }
        };
        let mode = match (&address, entry.mode) {
            (Address::Unix(_), mode) => Some(mode.map(|m| m.value).unwrap_or(Mode(0o660))),
            (Address::Tcp(_), None) => None,
            (Address::Tcp(_), Some(m)) => {
                return Err(located(
                    &m,
                    key("mode"),
                    "only unix: addresses have a file mode",
                ));
            }
        };
        out.push(Listen {
            name: name.clone(),
            address,
            backlog,
            mode,
        });
    }
    Ok(out)
}

/// `host:port`, `[v6]:port` or `unix:/absolute/path`.
pub(super) fn parse_address(text: &str) -> Result<Address, String> {
    const ALLOWED: &str = "host:port, [v6]:port or unix:/absolute/path";
    if let Some(path) = text.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        // sun_path holds 108 bytes including the terminating NUL.
        if !path.is_absolute() {
            return Err(format!(
                "unix socket path '{}' must be absolute ({ALLOWED})",
                path.display()
            ));
        }
        if path.as_os_str().len() > 107 {
            return Err(format!(
                "unix socket path is longer than 107 bytes ({ALLOWED})"
            ));
        }
        return Ok(Address::Unix(path));
    }
    match text.parse::<SocketAddr>() {
        Ok(addr) => Ok(Address::Tcp(addr)),
        Err(_) if text.starts_with("localhost:") => Err(format!(
            "invalid address '{text}': use an IP address such as 127.0.0.1 or [::1], not a host name ({ALLOWED})"
        )),
        Err(_) => Err(format!("invalid address '{text}' ({ALLOWED})")),
    }
}

impl RawWorkers {
    fn validate(self, path_var: Option<&OsStr>) -> Result<Workers, Located> {
        let count = match self.count {
            None => WorkerCount::Auto,
            Some(c) => match &c.value {
                RawCount::Word(w) if w == "auto" => WorkerCount::Auto,
                RawCount::Number(n) if (1..=i64::from(MAX_WORKERS)).contains(n) => {
                    WorkerCount::Fixed(*n as u32)
                }
                RawCount::Number(n) => {
                    return Err(located(
                        &c,
                        "workers.count",
                        format!("{n} is out of range (auto, or 1 to {MAX_WORKERS})"),
                    ));
                }
                RawCount::Word(w) => {
                    return Err(located(
                        &c,
                        "workers.count",
                        format!("invalid count '{w}' (auto, or 1 to {MAX_WORKERS})"),
                    ));
                }
            },
        };
        let app = match self.app.as_ref().map(|a| a.value) {
            None | Some(AppName::Builtin) => AppKind::Builtin,
            Some(AppName::Exec) => AppKind::Exec,
        };
        let command = match (app, self.command) {
            (AppKind::Exec, None) => {
                let at = self.app.as_ref().expect("exec is only set explicitly");
                return Err(located(
                    at,
                    "workers.app",
                    "app: exec needs workers.command (the program and its arguments)",
                ));
            }
            (AppKind::Exec, Some(cmd)) => {
                let Some(program) = cmd.value.first() else {
                    return Err(located(
                        &cmd,
                        "workers.command",
                        "is empty (the program and its arguments)",
                    ));
                };
                if let Some((i, arg)) = cmd
                    .value
                    .iter()
                    .enumerate()
                    .find(|(_, a)| a.value.contains('\0'))
                {
                    return Err(located(
                        arg,
                        format!("workers.command[{i}]"),
                        "contains a NUL byte",
                    ));
                }
                if resolve_program(&program.value, path_var).is_none() {
                    return Err(located(
                        program,
                        "workers.command[0]",
                        format!(
                            "'{}' is not an executable file (give an absolute path, or a name found in PATH)",
                            program.value
                        ),
                    ));
                }
                cmd.value.into_iter().map(|a| a.value).collect()
            }
            (AppKind::Builtin, Some(cmd)) => {
                return Err(located(
                    &cmd,
                    "workers.command",
                    "is only used with app: exec",
                ));
            }
            (AppKind::Builtin, None) => Vec::new(),
        };
        let mut env = BTreeMap::new();
        for (name, value) in self.env {
            let key = format!("workers.env.{}", name.value);
            if !valid_env_name(&name.value) {
                return Err(located(
                    &name,
                    key,
                    "invalid variable name (no '=', spaces, control characters or leading digit)",
                ));
            }
            if RESERVED_ENV.contains(&name.value.as_str()) {
                return Err(located(
                    &name,
                    key,
                    "is set by hawkey for each worker and cannot be overridden",
                ));
            }
            if value.value.contains('\0') {
                return Err(located(&value, key, "value contains a NUL byte"));
            }
            env.insert(name.value, value.value);
        }
        let cwd = match self.cwd {
            None => None,
            Some(c) if !c.value.is_absolute() => {
                return Err(located(&c, "workers.cwd", "must be an absolute path"));
            }
            Some(c) if !c.value.is_dir() => {
                return Err(located(
                    &c,
                    "workers.cwd",
                    format!("'{}' is not a directory", c.value.display()),
                ));
            }
            Some(c) => Some(c.value),
        };
        let user = match self.user {
            None => None,
            Some(u) => match nix::unistd::User::from_name(&u.value) {
                Ok(Some(_)) => Some(u.value),
                _ => {
                    return Err(located(
                        &u,
                        "workers.user",
                        format!("no such user '{}'", u.value),
                    ));
                }
            },
        };
        let group = match self.group {
            None => None,
            Some(g) => match nix::unistd::Group::from_name(&g.value) {
                Ok(Some(_)) => Some(g.value),
                _ => {
                    return Err(located(
                        &g,
                        "workers.group",
                        format!("no such group '{}'", g.value),
                    ));
                }
            },
        };
        let ready = match self.ready {
            None
            | Some(Spanned {
                value: ReadyName::Started,
                ..
            }) => Ready::Started,
            Some(Spanned {
                value: ReadyName::Notify,
                ..
            }) if app == AppKind::Exec => Ready::Notify,
            Some(r) => {
                return Err(located(
                    &r,
                    "workers.ready",
                    "builtin workers always report readiness themselves; ready: is for app: exec",
                ));
            }
        };
        let ready_timeout = match self.ready_timeout {
            None => Span(std::time::Duration::from_secs(30)),
            Some(t) if t.value.0.is_zero() => {
                return Err(located(
                    &t,
                    "workers.ready_timeout",
                    "must be longer than 0s",
                ));
            }
            Some(t) => t.value,
        };
        let heartbeat_timeout = match self.heartbeat_timeout {
            None => Heartbeat::Default,
            Some(None) => Heartbeat::Off,
            Some(Some(h)) if h.value.0 < std::time::Duration::from_millis(100) => {
                return Err(located(
                    &h,
                    "workers.heartbeat_timeout",
                    "must be at least 100ms (or null to disable heartbeats)",
                ));
            }
            Some(Some(h)) if app == AppKind::Exec && ready != Ready::Notify => {
                return Err(located(
                    &h,
                    "workers.heartbeat_timeout",
                    "exec workers send heartbeats over NOTIFY_SOCKET: it needs ready: notify",
                ));
            }
            Some(Some(h)) => Heartbeat::Every(h.value),
        };
        let mut restart_backoff = Backoff {
            initial: Span(std::time::Duration::from_millis(100)),
            max: Span(std::time::Duration::from_secs(30)),
        };
        if let Some(b) = self.restart_backoff {
            let RawBackoff { initial, max } = &b.value;
            restart_backoff.initial = initial
                .as_ref()
                .map_or(restart_backoff.initial, |i| i.value);
            restart_backoff.max = max.as_ref().map_or(restart_backoff.max, |m| m.value);
            if let Some(i) = initial.as_ref().filter(|i| i.value.0.is_zero()) {
                return Err(located(
                    i,
                    "workers.restart_backoff.initial",
                    "must be longer than 0s",
                ));
            }
            let Backoff { initial: i, max: m } = restart_backoff;
            if i > m {
                // A relation between the two: the mapping is the place.
                return Err(located(
                    &b,
                    "workers.restart_backoff",
                    format!("initial ({i}) is longer than max ({m})"),
                ));
            }
        }
        Ok(Workers {
            count,
            app,
            command,
            env,
            cwd,
            user,
            group,
            ready,
            ready_timeout,
            heartbeat_timeout,
            stop_signal: self
                .stop_signal
                .unwrap_or(SignalName(nix::sys::signal::Signal::SIGTERM)),
            stop_timeout: self
                .stop_timeout
                .unwrap_or(Span(std::time::Duration::from_secs(25))),
            restart_backoff,
        })
    }
}

/// Just the keys that say where a running master can be reached, read
/// leniently: other keys are neither checked nor needed. Lets `hawkey
/// reload` reach the master even when the file no longer validates, so the
/// master (which must refuse it) is the one to report why.
#[derive(Debug, Deserialize)]
pub(super) struct RawLocator {
    #[serde(default, deserialize_with = "present")]
    pidfile: Option<Option<PathBuf>>,
    #[serde(default, deserialize_with = "present")]
    control_socket: Option<Option<PathBuf>>,
}

impl RawLocator {
    pub(super) fn into_keys(self) -> (Pidfile, Pidfile) {
        let key = |k: Option<Option<PathBuf>>| match k {
            None => Pidfile::Default,
            Some(None) => Pidfile::Disabled,
            Some(Some(p)) => Pidfile::Path(p),
        };
        (key(self.pidfile), key(self.control_socket))
    }
}

pub(super) fn parse_locator(text: &str) -> Option<RawLocator> {
    if text.trim().is_empty() {
        return parse_locator("{}");
    }
    serde_saphyr::from_str_with_options(text, options()).ok()
}
