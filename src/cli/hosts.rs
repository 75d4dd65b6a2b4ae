//! `hawkey status` with no name: every instance on the host, one line
//! each, like `pm2 ls`.
//!
//! # Parts
//!
//! - [`discover`]: the instances, from the configuration directory
//!   (`hawkey.yaml` is the default instance, `NAME.yaml` is `NAME`) and
//!   from the runtime root (`hawkey/`, `hawkey-NAME/` holding a control
//!   socket: an instance whose configuration was since removed still
//!   runs, and is listed).
//! - [`query`]: each one's master asked for its status; one that does not
//!   run is `stopped`, one that cannot be asked (permission denied, a
//!   stale socket, an impostor, no answer) is `unreachable` with the
//!   reason (never fatal: the list goes on).
//! - [`list`]: the rows, with CPU% and memory of each master's whole
//!   process tree from one [`Sample`] for all, as a table or JSON.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Target;
use super::control::{Located, cli_host, locate};
use super::status::{cpu_cell, format_duration, mem_cell, printable, table};
use super::usage::{Sample, Usage};
use crate::config::paths::{Host, Instance};
use crate::control::{self, Request, Response, StatusReport, Trust};
use crate::exit::Status;

/// How long the list waits for each master: a master answers from its
/// loop at once, so one that does not within this is listed as
/// unreachable ("no answer", e.g. stopped by SIGSTOP) and the list goes on.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// An instance found on the host, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Found {
    pub(super) instance: Instance,
    /// Its configuration file, if there is one.
    pub(super) config: Option<PathBuf>,
    /// Its runtime directory, if it holds a control socket.
    pub(super) runtime_dir: Option<PathBuf>,
}

/// Where the listing looks for runtime directories: the host's runtime
/// root and, for a user other than root, `/run` too (the system's
/// instances, which such a user sees as unreachable rather than not at
/// all).
pub(super) fn runtime_roots(host: &Host) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = host.runtime_root.iter().cloned().collect();
    let system = PathBuf::from(crate::config::paths::SYSTEM_RUNTIME_ROOT);
    if !nix::unistd::geteuid().is_root() && !roots.contains(&system) {
        roots.push(system);
    }
    roots
}

/// The instances of `host` (runtime directories looked for in `roots`,
/// the first root that has one wins): the default one first, then by
/// name.
pub(super) fn discover(host: &Host, roots: &[PathBuf]) -> Vec<Found> {
    let mut found: BTreeMap<(bool, Instance), Found> = BTreeMap::new();
    let mut configs = Vec::new();
    for (name, path) in entries(&host.config_dir) {
        if let Some(instance) = Instance::from_config_file_name(&name)
            && path.is_file()
        {
            configs.push((instance, path));
        }
    }
    let mut runtimes = Vec::new();
    for root in roots.iter().rev() {
        for (name, path) in entries(root) {
            if let Some(instance) = Instance::from_runtime_dir_name(&name)
                && may_hold_a_socket(&path.join("hawkey.sock"))
            {
                runtimes.push((instance, path));
            }
        }
    }
    for (instance, path) in configs {
        entry(&mut found, &instance).config = Some(path);
    }
    for (instance, path) in runtimes {
        entry(&mut found, &instance).runtime_dir = Some(path);
    }
    found.into_values().collect()
}

/// The entry of `instance` in `found`, the default instance sorted first.
fn entry<'a>(
    found: &'a mut BTreeMap<(bool, Instance), Found>,
    instance: &Instance,
) -> &'a mut Found {
    found
        .entry((!instance.is_default(), instance.clone()))
        .or_insert_with(|| Found {
            instance: instance.clone(),
            config: None,
            runtime_dir: None,
        })
}

/// The names and paths in `dir`; none if it cannot be read. Bounded: a
/// directory of more than a few thousand entries is read no further.
fn entries(dir: &Path) -> Vec<(std::ffi::OsString, PathBuf)> {
    const MAX: usize = 4096;
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    read.flatten()
        .take(MAX)
        .map(|e| (e.file_name(), e.path()))
        .collect()
}

/// Whether `path` is a socket, or in a directory this user may not look
/// into (a system instance's 0750 runtime directory, as another user):
/// then its master is listed as unreachable, not left out.
fn may_hold_a_socket(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            meta.file_type().is_socket()
        }
        Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
    }
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// What asking an instance's master gave.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Answer {
    Running(StatusReport),
    Stopped,
    /// Why it could not be asked.
    Unreachable(String),
}

/// Asks the master of `found` for its status. Its configuration names the
/// control socket (in the instance's runtime directory under the root by
/// default); without a usable one, the runtime directory's `hawkey.sock`.
pub(super) fn query(found: &Found, host: &Host) -> (Answer, Option<PathBuf>) {
    let runtime_dir = found
        .runtime_dir
        .clone()
        .or_else(|| host.runtime_dir_in_root(&found.instance));
    let default_paths = || {
        let dir = runtime_dir.clone()?;
        Some((
            dir.join("hawkey.sock"),
            Trust::from_pidfile(Some(&dir.join("hawkey.pid"))),
        ))
    };
    let target = Target::Instance {
        instance: found.instance.clone(),
        named: true,
    };
    let located = match &found.config {
        Some(_) => locate(&target, host, runtime_dir.as_deref()).map_err(Some),
        None => Err(None),
    };
    let (path, trust) = match located {
        Ok(found) => found,
        Err(Some(Located::Disabled)) => {
            let why = "the configuration disables the control socket".to_string();
            return (Answer::Unreachable(why), None);
        }
        // No configuration, or one that cannot be read: the default
        // place.
        Err(Some(Located::Config(_)) | None) => match default_paths() {
            Some(paths) => paths,
            None => return (Answer::Unreachable("no runtime directory".into()), None),
        },
    };
    let answer = match control::request_trusting(&path, &Request::Status, Some(TIMEOUT), &trust) {
        Ok(Response::Status(report)) => Answer::Running(report),
        Ok(_) => Answer::Unreachable("not a status report".into()),
        // A socket nobody listens on: its master died without removing
        // it (SIGKILL, by hand; under systemd the runtime directory goes).
        Err(control::Error::NotRunning { .. }) if is_socket(&path) => {
            Answer::Unreachable("stale control socket".into())
        }
        Err(control::Error::NotRunning { .. }) => Answer::Stopped,
        Err(error) => Answer::Unreachable(reason(&error)),
    };
    (answer, Some(path))
}

/// A short reason for a row; the whole error is in `hawkey status NAME`.
fn reason(error: &control::Error) -> String {
    match error {
        control::Error::PermissionDenied { .. } => "permission denied".into(),
        control::Error::Impostor { pid, uid, .. } => {
            format!("pid {pid} of uid {uid} is not its master")
        }
        control::Error::Timeout { .. } => "no answer".into(),
        control::Error::Protocol(_) => "protocol error".into(),
        control::Error::Connect { source, .. } | control::Error::Io { source, .. } => {
            source.kind().to_string()
        }
        other => other.to_string(),
    }
}

/// One line of the list; the JSON array's element (stable field names;
/// `null` where the instance does not run).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct Row {
    pub(super) name: String,
    /// `running`, `reloading`, `stopping`, `stopped` or `unreachable`.
    pub(super) state: &'static str,
    /// Why it is unreachable.
    pub(super) reason: Option<String>,
    pub(super) generation: Option<u64>,
    pub(super) ready: Option<usize>,
    pub(super) total: Option<usize>,
    pub(super) restarts: Option<u32>,
    /// Workers replaced by `workers.recycle`, summed over the slots.
    pub(super) recycles: Option<u32>,
    pub(super) cpu_percent: Option<f64>,
    pub(super) rss_bytes: Option<u64>,
    pub(super) pid: Option<u32>,
    pub(super) uptime_ms: Option<u64>,
    pub(super) config: Option<PathBuf>,
    pub(super) control_socket: Option<PathBuf>,
}

impl Row {
    /// The row of `found`, its master's `answer` and its tree's `usage`.
    pub(super) fn of(
        found: &Found,
        answer: &Answer,
        socket: Option<PathBuf>,
        usage: Option<Usage>,
    ) -> Row {
        let mut row = Row {
            name: found.instance.name().to_string(),
            state: "stopped",
            reason: None,
            generation: None,
            ready: None,
            total: None,
            restarts: None,
            recycles: None,
            cpu_percent: None,
            rss_bytes: None,
            pid: None,
            uptime_ms: None,
            config: found.config.clone(),
            control_socket: socket,
        };
        match answer {
            Answer::Stopped => {}
            Answer::Unreachable(why) => {
                row.state = "unreachable";
                row.reason = Some(why.clone());
            }
            Answer::Running(report) => {
                let Pool {
                    ready,
                    total,
                    restarts,
                    recycles,
                } = pool(report);
                row.state = state_of(&report.status);
                row.generation = Some(report.generation);
                row.ready = Some(ready);
                row.total = Some(total);
                row.restarts = Some(restarts);
                row.recycles = Some(recycles);
                row.cpu_percent = usage.map(|u| u.cpu_percent);
                row.rss_bytes = usage.map(|u| u.rss_bytes);
                row.pid = Some(report.master_pid);
                row.uptime_ms = Some(report.uptime_ms);
            }
        }
        row
    }
}

/// A master's pool as the list shows it.
struct Pool {
    ready: usize,
    total: usize,
    restarts: u32,
    recycles: u32,
}

/// Ready slots, slots, restarts and recycles: each slot counted once (a
/// slot in a reload or a recycle also lists its successor and retiring
/// workers after it).
fn pool(report: &StatusReport) -> Pool {
    let mut seen = std::collections::BTreeSet::new();
    let (mut ready, mut restarts, mut recycles) = (0, 0, 0);
    for worker in &report.workers {
        if seen.insert(worker.slot) {
            ready += usize::from(worker.state == "ready");
            restarts += worker.restarts;
            recycles += worker.recycles;
        }
    }
    Pool {
        ready,
        total: seen.len(),
        restarts,
        recycles,
    }
}

/// The state a running master's status line (`STATUS=`) tells.
fn state_of(status: &str) -> &'static str {
    if status.starts_with("stopping") {
        "stopping"
    } else if status.contains(", reloading") || status.contains(", rolling back") {
        "reloading"
    } else {
        "running"
    }
}

/// The table: a header and one aligned line per row; an unreachable
/// instance's STATE is `unreachable: REASON`.
pub(super) fn render(rows: &[Row]) -> String {
    let header = [
        "NAME", "STATE", "GEN", "READY", "RESTARTS", "RECYCLED", "CPU%", "MEM", "PID", "UPTIME",
    ];
    let dash = || "-".to_string();
    let opt = |v: Option<String>| v.unwrap_or_else(dash);
    let mut lines = vec![header.map(String::from).to_vec()];
    for row in rows {
        let usage = row.rss_bytes.map(|rss_bytes| Usage {
            cpu_percent: row.cpu_percent.unwrap_or(0.0),
            rss_bytes,
        });
        let state = match &row.reason {
            Some(why) => format!("{}: {}", row.state, printable(why)),
            None => row.state.to_string(),
        };
        lines.push(vec![
            row.name.clone(),
            state,
            opt(row.generation.map(|g| g.to_string())),
            opt(row.ready.zip(row.total).map(|(r, t)| format!("{r}/{t}"))),
            opt(row.restarts.map(|r| r.to_string())),
            opt(row.recycles.map(|r| r.to_string())),
            if row.cpu_percent.is_some() {
                cpu_cell(usage)
            } else {
                dash()
            },
            mem_cell(usage),
            opt(row.pid.map(|p| p.to_string())),
            opt(row.uptime_ms.map(format_duration)),
        ]);
    }
    table(&lines, "")
}

/// `hawkey status` with no name: lists the host's instances; 0 once
/// listed, whatever their states.
pub(super) fn list(json: bool) -> Status {
    let host = cli_host();
    let found = discover(&host, &runtime_roots(&host));
    let answers: Vec<(Answer, Option<PathBuf>)> = found.iter().map(|f| query(f, &host)).collect();
    let running = answers.iter().any(|(a, _)| matches!(a, Answer::Running(_)));
    // One sample for all: the CLI waits its interval once.
    let sample = running.then(Sample::take);
    let rows: Vec<Row> = found
        .iter()
        .zip(answers)
        .map(|(f, (answer, socket))| {
            let usage = match (&answer, &sample) {
                (Answer::Running(r), Some(s)) => s.tree(r.master_pid as i32),
                _ => None,
            };
            Row::of(f, &answer, socket, usage)
        })
        .collect();
    let text = if json {
        serde_json::to_string_pretty(&rows).expect("rows serialize") + "\n"
    } else {
        render(&rows)
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Status::Ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::WorkerStatus;
    use crate::test_util::TestDir;

    fn host(dir: &TestDir) -> Host {
        let conf = dir.join("etc");
        let run = dir.join("run");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        Host::new(
            Some(conf.as_os_str()),
            Some(run.as_os_str()),
            None,
            None,
            false,
        )
    }

    fn name(n: &str) -> Instance {
        Instance::parse(n).unwrap()
    }

    #[test]
    fn instances_come_from_config_files_and_runtime_dirs_with_a_socket() {
        let dir = TestDir::new("hosts-discover");
        let host = host(&dir);
        let conf = host.config_dir.clone();
        let run = host.runtime_root.clone().unwrap();
        for file in ["hawkey.yaml", "api.yaml", "jobs.yaml", "x.yml", ".y.yaml"] {
            std::fs::write(conf.join(file), "{}").unwrap();
        }
        std::fs::create_dir(conf.join("dir.yaml")).unwrap();
        for d in [
            "hawkey-api",
            "hawkey-gone",
            "hawkey-empty",
            "other",
            "hawkey-.x",
        ] {
            std::fs::create_dir(run.join(d)).unwrap();
        }
        for d in ["hawkey-api", "hawkey-gone", "other", "hawkey-.x"] {
            let socket = run.join(d).join("hawkey.sock");
            std::os::unix::net::UnixListener::bind(&socket).unwrap();
        }
        std::fs::write(run.join("hawkey-empty/hawkey.sock"), "").unwrap();
        let found = discover(&host, std::slice::from_ref(&run));
        let names: Vec<&str> = found.iter().map(|f| f.instance.name()).collect();
        assert_eq!(names, ["hawkey", "api", "gone", "jobs"]);
        assert_eq!(found[1].config, Some(conf.join("api.yaml")));
        assert_eq!(found[1].runtime_dir, Some(run.join("hawkey-api")));
        assert_eq!(found[2].config, None);
        assert_eq!(found[2].runtime_dir, Some(run.join("hawkey-gone")));
        assert_eq!(found[3].runtime_dir, None, "no socket: not running here");
    }

    #[test]
    fn the_first_root_holding_an_instance_wins() {
        let dir = TestDir::new("hosts-roots");
        let host = host(&dir);
        let mine = host.runtime_root.clone().unwrap();
        let system = dir.join("system");
        for d in [
            mine.join("hawkey-api"),
            system.join("hawkey-api"),
            system.join("hawkey-web"),
        ] {
            std::fs::create_dir_all(&d).unwrap();
            std::os::unix::net::UnixListener::bind(d.join("hawkey.sock")).unwrap();
        }
        let found = discover(&host, &[mine.clone(), system.clone()]);
        let dirs: Vec<_> = found
            .iter()
            .map(|f| f.runtime_dir.clone().unwrap())
            .collect();
        assert_eq!(dirs, [mine.join("hawkey-api"), system.join("hawkey-web")]);
        assert!(!may_hold_a_socket(&system.join("missing/hawkey.sock")));
    }

    #[test]
    fn a_host_without_its_directories_has_no_instances() {
        let host = Host::new(
            Some("/nonexistent/etc".as_ref()),
            Some("/nonexistent/run".as_ref()),
            None,
            None,
            false,
        );
        assert_eq!(
            discover(&host, &[PathBuf::from("/nonexistent/run")]),
            vec![]
        );
    }

    fn found(n: &str) -> Found {
        Found {
            instance: name(n),
            config: Some(PathBuf::from(format!("/etc/hawkey/{n}.yaml"))),
            runtime_dir: None,
        }
    }

    fn worker(slot: usize, state: &str, restarts: u32) -> WorkerStatus {
        WorkerStatus {
            slot,
            pid: Some(100 + slot as i32),
            generation: 2,
            state: state.into(),
            uptime_ms: Some(1000),
            restarts,
            recycles: 0,
            last_exit: None,
            status: None,
        }
    }

    #[test]
    fn the_list_shows_each_instance_state_pool_and_figures_aligned() {
        let mut reloading = StatusReport::example();
        reloading.generation = 4;
        reloading.status = "1/2 workers ready, generation 3, 3 restarts, reloading".into();
        reloading.workers = vec![
            worker(0, "ready", 1),
            worker(0, "starting (generation 4)", 1),
            worker(1, "starting", 2),
        ];
        // Slot 0's successor repeats its counts: counted once.
        reloading.workers[0].recycles = 2;
        reloading.workers[1].recycles = 2;
        reloading.workers[2].recycles = 1;
        reloading.master_pid = 31337;
        reloading.uptime_ms = 725_000;
        let usage = |cpu_percent, rss_bytes| {
            Some(Usage {
                cpu_percent,
                rss_bytes,
            })
        };
        let rows = [
            Row::of(
                &found("hawkey"),
                &Answer::Running(StatusReport::example()),
                None,
                usage(0.25, 14 << 20),
            ),
            Row::of(
                &found("api"),
                &Answer::Running(reloading),
                None,
                usage(101.0, 1 << 30),
            ),
            Row::of(
                &found("batch"),
                &Answer::Running(StatusReport::example()),
                None,
                None,
            ),
            Row::of(&found("jobs"), &Answer::Stopped, None, None),
            Row::of(
                &found("web"),
                &Answer::Unreachable("permission denied".into()),
                None,
                None,
            ),
        ];
        assert_eq!(
            render(&rows),
            "\
NAME    STATE                           GEN  READY  RESTARTS  RECYCLED  CPU%   MEM      PID    UPTIME
hawkey  running                         3    1/2    12        0         0.2    14.0MiB  4242   3h12m
api     reloading                       4    1/2    3         3         101.0  1.0GiB   31337  12m5s
batch   running                         3    1/2    12        0         -      -        4242   3h12m
jobs    stopped                         -    -      -         -         -      -        -      -
web     unreachable: permission denied  -    -      -         -         -      -        -      -
"
        );
    }

    #[test]
    fn the_json_list_has_stable_names_and_nulls_where_nothing_runs() {
        let rows = [
            Row::of(
                &found("hawkey"),
                &Answer::Running(StatusReport::example()),
                Some(PathBuf::from("/run/hawkey/hawkey.sock")),
                Some(Usage {
                    cpu_percent: 1.5,
                    rss_bytes: 4096,
                }),
            ),
            Row::of(&found("jobs"), &Answer::Stopped, None, None),
        ];
        let v: serde_json::Value = serde_json::to_value(rows).unwrap();
        let running = v[0].as_object().unwrap();
        let keys: Vec<&str> = running.keys().map(String::as_str).collect();
        let mut expected = vec![
            "name",
            "state",
            "reason",
            "generation",
            "ready",
            "total",
            "restarts",
            "recycles",
            "cpu_percent",
            "rss_bytes",
            "pid",
            "uptime_ms",
            "config",
            "control_socket",
        ];
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(v[0]["state"], "running");
        assert_eq!(v[0]["ready"], 1);
        assert_eq!(v[0]["total"], 2);
        assert_eq!(v[0]["rss_bytes"], 4096);
        assert_eq!(v[0]["control_socket"], "/run/hawkey/hawkey.sock");
        assert_eq!(v[1]["state"], "stopped");
        assert_eq!(v[1]["pid"], serde_json::Value::Null);
        assert_eq!(v[1]["config"], "/etc/hawkey/jobs.yaml");
    }

    #[test]
    fn the_state_comes_from_the_status_line() {
        assert_eq!(
            state_of("2/2 workers ready, generation 1, 0 restarts"),
            "running"
        );
        assert_eq!(
            state_of("1/2 workers ready, generation 1, 0 restarts, reloading"),
            "reloading"
        );
        assert_eq!(
            state_of("2/2 workers ready, generation 1, 0 restarts, rolling back a failed reload"),
            "reloading"
        );
    }
}
