//! Health outside systemd (goals G2, G3, G12, G15 of docs/goals.md): a hung worker is
//! found by its missing heartbeats and replaced (G2); a stalled master
//! blames no worker for what it could not hear (G3); the upstream watchdog
//! is pinged on a half-period schedule from the loop, and only from it
//! (G12); what exec workers print reaches the master's output whole (G15).
//! The real binary, real signals, a real datagram `NOTIFY_SOCKET`. How
//! soon a hung worker dies and how far apart pings come are printed, not
//! judged: time bounds here are hang guards or lower bounds.

mod support;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn signal_pid(pid: i32, signal: i32) {
    // SAFETY: kill(2) on a process this test started (hawkey or one of its workers).
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

/// Waits until `pid` is in the stopped state (`T`), so that what follows
/// happens while it cannot run.
fn wait_stopped(pid: i32) {
    wait_until(Duration::from_secs(5), "the process to stop", || {
        proc_stat(pid)
            .is_some_and(|(_, state)| state == 'T')
            .then_some(())
    });
}

fn healthz(port: u16) -> (u16, String) {
    http_get(port, "/healthz").expect("GET /healthz")
}

#[test]
fn a_worker_that_stops_beating_is_killed_and_replaced_while_the_other_keeps_serving() {
    let dir = TempDir::new("health-hung");
    let port = free_port();
    let config = write_config(
        &dir,
        &builtin_yaml(&dir, port, 2, "  heartbeat_timeout: 1s\n"),
    );
    let (mut hawkey, notify, _) = start_ready(&dir, &config);
    let workers = hawkey.workers();
    assert_eq!(workers.len(), 2, "{workers:?}");
    let (victim, other) = (workers[0], workers[1]);
    let slot = env_of(victim, "HAWKEY_WORKER").expect("the worker's slot");

    let stopped_at = Instant::now();
    signal_pid(victim, libc::SIGSTOP);
    // While it hangs, every request is served: the stopped worker cannot
    // accept, so the shared socket hands each connection to the other one.
    let mut served = 0u32;
    // A hang guard, 10x the heartbeat timeout: when it is killed is printed.
    let detected = wait_until(
        Duration::from_secs(10),
        "the hung worker to be killed",
        || {
            assert_eq!(healthz(port), (200, "ok\n".to_string()));
            served += 1;
            (!alive(victim)).then(|| stopped_at.elapsed())
        },
    );
    eprintln!(
        "hung worker (heartbeat_timeout 1s) killed {detected:?} after SIGSTOP; {served} requests served meanwhile"
    );
    assert!(served >= 10, "requests were made while it hung: {served}");
    // Not killed while it could still have been beating: its last beat
    // was at most timeout/3 before the stop, so not before 2/3 of the
    // timeout after it (less slack). A lower bound, which load cannot
    // break; how soon after the timeout (G2's +-1 s) is printed above.
    assert!(
        detected >= Duration::from_millis(500),
        "killed {detected:?} after SIGSTOP"
    );
    hawkey.wait_log(
        &format!("worker {slot} (pid {victim}) sent no heartbeat for 1s, killing it"),
        Duration::from_secs(5),
    );
    // A hung worker had started well: replaced at once, without backoff.
    hawkey.wait_log(
        &format!("worker {slot} (pid {victim}) was killed by SIGKILL, restarting"),
        Duration::from_secs(5),
    );
    notify.until(
        "STATUS=2/2 workers ready, generation 1, 1 restarts",
        Duration::from_secs(10),
    );
    // Reaped: gone from /proc, not a zombie.
    wait_until(Duration::from_secs(5), "the killed worker reaped", || {
        (!Path::new(&format!("/proc/{victim}")).exists()).then_some(())
    });
    let now = hawkey.workers();
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.contains(&other), "the other worker lives on: {now:?}");
    let replacement = *now.iter().find(|p| **p != other).unwrap();
    assert_ne!(replacement, victim);
    assert_eq!(
        env_of(replacement, "HAWKEY_WORKER").as_deref(),
        Some(slot.as_str())
    );
    // The replacement serves: with the other worker held still for one
    // request (far shorter than its timeout), only it can answer.
    signal_pid(other, libc::SIGSTOP);
    wait_stopped(other);
    let answer = http_get(port, "/");
    signal_pid(other, libc::SIGCONT);
    let (status, body) = answer.expect("GET / from the replacement");
    assert_eq!(
        (status, body),
        (
            200,
            format!("hawkey worker {slot} pid {replacement} generation 1\n")
        )
    );
    hawkey.stop_cleanly();
    assert_eq!(
        hawkey.count_log("sent no heartbeat"),
        1,
        "{}",
        hawkey.log_text()
    );
}

#[test]
fn a_master_stopped_longer_than_the_heartbeat_timeout_kills_no_worker_after_sigcont() {
    let dir = TempDir::new("health-master-stall");
    let port = free_port();
    let config = write_config(
        &dir,
        &builtin_yaml(&dir, port, 2, "  heartbeat_timeout: 1s\n"),
    );
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let before = hawkey.workers();
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(healthz(port).0, 200);

    hawkey.signal(libc::SIGSTOP);
    wait_stopped(hawkey.pid());
    // The test is about time passing: the master stays stopped for twice
    // the heartbeat timeout while its workers keep beating unheard.
    std::thread::sleep(Duration::from_secs(2));
    // Served meanwhile: the workers do not need the master to serve.
    assert_eq!(healthz(port), (200, "ok\n".to_string()));
    hawkey.signal(libc::SIGCONT);
    hawkey.wait_log(
        "the master was not running for a while; heartbeat deadlines start afresh",
        Duration::from_secs(5),
    );
    // Two more heartbeat timeouts of observation: no worker is killed.
    let watched = Instant::now();
    let mut checks = 0u32;
    while watched.elapsed() < Duration::from_secs(2) && checks < 1000 {
        checks += 1;
        assert_eq!(
            hawkey.count_log("sent no heartbeat"),
            0,
            "{}",
            hawkey.log_text()
        );
        assert_eq!(hawkey.workers(), before, "{}", hawkey.log_text());
        assert_eq!(healthz(port), (200, "ok\n".to_string()));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(checks >= 10, "{checks}");
    assert_eq!(
        hawkey.count_log("was killed by"),
        0,
        "{}",
        hawkey.log_text()
    );
    hawkey.stop_cleanly();
}

/// `hawkey run` with `NOTIFY_SOCKET` and `WATCHDOG_USEC` as systemd sets them.
fn with_watchdog(config: &Path, usec: &str) -> Command {
    let mut cmd = command(config);
    cmd.env("WATCHDOG_USEC", usec).env_remove("WATCHDOG_PID");
    cmd
}

/// Datagrams that arrive before `until`, with their arrival times.
fn collect(notify: &NotifySocket, until: Instant) -> Vec<(Instant, String)> {
    let mut got = Vec::new();
    // Bounded: each round either receives or waits up to 100ms.
    for _ in 0..100_000 {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Some(m) = notify.recv(left.min(Duration::from_millis(100))) {
            got.push((Instant::now(), m));
        }
    }
    got
}

fn pings(messages: &[(Instant, String)]) -> Vec<Instant> {
    messages
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect()
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Datagrams, with their arrival times, until `n` pings have come. The
/// `guard` is a hang guard, not a figure: the gaps are printed.
fn collect_pings(notify: &NotifySocket, n: usize, guard: Duration) -> Vec<(Instant, String)> {
    let deadline = Instant::now() + guard;
    let mut got = Vec::new();
    while pings(&got).len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} pings within {guard:?}: {got:?}",
            pings(&got).len()
        );
        if let Some(m) = notify.recv(Duration::from_millis(100)) {
            got.push((Instant::now(), m));
        }
    }
    got
}

#[test]
fn watchdog_pings_are_scheduled_at_half_the_period_and_stop_while_the_master_is_stopped() {
    let dir = TempDir::new("health-watchdog");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, ""));
    let (mut hawkey, notify, _) = start_ready_with(&dir, with_watchdog(&config, "400000"));
    // The period the master keeps, in its own words: half of WATCHDOG_USEC.
    hawkey.wait_log(
        "systemd watchdog: pinging every 200ms while healthy",
        Duration::from_secs(5),
    );
    let ready_at = Instant::now();
    // 10 pings are due within 2s; 20s is a hang guard.
    let running = collect_pings(&notify, 10, Duration::from_secs(20));
    let times = pings(&running);
    let running_gaps = gaps(&times);
    eprintln!(
        "watchdog (WATCHDOG_USEC=400000): first ping {:?} after READY=1, then gaps min {:?} max {:?} (G12: at most 200ms)",
        times[0] - ready_at,
        running_gaps.iter().min().copied().unwrap_or_default(),
        running_gaps.iter().max().copied().unwrap_or_default()
    );
    for (_, m) in &running {
        // Pings travel alone; nothing else changes while the pool is idle.
        assert_eq!(m, "WATCHDOG=1\n");
    }

    // Stopped: the loop does not run, so nothing vouches for it. Once the
    // master is in the stopped state, whatever it sent is already queued
    // on the socket: drained, and then nothing more may come.
    hawkey.signal(libc::SIGSTOP);
    wait_stopped(hawkey.pid());
    notify.drain();
    let stop_seen = Instant::now();
    // The test is about time passing: 1s, five periods, without the loop.
    let during = collect(&notify, stop_seen + Duration::from_secs(1));
    let stalled: Vec<Duration> = pings(&during).into_iter().map(|t| t - stop_seen).collect();
    assert!(
        stalled.is_empty(),
        "pings while the master was stopped, at {stalled:?} after it was seen stopped"
    );
    let cont_sent = Instant::now();
    hawkey.signal(libc::SIGCONT);
    // And they come again: 4 are due within 1s; 20s is a hang guard.
    let after = collect_pings(&notify, 4, Duration::from_secs(20));
    let resumed = pings(&after);
    let resumed_gaps = gaps(&resumed);
    eprintln!(
        "watchdog after a 1s stop: first ping {:?} after SIGCONT, then gaps max {:?}",
        resumed[0] - cont_sent,
        resumed_gaps.iter().max().copied().unwrap_or_default()
    );
    hawkey.stop_cleanly();
}

#[test]
fn a_watchdog_meant_for_another_pid_is_never_pinged() {
    let dir = TempDir::new("health-watchdog-other");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, ""));
    let mut cmd = with_watchdog(&config, "400000");
    cmd.env("WATCHDOG_PID", "1");
    let (mut hawkey, notify, before) = start_ready_with(&dir, cmd);
    // The test is about time passing: 2s, ten ping periods, in silence.
    let after = collect(&notify, Instant::now() + Duration::from_secs(2));
    let all: Vec<&String> = before.iter().chain(after.iter().map(|(_, m)| m)).collect();
    assert!(
        !all.iter().any(|m| m.contains("WATCHDOG=1")),
        "pinged a watchdog meant for pid 1: {all:?}"
    );
    assert_eq!(hawkey.count_log("systemd watchdog"), 0);
    hawkey.stop_cleanly();
}

#[test]
fn a_watchdog_pid_naming_the_master_itself_is_pinged() {
    let dir = TempDir::new("health-watchdog-self");
    let port = free_port();
    let config = write_config(&dir, &builtin_yaml(&dir, port, 2, ""));
    // `exec` keeps the shell's pid, so $$ is hawkey's pid, known before it runs.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" run -c \"$1\"")
        .arg(BIN)
        .arg(&config);
    plain_env(&mut cmd).env("WATCHDOG_USEC", "400000");
    let (mut hawkey, notify, _) = start_ready_with(&dir, cmd);
    assert_eq!(
        env_of(hawkey.pid(), "WATCHDOG_PID"),
        Some(hawkey.pid().to_string())
    );
    // 3 pings are due within 600ms; 20s is a hang guard.
    collect_pings(&notify, 3, Duration::from_secs(20));
    hawkey.stop_cleanly();
}

/// A child killed when dropped, so a failing test leaves no master behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn every_line_exec_workers_print_reaches_the_masters_output_once_and_stopped_comes_last() {
    const LINES: usize = 5000;
    let dir = TempDir::new("health-output");
    let port = free_port();
    // dash's echo is one write(2) per line: lines of two workers sharing
    // one file interleave whole. (seq into a file writes 4 KiB blocks that
    // end mid-line, which would cut lines whoever relays them.)
    let config = write_config(
        &dir,
        &builtin_yaml(
            &dir,
            port,
            2,
            &format!(
                "  app: exec\n  ready: started\n  command: [sh, -c, 'i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); echo \"line $i from $HAWKEY_WORKER\"; done; exec sleep 1000']\n"
            ),
        ),
    );
    // The master's stdout and stderr are one file, which workers inherit.
    let output: PathBuf = dir.join("output.log");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&output)
        .unwrap();
    let mut cmd = command(&config);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file));
    let mut hawkey = Running(cmd.spawn().expect("start hawkey"));
    let pid = hawkey.0.id() as i32;
    // Both workers have printed everything once they exec sleep.
    wait_until(
        Duration::from_secs(20),
        "both workers done printing",
        || {
            (children_of(pid)
                .into_iter()
                .filter(|p| proc_comm(*p).as_deref() == Some("sleep"))
                .count()
                == 2)
                .then_some(())
        },
    );
    // And the master is stopped right after.
    signal_pid(pid, libc::SIGTERM);
    let status = wait_until(Duration::from_secs(20), "hawkey to exit", || {
        hawkey.0.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for worker in 0..2 {
        let suffix = format!(" from {worker}");
        let numbers: Vec<usize> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("line")?.strip_suffix(&suffix))
            .map(|n| n.trim().parse().expect("a whole line"))
            .collect();
        // Every line once, in the order printed: none lost, none doubled.
        assert_eq!(numbers.len(), LINES, "worker {worker}");
        assert!(
            numbers.iter().copied().eq(1..=LINES),
            "worker {worker}'s lines out of order or repeated"
        );
    }
    let worker_lines = lines.iter().filter(|l| l.starts_with("line ")).count();
    assert_eq!(worker_lines, 2 * LINES);
    let last = lines.last().copied().unwrap_or_default();
    assert!(
        last.ends_with("INFO stopped"),
        "the master's last line is 'stopped': {last:?}"
    );
    eprintln!(
        "{worker_lines} worker lines and {} master lines in the master's output",
        lines.len() - worker_lines
    );
}
