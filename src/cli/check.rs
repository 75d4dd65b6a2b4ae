//! `hawkey check`: validate the configuration and print it as it takes
//! effect (`workers.count: auto` resolved, the pidfile path resolved).

use std::io::Write;
use std::path::PathBuf;

use crate::config::{self, paths};
use crate::env::Environment;
use crate::exit::Status;
use crate::master::cpu;

/// Validates the configuration at `config_path`; prints the effective
/// configuration unless `quiet`.
pub(super) fn check(config_path: Option<PathBuf>, quiet: bool) -> Status {
    let env = Environment::capture();
    let (mut config, source) = match super::load_config(config_path) {
        Ok(loaded) => loaded,
        Err(e) => return super::config_failed(&e),
    };
    if quiet {
        return Status::Ok;
    }
    let mut out = format!("# {source}: valid\n");
    if config.workers.count == config::WorkerCount::Auto {
        let cpus = cpu::available();
        let quota = match cpus.quota {
            Some(q) => format!("a CPU quota of {q:.2}"),
            None => "no CPU quota".to_string(),
        };
        out.push_str(&format!(
            "# workers.count: auto = {} ({} CPUs in the affinity mask, {quota})\n",
            cpus.count, cpus.affinity
        ));
        config.workers.count = config::WorkerCount::Fixed(cpus.count as u32);
    }
    config.pidfile = match paths::pidfile(&config, &env) {
        Some(path) => config::Pidfile::Path(path),
        None => config::Pidfile::Disabled,
    };
    out.push_str(&config.to_yaml());
    // A reader that went away (`hawkey check | head -1`) is not an error
    // of ours: stop writing, as cat(1) does.
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Ok(()) => Status::Ok,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Status::Ok,
        Err(e) => {
            let e = std::io::Error::new(e.kind(), format!("failed to write to stdout: {e}"));
            super::report(&e, false);
            Status::Failure
        }
    }
}
