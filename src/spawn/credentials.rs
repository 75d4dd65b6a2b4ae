//! The credentials a plan's workers drop to (`workers.user`,
//! `workers.group`, applied only when hawkey runs as root): looked up in
//! the master, where reading `/etc/passwd` and allocating are fine, so
//! that the child's `setgroups`/`setgid`/`setuid` only copy numbers.

use nix::errno::Errno;
use nix::unistd::{Gid, Uid};

use super::Error;
use super::command::cstring;

/// The user, group and supplementary groups workers drop to.
pub(super) struct Credentials {
    pub(super) uid: Uid,
    pub(super) gid: Gid,
    pub(super) groups: Vec<libc::gid_t>,
    /// The highest capability number the kernel knows, for emptying the
    /// bounding set in the child.
    pub(super) last_cap: libc::c_int,
}

/// `/proc/sys/kernel/cap_last_cap`, read here because the child may read
/// no file; if it cannot be read, 63 (the child stops at the first
/// capability the kernel calls invalid).
fn last_capability() -> libc::c_int {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|n| (0..64).contains(n))
        .unwrap_or(63)
}

/// Looks up `workers.user` and `workers.group` (and the user's
/// supplementary groups) once, in the master: the child may read no file.
pub(super) fn credentials(user: Option<&str>, group: Option<&str>) -> Result<Credentials, Error> {
    let lookup = |what: String| move |source| Error::Lookup { what, source };
    let user_entry = match user {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .map_err(lookup(format!("user '{name}'")))?
                .ok_or(Error::Lookup {
                    what: format!("user '{name}'"),
                    source: Errno::ENOENT,
                })?,
        ),
        None => None,
    };
    let gid = match group {
        Some(name) => {
            nix::unistd::Group::from_name(name)
                .map_err(lookup(format!("group '{name}'")))?
                .ok_or(Error::Lookup {
                    what: format!("group '{name}'"),
                    source: Errno::ENOENT,
                })?
                .gid
        }
        None => user_entry
            .as_ref()
            .map(|u| u.gid)
            .unwrap_or_else(nix::unistd::getgid),
    };
    let uid = user_entry
        .as_ref()
        .map(|u| u.uid)
        .unwrap_or_else(nix::unistd::getuid);
    let groups = match &user_entry {
        // The user's supplementary groups, as login(1) would set them.
        Some(u) => {
            let name = cstring(u.name.as_bytes(), "user name")?;
            nix::unistd::getgrouplist(&name, gid)
                .map_err(lookup(format!("groups of user '{}'", u.name)))?
                .into_iter()
                .map(|g| g.as_raw())
                .collect()
        }
        None => vec![gid.as_raw()],
    };
    Ok(Credentials {
        uid,
        gid,
        groups,
        last_cap: last_capability(),
    })
}
