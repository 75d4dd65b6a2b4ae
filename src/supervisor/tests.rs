//! The state machine, driven with invented pids and instants.

use super::*;

fn settings(count: usize) -> Settings {
    Settings {
        count,
        ready_on_start: false,
        ready_timeout: Duration::from_secs(30),
        stop_signal: Signal::SIGTERM,
        stop_timeout: Duration::from_secs(25),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(30),
    }
}

fn pid(n: i32) -> Pid {
    Pid::from_raw(n)
}

/// A pool of `count` workers, all spawned (pids 100, 101, …) and ready.
fn ready_pool(count: usize, t0: Instant) -> Pool {
    let mut pool = Pool::new(settings(count), 1);
    let actions = pool.handle(Event::Start, t0);
    assert_eq!(
        actions,
        (0..count)
            .map(|slot| Action::Spawn { slot })
            .collect::<Vec<_>>()
    );
    for slot in 0..count {
        pool.handle(
            Event::Spawned {
                slot,
                pid: pid(100 + slot as i32),
            },
            t0,
        );
    }
    for slot in 0..count {
        let actions = pool.handle(
            Event::Ready {
                pid: pid(100 + slot as i32),
            },
            t0,
        );
        let last = slot == count - 1;
        assert_eq!(
            actions.contains(&Action::AnnounceReady),
            last,
            "READY=1 only when all are ready"
        );
    }
    pool
}

const KILLED: Exit = Exit::Signal {
    signal: Signal::SIGKILL,
    core_dumped: false,
};

#[test]
fn ready_is_announced_once_when_every_slot_is_ready() {
    let t0 = Instant::now();
    let mut pool = ready_pool(3, t0);
    assert_eq!(
        pool.status_line(),
        "3/3 workers ready, generation 1, 0 restarts"
    );
    // A replacement becoming ready later does not announce again.
    let t1 = t0 + Duration::from_secs(10);
    let actions = pool.handle(
        Event::Exited {
            pid: pid(101),
            exit: KILLED,
        },
        t1,
    );
    assert_eq!(actions, vec![Action::Spawn { slot: 1 }]);
    pool.handle(
        Event::Spawned {
            slot: 1,
            pid: pid(200),
        },
        t1,
    );
    assert!(pool.handle(Event::Ready { pid: pid(200) }, t1).is_empty());
    assert_eq!(
        pool.status_line(),
        "3/3 workers ready, generation 1, 1 restarts"
    );
}

#[test]
fn a_worker_that_ran_well_is_replaced_at_once() {
    let t0 = Instant::now();
    let mut pool = ready_pool(2, t0);
    let later = t0 + STABLE_AFTER + Duration::from_millis(1);
    let actions = pool.handle(
        Event::Exited {
            pid: pid(100),
            exit: KILLED,
        },
        later,
    );
    assert_eq!(actions, vec![Action::Spawn { slot: 0 }]);
    assert_eq!(pool.slots()[0].last_exit, Some(KILLED));
    assert_eq!(pool.slots()[0].restarts, 1);
}

#[test]
fn quick_deaths_back_off_exponentially_up_to_the_cap() {
    let t0 = Instant::now();
    let mut pool = ready_pool(1, t0);
    let mut now = t0;
    let mut delays = Vec::new();
    for next_pid in 300..312 {
        // Dies 10ms after becoming ready: a crash loop.
        let current = pool.slots()[0].state.pid().unwrap();
        now += Duration::from_millis(10);
        let actions = pool.handle(
            Event::Exited {
                pid: current,
                exit: Exit::Code(1),
            },
            now,
        );
        assert!(
            actions.is_empty(),
            "not respawned before its backoff: {actions:?}"
        );
        let State::Pending { at } = pool.slots()[0].state else {
            panic!("pending")
        };
        delays.push(at - now);
        assert_eq!(pool.next_deadline(), Some(at));
        // Nothing happens just before the deadline; the spawn happens at it.
        assert!(
            pool.handle(Event::Tick, at - Duration::from_millis(1))
                .is_empty()
        );
        now = at;
        assert_eq!(
            pool.handle(Event::Tick, now),
            vec![Action::Spawn { slot: 0 }]
        );
        pool.handle(
            Event::Spawned {
                slot: 0,
                pid: pid(next_pid),
            },
            now,
        );
        pool.handle(Event::Ready { pid: pid(next_pid) }, now);
    }
    let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
    assert_eq!(
        ms,
        [
            100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
        ]
    );
    // Once a worker stays up, the next death is replaced at once again.
    let current = pool.slots()[0].state.pid().unwrap();
    now += STABLE_AFTER * 2;
    assert_eq!(
        pool.handle(
            Event::Exited {
                pid: current,
                exit: Exit::Code(1)
            },
            now
        ),
        vec![Action::Spawn { slot: 0 }]
    );
}

#[test]
fn a_pool_where_no_worker_ever_becomes_ready_gives_up_with_69() {
    let t0 = Instant::now();
    let mut pool = Pool::new(settings(2), 1);
    pool.handle(Event::Start, t0);
    let mut now = t0;
    let mut exit = None;
    let mut spawned = 0;
    for round in 0..10 {
        for slot in 0..2 {
            if let State::Pending { at } = pool.slots()[slot].state {
                now = now.max(at);
                pool.handle(Event::Tick, now);
            }
            if pool.slots()[slot].state == State::Spawning {
                let p = pid(1000 + round * 2 + slot as i32);
                pool.handle(Event::Spawned { slot, pid: p }, now);
                spawned += 1;
                let actions = pool.handle(
                    Event::Exited {
                        pid: p,
                        exit: Exit::Code(1),
                    },
                    now,
                );
                if let Some(Action::Exit(code)) =
                    actions.iter().find(|a| matches!(a, Action::Exit(_)))
                {
                    exit = Some(*code);
                }
            }
        }
        if exit.is_some() {
            break;
        }
    }
    assert_eq!(exit, Some(ExitCode::NoWorkerStarted));
    assert_eq!(spawned, 2 * STARTUP_ATTEMPTS as usize);
}

#[test]
fn a_failing_slot_does_not_give_up_once_the_pool_has_served() {
    let t0 = Instant::now();
    let mut pool = ready_pool(2, t0);
    let mut now = t0;
    for i in 0..10 {
        let current = pool.slots()[0].state.pid().unwrap();
        let actions = pool.handle(
            Event::Exited {
                pid: current,
                exit: Exit::Code(1),
            },
            now,
        );
        assert!(!actions.iter().any(|a| matches!(a, Action::Exit(_))));
        let State::Pending { at } = pool.slots()[0].state else {
            panic!()
        };
        now = at;
        pool.handle(Event::Tick, now);
        pool.handle(
            Event::Spawned {
                slot: 0,
                pid: pid(500 + i),
            },
            now,
        );
    }
    assert_eq!(pool.phase(), Phase::Running);
}

#[test]
fn spawn_failures_count_as_quick_deaths() {
    let t0 = Instant::now();
    let mut pool = Pool::new(settings(1), 1);
    pool.handle(Event::Start, t0);
    let actions = pool.handle(
        Event::SpawnFailed {
            slot: 0,
            error: "no such file".into(),
        },
        t0,
    );
    assert!(actions.is_empty());
    assert_eq!(
        pool.slots()[0].state,
        State::Pending {
            at: t0 + Duration::from_millis(100)
        }
    );
}

#[test]
fn graceful_stop_signals_every_worker_then_kills_at_the_timeout() {
    let t0 = Instant::now();
    let mut pool = ready_pool(2, t0);
    let actions = pool.handle(Event::Stop { fast: false }, t0);
    assert_eq!(
        actions,
        vec![
            Action::AnnounceStopping,
            Action::Signal {
                pid: pid(100),
                signal: Signal::SIGTERM
            },
            Action::Signal {
                pid: pid(101),
                signal: Signal::SIGTERM
            },
        ]
    );
    // Worker 0 stops in time; worker 1 ignores SIGTERM.
    let actions = pool.handle(
        Event::Exited {
            pid: pid(100),
            exit: Exit::Code(0),
        },
        t0,
    );
    assert!(actions.is_empty(), "no respawn while stopping: {actions:?}");
    let deadline = t0 + Duration::from_secs(25);
    assert_eq!(pool.next_deadline(), Some(deadline));
    assert!(
        pool.handle(Event::Tick, deadline - Duration::from_millis(1))
            .is_empty()
    );
    assert_eq!(
        pool.handle(Event::Tick, deadline),
        vec![Action::Signal {
            pid: pid(101),
            signal: Signal::SIGKILL
        }]
    );
    assert_eq!(
        pool.handle(
            Event::Exited {
                pid: pid(101),
                exit: KILLED
            },
            deadline
        ),
        vec![Action::Exit(ExitCode::Clean)]
    );
}

#[test]
fn a_second_stop_request_is_ignored_and_a_fast_stop_escalates() {
    let t0 = Instant::now();
    let mut pool = ready_pool(1, t0);
    pool.handle(Event::Stop { fast: false }, t0);
    assert!(pool.handle(Event::Stop { fast: false }, t0).is_empty());
    assert_eq!(
        pool.handle(Event::Stop { fast: true }, t0),
        vec![Action::Signal {
            pid: pid(100),
            signal: Signal::SIGKILL
        }]
    );
}

#[test]
fn fast_stop_kills_at_once() {
    let t0 = Instant::now();
    let mut pool = ready_pool(2, t0);
    let actions = pool.handle(Event::Stop { fast: true }, t0);
    assert_eq!(actions.len(), 3);
    assert!(actions[1..].iter().all(|a| matches!(
        a,
        Action::Signal {
            signal: Signal::SIGKILL,
            ..
        }
    )));
}

#[test]
fn stop_during_start_up_stops_what_was_started_and_starts_nothing_more() {
    let t0 = Instant::now();
    let mut pool = Pool::new(settings(3), 1);
    pool.handle(Event::Start, t0);
    pool.handle(
        Event::Spawned {
            slot: 0,
            pid: pid(100),
        },
        t0,
    );
    // Slot 1 is still being forked, slot 2 not yet.
    let actions = pool.handle(Event::Stop { fast: false }, t0);
    assert_eq!(
        actions[1],
        Action::Signal {
            pid: pid(100),
            signal: Signal::SIGTERM
        }
    );
    // The fork in flight completes: that worker is stopped too.
    let actions = pool.handle(
        Event::Spawned {
            slot: 1,
            pid: pid(101),
        },
        t0,
    );
    assert_eq!(
        actions,
        vec![Action::Signal {
            pid: pid(101),
            signal: Signal::SIGTERM
        }]
    );
    pool.handle(
        Event::Spawned {
            slot: 2,
            pid: pid(102),
        },
        t0,
    );
    pool.handle(
        Event::Exited {
            pid: pid(100),
            exit: Exit::Code(0),
        },
        t0,
    );
    pool.handle(
        Event::Exited {
            pid: pid(101),
            exit: Exit::Code(0),
        },
        t0,
    );
    let actions = pool.handle(
        Event::Exited {
            pid: pid(102),
            exit: Exit::Code(0),
        },
        t0,
    );
    assert_eq!(actions, vec![Action::Exit(ExitCode::Clean)]);
}

#[test]
fn a_worker_not_ready_in_time_is_killed_and_replaced_with_backoff() {
    let t0 = Instant::now();
    let mut pool = Pool::new(settings(1), 1);
    pool.handle(Event::Start, t0);
    pool.handle(
        Event::Spawned {
            slot: 0,
            pid: pid(100),
        },
        t0,
    );
    let deadline = t0 + Duration::from_secs(30);
    assert_eq!(pool.next_deadline(), Some(deadline));
    assert_eq!(
        pool.handle(Event::Tick, deadline),
        vec![Action::Signal {
            pid: pid(100),
            signal: Signal::SIGKILL
        }]
    );
    pool.handle(
        Event::Exited {
            pid: pid(100),
            exit: KILLED,
        },
        deadline,
    );
    assert_eq!(
        pool.slots()[0].state,
        State::Pending {
            at: deadline + Duration::from_millis(100)
        }
    );
}

#[test]
fn ready_on_start_workers_are_ready_once_spawned() {
    let t0 = Instant::now();
    let mut pool = Pool::new(
        Settings {
            ready_on_start: true,
            ..settings(1)
        },
        1,
    );
    pool.handle(Event::Start, t0);
    let actions = pool.handle(
        Event::Spawned {
            slot: 0,
            pid: pid(100),
        },
        t0,
    );
    assert_eq!(actions, vec![Action::AnnounceReady]);
}

#[test]
fn grow_and_shrink_change_the_pool_but_never_below_one() {
    let t0 = Instant::now();
    let mut pool = ready_pool(2, t0);
    assert_eq!(
        pool.handle(Event::Grow, t0),
        vec![Action::Spawn { slot: 2 }]
    );
    pool.handle(
        Event::Spawned {
            slot: 2,
            pid: pid(102),
        },
        t0,
    );
    pool.handle(Event::Ready { pid: pid(102) }, t0);
    assert_eq!(
        pool.status_line(),
        "3/3 workers ready, generation 1, 0 restarts"
    );
    // Shrink stops the highest slot gracefully and does not replace it.
    assert_eq!(
        pool.handle(Event::Shrink, t0),
        vec![Action::Signal {
            pid: pid(102),
            signal: Signal::SIGTERM
        }]
    );
    assert!(
        pool.handle(
            Event::Exited {
                pid: pid(102),
                exit: Exit::Code(0)
            },
            t0
        )
        .is_empty()
    );
    assert_eq!(pool.slots().len(), 2);
    pool.handle(Event::Shrink, t0);
    pool.handle(
        Event::Exited {
            pid: pid(101),
            exit: Exit::Code(0),
        },
        t0,
    );
    assert_eq!(pool.slots().len(), 1);
    assert!(pool.handle(Event::Shrink, t0).is_empty(), "never below 1");
    assert_eq!(pool.slots().len(), 1);
}

#[test]
fn a_grow_while_a_slot_retires_restarts_it_after_it_exits() {
    let t0 = Instant::now();
    let mut pool = ready_pool(2, t0);
    pool.handle(Event::Shrink, t0);
    assert!(pool.handle(Event::Grow, t0).is_empty());
    assert_eq!(
        pool.handle(
            Event::Exited {
                pid: pid(101),
                exit: Exit::Code(0)
            },
            t0
        ),
        vec![Action::Spawn { slot: 1 }]
    );
}

#[test]
fn unknown_pids_are_orphans_and_change_nothing() {
    let t0 = Instant::now();
    let mut pool = ready_pool(1, t0);
    assert!(
        pool.handle(
            Event::Exited {
                pid: pid(9999),
                exit: Exit::Code(0)
            },
            t0
        )
        .is_empty()
    );
    assert!(pool.handle(Event::Ready { pid: pid(9999) }, t0).is_empty());
    assert_eq!(
        pool.status_line(),
        "1/1 workers ready, generation 1, 0 restarts"
    );
}
