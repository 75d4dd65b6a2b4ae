//! Every key `hawkey.yaml` accepts, once: its dotted path, its type, its
//! default and its meaning, in the order of the shipped file. hawkey.yaml(5)
//! is rendered from this table (`hawkey generate man5`), and the tests
//! below keep it equal to what the parser accepts (`schema`), to what
//! `hawkey check` prints for a file that sets nothing, and to the keys the
//! shipped, commented `hawkey.yaml` shows.
//!
//! A path is dotted from the top (`workers.recycle.memory`); `listen[]` is
//! any entry of the `listen` list. A key whose value is a mapping of fixed
//! keys is a [`Default::Section`]; its keys follow it in the table.

/// One key of `hawkey.yaml`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Key {
    /// Dotted from the top: `workers.recycle.memory`, `listen[].address`.
    pub(crate) path: &'static str,
    /// What the value is, in words: `duration`, `size`, `auto | 1..1024`.
    pub(crate) kind: &'static str,
    /// What holds when the key is not written.
    pub(crate) default: Default,
    /// What it does, in a sentence or three.
    pub(crate) meaning: &'static str,
}

/// What a key that is not written means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Default {
    /// This value, exactly as `hawkey check` prints it.
    Is(&'static str),
    /// Nothing (`hawkey check` prints nothing or `null` for it); the words
    /// say what that means.
    Unset(&'static str),
    /// No default: the key must be written (where its mapping is).
    Required,
    /// A mapping of the keys that follow it in the table, each with its
    /// own default.
    Section,
}

/// The top-level sections, in the order of the table.
pub(crate) fn sections() -> impl Iterator<Item = &'static str> {
    KEYS.iter()
        .map(|k| k.path)
        .filter(|p| !p.contains('.') && !p.contains('['))
}

/// Every key, parents before their keys, in the order of the shipped file.
pub(crate) const KEYS: &[Key] = &[
    Key {
        path: "listen",
        kind: "list of mappings",
        default: Default::Section,
        meaning: "The listening sockets, bound by hawkey itself only when systemd passes none (with a .socket unit, systemd owns the sockets and this list is ignored). Every worker inherits every listener, in this order, as fds 3, 4, ... Absent: one listener, http on 127.0.0.1:8080; written, at least one.",
    },
    Key {
        path: "listen[].name",
        kind: "string",
        default: Default::Required,
        meaning: "The listener's name, its LISTEN_FDNAMES entry: 1 to 255 printable characters, no ':' or spaces, unique.",
    },
    Key {
        path: "listen[].address",
        kind: "address",
        default: Default::Required,
        meaning: "host:port, [v6]:port, or unix:/absolute/path (at most 107 bytes); unique. A [v6] address listens on IPv6 only (IPV6_V6ONLY, as nginx's ipv6only=on).",
    },
    Key {
        path: "listen[].backlog",
        kind: "integer, 1 to 65535",
        default: Default::Is("1024"),
        meaning: "The listen(2) queue length.",
    },
    Key {
        path: "listen[].mode",
        kind: "octal file mode",
        default: Default::Is("0660"),
        meaning: "Unix sockets only: the socket file's mode, such as \"0660\" (read as octal; quoted, so that other YAML tools do not read a number).",
    },
    Key {
        path: "workers",
        kind: "mapping",
        default: Default::Section,
        meaning: "The worker processes: how many, what they run, and how they are supervised.",
    },
    Key {
        path: "workers.count",
        kind: "auto, or 1 to 1024",
        default: Default::Is("auto"),
        meaning: "How many workers. auto: the CPUs this process may run on (its affinity mask), capped by the cgroup CPU quota, at least 1.",
    },
    Key {
        path: "workers.app",
        kind: "builtin | exec",
        default: Default::Is("builtin"),
        meaning: "builtin: the built-in HTTP app, in each worker (GET / names the worker, GET /healthz answers 200). exec: run workers.command in each worker, with the listeners passed by the systemd socket-activation protocol (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID) and HAWKEY_WORKER set to its slot.",
    },
    Key {
        path: "workers.command",
        kind: "list of strings",
        default: Default::Unset("none; app: exec needs it"),
        meaning: "With app: exec, the program and its arguments, such as [\"/usr/bin/node\", \"/srv/app/server.js\"]. A name without a slash is looked up in PATH when the configuration is checked; a relative path such as ./app is found under workers.cwd.",
    },
    Key {
        path: "workers.env",
        kind: "mapping of NAME: string",
        default: Default::Is("{}"),
        meaning: "Extra environment for the workers. The 14 variables hawkey sets for each worker itself are refused here: LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID, JOURNAL_STREAM, and seven HAWKEY_ names: HAWKEY_WORKER, HAWKEY_GENERATION, HAWKEY_STOP_SIGNAL, HAWKEY_ADOPT, HAWKEY_READY_PROBE, HAWKEY_ROLE, HAWKEY_LOG. Other names pass, HAWKEY_CONFIG included; LD_PRELOAD and NODE_OPTIONS are kept, after what hawkey puts first (workers.preload).",
    },
    Key {
        path: "workers.cwd",
        kind: "absolute path",
        default: Default::Unset("hawkey's own working directory"),
        meaning: "The workers' working directory.",
    },
    Key {
        path: "workers.user",
        kind: "user name",
        default: Default::Unset("hawkey's own user"),
        meaning: "Run the workers as this user; applied only when hawkey starts as root (supplementary groups are the user's). Such workers also get no_new_privs and an empty capability bounding set.",
    },
    Key {
        path: "workers.group",
        kind: "group name",
        default: Default::Unset("the user's primary group, or hawkey's own"),
        meaning: "Run the workers as this group; applied only when hawkey starts as root.",
    },
    Key {
        path: "workers.ready",
        kind: "auto | notify | started",
        default: Default::Is("auto"),
        meaning: "When a worker counts as ready; before that it is starting, and one that exits or is not ready within ready_timeout is a failed start. auto: when it sends READY=1 to NOTIFY_SOCKET, or when hawkey sees it (or a process it started) accepting on a listener, whichever comes first: an epoll instance watching the listener, a thread blocked in accept, poll or select on it, or the preload library's report; holding the fd is not enough. So apps that never heard of sd_notify get crash detection and reload rollback. notify: only on READY=1. started: as soon as the program has been executed (explicit only). Built-in and library workers send READY=1 as they start accepting.",
    },
    Key {
        path: "workers.ready_timeout",
        kind: "duration, longer than 0s",
        default: Default::Is("30s"),
        meaning: "A worker not ready this long after it was started is killed and counts as a failed start.",
    },
    Key {
        path: "workers.heartbeat_timeout",
        kind: "duration, or null",
        default: Default::Unset("30s for the built-in app, none for exec workers"),
        meaning: "A ready worker that sends no heartbeat (WATCHDOG=1 to NOTIFY_SOCKET) for this long is hung: it is killed and replaced. Workers get WATCHDOG_USEC and WATCHDOG_PID as under systemd's WatchdogSec=. The built-in app beats every third of it from its own event loop; a program embedding hawkey beats only if its app declares App::HEARTBEATS; exec workers need ready: notify for it. null: no heartbeats.",
    },
    Key {
        path: "workers.stop_signal",
        kind: "signal name",
        default: Default::Is("SIGTERM"),
        meaning: "The signal a graceful stop sends to each worker's process group (a worker a reload replaces gets its own generation's); workers find it in HAWKEY_STOP_SIGNAL, and the built-in app drains on it.",
    },
    Key {
        path: "workers.stop_timeout",
        kind: "duration",
        default: Default::Is("25s"),
        meaning: "How long after stop_signal a worker still running is killed with SIGKILL.",
    },
    Key {
        path: "workers.restart_backoff",
        kind: "mapping",
        default: Default::Section,
        meaning: "A worker that dies is replaced at once; one that dies again within 1s of becoming ready (or never became ready) waits initial, then twice as long each time, up to max. A ready worker SIGKILLed from outside (the OOM killer, an operator) is replaced at once.",
    },
    Key {
        path: "workers.restart_backoff.initial",
        kind: "duration, longer than 0s",
        default: Default::Is("100ms"),
        meaning: "The first wait; at most max.",
    },
    Key {
        path: "workers.restart_backoff.max",
        kind: "duration",
        default: Default::Is("30s"),
        meaning: "The longest wait.",
    },
    Key {
        path: "workers.recycle",
        kind: "mapping",
        default: Default::Section,
        meaning: "Recycling, for apps that leak: a ready worker past memory or age is replaced the way a reload replaces it (its successor ready first, then the old worker drains). Never fewer than count ready; at most reload.surge recycles at a time; none during a reload. A successor that cannot start leaves the worker serving, and is tried again after 10s, doubling up to 5min. Logged with RECYCLE_REASON=memory or age, counted in hawkey status (RECYCLED). Absent: no recycling; written, it sets memory, age or both.",
    },
    Key {
        path: "workers.recycle.memory",
        kind: "size, at least 1MiB",
        default: Default::Unset("no memory limit"),
        meaning: "Recycle a worker whose process tree's resident memory (RSS summed over the worker and its descendants) passes this. Read from /proc every 5s, only when set, so a fast leak passes the limit by what it grows in 5s. kB and MB are refused as ambiguous.",
    },
    Key {
        path: "workers.recycle.age",
        kind: "duration, at least 1s",
        default: Default::Unset("no age limit"),
        meaning: "Recycle a worker ready for longer than this, give or take jitter.",
    },
    Key {
        path: "workers.recycle.jitter",
        kind: "percentage, 0% to 50%",
        default: Default::Is("10%"),
        meaning: "How far each worker's age may be from age, either way, so workers started together are not recycled together; only beside age.",
    },
    Key {
        path: "workers.adopt",
        kind: "mapping of LISTENER: port or address",
        default: Default::Unset("no adoption"),
        meaning: "Unmodified programs that bind their own port (app: exec only): their bind(2) of this address gets the named listener instead, through hawkey's preload library (LD_PRELOAD; not for static binaries). A bare port, such as {http: 3000}, or \"*:3000\", matches any address of it; \"0.0.0.0:3000\" or \"[::]:3000\" a wildcard bind of either family (Node's listen(3000) binds ::); \"127.0.0.1:3000\" that address only. At start the listener must be among the sockets hawkey got and the preload library installed, else exit 78.",
    },
    Key {
        path: "workers.preload",
        kind: "boolean",
        default: Default::Is("true"),
        meaning: "Whether exec'd workers get hawkey's preload library in LD_PRELOAD (workers.adopt, and the accepting report for ready: auto) and, for Node, a drain on the stop signal (NODE_OPTIONS=--require ...). false injects neither: ready: auto then relies on /proc alone, and workers.adopt is refused.",
    },
    Key {
        path: "pidfile",
        kind: "absolute path, or null",
        default: Default::Unset(
            "hawkey.pid in the runtime directory: $RUNTIME_DIRECTORY, else /run/hawkey (or /run/hawkey-NAME) as root, else under $XDG_RUNTIME_DIR",
        ),
        meaning: "The pidfile for legacy scripts: locked while hawkey runs, holding the master's pid once every worker is ready, removed on a clean stop; its directory must be writable by its owner only. null: no pidfile.",
    },
    Key {
        path: "control_socket",
        kind: "absolute path, or null",
        default: Default::Unset(
            "beside the pidfile with the extension .sock, or hawkey.sock in the runtime directory",
        ),
        meaning: "The unix socket hawkey status, reload and stop use (owner-only; root and hawkey's own user may use it; peer credentials are checked both ways, so the commands believe no impostor at its path). Its directory, like the pidfile's, must be writable by its owner only (exit 73 otherwise). null: none; signals and the pidfile work regardless.",
    },
    Key {
        path: "log",
        kind: "mapping",
        default: Default::Section,
        meaning: "The master's log.",
    },
    Key {
        path: "log.level",
        kind: "error | warn | info | debug | trace",
        default: Default::Is("info"),
        meaning: "The least severe level logged.",
    },
    Key {
        path: "log.format",
        kind: "auto | journald | text | json",
        default: Default::Is("auto"),
        meaning: "auto: journald when stderr is connected to the journal (JOURNAL_STREAM), readable text on stderr otherwise. journald: native journal entries with the fields HAWKEY_WORKER, WORKER_PID, GENERATION, EXIT_STATUS or SIGNAL. text: coloured only on a terminal and without NO_COLOR. json: one JSON object per line on stderr.",
    },
    Key {
        path: "reload",
        kind: "mapping",
        default: Default::Section,
        meaning: "Rolling reloads (SIGHUP, hawkey reload).",
    },
    Key {
        path: "reload.surge",
        kind: "1 to 1024, or a percentage such as 25%",
        default: Default::Is("1"),
        meaning: "How many new workers start at once beside the old ones (each old worker stops only once its replacement is ready, so never fewer than count serve); 100% starts the whole new generation at once.",
    },
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    #[test]
    fn workers_env_names_every_variable_it_refuses() {
        let env = KEYS.iter().find(|k| k.path == "workers.env").unwrap();
        for var in crate::env::WORKER_VARS {
            assert!(env.meaning.contains(var.name), "{}", var.name);
        }
        let count = format!("The {} variables", crate::env::WORKER_VARS.len());
        assert!(env.meaning.contains(&count), "{count}");
        let shipped = include_str!("../../hawkey.yaml");
        let comment: String = shipped
            .split("# Extra environment")
            .nth(1)
            .and_then(|rest| rest.split("# env:").next())
            .unwrap()
            .replace("\n  #", " ");
        for var in crate::env::WORKER_VARS {
            assert!(comment.contains(var.name), "hawkey.yaml: {}", var.name);
        }
    }

    /// `{a: {b: {KEY: 1}}}` for the mapping `a.b` (`listen[]` an entry of
    /// a list), with `inner` where `KEY: 1` is.
    fn nested(mapping: &str, inner: &str) -> String {
        mapping
            .rsplit('.')
            .filter(|s| !s.is_empty())
            .fold(inner.to_string(), |inside, segment| {
                match segment.strip_suffix("[]") {
                    Some(list) => format!("{{{list}: [{inside}]}}"),
                    None => format!("{{{segment}: {inside}}}"),
                }
            })
    }

    /// The keys KEYS lists directly in `mapping` ("" for the top).
    fn children(mapping: &str) -> BTreeSet<&'static str> {
        KEYS.iter()
            .filter_map(|k| match mapping {
                "" => (!k.path.contains(['.', '['])).then_some(k.path),
                _ => k
                    .path
                    .strip_prefix(mapping)?
                    .strip_prefix('.')
                    .filter(|rest| !rest.contains('.')),
            })
            .collect()
    }

    /// The keys the parser names for `mapping` when it refuses one it
    /// does not know there.
    fn accepted(mapping: &str) -> BTreeSet<String> {
        let text = nested(mapping, "{bogus_key: 1}");
        let error = Config::parse(&text, Path::new("t.yaml"))
            .expect_err(&text)
            .to_string();
        let (_, list) = error
            .split_once("unknown field 'bogus_key', expected one of ")
            .unwrap_or_else(|| panic!("{text}: {error}"));
        list.split(", ").map(String::from).collect()
    }

    #[test]
    fn every_mapping_accepts_exactly_the_keys_the_table_lists() {
        let mut mappings = vec![""];
        for key in KEYS.iter().filter(|k| k.default == Default::Section) {
            mappings.push(key.path);
        }
        for mapping in mappings {
            // A list's keys are those of its entries.
            let entries = match mapping {
                "listen" => "listen[]",
                m => m,
            };
            let want: BTreeSet<String> = children(entries).iter().map(|s| s.to_string()).collect();
            assert_eq!(accepted(entries), want, "the keys of '{entries}'");
        }
    }

    #[test]
    fn every_key_is_listed_once_after_its_parent() {
        let mut seen: Vec<&str> = Vec::new();
        for key in KEYS {
            assert!(!seen.contains(&key.path), "{} twice", key.path);
            if let Some((parent, _)) = key.path.rsplit_once('.') {
                let parent = parent.trim_end_matches("[]");
                assert!(seen.contains(&parent), "{} before {parent}", key.path);
            }
            seen.push(key.path);
        }
    }

    /// The configuration a key's default shows in: the key's section must
    /// be there for its keys to be printed.
    fn context(path: &str) -> &'static str {
        if path.starts_with("listen[].") {
            "{listen: [{name: a, address: \"unix:/run/hawkey-keys-test.sock\"}]}"
        } else if path.starts_with("workers.recycle.") {
            "{workers: {recycle: {age: 1h}}}"
        } else {
            "{}"
        }
    }

    /// The value at `path` in what `hawkey check` prints for `text`
    /// ([`Config::to_yaml`]; check first resolves `workers.count: auto`
    /// and the pidfile for the host it runs on, which the table gives
    /// unresolved): `None` when it prints nothing there; scalars as YAML
    /// writes them.
    fn printed(text: &str, path: &str) -> Option<String> {
        let config = Config::parse(text, Path::new("t.yaml")).unwrap();
        let tree: serde_json::Value = serde_saphyr::from_str(&config.to_yaml()).unwrap();
        let mut at = &tree;
        for segment in path.split('.') {
            at = match segment.strip_suffix("[]") {
                Some(list) => at.get(list)?.get(0)?,
                None => at.get(segment)?,
            };
        }
        Some(match at {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => return None,
            serde_json::Value::Object(o) if o.is_empty() => "{}".into(),
            other => other.to_string(),
        })
    }

    #[test]
    fn every_default_is_what_hawkey_check_prints_for_a_file_that_sets_nothing() {
        for key in KEYS {
            match key.default {
                Default::Is(value) => assert_eq!(
                    printed(context(key.path), key.path).as_deref(),
                    Some(value),
                    "{}",
                    key.path
                ),
                Default::Unset(_) => {
                    assert_eq!(printed("{}", key.path), None, "{}", key.path)
                }
                Default::Required | Default::Section => {}
            }
        }
    }

    #[test]
    fn the_shipped_hawkey_yaml_shows_every_key() {
        let shipped = crate::config::EMBEDDED_DEFAULT;
        for key in KEYS {
            let name = key.path.rsplit('.').next().unwrap().trim_end_matches("[]");
            let shown = shipped.lines().any(|line| {
                let line = line.trim_start().trim_start_matches('#').trim_start();
                let line = line.trim_start_matches("- ");
                line.starts_with(&format!("{name}:"))
                    || line.contains(&format!("{{ {name}:"))
                    || line.contains(&format!(", {name}:"))
            });
            assert!(shown, "hawkey.yaml does not show {}", key.path);
        }
    }

    #[test]
    fn every_section_is_a_mapping_and_has_keys() {
        for key in KEYS.iter().filter(|k| k.default == Default::Section) {
            let inner = match key.path {
                "listen" => "listen[]",
                p => p,
            };
            assert!(!children(inner).is_empty(), "{} has no keys", key.path);
        }
        assert_eq!(
            sections().collect::<Vec<_>>(),
            [
                "listen",
                "workers",
                "pidfile",
                "control_socket",
                "log",
                "reload"
            ]
        );
    }
}
