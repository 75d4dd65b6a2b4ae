"""P6: kill -9 of a worker -> replacement forked -> exec'd -> ready, split
with perf's sched/signal tracepoints when `perf record` works."""

import os
import select
import signal
import statistics
import subprocess
import time

from .procs import children, free_port, log, now_ns, spawn, stop, wait_for
from .servers import EXEC_SLEEP, start_hawkey
from .settings import S
from .table import verdict

PERF_EVENTS = ["-e", "sched:sched_process_exit,sched:sched_process_fork,sched:sched_process_exec",
               "-e", "signal:signal_generate", "--filter", "sig == 17"]


def perf_usable():
    try:
        r = subprocess.run(["perf", "record", "-q", "-k", "1", *PERF_EVENTS, "-a", "-o", f"{S.work}/perf-probe.data",
                            "--", "true"], capture_output=True, timeout=30, check=False)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def perf_events(path):
    """(pid, CLOCK_MONOTONIC ns, event, {key: value}) from a perf record file."""
    out = subprocess.run(["perf", "script", "-i", path, "--ns", "-F", "pid,time,event,trace"],
                         capture_output=True, text=True, timeout=120, check=False).stdout
    events = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[1].endswith(":"):
            continue
        sec, _, frac = parts[1][:-1].partition(".")
        fields = dict(kv.split("=", 1) for kv in parts[3:] if "=" in kv)
        events.append((int(parts[0]), int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9]), parts[2].rstrip(":"), fields))
    return events


def p6_variant(name, workers_yaml, use_perf):
    h = start_hawkey(name, free_port(), 2, workers_yaml)
    tracer = None
    if use_perf:
        tracer = spawn(["perf", "record", "-q", "-k", "1", *PERF_EVENTS, "-a", "-o", f"{S.work}/{name}.perf"],
                       f"{name}-perf")
        time.sleep(1.0)
    ready_at = {}
    def live():
        kids = children(h.pid)
        return kids if len(kids) == 2 else None
    for c in wait_for("2 workers", live):
        ready_at[c] = time.monotonic()
    rows, kills = [], []
    for k in range(S.p6_kills):
        kids = wait_for("2 workers", live)
        for c in kids:
            ready_at.setdefault(c, time.monotonic())
        victim = min(kids, key=lambda c: ready_at[c])
        # Only a worker ready for >= 1 s is replaced at once (no backoff).
        wait = ready_at[victim] + 1.1 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        fd = os.pidfd_open(victim)
        t_kill, t_kill_mono = now_ns(), time.monotonic_ns()
        os.kill(victim, signal.SIGKILL)
        select.select([fd], [], [], 5)
        t_dead = now_ns()
        os.close(fd)
        # The master sends its first STATUS= after the kill once the
        # replacement's execve succeeded (spawn waits for it); STATUS=2/2
        # once it is ready.
        t_started, _ = h.notify.wait(lambda m: "STATUS=" in m and "workers ready" in m, after_ns=t_kill, timeout=10)
        t_ready, _ = h.notify.wait(lambda m: "STATUS=2/2 workers ready" in m, after_ns=t_kill, timeout=10)
        now = time.monotonic()
        for c in wait_for("2 workers", live):
            ready_at.setdefault(c, now)
        kills.append((victim, t_kill_mono))
        rows.append({"started_ms": (t_started - t_kill) / 1e6, "ready_ms": (t_ready - t_kill) / 1e6,
                     "observed_dead_ms": (t_dead - t_kill) / 1e6})
    if tracer:
        stop(tracer)
        events = perf_events(f"{S.work}/{name}.perf")
        for row, (victim, t_kill_mono) in zip(rows, kills):
            exit_t = next((t for pid, t, ev, f in events if ev == "sched:sched_process_exit"
                           and pid == victim and f.get("group_dead") == "true"), None)
            # SIGCHLD to the master: the kernel is done with the victim.
            sigchld = next((t for pid, t, ev, f in events if ev == "signal:signal_generate"
                            and f.get("pid") == str(h.pid) and exit_t is not None and t >= exit_t), None)
            fork = next(((t, int(f["child_pid"])) for pid, t, ev, f in events if ev == "sched:sched_process_fork"
                         and f.get("pid") == str(h.pid) and exit_t is not None and t >= exit_t), None)
            exec_t = fork and next((t for pid, t, ev, f in events if ev == "sched:sched_process_exec"
                                    and pid == fork[1]), None)
            if exit_t and sigchld and fork and exec_t:
                row.update({"kill_to_exit_ms": (exit_t - t_kill_mono) / 1e6,
                            "exit_to_sigchld_ms": (sigchld - exit_t) / 1e6,
                            "sigchld_to_fork_ms": (fork[0] - sigchld) / 1e6,
                            "exit_to_fork_ms": (fork[0] - exit_t) / 1e6,
                            "kill_to_fork_ms": (fork[0] - t_kill_mono) / 1e6,
                            "kill_to_exec_ms": (exec_t - t_kill_mono) / 1e6,
                            "fork_to_exec_ms": (exec_t - fork[0]) / 1e6,
                            "exit_to_exec_ms": (exec_t - exit_t) / 1e6})
    stop(h)
    keys = [k for k in rows[0] if all(k in r for r in rows)]
    return {"kills": len(rows), "traced": bool(tracer),
            "median": {k: round(statistics.median(r[k] for r in rows), 3) for k in keys},
            "max": {k: round(max(r[k] for r in rows), 3) for k in keys}}


def p6():
    use_perf = perf_usable()
    log(f"== P6 respawn: kill -9 of a worker -> replacement exec'd -> ready (STATUS=2/2){' , traced with perf' if use_perf else ''}")
    out = {"builtin": p6_variant("p6-builtin", "", use_perf),
           "exec_sleep": p6_variant("p6-exec", EXEC_SLEEP, use_perf)}
    log(f"   {out}")
    return out


def rows(R):
    """P6's rows."""
    rows = []
    if "p6" not in R:
        return rows
    p6 = R["p6"]
    boot = R.get("p5", {}).get("median", {}).get("bare_fork_to_ready_ms", 0)
    for variant in ("builtin", "exec_sleep"):
        md = p6[variant]["median"]
        if "kill_to_fork_ms" in md:
            rows.append(("P6", f"kill -9 -> replacement exists (forked), {variant}",
                         (f"{md['kill_to_fork_ms']} ms = exit {md['kill_to_exit_ms']} + teardown->SIGCHLD "
                          f"{md['exit_to_sigchld_ms']} + SIGCHLD->fork (hawkey) {md['sigchld_to_fork_ms']}"),
                         "<= 1 ms", verdict(md["kill_to_fork_ms"] <= 1),
                         f"median of {p6[variant]['kills']}; perf sched/signal tracepoints"))
            rows.append(("P6", f"kill -9 -> replacement exec'd, {variant}",
                         f"{md['kill_to_exec_ms']} ms (fork->exec {md['fork_to_exec_ms']}); STATUS= at {md['started_ms']}",
                         "(info)", "-", "same; STATUS= = the master's next notify after the exec"))
        else:
            rows.append(("P6", f"kill -9 -> replacement exec'd, {variant}", f"{md['started_ms']} ms", "<= 1 ms",
                         verdict(md["started_ms"] <= 1),
                         f"median of {p6[variant]['kills']}; first STATUS= after the kill (upper bound: no perf)"))
    rows.append(("P6", "kill -9 -> ready, builtin", f"{p6['builtin']['median']['ready_ms']} ms (own boot {boot} ms)",
                 f"<= {boot + 5:.1f} ms", verdict(p6["builtin"]["median"]["ready_ms"] <= boot + 5),
                 "STATUS=2/2 after the kill; own boot = fork -> READY=1 under bare_launcher"))
    return rows
