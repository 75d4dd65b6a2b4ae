//! Flags over a configuration: `hawkey run --count 2 --listen ADDR
//! --adopt PORT -- COMMAND ARGS…`, as `pm2 start app.js -i 2` or
//! `gunicorn -w 2 app:app` allow, with no YAML to write.
//!
//! The flags are laid over the file's values (or the built-in default's,
//! when there is no file) and the result is validated as a file would be:
//! the effective configuration is serialized, the flags replace their keys,
//! and the text is parsed again by [`Config::parse`], so a flag can make
//! nothing valid that the file could not say. `hawkey check` with the same
//! flags prints that configuration, ready to save as hawkey.yaml; a master
//! run with flags lays them again over the file it re-reads on a reload.
//!
//! What each flag sets:
//! - `--count N`: `workers.count` (`auto`, or 1 to 1024);
//! - `--listen ADDR`: `listen`, one listener with that address, named as
//!   the file's first listener was (`http` by default);
//! - `--adopt PORT`: `workers.adopt`, that listener for the program's own
//!   `bind()` of PORT (a port, or an address of one);
//! - `-- COMMAND ARGS…`: `workers.app: exec` and `workers.command`.

use std::path::Path;

use serde_json::{Map, Value};

use super::{Config, Error};

/// The flags of `hawkey run` and `hawkey check` that set keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Overrides {
    /// `--count`: `workers.count`, as written.
    pub(crate) count: Option<String>,
    /// `--listen`: the one listener's address, as written.
    pub(crate) listen: Option<String>,
    /// `--adopt`: the port (or address) the program binds, as written.
    pub(crate) adopt: Option<String>,
    /// `-- COMMAND ARGS…`: the program to run (`app: exec`).
    pub(crate) command: Vec<String>,
}

impl Overrides {
    /// Whether no flag was given.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Overrides::default()
    }

    /// The flags as they were given, for messages and `hawkey check`'s
    /// header: `--count 2 --adopt 3000 -- node server.js`.
    pub(crate) fn describe(&self) -> String {
        let mut words: Vec<String> = Vec::new();
        for (flag, value) in [
            ("--count", &self.count),
            ("--listen", &self.listen),
            ("--adopt", &self.adopt),
        ] {
            if let Some(value) = value {
                words.push(format!("{flag} {}", shell_word(value)));
            }
        }
        if !self.command.is_empty() {
            words.push("--".into());
            words.extend(self.command.iter().map(|w| shell_word(w)));
        }
        words.join(" ")
    }

    /// `config` (validated, from `source`) with these flags laid over it,
    /// validated again. An error names the flags, the source and the key,
    /// in one line ([`Error::Flags`]).
    pub(crate) fn apply(&self, config: Config, source: &str) -> Result<Config, Error> {
        if self.is_empty() {
            return Ok(config);
        }
        let flags_error = |key: String, message: String| Error::Flags {
            flags: self.describe(),
            source_name: source.to_string(),
            key,
            message,
        };
        let mut doc: Value = serde_saphyr::from_str(&config.to_yaml())
            .map_err(|e| flags_error(String::new(), e.to_string()))?;
        let top = doc
            .as_object_mut()
            .ok_or_else(|| flags_error(String::new(), "not a mapping".into()))?;
        let name = top
            .get("listen")
            .and_then(|l| l.get(0))
            .and_then(|l| l.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("http")
            .to_string();
        if let Some(address) = &self.listen {
            let mut listener = Map::new();
            listener.insert("name".into(), Value::from(name.clone()));
            listener.insert("address".into(), Value::from(address.clone()));
            top.insert("listen".into(), Value::Array(vec![Value::Object(listener)]));
        }
        let workers = top
            .entry("workers")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| flags_error("workers".into(), "not a mapping".into()))?;
        if let Some(count) = &self.count {
            workers.insert("count".into(), scalar(count));
        }
        if !self.command.is_empty() {
            workers.insert("app".into(), Value::from("exec"));
            workers.insert("command".into(), Value::from(self.command.clone()));
        }
        if let Some(port) = &self.adopt {
            let mut adopt = Map::new();
            adopt.insert(name, scalar(port));
            workers.insert("adopt".into(), Value::Object(adopt));
        }
        let text =
            serde_saphyr::to_string(&doc).map_err(|e| flags_error(String::new(), e.to_string()))?;
        Config::parse(&text, Path::new(source)).map_err(|e| match e {
            Error::Invalid { key, message, .. } => flags_error(key, message),
            other => other,
        })
    }
}

/// A flag's value as YAML would read it in a file: a whole number is a
/// number (`--count 2`, `--adopt 3000`), anything else a string.
fn scalar(text: &str) -> Value {
    match text.parse::<u64>() {
        Ok(n) if !text.starts_with('+') => Value::from(n),
        _ => Value::from(text),
    }
}

/// `word` as a shell would need it written to mean the same.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+[]".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AppKind, EMBEDDED_DEFAULT, WorkerCount};

    fn default() -> Config {
        Config::parse(EMBEDDED_DEFAULT, Path::new("<built-in default>")).unwrap()
    }

    fn flags(
        count: Option<&str>,
        listen: Option<&str>,
        adopt: Option<&str>,
        command: &[&str],
    ) -> Overrides {
        Overrides {
            count: count.map(Into::into),
            listen: listen.map(Into::into),
            adopt: adopt.map(Into::into),
            command: command.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn no_flags_change_nothing() {
        let config = default();
        assert_eq!(
            Overrides::default().apply(config.clone(), "x").unwrap(),
            config
        );
    }

    #[test]
    fn each_flag_sets_its_key_and_the_rest_stays_the_files() {
        let flags = flags(
            Some("2"),
            Some("127.0.0.1:9000"),
            Some("3000"),
            &["sh", "server.sh"],
        );
        let config = flags.apply(default(), "<built-in default>").unwrap();
        assert_eq!(config.workers.count, WorkerCount::Fixed(2));
        assert_eq!(config.workers.app, AppKind::Exec);
        assert_eq!(config.workers.command, ["sh", "server.sh"]);
        assert_eq!(config.listen.len(), 1);
        assert_eq!(config.listen[0].name, "http");
        assert_eq!(config.listen[0].address.to_string(), "127.0.0.1:9000");
        assert_eq!(config.workers.adopt.0.len(), 1);
        assert_eq!(config.workers.adopt.0[0].0, "http");
        // What no flag names is the file's.
        assert_eq!(config.workers.stop_timeout, default().workers.stop_timeout);
        assert_eq!(config.log, default().log);
        // And it prints as YAML that parses back to the same.
        let again = Config::parse(&config.to_yaml(), Path::new("saved.yaml")).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn the_listener_keeps_the_files_name() {
        let file = "listen:\n  - name: web\n    address: \"127.0.0.1:1\"\n";
        let config = Config::parse(file, Path::new("f.yaml")).unwrap();
        let flags = flags(None, Some("[::1]:8081"), Some("*:3000"), &["sh"]);
        let config = flags.apply(config, "f.yaml").unwrap();
        assert_eq!(config.listen[0].name, "web");
        assert_eq!(config.workers.adopt.0[0].0, "web");
    }

    #[test]
    fn a_bad_flag_is_one_line_naming_the_flags_the_source_and_the_key() {
        let cases = [
            (
                flags(Some("0"), None, None, &[]),
                "--count 0 over <built-in default>: workers.count: 0 is out of range (auto, or 1 to 1024)",
            ),
            (
                flags(None, None, Some("3000"), &[]),
                "--adopt 3000 over <built-in default>: workers.adopt: is only used with app: exec",
            ),
        ];
        for (flags, expected) in cases {
            let error = flags.apply(default(), "<built-in default>").unwrap_err();
            let text = error.to_string();
            assert!(text.starts_with(expected), "{text}");
            assert!(!text.contains('\n'), "{text}");
            assert_eq!(error.status(), crate::exit::Status::Usage);
        }
        let error = flags(None, Some("nowhere"), None, &[])
            .apply(default(), "<built-in default>")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("--listen nowhere over <built-in default>: listen[0].address: "),
            "{error}"
        );
    }

    #[test]
    fn flags_are_described_as_a_shell_would_read_them() {
        let flags = flags(
            Some("auto"),
            None,
            Some("3000"),
            &["python3", "-c", "print('hi there')"],
        );
        assert_eq!(
            flags.describe(),
            r"--count auto --adopt 3000 -- python3 -c 'print('\''hi there'\'')'"
        );
    }
}
