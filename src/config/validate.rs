//! The raw layer checked and completed into a [`Config`]: every default
//! filled in, every rule that spans keys checked, every error located at
//! the token that breaks it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::diagnostics::{Located, located, located_at};
use super::schema::*;
use super::{
    Address, AppKind, Backoff, Config, Format, Heartbeat, Level, Listen, Log, MAX_WORKERS, Mode,
    Pidfile, Ready, Reload, SignalName, Span, Surge, WorkerCount, Workers,
};

impl RawConfig {
    /// Checks every rule that spans keys, fills in defaults and returns the
    /// effective configuration. `text` is what the raw layer was read from
    /// (to locate what it keeps unlocated); `path_var` is the `PATH` used to
    /// find `workers.command[0]`.
    pub(super) fn validate_with(
        self,
        text: &str,
        path_var: Option<&OsStr>,
    ) -> Result<Config, Located> {
        let listen = validate_listen(self.listen)?;
        Ok(Config {
            workers: self.workers.validate(text, path_var, &listen)?,
            listen,
            pidfile: validate_pidfile(self.pidfile)?,
            control_socket: validate_control_socket(self.control_socket)?,
            log: validate_log(self.log),
            reload: Reload {
                surge: validate_surge(self.reload.surge)?,
            },
        })
    }

    /// [`RawConfig::validate_with`] this process's `PATH`.
    pub(super) fn validate(self, text: &str) -> Result<Config, Located> {
        let path_var = std::env::var_os("PATH");
        self.validate_with(text, path_var.as_deref())
    }
}

/// `pidfile`: absent (the default place), `null` (none) or an absolute path.
fn validate_pidfile(pidfile: Option<Option<Spanned<PathBuf>>>) -> Result<Pidfile, Located> {
    match pidfile {
        None => Ok(Pidfile::Default),
        Some(None) => Ok(Pidfile::Disabled),
        Some(Some(p)) if p.value.is_absolute() => Ok(Pidfile::Path(p.value)),
        Some(Some(p)) => Err(located(
            &p,
            "pidfile",
            "must be an absolute path (or null to disable it)",
        )),
    }
}

/// `control_socket`: as `pidfile`, and short enough for `sun_path` (108
/// bytes with its NUL).
fn validate_control_socket(socket: Option<Option<Spanned<PathBuf>>>) -> Result<Pidfile, Located> {
    match socket {
        None => Ok(Pidfile::Default),
        Some(None) => Ok(Pidfile::Disabled),
        Some(Some(p)) if p.value.is_absolute() && p.value.as_os_str().len() <= 107 => {
            Ok(Pidfile::Path(p.value))
        }
        Some(Some(p)) => Err(located(
            &p,
            "control_socket",
            "must be an absolute path of at most 107 bytes (or null to disable it)",
        )),
    }
}

/// `log`: every value the schema accepts is valid; `info` and `auto` by default.
fn validate_log(log: RawLog) -> Log {
    Log {
        level: match log.level.unwrap_or(LevelName::Info) {
            LevelName::Error => Level::Error,
            LevelName::Warn => Level::Warn,
            LevelName::Info => Level::Info,
            LevelName::Debug => Level::Debug,
            LevelName::Trace => Level::Trace,
        },
        format: match log.format.unwrap_or(FormatName::Auto) {
            FormatName::Auto => Format::Auto,
            FormatName::Journald => Format::Journald,
            FormatName::Text => Format::Text,
            FormatName::Json => Format::Json,
        },
    }
}

/// `listen`: one listener on 127.0.0.1:8080 when absent, else at least one,
/// each checked against those before it.
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
        let listener = validate_listener(i, entry, &out)?;
        out.push(listener);
    }
    Ok(out)
}

/// `listen[i]`: a name and an address no listener in `before` has, a
/// backlog in range, a file mode only for a unix socket.
fn validate_listener(i: usize, entry: RawListen, before: &[Listen]) -> Result<Listen, Located> {
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
    if before.iter().any(|l| &l.name == name) {
        return Err(located(
            &entry.name,
            key("name"),
            format!("duplicate listener name '{name}'"),
        ));
    }
    let address = parse_address(&entry.address.value)
        .map_err(|m| located(&entry.address, key("address"), m))?;
    if let Some(other) = before.iter().find(|l| l.address == address) {
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
    Ok(Listen {
        name: name.clone(),
        address,
        backlog,
        mode,
    })
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
    /// `workers`: each decision in its own function below, in the order
    /// the keys depend on each other (`app` decides what `command`, `ready`
    /// and `heartbeat_timeout` may be), so the first error is the one
    /// reported.
    fn validate(
        self,
        text: &str,
        path_var: Option<&OsStr>,
        listen: &[Listen],
    ) -> Result<Workers, Located> {
        let count = validate_count(self.count)?;
        let app = match self.app.as_ref().map(|a| a.value) {
            None | Some(AppName::Builtin) => AppKind::Builtin,
            Some(AppName::Exec) => AppKind::Exec,
        };
        // `cwd` before `command`: a relative program is looked for there.
        let cwd = validate_cwd(self.cwd)?;
        let command = validate_command(
            app,
            self.app.as_ref(),
            self.command,
            path_var,
            cwd.as_deref(),
        )?;
        let env = validate_env(self.env, text)?;
        let (user, group) = validate_identity(self.user, self.group)?;
        let ready = validate_ready(app, self.ready)?;
        let ready_timeout = validate_ready_timeout(self.ready_timeout)?;
        let heartbeat_timeout = validate_heartbeat(app, ready, self.heartbeat_timeout)?;
        let restart_backoff = validate_backoff(self.restart_backoff)?;
        let recycle = super::recycle::validate_recycle(self.recycle)?;
        let adopt = super::adopt::validate_adopt(app, self.app.as_ref(), self.adopt, listen)?;
        let preload = match self.preload {
            Some(p) if !p.value && !adopt.is_empty() => {
                return Err(located(
                    &p,
                    "workers.preload",
                    "is false, but workers.adopt needs the preload library; remove one of them",
                ));
            }
            Some(p) => p.value,
            None => true,
        };
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
            recycle,
            adopt,
            preload,
        })
    }
}

/// `reload.surge`: 1 (the default) to [`MAX_WORKERS`] workers, or 1% to
/// 100% of the pool.
fn validate_surge(surge: Option<Spanned<RawSurge>>) -> Result<Surge, Located> {
    let Some(s) = surge else {
        return Ok(Surge::Workers(1));
    };
    let key = "reload.surge";
    let range = format!("1 to {MAX_WORKERS} workers, or 1% to 100%");
    match &s.value {
        RawSurge::Number(n) if (1..=i64::from(MAX_WORKERS)).contains(n) => {
            Ok(Surge::Workers(*n as u32))
        }
        RawSurge::Number(n) => Err(located(&s, key, format!("{n} is out of range ({range})"))),
        RawSurge::Word(w) => match w.strip_suffix('%').map(str::parse::<u32>) {
            Some(Ok(p)) if (1..=100).contains(&p) => Ok(Surge::Percent(p)),
            Some(Ok(p)) => Err(located(&s, key, format!("{p}% is out of range ({range})"))),
            _ => Err(located(&s, key, format!("invalid surge '{w}' ({range})"))),
        },
    }
}

/// `workers.count`: `auto` (the default) or 1 to [`MAX_WORKERS`].
fn validate_count(count: Option<Spanned<RawCount>>) -> Result<WorkerCount, Located> {
    let Some(c) = count else {
        return Ok(WorkerCount::Auto);
    };
    match &c.value {
        RawCount::Word(w) if w == "auto" => Ok(WorkerCount::Auto),
        RawCount::Number(n) if (1..=i64::from(MAX_WORKERS)).contains(n) => {
            Ok(WorkerCount::Fixed(*n as u32))
        }
        RawCount::Number(n) => Err(located(
            &c,
            "workers.count",
            format!("{n} is out of range (auto, or 1 to {MAX_WORKERS})"),
        )),
        RawCount::Word(w) => Err(located(
            &c,
            "workers.count",
            format!("invalid count '{w}' (auto, or 1 to {MAX_WORKERS})"),
        )),
    }
}

/// `workers.command`: required by `app: exec` (whose key `app` is, to
/// point at when it is missing), refused otherwise; its program must be
/// found the way `execvp` will find it, from the directory it will run in
/// (`cwd`, when set; else hawkey's own).
fn validate_command(
    app: AppKind,
    app_key: Option<&Spanned<AppName>>,
    command: Option<Spanned<Vec<Spanned<String>>>>,
    path_var: Option<&OsStr>,
    cwd: Option<&Path>,
) -> Result<Vec<String>, Located> {
    let cmd = match (app, command) {
        (AppKind::Builtin, None) => return Ok(Vec::new()),
        (AppKind::Builtin, Some(cmd)) => {
            return Err(located(
                &cmd,
                "workers.command",
                "is only used with app: exec",
            ));
        }
        (AppKind::Exec, None) => {
            let at = app_key.expect("exec is only set explicitly");
            return Err(located(
                at,
                "workers.app",
                "app: exec needs workers.command (the program and its arguments)",
            ));
        }
        (AppKind::Exec, Some(cmd)) => cmd,
    };
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
    if resolve_program_in(&program.value, path_var, cwd).is_none() {
        // Where it was looked for: a bare name in PATH's directories (as
        // execvp does), a path with a slash in workers.cwd (or as it is).
        let message = if !program.value.contains('/') {
            format!(
                "'{}' was not found in any directory of PATH (give an absolute path, or a name found in PATH)",
                program.value
            )
        } else {
            let relative_to = match cwd {
                Some(dir) if !program.value.starts_with('/') => {
                    format!(" in workers.cwd '{}'", dir.display())
                }
                _ => String::new(),
            };
            format!(
                "'{}' is not an executable file{relative_to} (give an absolute path, or a name found in PATH)",
                program.value
            )
        };
        return Err(located(program, "workers.command[0]", message));
    }
    Ok(cmd.value.into_iter().map(|a| a.value).collect())
}

/// `workers.env`: names a process environment can hold, none that hawkey
/// sets itself (the table in [`crate::env`]: a second value beside
/// hawkey's would be the one `getenv(3)` finds), values without NUL.
fn validate_env(pairs: Pairs, text: &str) -> Result<BTreeMap<String, String>, Located> {
    let mut env = BTreeMap::new();
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        let key = format!("workers.env.{}", name.value);
        if !valid_env_name(&name.value) {
            return Err(located(
                &name,
                key,
                "invalid variable name (no '=', spaces, control characters or leading digit)",
            ));
        }
        if crate::env::is_reserved(&name.value) {
            return Err(located(
                &name,
                key,
                "is set by hawkey for each worker and cannot be overridden",
            ));
        }
        if value.contains('\0') {
            // Never None for a text that was read once already; the name
            // would still point at the entry.
            let at = env_value_location(text, i).unwrap_or(name.referenced);
            return Err(located_at(&at, key, "value contains a NUL byte"));
        }
        env.insert(name.value, value);
    }
    Ok(env)
}

/// `workers.cwd`: an absolute path to a directory that exists now.
fn validate_cwd(cwd: Option<Spanned<PathBuf>>) -> Result<Option<PathBuf>, Located> {
    match cwd {
        None => Ok(None),
        Some(c) if !c.value.is_absolute() => {
            Err(located(&c, "workers.cwd", "must be an absolute path"))
        }
        Some(c) if !c.value.is_dir() => Err(located(
            &c,
            "workers.cwd",
            format!("'{}' is not a directory", c.value.display()),
        )),
        Some(c) => Ok(Some(c.value)),
    }
}

/// `workers.user` and `workers.group`: names this host knows.
fn validate_identity(
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
) -> Result<(Option<String>, Option<String>), Located> {
    if let Some(u) = &user
        && !matches!(nix::unistd::User::from_name(&u.value), Ok(Some(_)))
    {
        return Err(located(
            u,
            "workers.user",
            format!("no such user '{}'", u.value),
        ));
    }
    if let Some(g) = &group
        && !matches!(nix::unistd::Group::from_name(&g.value), Ok(Some(_)))
    {
        return Err(located(
            g,
            "workers.group",
            format!("no such group '{}'", g.value),
        ));
    }
    Ok((user.map(|u| u.value), group.map(|g| g.value)))
}

/// `workers.ready`: `auto` (the default), `notify` or `started` for exec
/// workers; builtin workers always report readiness themselves (`READY=1`
/// as they enter their accept loop), so for them only `auto` (what they
/// do) and the old default `started` are accepted, both meaning `auto`.
fn validate_ready(app: AppKind, ready: Option<Spanned<ReadyName>>) -> Result<Ready, Located> {
    let word = ready.as_ref().map(|r| r.value);
    match (app, word) {
        (_, None | Some(ReadyName::Auto)) => Ok(Ready::Auto),
        (AppKind::Exec, Some(ReadyName::Notify)) => Ok(Ready::Notify),
        (AppKind::Exec, Some(ReadyName::Started)) => Ok(Ready::Started),
        (AppKind::Builtin, Some(ReadyName::Started)) => Ok(Ready::Auto),
        (AppKind::Builtin, Some(ReadyName::Notify)) => Err(located(
            ready.as_ref().expect("matched Some"),
            "workers.ready",
            "builtin workers always report readiness themselves; ready: is for app: exec",
        )),
    }
}

/// `workers.ready_timeout`: 30s by default, never 0s.
fn validate_ready_timeout(timeout: Option<Spanned<Span>>) -> Result<Span, Located> {
    match timeout {
        None => Ok(Span(std::time::Duration::from_secs(30))),
        Some(t) if t.value.0.is_zero() => Err(located(
            &t,
            "workers.ready_timeout",
            "must be longer than 0s",
        )),
        Some(t) => Ok(t.value),
    }
}

/// `workers.heartbeat_timeout`: absent (the app's default), `null` (off),
/// or at least 100ms; exec workers send heartbeats over the notify socket,
/// so they need `ready: notify`.
fn validate_heartbeat(
    app: AppKind,
    ready: Ready,
    heartbeat: Option<Option<Spanned<Span>>>,
) -> Result<Heartbeat, Located> {
    match heartbeat {
        None => Ok(Heartbeat::Default),
        Some(None) => Ok(Heartbeat::Off),
        Some(Some(h)) if h.value.0 < std::time::Duration::from_millis(100) => Err(located(
            &h,
            "workers.heartbeat_timeout",
            "must be at least 100ms (or null to disable heartbeats)",
        )),
        Some(Some(h)) if app == AppKind::Exec && ready != Ready::Notify => Err(located(
            &h,
            "workers.heartbeat_timeout",
            "exec workers send heartbeats over NOTIFY_SOCKET: it needs ready: notify",
        )),
        Some(Some(h)) => Ok(Heartbeat::Every(h.value)),
    }
}

/// `workers.restart_backoff`: `initial` (100ms) and `max` (30s), each
/// defaulted alone; `initial` longer than 0s and no longer than `max`.
fn validate_backoff(backoff: Option<Spanned<RawBackoff>>) -> Result<Backoff, Located> {
    let mut restart_backoff = Backoff {
        initial: Span(std::time::Duration::from_millis(100)),
        max: Span(std::time::Duration::from_secs(30)),
    };
    let Some(b) = backoff else {
        return Ok(restart_backoff);
    };
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
    Ok(restart_backoff)
}

/// Whether `name` can be an environment variable name in `workers.env`.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('=')
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
        && !name.as_bytes()[0].is_ascii_digit()
}

/// Finds `program` the way `execvp` would after `chdir(cwd)`, which is
/// what the worker does before its `execve`: a relative candidate
/// (`./app`, `bin/app`, or a name found through a relative `PATH` entry)
/// is looked for under `cwd`, not under hawkey's own directory. The
/// candidate is returned as written (relative stays relative): `execve`
/// in the worker resolves it from `cwd` itself.
pub(crate) fn resolve_program_in(
    program: &str,
    path_var: Option<&OsStr>,
    cwd: Option<&Path>,
) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        let at = match cwd {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        };
        std::fs::metadata(at)
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
