//! What a plan's workers execute: the program, its argv and the
//! environment every worker of the generation gets, as C strings, built
//! once per generation in the master (the per-slot entries are added by
//! `Plan::fork`'s buffers, the pids by the child).

use std::ffi::CString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::config::{self, AppKind};
use crate::env;

use super::{Error, Inputs, inject};

/// `bytes` as a C string; a NUL in it is an error naming `what`.
pub(super) fn cstring(bytes: impl Into<Vec<u8>>, what: &str) -> Result<CString, Error> {
    CString::new(bytes).map_err(|_| Error::Nul {
        what: what.to_string(),
    })
}

/// `NAME=value` as a C string.
pub(super) fn env_entry(name: &[u8], value: &[u8]) -> Result<CString, Error> {
    let mut entry = name.to_vec();
    entry.push(b'=');
    entry.extend_from_slice(value);
    cstring(
        entry,
        &format!("environment variable {}", String::from_utf8_lossy(name)),
    )
}

/// The program, its argv (without a builtin worker's per-slot name) and,
/// for builtin workers, the prefix of that name: `/proc/self/exe` (this
/// very binary) for builtin workers, `workers.command` resolved on `PATH`
/// as `hawkey check` resolved it for exec ones.
pub(super) fn program(
    inputs: &Inputs<'_>,
) -> Result<(CString, Vec<CString>, Option<String>), Error> {
    let workers = &inputs.config.workers;
    if workers.app == AppKind::Builtin {
        let prefix = std::path::Path::new(inputs.argv0)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "hawkey".into());
        return Ok((
            cstring("/proc/self/exe", "program")?,
            Vec::new(),
            Some(prefix),
        ));
    }
    let path_var = inputs
        .environment
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_os_str());
    // As `hawkey check` resolved it: from the worker's cwd, where it runs.
    let resolved: PathBuf =
        config::resolve_program_in(&workers.command[0], path_var, workers.cwd.as_deref())
            .unwrap_or_else(|| PathBuf::from(&workers.command[0]));
    let argv = workers
        .command
        .iter()
        .map(|a| cstring(a.as_bytes(), "workers.command"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        cstring(resolved.into_os_string().into_vec(), "workers.command[0]")?,
        argv,
        None,
    ))
}

/// The environment every worker of the generation gets, but for the
/// per-slot entries: the master's own without the names hawkey sets
/// (`env::WORKER_VARS`) or `workers.env` overrides, then `workers.env`,
/// then what `inject` adds for exec'd workers (`LD_PRELOAD` and
/// `NODE_OPTIONS` merged with the values they replace), then hawkey's
/// variables.
pub(super) fn environment(
    inputs: &Inputs<'_>,
    heartbeat_usec: Option<u128>,
) -> Result<Vec<CString>, Error> {
    let workers = &inputs.config.workers;
    let builtin = workers.app == AppKind::Builtin;
    let injected = inject::variables(inputs)?;
    let merged = |name: &str| injected.iter().any(|(n, _)| *n == name);
    let mut env = Vec::new();
    for (name, value) in inputs.environment {
        let name_str = name.to_string_lossy();
        if env::is_reserved(&name_str)
            || workers.env.contains_key(name_str.as_ref())
            || merged(&name_str)
        {
            continue;
        }
        env.push(env_entry(name.as_bytes(), value.as_bytes())?);
    }
    for (name, value) in &workers.env {
        if merged(name) {
            continue;
        }
        env.push(env_entry(name.as_bytes(), value.as_bytes())?);
    }
    for (name, value) in &injected {
        env.push(env_entry(name.as_bytes(), value.as_bytes())?);
    }
    let names: Vec<&str> = inputs.listeners.iter().map(|l| l.name).collect();
    let (count, joined) = (inputs.listeners.len().to_string(), names.join(":"));
    let generation = inputs.generation.to_string();
    let mut ours: Vec<(&str, &[u8])> = vec![
        (env::LISTEN_FDS, count.as_bytes()),
        (env::LISTEN_FDNAMES, joined.as_bytes()),
        (env::HAWKEY_GENERATION, generation.as_bytes()),
        // The signal the master will stop this worker with, so that an
        // app (the built-in one too) can drain on it.
        (
            env::HAWKEY_STOP_SIGNAL,
            workers.stop_signal.0.as_str().as_bytes(),
        ),
    ];
    let usec = heartbeat_usec.map(|u| u.to_string());
    if let Some(usec) = &usec {
        ours.push((env::WATCHDOG_USEC, usec.as_bytes()));
    }
    if builtin {
        ours.push((env::HAWKEY_ROLE, b"worker"));
        ours.push((env::HAWKEY_LOG, inputs.worker_log.as_bytes()));
    }
    for (name, value) in ours {
        env.push(env_entry(name.as_bytes(), value)?);
    }
    Ok(env)
}
