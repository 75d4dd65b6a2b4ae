//! Where a configuration's pidfile and control socket are, once resolved
//! against the runtime directory: the master binds them there, and the CLI
//! finds a running master there; and whether a directory is fit to hold
//! them ([`check_directory`]).

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
