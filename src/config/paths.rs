//! Where things are on this host: which instance a command means
//! ([`Instance`]), where instances keep their configuration and runtime
//! directory ([`Host`]), where a configuration's pidfile and control
//! socket are once resolved against that runtime directory (the master
//! binds them there, and the CLI finds a running master there), and
//! whether a directory is fit to hold them ([`check_directory`]).
//!
//! # Parts
//!
//! - [`Instance`]: a validated instance name; `hawkey` is the default one.
//! - [`Host`]: the configuration directory (`/etc/hawkey`) and the root of
//!   the runtime directories (`/run`), read once from the environment.
//! - [`pidfile`], [`control_socket`]: a configuration's paths in a runtime
//!   directory.
//! - [`check_directory`]: refuses a directory others could write.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, Pidfile};
use crate::env::Environment;

/// The name of the default instance: `hawkey.service`,
/// `/etc/hawkey/hawkey.yaml`, `/run/hawkey/`.
pub(crate) const DEFAULT_INSTANCE: &str = "hawkey";

/// The configuration directory when `HAWKEY_CONFIG_DIR` is unset.
pub(crate) const CONFIG_DIR: &str = "/etc/hawkey";

/// The root of the runtime directories of root's instances when
/// `HAWKEY_RUNTIME_ROOT` is unset (systemd's `RuntimeDirectory=`).
pub(crate) const SYSTEM_RUNTIME_ROOT: &str = "/run";

/// An instance of hawkey on this host, by name: `NAME` runs
/// `hawkey@NAME.service` from `/etc/hawkey/NAME.yaml` with the runtime
/// directory `/run/hawkey-NAME`; [`DEFAULT_INSTANCE`] is `hawkey.service`
/// from `/etc/hawkey/hawkey.yaml` in `/run/hawkey`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Instance(String);

/// Why a name cannot be an instance's.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid instance name '{name}': {why} (allowed: a letter or digit, then up to 63 letters, digits, '_', '.' or '-')"
)]
pub(crate) struct InvalidName {
    name: String,
    why: &'static str,
}

impl Instance {
    /// The longest name: it becomes a file name, a unit name and a syslog
    /// identifier.
    const MAX: usize = 64;

    /// The default instance.
    pub(crate) fn default_instance() -> Instance {
        Instance(DEFAULT_INSTANCE.to_string())
    }

    /// `name` if it is `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`: no `/`, no
    /// leading `.` or `-` (so never `..` nor an option), nothing systemd
    /// would escape in a unit name.
    pub(crate) fn parse(name: &str) -> Result<Instance, InvalidName> {
        let invalid = |why| InvalidName {
            name: name.escape_debug().to_string(),
            why,
        };
        let Some(first) = name.chars().next() else {
            return Err(invalid("it is empty"));
        };
        if !first.is_ascii_alphanumeric() {
            return Err(invalid("it must start with a letter or a digit"));
        }
        if name.len() > Instance::MAX {
            return Err(invalid("it is longer than 64 characters"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if !name.chars().all(allowed) {
            return Err(invalid("it may not contain that character"));
        }
        Ok(Instance(name.to_string()))
    }

    /// The name (`hawkey` for the default instance).
    pub(crate) fn name(&self) -> &str {
        &self.0
    }

    /// Whether this is the default instance, `hawkey`.
    pub(crate) fn is_default(&self) -> bool {
        self.0 == DEFAULT_INSTANCE
    }

    /// `hawkey` or `hawkey-NAME`: the name of its runtime directory and
    /// its syslog identifier (`SyslogIdentifier=hawkey-%i`).
    pub(crate) fn identifier(&self) -> String {
        if self.is_default() {
            DEFAULT_INSTANCE.to_string()
        } else {
            format!("{DEFAULT_INSTANCE}-{}", self.0)
        }
    }

    /// The instance whose runtime directory is called `dir_name`.
    pub(crate) fn from_runtime_dir_name(dir_name: &OsStr) -> Option<Instance> {
        let name = dir_name.to_str()?;
        if name == DEFAULT_INSTANCE {
            return Some(Instance::default_instance());
        }
        let name = name.strip_prefix("hawkey-")?;
        Instance::parse(name).ok().filter(|i| !i.is_default())
    }

    /// The instance whose configuration file is called `file_name`
    /// (`NAME.yaml`).
    pub(crate) fn from_config_file_name(file_name: &OsStr) -> Option<Instance> {
        let name = file_name.to_str()?.strip_suffix(".yaml")?;
        Instance::parse(name).ok()
    }
}

impl std::fmt::Display for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where this host keeps instances: read once from the environment
/// ([`Host::of`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Host {
    /// `HAWKEY_CONFIG_DIR`, else `/etc/hawkey`: `NAME.yaml` in it.
    pub(crate) config_dir: PathBuf,
    /// Where the runtime directories `hawkey/` and `hawkey-NAME/` are:
    /// `HAWKEY_RUNTIME_ROOT`, else `/run` as root, else
    /// `$XDG_RUNTIME_DIR`; `None` if none applies.
    pub(crate) runtime_root: Option<PathBuf>,
    /// systemd's `$RUNTIME_DIRECTORY` (the first, if several): the unit
    /// says where this process's runtime directory is.
    pub(crate) systemd_runtime: Option<PathBuf>,
}

/// An absolute path from a variable's value; empty or relative counts as
/// unset (systemd always passes absolute paths, and the XDG base
/// directory spec says relative ones are invalid and must be ignored).
fn absolute(value: Option<&OsStr>) -> Option<PathBuf> {
    value
        .map(Path::new)
        .filter(|p| p.is_absolute())
        .map(Path::to_path_buf)
}

impl Host {
    /// The host as this process's environment describes it.
    pub(crate) fn of(env: &Environment) -> Host {
        Host::new(
            env.get(crate::env::HAWKEY_CONFIG_DIR),
            env.get(crate::env::HAWKEY_RUNTIME_ROOT),
            env.get(crate::env::RUNTIME_DIRECTORY),
            env.get(crate::env::XDG_RUNTIME_DIR),
            nix::unistd::geteuid().is_root(),
        )
    }

    /// The host from the values of `HAWKEY_CONFIG_DIR`,
    /// `HAWKEY_RUNTIME_ROOT`, `RUNTIME_DIRECTORY`, `XDG_RUNTIME_DIR` and
    /// whether the effective uid is root.
    pub(crate) fn new(
        config_dir: Option<&OsStr>,
        runtime_root: Option<&OsStr>,
        runtime_directory: Option<&OsStr>,
        xdg_runtime_dir: Option<&OsStr>,
        euid_is_root: bool,
    ) -> Host {
        let systemd_runtime = runtime_directory
            .and_then(|value| value.as_bytes().split(|&b| b == b':').next())
            .and_then(|first| absolute(Some(OsStr::from_bytes(first))));
        let runtime_root = absolute(runtime_root).or_else(|| {
            if euid_is_root {
                Some(PathBuf::from(SYSTEM_RUNTIME_ROOT))
            } else {
                absolute(xdg_runtime_dir)
            }
        });
        Host {
            config_dir: absolute(config_dir).unwrap_or_else(|| PathBuf::from(CONFIG_DIR)),
            runtime_root,
            systemd_runtime,
        }
    }

    /// For the CLI: a user with no runtime directory of their own
    /// (no `$XDG_RUNTIME_DIR`, as under `sudo -u hawkey`) looks for the
    /// system's instances in `/run`.
    pub(crate) fn or_system_root(mut self) -> Host {
        if self.runtime_root.is_none() {
            self.runtime_root = Some(PathBuf::from(SYSTEM_RUNTIME_ROOT));
        }
        self
    }

    /// The instance's configuration file: `NAME.yaml` in the
    /// configuration directory.
    pub(crate) fn config_file(&self, instance: &Instance) -> PathBuf {
        self.config_dir.join(format!("{instance}.yaml"))
    }

    /// The instance's runtime directory: systemd's, when the unit names
    /// one, else [`Host::runtime_dir_in_root`].
    pub(crate) fn runtime_dir(&self, instance: &Instance) -> Option<PathBuf> {
        self.systemd_runtime
            .clone()
            .or_else(|| self.runtime_dir_in_root(instance))
    }

    /// `hawkey` or `hawkey-NAME` under the runtime root, whatever this
    /// process's own unit says: where the host-wide status looks.
    pub(crate) fn runtime_dir_in_root(&self, instance: &Instance) -> Option<PathBuf> {
        Some(self.runtime_root.as_ref()?.join(instance.identifier()))
    }
}

/// The pidfile path of the config, resolved against the runtime directory
/// (`hawkey.pid` in it by default); `None` when disabled.
pub(crate) fn pidfile(config: &Config, runtime_dir: Option<&Path>) -> Option<PathBuf> {
    match &config.pidfile {
        Pidfile::Disabled => None,
        Pidfile::Path(p) => Some(p.clone()),
        Pidfile::Default => runtime_dir.map(|dir| dir.join("hawkey.pid")),
    }
}

/// The control socket path: beside the pidfile (same name, `.sock`), else
/// `hawkey.sock` in the runtime directory; `None` when disabled.
pub(crate) fn control_socket(config: &Config, runtime_dir: Option<&Path>) -> Option<PathBuf> {
    match &config.control_socket {
        Pidfile::Disabled => None,
        Pidfile::Path(p) => Some(p.clone()),
        Pidfile::Default => match pidfile(config, runtime_dir) {
            Some(pid) => Some(pid.with_extension("sock")),
            None => runtime_dir.map(|dir| dir.join("hawkey.sock")),
        },
    }
}

/// Why a directory may not hold the pidfile or the control socket.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UnsafeDirectory {
    /// Group or other users may create, remove and rename entries in it.
    #[error(
        "refusing {what} directory '{}': it is writable by other users (mode {mode:04o}); \
         make it writable by its owner only",
        dir.display()
    )]
    Writable {
        what: &'static str,
        dir: PathBuf,
        mode: u32,
    },
    /// Owned by a user other than root and hawkey's own.
    #[error(
        "refusing {what} directory '{}': it is owned by uid {owner}, not by root or uid {us}",
        dir.display()
    )]
    Owner {
        what: &'static str,
        dir: PathBuf,
        owner: u32,
        us: u32,
    },
    /// Not a directory, or it could not be looked at.
    #[error("refusing {what} directory '{}': {source}", dir.display())]
    Stat {
        what: &'static str,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Errors unless the directory `file` is in (a pidfile, a control socket)
/// is fit to hold it: owned by root or by hawkey's effective uid, and
/// writable by its owner only. A missing directory passes: hawkey creates
/// it itself, mode 0755. `what` names the file in the error ("pidfile").
///
/// Anyone else who can write the directory can make the file theirs: create
/// the pidfile first and hold its lock (every start then fails as "another
/// hawkey", naming a pid they chose), or listen at the control socket's
/// name and answer `hawkey stop` in the master's place. The sticky bit does
/// not help (in `/tmp` another user can still take a name first), so a
/// directory writable by group or others is refused whatever its owner and
/// sticky bit; so is one owned by another user, who could change its mode.
/// Symlinks are followed (`/var/run` → `/run`); only the last directory is
/// looked at, and ACLs are not read.
pub(crate) fn check_directory(file: &Path, what: &'static str) -> Result<(), UnsafeDirectory> {
    use std::os::unix::fs::MetadataExt;
    let Some(dir) = file.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(UnsafeDirectory::Stat {
                what,
                dir: dir.to_path_buf(),
                source,
            });
        }
    };
    if !meta.is_dir() {
        return Err(UnsafeDirectory::Stat {
            what,
            dir: dir.to_path_buf(),
            source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
        });
    }
    let us = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != us {
        return Err(UnsafeDirectory::Owner {
            what,
            dir: dir.to_path_buf(),
            owner: meta.uid(),
            us,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(UnsafeDirectory::Writable {
            what,
            dir: dir.to_path_buf(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    use crate::test_util::TestDir;

    fn with_mode(dir: &TestDir, mode: u32) -> PathBuf {
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(mode)).unwrap();
        dir.join("hawkey.pid")
    }

    #[test]
    fn a_directory_writable_by_others_is_refused_naming_it() {
        for mode in [0o777, 0o1777, 0o775, 0o757, 0o1733] {
            let dir = TestDir::new("paths-writable");
            let file = with_mode(&dir, mode);
            let err = check_directory(&file, "pidfile").unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "refusing pidfile directory '{}': it is writable by other users (mode {mode:04o}); make it writable by its owner only",
                    file.parent().unwrap().display()
                )
            );
            std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
    }

    #[test]
    fn a_directory_of_the_owner_only_or_a_missing_one_passes() {
        for mode in [0o755, 0o700, 0o1755, 0o711] {
            let dir = TestDir::new("paths-private");
            assert!(
                check_directory(&with_mode(&dir, mode), "pidfile").is_ok(),
                "{mode:o}"
            );
        }
        let dir = TestDir::new("paths-missing");
        assert!(check_directory(&dir.join("missing/hawkey.pid"), "pidfile").is_ok());
        assert!(check_directory(Path::new("hawkey.pid"), "pidfile").is_ok());
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_refused() {
        let dir = TestDir::new("paths-notdir");
        std::fs::write(dir.join("file"), "").unwrap();
        let err = check_directory(&dir.join("file/hawkey.sock"), "control socket").unwrap_err();
        assert!(
            err.to_string().contains("Not a directory (os error 20)"),
            "{err}"
        );
    }

    fn host(
        runtime_root: Option<&'static str>,
        runtime_directory: Option<&'static str>,
        xdg: Option<&'static str>,
        root: bool,
    ) -> Host {
        Host::new(
            None,
            runtime_root.map(OsStr::new),
            runtime_directory.map(OsStr::new),
            xdg.map(OsStr::new),
            root,
        )
    }

    fn name(n: &str) -> Instance {
        Instance::parse(n).unwrap()
    }

    #[test]
    fn runtime_dir_prefers_systemd_then_the_root_then_xdg() {
        let p = |s: &str| Some(PathBuf::from(s));
        let default = Instance::default_instance();
        let api = name("api");
        let h = host(None, Some("/run/hawkey"), Some("/run/user/1000"), false);
        assert_eq!(h.runtime_dir(&api), p("/run/hawkey"), "systemd's wins");
        let h = host(None, Some("/run/a:/run/b"), None, true);
        assert_eq!(h.runtime_dir(&default), p("/run/a"), "first of several");
        let h = host(None, None, Some("/run/user/0"), true);
        assert_eq!(h.runtime_dir(&default), p("/run/hawkey"));
        assert_eq!(h.runtime_dir(&api), p("/run/hawkey-api"));
        let h = host(None, None, Some("/run/user/1000"), false);
        assert_eq!(h.runtime_dir(&default), p("/run/user/1000/hawkey"));
        assert_eq!(h.runtime_dir(&api), p("/run/user/1000/hawkey-api"));
        assert_eq!(host(None, None, None, false).runtime_dir(&api), None);
        let h = host(Some("/tmp/t"), Some("/run/hawkey-x"), None, false);
        assert_eq!(h.runtime_dir(&api), p("/run/hawkey-x"));
        assert_eq!(h.runtime_dir_in_root(&api), p("/tmp/t/hawkey-api"));
        assert_eq!(h.runtime_dir_in_root(&default), p("/tmp/t/hawkey"));
    }

    #[test]
    fn the_cli_of_a_user_without_a_runtime_dir_looks_in_run() {
        let h = host(None, None, None, false).or_system_root();
        assert_eq!(
            h.runtime_dir(&name("jobs")),
            Some(PathBuf::from("/run/hawkey-jobs"))
        );
        let h = host(None, None, Some("/run/user/7"), false).or_system_root();
        assert_eq!(
            h.runtime_dir(&name("jobs")),
            Some(PathBuf::from("/run/user/7/hawkey-jobs"))
        );
    }

    #[test]
    fn runtime_dir_ignores_empty_and_relative_values() {
        let api = name("api");
        assert_eq!(host(None, Some(""), None, false).runtime_dir(&api), None);
        assert_eq!(
            host(None, Some(":/run/b"), None, false).runtime_dir(&api),
            None
        );
        assert_eq!(
            host(None, Some(""), None, true).runtime_dir(&api),
            Some(PathBuf::from("/run/hawkey-api"))
        );
        assert_eq!(host(Some(""), None, None, false).runtime_dir(&api), None);
        assert_eq!(
            host(Some("t"), None, Some("run/user"), false).runtime_dir(&api),
            None
        );
        assert_eq!(
            host(None, Some("relative"), Some("/run/user/1000"), false).runtime_dir(&api),
            Some(PathBuf::from("/run/user/1000/hawkey-api"))
        );
    }

    #[test]
    fn an_instance_reads_name_dot_yaml_in_the_config_dir() {
        let h = Host::new(None, None, None, None, true);
        assert_eq!(
            h.config_file(&Instance::default_instance()),
            PathBuf::from("/etc/hawkey/hawkey.yaml")
        );
        assert_eq!(
            h.config_file(&name("api")),
            PathBuf::from("/etc/hawkey/api.yaml")
        );
        let h = Host::new(Some(OsStr::new("/tmp/conf")), None, None, None, false);
        assert_eq!(
            h.config_file(&name("a.b-c_1")),
            PathBuf::from("/tmp/conf/a.b-c_1.yaml")
        );
        let h = Host::new(Some(OsStr::new("conf")), None, None, None, false);
        assert_eq!(
            h.config_dir,
            PathBuf::from("/etc/hawkey"),
            "relative: unset"
        );
    }

    #[test]
    fn instance_names_are_letters_digits_and_inner_punctuation() {
        for good in [
            "api",
            "a",
            "0",
            "API-2",
            "a.b",
            "a..b",
            "x_y",
            &"a".repeat(64),
        ] {
            assert_eq!(Instance::parse(good).unwrap().name(), good);
        }
        let cases = [
            ("", "it is empty"),
            ("..", "it must start with a letter or a digit"),
            (".hidden", "it must start with a letter or a digit"),
            ("-c", "it must start with a letter or a digit"),
            ("_x", "it must start with a letter or a digit"),
            ("a/b", "it may not contain that character"),
            ("a/../b", "it may not contain that character"),
            ("a b", "it may not contain that character"),
            ("a@b", "it may not contain that character"),
            ("a\\x2db", "it may not contain that character"),
            ("ünï", "it must start with a letter or a digit"),
            (&"a".repeat(65), "it is longer than 64 characters"),
        ];
        for (bad, why) in cases {
            let err = Instance::parse(bad).unwrap_err();
            assert_eq!(err.why, why, "{bad:?}");
        }
        assert_eq!(
            Instance::parse("../etc").unwrap_err().to_string(),
            "invalid instance name '../etc': it must start with a letter or a digit (allowed: a letter or digit, then up to 63 letters, digits, '_', '.' or '-')"
        );
        assert_eq!(
            Instance::parse("a\nb").unwrap_err().name,
            "a\\nb",
            "a control character is shown escaped"
        );
    }

    #[test]
    fn the_default_instance_is_hawkey_and_others_are_hawkey_dash_name() {
        let default = Instance::default_instance();
        assert!(default.is_default());
        assert_eq!(default.identifier(), "hawkey");
        assert!(name("hawkey").is_default());
        assert_eq!(name("api").identifier(), "hawkey-api");
        let dir = |s: &str| Instance::from_runtime_dir_name(OsStr::new(s));
        assert_eq!(dir("hawkey"), Some(default.clone()));
        assert_eq!(dir("hawkey-api"), Some(name("api")));
        assert_eq!(dir("hawkey-hawkey"), None, "the default has no dash form");
        assert_eq!(dir("hawkey-"), None);
        assert_eq!(dir("hawkey-.x"), None);
        assert_eq!(dir("other"), None);
        let file = |s: &str| Instance::from_config_file_name(OsStr::new(s));
        assert_eq!(file("hawkey.yaml"), Some(default));
        assert_eq!(file("api.yaml"), Some(name("api")));
        assert_eq!(file("api.yml"), None);
        assert_eq!(file("api.yaml.dpkg-old"), None);
        assert_eq!(file(".yaml"), None);
        assert_eq!(file("a b.yaml"), None);
    }
}
