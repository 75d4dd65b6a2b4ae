//! The config file exactly as written: the serde schema (`Raw*` types,
//! unknown keys rejected), the helpers that read its odd shapes (a key
//! written as `null` versus an absent one, a mapping as its entries in file
//! order, enums as one lowercase word), the limits a file must stay within,
//! and [`parse`], which reads YAML text into [`RawConfig`]. Values that a
//! later, cross-key check may reject are kept `Spanned`, so that error can
//! point at the offending token too; `workers.env`'s values are the one
//! exception, for speed (see [`Pairs`]).

use std::cell::Cell;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::diagnostics::{EnvName, Located, clean_path, locate};
use super::limits;
use super::units::{Percent, Size};
use super::{Mode, Pidfile, SignalName, Span};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) listen: Option<Spanned<Vec<RawListen>>>,
    #[serde(default)]
    pub(super) workers: RawWorkers,
    /// Absent: `None`; `null`: `Some(None)`; a path: `Some(Some(path))`.
    #[serde(default, deserialize_with = "present")]
    pub(super) pidfile: Option<Option<Spanned<PathBuf>>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) control_socket: Option<Option<Spanned<PathBuf>>>,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) reload: RawReload,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReload {
    pub(super) surge: Option<Spanned<RawSurge>>,
}

/// `expecting` cannot name `MAX_WORKERS`; a test keeps the two equal.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a whole number of workers from 1 to 1024, or a percentage such as 25%"
)]
pub(super) enum RawSurge {
    Number(i64),
    Word(String),
}

/// `workers.env` as its entries in file order: each name located (so an
/// error about it can point at it), each value as its text only.
///
/// A located value would cost ten times its text: serde_path_to_error
/// follows a `Spanned` value into the mapping serde-saphyr makes of it,
/// field by field, and a large `env` spent most of its reading there. The
/// one check that needs a value's place (a NUL byte in it) reads it again
/// with [`env_value_location`].
pub(super) type Pairs = Vec<(Spanned<String>, String)>;

thread_local! {
    /// The name of the `workers.env` entry whose value [`pairs`] is
    /// reading, while it reads it. When the reading fails there, [`parse`]
    /// takes it for `diagnostics::locate`, which can then often name the
    /// value without reading the document again. Set and taken within one
    /// `parse` on this thread.
    static READING_VALUE_OF: Cell<Option<EnvName>> = const { Cell::new(None) };
}

/// A mapping as its entries in file order, see [`Pairs`]. Duplicate keys
/// never get here: the parser refuses them.
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
            while let Some(name) = map.next_key::<Spanned<String>>()? {
                READING_VALUE_OF.set(Some(EnvName {
                    referenced: name.referenced,
                    defined: name.defined,
                }));
                let value = map.next_value()?;
                READING_VALUE_OF.set(None);
                pairs.push((name, value));
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
pub(super) struct RawListen {
    pub(super) name: Spanned<String>,
    pub(super) address: Spanned<String>,
    pub(super) backlog: Option<Spanned<u32>>,
    pub(super) mode: Option<Spanned<Mode>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkers {
    pub(super) count: Option<Spanned<RawCount>>,
    pub(super) app: Option<Spanned<AppName>>,
    pub(super) command: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default, deserialize_with = "pairs")]
    pub(super) env: Pairs,
    pub(super) cwd: Option<Spanned<PathBuf>>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) group: Option<Spanned<String>>,
    pub(super) ready: Option<Spanned<ReadyName>>,
    pub(super) ready_timeout: Option<Spanned<Span>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) heartbeat_timeout: Option<Option<Spanned<Span>>>,
    pub(super) stop_signal: Option<SignalName>,
    pub(super) stop_timeout: Option<Span>,
    pub(super) restart_backoff: Option<Spanned<RawBackoff>>,
    pub(super) recycle: Option<Spanned<RawRecycle>>,
    pub(super) adopt: Option<Spanned<RawAdopt>>,
    pub(super) preload: Option<Spanned<bool>>,
}

/// `workers.adopt`: listener name to the address the program binds, in
/// file order, each name and value located.
#[derive(Debug, Default)]
pub(super) struct RawAdopt(pub(super) Vec<(Spanned<String>, Spanned<RawAdoptSpec>)>);

impl<'de> Deserialize<'de> for RawAdopt {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawAdopt;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping of LISTENER: address, such as {http: 3000}")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(RawAdopt(entries))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// One `workers.adopt` value: a port, or an address text checked later.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a port such as 3000, or an address such as \"0.0.0.0:3000\""
)]
pub(super) enum RawAdoptSpec {
    Port(i64),
    Text(String),
}

/// `expecting` cannot name `MAX_WORKERS`; a test keeps the two equal.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected auto or a whole number of workers from 1 to 1024"
)]
pub(super) enum RawCount {
    Number(i64),
    Word(String),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum AppName {
    Builtin,
    Exec,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum ReadyName {
    Auto,
    Notify,
    Started,
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
    ReadyName { Auto => "auto", Notify => "notify", Started => "started" }
    LevelName { Error => "error", Warn => "warn", Info => "info", Debug => "debug", Trace => "trace" }
    FormatName { Auto => "auto", Journald => "journald", Text => "text", Json => "json" }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackoff {
    pub(super) initial: Option<Spanned<Span>>,
    pub(super) max: Option<Spanned<Span>>,
}

/// `workers.recycle`: each key checked in `config::recycle`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecycle {
    pub(super) memory: Option<Spanned<Size>>,
    pub(super) age: Option<Spanned<Span>>,
    pub(super) jitter: Option<Spanned<Percent>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) level: Option<LevelName>,
    pub(super) format: Option<FormatName>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum LevelName {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum FormatName {
    Auto,
    Journald,
    Text,
    Json,
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

/// Parses the YAML text into the raw layer, the first error located.
///
/// A text that holds nothing (empty, or only whitespace and comments) is
/// refused, located where it ends: YAML reads it as no document at all,
/// and taking that for "every default" would turn a file truncated by
/// accident into the built-in demo on a reload. `{}` says "every default"
/// on purpose.
pub(super) fn parse(text: &str) -> Result<RawConfig, Located> {
    if holds_nothing(text) {
        let (line, column) = super::events::position_after(text);
        return Err(Located {
            line,
            column,
            key: String::new(),
            message: "the file holds no settings (write {} for every default)".into(),
        });
    }
    read(text).map_err(|failed| {
        let error = failed.error.without_snippet();
        locate(
            text,
            &clean_path(&failed.serde_path),
            error,
            failed.env_name,
        )
    })
}

/// Whether `text` is empty or only whitespace, comments and a byte-order
/// mark: no YAML node at all.
pub(super) fn holds_nothing(text: &str) -> bool {
    text.strip_prefix('\u{feff}')
        .unwrap_or(text)
        .lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line.starts_with('#'))
}

/// Why [`read`] failed, with what is known of where.
pub(super) struct Failed {
    /// serde-saphyr's error, located where the parser stood.
    pub(super) error: serde_saphyr::Error,
    /// The key path serde was filling, as serde_path_to_error writes it.
    pub(super) serde_path: String,
    /// The `workers.env` entry whose value serde was reading, if any.
    pub(super) env_name: Option<EnvName>,
}

/// Reads the YAML text into the raw layer, recording beside the first
/// error the key path serde was filling.
pub(super) fn read(text: &str) -> Result<RawConfig, Box<Failed>> {
    let mut serde_path = String::new();
    READING_VALUE_OF.set(None);
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize::<_, RawConfig>(de).map_err(|e| {
            serde_path = e.path().to_string();
            e.into_inner()
        })
    });
    let env_name = READING_VALUE_OF.take();
    result.map_err(|error| {
        Box::new(Failed {
            error,
            serde_path,
            env_name,
        })
    })
}

/// Just the keys that say where a running master can be reached, read
/// leniently: other keys are neither checked nor needed. Lets `hawkey
/// reload` reach the master even when the file no longer validates, so the
/// master (which must refuse it) is the one to report why.
#[derive(Debug, Deserialize)]
pub(super) struct RawLocator {
    #[serde(default, deserialize_with = "present")]
    pub(super) pidfile: Option<Option<PathBuf>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) control_socket: Option<Option<PathBuf>>,
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

/// Reads the locator keys of `text`. A text that holds nothing names no
/// location, so the defaults apply: that is where the master of an
/// emptied file is to be found when its file set none, and that master
/// then refuses the file itself (see [`parse`]).
pub(super) fn parse_locator(text: &str) -> Option<RawLocator> {
    if holds_nothing(text) {
        return parse_locator("{}");
    }
    serde_saphyr::from_str_with_options(text, options()).ok()
}

/// Just `workers.env`, values located, read leniently (other keys are
/// skipped): for [`env_value_location`].
#[derive(Deserialize)]
struct EnvValues {
    #[serde(default)]
    workers: EnvValuesOfWorkers,
}

#[derive(Default, Deserialize)]
struct EnvValuesOfWorkers {
    #[serde(default, deserialize_with = "located_values")]
    env: Vec<Spanned<String>>,
}

/// The values of a mapping, located, in file order: the same entries
/// [`pairs`] reads, for the same text.
fn located_values<'de, D>(deserializer: D) -> Result<Vec<Spanned<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<Spanned<String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a mapping of NAME: value")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut values = Vec::new();
            while let Some((_, value)) = map.next_entry::<Spanned<String>, Spanned<String>>()? {
                values.push(value);
            }
            Ok(values)
        }
    }
    deserializer.deserialize_map(Visitor)
}

/// Where the value of the `index`th entry of `workers.env` is, in a text
/// that [`parse`] read without error: that reading kept the values' text
/// only (see [`Pairs`]), so the one error that points at a value reads the
/// file a second time, without serde_path_to_error.
pub(super) fn env_value_location(text: &str, index: usize) -> Option<Location> {
    let values: EnvValues = serde_saphyr::from_str_with_options(text, options()).ok()?;
    values.workers.env.get(index).map(|v| v.referenced)
}
