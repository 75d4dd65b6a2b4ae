//! `hawkey run` as PID 1 of a PID namespace, as the Containerfile's
//! ENTRYPOINT runs it under a container engine: the container config
//! (packaging/container/hawkey.yaml) under `unshare --pid --fork
//! --mount-proc`, watched from the host's /proc (`NSpid:` in
//! /proc/PID/status gives each process's pid in the namespace). An
//! orphan a worker leaves behind is reparented to PID 1 and reaped, no
//! zombie stays; SIGTERM or SIGINT, from the engine (the host) or from
//! inside (`kill 1`), stops every worker gracefully and PID 1 exits 0;
//! every log line on stderr is JSON. Needs root (a PID namespace).

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// Each worker leaves an orphan: a subshell starts `sleep 1` in the
/// background (3 s) and exits at once, before the worker execs the test app.
fn container_config(dir: &TempDir, port: u16) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/container/hawkey.yaml"),
    )
    .unwrap();
    let app = format!(
        "  app: exec\n  command: [sh, -c, '(sleep 3 &); exec python3 {}']\n",
        python_app().display()
    );
    let config = shipped
        .replace("0.0.0.0:8080", &format!("127.0.0.1:{port}"))
        .replace("  count: auto\n", "  count: 2\n")
        .replace("  app: builtin\n", &app)
        .replace(
            "/run/hawkey/hawkey.pid",
            &dir.join("hawkey.pid").display().to_string(),
        );
    assert!(config.contains("format: json"), "{config}");
    assert!(config.contains("  app: exec\n"), "{config}");
    write_config(dir, &config)
}

/// The pid-namespace id of a process (the /proc/PID/ns/pid link).
fn pid_namespace(pid: i32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// Host pids of every process in `namespace`, with state and comm.
fn in_namespace(namespace: &std::path::Path) -> Vec<(i32, char, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid_namespace(pid).as_deref() == Some(namespace)
            && let Some((_, state)) = proc_stat(pid)
        {
            out.push((pid, state, proc_comm(pid).unwrap_or_default()));
        }
    }
    out
}

/// hawkey under `unshare`, its host pid (PID 1 inside), and its namespace.
struct Pid1 {
    hawkey: Hawkey,
    pid: i32,
    namespace: std::path::PathBuf,
    port: u16,
    _dir: TempDir,
    guard: KillOnDrop,
}

/// SIGKILLs PID 1 of a namespace (and so everything in it) if a test
/// fails before stopping it: dropping `Hawkey` kills only `unshare`,
/// whose child would live on, reparented, with its workers. Disarmed
/// (`None`) once that process is seen to exit.
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.filter(|&pid| pid > 1 && alive(pid)) {
            // SAFETY: kill(2) on the pid of a process this test started
            // and has not seen exit, so the pid is still its own.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn start(tag: &str) -> Pid1 {
    require_root(tag);
    let dir = TempDir::new(tag);
    let runtime = private_runtime(&dir, "run");
    start_in(dir, &runtime)
}

/// A runtime directory of mode 0750 in `dir` (what systemd's
/// `RuntimeDirectoryMode=` makes), so the master's notify directory goes
/// in `dir` itself (its parent), as it goes in /run under systemd; the
/// tests' masters never share /run or /run/hawkey.
fn private_runtime(dir: &TempDir, name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let runtime = dir.join(name);
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o750)).unwrap();
    runtime
}

/// [`start`] with the master's runtime directory `runtime`.
fn start_in(dir: TempDir, runtime: &std::path::Path) -> Pid1 {
    let port = free_port();
    let config = container_config(&dir, port);
    let hawkey_bin = hawkey_command(&[]).get_program().to_owned();
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc"])
        .arg(hawkey_bin)
        .args(["run", "-c"])
        .arg(&config);
    plain_env(&mut cmd);
    cmd.env("RUNTIME_DIRECTORY", runtime);
    let hawkey = Hawkey::spawn(cmd);
    let unshare = hawkey.child.id() as i32;
    let pid = wait_until(Duration::from_secs(10), "hawkey under unshare", || {
        children_of(unshare)
            .into_iter()
            .find(|p| proc_comm(*p).as_deref() == Some("hawkey"))
    });
    let guard = KillOnDrop(Some(pid));
    let nspid = proc_status(pid, "NSpid").expect("an NSpid line");
    assert_eq!(
        nspid,
        format!("{pid}\t1"),
        "hawkey is PID 1 in its namespace"
    );
    let namespace = pid_namespace(pid).unwrap();
    assert_ne!(
        Some(&namespace),
        pid_namespace(std::process::id() as i32).as_ref()
    );
    // Both workers ready (their SIGTERM handler installed).
    hawkey.wait_log("all 2 workers ready", Duration::from_secs(30));
    Pid1 {
        hawkey,
        pid,
        namespace,
        port,
        _dir: dir,
        guard,
    }
}

impl Pid1 {
    /// Stops hawkey with `signal` sent by `send`, and checks the stop: exit
    /// 0, every worker stopped by hawkey (exit status 0 logged), JSON logs.
    fn stop_and_check(mut self, send: impl FnOnce(i32)) {
        // The workers: hawkey's children running the app (`hawkey.workers()`
        // would be unshare's children).
        wait_until(Duration::from_secs(10), "2 workers running python3", || {
            let w: Vec<i32> = children_of(self.pid)
                .into_iter()
                .filter(|p| proc_comm(*p).as_deref() == Some("python3"))
                .collect();
            (w.len() == 2).then_some(w)
        });
        send(self.pid);
        let status = self.hawkey.wait_exit(Duration::from_secs(30));
        // unshare exited after its child, PID 1: nothing left to kill.
        self.guard.0 = None;
        assert_eq!(
            status.code(),
            Some(0),
            "unshare passes hawkey's exit on: {status:?}"
        );
        let log = self.hawkey.log.lock().unwrap().clone();
        assert!(!log.is_empty());
        for line in &log {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
            assert!(parsed.is_ok(), "not a JSON line on stderr: {line:?}");
        }
        let text = log.join("\n");
        // Stopped by hawkey (stop_signal, then their own exit 0), not
        // killed by the kernel as PID 1 exits.
        let graceful = log
            .iter()
            .filter(|l| l.contains("exited with status 0"))
            .count();
        assert_eq!(graceful, 2, "both workers stopped gracefully: {text}");
        assert!(text.contains("\"stopped\""), "{text}");
        assert!(
            in_namespace(&self.namespace).is_empty(),
            "processes left in the namespace: {:?}",
            in_namespace(&self.namespace)
        );
    }
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn pid_1_reaps_the_orphans_its_workers_leave_and_no_zombie_remains() {
    let pid1 = start("pid1-orphans");
    // The orphans: `sleep` reparented to PID 1 (hawkey), one per worker.
    let orphans = wait_until(Duration::from_secs(10), "the orphans under PID 1", || {
        let o: Vec<i32> = children_of(pid1.pid)
            .into_iter()
            .filter(|p| proc_comm(*p).as_deref() == Some("sleep"))
            .collect();
        (o.len() == 2).then_some(o)
    });
    // They exit after 3 s; PID 1 reaps them: nothing of theirs is
    // left, and no process in the namespace is a zombie.
    wait_until(Duration::from_secs(10), "the orphans to be reaped", || {
        let procs = in_namespace(&pid1.namespace);
        let left = procs.iter().any(|(p, _, _)| orphans.contains(p));
        let zombies = procs.iter().any(|(_, state, _)| *state == 'Z');
        (!left && !zombies).then_some(())
    });
    assert_eq!(http_get(pid1.port, "/healthz").unwrap().0, 200);
    pid1.stop_and_check(|pid| {
        // SAFETY: kill(2) on a pid this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    });
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn sigterm_from_the_engine_stops_every_worker_and_pid_1_exits_0() {
    start("pid1-sigterm").stop_and_check(|pid| {
        // SAFETY: kill(2) on a pid this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    });
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn sigint_from_the_engine_stops_every_worker_and_pid_1_exits_0() {
    start("pid1-sigint").stop_and_check(|pid| {
        // SAFETY: kill(2) on a pid this test started.
        unsafe { libc::kill(pid, libc::SIGINT) };
    });
}

/// `kill 1` inside the container: PID 1 of a namespace gets no signal
/// its disposition leaves at the default, unless blocked (hawkey's are,
/// read from a signalfd).
#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn sigterm_from_inside_the_namespace_stops_pid_1_as_well() {
    start("pid1-inside").stop_and_check(|pid| {
        let status = Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "--pid",
                "--mount",
                "--",
                "kill",
                "-TERM",
                "1",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "nsenter kill 1: {status:?}");
    });
}

/// A master in a PID namespace shares a directory with a master on the
/// host (both under /run, say): the host master's pid names no process
/// in the namespace's /proc, yet its notify directory is in use, and the
/// PID-1 master must leave it alone (it holds a lock on it).
#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn a_master_in_a_pid_namespace_leaves_the_host_masters_notify_directory_alone() {
    require_root("pid1-shared-run");
    let dir = TempDir::new("pid1-shared-run");
    let host_runtime = private_runtime(&dir, "host");
    let host_config = write_config(&dir, &builtin_yaml(&dir, free_port(), 2, ""));
    let mut cmd = command(&host_config);
    cmd.env("RUNTIME_DIRECTORY", &host_runtime);
    let mut host = Hawkey::spawn(cmd);
    host.wait_log("all 2 workers ready", Duration::from_secs(30));
    let inbox = dir.join(&format!("hawkey-notify.{}", host.pid()));
    let channels = entries(&inbox);
    assert!(
        !channels.is_empty(),
        "the host master's channels in {inbox:?}"
    );
    let ns_runtime = private_runtime(&dir, "ns");
    let ns_dir = TempDir::new("pid1-shared-run-ns");
    let pid1 = start_in(ns_dir, &ns_runtime);
    assert!(
        entries(dir.path()).iter().any(|e| e == "hawkey-notify.1"),
        "PID 1's notify directory beside the host's: {:?}",
        entries(dir.path())
    );
    assert_eq!(
        entries(&inbox),
        channels,
        "the host master's notify directory and channels are kept"
    );
    pid1.stop_and_check(|pid| {
        // SAFETY: kill(2) on a pid this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    });
    host.stop_cleanly();
}
