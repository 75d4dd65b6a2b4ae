//! What exec'd workers get so that unmodified programs work under hawkey
//! (`docs/adopt.md`): the preload library in `LD_PRELOAD` with its
//! `HAWKEY_ADOPT` and `HAWKEY_READY_PROBE`, and the Node drain shim in
//! `NODE_OPTIONS`. Computed once per generation in `Plan::new`, before
//! any fork. Builtin workers get none of it.
//!
//! Both files are found without configuration: the library next to the
//! running executable (cargo's `target/<profile>/` holds both), then in
//! `<exe dir>/../lib/<multiarch>/hawkey/`, then in
//! `/usr/lib/<multiarch>/hawkey/`, where the .deb installs it; the shim in
//! `/usr/share/hawkey/node/`, else in this source tree.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::{Error, Inputs};
use crate::config::{AppKind, Ready};
use crate::env;

/// The preload library's file name (cargo's name for the `cdylib` of
/// the `hawkey-preload` crate).
pub(crate) const LIBRARY: &str = "libhawkey_preload.so";

/// Debian's multiarch tuple of the target hawkey was built for.
pub(crate) const MULTIARCH: &str = if cfg!(target_arch = "x86_64") {
    "x86_64-linux-gnu"
} else if cfg!(target_arch = "aarch64") {
    "aarch64-linux-gnu"
} else if cfg!(all(target_arch = "arm", target_abi = "eabihf")) {
    "arm-linux-gnueabihf"
} else if cfg!(target_arch = "arm") {
    "arm-linux-gnueabi"
} else if cfg!(target_arch = "x86") {
    "i386-linux-gnu"
} else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
    "powerpc64le-linux-gnu"
} else if cfg!(target_arch = "s390x") {
    "s390x-linux-gnu"
} else if cfg!(target_arch = "riscv64") {
    "riscv64-linux-gnu"
} else if cfg!(target_arch = "loongarch64") {
    "loongarch64-linux-gnu"
} else {
    "unknown-linux-gnu"
};

/// Where the .deb installs the Node drain shim.
pub(crate) const NODE_SHIM: &str = "/usr/share/hawkey/node/hawkey-drain.cjs";
/// The shim in the source tree hawkey was built from.
const NODE_SHIM_SOURCE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/preload/node/hawkey-drain.cjs");

/// Where the library is looked for, in order, for an executable at `exe`.
pub(crate) fn library_candidates(exe: &Path) -> Vec<PathBuf> {
    let dir = exe.parent().unwrap_or(Path::new("/"));
    vec![
        dir.join(LIBRARY),
        dir.join("../lib")
            .join(MULTIARCH)
            .join("hawkey")
            .join(LIBRARY),
        Path::new("/usr/lib")
            .join(MULTIARCH)
            .join("hawkey")
            .join(LIBRARY),
    ]
}

/// The preload library of the running hawkey, or every place it was
/// looked for.
pub(crate) fn find_library() -> Result<PathBuf, Vec<PathBuf>> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/bin/hawkey"));
    let candidates = library_candidates(&exe);
    match candidates.iter().find(|c| c.is_file()) {
        // Absolute and without `..`: what the dynamic loader is given.
        Some(found) => Ok(std::fs::canonicalize(found).unwrap_or_else(|_| found.clone())),
        None => Err(candidates),
    }
}

/// The Node drain shim, if installed or in the source tree.
pub(crate) fn find_node_shim() -> Option<PathBuf> {
    [NODE_SHIM, NODE_SHIM_SOURCE]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// What is wrong when the library is missing, after `workers.adopt`, as
/// `hawkey run` and `hawkey check` print it.
pub(crate) fn missing_library(searched: &[PathBuf]) -> String {
    let list: Vec<String> = searched
        .iter()
        .map(|p| format!("'{}'", p.display()))
        .collect();
    format!(
        "needs hawkey's preload library {LIBRARY}, which is not installed (looked for {})",
        list.join(", ")
    )
}

/// The variables hawkey injects into exec'd workers, with the values
/// they end up with (`LD_PRELOAD` and `NODE_OPTIONS` keep the worker's own
/// value after hawkey's).
pub(super) fn variables(inputs: &Inputs<'_>) -> Result<Vec<(&'static str, OsString)>, Error> {
    let workers = &inputs.config.workers;
    let mut vars = Vec::new();
    if workers.app != AppKind::Exec || !workers.preload {
        return Ok(vars);
    }
    let adopting = !workers.adopt.is_empty();
    let probing = !matches!(workers.ready, Ready::Started | Ready::Notify);
    let library = if adopting || probing {
        match find_library() {
            Ok(path) => Some(path),
            Err(searched) if adopting => {
                return Err(Error::PreloadMissing {
                    message: missing_library(&searched),
                });
            }
            Err(_) => None,
        }
    } else {
        None
    };
    if let Some(library) = library {
        if adopting {
            vars.push((env::HAWKEY_ADOPT, adopt_entries(inputs)?.into()));
        }
        if probing {
            vars.push((env::HAWKEY_READY_PROBE, probe_inodes(inputs).into()));
        }
        vars.push((
            env::LD_PRELOAD,
            prepend(
                library.into_os_string(),
                b":",
                inherited(inputs, env::LD_PRELOAD),
            ),
        ));
    }
    if let Some(shim) = find_node_shim() {
        let mut require = OsString::from("--require ");
        if shim.as_os_str().as_bytes().contains(&b' ') {
            require.push("\"");
            require.push(&shim);
            require.push("\"");
        } else {
            require.push(&shim);
        }
        vars.push((
            env::NODE_OPTIONS,
            prepend(require, b" ", inherited(inputs, env::NODE_OPTIONS)),
        ));
    }
    Ok(vars)
}

/// The value a worker would get for `name` without hawkey's injection:
/// `workers.env`'s, else the master's.
fn inherited<'a>(inputs: &'a Inputs<'_>, name: &str) -> Option<&'a OsStr> {
    if let Some(v) = inputs.config.workers.env.get(name) {
        return Some(OsStr::new(v.as_str()));
    }
    inputs
        .environment
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_os_str())
}

fn prepend(ours: OsString, separator: &[u8], theirs: Option<&OsStr>) -> OsString {
    let mut value = ours.into_vec();
    if let Some(theirs) = theirs.filter(|t| !t.is_empty()) {
        value.extend_from_slice(separator);
        value.extend_from_slice(theirs.as_bytes());
    }
    OsString::from_vec(value)
}

/// `HAWKEY_ADOPT`: `FD=SPEC` for each `workers.adopt` entry, the fd where
/// the worker finds that listener (3 + its index). The listener must be
/// among those hawkey was given (systemd's may be named otherwise than
/// `listen`'s) and be a TCP socket.
fn adopt_entries(inputs: &Inputs<'_>) -> Result<String, Error> {
    let mut entries = Vec::new();
    for (name, spec) in &inputs.config.workers.adopt.0 {
        let Some(index) = inputs.listeners.iter().position(|l| l.name == name) else {
            let names: Vec<&str> = inputs.listeners.iter().map(|l| l.name).collect();
            return Err(Error::AdoptListener {
                name: name.clone(),
                available: names.join(", "),
            });
        };
        if !is_tcp(inputs.listeners[index].fd) {
            return Err(Error::AdoptNotTcp { name: name.clone() });
        }
        entries.push(format!("{}={spec}", 3 + index));
    }
    Ok(entries.join(","))
}

/// Whether `fd` is an IPv4 or IPv6 socket.
fn is_tcp(fd: BorrowedFd<'_>) -> bool {
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `domain` and `len` are valid for getsockopt to write an int;
    // `fd` is borrowed, open for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&raw mut domain).cast(),
            &mut len,
        )
    };
    rc == 0 && matches!(domain, libc::AF_INET | libc::AF_INET6)
}

/// `HAWKEY_READY_PROBE`: the inodes of every listener's socket.
fn probe_inodes(inputs: &Inputs<'_>) -> String {
    let inodes: Vec<String> = inputs
        .listeners
        .iter()
        .filter_map(|l| nix::sys::stat::fstat(l.fd).ok())
        .map(|st| st.st_ino.to_string())
        .collect();
    inodes.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_looked_for_beside_the_binary_then_in_lib_then_in_usr_lib() {
        let found = library_candidates(Path::new("/opt/hawkey/bin/hawkey"));
        let want = [
            "/opt/hawkey/bin/libhawkey_preload.so".to_string(),
            format!("/opt/hawkey/bin/../lib/{MULTIARCH}/hawkey/libhawkey_preload.so"),
            format!("/usr/lib/{MULTIARCH}/hawkey/libhawkey_preload.so"),
        ];
        let found: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(found, want);
    }

    #[test]
    fn injected_values_keep_the_workers_own_after_hawkeys() {
        let p = |theirs: Option<&str>| prepend("/lib/x.so".into(), b":", theirs.map(OsStr::new));
        assert_eq!(p(None), "/lib/x.so");
        assert_eq!(p(Some("")), "/lib/x.so");
        assert_eq!(p(Some("/other.so")), "/lib/x.so:/other.so");
    }
}
