//! The state machine, driven with invented pids and instants.

use std::collections::BTreeSet;

use super::*;

fn settings(count: usize) -> Settings {
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
        recycle: Recycling::default(),
    }
}

/// The actions `pool` decides on for `event` (its notices aside), for
/// workers that leave nothing behind: every sweep ordered is answered at
/// once with `Swept` (and left out); `sweep_tests` test sweeps.
fn handle(pool: &mut Pool, event: Event, now: Instant) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut events = vec![event];
    while let Some(event) = events.pop() {
        for action in pool.handle(event, now).actions {
            match action {
                Action::Sweep { orders } => {
                    events.extend(orders.into_iter().map(|o| Event::Swept { scope: o.scope }))
                }
                other => actions.push(other),
            }
        }
    }
    actions
}

fn pid(n: i32) -> Pid {
    Pid::from_raw(n)
}

/// A pool of `count` workers, all spawned (pids 100, 101, …) and ready.
fn ready_pool(count: usize, t0: Instant) -> Pool {
    let mut pool = Pool::new(settings(count), 1);
    let actions = handle(&mut pool, Event::Start, t0);
    assert_eq!(
        actions,
        (0..count)
            .map(|slot| Action::Spawn {
                slot,
                generation: 1
            })
            .collect::<Vec<_>>()
    );
    for slot in 0..count {
        handle(
            &mut pool,
            Event::Spawned {
                slot,
                generation: 1,
                pid: pid(100 + slot as i32),
            },
            t0,
        );
    }
    for slot in 0..count {
        let actions = handle(
            &mut pool,
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
    let actions = handle(
        &mut pool,
        Event::Exited {
            pid: pid(101),
            exit: KILLED,
        },
        t1,
    );
    assert_eq!(
        actions,
        vec![Action::Spawn {
            slot: 1,
            generation: 1
        }]
    );
    handle(
        &mut pool,
        Event::Spawned {
            slot: 1,
            generation: 1,
            pid: pid(200),
        },
        t1,
    );
    assert!(handle(&mut pool, Event::Ready { pid: pid(200) }, t1).is_empty());
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
    let actions = handle(
        &mut pool,
        Event::Exited {
            pid: pid(100),
            exit: KILLED,
        },
        later,
    );
    assert_eq!(
        actions,
        vec![Action::Spawn {
            slot: 0,
            generation: 1
        }]
    );
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
        let actions = handle(
            &mut pool,
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
        assert!(handle(&mut pool, Event::Tick, at - Duration::from_millis(1)).is_empty());
        now = at;
        assert_eq!(
            handle(&mut pool, Event::Tick, now),
            vec![Action::Spawn {
                slot: 0,
                generation: 1
            }]
        );
        handle(
            &mut pool,
            Event::Spawned {
                slot: 0,
                generation: 1,
                pid: pid(next_pid),
            },
            now,
        );
        handle(&mut pool, Event::Ready { pid: pid(next_pid) }, now);
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
        handle(
            &mut pool,
            Event::Exited {
                pid: current,
                exit: Exit::Code(1)
            },
            now
        ),
        vec![Action::Spawn {
            slot: 0,
            generation: 1
        }]
    );
}

#[test]
fn a_pool_where_no_worker_ever_becomes_ready_gives_up_with_69() {
    let t0 = Instant::now();
    let mut pool = Pool::new(settings(2), 1);
    handle(&mut pool, Event::Start, t0);
    let mut now = t0;
    let mut exit = None;
    let mut spawned = 0;
    for round in 0..10 {
        for slot in 0..2 {
            if let State::Pending { at } = pool.slots()[slot].state {
                now = now.max(at);
                handle(&mut pool, Event::Tick, now);
            }
            if pool.slots()[slot].state == State::Spawning {
                let p = pid(1000 + round * 2 + slot as i32);
                handle(
                    &mut pool,
                    Event::Spawned {
                        slot,
                        generation: 1,
                        pid: p,
                    },
                    now,
                );
                spawned += 1;
                let actions = handle(
                    &mut pool,
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
        let actions = handle(
            &mut pool,
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
        handle(&mut pool, Event::Tick, now);
        handle(
            &mut pool,
            Event::Spawned {
                slot: 0,
                generation: 1,
                pid: pid(500 + i),
            },
            now,
        );
    }
    assert_eq!(pool.phase, Phase::Running);
}

#[test]
fn spawn_failures_count_as_quick_deaths() {
    let t0 = Instant::now();
    let mut pool = Pool::new(settings(1), 1);
    handle(&mut pool, Event::Start, t0);
    let actions = handle(
        &mut pool,
        Event::SpawnFailed {
            slot: 0,
            generation: 1,
            master_fault: false,
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
    let actions = handle(&mut pool, Event::Stop { fast: false }, t0);
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
    let actions = handle(
        &mut pool,
        Event::Exited {
            pid: pid(100),
            exit: Exit::Code(0),
        },
        t0,
    );
    assert!(actions.is_empty(), "no respawn while stopping: {actions:?}");
    let deadline = t0 + Duration::from_secs(25);
    assert_eq!(pool.next_deadline(), Some(deadline));
    assert!(handle(&mut pool, Event::Tick, deadline - Duration::from_millis(1)).is_empty());
    assert_eq!(
        handle(&mut pool, Event::Tick, deadline),
        vec![Action::Signal {
            pid: pid(101),
            signal: Signal::SIGKILL
        }]
    );
    assert_eq!(
        handle(
            &mut pool,
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
    handle(&mut pool, Event::Stop { fast: false }, t0);
    assert!(handle(&mut pool, Event::Stop { fast: false }, t0).is_empty());
    assert_eq!(
        handle(&mut pool, Event::Stop { fast: true }, t0),
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
    let actions = handle(&mut pool, Event::Stop { fast: true }, t0);
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
    handle(&mut pool, Event::Start, t0);
    handle(
        &mut pool,
        Event::Spawned {
            slot: 0,
            generation: 1,
            pid: pid(100),
        },
        t0,
    );
    // Slot 1 is still being forked, slot 2 not yet.
    let actions = handle(&mut pool, Event::Stop { fast: false }, t0);
    assert_eq!(
        actions[1],
        Action::Signal {
            pid: pid(100),
            signal: Signal::SIGTERM
        }
    );
    // The fork in flight completes: that worker is stopped too.
    let actions = handle(
        &mut pool,
        Event::Spawned {
            slot: 1,
            generation: 1,
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
    handle(
        &mut pool,
        Event::Spawned {
            slot: 2,
            generation: 1,
            pid: pid(102),
        },
        t0,
    );
    handle(
        &mut pool,
        Event::Exited {
            pid: pid(100),
            exit: Exit::Code(0),
        },
        t0,
    );
    handle(
        &mut pool,
        Event::Exited {
            pid: pid(101),
            exit: Exit::Code(0),
        },
        t0,
    );
    let actions = handle(
        &mut pool,
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
    handle(&mut pool, Event::Start, t0);
    handle(
        &mut pool,
        Event::Spawned {
            slot: 0,
            generation: 1,
            pid: pid(100),
        },
        t0,
    );
    let deadline = t0 + Duration::from_secs(30);
    assert_eq!(pool.next_deadline(), Some(deadline));
    assert_eq!(
        handle(&mut pool, Event::Tick, deadline),
        vec![Action::Signal {
            pid: pid(100),
            signal: Signal::SIGKILL
        }]
    );
    handle(
        &mut pool,
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
    handle(&mut pool, Event::Start, t0);
    let actions = handle(
        &mut pool,
        Event::Spawned {
            slot: 0,
            generation: 1,
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
        handle(&mut pool, Event::Grow, t0),
        vec![Action::Spawn {
            slot: 2,
            generation: 1
        }]
    );
    handle(
        &mut pool,
        Event::Spawned {
            slot: 2,
            generation: 1,
            pid: pid(102),
        },
        t0,
    );
    handle(&mut pool, Event::Ready { pid: pid(102) }, t0);
    assert_eq!(
        pool.status_line(),
        "3/3 workers ready, generation 1, 0 restarts"
    );
    // Shrink stops the highest slot gracefully and does not replace it.
    assert_eq!(
        handle(&mut pool, Event::Shrink, t0),
        vec![Action::Signal {
            pid: pid(102),
            signal: Signal::SIGTERM
        }]
    );
    assert!(
        handle(
            &mut pool,
            Event::Exited {
                pid: pid(102),
                exit: Exit::Code(0)
            },
            t0
        )
        .is_empty()
    );
    assert_eq!(pool.slots().len(), 2);
    handle(&mut pool, Event::Shrink, t0);
    handle(
        &mut pool,
        Event::Exited {
            pid: pid(101),
            exit: Exit::Code(0),
        },
        t0,
    );
    assert_eq!(pool.slots().len(), 1);
    assert!(
        handle(&mut pool, Event::Shrink, t0).is_empty(),
        "never below 1"
    );
    assert_eq!(pool.slots().len(), 1);
}

#[test]
fn a_grow_while_a_slot_retires_restarts_it_after_it_exits() {
    let t0 = Instant::now();
    let mut pool = ready_pool(2, t0);
    handle(&mut pool, Event::Shrink, t0);
    assert!(handle(&mut pool, Event::Grow, t0).is_empty());
    assert_eq!(
        handle(
            &mut pool,
            Event::Exited {
                pid: pid(101),
                exit: Exit::Code(0)
            },
            t0
        ),
        vec![Action::Spawn {
            slot: 1,
            generation: 1
        }]
    );
}

#[test]
fn unknown_pids_are_orphans_and_change_nothing() {
    let t0 = Instant::now();
    let mut pool = ready_pool(1, t0);
    assert!(
        handle(
            &mut pool,
            Event::Exited {
                pid: pid(9999),
                exit: Exit::Code(0)
            },
            t0
        )
        .is_empty()
    );
    assert!(handle(&mut pool, Event::Ready { pid: pid(9999) }, t0).is_empty());
    assert_eq!(
        pool.status_line(),
        "1/1 workers ready, generation 1, 0 restarts"
    );
}

/// Drives a reload to `generation`, answering every spawn of that
/// generation with a fresh pid (from `first_pid`) that becomes ready.
fn reload_all(
    pool: &mut Pool,
    settings: Settings,
    generation: u64,
    first_pid: i32,
    t: Instant,
) -> Vec<Action> {
    let mut all = Vec::new();
    let mut pending = handle(
        pool,
        Event::Reload {
            settings,
            generation,
        },
        t,
    );
    let mut next = first_pid;
    for _ in 0..100 {
        let spawns: Vec<usize> = pending
            .iter()
            .filter_map(|a| match a {
                Action::Spawn {
                    slot,
                    generation: g,
                } if *g == generation => Some(*slot),
                _ => None,
            })
            .collect();
        all.append(&mut pending);
        if spawns.is_empty() {
            return all;
        }
        for slot in spawns {
            pending.extend(handle(
                pool,
                Event::Spawned {
                    slot,
                    generation,
                    pid: pid(next),
                },
                t,
            ));
            pending.extend(handle(pool, Event::Ready { pid: pid(next) }, t));
            next += 1;
        }
    }
    panic!("the reload did not settle: {all:?}");
}

/// The workers `actions` signalled drain and exit: what the pool does then
/// (a reload is reported finished once they are gone).
fn drain(pool: &mut Pool, actions: &[Action], t: Instant) -> Vec<Action> {
    let mut all = Vec::new();
    for a in actions {
        if let Action::Signal { pid, .. } = a {
            let exit = Exit::Code(0);
            all.extend(handle(pool, Event::Exited { pid: *pid, exit }, t));
        }
    }
    all
}

/// The pool's actions on `pid` of `generation` spawned for `slot`.
fn spawned(pool: &mut Pool, slot: usize, generation: u64, new: Pid, t: Instant) -> Vec<Action> {
    let event = Event::Spawned {
        slot,
        generation,
        pid: new,
    };
    handle(pool, event, t)
}

/// The pool's actions on `pid` exiting with `exit`.
fn exited(pool: &mut Pool, old: Pid, exit: Exit, t: Instant) -> Vec<Action> {
    handle(pool, Event::Exited { pid: old, exit }, t)
}

/// The pool's actions on a reload to `generation` with `settings`.
fn reload(pool: &mut Pool, settings: Settings, generation: u64, t: Instant) -> Vec<Action> {
    let event = Event::Reload {
        settings,
        generation,
    };
    handle(pool, event, t)
}

#[test]
fn a_reload_replaces_slots_one_by_one_and_never_has_fewer_ready_than_n() {
    let t0 = Instant::now();
    let mut pool = ready_pool(3, t0);
    let actions = reload(&mut pool, settings(3), 2, t0);
    assert_eq!(
        actions,
        vec![
            Action::AnnounceReloading,
            Action::Spawn {
                slot: 0,
                generation: 2
            }
        ]
    );
    let ready_count = |pool: &Pool| pool.slots().iter().filter(|s| s.state.is_ready()).count();
    for (i, old) in [100, 101, 102].into_iter().enumerate() {
        let new = pid(200 + i as i32);
        assert!(spawned(&mut pool, i, 2, new, t0).is_empty());
        assert_eq!(
            ready_count(&pool),
            3,
            "the old worker serves while the new one starts"
        );
        let actions = handle(&mut pool, Event::Ready { pid: new }, t0);
        // The old worker is stopped only now, and the next slot begins.
        assert_eq!(
            actions[0],
            Action::Signal {
                pid: pid(old),
                signal: Signal::SIGTERM
            }
        );
        if i < 2 {
            assert_eq!(
                actions[1..],
                [Action::Spawn {
                    slot: i + 1,
                    generation: 2
                }]
            );
        } else {
            // READY=1 now; the reload is reported finished only once the
            // retired workers are gone.
            assert_eq!(actions[1..], [Action::AnnounceReady]);
        }
        assert_eq!(ready_count(&pool), 3);
        assert_eq!(pool.slots()[i].generation, 2);
    }
    // The drained workers' exits are expected: no respawn; the last one
    // finishes the reload.
    for old in [100, 101, 102] {
        let actions = exited(&mut pool, pid(old), Exit::Code(0), t0);
        if old < 102 {
            assert!(actions.is_empty(), "{actions:?}");
        } else {
            assert_eq!(
                actions,
                [Action::ReloadFinished(ReloadOutcome::Done {
                    generation: 2
                })]
            );
        }
    }
    assert_eq!(pool.generations_in_use(), BTreeSet::from([2]));
    assert_eq!(
        pool.status_line(),
        "3/3 workers ready, generation 2, 0 restarts"
    );
}

#[test]
fn workers_are_stopped_as_their_own_generation_says() {
    let t0 = Instant::now();
    // Generation 1: SIGTERM, killed after 25 s; generation 2: SIGQUIT, 1 s.
    let mut pool = ready_pool(1, t0);
    let mut quick = settings(1);
    quick.stop_signal = Signal::SIGQUIT;
    quick.stop_timeout = Duration::from_secs(1);
    let actions = reload_all(&mut pool, quick, 2, 200, t0);
    let signal = |pid: Pid, signal| Action::Signal { pid, signal };
    // The replaced worker drains as it was started to: SIGTERM...
    assert!(
        actions.contains(&signal(pid(100), Signal::SIGTERM)),
        "{actions:?}"
    );
    assert!(!actions.contains(&signal(pid(100), Signal::SIGQUIT)));
    // ... and its own 25 s, not the new generation's 1 s.
    let kill = signal(pid(100), Signal::SIGKILL);
    assert!(!handle(&mut pool, Event::Tick, t0 + Duration::from_secs(2)).contains(&kill));
    assert!(handle(&mut pool, Event::Tick, t0 + Duration::from_secs(25)).contains(&kill));
    handle(
        &mut pool,
        Event::Exited {
            pid: pid(100),
            exit: KILLED,
        },
        t0 + Duration::from_secs(25),
    );
    assert_eq!(pool.generations_in_use(), BTreeSet::from([2]));
    // The new worker stops with the new generation's signal and timeout.
    let t1 = t0 + Duration::from_secs(30);
    let actions = handle(&mut pool, Event::Stop { fast: false }, t1);
    assert!(
        actions.contains(&signal(pid(200), Signal::SIGQUIT)),
        "{actions:?}"
    );
    assert!(
        handle(&mut pool, Event::Tick, t1 + Duration::from_secs(1))
            .contains(&signal(pid(200), Signal::SIGKILL))
    );
}

#[test]
fn a_new_worker_that_fails_rolls_the_reload_back_and_the_old_generation_keeps_serving() {
    let t0 = Instant::now();
    let mut pool = ready_pool(2, t0);
    reload(&mut pool, settings(2), 2, t0);
    // Slot 0 is replaced fine.
    spawned(&mut pool, 0, 2, pid(200), t0);
    let a = handle(&mut pool, Event::Ready { pid: pid(200) }, t0);
    assert_eq!(
        a[1],
        Action::Spawn {
            slot: 1,
            generation: 2
        }
    );
    // Slot 1's new worker crashes before it is ready.
    spawned(&mut pool, 1, 2, pid(201), t0);
    let a = exited(&mut pool, pid(201), Exit::Code(1), t0);
    // Rollback: slot 0 is replaced back with generation 1; slot 1's old worker never stopped.
    assert_eq!(
        a,
        vec![Action::Spawn {
            slot: 0,
            generation: 1
        }]
    );
    assert!(matches!(pool.slots()[1].state, State::Ready { pid: p, .. } if p == pid(101)));
    assert_eq!(pool.generation(), 1);
    assert!(
        pool.status_line().ends_with("rolling back a failed reload"),
        "{}",
        pool.status_line()
    );
    spawned(&mut pool, 0, 1, pid(300), t0);
    let a = handle(&mut pool, Event::Ready { pid: pid(300) }, t0);
    assert_eq!(
        a[0],
        Action::Signal {
            pid: pid(200),
            signal: Signal::SIGTERM
        }
    );
    assert_eq!(a[1..], [Action::AnnounceReady]);
    assert!(
        pool.slots()
            .iter()
            .all(|s| s.generation == 1 && s.state.is_ready())
    );
    // Reported once the replaced workers are gone.
    assert!(exited(&mut pool, pid(100), Exit::Code(0), t0).is_empty());
    let a = exited(&mut pool, pid(200), Exit::Code(0), t0);
    assert_eq!(
        a,
        [Action::ReloadFinished(ReloadOutcome::RolledBack {
            reason: "worker 1 (pid 201) of generation 2 exited with status 1".into()
        })]
    );
}

#[test]
fn a_new_worker_that_misses_ready_timeout_is_killed_and_the_reload_rolled_back() {
    let t0 = Instant::now();
    let mut pool = ready_pool(1, t0);
    handle(
        &mut pool,
        Event::Reload {
            settings: settings(1),
            generation: 2,
        },
        t0,
    );
    handle(
        &mut pool,
        Event::Spawned {
            slot: 0,
            generation: 2,
            pid: pid(200),
        },
        t0,
    );
    let late = t0 + Duration::from_secs(30);
    assert_eq!(
        handle(&mut pool, Event::Tick, late),
        vec![Action::Signal {
            pid: pid(200),
            signal: Signal::SIGKILL
        }]
    );
    let a = handle(
        &mut pool,
        Event::Exited {
            pid: pid(200),
            exit: KILLED,
        },
        late,
    );
    // Nothing was replaced yet: the rollback has nothing to do and ends at once.
    assert_eq!(
        a,
        vec![
            Action::AnnounceReady,
            Action::ReloadFinished(ReloadOutcome::RolledBack {
                reason: "worker 0 (pid 200) of generation 2 not ready after 30s".into()
            }),
        ]
    );
    assert!(matches!(pool.slots()[0].state, State::Ready { pid: p, .. } if p == pid(100)));
}

#[test]
fn a_reload_while_one_runs_or_while_stopping_is_rejected() {
    let t0 = Instant::now();
    let mut pool = ready_pool(1, t0);
    handle(
        &mut pool,
        Event::Reload {
            settings: settings(1),
            generation: 2,
        },
        t0,
    );
    assert_eq!(
        handle(
            &mut pool,
            Event::Reload {
                settings: settings(1),
                generation: 3
            },
            t0
        ),
        vec![Action::ReloadFinished(ReloadOutcome::Rejected {
            reason: "a reload is already in progress".into()
        })]
    );
    let a = handle(&mut pool, Event::Stop { fast: false }, t0);
    assert!(a.contains(&Action::ReloadFinished(ReloadOutcome::Rejected {
        reason: "hawkey is stopping".into()
    })));
}

#[test]
fn a_reload_can_change_the_worker_count() {
    let t0 = Instant::now();
    let mut pool = ready_pool(2, t0);
    let mut actions = reload_all(&mut pool, settings(3), 2, 200, t0);
    actions.extend(drain(&mut pool, &actions, t0));
    assert!(
        actions.contains(&Action::ReloadFinished(ReloadOutcome::Done {
            generation: 2
        })),
        "{actions:?}"
    );
    assert_eq!(pool.slots().len(), 3);
    assert!(
        pool.slots()
            .iter()
            .all(|s| s.generation == 2 && s.state.is_ready())
    );
    // And down again: the extra slot is stopped at the end, not replaced.
    let mut actions = reload_all(&mut pool, settings(1), 3, 300, t0);
    actions.extend(drain(&mut pool, &actions, t0));
    assert!(
        actions.contains(&Action::ReloadFinished(ReloadOutcome::Done {
            generation: 3
        })),
        "{actions:?}"
    );
    let stopped: Vec<_> = actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Signal {
                    signal: Signal::SIGTERM,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(
        stopped.len(),
        3,
        "slot 0's old worker and the two extra slots: {actions:?}"
    );
}

fn heartbeat_settings() -> Settings {
    Settings {
        heartbeat: Some(Duration::from_secs(3)),
        ..settings(1)
    }
}

#[test]
fn a_worker_that_stops_sending_heartbeats_is_killed_and_replaced_at_once() {
    let t0 = Instant::now();
    let mut pool = Pool::new(heartbeat_settings(), 1);
    handle(&mut pool, Event::Start, t0);
    handle(
        &mut pool,
        Event::Spawned {
            slot: 0,
            generation: 1,
            pid: pid(100),
        },
        t0,
    );
    handle(&mut pool, Event::Ready { pid: pid(100) }, t0);
    assert_eq!(pool.next_deadline(), Some(t0 + Duration::from_secs(3)));
    // Beats keep it alive.
    let t1 = t0 + Duration::from_secs(2);
    handle(&mut pool, Event::Heartbeat { pid: pid(100) }, t1);
    assert!(handle(&mut pool, Event::Tick, t0 + Duration::from_secs(4)).is_empty());
    // Silence for the whole timeout: SIGKILL.
    let t2 = t1 + Duration::from_secs(3);
    assert_eq!(
        handle(&mut pool, Event::Tick, t2),
        vec![Action::Signal {
            pid: pid(100),
            signal: Signal::SIGKILL
        }]
    );
    assert!(
        !pool.healthy(t2 + KILL_GRACE + Duration::from_secs(1)),
        "a process that resists SIGKILL"
    );
    // It hung; it did not crash-loop: replaced without backoff.
    assert_eq!(
        handle(
            &mut pool,
            Event::Exited {
                pid: pid(100),
                exit: KILLED
            },
            t2
        ),
        vec![Action::Spawn {
            slot: 0,
            generation: 1
        }]
    );
    assert!(pool.healthy(t2));
}

#[test]
fn after_the_master_stalls_heartbeat_deadlines_start_afresh() {
    let t0 = Instant::now();
    let mut pool = Pool::new(heartbeat_settings(), 1);
    handle(&mut pool, Event::Start, t0);
    handle(
        &mut pool,
        Event::Spawned {
            slot: 0,
            generation: 1,
            pid: pid(100),
        },
        t0,
    );
    handle(&mut pool, Event::Ready { pid: pid(100) }, t0);
    // The master was stopped for 10s: no heartbeat was heard.
    let t1 = t0 + Duration::from_secs(10);
    assert!(handle(&mut pool, Event::Stalled, t1).is_empty());
    assert!(
        handle(&mut pool, Event::Tick, t1).is_empty(),
        "no worker killed for the master's own stall"
    );
    assert_eq!(pool.next_deadline(), Some(t1 + Duration::from_secs(3)));
}

#[test]
fn a_master_side_spawn_failure_makes_the_pool_unhealthy_until_a_spawn_works() {
    let t0 = Instant::now();
    let mut pool = Pool::new(settings(1), 1);
    handle(&mut pool, Event::Start, t0);
    handle(
        &mut pool,
        Event::SpawnFailed {
            slot: 0,
            generation: 1,
            error: "fork: EAGAIN".into(),
            master_fault: true,
        },
        t0,
    );
    assert!(!pool.healthy(t0));
    let t1 = t0 + Duration::from_millis(100);
    handle(&mut pool, Event::Tick, t1);
    handle(
        &mut pool,
        Event::Spawned {
            slot: 0,
            generation: 1,
            pid: pid(100),
        },
        t1,
    );
    assert!(pool.healthy(t1));
}

#[test]
fn a_ready_worker_killed_from_outside_is_replaced_at_once_however_often() {
    let t0 = Instant::now();
    let mut pool = ready_pool(1, t0);
    let mut now = t0;
    for next in 200..220 {
        // SIGKILLed 10ms after it became ready, again and again.
        now += Duration::from_millis(10);
        let current = pool.slots()[0].state.pid().unwrap();
        assert_eq!(
            handle(
                &mut pool,
                Event::Exited {
                    pid: current,
                    exit: KILLED
                },
                now
            ),
            vec![Action::Spawn {
                slot: 0,
                generation: 1
            }],
            "no backoff for an outside kill"
        );
        handle(
            &mut pool,
            Event::Spawned {
                slot: 0,
                generation: 1,
                pid: pid(next),
            },
            now,
        );
        handle(&mut pool, Event::Ready { pid: pid(next) }, now);
    }
    // An app that crashes by itself still backs off.
    let current = pool.slots()[0].state.pid().unwrap();
    assert!(
        handle(
            &mut pool,
            Event::Exited {
                pid: current,
                exit: Exit::Code(1)
            },
            now
        )
        .is_empty()
    );
}

#[test]
fn a_reload_with_a_surge_replaces_that_many_at_once_and_never_has_fewer_ready_than_n() {
    let t0 = Instant::now();
    let mut pool = ready_pool(4, t0);
    let mut surge2 = settings(4);
    surge2.surge = 2;
    let spawn = |slot| Action::Spawn {
        slot,
        generation: 2,
    };
    let actions = reload(&mut pool, surge2, 2, t0);
    assert_eq!(actions, vec![Action::AnnounceReloading, spawn(0), spawn(1)]);
    let ready_count = |pool: &Pool| pool.slots().iter().filter(|s| s.state.is_ready()).count();
    for slot in [0, 1] {
        assert!(spawned(&mut pool, slot, 2, pid(200 + slot as i32), t0).is_empty());
    }
    assert_eq!(ready_count(&pool), 4, "the old workers serve meanwhile");
    // One new worker ready: its old one stops, the next slot begins; two
    // replacements are in flight again.
    let actions = handle(&mut pool, Event::Ready { pid: pid(200) }, t0);
    let term = |p| Action::Signal {
        pid: pid(p),
        signal: Signal::SIGTERM,
    };
    assert_eq!(actions, vec![term(100), spawn(2)]);
    assert_eq!(ready_count(&pool), 4);
    let actions = handle(&mut pool, Event::Ready { pid: pid(201) }, t0);
    assert_eq!(actions, vec![term(101), spawn(3)]);
    for slot in [2, 3] {
        spawned(&mut pool, slot, 2, pid(200 + slot as i32), t0);
    }
    assert_eq!(
        handle(&mut pool, Event::Ready { pid: pid(202) }, t0),
        vec![term(102)]
    );
    assert_eq!(
        handle(&mut pool, Event::Ready { pid: pid(203) }, t0),
        vec![term(103), Action::AnnounceReady]
    );
    assert_eq!(ready_count(&pool), 4);
    // Finished once the last retired worker is gone.
    for old in 100..104 {
        let actions = exited(&mut pool, pid(old), Exit::Code(0), t0);
        if old < 103 {
            assert!(actions.is_empty(), "{actions:?}");
        } else {
            let done = Action::ReloadFinished(ReloadOutcome::Done { generation: 2 });
            assert_eq!(actions, vec![done]);
        }
    }

    // 100%: the whole generation at once.
    let mut all = settings(4);
    all.surge = 4;
    let actions = reload(&mut pool, all, 3, t0);
    let spawns = actions
        .iter()
        .filter(|a| matches!(a, Action::Spawn { generation: 3, .. }))
        .count();
    assert_eq!(spawns, 4, "{actions:?}");
}

#[test]
fn with_a_surge_one_failure_abandons_the_other_new_workers_and_rolls_back_once() {
    let t0 = Instant::now();
    let mut pool = ready_pool(3, t0);
    let mut surge = settings(3);
    surge.surge = 3;
    handle(
        &mut pool,
        Event::Reload {
            settings: surge,
            generation: 2,
        },
        t0,
    );
    for slot in [0, 1] {
        let spawned = Event::Spawned {
            slot,
            generation: 2,
            pid: pid(200 + slot as i32),
        };
        handle(&mut pool, spawned, t0);
    }
    // Slot 0's new worker crashes; slot 1's is starting, slot 2's is still
    // being forked. The reload rolls back: slot 1's new worker is stopped,
    // nothing is replaced (every slot's old worker still serves).
    let decision = pool.handle(
        Event::Exited {
            pid: pid(200),
            exit: Exit::Code(1),
        },
        t0,
    );
    assert_eq!(
        decision.actions,
        vec![Action::Signal {
            pid: pid(201),
            signal: Signal::SIGTERM
        }]
    );
    // Slot 2's worker arrives late: stopped at once, as a retired one.
    let actions = handle(
        &mut pool,
        Event::Spawned {
            slot: 2,
            generation: 2,
            pid: pid(202),
        },
        t0,
    );
    assert_eq!(
        actions,
        vec![
            Action::Signal {
                pid: pid(202),
                signal: Signal::SIGTERM
            },
            Action::AnnounceReady
        ]
    );
    // Their ends are expected: no second failure (the rollback's reason
    // is the first one), no respawn; the last one reports the rollback.
    for p in [201, 202] {
        let exited = Event::Exited {
            pid: pid(p),
            exit: Exit::Code(1),
        };
        let expected = match p {
            201 => vec![],
            _ => vec![Action::ReloadFinished(ReloadOutcome::RolledBack {
                reason: "worker 0 (pid 200) of generation 2 exited with status 1".into(),
            })],
        };
        assert_eq!(handle(&mut pool, exited, t0), expected);
    }
    assert!(
        pool.slots()
            .iter()
            .all(|s| s.generation == 1 && s.state.is_ready())
    );
    assert_eq!(pool.generation(), 1);
}

/// Sweeps, driven without the auto-answering `handle`.
mod sweep_tests {
    use super::*;

    fn orders(actions: &[Action]) -> Vec<Order> {
        actions
            .iter()
            .flat_map(|a| match a {
                Action::Sweep { orders } => orders.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    fn order(scope: Scope, signal: Signal) -> Order {
        Order { scope, signal }
    }

    #[test]
    fn a_stop_ends_only_once_nothing_the_workers_left_is_running() {
        let t0 = Instant::now();
        let mut pool = ready_pool(1, t0);
        let a = pool.handle(Event::Stop { fast: false }, t0).actions;
        assert_eq!(
            orders(&a),
            [
                order(Scope::Tree(pid(100)), Signal::SIGTERM),
                order(Scope::Everything, Signal::SIGTERM),
            ]
        );
        // The worker is gone, and the master has found nothing else of
        // its tree; but something else it left still runs.
        let a = pool
            .handle(
                Event::Exited {
                    pid: pid(100),
                    exit: Exit::Code(0),
                },
                t0,
            )
            .actions;
        assert!(!a.contains(&Action::Exit(ExitCode::Clean)), "{a:?}");
        let a = pool
            .handle(
                Event::Swept {
                    scope: Scope::Tree(pid(100)),
                },
                t0,
            )
            .actions;
        assert!(!a.contains(&Action::Exit(ExitCode::Clean)), "{a:?}");
        // Looked at again soon, not only at the deadline.
        assert_eq!(pool.next_deadline(), Some(t0 + sweep::PROBE_EVERY));
        let a = pool.handle(Event::Tick, t0 + sweep::PROBE_EVERY).actions;
        assert_eq!(orders(&a), [order(Scope::Everything, Signal::SIGTERM)]);
        // At the stop timeout: SIGKILL.
        let kill_at = t0 + Duration::from_secs(25);
        let a = pool.handle(Event::Tick, kill_at).actions;
        assert_eq!(orders(&a), [order(Scope::Everything, Signal::SIGKILL)]);
        let a = pool
            .handle(
                Event::Swept {
                    scope: Scope::Everything,
                },
                kill_at,
            )
            .actions;
        assert_eq!(a, [Action::Exit(ExitCode::Clean)]);
    }

    #[test]
    fn what_survives_sigkill_is_given_up_on_so_the_stop_ends() {
        let t0 = Instant::now();
        let mut pool = ready_pool(1, t0);
        pool.handle(Event::Stop { fast: true }, t0);
        pool.handle(
            Event::Exited {
                pid: pid(100),
                exit: KILLED,
            },
            t0,
        );
        pool.handle(
            Event::Swept {
                scope: Scope::Tree(pid(100)),
            },
            t0,
        );
        let late = t0 + KILL_GRACE + Duration::from_millis(1);
        let d = pool.handle(Event::Tick, late);
        assert!(
            d.actions.contains(&Action::Exit(ExitCode::Clean)),
            "{:?}",
            d.actions
        );
        assert!(
            d.notices.iter().any(|n| n.level == Level::Error),
            "{:?}",
            d.notices
        );
    }

    #[test]
    fn a_reload_is_reported_finished_once_its_retired_worker_left_nothing() {
        let t0 = Instant::now();
        let mut pool = ready_pool(1, t0);
        pool.handle(
            Event::Reload {
                settings: settings(1),
                generation: 2,
            },
            t0,
        );
        pool.handle(
            Event::Spawned {
                slot: 0,
                generation: 2,
                pid: pid(200),
            },
            t0,
        );
        let a = pool.handle(Event::Ready { pid: pid(200) }, t0).actions;
        assert_eq!(orders(&a), [order(Scope::Tree(pid(100)), Signal::SIGTERM)]);
        assert!(a.contains(&Action::AnnounceReady));
        assert!(pool.is_reloading(), "a second reload waits for this one");
        let a = pool
            .handle(
                Event::Exited {
                    pid: pid(100),
                    exit: Exit::Code(0),
                },
                t0,
            )
            .actions;
        assert!(
            !a.iter().any(|a| matches!(a, Action::ReloadFinished(_))),
            "{a:?}"
        );
        let a = pool
            .handle(
                Event::Swept {
                    scope: Scope::Tree(pid(100)),
                },
                t0,
            )
            .actions;
        assert_eq!(
            a,
            [Action::ReloadFinished(ReloadOutcome::Done {
                generation: 2
            })]
        );
        assert!(!pool.is_reloading());
    }

    #[test]
    fn a_retired_worker_stuck_after_sigkill_does_not_hold_the_reload_forever() {
        let t0 = Instant::now();
        let mut pool = ready_pool(1, t0);
        let reload = Event::Reload {
            settings: settings(1),
            generation: 2,
        };
        pool.handle(reload, t0);
        let spawned = Event::Spawned {
            slot: 0,
            generation: 2,
            pid: pid(200),
        };
        pool.handle(spawned, t0);
        pool.handle(Event::Ready { pid: pid(200) }, t0);
        let kill_at = t0 + Duration::from_secs(25);
        let a = pool.handle(Event::Tick, kill_at).actions;
        assert!(a.contains(&Action::Signal {
            pid: pid(100),
            signal: Signal::SIGKILL
        }));
        assert!(pool.is_reloading());
        // It never dies (uninterruptible sleep): given up on, reported.
        let late = kill_at + KILL_GRACE + Duration::from_millis(1);
        let a = pool.handle(Event::Tick, late).actions;
        assert!(
            a.contains(&Action::ReloadFinished(ReloadOutcome::Done {
                generation: 2
            })),
            "{a:?}"
        );
        assert!(!pool.is_reloading());
        assert!(
            !pool.healthy(late),
            "the stuck worker makes the pool unhealthy"
        );
    }
}

// ---------------------------------------------------------------------------
// ready: auto

fn auto(count: usize) -> Settings {
    Settings {
        ready_when_accepting: true,
        ..settings(count)
    }
}

/// A pool of `settings.count` workers spawned (pids 100, 101, …), none ready.
fn started_pool(settings: Settings, t0: Instant) -> Pool {
    let mut pool = Pool::new(settings, 1);
    handle(&mut pool, Event::Start, t0);
    for slot in 0..settings.count {
        handle(
            &mut pool,
            Event::Spawned {
                slot,
                generation: 1,
                pid: pid(100 + slot as i32),
            },
            t0,
        );
    }
    pool
}

fn seen(pid: Pid) -> Event {
    Event::Accepting {
        pid,
        by: Accepting::Seen {
            listener: "http".into(),
        },
    }
}

#[test]
fn under_auto_a_worker_seen_accepting_is_ready_and_the_notice_says_how() {
    let t0 = Instant::now();
    let mut pool = started_pool(auto(2), t0);
    let d = pool.handle(seen(pid(100)), t0);
    assert!(d.actions.is_empty(), "one of two is ready: {:?}", d.actions);
    assert_eq!(
        d.notices[0].text,
        "worker 0 (pid 100) is ready (seen accepting on http)"
    );
    let reported = Event::Accepting {
        pid: pid(101),
        by: Accepting::Reported,
    };
    let d = pool.handle(reported, t0);
    assert_eq!(d.actions, vec![Action::AnnounceReady]);
    assert_eq!(
        d.notices[0].text,
        "worker 1 (pid 101) is ready (HAWKEY_ACCEPTING=1)"
    );
    // Seen again, or READY=1 after it: nothing more happens.
    assert!(pool.handle(seen(pid(100)), t0).notices.is_empty());
    assert!(
        pool.handle(Event::Ready { pid: pid(101) }, t0)
            .notices
            .is_empty()
    );
}

#[test]
fn under_auto_ready_1_first_is_ready_1() {
    let t0 = Instant::now();
    let mut pool = started_pool(auto(1), t0);
    let d = pool.handle(Event::Ready { pid: pid(100) }, t0);
    assert_eq!(d.actions, vec![Action::AnnounceReady]);
    assert_eq!(d.notices[0].text, "worker 0 (pid 100) is ready (READY=1)");
}

#[test]
fn under_notify_being_seen_accepting_makes_no_worker_ready() {
    let t0 = Instant::now();
    let mut pool = started_pool(settings(1), t0);
    let d = pool.handle(seen(pid(100)), t0);
    assert!(d.actions.is_empty() && d.notices.is_empty(), "{d:?}");
    assert_eq!(pool.slots()[0].state.name(), "starting");
    // Its ready_timeout still applies.
    let late = t0 + Duration::from_secs(30);
    let actions = handle(&mut pool, Event::Tick, late);
    assert_eq!(
        actions,
        vec![Action::Signal {
            pid: pid(100),
            signal: Signal::SIGKILL
        }]
    );
}

#[test]
fn under_auto_workers_that_exit_before_accepting_end_in_exit_69() {
    let t0 = Instant::now();
    let mut pool = Pool::new(auto(2), 1);
    handle(&mut pool, Event::Start, t0);
    let (mut now, mut next, mut exit, mut notices) = (t0, 1000, None, Vec::new());
    for _ in 0..10 * STARTUP_ATTEMPTS {
        for slot in 0..2 {
            if let State::Pending { at } = pool.slots()[slot].state {
                now = now.max(at);
                handle(&mut pool, Event::Tick, now);
            }
            if pool.slots()[slot].state != State::Spawning {
                continue;
            }
            next += 1;
            handle(
                &mut pool,
                Event::Spawned {
                    slot,
                    generation: 1,
                    pid: pid(next),
                },
                now,
            );
            let mut events = vec![Event::Exited {
                pid: pid(next),
                exit: Exit::Code(1),
            }];
            while let Some(event) = events.pop() {
                let d = pool.handle(event, now);
                notices.extend(d.notices.into_iter().map(|n| n.text));
                for action in d.actions {
                    match action {
                        Action::Sweep { orders } => events
                            .extend(orders.into_iter().map(|o| Event::Swept { scope: o.scope })),
                        Action::Exit(code) => exit = Some(code),
                        _ => {}
                    }
                }
            }
        }
        if exit.is_some() {
            break;
        }
    }
    assert_eq!(exit, Some(ExitCode::NoWorkerStarted), "{notices:#?}");
    assert!(
        notices[0].ends_with("exited with status 1 before it was ready, restarting in 100ms"),
        "{notices:#?}"
    );
}

#[test]
fn a_ready_1_from_the_serving_worker_does_not_make_its_replacement_ready() {
    let t0 = Instant::now();
    let mut pool = ready_pool(1, t0);
    handle(
        &mut pool,
        Event::Reload {
            settings: auto(1),
            generation: 2,
        },
        t0,
    );
    handle(
        &mut pool,
        Event::Spawned {
            slot: 0,
            generation: 2,
            pid: pid(200),
        },
        t0,
    );
    // The old worker (or a process it forked) says READY=1 again, or is
    // seen accepting: it is not the new one.
    assert!(handle(&mut pool, Event::Ready { pid: pid(100) }, t0).is_empty());
    assert!(handle(&mut pool, seen(pid(100)), t0).is_empty());
    assert_eq!(
        pool.slots()[0].successor.map(|(g, st)| (g, st.name())),
        Some((2, "starting"))
    );
    // The new one accepting is what replaces the old one.
    let actions = handle(&mut pool, seen(pid(200)), t0);
    assert_eq!(
        actions[0],
        Action::Signal {
            pid: pid(100),
            signal: Signal::SIGTERM
        }
    );
}

#[test]
fn a_failed_exec_names_the_slot_in_its_notice() {
    let t0 = Instant::now();
    let mut pool = Pool::new(auto(1), 1);
    handle(&mut pool, Event::Start, t0);
    let d = pool.handle(
        Event::SpawnFailed {
            slot: 0,
            generation: 1,
            error: "cannot execute /usr/bin/nodee: No such file or directory (os error 2)".into(),
            master_fault: false,
        },
        t0,
    );
    assert_eq!(
        d.notices[0].text,
        "worker 0: cannot execute /usr/bin/nodee: No such file or directory (os error 2)"
    );
}

#[test]
fn a_worker_that_never_became_ready_is_reported_in_its_own_last_words() {
    let t0 = Instant::now();
    let mut pool = started_pool(auto(1), t0);
    let words = Event::LastWords {
        pid: pid(100),
        line: "Error: Cannot find module 'express'".into(),
    };
    assert!(pool.handle(words, t0).notices.is_empty());
    let d = pool.handle(
        Event::Exited {
            pid: pid(100),
            exit: Exit::Code(1),
        },
        t0,
    );
    assert_eq!(
        d.notices[0].text,
        "worker 0 (pid 100) exited with status 1 before it was ready (its last line on stderr: \"Error: Cannot find module 'express'\"), restarting in 100ms"
    );
}

#[test]
fn a_ready_workers_last_words_are_not_part_of_its_exit() {
    let t0 = Instant::now();
    let mut pool = ready_pool(1, t0);
    let later = t0 + Duration::from_secs(10);
    pool.handle(
        Event::LastWords {
            pid: pid(100),
            line: "served 10 requests".into(),
        },
        later,
    );
    let d = pool.handle(
        Event::Exited {
            pid: pid(100),
            exit: Exit::Code(0),
        },
        later,
    );
    assert_eq!(
        d.notices[0].text,
        "worker 0 (pid 100) exited with status 0, restarting"
    );
}

#[test]
fn a_failed_replacement_fails_the_reload_in_its_own_last_words() {
    let t0 = Instant::now();
    let mut pool = ready_pool(1, t0);
    handle(
        &mut pool,
        Event::Reload {
            settings: auto(1),
            generation: 2,
        },
        t0,
    );
    handle(
        &mut pool,
        Event::Spawned {
            slot: 0,
            generation: 2,
            pid: pid(200),
        },
        t0,
    );
    handle(
        &mut pool,
        Event::LastWords {
            pid: pid(200),
            line: "SyntaxError: Unexpected token '}'".into(),
        },
        t0,
    );
    let actions = handle(
        &mut pool,
        Event::Exited {
            pid: pid(200),
            exit: Exit::Code(1),
        },
        t0,
    );
    let reason = actions
        .iter()
        .find_map(|a| match a {
            Action::ReloadFinished(ReloadOutcome::RolledBack { reason }) => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no rollback in {actions:?}"));
    assert_eq!(
        reason,
        "worker 0 (pid 200) of generation 2 exited with status 1 (its last line on stderr: \"SyntaxError: Unexpected token '}'\")"
    );
}
