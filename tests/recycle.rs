//! Recycling without capacity loss (`workers.recycle`, issue #10 item 3,
//! G24 in docs/goals.md): a worker past its memory limit or its age is replaced
//! as a reload replaces it, under load, with no request lost and never
//! fewer than N workers ready.
//!
//! The leaky app is `tests/fixtures/leaky.py`: it keeps `LEAK_KIB` of
//! memory per request and drains keep-alive connections on SIGTERM
//! (`Connection: close` on the next response, idle ones closed after a
//! second). Load is both kinds at once: connection-per-request threads
//! ([`Load`]) and a Python `http.client` keep-alive client that does not
//! retry. Readiness is sampled twice over: `hawkey status --json` (a
//! slot's own entry in state `ready`) and every `STATUS=` line the master
//! sends to a fake notify socket.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Each test's own hang guard: every one takes well under it.
const LIMIT: Duration = Duration::from_secs(40);

/// A keep-alive client that never retries: one `HTTPConnection`, reused
/// (it reconnects only after a response said `Connection: close`). It
/// prints `started` after its first answer, then, once `STOP` exists or
/// `LIMIT` seconds have passed, `{"ok": N, "failed": N, "closes": N,
/// "errors": [...]}`.
const CLIENT: &str = r#"
import http.client, json, os, sys, time
port, stop, limit = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
ok = failed = closes = 0
errors = []
started = time.monotonic()
while not os.path.exists(stop) and time.monotonic() - started < limit:
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        if response.status == 200:
            ok += 1
            if ok == 1:
                print("started", flush=True)
        else:
            failed += 1
            errors.append("status %d" % response.status)
        if response.will_close:
            closes += 1
    except Exception as error:
        failed += 1
        errors.append(repr(error))
        conn.close()
print(json.dumps({"ok": ok, "failed": failed, "closes": closes, "errors": errors[:10]}))
"#;

/// What the keep-alive client saw.
#[derive(Debug)]
struct KeepAliveCounts {
    ok: u64,
    failed: u64,
    /// Responses with `Connection: close`: the drains it went through.
    closes: u64,
    errors: Vec<String>,
}

/// The keep-alive client, stopped by a file in the test's directory.
struct KeepAlive {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stop: PathBuf,
}

impl KeepAlive {
    fn start(dir: &TempDir, port: u16) -> KeepAlive {
        let script = write_file(dir, "client.py", CLIENT);
        let stop = dir.join("client.stop");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(&stop)
            .arg(LIMIT.as_secs().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "started\n", "the keep-alive client did not start");
        KeepAlive {
            child,
            stdout,
            stop,
        }
    }

    fn finish(mut self) -> KeepAliveCounts {
        std::fs::write(&self.stop, "").unwrap();
        let mut text = String::new();
        self.stdout.read_to_string(&mut text).unwrap();
        self.child.wait().unwrap();
        let report: Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("the client said {text:?}: {e}"));
        KeepAliveCounts {
            ok: report["ok"].as_u64().unwrap(),
            failed: report["failed"].as_u64().unwrap(),
            closes: report["closes"].as_u64().unwrap(),
            errors: report["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_string())
                .collect(),
        }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hawkey status --json`, parsed.
fn status_json(config: &Path) -> Value {
    let (code, out, err) = hawkey_cli(&["status", "--json"], config);
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The slots' own entries in a status report (not successors or retiring
/// workers, whose state names their generation).
fn own_entries(report: &Value) -> Vec<&Value> {
    report["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| !w["state"].as_str().unwrap().contains("(generation"))
        .collect()
}

/// How many slots have a ready worker.
fn ready(report: &Value) -> usize {
    own_entries(report)
        .iter()
        .filter(|w| w["state"] == "ready")
        .count()
}

/// The recycles of each slot, by slot.
fn recycles(report: &Value) -> Vec<u64> {
    let mut by_slot: Vec<(u64, u64)> = own_entries(report)
        .iter()
        .map(|w| (w["slot"].as_u64().unwrap(), w["recycles"].as_u64().unwrap()))
        .collect();
    by_slot.sort();
    by_slot.into_iter().map(|(_, r)| r).collect()
}

/// `hawkey status --json` read over and over in the background: the
/// fewest ready slots any report showed, and how many reports there were.
struct Sampler {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<(usize, u64)>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(config: &Path) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new((usize::MAX, 0)));
        let (flag, sink, config) = (stop.clone(), seen.clone(), config.to_path_buf());
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            while !flag.load(Ordering::Relaxed) && started.elapsed() < LIMIT {
                let n = ready(&status_json(&config));
                let mut seen = sink.lock().unwrap();
                seen.0 = seen.0.min(n);
                seen.1 += 1;
            }
        });
        Sampler {
            stop,
            seen,
            handle: Some(handle),
        }
    }

    /// (fewest ready slots seen, reports read).
    fn finish(mut self) -> (usize, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap();
        *self.seen.lock().unwrap()
    }
}

/// The ready counts of every `STATUS=` line in `messages` sent while
/// running (before `STOPPING=1`): "N/M workers ready, ...".
fn status_ready_counts(messages: &[String]) -> Vec<(usize, usize)> {
    messages
        .iter()
        .take_while(|m| !m.contains("STOPPING=1"))
        .flat_map(|m| m.lines())
        .filter_map(|l| l.strip_prefix("STATUS="))
        .filter_map(|l| {
            let (n, rest) = l.split_once('/')?;
            let m = rest.split_once(' ')?.0;
            Some((n.parse().ok()?, m.parse().ok()?))
        })
        .collect()
}

/// The leaky app: 2 exec'd workers on `port`, keeping `leak_kib` per
/// request, with `recycle` (a flow mapping) as `workers.recycle`.
fn leaky_config(dir: &TempDir, port: u16, leak_kib: u32, recycle: &str) -> PathBuf {
    leaky_config_with(dir, port, leak_kib, recycle, "")
}

/// [`leaky_config`] with `env` (`, NAME: 'value'` entries) added to
/// `workers.env`.
fn leaky_config_with(dir: &TempDir, port: u16, leak_kib: u32, recycle: &str, env: &str) -> PathBuf {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/leaky.py");
    let workers = format!(
        "  app: exec\n  ready: notify\n  preload: false\n  command: [python3, '{}']\n  env: {{LEAK_KIB: '{leak_kib}', LEAK_CAP_MIB: '128'{env}}}\n  recycle: {recycle}\n",
        app.display()
    );
    write_config(dir, &builtin_yaml(dir, port, 2, &workers))
}

/// What one run under load saw.
struct Run {
    took: Duration,
    load: Counts,
    keep_alive: KeepAliveCounts,
    /// The fewest ready slots `hawkey status --json` showed, and how many
    /// reports it read.
    fewest_ready: (usize, u64),
    /// Every `STATUS=` line's ready/target while running.
    statuses: Vec<(usize, usize)>,
    recycles: Vec<u64>,
    log: String,
}

/// Runs `config` (2 workers) under both kinds of load until every slot
/// was recycled `times` times; stops hawkey cleanly.
fn recycle_under_load(dir: &TempDir, config: &Path, port: u16, times: u64) -> Run {
    let (mut hawkey, notify, _) = start_ready(dir, config);
    let started = Instant::now();
    let load = Load::start(port, 2, "/", LIMIT);
    let keep_alive = KeepAlive::start(dir, port);
    let sampler = Sampler::start(config);
    let recycled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            LIMIT,
            &format!("each of 2 slots recycled {times} times"),
            || {
                let r = recycles(&status_json(config));
                (r.len() == 2 && r.iter().all(|&n| n >= times)).then_some(r)
            },
        )
    }));
    let took = started.elapsed();
    let fewest_ready = sampler.finish();
    let keep_alive = keep_alive.finish();
    let load = load.finish();
    let messages = notify.drain();
    let recycles = match recycled {
        Ok(r) => r,
        Err(_) => panic!(
            "not recycled {times} times per slot within {LIMIT:?}: {:?}\n{}",
            recycles(&status_json(config)),
            hawkey.log_text()
        ),
    };
    hawkey.stop_cleanly();
    Run {
        took,
        load,
        keep_alive,
        fewest_ready,
        statuses: status_ready_counts(&messages),
        recycles,
        log: hawkey.log_text(),
    }
}

/// The figures, printed for the notes, then the invariants.
fn assert_nothing_lost(what: &str, run: &Run) {
    let most_memory = run
        .log
        .lines()
        .filter_map(|l| {
            l.split_once(" uses ")?
                .1
                .split_once(" MiB")?
                .0
                .parse::<u64>()
                .ok()
        })
        .max();
    eprintln!(
        "{what}: {:?}; connection-per-request {:?}; keep-alive ok {} failed {} closes {}; recycles per slot {:?}; fewest ready {} of {} status reports; {} STATUS= lines; most memory seen {most_memory:?} MiB",
        run.took,
        run.load,
        run.keep_alive.ok,
        run.keep_alive.failed,
        run.keep_alive.closes,
        run.recycles,
        run.fewest_ready.0,
        run.fewest_ready.1,
        run.statuses.len()
    );
    assert_eq!(run.load.connect_errors, 0, "{what}: {:?}", run.load);
    assert_eq!(run.load.failed, 0, "{what}: {:?}", run.load);
    assert!(run.load.ok > 0, "{what}: no load went through");
    assert_eq!(
        run.keep_alive.failed, 0,
        "{what}: keep-alive errors {:?}",
        run.keep_alive.errors
    );
    assert!(
        run.keep_alive.closes >= 1,
        "{what}: the keep-alive client never went through a drain"
    );
    assert!(run.fewest_ready.1 > 0, "{what}: no status report read");
    assert_eq!(
        run.fewest_ready.0, 2,
        "{what}: a status report showed fewer than 2 ready"
    );
    // From READY=1 on, every STATUS= line says 2/2.
    let after_ready: Vec<_> = run
        .statuses
        .iter()
        .skip_while(|(n, m)| n < m)
        .copied()
        .collect();
    assert!(
        after_ready.iter().all(|&(n, m)| (n, m) == (2, 2)),
        "{what}: {:?}",
        run.statuses
    );
    let recycled = run.log.matches(" recycled: pid ").count() as u64;
    assert!(
        recycled >= run.recycles.iter().sum::<u64>(),
        "{what}: {recycled} 'recycled' lines for {:?}\n{}",
        run.recycles,
        run.log
    );
}

#[test]
fn a_worker_leaking_past_recycle_memory_is_replaced_under_load_with_no_failed_request() {
    let dir = TempDir::new("recycle-memory");
    let port = free_port();
    let config = leaky_config(&dir, port, 256, "{memory: 64MiB}");
    let run = recycle_under_load(&dir, &config, port, 2);
    assert_nothing_lost("recycle.memory 64MiB, 256 KiB per request", &run);
    assert!(
        run.log
            .contains("over recycle.memory 64 MiB: starting its replacement"),
        "{}",
        run.log
    );
    assert!(!run.log.contains("past recycle.age"), "{}", run.log);
    // The reason is a field of its own (RECYCLE_REASON in the journal).
    assert!(run.log.contains("recycle_reason=\"memory\""), "{}", run.log);
}

#[test]
fn workers_past_recycle_age_are_replaced_and_a_keep_alive_client_loses_nothing() {
    let dir = TempDir::new("recycle-age");
    let port = free_port();
    let config = leaky_config(&dir, port, 0, "{age: 2s, jitter: 0%}");
    let run = recycle_under_load(&dir, &config, port, 2);
    assert_nothing_lost("recycle.age 2s, leaky app", &run);
    assert!(
        run.log
            .contains("has been up 2s, past recycle.age: starting its replacement"),
        "{}",
        run.log
    );
    assert!(run.log.contains("recycle_reason=\"age\""), "{}", run.log);
}

#[test]
fn builtin_workers_past_recycle_age_are_replaced_and_a_keep_alive_client_loses_nothing() {
    let dir = TempDir::new("recycle-age-builtin");
    let port = free_port();
    let config = write_config(
        &dir,
        &builtin_yaml(&dir, port, 2, "  recycle: {age: 2s, jitter: 0%}\n"),
    );
    let run = recycle_under_load(&dir, &config, port, 2);
    assert_nothing_lost("recycle.age 2s, builtin app", &run);
}

/// The pid of each slot's own worker, by slot.
fn serving_pids(report: &Value) -> Vec<i64> {
    let mut by_slot: Vec<(u64, i64)> = own_entries(report)
        .iter()
        .map(|w| (w["slot"].as_u64().unwrap(), w["pid"].as_i64().unwrap_or(-1)))
        .collect();
    by_slot.sort();
    by_slot.into_iter().map(|(_, p)| p).collect()
}

#[test]
fn a_replacement_that_fails_leaves_the_old_worker_serving_and_is_retried_later() {
    let dir = TempDir::new("recycle-fail");
    let port = free_port();
    let fail = dir.join("fail");
    let config = leaky_config_with(
        &dir,
        port,
        0,
        "{age: 2s, jitter: 0%}",
        &format!(", FAIL_IF_EXISTS: '{}'", fail.display()),
    );
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let before = serving_pids(&status_json(&config));
    // From now on every new worker fails at start.
    std::fs::write(&fail, "").unwrap();
    let load = Load::start(port, 1, "/", LIMIT);
    // Both slots try (one at a time, surge 1), both replacements fail.
    let again = "; the worker serves on, recycling it again in 10s";
    let first_failure = wait_until(Duration::from_secs(15), "two failed replacements", || {
        (hawkey.count_log(again) >= 2).then(Instant::now)
    });
    let report = status_json(&config);
    assert_eq!(serving_pids(&report), before, "the old workers serve on");
    assert_eq!(ready(&report), 2);
    assert_eq!(recycles(&report), vec![0, 0]);
    assert!(
        hawkey.log_text().contains("): its replacement (pid "),
        "{}",
        hawkey.log_text()
    );
    // Mended: the retry, 10 s after each failure, recycles.
    std::fs::remove_file(&fail).unwrap();
    let recycled = wait_until(Duration::from_secs(30), "both retried recycles", || {
        let r = recycles(&status_json(&config));
        r.iter().all(|&n| n >= 1).then_some(r)
    });
    let waited = first_failure.elapsed();
    assert!(
        waited >= Duration::from_secs(8),
        "retried after {waited:?}, before the 10 s backoff"
    );
    let counts = load.finish();
    let restarts = hawkey.count_log("restarting");
    hawkey.stop_cleanly();
    eprintln!(
        "failed replacements, retried after {waited:?}: load {counts:?}; recycles {recycled:?}"
    );
    assert_eq!(counts.failed + counts.connect_errors, 0, "{counts:?}");
    assert!(counts.ok > 0);
    assert_eq!(restarts, 0, "no serving worker was restarted");
}

#[test]
fn without_recycle_memory_the_idle_master_never_wakes() {
    let dir = TempDir::new("recycle-idle");
    let port = free_port();
    // An age far away is a deadline, not a timer: nothing to wake for.
    let config = leaky_config(&dir, port, 0, "{age: 1h}");
    let (mut hawkey, notify, _) = start_ready(&dir, &config);
    // Settled: the workers' READY=1 and STATUS= are read.
    wait_until(Duration::from_secs(10), "both workers ready", || {
        (ready(&status_json(&config)) == 2).then_some(())
    });
    // Settled: the control client's hang-up read, and the age a deadline
    // an hour away.
    wait_until_asleep_without_deadline(hawkey.pid(), Duration::from_secs(10));
    let before = switches(hawkey.pid());
    std::thread::sleep(Duration::from_secs(3));
    let after = switches(hawkey.pid());
    assert_eq!(after - before, 0, "the idle master woke up");
    assert!(notify.drain().is_empty());
    hawkey.stop_cleanly();
}
