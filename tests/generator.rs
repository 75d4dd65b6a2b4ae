//! packaging/hawkey-systemd-generator, the systemd generator that makes
//! hawkey.service and hawkey@.service `Type=notify-reload` on systemd 253
//! and later: what it writes for each version a `systemctl --version`
//! reports. It runs as PID 1's child would not: in a PID namespace of its
//! own (`unshare --pid --fork --mount-proc`), where PID 1 is not systemd,
//! so it asks the `systemctl` first on PATH, a fake here. The real thing,
//! on systemd 252 and 257, is in tests/system/run.sh. Needs root (a PID
//! namespace).

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

const GENERATOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/hawkey-systemd-generator"
);

/// Runs the generator with a `systemctl` printing `version_line`; the
/// files it wrote under its output directory, with their text.
fn generate(tag: &str, version_line: &str) -> Vec<(String, String)> {
    require_root(tag);
    let dir = TempDir::new(tag);
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = bin.join("systemctl");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho '{version_line}'\necho +PAM +AUDIT\n"),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    let status = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", GENERATOR])
        .args([&out, &out, &out])
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .status()
        .unwrap();
    assert!(
        status.success(),
        "a generator never fails the boot: {status:?}"
    );
    let mut files = Vec::new();
    collect(&out, &out, &mut files);
    files.sort();
    files
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let name = path.strip_prefix(root).unwrap().display().to_string();
            files.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

fn service_section(text: &str) -> Vec<&str> {
    text.lines().skip_while(|l| *l != "[Service]").collect()
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn on_systemd_257_both_units_get_notify_reload_and_a_check_as_execreload() {
    let files = generate("generator-257", "systemd 257 (257.13-1~deb13u1)");
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "hawkey.service.d/50-hawkey-notify-reload.conf",
            "hawkey@.service.d/50-hawkey-notify-reload.conf"
        ]
    );
    assert_eq!(
        service_section(&files[0].1),
        [
            "[Service]",
            "Type=notify-reload",
            "ExecReload=",
            "ExecReload=/usr/bin/hawkey check --quiet"
        ]
    );
    assert_eq!(
        service_section(&files[1].1),
        [
            "[Service]",
            "Type=notify-reload",
            "ExecReload=",
            "ExecReload=/usr/bin/hawkey check --quiet %i"
        ]
    );
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn on_systemd_253_the_first_with_notify_reload_the_dropins_are_written() {
    assert_eq!(generate("generator-253", "systemd 253 (253.1)").len(), 2);
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn on_systemd_252_nothing_is_written_and_type_notify_stays() {
    assert_eq!(
        generate("generator-252", "systemd 252 (252.39-1~deb12u2)"),
        []
    );
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn a_version_it_cannot_read_writes_nothing() {
    assert_eq!(generate("generator-garbage", "not systemd at all"), []);
}
