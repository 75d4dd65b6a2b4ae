//! Where a configuration's pidfile and control socket are, once resolved
//! against the runtime directory: the master binds them there, and the CLI
//! finds a running master there.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, Pidfile};
use crate::env::Environment;

/// The runtime directory for this process's environment.
fn runtime_dir_of(env: &Environment) -> Option<PathBuf> {
    runtime_dir(
        env.get("RUNTIME_DIRECTORY"),
        env.get("XDG_RUNTIME_DIR"),
        nix::unistd::geteuid().is_root(),
    )
}

/// The pidfile path of the config, resolved against the runtime directory
/// (`hawkey.pid` in it by default); `None` when disabled.
pub(crate) fn pidfile(config: &Config, env: &Environment) -> Option<PathBuf> {
    match &config.pidfile {
        Pidfile::Disabled => None,
        Pidfile::Path(p) => Some(p.clone()),
        Pidfile::Default => runtime_dir_of(env).map(|dir| dir.join("hawkey.pid")),
    }
}

/// The control socket path: beside the pidfile (same name, `.sock`), else
/// `hawkey.sock` in the runtime directory; `None` when disabled.
pub(crate) fn control_socket(config: &Config, env: &Environment) -> Option<PathBuf> {
    match &config.control_socket {
        Pidfile::Disabled => None,
        Pidfile::Path(p) => Some(p.clone()),
        Pidfile::Default => match pidfile(config, env) {
            Some(pid) => Some(pid.with_extension("sock")),
            None => runtime_dir_of(env).map(|dir| dir.join("hawkey.sock")),
        },
    }
}

/// Runtime directory: `runtime_directory` (systemd's $RUNTIME_DIRECTORY; if
/// it holds several colon-separated paths, the first) if Some; else
/// "/run/hawkey" when `euid_is_root`; else `xdg_runtime_dir`/hawkey if Some;
/// else None.
///
/// An empty or relative value counts as unset: systemd always passes
/// absolute paths, and the XDG base directory spec says relative ones are
/// invalid and must be ignored.
pub(crate) fn runtime_dir(
    runtime_directory: Option<&OsStr>,
    xdg_runtime_dir: Option<&OsStr>,
    euid_is_root: bool,
) -> Option<PathBuf> {
    let first = runtime_directory
        .and_then(|value| value.as_bytes().split(|&b| b == b':').next())
        .map(|first| Path::new(OsStr::from_bytes(first)))
        .filter(|p| p.is_absolute());
    if let Some(dir) = first {
        return Some(dir.to_path_buf());
    }
    if euid_is_root {
        return Some(PathBuf::from("/run/hawkey"));
    }
    xdg_runtime_dir
        .map(Path::new)
        .filter(|p| p.is_absolute())
        .map(|dir| dir.join("hawkey"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_dir_prefers_systemd_then_root_then_xdg() {
        let os = |s: &'static str| Some(OsStr::new(s));
        let p = |s: &str| Some(PathBuf::from(s));

        assert_eq!(
            runtime_dir(os("/run/hawkey"), os("/run/user/1000"), false),
            p("/run/hawkey")
        );
        assert_eq!(
            runtime_dir(os("/run/a:/run/b"), None, true),
            p("/run/a"),
            "first of several"
        );
        assert_eq!(runtime_dir(None, os("/run/user/0"), true), p("/run/hawkey"));
        assert_eq!(
            runtime_dir(None, os("/run/user/1000"), false),
            p("/run/user/1000/hawkey")
        );
        assert_eq!(runtime_dir(None, None, false), None);
        assert_eq!(runtime_dir(None, None, true), p("/run/hawkey"));
    }

    #[test]
    fn runtime_dir_ignores_empty_and_relative_values() {
        let os = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(runtime_dir(os(""), None, false), None);
        assert_eq!(runtime_dir(os(":/run/b"), None, false), None);
        assert_eq!(
            runtime_dir(os(""), None, true),
            Some(PathBuf::from("/run/hawkey"))
        );
        assert_eq!(runtime_dir(None, os(""), false), None);
        assert_eq!(runtime_dir(None, os("run/user"), false), None);
        assert_eq!(
            runtime_dir(os("relative"), os("/run/user/1000"), false),
            Some(PathBuf::from("/run/user/1000/hawkey"))
        );
    }
}
