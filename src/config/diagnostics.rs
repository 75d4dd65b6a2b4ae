//! serde and YAML errors turned into located one-line messages.
//!
//! serde-saphyr reports where the parser stood and serde_path_to_error the
//! key path serde was filling; neither is quite what the reader needs. This
//! module picks the offending token ([`locate`], [`refine`]), names the key
//! whose value holds it (with `events`), and words the message for someone
//! editing a config file rather than a Rust type ([`describe`],
//! [`clean_message`], [`clean_path`]). The result, a [`Located`], becomes an
//! [`Error::Invalid`](super::Error::Invalid) once the file name is known.

use std::path::Path;

use serde_saphyr::{Location, Spanned};

use super::Error;
use super::events;
use super::flow;
use super::limits;

/// Where the name of a `workers.env` entry was read from: `referenced`
/// and `defined` differ where a merge or alias repeated it.
#[derive(Clone, Copy, Debug)]
pub(super) struct EnvName {
    pub(super) referenced: Location,
    pub(super) defined: Location,
}

/// Turns serde-saphyr's error into ours: the location of the offending
/// token, the key path whose value holds it, and words for the reader.
/// `env_name`: the `workers.env` entry whose value serde was reading, if
/// it failed there.
pub(super) fn locate(
    text: &str,
    serde_path: &str,
    error: &serde_saphyr::Error,
    env_name: Option<EnvName>,
) -> Located {
    let (mut line, mut column) = error
        .location()
        .map(|l| (l.line() as u32, l.column() as u32))
        .unwrap_or((1, 1));
    let mut message = describe(error);
    match elsewhere(text, serde_path, error) {
        Some(Elsewhere::Whole(located)) => return located,
        Some(Elsewhere::At(l, c)) => (line, column) = (l, c),
        None => {}
    }
    if let Some((l, c, m)) = refine(text, line, column, &message) {
        (line, column, message) = (l, c, m);
    }
    if let serde_saphyr::Error::ExternalMessage { .. } = error
        && let Some(m) = flow::reword(text, line, column, &message)
    {
        message = m;
    }
    let key = key_path(text, serde_path, error, env_name, (line, column));
    if message == "expected sequence start" {
        message = expected_list(text, &key, (line, column));
    }
    Located {
        line,
        column,
        key,
        message,
    }
}

/// What [`elsewhere`] found.
enum Elsewhere {
    /// The error, located and worded anew.
    Whole(Located),
    /// The place to show instead.
    At(u32, u32),
}

/// Errors that serde-saphyr reports away from the token to show, found
/// again by reading the events.
fn elsewhere(text: &str, serde_path: &str, error: &serde_saphyr::Error) -> Option<Elsewhere> {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach;
    match error {
        // Judged once the whole document is read, so reported at its end:
        // find the alias where the storm began instead.
        E::Budget {
            breach: BudgetBreach::AliasAnchorRatio { .. },
            ..
        } => {
            let (line, column, key, aliases, anchors) =
                events::alias_storm(text, limits::STORM_ALIASES, limits::PER_ANCHOR)?;
            Some(Elsewhere::Whole(Located {
                line,
                column,
                key,
                message: storm(aliases, anchors),
            }))
        }
        // The parser scans ahead of serde: a deep `[[[[...` can reach its
        // flow nesting limit (256) before serde counts 33 levels.
        E::ExternalMessage { msg, .. } if msg == "recursion limit exceeded" => {
            let (line, column, key) = events::too_deep(text, limits::DEPTH)?;
            Some(Elsewhere::Whole(Located {
                line,
                column,
                key,
                message: describe_depth(),
            }))
        }
        // serde notices a missing field at the end of the mapping; the
        // mapping that lacks it is the token to show.
        E::SerdeMissingField { .. } => {
            let (line, column) = events::value_start(text, serde_path)?;
            Some(Elsewhere::At(line, column))
        }
        _ => None,
    }
}

/// The key path to name for an error shown at `at`.
///
/// serde knows the path of what it was deserializing, but the parser
/// reads ahead of it (a broken quote in `workers.user` surfaces while
/// serde stands at `workers`), and a key it could not read is '?' to it.
/// Where the events find the location deeper inside serde's path, they
/// name the value exactly; elsewhere serde's path stands: at an unknown
/// key, or where an alias or merge repeats a node written under another
/// key.
fn key_path(
    text: &str,
    serde_path: &str,
    error: &serde_saphyr::Error,
    env_name: Option<EnvName>,
    at: (u32, u32),
) -> String {
    let here = env_name
        .and_then(|name| env_value_path(text, serde_path, error, name, at))
        .unwrap_or_else(|| events::path_at(text, at.0, at.1));
    if events::within(&here, serde_path) {
        here
    } else {
        serde_path.to_string()
    }
}

/// The key path [`events::path_at`] finds for an error at `at` (line,
/// column) that serde-saphyr raised while reading the value of the
/// `workers.env` entry `name`, where the text alone shows what it is: the
/// walk reads the document a second time up to the error, which was most
/// of the time to refuse a large `env` that runs over the node budget.
///
/// The text shows it when the error is a budget breach (raised at the node
/// the parser has just given, not ahead of it), at the token right after
/// `NAME:` on the line of a name written plainly (letters, digits and `_`)
/// where it is read (not repeated by a merge, whose locations differ), with
/// no alias before it (so no key above it repeats another), and serde
/// stands in `workers.env`: then that token is the value of `NAME`, and
/// its path `workers.env.NAME`. Otherwise `None`, and the walk decides.
fn env_value_path(
    text: &str,
    serde_path: &str,
    error: &serde_saphyr::Error,
    name: EnvName,
    (line, column): (u32, u32),
) -> Option<String> {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach;
    let E::Budget { breach, .. } = error else {
        return None;
    };
    if matches!(breach, BudgetBreach::AliasAnchorRatio { .. })
        || serde_path != "workers.env"
        || name.referenced != name.defined
    {
        return None;
    }
    let span = name.referenced.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let end = start.checked_add(usize::try_from(span.byte_len()?).ok()?)?;
    let written = text.get(start..end)?;
    if written.is_empty()
        || !written
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return None;
    }
    let blanks = |s: &str| s.len() - s.trim_start_matches([' ', '\t']).len();
    let colon = end + blanks(&text[end..]);
    let value = text[colon..]
        .strip_prefix(':')
        .map(|v| colon + 1 + blanks(v))?;
    if text[..value].contains('*') {
        return None;
    }
    let value_column = name.referenced.column() + text[start..value].chars().count() as u64;
    ((name.referenced.line(), value_column) == (u64::from(line), u64::from(column)))
        .then(|| format!("{serde_path}.{written}"))
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

/// "expected sequence start", in the words of the key that wants a list:
/// a program and its arguments for `workers.command` (with the list
/// written out when the value was a plain one-line command), listeners
/// for `listen`.
fn expected_list(text: &str, key: &str, (line, column): (u32, u32)) -> String {
    match key {
        "workers.command" => {
            let written: String = text
                .split('\n')
                .nth((line as usize).saturating_sub(1))
                .unwrap_or("")
                .chars()
                .skip((column as usize).saturating_sub(1))
                .collect();
            let written = written.trim().trim_matches(|c| c == '"' || c == '\'');
            let words: Vec<&str> = written.split_whitespace().collect();
            let plain = |w: &&str| !w.contains(|c: char| "[]{},#'\"&*!|>%@`".contains(c));
            let numeric = words.first().is_some_and(|w| w.parse::<f64>().is_ok());
            if !words.is_empty() && !numeric && words.len() <= 16 && words.iter().all(plain) {
                format!(
                    "expected a list of program and arguments, such as [{}]",
                    words.join(", ")
                )
            } else {
                "expected a list of program and arguments, such as [node, server.js]".into()
            }
        }
        "listen" => "expected a list of listeners (- name: ..., address: ...)".into(),
        _ => "expected a list ([a, b] or lines of '- item')".into(),
    }
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
pub(super) fn clean_path(path: &str) -> String {
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

/// An error at the token `spanned` was read from, about `key`.
pub(super) fn located<T>(
    spanned: &Spanned<T>,
    key: impl Into<String>,
    message: impl Into<String>,
) -> Located {
    located_at(&spanned.referenced, key, message)
}

/// An error at `location`, about `key`.
pub(super) fn located_at(
    location: &Location,
    key: impl Into<String>,
    message: impl Into<String>,
) -> Located {
    Located {
        line: location.line() as u32,
        column: location.column() as u32,
        key: key.into(),
        message: message.into(),
    }
}

/// An error before the file name is known to it.
#[derive(Debug)]
pub(crate) struct Located {
    pub(super) line: u32,
    pub(super) column: u32,
    pub(super) key: String,
    pub(super) message: String,
}

impl Located {
    pub(super) fn at(self, path: &Path) -> Error {
        Error::Invalid {
            path: path.to_owned(),
            line: self.line,
            column: self.column,
            key: one_line(&self.key),
            message: one_line(&self.message),
        }
    }
}

/// Text from the file (keys, values) is quoted in errors as it is, but for
/// control characters, which are escaped (`\n`, `\u{1b}`): an error stays
/// one line whatever the file holds, and a terminal shows nothing the file
/// did not say.
pub(crate) fn one_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema;

    /// An env whose two values hold more text than the budget allows
    /// ([`limits::SCALAR_BYTES`]): the breach is raised at the second
    /// value. `entry` writes an entry from its name and value.
    fn env_over_text_budget(flow: bool, entry: &str) -> String {
        let half = "x".repeat(limits::SCALAR_BYTES / 2 + 1);
        let entries = ["V0", "V1"].map(|name| entry.replace("{name}", name).replace("{v}", &half));
        if flow {
            format!("workers: {{env: {{{}}}}}\n", entries.join(", "))
        } else {
            format!("workers:\n  env:\n    {}\n", entries.join("\n    "))
        }
    }

    /// The error's key, whether the text alone named it, and the key the
    /// walk names at the same place.
    fn named(text: &str) -> (String, bool, String) {
        let Err(failed) = schema::read(text) else {
            panic!("config should be rejected");
        };
        let error = failed.error.without_snippet();
        assert!(
            matches!(error, serde_saphyr::Error::Budget { .. }),
            "{error}"
        );
        let serde_path = clean_path(&failed.serde_path);
        let located = locate(text, &serde_path, error, failed.env_name);
        let at = (located.line, located.column);
        let shortcut = failed
            .env_name
            .and_then(|name| env_value_path(text, &serde_path, error, name, at));
        let walked = events::path_at(text, at.0, at.1);
        (located.key, shortcut.is_some(), walked)
    }

    #[test]
    fn a_budget_breach_in_an_env_value_is_named_as_the_walk_names_it() {
        for (flow, entry, by_text) in [
            (true, "{name}: {v}", true),
            (false, "{name}: {v}", true),
            (true, "{name} :  '{v}'", true),
            (false, "{name}:\t\"{v}\"", true),
            // The name is not written as it reads, the value is not right
            // after it, or an alias comes first: the walk decides.
            (true, "\"{name}\": {v}", false),
            (false, "{name}: &a {v}", false),
            (false, "{name}: # the value\n      {v}", false),
            (false, "? {name}\n    : {v}", false),
        ] {
            let text = env_over_text_budget(flow, entry);
            let (key, shortcut, walked) = named(&text);
            assert_eq!(key, "workers.env.V1", "{entry:?}");
            assert_eq!(key, walked, "{entry:?}");
            assert_eq!(shortcut, by_text, "{entry:?}");
        }
    }

    #[test]
    fn after_an_alias_the_walk_names_the_env_value() {
        let text = env_over_text_budget(true, "{name}: {v}").replace("{V0", "{A: &a q, B: *a, V0");
        let (key, shortcut, walked) = named(&text);
        assert_eq!((key.as_str(), shortcut), ("workers.env.V1", false));
        assert_eq!(key, walked);
    }
}
