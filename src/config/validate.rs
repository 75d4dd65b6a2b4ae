//! The raw layer checked and completed into a [`Config`]: every default
//! filled in, every rule that spans keys checked, every error located at
//! the token that breaks it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::diagnostics::{Located, located};
use super::schema::*;
use super::{
    Address, AppKind, Backoff, Config, Format, Heartbeat, Level, Listen, Log, MAX_WORKERS, Mode,
    Pidfile, RESERVED_ENV, Ready, SignalName, Span, WorkerCount, Workers,
};

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

/// Whether `name` can be an environment variable name in `workers.env`.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('=')
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
        && !name.as_bytes()[0].is_ascii_digit()
}

/// Finds `program` the way `execvp` would, so a typo is a config error at
/// `hawkey check` rather than a crash loop at run time.
pub fn resolve_program(program: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    let search = path_var
        .map(|p| p.as_bytes().to_vec())
        .unwrap_or_else(|| b"/usr/local/bin:/usr/bin:/bin".to_vec());
    search
        .split(|b| *b == b':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(OsStr::from_bytes(dir)).join(program))
        .find(|candidate| executable(candidate))
}
