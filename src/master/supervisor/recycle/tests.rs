//! Recycling, driven with invented pids and instants: a successor first,
//! the old worker stopped only once it is ready, never fewer than N ready.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::super::{Action, Decision, Event, ExitCode, Level, Pool, Settings};
use super::{MEMORY_EVERY, RETRY_INITIAL, Reason, Recycling};
use crate::master::reap::Exit;

const MIB: u64 = 1 << 20;

fn pid(n: i32) -> Pid {
    Pid::from_raw(n)
}

fn settings(count: usize, recycle: Recycling) -> Settings {
    Settings {
        count,
        ready_on_start: false,
        ready_when_accepting: false,
        ready_timeout: Duration::from_secs(30),
        heartbeat: None,
        stop_signal: Signal::SIGTERM,
        stop_timeout: Duration::from_secs(25),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(30),
        surge: 1,
        recycle,
    }
}

fn memory(limit: u64) -> Recycling {
    Recycling {
        memory: Some(limit),
        ..Recycling::default()
    }
}

fn age(secs: u64, jitter_percent: u32) -> Recycling {
    Recycling {
        age: Some(Duration::from_secs(secs)),
        jitter_percent,
        ..Recycling::default()
    }
}

/// What `pool` decides for `event`, every sweep answered at once (the
/// workers leave nothing behind).
fn step(pool: &mut Pool, event: Event, now: Instant) -> Decision {
    let mut all = Decision::default();
    let mut events = vec![event];
    while let Some(event) = events.pop() {
        let d = pool.handle(event, now);
        for action in d.actions {
            match action {
                Action::Sweep { orders } => {
                    events.extend(orders.into_iter().map(|o| Event::Swept { scope: o.scope }))
                }
                // A worker just ready is measured at once: fresh workers
                // use 1 MiB here, unless a test answers itself.
                Action::MeasureMemory { pids, fresh: true } => events.push(Event::Memory {
                    usage: pids.into_iter().map(|p| (p, MIB)).collect(),
                    fresh: true,
                }),
                other => all.actions.push(other),
            }
        }
        all.notices.extend(d.notices);
    }
    all
}

fn actions(pool: &mut Pool, event: Event, now: Instant) -> Vec<Action> {
    step(pool, event, now).actions
}

/// A pool of `count` ready workers (pids 100, 101, …), seeded.
fn ready_pool(settings: Settings, t0: Instant) -> Pool {
    let mut pool = Pool::new(settings, 1);
    pool.seed(42);
    step(&mut pool, Event::Start, t0);
    for slot in 0..settings.count {
        let pid = pid(100 + slot as i32);
        step(
            &mut pool,
            Event::Spawned {
                slot,
                generation: 1,
                pid,
            },
            t0,
        );
        step(&mut pool, Event::Ready { pid }, t0);
    }
    assert_full(&pool);
    pool
}

/// The invariant: every slot of the pool has a ready worker.
fn assert_full(pool: &Pool) {
    let ready = pool.slots().iter().filter(|s| s.state.is_ready()).count();
    assert_eq!(ready, pool.target, "fewer than N ready: {:?}", pool.slots());
}

fn spawn(slot: usize) -> Action {
    Action::Spawn {
        slot,
        generation: 1,
    }
}

fn term(n: i32) -> Action {
    Action::Signal {
        pid: pid(n),
        signal: Signal::SIGTERM,
    }
}

/// Measures at `t` with `usage` (MiB per pid), as the master would answer.
fn measured(pool: &mut Pool, t: Instant, usage: &[(i32, u64)]) -> Decision {
    let ask = actions(pool, Event::Tick, t);
    assert!(
        ask.iter()
            .any(|a| matches!(a, Action::MeasureMemory { .. })),
        "no measure asked at {t:?}: {ask:?}"
    );
    step(
        pool,
        Event::Memory {
            usage: usage.iter().map(|&(p, m)| (pid(p), m * MIB)).collect(),
            fresh: false,
        },
        t,
    )
}

#[test]
fn a_worker_over_the_memory_limit_is_stopped_only_once_its_successor_is_ready() {
    let t0 = Instant::now();
    let mut pool = ready_pool(settings(2, memory(64 * MIB)), t0);
    let t1 = t0 + MEMORY_EVERY;
    assert_eq!(pool.next_deadline(), Some(t1));
    let d = measured(&mut pool, t1, &[(100, 70), (101, 10)]);
    assert_eq!(d.actions, vec![spawn(0)]);
    assert_eq!(
        d.notices[0].text,
        "worker 0 (pid 100) uses 70 MiB, over recycle.memory 64 MiB: starting its replacement"
    );
    assert_eq!(
        d.notices[0].recycle,
        Some(Reason::Memory { bytes: 70 * MIB })
    );
    assert!(pool.status_line().ends_with(", recycling"));
    let spawned = Event::Spawned {
        slot: 0,
        generation: 1,
        pid: pid(200),
    };
    assert_eq!(actions(&mut pool, spawned, t1), vec![]);
    assert_full(&pool);
    let d = step(&mut pool, Event::Ready { pid: pid(200) }, t1);
    assert_eq!(d.actions, vec![term(100)]);
    let done = d
        .notices
        .iter()
        .find(|n| n.text.contains("recycled"))
        .unwrap();
    assert_eq!(done.text, "worker 0 recycled: pid 100 replaced by pid 200");
    assert_eq!(done.recycle.map(Reason::word), Some("memory"));
    assert_eq!(done.pid, Some(pid(200)));
    assert_full(&pool);
    assert_eq!(pool.slots()[0].recycles, 1);
    assert_eq!(pool.slots()[0].restarts, 0, "a recycle is no restart");
    let exited = Event::Exited {
        pid: pid(100),
        exit: Exit::Code(0),
    };
    assert_eq!(actions(&mut pool, exited, t1), vec![]);
    assert_full(&pool);
    assert_eq!(
        pool.status_line(),
        "2/2 workers ready, generation 1, 0 restarts"
    );
    // The new worker starts afresh: under the limit, nothing happens.
    let t2 = t1 + MEMORY_EVERY;
    let d = measured(&mut pool, t2, &[(200, 20), (101, 10)]);
    assert_eq!(d.actions, vec![]);
}

#[test]
fn without_a_memory_limit_nothing_is_measured_and_nothing_wakes_the_master() {
    let t0 = Instant::now();
    let mut pool = ready_pool(settings(2, Recycling::default()), t0);
    assert_eq!(pool.next_deadline(), None);
    let later = t0 + Duration::from_secs(3600);
    assert_eq!(actions(&mut pool, Event::Tick, later), vec![]);
    assert_eq!(pool.next_deadline(), None);
    // With an age only: the nearest age deadline, no measuring.
    let pool = ready_pool(settings(2, age(60, 0)), t0);
    assert_eq!(pool.next_deadline(), Some(t0 + Duration::from_secs(60)));
}

#[test]
fn age_deadlines_are_spread_within_the_jitter() {
    let t0 = Instant::now();
    let pool = ready_pool(settings(64, age(100, 10)), t0);
    let dues: Vec<Duration> = pool
        .slots()
        .iter()
        .map(|s| s.recycle.due.unwrap() - t0)
        .collect();
    let (min, max) = (dues.iter().min().unwrap(), dues.iter().max().unwrap());
    assert!(*min >= Duration::from_secs(90), "{min:?}");
    assert!(*max <= Duration::from_secs(110), "{max:?}");
    assert!(
        *max - *min >= Duration::from_secs(10),
        "64 draws should spread over half the range at least: {min:?}..{max:?}"
    );
    let exact = ready_pool(settings(8, age(100, 0)), t0);
    assert!(
        exact
            .slots()
            .iter()
            .all(|s| s.recycle.due == Some(t0 + Duration::from_secs(100)))
    );
}

#[test]
fn recycles_by_age_go_at_most_surge_at_a_time_without_a_busy_deadline() {
    let t0 = Instant::now();
    let mut pool = ready_pool(settings(3, age(10, 0)), t0);
    let t1 = t0 + Duration::from_secs(10);
    let d = step(&mut pool, Event::Tick, t1);
    assert_eq!(d.actions, vec![spawn(0)], "surge 1: one at a time");
    assert_eq!(
        d.notices[0].text,
        "worker 0 (pid 100) has been up 10s, past recycle.age: starting its replacement"
    );
    // The two waiting are not a deadline the loop would spin on.
    assert!(pool.next_deadline().is_none_or(|d| d > t1));
    let spawned = Event::Spawned {
        slot: 0,
        generation: 1,
        pid: pid(200),
    };
    assert_eq!(actions(&mut pool, spawned, t1), vec![]);
    // Once it is ready, the next one starts.
    let a = actions(&mut pool, Event::Ready { pid: pid(200) }, t1);
    assert_eq!(a, vec![term(100), spawn(1)]);
    assert_full(&pool);

    // surge 2: two at once.
    let mut pool = ready_pool(
        Settings {
            surge: 2,
            ..settings(3, age(10, 0))
        },
        t0,
    );
    assert_eq!(
        actions(&mut pool, Event::Tick, t1),
        vec![spawn(0), spawn(1)]
    );
}

/// A recycle in flight in slot 0: its successor, pid 200, is starting.
fn recycling_pool(t: Instant) -> Pool {
    let mut pool = ready_pool(settings(2, memory(64 * MIB)), t);
    let t1 = t + MEMORY_EVERY;
    let d = measured(&mut pool, t1, &[(100, 70), (101, 80)]);
    assert_eq!(d.actions, vec![spawn(0)]);
    let spawned = Event::Spawned {
        slot: 0,
        generation: 1,
        pid: pid(200),
    };
    step(&mut pool, spawned, t1);
    pool
}

#[test]
fn a_reload_abandons_the_recycles_in_flight_and_none_start_while_it_runs() {
    let t0 = Instant::now();
    let mut pool = recycling_pool(t0);
    let t1 = t0 + MEMORY_EVERY + Duration::from_secs(1);
    let reload = Event::Reload {
        settings: settings(2, memory(64 * MIB)),
        generation: 2,
    };
    let a = actions(&mut pool, reload, t1);
    assert!(
        a.contains(&term(200)),
        "the recycle's successor stops: {a:?}"
    );
    assert!(a.contains(&Action::AnnounceReloading));
    assert!(a.contains(&Action::Spawn {
        slot: 0,
        generation: 2
    }));
    assert!(!a.contains(&term(100)), "the old worker serves on");
    assert_full(&pool);
    // Over the limit during the reload: no recycle.
    let t2 = t0 + 2 * MEMORY_EVERY;
    let d = measured(&mut pool, t2, &[(100, 90), (101, 90)]);
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::Spawn { generation: 1, .. })),
        "{:?}",
        d.actions
    );
    let exited = Event::Exited {
        pid: pid(200),
        exit: Exit::Code(0),
    };
    let d = step(&mut pool, exited, t2);
    assert!(
        d.notices.iter().all(|n| n.level == Level::Info),
        "{:?}",
        d.notices
    );
    assert_eq!(pool.slots()[0].recycles, 0);
    assert_full(&pool);
}

#[test]
fn a_failed_successor_leaves_the_old_worker_serving_and_is_retried_after_a_backoff() {
    let t0 = Instant::now();
    let mut pool = recycling_pool(t0);
    let t1 = t0 + MEMORY_EVERY + Duration::from_secs(1);
    let exited = Event::Exited {
        pid: pid(200),
        exit: Exit::Code(1),
    };
    let d = step(&mut pool, exited, t1);
    // Worker 0 is not touched; worker 1, over the limit too, goes now
    // that the room is free.
    assert_eq!(d.actions, vec![spawn(1)]);
    let warn = d.notices.iter().find(|n| n.level == Level::Warn).unwrap();
    assert_eq!(
        warn.text,
        "worker 0 (pid 100): its replacement (pid 200) exited with status 1; the worker serves on, recycling it again in 10s"
    );
    assert_full(&pool);
    assert_eq!(pool.slots()[0].recycles, 0);
    let spawned = Event::Spawned {
        slot: 1,
        generation: 1,
        pid: pid(201),
    };
    step(&mut pool, spawned, t1);
    let t2 = t1 + Duration::from_secs(1);
    let a = actions(&mut pool, Event::Ready { pid: pid(201) }, t2);
    assert_eq!(a, vec![term(101)], "worker 0 waits out its backoff");
    assert_full(&pool);
    // Still over the limit: tried again when the backoff ends.
    let t3 = t1 + RETRY_INITIAL;
    assert!(pool.next_deadline().is_some_and(|d| d <= t3));
    let a = actions(&mut pool, Event::Tick, t3 - Duration::from_millis(1));
    assert!(!a.contains(&spawn(0)), "{a:?}");
    let a = actions(&mut pool, Event::Tick, t3);
    assert!(a.contains(&spawn(0)), "{a:?}");
    // Memory measured meanwhile (the next measure) asks for every ready worker.
    assert!(pool.next_deadline().is_some());
}

#[test]
fn a_successor_past_its_ready_timeout_is_killed_and_the_old_worker_serves_on() {
    let t0 = Instant::now();
    let mut pool = recycling_pool(t0);
    let t1 = t0 + MEMORY_EVERY + Duration::from_secs(30);
    let a = actions(&mut pool, Event::Tick, t1);
    assert!(a.contains(&Action::Signal {
        pid: pid(200),
        signal: Signal::SIGKILL
    }));
    assert!(!a.contains(&term(100)));
    let exited = Event::Exited {
        pid: pid(200),
        exit: Exit::Signal {
            signal: Signal::SIGKILL,
            core_dumped: false,
        },
    };
    let d = step(&mut pool, exited, t1);
    assert!(
        d.notices
            .iter()
            .any(|n| n.text.contains("not ready after 30s"))
    );
    assert_full(&pool);
}

#[test]
fn a_stop_during_a_recycle_stops_everything() {
    let t0 = Instant::now();
    let mut pool = recycling_pool(t0);
    let t1 = t0 + MEMORY_EVERY + Duration::from_secs(1);
    let a = actions(&mut pool, Event::Stop { fast: false }, t1);
    for p in [100, 101, 200] {
        assert!(a.contains(&term(p)), "{p} not stopped: {a:?}");
    }
    let mut last = Vec::new();
    for p in [200, 100, 101] {
        let exited = Event::Exited {
            pid: pid(p),
            exit: Exit::Code(0),
        };
        last = actions(&mut pool, exited, t1);
        assert!(!last.iter().any(|a| matches!(a, Action::Spawn { .. })));
    }
    assert_eq!(last, vec![Action::Exit(ExitCode::Clean)]);
}

#[test]
fn a_worker_dying_during_its_recycle_hands_over_to_its_successor() {
    let t0 = Instant::now();
    let mut pool = recycling_pool(t0);
    let t1 = t0 + MEMORY_EVERY + Duration::from_secs(1);
    let exited = Event::Exited {
        pid: pid(100),
        exit: Exit::Code(1),
    };
    let d = step(&mut pool, exited, t1);
    // No second worker for slot 0; slot 1 (over the limit) may go now.
    assert_eq!(d.actions, vec![spawn(1)]);
    assert!(
        d.notices[0]
            .text
            .ends_with("its replacement (pid 200) takes over")
    );
    let a = actions(&mut pool, Event::Ready { pid: pid(200) }, t1);
    assert!(
        !a.iter().any(|a| matches!(a, Action::Signal { .. })),
        "{a:?}"
    );
    assert_full(&pool);
    assert_eq!(pool.slots()[0].state.pid(), Some(pid(200)));
    assert_eq!(pool.slots()[0].restarts, 1);
}

#[test]
fn a_worker_over_the_limit_when_fresh_is_warned_about_once_and_not_recycled_every_check() {
    let t0 = Instant::now();
    let mut pool = Pool::new(settings(2, memory(64 * MIB)), 1);
    pool.seed(42);
    step(&mut pool, Event::Start, t0);
    let mut warnings = Vec::new();
    for slot in 0..2 {
        let p = pid(100 + slot as i32);
        step(
            &mut pool,
            Event::Spawned {
                slot,
                generation: 1,
                pid: p,
            },
            t0,
        );
        let d = pool.handle(Event::Ready { pid: p }, t0);
        assert!(
            d.actions.contains(&Action::MeasureMemory {
                pids: vec![p],
                fresh: true
            }),
            "a worker just ready is measured at once: {:?}",
            d.actions
        );
        // It is 80 MiB as soon as it is ready: the limit is below a fresh worker.
        let d = step(
            &mut pool,
            Event::Memory {
                usage: vec![(p, 80 * MIB)],
                fresh: true,
            },
            t0,
        );
        warnings.extend(d.notices.into_iter().filter(|n| n.level == Level::Warn));
    }
    assert_eq!(
        warnings.len(),
        1,
        "once for the limit, not per worker: {warnings:?}"
    );
    assert!(
        warnings[0]
            .text
            .contains("uses 80 MiB as soon as it is ready, over recycle.memory 64 MiB"),
        "{}",
        warnings[0].text
    );
    // Check after check, over the limit, nobody is replaced.
    for k in 1..=3 {
        let d = measured(&mut pool, t0 + MEMORY_EVERY * k, &[(100, 90), (101, 85)]);
        assert!(
            !d.actions.iter().any(|a| matches!(a, Action::Spawn { .. })),
            "{:?}",
            d.actions
        );
    }
    assert_full(&pool);
}

#[test]
fn a_worker_small_when_fresh_is_recycled_once_it_grows_past_the_limit() {
    let t0 = Instant::now();
    let mut pool = ready_pool(settings(1, memory(64 * MIB)), t0);
    let d = measured(&mut pool, t0 + MEMORY_EVERY, &[(100, 70)]);
    assert_eq!(d.actions, vec![spawn(0)]);
}
