//! The control socket and the CLI on top of it: `hawkey status [--json]`,
//! `hawkey reload`, `hawkey stop`, who may use them, and where the socket
//! lives. The real binary against a real master in a temp dir.

mod support;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// `hawkey status --json`, parsed.
fn status_json(config: &Path) -> Value {
    let (code, out, err) = hawkey_cli(&["status", "--json"], config);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err, "");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The worker entry of `slot` in a status report (exactly one expected).
fn slot(report: &Value, slot: u64) -> &Value {
    let entries: Vec<&Value> = report["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["slot"] == slot)
        .collect();
    assert_eq!(entries.len(), 1, "{report:#}");
    entries[0]
}

#[test]
fn status_shows_the_master_pid_generation_each_worker_and_the_listener() {
    let dir = TempDir::new("control-status");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, ""));
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let workers = hawkey.workers();
    assert_eq!(workers.len(), 2);
    let (code, out, err) = hawkey_cli(&["status"], &config);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    // master pid P, up Ns, generation 1: <the STATUS= line>
    let header = lines[0]
        .strip_prefix(&format!("master pid {}, up ", hawkey.pid()))
        .unwrap_or_else(|| panic!("{out}"));
    let (uptime, rest) = header.split_once(", ").unwrap();
    assert!(
        uptime.ends_with('s') && uptime[..uptime.len() - 1].parse::<u64>().is_ok(),
        "{out}"
    );
    assert_eq!(
        rest,
        "generation 1: 2/2 workers ready, generation 1, 0 restarts"
    );
    assert_eq!(lines[1], "listeners:");
    assert_eq!(lines[2], format!("  http  127.0.0.1:{port}"));
    assert_eq!(lines[3], "");
    assert_eq!(
        lines[4].split_whitespace().collect::<Vec<_>>(),
        [
            "SLOT",
            "PID",
            "GEN",
            "STATE",
            "UPTIME",
            "RESTARTS",
            "RECYCLED",
            "CPU%",
            "MEM",
            "LAST-EXIT"
        ]
    );
    let rows: Vec<Vec<&str>> = lines[5..]
        .iter()
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "one row per worker: {out}");
    let mut pids = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), 10, "{out}");
        assert_eq!(row[0], i.to_string(), "{out}");
        pids.push(row[1].parse::<i32>().unwrap());
        assert_eq!(
            (row[2], row[3], row[5], row[6], row[9]),
            ("1", "ready", "0", "0", "-")
        );
        assert!(row[8].ends_with("iB"), "a worker's memory: {out}");
    }
    assert!(
        lines[8].starts_with("master: CPU% ") && !lines[8].contains(" -"),
        "the master's own figures: {out}"
    );
    pids.sort();
    assert_eq!(pids, workers, "the real worker pids");
    hawkey.stop_cleanly();
}

#[test]
fn status_json_counts_a_restart_and_names_how_the_last_worker_died() {
    let dir = TempDir::new("control-json");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, ""));
    let (mut hawkey, notify, _) = start_ready(&dir, &config);
    let report = status_json(&config);
    assert_eq!(report["master_pid"], hawkey.pid());
    assert_eq!(report["generation"], 1);
    assert_eq!(
        report["listeners"],
        serde_json::json!([{"name": "http", "address": format!("127.0.0.1:{port}"), "from_systemd": false}])
    );
    let mut pids: Vec<i32> = Vec::new();
    for s in 0..2 {
        let w = slot(&report, s);
        assert_eq!(
            (&w["state"], &w["restarts"], &w["last_exit"]),
            (&Value::from("ready"), &Value::from(0), &Value::Null),
            "{report:#}"
        );
        pids.push(w["pid"].as_i64().unwrap() as i32);
    }
    let mut sorted = pids.clone();
    sorted.sort();
    assert_eq!(sorted, hawkey.workers());

    // SAFETY: kill(2) on hawkey's worker in slot 0.
    assert_eq!(unsafe { libc::kill(pids[0], libc::SIGKILL) }, 0);
    notify.until(
        "STATUS=2/2 workers ready, generation 1, 1 restarts",
        Duration::from_secs(10),
    );
    let report = status_json(&config);
    let killed = slot(&report, 0);
    assert_eq!(killed["restarts"], 1, "{report:#}");
    assert_eq!(killed["last_exit"], "was killed by SIGKILL", "{report:#}");
    assert_eq!(killed["state"], "ready", "{report:#}");
    let replacement = killed["pid"].as_i64().unwrap() as i32;
    assert_ne!(replacement, pids[0]);
    assert!(hawkey.workers().contains(&replacement));
    let untouched = slot(&report, 1);
    assert_eq!(untouched["pid"], pids[1]);
    assert_eq!(
        (&untouched["restarts"], &untouched["last_exit"]),
        (&Value::from(0), &Value::Null)
    );
    assert_eq!(
        report["status"],
        "2/2 workers ready, generation 1, 1 restarts"
    );
    hawkey.stop_cleanly();
}

#[test]
fn status_when_no_master_runs_exits_3_naming_the_socket() {
    let dir = TempDir::new("control-not-running");
    let config = write_config(&dir, &builtin_yaml(&dir, free_port(), 2, ""));
    let (code, out, err) = hawkey_cli(&["status"], &config);
    assert_eq!((code, out.as_str()), (3, ""), "{err}");
    assert_eq!(
        err,
        format!(
            "hawkey: error: hawkey is not running (no control socket at '{}')\n",
            dir.join("hawkey.sock").display()
        )
    );
}

#[test]
fn status_with_a_socket_file_nobody_listens_on_exits_3() {
    let dir = TempDir::new("control-stale");
    let config = write_config(&dir, &builtin_yaml(&dir, free_port(), 2, ""));
    // A master that died without cleaning up leaves its socket file.
    drop(std::os::unix::net::UnixListener::bind(dir.join("hawkey.sock")).unwrap());
    assert!(dir.join("hawkey.sock").exists());
    let (code, _, err) = hawkey_cli(&["status"], &config);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        format!(
            "hawkey: error: hawkey is not running (no control socket at '{}')\n",
            dir.join("hawkey.sock").display()
        )
    );
}

#[test]
fn stop_returns_once_the_master_has_exited_0_and_removed_its_files() {
    let dir = TempDir::new("control-stop");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, ""));
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let (pidfile, socket) = (dir.join("hawkey.pid"), dir.join("hawkey.sock"));
    assert!(pidfile.exists() && socket.exists());
    let workers = hawkey.workers();
    let (code, out, err) = hawkey_cli(&["stop"], &config);
    let exited_at_return = hawkey.child.try_wait().unwrap();
    assert_eq!((code, out.as_str(), err.as_str()), (0, "stopped\n", ""));
    let status = match exited_at_return {
        Some(status) => status,
        // A hang guard: the master replies as its last act, then returns.
        None => hawkey.wait_exit(Duration::from_secs(10)),
    };
    eprintln!(
        "hawkey stop: master exited {} the CLI returned",
        if exited_at_return.is_some() {
            "before"
        } else {
            "just after"
        }
    );
    assert_eq!(status.code(), Some(0));
    assert!(!pidfile.exists(), "pidfile removed");
    assert!(!socket.exists(), "control socket removed");
    for pid in workers {
        assert!(!alive(pid), "worker {pid} stopped");
    }
    assert!(
        hawkey
            .log_text()
            .contains("stop requested over the control socket")
    );
}

#[test]
fn reload_without_wait_answers_at_once_and_the_reload_then_finishes() {
    let dir = TempDir::new("control-reload");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, ""));
    let (mut hawkey, notify, _) = start_ready(&dir, &config);
    // The new generation's workers take a second to be ready, so the
    // reload outlasts the command by far.
    std::fs::write(
        &config,
        builtin_yaml(
            &dir,
            port,
            2,
            &format!(
                "  app: exec\n  ready: notify\n  command: [sh, -c, 'sleep 1; exec python3 \"$0\"', '{}']\n",
                python_app().display()
            ),
        ),
    )
    .unwrap();
    let t0 = Instant::now();
    let (code, out, err) = hawkey_cli(&["reload"], &config);
    let took = t0.elapsed();
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "reload started\n", "")
    );
    eprintln!("hawkey reload (no --wait) returned in {took:?}");
    // The answer came while the reload runs (which takes a second at
    // least): what "at once" means, judged by order, not by a time.
    let during = status_json(&config);
    assert_eq!(during["generation"], 2);
    assert!(
        during["status"].as_str().unwrap().ends_with(", reloading"),
        "{during:#}"
    );
    let messages = notify.until("READY=1", Duration::from_secs(30));
    assert!(messages[0].starts_with("RELOADING=1\n"), "{messages:?}");
    // Replaced workers are listed while they drain: wait for them to go.
    let after = wait_until(
        Duration::from_secs(10),
        "the old generation to finish draining",
        || {
            let report = status_json(&config);
            (report["workers"].as_array().unwrap().len() == 2).then_some(report)
        },
    );
    assert_eq!(
        after["status"],
        "2/2 workers ready, generation 2, 0 restarts"
    );
    for s in 0..2 {
        let w = slot(&after, s);
        assert_eq!(
            (&w["generation"], &w["state"]),
            (&Value::from(2), &Value::from("ready"))
        );
    }
    assert_eq!(after["workers"].as_array().unwrap().len(), 2, "{after:#}");
    let (_, body) = http_get(port, "/").unwrap();
    assert!(body.starts_with("python worker "), "{body}");
    assert!(body.contains(" generation 2 "), "{body}");
    hawkey.stop_cleanly();
}

/// `hawkey status -c CONFIG` run as uid and gid 65534 (nobody).
fn status_as_nobody(config: &Path) -> (i32, String, String) {
    cli_output(cli_command(&["status"], config).uid(65534).gid(65534))
}

/// The temp dir and config readable by anyone, so only the socket decides.
fn readable_by_all(dir: &TempDir, config: &Path) {
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(config, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn a_user_neither_root_nor_the_owner_cannot_open_the_socket_and_gets_77() {
    require_root("a_user_neither_root_nor_the_owner_cannot_open_the_socket_and_gets_77");
    let dir = TempDir::new("control-nobody");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, ""));
    readable_by_all(&dir, &config);
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let socket = dir.join("hawkey.sock");
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(meta.uid(), 0);
    let (code, out, err) = status_as_nobody(&config);
    assert_eq!((code, out.as_str()), (77, ""), "{err}");
    assert_eq!(
        err,
        format!(
            "hawkey: error: permission denied on the control socket '{}': run this as root or as the user hawkey runs as\n",
            socket.display()
        )
    );
    // Refused, the master carries on.
    assert_eq!(hawkey_cli(&["status"], &config).0, 0);
    hawkey.stop_cleanly();
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn the_master_refuses_a_peer_neither_root_nor_its_owner_even_when_the_file_mode_lets_it_connect() {
    require_root(
        "the_master_refuses_a_peer_neither_root_nor_its_owner_even_when_the_file_mode_lets_it_connect",
    );
    let dir = TempDir::new("control-peercred");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, ""));
    readable_by_all(&dir, &config);
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    // The file mode is one guard; the peer's credentials are the other.
    let socket = dir.join("hawkey.sock");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, out, err) = status_as_nobody(&config);
    assert_eq!((code, out.as_str()), (77, ""), "{err}");
    assert_eq!(
        err,
        "hawkey: error: permission denied: uid 65534 may not control this hawkey (owner uid 0)\n"
    );
    assert_eq!(hawkey_cli(&["status"], &config).0, 0);
    hawkey.stop_cleanly();
}

#[test]
fn the_control_socket_sits_beside_the_pidfile_named_like_it_with_sock() {
    let dir = TempDir::new("control-where");
    let port = free_port();
    let run: PathBuf = dir.join("run");
    let config = write_config(
        &dir,
        &format!(
            "listen:\n  - {{name: http, address: '127.0.0.1:{port}'}}\nworkers:\n  count: 1\npidfile: {}\n",
            run.join("web.pid").display()
        ),
    );
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let mut in_run: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    in_run.sort();
    assert_eq!(in_run, ["web.pid", "web.sock"]);
    let meta = std::fs::symlink_metadata(run.join("web.sock")).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    let report = status_json(&config);
    assert_eq!(report["master_pid"], hawkey.pid());
    hawkey.stop_cleanly();
    assert_eq!(std::fs::read_dir(&run).unwrap().count(), 0, "both removed");
}

#[test]
fn with_control_socket_null_no_socket_exists_and_status_exits_64() {
    let dir = TempDir::new("control-null");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, "control_socket: null\n"));
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    // Only the pidfile, the config and the test's own notify socket.
    assert_eq!(
        entries(dir.path()),
        ["hawkey.pid", "hawkey.yaml", "notify.sock"]
    );
    let (code, out, err) = hawkey_cli(&["status"], &config);
    assert_eq!((code, out.as_str()), (64, ""), "{err}");
    assert_eq!(
        err,
        "hawkey: error: the configuration disables the control socket (control_socket: null)\n"
    );
    // Signals still work without it.
    hawkey.stop_cleanly();
}

#[test]
fn status_keeps_each_workers_own_status_line() {
    let dir = TempDir::new("control-worker-status");
    let config = write_config(
        &dir,
        &format!(
            "listen:\n  - {{name: http, address: '127.0.0.1:{}'}}\nworkers:\n  count: 2\n  app: exec\n  ready: notify\n  command: [python3, '{}']\npidfile: {}\n",
            free_port(),
            python_app().display(),
            dir.join("hawkey.pid").display()
        ),
    );
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let (code, out, err) = hawkey_cli(&["status", "--json"], &config);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    for worker in report["workers"].as_array().unwrap() {
        assert_eq!(worker["status"], "accepting on fd 3", "{out}");
    }
    let (_, text, _) = hawkey_cli(&["status"], &config);
    assert!(
        text.contains("worker status:\n  0  accepting on fd 3\n  1  accepting on fd 3\n"),
        "{text}"
    );
    hawkey.stop_cleanly();
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn root_believes_a_master_of_another_uid_that_owns_the_pidfile_and_runs_at_its_pid() {
    // As under systemd with User=: the master runs as its own user, root
    // asks. The CLI now checks the server's peer credentials; the owner of
    // the pidfile, at the pid it names, is believed.
    require_root("root_believes_a_master_of_another_uid_that_owns_the_pidfile_and_runs_at_its_pid");
    let dir = TempDir::new("control-other-uid");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 1, ""));
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&config, Some(65534), Some(65534)).unwrap();
    let mut cmd = as_uid(65534, BIN);
    cmd.args(["run", "-c"]).arg(&config);
    plain_env(&mut cmd);
    let mut hawkey = Hawkey::spawn(cmd);
    let pidfile = dir.join("hawkey.pid");
    let whole = format!("{}\n", hawkey.pid());
    wait_until(READY_GUARD, "the pidfile to name the master", || {
        assert!(
            hawkey.child.try_wait().unwrap().is_none(),
            "{}",
            hawkey.log_text()
        );
        (std::fs::read_to_string(&pidfile).ok()? == whole).then_some(())
    });
    assert_eq!(std::fs::metadata(&pidfile).unwrap().uid(), 65534);
    let (code, out, err) = hawkey_cli(&["status", "--json"], &config);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["master_pid"], hawkey.pid());
    let (code, out, err) = hawkey_cli(&["stop"], &config);
    assert_eq!((code, out.as_str()), (0, "stopped\n"), "{err}");
    assert_eq!(hawkey.wait_exit(STOP_GUARD).code(), Some(0));
}
