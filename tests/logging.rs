//! `log.level` and `log.format`, and how `auto` picks journald.

mod support;

use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::Duration;

use support::*;

fn config(dir: &TempDir, log: &str) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "listen:\n  - {{name: http, address: '127.0.0.1:{}'}}\nworkers:\n  count: 1\n  app: exec\n  ready: started\n  command: [sleep, '1000']\npidfile: null\nlog: {log}\n",
            free_port()
        ),
    )
}

fn run_and_stop(config: &std::path::Path) -> String {
    let mut hawkey = Hawkey::start(config);
    hawkey.wait_workers(1, "sleep", Duration::from_secs(5));
    hawkey.stop_cleanly();
    hawkey.log_text()
}

#[test]
fn log_level_warn_hides_info_and_debug_shows_it() {
    let dir = TempDir::new("log-level");
    let quiet = run_and_stop(&config(&dir, "{level: warn, format: text}"));
    assert!(
        !quiet.contains(" INFO "),
        "info lines at level warn: {quiet}"
    );
    let loud = run_and_stop(&config(&dir, "{level: debug, format: text}"));
    assert!(
        loud.contains(" DEBUG ") && loud.contains("worker started"),
        "{loud}"
    );
    assert!(
        loud.contains("hawkey_worker=0"),
        "structured fields in text: {loud}"
    );
}

#[test]
fn json_format_writes_one_json_object_per_line() {
    let dir = TempDir::new("log-json");
    let out = run_and_stop(&config(&dir, "{format: json}"));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 3, "{out}");
    for line in lines {
        assert!(
            line.starts_with('{') && line.ends_with('}') && line.contains("\"level\":"),
            "{line}"
        );
    }
    assert!(out.contains("\"hawkey_worker\":0"), "{out}");
}

/// `auto` means journald only when stderr really is the stream
/// `JOURNAL_STREAM` names; here journald itself is absent or present, and
/// each case has its own outcome.
#[test]
fn auto_uses_journald_exactly_when_stderr_is_the_journal_stream() {
    let dir = TempDir::new("log-auto");
    let config = config(&dir, "{format: auto}");
    // stderr is a file; JOURNAL_STREAM names that file's device and inode.
    let stderr_path = dir.join("stderr");
    let file = std::fs::File::create(&stderr_path).unwrap();
    let meta = file.metadata().unwrap();
    let mut cmd = command(&config);
    cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    wait_until(Duration::from_secs(5), "a worker", || {
        children_of(pid)
            .into_iter()
            .find(|p| proc_comm(*p).as_deref() == Some("sleep"))
    });
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = wait_until(Duration::from_secs(10), "exit", || {
        child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0));
    let written = std::fs::read_to_string(&stderr_path).unwrap();
    if std::path::Path::new("/run/systemd/journal/socket").exists() {
        assert!(
            !written.contains("listening on"),
            "went to stderr, not the journal: {written}"
        );
    } else {
        assert!(
            written.contains("journald is unreachable"),
            "journald was not chosen: {written}"
        );
    }

    // The same variable with stderr elsewhere (a pipe): text on stderr.
    let mut cmd = command(&config);
    cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    let mut hawkey = Hawkey::spawn(cmd);
    hawkey.wait_log("listening on", Duration::from_secs(5));
    assert!(!hawkey.log_text().contains("journald"));
    hawkey.stop_cleanly();
}

/// Text logs into a file or pipe carry no colour codes, NO_COLOR or not:
/// colour is for a terminal.
#[test]
fn text_logs_off_a_terminal_have_no_escape_sequences() {
    let dir = TempDir::new("log-colour");
    let config = config(&dir, "{level: debug, format: text}");
    let mut cmd = command(&config);
    cmd.env_remove("NO_COLOR");
    let mut hawkey = Hawkey::spawn(cmd);
    hawkey.wait_workers(1, "sleep", Duration::from_secs(5));
    hawkey.stop_cleanly();
    let text = hawkey.log_text();
    assert!(text.contains("worker started"), "{text}");
    assert!(!text.contains('\u{1b}'), "escape sequences in {text:?}");
}
