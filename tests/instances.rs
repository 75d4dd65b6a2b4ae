//! Instances by name and the host-wide `hawkey status`: several masters
//! at once from one configuration directory, each with a runtime
//! directory of its own, found and acted on by name. The real binary, its
//! roots moved into a temp dir (`HAWKEY_CONFIG_DIR`,
//! `HAWKEY_RUNTIME_ROOT`), the built-in app on loopback.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use support::*;

/// A host in a temp dir: `etc/` for the configurations, `run/` for the
/// runtime directories.
struct TestHost {
    dir: TempDir,
}

impl TestHost {
    fn new(tag: &str) -> TestHost {
        let dir = TempDir::new(tag);
        std::fs::create_dir(dir.join("etc")).unwrap();
        std::fs::create_dir(dir.join("run")).unwrap();
        TestHost { dir }
    }

    fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }

    fn run(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// Writes `etc/NAME.yaml`: `count` built-in workers on `port`.
    fn config(&self, name: &str, port: u16, count: usize) -> PathBuf {
        let path = self.etc().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "listen:\n  - {{name: http, address: '127.0.0.1:{port}'}}\nworkers:\n  count: {count}\n  stop_timeout: 10s\n"
            ),
        )
        .unwrap();
        path
    }

    /// `hawkey ARGS` on this host: a plain environment plus its roots.
    fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        plain_env(&mut cmd)
            .env_remove("RUNTIME_DIRECTORY")
            .env("HAWKEY_CONFIG_DIR", self.etc())
            .env("HAWKEY_RUNTIME_ROOT", self.run());
        cmd
    }

    /// Runs `hawkey ARGS` to completion: (code, stdout, stderr).
    fn output(&self, args: &[&str]) -> (i32, String, String) {
        cli_output(&mut self.cli(args))
    }

    /// `hawkey run [NAME]`, ready; its notify socket in a dir of its own.
    fn start(&self, name: Option<&str>) -> Running {
        let notify_dir = TempDir::new("instances-notify");
        let mut args = vec!["run"];
        args.extend(name);
        let (hawkey, _notify, _) = start_ready_with(&notify_dir, self.cli(&args));
        Running {
            hawkey,
            _notify_dir: notify_dir,
        }
    }

    /// `hawkey status --json` on this host: the rows by name.
    fn list(&self) -> Vec<Value> {
        let (code, out, err) = self.output(&["status", "--json"]);
        assert_eq!((code, err.as_str()), (0, ""), "{out}");
        serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// `hawkey status NAME --json`.
    fn detail(&self, name: &str) -> Value {
        let (code, out, err) = self.output(&["status", name, "--json"]);
        assert_eq!((code, err.as_str()), (0, ""), "{out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

struct Running {
    hawkey: Hawkey,
    _notify_dir: TempDir,
}

fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    let found: Vec<&Value> = rows.iter().filter(|r| r["name"] == name).collect();
    assert_eq!(found.len(), 1, "one row for {name}: {rows:?}");
    found[0]
}

/// The files in an instance's runtime directory, but for the workers'
/// notify channels (`hawkey-notify.PID`, the master's own).
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names = entries(dir);
    names.retain(|n| !n.starts_with("hawkey-notify."));
    names
}

fn serves(port: u16) -> bool {
    http_get(port, "/healthz").is_ok_and(|(status, _)| status == 200)
}

/// Three instances (the default one and two by name) and a fourth
/// configuration that is not running.
fn three_running(host: &TestHost) -> (Vec<Running>, [u16; 3]) {
    let ports = [free_port(), free_port(), free_port()];
    host.config("hawkey", ports[0], 2);
    host.config("api", ports[1], 2);
    host.config("jobs", ports[2], 2);
    host.config("idle", free_port(), 1);
    let running = vec![
        host.start(None),
        host.start(Some("api")),
        host.start(Some("jobs")),
    ];
    (running, ports)
}

#[test]
fn status_lists_every_running_instance_with_its_pool_and_memory_and_a_stopped_one() {
    let host = TestHost::new("instances-list");
    let (mut running, _) = three_running(&host);
    let rows = host.list();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hawkey", "api", "idle", "jobs"], "default first");
    for (name, master) in [("hawkey", 0), ("api", 1), ("jobs", 2)] {
        let r = row(&rows, name);
        assert_eq!(r["state"], "running", "{r}");
        assert_eq!((&r["ready"], &r["total"]), (&2.into(), &2.into()), "{r}");
        assert_eq!(r["generation"], 1, "{r}");
        assert_eq!(r["pid"], running[master].hawkey.pid(), "{r}");
        // Master and two workers: several MiB, whatever the build.
        let rss = r["rss_bytes"].as_u64().unwrap();
        assert!(rss > 1 << 20, "{r}");
        assert!(r["cpu_percent"].as_f64().unwrap() >= 0.0, "{r}");
    }
    let idle = row(&rows, "idle");
    assert_eq!(idle["state"], "stopped", "{idle}");
    assert_eq!(idle["pid"], Value::Null);
    assert_eq!(
        idle["config"],
        host.etc().join("idle.yaml").display().to_string()
    );
    // The table says the same: a header and a line per instance.
    let (code, text, err) = host.output(&["status"]);
    assert_eq!((code, err.as_str()), (0, ""), "{text}");
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAME", "STATE", "GEN", "READY", "RESTARTS", "RECYCLED", "CPU%", "MEM", "PID", "UPTIME"
        ]
    );
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(&lines[2][..4], ["api", "running", "1", "2/2"], "{text}");
    assert_eq!(&lines[3][..3], ["idle", "stopped", "-"], "{text}");
    for r in &mut running {
        r.hawkey.stop_cleanly();
    }
}

#[test]
fn an_instance_whose_configuration_was_removed_is_listed_while_it_runs() {
    let host = TestHost::new("instances-orphan");
    let config = host.config("gone", free_port(), 1);
    let mut gone = host.start(Some("gone"));
    std::fs::remove_file(config).unwrap();
    let rows = host.list();
    let r = row(&rows, "gone");
    assert_eq!(r["state"], "running", "{rows:?}");
    assert_eq!(r["config"], Value::Null);
    assert_eq!(
        r["control_socket"],
        host.run()
            .join("hawkey-gone/hawkey.sock")
            .display()
            .to_string()
    );
    gone.hawkey.stop_cleanly();
    let rows = host.list();
    assert!(
        rows.is_empty(),
        "stopped and no config: not an instance: {rows:?}"
    );
}

#[test]
fn status_name_json_shows_cpu_and_rss_of_each_worker_tree_and_the_master() {
    let host = TestHost::new("instances-detail");
    host.config("api", free_port(), 2);
    let mut api = host.start(Some("api"));
    let report = host.detail("api");
    assert_eq!(report["instance"], "api");
    assert_eq!(report["master_pid"], api.hawkey.pid());
    assert!(report["master_rss_bytes"].as_u64().unwrap() > 0, "{report}");
    assert!(report["master_cpu_percent"].as_f64().is_some(), "{report}");
    let workers = report["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{report}");
    let mut sum = report["master_rss_bytes"].as_u64().unwrap();
    for w in workers {
        let rss = w["rss_bytes"].as_u64().unwrap_or_else(|| panic!("{w}"));
        assert!(rss > 0, "{w}");
        assert!(w["cpu_percent"].as_f64().unwrap() >= 0.0, "{w}");
        sum += rss;
    }
    // The whole tree is the master and the workers' trees (nothing else
    // runs under this master).
    assert_eq!(report["rss_bytes"].as_u64().unwrap(), sum, "{report}");
    // The pidfile and control socket are in the instance's own runtime
    // directory.
    assert_eq!(
        files(&host.run().join("hawkey-api")),
        ["hawkey.pid", "hawkey.sock"]
    );
    api.hawkey.stop_cleanly();
}

#[test]
fn reload_and_stop_by_name_act_on_that_instance_only() {
    let host = TestHost::new("instances-act");
    let (mut running, ports) = three_running(&host);
    let (code, out, err) = host.output(&["reload", "--wait", "api"]);
    assert_eq!(code, 0, "{out}{err}");
    let generation = |name: &str| host.detail(name)["generation"].as_u64().unwrap();
    assert_eq!(
        [generation("hawkey"), generation("api"), generation("jobs")],
        [1, 2, 1]
    );
    let (code, out, err) = host.output(&["stop", "api"]);
    assert_eq!(code, 0, "{out}{err}");
    let status = running[1].hawkey.wait_exit(STOP_GUARD);
    assert_eq!(status.code(), Some(0));
    // The others keep serving, from their runtime directories.
    assert!(serves(ports[0]) && serves(ports[2]));
    assert!(!serves(ports[1]), "api stopped");
    for dir in ["hawkey", "hawkey-jobs"] {
        assert_eq!(
            files(&host.run().join(dir)),
            ["hawkey.pid", "hawkey.sock"],
            "{dir}"
        );
    }
    let rows = host.list();
    assert_eq!(row(&rows, "api")["state"], "stopped");
    assert_eq!(row(&rows, "jobs")["state"], "running");
    assert_eq!(row(&rows, "hawkey")["state"], "running");
    let (code, _, err) = host.output(&["status", "api"]);
    assert_eq!(code, 3, "not running: {err}");
    running[0].hawkey.stop_cleanly();
    running[2].hawkey.stop_cleanly();
}

#[test]
fn a_name_with_a_slash_or_dot_dot_is_refused_as_usage_in_one_line() {
    let host = TestHost::new("instances-names");
    for command in ["run", "check", "status", "reload", "stop"] {
        for name in ["../etc/passwd", "a/b", "..", ".", "-x-", "a b"] {
            // After `--`, run and check take a COMMAND, not a NAME.
            let takes_command = matches!(command, "run" | "check");
            if takes_command && name.starts_with('-') {
                continue;
            }
            let args = if takes_command {
                vec![command, name]
            } else {
                vec![command, "--", name]
            };
            let (code, out, err) = host.output(&args);
            assert_eq!((code, out.as_str()), (64, ""), "{command} {name:?}: {err}");
            assert!(
                err.starts_with("hawkey: error: invalid instance name '")
                    && err.ends_with("')\n")
                    && err.lines().count() == 1,
                "{command} {name:?}: {err}"
            );
        }
    }
    // Nothing was looked for outside the configuration directory.
    assert!(entries(&host.run()).is_empty());
}

#[test]
fn a_name_and_c_together_are_refused_as_usage() {
    let host = TestHost::new("instances-both");
    let config = host.config("api", free_port(), 1);
    let config = config.to_str().unwrap();
    for command in ["run", "check", "status", "reload", "stop"] {
        let (code, out, err) = host.output(&[command, "api", "-c", config]);
        assert_eq!((code, out.as_str()), (64, ""), "{command}: {err}");
        assert!(err.contains("name two configurations"), "{command}: {err}");
    }
    // HAWKEY_CONFIG is only the default for -c: a name takes its place.
    let mut cmd = host.cli(&["check", "--quiet", "api"]);
    cmd.env("HAWKEY_CONFIG", "/nonexistent/hawkey.yaml");
    assert_eq!(cli_output(&mut cmd).0, 0);
}

#[test]
fn check_by_name_validates_that_instances_file_and_shows_its_runtime_dir() {
    let host = TestHost::new("instances-check");
    host.config("api", free_port(), 1);
    let (code, out, err) = host.output(&["check", "api"]);
    assert_eq!(code, 0, "{err}");
    let pidfile = host.run().join("hawkey-api/hawkey.pid");
    assert!(
        out.starts_with(&format!(
            "# {}: valid\n",
            host.etc().join("api.yaml").display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("pidfile: {}\n", pidfile.display())),
        "{out}"
    );
    // A named instance's file must exist (only the default one falls back
    // to the built-in configuration).
    let (code, _, err) = host.output(&["check", "missing"]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("missing.yaml"), "{err}");
    assert_eq!(host.output(&["check", "--quiet"]).0, 0, "built-in default");
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn another_user_sees_the_instances_as_unreachable_and_cannot_stop_one() {
    require_root("another_user_sees_the_instances_as_unreachable_and_cannot_stop_one");
    let host = TestHost::new("instances-nobody");
    let port = free_port();
    host.config("api", port, 1);
    let mut api = host.start(Some("api"));
    // An instance whose configuration is gone and whose runtime directory
    // nobody else may look into (as systemd's 0750 ones): still listed.
    let closed_config = host.config("closed", free_port(), 1);
    let mut closed = host.start(Some("closed"));
    std::fs::remove_file(closed_config).unwrap();
    let closed_dir = host.run().join("hawkey-closed");
    std::fs::set_permissions(&closed_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut cmd = as_uid(65534, BIN);
        cmd.args(args);
        plain_env(&mut cmd)
            .env("HAWKEY_CONFIG_DIR", host.etc())
            .env("HAWKEY_RUNTIME_ROOT", host.run());
        cli_output(&mut cmd)
    };
    let (code, out, err) = as_nobody(&["status", "--json"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let r = row(&rows, "api");
    assert_eq!(
        (&r["state"], &r["reason"]),
        (&"unreachable".into(), &"permission denied".into()),
        "{r}"
    );
    assert_eq!(r["pid"], Value::Null);
    let r = row(&rows, "closed");
    assert_eq!(
        (&r["state"], &r["reason"]),
        (&"unreachable".into(), &"permission denied".into()),
        "{r}"
    );
    let (code, _, err) = as_nobody(&["stop", "api"]);
    assert_eq!(code, 77, "{err}");
    let (code, _, err) = as_nobody(&["reload", "api"]);
    assert_eq!(code, 77, "{err}");
    // Still the same master, one generation, serving.
    let report = host.detail("api");
    assert_eq!(report["master_pid"], api.hawkey.pid());
    assert_eq!(report["generation"], 1);
    assert!(serves(port));
    api.hawkey.stop_cleanly();
    closed.hawkey.stop_cleanly();
}

#[test]
fn each_instance_keeps_its_files_in_a_runtime_directory_of_its_own() {
    let host = TestHost::new("instances-dirs");
    let (mut running, _) = three_running(&host);
    assert_eq!(
        entries(&host.run()),
        ["hawkey", "hawkey-api", "hawkey-jobs"]
    );
    for r in &mut running {
        r.hawkey.stop_cleanly();
    }
    for dir in ["hawkey", "hawkey-api", "hawkey-jobs"] {
        let left = entries(&host.run().join(dir));
        assert!(left.is_empty(), "{dir} after a clean stop: {left:?}");
    }
}

#[test]
fn a_master_killed_without_cleaning_up_is_listed_unreachable_with_a_stale_socket() {
    let host = TestHost::new("instances-stale");
    host.config("api", free_port(), 1);
    let mut api = host.start(Some("api"));
    api.hawkey.signal(libc::SIGKILL);
    api.hawkey.wait_exit(STOP_GUARD);
    let rows = host.list();
    let r = row(&rows, "api");
    assert_eq!(
        (&r["state"], &r["reason"]),
        (&"unreachable".into(), &"stale control socket".into()),
        "{r}"
    );
    // Whoever starts it next replaces the stale socket.
    let mut again = host.start(Some("api"));
    assert_eq!(row(&host.list(), "api")["state"], "running");
    again.hawkey.stop_cleanly();
}

#[test]
fn a_master_that_does_not_answer_is_listed_unreachable_and_the_list_goes_on() {
    let host = TestHost::new("instances-stopped-master");
    host.config("api", free_port(), 1);
    host.config("jobs", free_port(), 1);
    let mut api = host.start(Some("api"));
    let mut jobs = host.start(Some("jobs"));
    api.hawkey.signal(libc::SIGSTOP);
    // The list comes back while api's master is still stopped: the CLI gave
    // up on it (its own timeout) instead of waiting for it.
    let rows = host.list();
    assert_eq!(proc_stat(api.hawkey.pid()).map(|s| s.1), Some('T'));
    api.hawkey.signal(libc::SIGCONT);
    let r = row(&rows, "api");
    assert_eq!(
        (&r["state"], &r["reason"]),
        (&"unreachable".into(), &"no answer".into()),
        "{r}"
    );
    assert_eq!(row(&rows, "jobs")["state"], "running");
    api.hawkey.stop_cleanly();
    jobs.hawkey.stop_cleanly();
}
