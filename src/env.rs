//! The process environment: read once at start-up ([`Environment`]), the
//! variables hawkey reads to find its instances ([`HAWKEY_CONFIG`],
//! [`HAWKEY_CONFIG_DIR`], [`HAWKEY_RUNTIME_ROOT`], [`RUNTIME_DIRECTORY`],
//! [`XDG_RUNTIME_DIR`]; see `config::paths::Host`), and the one table of
//! the variables hawkey sets for its workers ([`WORKER_VARS`]).
//!
//! The table is used by every side that must agree on it: `spawn` drops
//! these names from what the master passes on and sets its own values,
//! `config` refuses them in `workers.env` (a second value beside hawkey's
//! would be the one `getenv(3)` finds), and the worker bootstrap removes
//! the process-scoped ones before the app runs, so the app's own children
//! do not take them as theirs. [`READ`] is the other table: every variable
//! hawkey itself reads. hawkey(1) renders both.

use std::ffi::{OsStr, OsString};
use std::time::Duration;

/// `LISTEN_PID`: the worker's own pid (`sd_listen_fds(3)`).
pub(crate) const LISTEN_PID: &str = "LISTEN_PID";
/// `LISTEN_FDS`: how many listeners from fd 3 on.
pub(crate) const LISTEN_FDS: &str = "LISTEN_FDS";
/// `LISTEN_FDNAMES`: the listeners' names, `:`-separated.
pub(crate) const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
/// `NOTIFY_SOCKET`: the master's inbox, for `READY=1` and heartbeats.
pub(crate) const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// `WATCHDOG_USEC`: the heartbeat timeout, when heartbeats are expected.
pub(crate) const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
/// `WATCHDOG_PID`: the pid `WATCHDOG_USEC` is meant for.
pub(crate) const WATCHDOG_PID: &str = "WATCHDOG_PID";
/// `JOURNAL_STREAM`: the worker's own journal stream (`systemd.exec(5)`).
pub(crate) const JOURNAL_STREAM: &str = "JOURNAL_STREAM";
/// `HAWKEY_WORKER`: the slot, `0..N-1`.
pub(crate) const HAWKEY_WORKER: &str = "HAWKEY_WORKER";
/// `HAWKEY_GENERATION`: the configuration generation.
pub(crate) const HAWKEY_GENERATION: &str = "HAWKEY_GENERATION";
/// `HAWKEY_STOP_SIGNAL`: the signal the master stops the worker with.
pub(crate) const HAWKEY_STOP_SIGNAL: &str = "HAWKEY_STOP_SIGNAL";
/// `HAWKEY_ROLE=worker`: marks a re-executed library worker.
pub(crate) const HAWKEY_ROLE: &str = "HAWKEY_ROLE";
/// `HAWKEY_LOG`: `level/format` for library workers' logs.
pub(crate) const HAWKEY_LOG: &str = "HAWKEY_LOG";
/// `HAWKEY_ADOPT`: `FD=SPEC,...`, the listeners the preload library puts
/// in place of the program's own `bind(2)` (`workers.adopt`).
pub(crate) const HAWKEY_ADOPT: &str = "HAWKEY_ADOPT";
/// `HAWKEY_READY_PROBE`: the listeners' socket inodes, comma-separated:
/// the preload library reports `HAWKEY_ACCEPTING=1` when the program
/// first waits on one (`ready: auto`).
pub(crate) const HAWKEY_READY_PROBE: &str = "HAWKEY_READY_PROBE";
/// `LD_PRELOAD`: not hawkey's own (a worker may have one), but hawkey
/// prepends its preload library to it.
pub(crate) const LD_PRELOAD: &str = "LD_PRELOAD";
/// `NODE_OPTIONS`: as `LD_PRELOAD`, hawkey prepends `--require` of its
/// Node drain shim.
pub(crate) const NODE_OPTIONS: &str = "NODE_OPTIONS";

/// `HAWKEY_CONFIG`: the configuration file, as `-c FILE` (read by the
/// CLI definition); with neither, a command means an instance by name.
pub(crate) const HAWKEY_CONFIG: &str = "HAWKEY_CONFIG";
/// `HAWKEY_CONFIG_DIR`: where instance `NAME` finds `NAME.yaml` and the
/// host-wide `hawkey status` finds instances (default `/etc/hawkey`).
pub(crate) const HAWKEY_CONFIG_DIR: &str = "HAWKEY_CONFIG_DIR";
/// `HAWKEY_RUNTIME_ROOT`: the directory holding the instances' runtime
/// directories `hawkey/` and `hawkey-NAME/` (default `/run` as root,
/// else `$XDG_RUNTIME_DIR`).
pub(crate) const HAWKEY_RUNTIME_ROOT: &str = "HAWKEY_RUNTIME_ROOT";
/// `RUNTIME_DIRECTORY`: systemd's `RuntimeDirectory=` for this unit;
/// the master's runtime directory when set (`systemd.exec(5)`).
pub(crate) const RUNTIME_DIRECTORY: &str = "RUNTIME_DIRECTORY";
/// `XDG_RUNTIME_DIR`: a non-root user's runtime directories are in it.
pub(crate) const XDG_RUNTIME_DIR: &str = "XDG_RUNTIME_DIR";

/// A variable hawkey itself reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Read {
    pub(crate) name: &'static str,
    /// What hawkey takes from it, for hawkey(1).
    pub(crate) meaning: &'static str,
}

/// Every variable the master and the command line read, the one table
/// hawkey(1)'s ENVIRONMENT is rendered from; a test checks that every
/// read of the environment in `src/` names a variable of this table or of
/// [`WORKER_VARS`] (which a library worker reads back).
pub(crate) const READ: &[Read] = &[
    Read {
        name: HAWKEY_CONFIG,
        meaning: "the configuration file, as -c FILE; a NAME on the command line takes its place",
    },
    Read {
        name: HAWKEY_CONFIG_DIR,
        meaning: "where instance NAME finds NAME.yaml and hawkey status finds the instances (default /etc/hawkey)",
    },
    Read {
        name: HAWKEY_RUNTIME_ROOT,
        meaning: "the directory of the runtime directories hawkey/ and hawkey-NAME/ (default /run as root, else $XDG_RUNTIME_DIR)",
    },
    Read {
        name: RUNTIME_DIRECTORY,
        meaning: "systemd's RuntimeDirectory= of the unit: the master's runtime directory, for its pidfile and control socket (systemd.exec(5))",
    },
    Read {
        name: XDG_RUNTIME_DIR,
        meaning: "a user other than root keeps the runtime directories in it",
    },
    Read {
        name: LISTEN_FDS,
        meaning: "with LISTEN_PID and LISTEN_FDNAMES, the sockets systemd passes (socket activation, sd_listen_fds(3)); used in place of listen when LISTEN_PID is the master's pid",
    },
    Read {
        name: LISTEN_PID,
        meaning: "the pid the passed sockets are meant for",
    },
    Read {
        name: LISTEN_FDNAMES,
        meaning: "the passed sockets' names (FileDescriptorName=), matched with listen[].name",
    },
    Read {
        name: NOTIFY_SOCKET,
        meaning: "where the master reports READY=1, RELOADING=1, STOPPING=1, STATUS= and WATCHDOG=1 to systemd (sd_notify(3))",
    },
    Read {
        name: WATCHDOG_USEC,
        meaning: "systemd's WatchdogSec=: the master sends WATCHDOG=1 every half of it while the pool is healthy",
    },
    Read {
        name: WATCHDOG_PID,
        meaning: "the pid WATCHDOG_USEC is meant for; unset or the master's own",
    },
    Read {
        name: JOURNAL_STREAM,
        meaning: "log.format: auto logs to the journal when stderr is this stream (systemd.exec(5))",
    },
    Read {
        name: "PATH",
        meaning: "where a workers.command name without a slash is looked up",
    },
    Read {
        name: "NO_COLOR",
        meaning: "set and not empty: no colours in the log on a terminal (no-color.org)",
    },
];

/// Whom a variable is for once the worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// This process only: a library worker removes it before the app runs.
    Process,
    /// The worker and its descendants.
    Tree,
}

/// A variable hawkey sets for its workers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Var {
    pub(crate) name: &'static str,
    pub(crate) scope: Scope,
    /// What the worker finds in it, for hawkey(1).
    pub(crate) meaning: &'static str,
}

/// Every variable hawkey sets for workers: never passed on from the
/// master's environment, never accepted in `workers.env`. (`LD_PRELOAD`
/// and `NODE_OPTIONS` are not here: hawkey prepends to them, the
/// worker's own value is kept.)
pub(crate) const WORKER_VARS: [Var; 14] = [
    Var {
        name: LISTEN_PID,
        scope: Scope::Process,
        meaning: "the worker's own pid, set in the child after fork (sd_listen_fds(3))",
    },
    Var {
        name: LISTEN_FDS,
        scope: Scope::Process,
        meaning: "how many listeners the worker inherited, from fd 3 on",
    },
    Var {
        name: LISTEN_FDNAMES,
        scope: Scope::Process,
        meaning: "the listeners' names (listen[].name), colon-separated",
    },
    Var {
        name: NOTIFY_SOCKET,
        scope: Scope::Process,
        meaning: "the worker's own notify socket, for READY=1, STATUS=, WATCHDOG=1 (sd_notify(3))",
    },
    Var {
        name: WATCHDOG_USEC,
        scope: Scope::Process,
        meaning: "the heartbeat timeout in microseconds, when heartbeats are expected (workers.heartbeat_timeout)",
    },
    Var {
        name: WATCHDOG_PID,
        scope: Scope::Process,
        meaning: "the pid WATCHDOG_USEC is meant for: the worker's own",
    },
    Var {
        name: HAWKEY_ROLE,
        scope: Scope::Process,
        meaning: "worker, in a re-executed built-in or library worker; removed before the app runs",
    },
    Var {
        name: HAWKEY_LOG,
        scope: Scope::Process,
        meaning: "level/format of a library worker's logs (log.level, log.format); removed before the app runs",
    },
    Var {
        name: JOURNAL_STREAM,
        scope: Scope::Tree,
        meaning: "the worker's own journal stream, so its output is attributed to its pid (systemd.exec(5))",
    },
    Var {
        name: HAWKEY_WORKER,
        scope: Scope::Tree,
        meaning: "the worker's slot, 0 to count-1",
    },
    Var {
        name: HAWKEY_GENERATION,
        scope: Scope::Tree,
        meaning: "the configuration generation, 1 and one more at each reload",
    },
    Var {
        name: HAWKEY_STOP_SIGNAL,
        scope: Scope::Tree,
        meaning: "the signal the worker is stopped with (workers.stop_signal)",
    },
    // The whole tree: a forked or exec'd child of the worker (gunicorn's
    // arbiter and its workers) binds and accepts too.
    Var {
        name: HAWKEY_ADOPT,
        scope: Scope::Tree,
        meaning: "FD=ADDRESS,...: the listeners the preload library hands the program's own bind(2) (workers.adopt)",
    },
    Var {
        name: HAWKEY_READY_PROBE,
        scope: Scope::Tree,
        meaning: "the listeners' socket inodes: the preload library reports when the program first waits on one (ready: auto)",
    },
];

/// Whether hawkey sets `name` for its workers itself.
pub(crate) fn is_reserved(name: &str) -> bool {
    WORKER_VARS.iter().any(|v| v.name == name)
}

/// The world as hawkey found it at start-up, read once; everything else
/// is handed these values instead of reading the environment again.
pub(crate) struct Environment {
    pub(crate) vars: Vec<(OsString, OsString)>,
    pub(crate) argv0: OsString,
}

impl Environment {
    /// Reads this process's environment and `argv[0]`.
    pub(crate) fn capture() -> Environment {
        Environment {
            vars: std::env::vars_os().collect(),
            argv0: std::env::args_os()
                .next()
                .unwrap_or_else(|| "hawkey".into()),
        }
    }

    /// The value of `name`, if set.
    pub(crate) fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_os_str())
    }

    /// systemd's watchdog for this process: `WATCHDOG_USEC`, if
    /// `WATCHDOG_PID` is unset or names us (`sd_watchdog_enabled(3)`).
    pub(crate) fn watchdog(&self) -> Option<Duration> {
        let usec: u64 = self.get(WATCHDOG_USEC)?.to_str()?.parse().ok()?;
        if let Some(pid) = self.get(WATCHDOG_PID)
            && pid.to_str()?.parse::<u32>().ok()? != std::process::id()
        {
            return None;
        }
        (usec > 0).then(|| Duration::from_micros(usec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_listed_once() {
        let mut names: Vec<&str> = WORKER_VARS.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), WORKER_VARS.len());
    }

    /// Every read of the environment in `src/`: `std::env::var(X)`,
    /// `var_os(X)`, `Environment::get(X)` (`env.get`, `self.get`) and
    /// clap's `env = X`, with X a string or a constant of this module (a
    /// lowercase argument is a parameter: its callers' reads are found).
    fn reads_in(text: &str) -> Vec<String> {
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
        let mut names = Vec::new();
        for pattern in ["var(", "var_os(", "env.get(", "self.get(", "env = "] {
            for (at, _) in code.match_indices(pattern) {
                let before = code[..at].chars().next_back();
                if pattern.starts_with('v')
                    && before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                {
                    continue;
                }
                let arg = code[at + pattern.len()..]
                    .split([')', ',', '\n'])
                    .next()
                    .unwrap_or("")
                    .trim();
                let name = match arg.strip_prefix('"') {
                    Some(literal) => literal.trim_end_matches('"'),
                    None => arg.rsplit("::").next().unwrap_or(arg),
                };
                if !name.is_empty() && !name.starts_with(|c: char| c.is_lowercase()) {
                    names.push(name.to_string());
                }
            }
        }
        names
    }

    fn sources(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path
                    .file_name()
                    .is_some_and(|n| n != "tests.rs" && n != "test_util.rs")
            {
                out.push((
                    path.display().to_string(),
                    std::fs::read_to_string(&path).unwrap(),
                ));
            }
        }
    }

    #[test]
    fn every_variable_read_in_src_is_in_the_tables() {
        let mut files = Vec::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut seen = Vec::new();
        for (path, text) in &files {
            for name in reads_in(text) {
                assert!(
                    READ.iter().any(|r| r.name == name) || is_reserved(&name),
                    "{path} reads {name}, which is neither in env::READ nor in env::WORKER_VARS"
                );
                seen.push(name);
            }
        }
        // And the other way: every variable of READ is read, in src/ or,
        // for socket activation, by sd_notify's listen_fds in the master.
        let by_sd_notify = [LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES];
        assert!(
            files
                .iter()
                .any(|(path, text)| path.ends_with("master/listeners.rs")
                    && text.contains("sd_notify::listen_fds")),
            "the master no longer takes its sockets through sd_notify::listen_fds"
        );
        for read in READ {
            assert!(
                seen.iter().any(|s| s == read.name) || by_sd_notify.contains(&read.name),
                "env::READ lists {}, which nothing in src/ reads",
                read.name
            );
        }
        assert!(
            seen.iter().any(|s| s == HAWKEY_ROLE),
            "no worker-side read found: {seen:?}"
        );
    }

    #[test]
    fn every_read_name_is_listed_once() {
        let mut names: Vec<&str> = READ.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), READ.len());
    }

    #[test]
    fn the_watchdog_is_ours_only_when_its_pid_is_unset_or_ours() {
        let env = |pid: Option<String>| Environment {
            vars: std::iter::once(("WATCHDOG_USEC".into(), "2000000".into()))
                .chain(pid.map(|p| ("WATCHDOG_PID".into(), p.into())))
                .collect(),
            argv0: "hawkey".into(),
        };
        let me = std::process::id().to_string();
        assert_eq!(env(None).watchdog(), Some(Duration::from_secs(2)));
        assert_eq!(env(Some(me)).watchdog(), Some(Duration::from_secs(2)));
        assert_eq!(env(Some("1".into())).watchdog(), None);
    }
}
