//! Rolling reload (goal G5, docs/goals.md): under load, through `hawkey reload
//! --wait` and SIGHUP, with the real binary and a real notify socket.
//! The 50-reload runs are the long tier (`#[ignore = "long tier: ..."]`,
//! run by tests/run.sh); `cargo test` runs the same with 5 reloads.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::*;

const LIMIT: Duration = Duration::from_secs(120);

/// G5: `reloads` rolling reloads under load.
fn reloads_under_load(reloads: u32, config: &Path, dir: &TempDir, port: u16, path: &str) {
    let (mut hawkey, notify, _) = start_ready(dir, config);
    let load = Load::start(port, 4, path, LIMIT);
    let t0 = Instant::now();
    let mut generations = BTreeSet::new();
    for i in 0..reloads {
        let (code, out, err) = hawkey_cli(&["reload", "--wait"], config);
        assert_eq!(code, 0, "reload {i}: {out}{err}");
        let generation = 2 + i;
        assert_eq!(
            out.trim(),
            format!("reload finished: generation {generation}")
        );
        let messages = reload_messages(&notify, 2);
        assert!(
            messages[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{messages:?}"
        );
        generations.insert(generation);
    }
    let took = t0.elapsed();
    let counts = load.finish();
    eprintln!("{reloads} reloads in {took:?} under load: {counts:?}");
    assert_eq!(counts.connect_errors, 0, "{counts:?}");
    assert_eq!(counts.failed, 0, "{counts:?}");
    // The load ran: more than 2 requests a reload (100 over 50).
    assert!(
        counts.ok > 2 * u64::from(reloads),
        "the load ran: {counts:?}"
    );
    // The workers now are the last generation.
    let (_, body) = http_get(port, "/").unwrap();
    assert!(
        body.contains(&format!("generation {}", 1 + reloads)),
        "{body}"
    );
    hawkey.stop_cleanly();
}

fn builtin_app(dir: &TempDir, port: u16) -> PathBuf {
    write_config(dir, &builtin_yaml(dir, port, 2, ""))
}

fn exec_app(dir: &TempDir, port: u16) -> PathBuf {
    write_config(
        dir,
        &builtin_yaml(
            dir,
            port,
            2,
            &format!(
                "  app: exec\n  ready: notify\n  command: [python3, '{}']\n",
                python_app().display()
            ),
        ),
    )
}

/// The fast tier's share of G5: the same run, 5 reloads.
#[test]
fn five_reloads_of_the_builtin_app_under_load_fail_no_request() {
    let dir = TempDir::new("reload-builtin-5");
    let port = free_port();
    reloads_under_load(5, &builtin_app(&dir, port), &dir, port, "/delay/5");
}

#[test]
fn five_reloads_of_an_exec_app_under_load_fail_no_request() {
    let dir = TempDir::new("reload-exec-5");
    let port = free_port();
    reloads_under_load(5, &exec_app(&dir, port), &dir, port, "/delay/5");
}

#[test]
#[ignore = "long tier: tests/run.sh runs it (cargo test -- --ignored)"]
fn fifty_reloads_of_the_builtin_app_under_load_fail_no_request() {
    let dir = TempDir::new("reload-builtin");
    let port = free_port();
    reloads_under_load(50, &builtin_app(&dir, port), &dir, port, "/delay/5");
}

#[test]
#[ignore = "long tier: tests/run.sh runs it (cargo test -- --ignored)"]
fn fifty_reloads_of_an_exec_app_under_load_fail_no_request() {
    let dir = TempDir::new("reload-exec");
    let port = free_port();
    reloads_under_load(50, &exec_app(&dir, port), &dir, port, "/delay/5");
}

#[test]
fn an_invalid_config_fails_the_reload_cleanly_and_the_old_one_keeps_serving() {
    let dir = TempDir::new("reload-invalid");
    let port = free_port();
    let good = builtin_yaml(&dir, port, 2, "");
    let config = write_config(&dir, &good);
    let (mut hawkey, notify, _) = start_ready(&dir, &config);
    let before = hawkey.workers();
    let load = Load::start(port, 2, "/healthz", LIMIT);
    std::fs::write(&config, good.replace("count: 2", "count: lots")).unwrap();
    let (code, out, err) = hawkey_cli(&["reload", "--wait"], &config);
    assert_eq!(code, 78, "{out}{err}");
    assert_eq!(
        err.trim(),
        format!(
            "{}:4:10: workers.count: invalid count 'lots' (auto, or 1 to 1024)",
            config.display()
        )
    );
    // Shown in STATUS=, and nothing was touched.
    let status = notify.until("last reload failed", Duration::from_secs(5));
    assert!(
        !status.iter().any(|m| m.contains("RELOADING=1")),
        "{status:?}"
    );
    assert_eq!(hawkey.workers(), before);
    // SIGHUP with the same bad file: same outcome, logged.
    hawkey.signal(libc::SIGHUP);
    // The second such line: the first came from the control socket's reload.
    wait_until(Duration::from_secs(5), "the SIGHUP reload to fail", || {
        (hawkey.count_log("reload failed, the running workers are unchanged") >= 2).then_some(())
    });
    // A SIGHUP is bracketed RELOADING=1 ... READY=1 even so (what
    // Type=notify-reload waits for; tests/notify.rs): past it, READY=1 is
    // the next reload's.
    let bracket = notify.until("READY=1", Duration::from_secs(5));
    assert!(bracket[0].starts_with("RELOADING=1\n"), "{bracket:?}");
    assert_eq!(hawkey.workers(), before);
    // Fixed: the next reload works and clears the error.
    std::fs::write(&config, &good).unwrap();
    let (code, out, err) = hawkey_cli(&["reload", "--wait"], &config);
    assert_eq!(
        (code, out.trim()),
        (0, "reload finished: generation 2"),
        "{err}"
    );
    let after = reload_messages(&notify, 2);
    assert!(
        !after.last().unwrap().contains("last reload failed"),
        "{after:?}"
    );
    let counts = load.finish();
    assert_eq!((counts.connect_errors, counts.failed), (0, 0), "{counts:?}");
    hawkey.stop_cleanly();
}

#[test]
fn a_new_generation_that_cannot_start_is_rolled_back_and_the_old_one_keeps_serving() {
    let dir = TempDir::new("reload-rollback");
    let port = free_port();
    let good = builtin_yaml(
        &dir,
        port,
        2,
        &format!(
            "  app: exec\n  ready: notify\n  ready_timeout: 5s\n  command: [python3, '{}']\n",
            python_app().display()
        ),
    );
    let config = write_config(&dir, &good);
    let (mut hawkey, notify, _) = start_ready(&dir, &config);
    let before = hawkey.workers();
    let load = Load::start(port, 2, "/", LIMIT);
    // The new generation's program exits at once: valid config, broken app.
    let broken = good.replace(
        &format!("[python3, '{}']", python_app().display()),
        "[sh, -c, 'exit 7']",
    );
    std::fs::write(&config, broken).unwrap();
    let (code, _, err) = hawkey_cli(&["reload", "--wait"], &config);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("reload failed and was rolled back: worker 0 (pid")
            && err.contains("of generation 2 exited with status 7"),
        "{err}"
    );
    reload_messages(&notify, 2);
    // The old generation never stopped serving: same workers, generation 1.
    assert_eq!(hawkey.workers(), before);
    let (_, body) = http_get(port, "/").unwrap();
    assert!(body.contains("generation 1"), "{body}");
    let counts = load.finish();
    assert_eq!((counts.connect_errors, counts.failed), (0, 0), "{counts:?}");
    hawkey.stop_cleanly();
}

#[test]
fn a_reload_applies_the_new_count_command_and_environment() {
    let dir = TempDir::new("reload-change");
    let port = free_port();
    let exec = |count: usize, version: &str| {
        builtin_yaml(
            &dir,
            port,
            count,
            &format!(
                "  app: exec\n  ready: notify\n  command: [python3, '{}']\n  env: {{APP_VERSION: '{version}'}}\n",
                python_app().display()
            ),
        )
    };
    let config = write_config(&dir, &exec(2, "v1"));
    let (mut hawkey, notify, _) = start_ready(&dir, &config);
    std::fs::write(&config, exec(3, "v2")).unwrap();
    hawkey.signal(libc::SIGHUP);
    let messages = reload_messages(&notify, 2);
    assert!(
        messages
            .last()
            .unwrap()
            .contains("STATUS=3/3 workers ready, generation 2"),
        "{messages:?}"
    );
    let workers = wait_until(Duration::from_secs(10), "3 workers of generation 2", || {
        let w: Vec<i32> = hawkey
            .workers()
            .into_iter()
            .filter(|p| alive(*p) && env_of(*p, "HAWKEY_GENERATION").as_deref() == Some("2"))
            .collect();
        (w.len() == 3 && hawkey.workers().len() == 3).then_some(w)
    });
    for pid in &workers {
        assert_eq!(env_of(*pid, "APP_VERSION").as_deref(), Some("v2"));
    }
    let (_, body) = http_get(port, "/").unwrap();
    assert!(body.ends_with("v2\n"), "{body}");
    // And down to one.
    std::fs::write(&config, exec(1, "v3")).unwrap();
    let (code, out, err) = hawkey_cli(&["reload", "--wait"], &config);
    assert_eq!(code, 0, "{out}{err}");
    let one = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(Duration::from_secs(10), "one worker left", || {
            (hawkey.workers().len() == 1).then_some(())
        })
    }));
    assert!(
        one.is_ok(),
        "workers {:?}; log:\n{}",
        hawkey.workers(),
        hawkey.log_text()
    );
    hawkey.stop_cleanly();
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn a_reload_binds_added_listeners_and_closes_removed_ones() {
    let dir = TempDir::new("reload-listeners");
    let (a, b) = (free_port(), free_port());
    let sock: PathBuf = dir.join("extra.sock");
    let yaml = |listen: &str| {
        format!(
            "listen:\n{listen}workers:\n  count: 2\n  app: exec\n  ready: started\n  command: [sleep, '1000']\npidfile: {}\n",
            dir.join("hawkey.pid").display()
        )
    };
    let only_a = yaml(&format!("  - {{name: a, address: '127.0.0.1:{a}'}}\n"));
    let config = write_config(&dir, &only_a);
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    assert!(listening(a) && !listening(b));
    let both = yaml(&format!(
        "  - {{name: b, address: '127.0.0.1:{b}'}}\n  - {{name: a, address: '127.0.0.1:{a}'}}\n  - {{name: x, address: 'unix:{}'}}\n",
        sock.display()
    ));
    std::fs::write(&config, both).unwrap();
    let (code, out, err) = hawkey_cli(&["reload", "--wait"], &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(listening(a) && listening(b) && sock.exists());
    let workers = hawkey.wait_workers(2, "sleep", Duration::from_secs(10));
    for pid in &workers {
        assert_eq!(env_of(*pid, "LISTEN_FDNAMES").as_deref(), Some("b:a:x"));
        assert_eq!(
            fd_numbers(*pid).into_iter().collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5]
        );
    }
    // Back to only a: b is closed and the unix socket file removed once
    // no generation uses them.
    std::fs::write(&config, &only_a).unwrap();
    let (code, out, err) = hawkey_cli(&["reload", "--wait"], &config);
    assert_eq!(code, 0, "{out}{err}");
    wait_until(
        Duration::from_secs(15),
        "b closed and the unix socket gone",
        || (!listening(b) && !sock.exists()).then_some(()),
    );
    assert!(listening(a));
    hawkey.stop_cleanly();
}

#[test]
fn a_second_reload_while_one_runs_is_refused_with_75() {
    let dir = TempDir::new("reload-busy");
    let port = free_port();
    // Workers that take 1s to be ready make the first reload last.
    let yaml = builtin_yaml(
        &dir,
        port,
        1,
        "  app: exec\n  ready: notify\n  command: [sh, -c, 'sleep 1; exec python3 -c \"import os,socket; a=os.environ[\\\"NOTIFY_SOCKET\\\"]; s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.connect(a); s.send(b\\\"READY=1\\\"); import time; time.sleep(1000)\"']\n",
    );
    let config = write_config(&dir, &yaml);
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let first = std::thread::spawn({
        let config = config.clone();
        move || hawkey_cli(&["reload", "--wait"], &config)
    });
    hawkey.wait_log("reloading: generation 1 -> 2", Duration::from_secs(5));
    let (code, _, err) = hawkey_cli(&["reload", "--wait"], &config);
    assert_eq!(code, 75, "{err}");
    assert!(err.contains("a reload is already in progress"), "{err}");
    let (code, out, _) = first.join().unwrap();
    assert_eq!((code, out.trim()), (0, "reload finished: generation 2"));
    hawkey.stop_cleanly();
}

/// A worker replaced by a reload is stopped the way its own generation
/// says, not the new one: an app that drains on SIGTERM is not sent the
/// new configuration's SIGUSR1 (which would end it at once).
#[test]
fn replaced_workers_get_their_own_generations_stop_signal() {
    let dir = TempDir::new("reload-stop-signal");
    let port = free_port();
    let log = dir.join("signals.log");
    // Records the signal it is stopped with, then exits; ready once its
    // handlers are in place.
    let app = format!(
        "import os,signal,sys,time\ndef bye(n, _):\n    open('{}', 'a').write(f'{{os.environ[\"HAWKEY_GENERATION\"]}} {{signal.Signals(n).name}} {{os.environ[\"HAWKEY_STOP_SIGNAL\"]}}\\n')\n    sys.exit(0)\nfor s in (signal.SIGTERM, signal.SIGUSR1):\n    signal.signal(s, bye)\nimport socket\na = os.environ['NOTIFY_SOCKET']\nn = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\nn.connect('\\0' + a[1:] if a[0] == '@' else a)\nn.send(b'READY=1')\nwhile True:\n    time.sleep(1)\n",
        log.display()
    );
    std::fs::write(dir.join("app.py"), app).unwrap();
    let yaml = |signal: &str| {
        format!(
            "listen:\n  - {{name: http, address: '127.0.0.1:{port}'}}\nworkers:\n  count: 1\n  app: exec\n  ready: notify\n  command: [python3, '{}']\n  stop_signal: {signal}\n  stop_timeout: 10s\npidfile: null\ncontrol_socket: {}\n",
            dir.join("app.py").display(),
            dir.join("hawkey.sock").display()
        )
    };
    let config = write_config(&dir, &yaml("SIGTERM"));
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    std::fs::write(&config, yaml("SIGUSR1")).unwrap();
    let (code, out, err) = hawkey_cli(&["reload", "--wait"], &config);
    assert_eq!(code, 0, "{out}{err}");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while read().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the replaced worker did not record its stop: {}",
            hawkey.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read(), "1 SIGTERM SIGTERM\n");
    hawkey.stop_cleanly();
    assert_eq!(read(), "1 SIGTERM SIGTERM\n2 SIGUSR1 SIGUSR1\n");
}

/// The most workers seen at once while `hawkey reload --wait` ran (by
/// the master's children, sampled), and the command's outcome.
fn peak_during_reload(hawkey: &Hawkey, config: &Path) -> (usize, i32, String) {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reload = scope.spawn(|| {
            let (code, out, err) = hawkey_cli(&["reload", "--wait"], config);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            (code, format!("{out}{err}"))
        });
        let mut peak = 0;
        let deadline = Instant::now() + LIMIT;
        while !done.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
            peak = peak.max(hawkey.workers().len());
            std::thread::sleep(Duration::from_millis(20));
        }
        let (code, out) = reload.join().unwrap();
        (peak, code, out)
    })
}

#[test]
fn a_surge_replaces_that_many_at_once_and_the_default_one_at_a_time() {
    let dir = TempDir::new("reload-surge");
    let port = free_port();
    // New workers take a second to be ready: long enough to see how many
    // run beside the old ones.
    let yaml = |surge: &str| {
        builtin_yaml(
            &dir,
            port,
            4,
            &format!(
                "  app: exec\n  ready: notify\n  command: [sh, -c, 'sleep 1; exec python3 \"$0\"', '{}']\n{surge}",
                python_app().display()
            ),
        )
    };
    let config = write_config(&dir, &yaml(""));
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let (peak, code, out) = peak_during_reload(&hawkey, &config);
    assert_eq!(code, 0, "{out}");
    // One new worker starting beside the 4 old ones, plus, for a moment,
    // the old one it replaced still draining.
    assert!((5..=6).contains(&peak), "{peak} workers at once");
    std::fs::write(&config, yaml("reload:\n  surge: 100%\n")).unwrap();
    // The last worker replaced may still be draining: counted from 4.
    wait_until(STOP_GUARD, "the replaced workers gone", || {
        (hawkey.workers().len() == 4).then_some(())
    });
    let (peak, code, out) = peak_during_reload(&hawkey, &config);
    assert_eq!(code, 0, "{out}");
    assert_eq!(peak, 8, "the whole new generation beside the old one");
    let (code, out, err) = hawkey_cli(&["status"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("4/4 workers ready, generation 3"), "{out}");
    hawkey.stop_cleanly();
}
