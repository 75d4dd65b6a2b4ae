//! Soak (goal G16, docs/goals.md): load, a worker kill every 5 s and a reload every
//! 60 s, for `HAWKEY_SOAK_SECS` seconds (default 300, the CI run; set it
//! higher for a longer soak). The master's fd count must stay flat, with
//! no zombie and no refused connection. Its memory is printed, not judged
//! (memory figures are the benchmark's): the anonymous part (heap, stacks:
//! what a leak grows) and total RSS, whose file-backed part is released by
//! design whenever a reload completes and faults back in as respawns run
//! (src/memory.rs), a ~1 MiB sawtooth that says nothing about leaks.
//!
//! The long tier: `cargo test -- --ignored` (tests/run.sh) runs it.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn status_kib(pid: i32, field: &str) -> u64 {
    proc_status(pid, field)
        .unwrap()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

#[test]
#[ignore = "long tier: tests/run.sh runs it (cargo test -- --ignored)"]
// One soak is one long loop over the same master, load and counters.
#[allow(clippy::too_many_lines)]
fn a_soak_with_kills_and_reloads_keeps_the_master_flat_and_refuses_no_connection() {
    let secs: u64 = std::env::var("HAWKEY_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let dir = TempDir::new("soak");
    let port = free_port();
    let config = write_config(
        &dir,
        &format!(
            "listen:\n  - {{name: http, address: '127.0.0.1:{port}'}}\nworkers:\n  count: 2\n  stop_timeout: 5s\npidfile: {}\nlog: {{level: warn}}\n",
            dir.join("hawkey.pid").display()
        ),
    );
    let (mut hawkey, notify, _) = start_ready(&dir, &config);
    let master = hawkey.pid();
    let load = Load::start(port, 2, "/delay/1", Duration::from_secs(secs + 60));
    let t0 = Instant::now();
    let mut samples: Vec<(u64, u64, u64, usize)> = Vec::new();
    let (mut kills, mut reloads) = (0, 0);
    let mut next_kill = Duration::from_secs(5);
    let mut next_reload = Duration::from_secs(60);
    while t0.elapsed() < Duration::from_secs(secs) {
        // Pacing is what a soak is made of: one step a second.
        std::thread::sleep(Duration::from_secs(1));
        let now = t0.elapsed();
        if now >= next_kill {
            let workers: Vec<i32> = hawkey
                .workers()
                .into_iter()
                .filter(|p| alive(*p) && env_of(*p, "HAWKEY_WORKER").is_some())
                .collect();
            if let Some(victim) = workers.get(kills % workers.len().max(1)) {
                // SAFETY: kill(2) on one of our workers.
                unsafe { libc::kill(*victim, libc::SIGKILL) };
                kills += 1;
            }
            next_kill += Duration::from_secs(5);
        }
        if now >= next_reload {
            let (code, out, err) = hawkey_cli(&["reload", "--wait"], &config);
            assert_eq!(code, 0, "soak: reload {reloads} at {now:?}: {out}{err}");
            reloads += 1;
            next_reload += Duration::from_secs(60);
        }
        // Sampled 2s after each kill: not while the master is spawning
        // (a spawn holds an error pipe open for an instant).
        if now.as_secs() % 5 == 2 {
            let zombies: Vec<i32> = children_of(master)
                .into_iter()
                .filter(|p| proc_stat(*p).is_some_and(|(_, s)| s == 'Z'))
                .collect();
            // The fewest fds of three looks: a control client the master is
            // answering right now is not a leak.
            let fds = (0..3)
                .map(|_| {
                    std::thread::sleep(Duration::from_millis(20));
                    fd_numbers(master).len()
                })
                .min()
                .unwrap();
            samples.push((
                now.as_secs(),
                status_kib(master, "VmRSS"),
                status_kib(master, "RssAnon"),
                fds,
            ));
            // A zombie may exist for the instant before the master reaps;
            // one seen twice a second apart is a leak.
            if !zombies.is_empty() {
                std::thread::sleep(Duration::from_secs(1));
                let still: Vec<i32> = zombies
                    .into_iter()
                    .filter(|p| proc_stat(*p).is_some_and(|(_, s)| s == 'Z'))
                    .collect();
                assert!(still.is_empty(), "soak: zombies {still:?} at {now:?}");
            }
        }
        // Drain the notify socket so the master's STATUS= lines never queue up.
        while notify.recv(Duration::from_millis(1)).is_some() {}
    }
    let counts = load.finish();
    eprintln!("soak: {secs}s, {kills} kills, {reloads} reloads, load {counts:?}");
    eprintln!("soak: master (seconds, RSS KiB, anonymous KiB, fds): {samples:?}");
    assert_eq!(counts.connect_errors, 0, "soak: connect errors {counts:?}");
    assert!(
        counts.failed as usize <= kills * 2,
        "soak: {} failed requests for {kills} kills",
        counts.failed
    );
    // Flat: once allocations settled (after the first minute and the first
    // reload, whose new generation's structures the allocator keeps), the
    // fd count does not grow at all. The anonymous memory's growth over
    // the same samples is printed.
    let settle = if secs >= 130 { 65 } else { secs / 2 };
    let settled: Vec<&(u64, u64, u64, usize)> = samples.iter().filter(|s| s.0 >= settle).collect();
    let (first, last) = (settled.first().unwrap(), settled.last().unwrap());
    let max_anon = settled.iter().map(|s| s.2).max().unwrap();
    assert!(
        settled.iter().all(|s| s.3 == first.3),
        "soak: master fd count changed: {samples:?}"
    );
    let max_rss = settled.iter().map(|s| s.1).max().unwrap();
    eprintln!(
        "soak: anonymous {} KiB -> {} KiB (max {max_anon}), RSS {} KiB -> {} KiB (max {max_rss}), fds {} -> {}",
        first.2, last.2, first.1, last.1, first.3, last.3
    );
    hawkey.stop_cleanly();
}
