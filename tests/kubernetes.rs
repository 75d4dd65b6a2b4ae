//! The container and Kubernetes examples (Containerfile,
//! packaging/container/hawkey.yaml, examples/kubernetes/) hold together:
//! what the image copies exists or is what packaging/build-deb makes, the
//! pod's grace period outlasts hawkey's drain, the probes ask the built-in
//! app for a page it serves, and the ConfigMap's hawkey.yaml is the
//! container's and passes `hawkey check`. No image is built here (no
//! registry is reachable); tests/pid1.rs runs the entrypoint as PID 1.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn deployment() -> Value {
    yaml("examples/kubernetes/deployment.yaml")
}

/// The one container of the Deployment's pod template.
fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("spec.template.spec.containers");
    assert_eq!(containers.len(), 1, "{containers:?}");
    &containers[0]
}

/// The hawkey.yaml the ConfigMap holds.
fn configmap_hawkey_yaml() -> String {
    let configmap = yaml("examples/kubernetes/configmap.yaml");
    assert_eq!(configmap["kind"], "ConfigMap");
    configmap["data"]["hawkey.yaml"]
        .as_str()
        .expect("data.hawkey.yaml")
        .to_string()
}

/// "25s" -> 25 (the config's stop_timeout is whole seconds here).
fn seconds(duration: &str) -> u64 {
    duration
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not whole seconds: {duration:?}"))
}

/// `workers.stop_timeout` of the container config, as `hawkey check` prints it.
fn stop_timeout() -> u64 {
    let (code, out, err) = hawkey_cli(&["check"], &repo("packaging/container/hawkey.yaml"));
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("stop_timeout: "))
        .unwrap_or_else(|| panic!("no stop_timeout in: {out}"));
    seconds(line)
}

#[test]
fn every_file_the_containerfile_copies_is_in_the_tree_or_built_by_build_deb() {
    let text = read("Containerfile");
    let mut copies = 0;
    for line in text.lines().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 3, "COPY SRC DEST: {line}");
        copies += 1;
        let source = words[1];
        if let Some(name) = source.strip_prefix("target/debian/") {
            // packaging/build-deb's default OUTDIR, and its file name.
            let build_deb = read("packaging/build-deb");
            assert!(
                build_deb.contains(r#"${1:-target/debian}"#),
                "build-deb's OUTDIR"
            );
            assert_eq!(name, "hawkey_*.deb", "{line}");
        } else {
            assert!(
                repo(source).is_file(),
                "{line}: {source} is not in the tree"
            );
        }
    }
    assert_eq!(copies, 2, "the .deb and the config: {text}");
    assert!(
        text.contains("COPY packaging/container/hawkey.yaml /etc/hawkey/hawkey.yaml"),
        "{text}"
    );
    assert!(
        text.contains(r#"ENTRYPOINT ["/usr/bin/hawkey", "run", "-c", "/etc/hawkey/hawkey.yaml"]"#),
        "hawkey run is PID 1, on the copied config: {text}"
    );
    assert!(text.lines().any(|l| l == "STOPSIGNAL SIGTERM"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FROM docker.io/library/debian:bookworm-slim"))
    );
}

#[test]
fn the_configmaps_hawkey_yaml_is_the_container_config_and_passes_check() {
    let config = configmap_hawkey_yaml();
    assert_eq!(config, read("packaging/container/hawkey.yaml"));
    let dir = TempDir::new("k8s-check");
    let path = write_config(&dir, &config);
    let (code, out, err) = hawkey_cli(&["check"], &path);
    assert_eq!(code, 0, "{out}{err}");
    for line in ["address: 0.0.0.0:8080", "app: builtin", "format: json"] {
        assert!(out.contains(line), "{line:?} not in: {out}");
    }
    assert!(config.contains("  count: auto\n"), "{config}");
}

#[test]
fn the_grace_period_outlasts_the_prestop_pause_and_the_stop_timeout() {
    let deployment = deployment();
    let grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let pre_stop = &container(&deployment)["lifecycle"]["preStop"]["exec"]["command"];
    assert_eq!(pre_stop[0], "/bin/sleep", "{pre_stop:?}");
    let pause: u64 = pre_stop[1].as_str().unwrap().parse().unwrap();
    let stop = stop_timeout();
    // The margin: the master's own exit after the last worker's SIGKILL.
    assert!(
        grace >= pause + stop + 5,
        "terminationGracePeriodSeconds {grace} < preStop {pause}s + stop_timeout {stop}s + 5s"
    );
}

#[test]
fn the_cpu_limit_is_whole_cpus_and_requested_so_count_auto_uses_all_of_it() {
    let deployment = deployment();
    let resources = &container(&deployment)["resources"];
    let limit = resources["limits"]["cpu"].as_str().expect("limits.cpu");
    assert_eq!(resources["requests"]["cpu"], limit, "{resources:?}");
    let cpus: u32 = limit
        .parse()
        .unwrap_or_else(|_| panic!("whole CPUs: {limit:?}"));
    assert!(cpus >= 1);
}

#[test]
fn both_probes_get_healthz_from_the_builtin_app_on_the_listening_port() {
    let deployment = deployment();
    let c = container(&deployment);
    assert_eq!(c["ports"][0]["name"], "http");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "http", "{probe}");
    }
    // The ConfigMap's config, on a free loopback port instead of 0.0.0.0:8080.
    let dir = TempDir::new("k8s-healthz");
    let port = free_port();
    let config = configmap_hawkey_yaml()
        .replace("0.0.0.0:8080", &format!("127.0.0.1:{port}"))
        .replace(
            "/run/hawkey/hawkey.pid",
            &dir.join("hawkey.pid").display().to_string(),
        );
    let path = write_config(&dir, &config);
    let (mut hawkey, _notify, _) = start_ready(&dir, &path);
    let (code, body) = wait_until(Duration::from_secs(10), "GET /healthz", || {
        http_get(port, "/healthz").ok()
    });
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    hawkey.stop_cleanly();
}
