//! hawkey as a library: `examples/hello.rs` links it, and the same binary
//! runs as master and as each worker.

mod support;

use support::*;

#[test]
fn an_embedding_program_is_master_and_workers_with_hawkeys_cli() {
    let dir = TempDir::new("library");
    let port = free_port();
    let config = write_config(
        &dir,
        &format!(
            "listen:\n  - {{name: http, address: '127.0.0.1:{port}'}}\nworkers:\n  count: 2\npidfile: null\n"
        ),
    );
    let mut cmd = std::process::Command::new(example("hello"));
    cmd.arg("run")
        .arg("-c")
        .arg(&config)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID");
    let (mut hawkey, _notify, _) = start_ready_with(&dir, cmd);
    let (status, body) = http_get(port, "/").unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("hello from worker "), "{body}");
    for pid in hawkey.workers() {
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(cmdline.starts_with("hello: worker "), "{cmdline:?}");
    }
    hawkey.stop_cleanly();
}

#[test]
fn an_embedding_program_checks_configs_like_hawkey() {
    let out = std::process::Command::new(example("hello"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hawkey "));
}
