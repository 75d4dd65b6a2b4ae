//! `app: exec` workers: the socket-passing protocol, spawn hygiene,
//! supervision and stopping, observed from outside through /proc on the
//! real binary.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::*;

fn exec_config(dir: &TempDir, port: u16, workers: &str) -> std::path::PathBuf {
    let sock = dir.join("admin.sock");
    write_config(
        dir,
        &format!(
            "listen:\n  - {{name: web, address: '127.0.0.1:{port}'}}\n  - {{name: admin, address: 'unix:{}'}}\nworkers:\n{workers}\npidfile: {}\nlog: {{level: debug}}\n",
            sock.display(),
            dir.join("hawkey.pid").display()
        ),
    )
}

/// G9: over hundreds of spawns every worker holds exactly stdin (/dev/null),
/// stdout, stderr and the listeners at 3 and 4; LISTEN_PID is its own pid;
/// nothing of the master leaks (fds, systemd's NOTIFY_SOCKET, signal mask,
/// ignored signals).
#[test]
fn every_spawned_worker_gets_exactly_the_listeners_and_a_clean_signal_state() {
    let dir = TempDir::new("hygiene");
    let port = free_port();
    let config = exec_config(
        &dir,
        port,
        "  count: 2\n  app: exec\n  ready: started\n  command: [sleep, '1000']\n  restart_backoff: {initial: 1ms, max: 1ms}\n  env: {HYGIENE: 'yes'}",
    );
    let notify = NotifySocket::new(&dir);
    let mut cmd = command(&config);
    cmd.env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "1000000");
    let hawkey = Hawkey::spawn(cmd);
    let master = hawkey.pid();
    let mut seen = BTreeSet::new();
    let mut checked = 0;
    let started = Instant::now();
    while checked < 300 {
        // A hang guard: 300 spawns take a few seconds.
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {checked} spawns checked in 120s"
        );
        let pids = hawkey.wait_workers(2, "sleep", Duration::from_secs(10));
        for pid in pids {
            if !seen.insert(pid) {
                continue;
            }
            assert_clean_worker(pid);
            checked += 1;
            // SAFETY: kill(2) on a worker pid we just inspected.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    // The listener fds in the master are the same sockets the workers got.
    let master_fds = proc_fds(master);
    assert!(
        master_fds.iter().all(|(_, t)| !t.contains("hawkey.yaml")),
        "{master_fds:?}"
    );
    // No zombie is left behind.
    let zombies: Vec<i32> = children_of(master)
        .into_iter()
        .filter(|p| proc_stat(*p).is_some_and(|(_, s)| s == 'Z'))
        .collect();
    assert!(zombies.len() <= 2, "zombies: {zombies:?}");
}

/// One exec'd worker's start as the hygiene test wants it: fds 0-4 only
/// (stdin /dev/null, the two listeners at 3 and 4), its own LISTEN_PID,
/// the listeners' names, no variable of the master's, an empty signal
/// mask and no ignored signal, its own process group.
fn assert_clean_worker(pid: i32) {
    // Inspect sleep(1) once it sleeps: during its own start-up it
    // briefly opens locale files, which are its doing, not ours.
    wait_until(Duration::from_secs(5), "the worker to be asleep", || {
        std::fs::read_to_string(format!("/proc/{pid}/wchan"))
            .ok()
            .filter(|w| w.contains("nanosleep"))
    });
    let fds = proc_fds(pid);
    let numbers: Vec<i32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [0, 1, 2, 3, 4], "worker {pid} fds: {fds:?}");
    assert_eq!(fds[0].1, "/dev/null");
    assert!(
        fds[3].1.starts_with("socket:") && fds[4].1.starts_with("socket:"),
        "{fds:?}"
    );
    assert_eq!(env_of(pid, "LISTEN_PID"), Some(pid.to_string()));
    assert_eq!(env_of(pid, "LISTEN_FDS").as_deref(), Some("2"));
    assert_eq!(env_of(pid, "LISTEN_FDNAMES").as_deref(), Some("web:admin"));
    assert!(matches!(
        env_of(pid, "HAWKEY_WORKER").as_deref(),
        Some("0" | "1")
    ));
    assert_eq!(env_of(pid, "HYGIENE").as_deref(), Some("yes"));
    for leaked in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "HAWKEY_ROLE"] {
        assert_eq!(env_of(pid, leaked), None, "{leaked} leaked to worker {pid}");
    }
    assert_eq!(
        proc_status(pid, "SigBlk").as_deref(),
        Some("0000000000000000"),
        "mask of {pid}"
    );
    assert_eq!(
        proc_status(pid, "SigIgn").as_deref(),
        Some("0000000000000000"),
        "ignored by {pid}"
    );
    // Its own process group.
    let pgid = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let pgid: i32 = pgid[pgid.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pgid, pid);
}

#[test]
fn an_exec_failure_is_reported_with_the_step_and_retried_with_backoff() {
    let dir = TempDir::new("execfail");
    let program = dir.join("app.sh");
    std::fs::write(&program, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = exec_config(
        &dir,
        free_port(),
        &format!(
            "  count: 1\n  app: exec\n  ready: started\n  command: ['{}']",
            program.display()
        ),
    );
    let mut hawkey = Hawkey::start(&config);
    hawkey.wait_workers(1, "sleep", Duration::from_secs(5));
    // The program disappears; the next spawn fails at execve.
    std::fs::remove_file(&program).unwrap();
    let worker = hawkey.workers()[0];
    // SAFETY: kill(2) on our worker.
    unsafe { libc::kill(worker, libc::SIGKILL) };
    // It names the program and the OS error, as a shell would.
    hawkey.wait_log(
        &format!(
            "worker 0: cannot execute {}: No such file or directory (os error 2)",
            program.display()
        ),
        Duration::from_secs(5),
    );
    hawkey.stop_cleanly();
}

#[test]
fn a_killed_worker_is_logged_in_operator_terms_and_replaced_in_its_slot() {
    let dir = TempDir::new("replace");
    let config = exec_config(
        &dir,
        free_port(),
        "  count: 2\n  app: exec\n  ready: started\n  command: [sleep, '1000']",
    );
    let mut hawkey = Hawkey::start(&config);
    let before = hawkey.wait_workers(2, "sleep", Duration::from_secs(5));
    let victim = before[0];
    let slot = env_of(victim, "HAWKEY_WORKER").unwrap();
    // SAFETY: kill(2) on our worker.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    // Hang guards, 10x G1's 2 s for the pool to be back.
    let after = wait_until(Duration::from_secs(20), "a replacement", || {
        let now: Vec<i32> = hawkey
            .workers()
            .into_iter()
            .filter(|p| proc_comm(*p).as_deref() == Some("sleep"))
            .collect();
        (now.len() == 2 && !now.contains(&victim)).then_some(now)
    });
    let replacement = *after.iter().find(|p| !before.contains(p)).unwrap();
    assert_eq!(env_of(replacement, "HAWKEY_WORKER"), Some(slot.clone()));
    hawkey.wait_log(
        &format!("worker {slot} (pid {victim}) was killed by SIGKILL, restarting"),
        Duration::from_secs(20),
    );
    hawkey.stop_cleanly();
}

#[test]
fn a_crash_looping_worker_backs_off_exponentially() {
    let dir = TempDir::new("backoff");
    let starts = dir.join("starts");
    let config = exec_config(
        &dir,
        free_port(),
        &format!(
            "  count: 1\n  app: exec\n  ready: started\n  command: [sh, -c, 'echo x >> {}; exit 3']",
            starts.display()
        ),
    );
    let mut hawkey = Hawkey::start(&config);
    // Starts at 0, +100ms, +200ms, +400ms, +800ms: 5 by 1.5s, then 1.6s of quiet.
    let count = || {
        std::fs::read_to_string(&starts)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    wait_until(Duration::from_secs(5), "5 starts", || {
        (count() >= 5).then_some(())
    });
    let at_five = count();
    // A count, not a time: at most one more start in 800ms (without
    // backoff there would be dozens); a slow machine only starts fewer.
    std::thread::sleep(Duration::from_millis(800));
    assert!(count() <= at_five + 1, "no backoff: {} starts", count());
    hawkey.wait_log(
        "exited with status 3, restarting in 800ms",
        Duration::from_secs(10),
    );
    hawkey.stop_cleanly();
}

#[test]
fn a_pool_that_never_becomes_ready_exits_69() {
    let dir = TempDir::new("never");
    let config = exec_config(
        &dir,
        free_port(),
        "  count: 2\n  app: exec\n  ready: notify\n  command: [sh, -c, 'exit 1']",
    );
    let mut hawkey = Hawkey::start(&config);
    let status = hawkey.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(69), "{}", hawkey.log_text());
    assert!(
        hawkey
            .log_text()
            .contains("no worker became ready after 3 attempts per slot")
    );
    assert!(!dir.join("hawkey.pid").exists());
}

#[test]
fn ready_notify_workers_count_only_after_ready_1() {
    let dir = TempDir::new("notify");
    // A worker that reports READY=1 through its NOTIFY_SOCKET after 300ms,
    // with systemd-notify (which sends from its own pid): the master must
    // only credit messages from the worker's pid, so use a tiny python
    // sender that is the worker itself.
    let config = exec_config(
        &dir,
        free_port(),
        "  count: 1\n  app: exec\n  ready: notify\n  command: [python3, -c, \"import os,socket,time; time.sleep(0.3); a=os.environ['NOTIFY_SOCKET']; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.connect('\\\\0'+a[1:] if a[0]=='@' else a); s.send(b'READY=1'); time.sleep(1000)\"]",
    );
    let started = Instant::now();
    let (mut hawkey, _notify, messages) = start_ready(&dir, &config);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "ready before the worker said so"
    );
    assert!(
        messages
            .last()
            .unwrap()
            .contains("STATUS=1/1 workers ready"),
        "{messages:?}"
    );
    hawkey.stop_cleanly();
}

#[test]
fn a_worker_ignoring_the_stop_signal_is_killed_at_stop_timeout() {
    let dir = TempDir::new("stoptimeout");
    let config = exec_config(
        &dir,
        free_port(),
        "  count: 2\n  app: exec\n  ready: started\n  command: [sh, -c, 'trap \"\" TERM; sleep 1000']\n  stop_timeout: 700ms",
    );
    let mut hawkey = Hawkey::start(&config);
    let workers = wait_until(Duration::from_secs(5), "workers with their sleep", || {
        let w = hawkey.workers();
        (w.len() == 2 && w.iter().all(|p| !children_of(*p).is_empty())).then_some(w)
    });
    let grandchildren: Vec<i32> = workers.iter().flat_map(|p| children_of(*p)).collect();
    let t0 = Instant::now();
    hawkey.signal(libc::SIGTERM);
    let status = hawkey.wait_exit(Duration::from_secs(10));
    let took = t0.elapsed();
    eprintln!("stop with workers ignoring SIGTERM (stop_timeout 700ms) took {took:?}");
    assert_eq!(status.code(), Some(0));
    // Not killed before its time: a lower bound, which load cannot break.
    // How soon after the timeout is not judged (wait_exit's 10 s above is
    // a hang guard); the log says it was the timeout that killed it.
    assert!(
        took >= Duration::from_millis(700),
        "stopped before stop_timeout: {took:?}"
    );
    assert!(
        hawkey
            .log_text()
            .contains("still running at the stop timeout, killing it")
    );
    // The whole process group went: the worker's own children too.
    wait_until(Duration::from_secs(10), "grandchildren gone", || {
        grandchildren.iter().all(|p| !alive(*p)).then_some(())
    });
}

#[test]
fn workers_die_with_the_master() {
    let dir = TempDir::new("pdeathsig");
    let config = exec_config(
        &dir,
        free_port(),
        "  count: 3\n  app: exec\n  ready: started\n  command: [sleep, '1000']",
    );
    let mut hawkey = Hawkey::start(&config);
    let workers = hawkey.wait_workers(3, "sleep", Duration::from_secs(5));
    hawkey.signal(libc::SIGKILL);
    hawkey.wait_exit(Duration::from_secs(5));
    let t0 = Instant::now();
    // A hang guard, 10x G4's 1 s: the time is printed.
    wait_until(
        Duration::from_secs(10),
        "every worker gone after the master",
        || workers.iter().all(|p| !alive(*p)).then_some(()),
    );
    eprintln!("workers gone {:?} after the master", t0.elapsed());
}

#[test]
fn orphans_of_workers_are_reaped_by_the_master() {
    let dir = TempDir::new("subreaper");
    // The subshell forks a short sleep and exits: the sleep is orphaned and
    // adopted by hawkey, a child subreaper outside systemd.
    let config = exec_config(
        &dir,
        free_port(),
        "  count: 1\n  app: exec\n  ready: started\n  command: [sh, -c, '(sleep 0.2 &); exec sleep 1000']",
    );
    let mut hawkey = Hawkey::start(&config);
    hawkey.wait_workers(1, "sleep", Duration::from_secs(5));
    hawkey.wait_log("not a worker: exited with status 0", Duration::from_secs(5));
    let zombies: Vec<i32> = children_of(hawkey.pid())
        .into_iter()
        .filter(|p| proc_stat(*p).is_some_and(|(_, s)| s == 'Z'))
        .collect();
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
    hawkey.stop_cleanly();
}

#[test]
fn sigttin_and_sigttou_grow_and_shrink_the_pool_but_not_below_one() {
    let dir = TempDir::new("ttin");
    let config = exec_config(
        &dir,
        free_port(),
        "  count: 1\n  app: exec\n  ready: started\n  command: [sleep, '1000']",
    );
    let mut hawkey = Hawkey::start(&config);
    hawkey.wait_workers(1, "sleep", Duration::from_secs(5));
    // Signals of one kind merge while pending: send each after the last took effect.
    hawkey.signal(libc::SIGTTIN);
    hawkey.wait_workers(2, "sleep", Duration::from_secs(5));
    hawkey.signal(libc::SIGTTIN);
    let three = hawkey.wait_workers(3, "sleep", Duration::from_secs(5));
    let slots: BTreeSet<String> = three
        .iter()
        .map(|p| env_of(*p, "HAWKEY_WORKER").unwrap())
        .collect();
    assert_eq!(
        slots,
        ["0", "1", "2"].map(String::from).into_iter().collect()
    );
    for n in [2, 1] {
        hawkey.signal(libc::SIGTTOU);
        hawkey.wait_workers(n, "sleep", Duration::from_secs(5));
    }
    hawkey.signal(libc::SIGTTOU);
    hawkey.wait_log(
        "the pool is at its minimum of 1 worker",
        Duration::from_secs(5),
    );
    let one = hawkey.wait_workers(1, "sleep", Duration::from_secs(5));
    assert_eq!(env_of(one[0], "HAWKEY_WORKER").as_deref(), Some("0"));
    assert!(
        hawkey
            .log_text()
            .contains("the pool is at its minimum of 1 worker")
    );
    hawkey.stop_cleanly();
}

#[test]
fn sigterm_at_any_moment_of_start_up_ends_cleanly_with_no_orphan() {
    let dir = TempDir::new("earlyterm");
    let marker = format!("hawkey-early-{}", std::process::id());
    let config = exec_config(
        &dir,
        free_port(),
        &format!(
            "  count: 4\n  app: exec\n  ready: started\n  command: [sleep, '1000']\n  env: {{MARKER: {marker}}}"
        ),
    );
    for delay_ms in [0u64, 1, 2, 3, 5, 8, 13, 21, 34] {
        let mut hawkey = Hawkey::start(&config);
        std::thread::sleep(Duration::from_millis(delay_ms));
        hawkey.signal(libc::SIGTERM);
        let status = hawkey.wait_exit(Duration::from_secs(10));
        // A SIGTERM that lands before main() has blocked signals (during
        // exec and runtime start-up) ends the process by default action,
        // before anything was started; from then on it is a clean stop.
        let clean = status.code() == Some(0)
            || (std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGTERM)
                && !hawkey.log_text().contains("starting"));
        assert!(
            clean,
            "SIGTERM after {delay_ms}ms: {status:?}: {}",
            hawkey.log_text()
        );
        // No process with our marker survives.
        let survivors: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
            .filter(|p| alive(*p) && env_of(*p, "MARKER").as_deref() == Some(marker.as_str()))
            .collect();
        assert!(
            survivors.is_empty(),
            "orphans after SIGTERM at {delay_ms}ms: {survivors:?}"
        );
        assert!(!dir.join("hawkey.pid").exists());
    }
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn privileges_are_dropped_to_the_configured_user_and_group() {
    require_root("privileges_are_dropped_to_the_configured_user_and_group");
    let dir = TempDir::new("privdrop");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = exec_config(
        &dir,
        free_port(),
        "  count: 1\n  app: exec\n  ready: started\n  command: [sleep, '1000']\n  user: nobody\n  group: nogroup",
    );
    let mut hawkey = Hawkey::start(&config);
    let worker = hawkey.wait_workers(1, "sleep", Duration::from_secs(5))[0];
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap();
    let uid = nobody.uid.as_raw().to_string();
    let gid = nogroup.gid.as_raw().to_string();
    let uids: Vec<String> = proc_status(worker, "Uid")
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    let gids: Vec<String> = proc_status(worker, "Gid")
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(
        uids,
        [uid.clone(), uid.clone(), uid.clone(), uid],
        "real, effective, saved, fs uid"
    );
    assert_eq!(gids, [gid.clone(), gid.clone(), gid.clone(), gid.clone()]);
    let groups = proc_status(worker, "Groups").unwrap();
    assert!(
        !groups.split_whitespace().any(|g| g == "0"),
        "root group kept: {groups}"
    );
    // The master itself stays root (it must be able to bind and spawn).
    assert_eq!(
        proc_status(hawkey.pid(), "Uid")
            .unwrap()
            .split_whitespace()
            .next(),
        Some("0")
    );
    hawkey.stop_cleanly();
}

#[test]
fn workers_run_in_the_configured_cwd_with_the_configured_environment() {
    let dir = TempDir::new("cwd");
    let work = dir.join("app");
    std::fs::create_dir(&work).unwrap();
    let config = exec_config(
        &dir,
        free_port(),
        &format!(
            "  count: 1\n  app: exec\n  ready: started\n  command: [sleep, '1000']\n  cwd: {}\n  env: {{NODE_ENV: production, PORT: '3000'}}",
            work.display()
        ),
    );
    let mut hawkey = Hawkey::start(&config);
    let worker = hawkey.wait_workers(1, "sleep", Duration::from_secs(5))[0];
    assert_eq!(
        std::fs::read_link(format!("/proc/{worker}/cwd")).unwrap(),
        work
    );
    assert_eq!(env_of(worker, "NODE_ENV").as_deref(), Some("production"));
    assert_eq!(env_of(worker, "PORT").as_deref(), Some("3000"));
    hawkey.stop_cleanly();
}

#[test]
fn a_relative_command_found_only_under_cwd_is_accepted_and_runs_there() {
    use std::os::unix::fs::PermissionsExt;
    // `./app` exists under workers.cwd only, not where hawkey runs: it was
    // refused by the check (made from hawkey's directory) though execve
    // after the worker's chdir would find it. Checked as it runs, it runs.
    let dir = TempDir::new("relative");
    let work = dir.join("srv");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir(&work).unwrap();
    std::fs::create_dir(&elsewhere).unwrap();
    let app = work.join("app");
    std::fs::write(&app, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = exec_config(
        &dir,
        free_port(),
        &format!(
            "  count: 1\n  app: exec\n  ready: started\n  command: [./app]\n  cwd: {}",
            work.display()
        ),
    );
    let mut cmd = command(&config);
    cmd.current_dir(&elsewhere);
    let mut hawkey = Hawkey::spawn(cmd);
    let worker = hawkey.wait_workers(1, "sleep", Duration::from_secs(5))[0];
    assert_eq!(
        std::fs::read_link(format!("/proc/{worker}/cwd")).unwrap(),
        work
    );
    hawkey.stop_cleanly();
}

#[test]
fn ipv6_listeners_are_bound_v6_only_and_passed_like_any_other() {
    let dir = TempDir::new("ipv6");
    let port = free_port();
    let config = write_config(
        &dir,
        &format!(
            "listen:\n  - {{name: v6, address: '[::1]:{port}'}}\nworkers:\n  count: 1\npidfile: null\n"
        ),
    );
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    let mut stream = std::net::TcpStream::connect(("::1", port)).expect("connect to [::1]");
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert_eq!(
        parse_response(&response).unwrap(),
        (200, "ok\n".to_string())
    );
    // v6-only, as nginx: the IPv4 side of the port stays free.
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
        "[::1] listener also took IPv4"
    );
    hawkey.stop_cleanly();
}

#[test]
fn a_helper_the_worker_runs_may_notify_for_it_and_others_may_not() {
    let dir = TempDir::new("notify-helper");
    // A child of the worker that notifies as itself (its own pid, a
    // descendant of the worker) and, like `systemd-notify` waiting on its
    // barrier, is still there a moment later.
    let helper = dir.join("notify-helper.py");
    std::fs::write(
        &helper,
        "import os, socket, time\n\
         address = os.environ['NOTIFY_SOCKET']\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.connect(address)\n\
         s.send(b'READY=1\\nSTATUS=ready via a helper')\n\
         time.sleep(2)\n",
    )
    .unwrap();
    // The worker's child (not the worker itself) sends READY=1, as
    // `systemd-notify --ready` does for Node.js apps.
    let config = exec_config(
        &dir,
        free_port(),
        &format!(
            "  count: 1\n  app: exec\n  ready: notify\n  ready_timeout: 10s\n  command: [sh, -c, 'python3 {} & exec sleep 1000']",
            helper.display()
        ),
    );
    let (mut hawkey, _notify, messages) = start_ready(&dir, &config);
    assert!(
        messages
            .last()
            .unwrap()
            .contains("STATUS=1/1 workers ready"),
        "{messages:?}"
    );
    // A process outside the worker's tree is not heard, even with the
    // same uid and the socket's path: STATUS= from the test itself to the
    // worker's channel changes nothing.
    let worker = hawkey.wait_workers(1, "sleep", Duration::from_secs(5))[0];
    let inbox = env_of(worker, "NOTIFY_SOCKET").unwrap();
    let stranger = std::os::unix::net::UnixDatagram::unbound().unwrap();
    stranger.send_to(b"STATUS=forged", &inbox).unwrap();
    // Whatever the master reads next, it has read this by then.
    stranger.send_to(b"STATUS=forged again", &inbox).unwrap();
    let (code, out, _) = hawkey_cli(&["status", "--json"], &config);
    assert_eq!(code, 0);
    assert!(
        out.contains("ready via a helper") && !out.contains("forged"),
        "{out}"
    );
    hawkey.stop_cleanly();
}

/// Resident and mapped KiB of the executable's text (`r-xp` mappings of
/// the file behind /proc/<pid>/exe).
fn text_kib(pid: i32) -> (u64, u64) {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let (mut rss, mut size, mut text) = (0, 0, false);
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [range, perms, _, _, _, path, ..] if range.contains('-') => {
                text = *perms == "r-xp" && std::path::Path::new(path) == exe;
                if text {
                    let (a, b) = range.split_once('-').unwrap();
                    size += (u64::from_str_radix(b, 16).unwrap()
                        - u64::from_str_radix(a, 16).unwrap())
                        / 1024;
                }
            }
            [range, ..] if range.contains('-') && !range.ends_with(':') => text = false,
            ["Rss:", kib, ..] if text => rss += kib.parse::<u64>().unwrap(),
            _ => {}
        }
    }
    (rss, size)
}

/// P3: the code that runs once at start-up (config parsing, the command
/// line, spawning) does not stay in the master's page tables once the pool
/// is ready; the master goes on working with what it faults back in.
#[test]
fn once_ready_the_master_keeps_little_of_its_executable_resident() {
    let dir = TempDir::new("startup-pages");
    let port = free_port();
    let config = exec_config(
        &dir,
        port,
        "  count: 2\n  app: exec\n  ready: started\n  command: [sleep, '1000']",
    );
    let (mut hawkey, _notify, _) = start_ready(&dir, &config);
    // The master releases the pages once that turn of its loop is done.
    // Without the release, fault-around leaves ~90% of the text resident.
    // Whether it was released is judged, not how much memory stays (P3's
    // figures are the benchmark's); the deadline is a hang guard.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (rss, size) = text_kib(hawkey.pid());
        assert!(size > 0, "no executable text mapping found");
        if rss * 2 < size {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rss} KiB of {size} KiB of executable text still resident 20s after READY=1"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still a working master: it replaces a killed worker and stops.
    let workers = hawkey.workers();
    // SAFETY: kill(2) on one of our workers.
    unsafe { libc::kill(workers[0], libc::SIGKILL) };
    wait_until(Duration::from_secs(5), "the worker replaced", || {
        let now = hawkey.workers();
        (now.len() == 2 && !now.contains(&workers[0])).then_some(())
    });
    hawkey.stop_cleanly();
}
