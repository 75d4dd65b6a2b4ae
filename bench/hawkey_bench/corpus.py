"""G13's time and memory half: "each malformed config rejected < 200 ms and
< 64 MiB". Every file of tests/configs/invalid/ goes to the release
binary's `hawkey check -c FILE`, one run at a time, from the repository
root (as tests/corpus.rs runs it, so the paths in its messages are the
same), with stdin /dev/null, stdout and stderr to files, and the runtime
directory pointed into the run's work folder.

Per run: the exit status (78, EX_CONFIG, else a mismatch: an error in the
output, though behaviour is the tests' to judge), the wall time from just
before posix_spawn to wait4's return (the goal's figure), the CPU time
(user + system, from the rusage that wait4 returns: what the wall time
would be on an idle core) and the peak RSS (ru_maxrss, same rusage). Every file runs once; the slowest of that
pass, and any file that turns out slowest afterwards, run again until each
has `g13_reps` runs, interleaved, and count with their median.

ru_maxrss has a floor: at execve the kernel folds the high-water RSS of
the address space the child leaves into the child's maximum, and a child
of posix_spawn (vfork) leaves this Python's (about 14 MiB). The floor is
measured after the runs as the ru_maxrss of `true` spawned the same way; a
figure above it is hawkey's own peak, one at it means "no more than that"."""

import os
import select
import shutil
import signal
import statistics
import time

from .procs import base_env, log
from .settings import S
from .table import verdict

EX_CONFIG = 78
TIME_GOAL_MS = 200
RSS_GOAL_KIB = 64 * 1024
DEADLINE_S = 10     # a check still running then is killed (and is a mismatch)
CORPUS = "tests/configs/invalid"


def files():
    """The corpus, relative to the root, sorted."""
    return sorted(f"{CORPUS}/{n}" for n in os.listdir(f"{S.root}/{CORPUS}") if n.endswith(".yaml"))


def spawn_once(argv, scratch):
    """One run of argv, from the root: (exit code or -signal, wall ms, CPU
    ms, ru_maxrss KiB, first line of stderr)."""
    env = base_env(RUNTIME_DIRECTORY=f"{scratch}/run", XDG_RUNTIME_DIR=f"{scratch}/run")
    out = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, f"{scratch}/stdout", out, 0o644),
               (os.POSIX_SPAWN_OPEN, 2, f"{scratch}/stderr", out, 0o644)]
    reaped = False
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setpgroup=0)
    try:
        fd = os.pidfd_open(pid)
        try:
            if not select.select([fd], [], [], DEADLINE_S)[0]:
                os.killpg(pid, signal.SIGKILL)
        finally:
            os.close(fd)
        _, status, usage = os.wait4(pid, 0)
        t1 = time.perf_counter_ns()
        reaped = True
    finally:
        if not reaped:      # interrupted: leave nothing behind
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
    with open(f"{scratch}/stderr", errors="replace") as f:
        said = f.readline().rstrip("\n")[:300]
    cpu_ms = (usage.ru_utime + usage.ru_stime) * 1000
    return os.waitstatus_to_exitcode(status), (t1 - t0) / 1e6, cpu_ms, usage.ru_maxrss, said


def check(rel, scratch, per_file):
    code, ms, cpu_ms, rss, said = spawn_once([S.bin, "check", "-c", rel], scratch)
    f = per_file.setdefault(rel, {"ms": [], "cpu_ms": [], "max_rss_kib": 0, "exits": []})
    f["ms"].append(round(ms, 3))
    f["cpu_ms"].append(round(cpu_ms, 3))
    f["max_rss_kib"] = max(f["max_rss_kib"], rss)
    if code not in f["exits"]:
        f["exits"].append(code)
        if code != EX_CONFIG:
            f["said"] = said
            log(f"   error: {rel}: exit {code} (goal {EX_CONFIG}): {said}")


def g13():
    names = files()
    log(f"== G13 {len(names)} malformed configs: hawkey check -c FILE, exit status, wall time, peak RSS")
    scratch = f"{S.work}/g13"
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(f"{scratch}/run")
    spawn_once([S.bin, "check", "-c", names[0]], scratch)       # warm-up, not counted
    per_file = {}
    t_all = time.monotonic()
    for rel in names:
        check(rel, scratch, per_file)
    first_pass_s = time.monotonic() - t_all

    def fig(rel):
        return statistics.median(per_file[rel]["ms"])
    # Again, interleaved: the slowest of the first pass, then whichever
    # file is slowest until that one has had its runs.
    again = sorted(names, key=fig, reverse=True)[:S.g13_slowest]
    while True:
        for _ in range(S.g13_reps - 1):
            for rel in again:
                check(rel, scratch, per_file)
        slowest = max(names, key=fig)
        if len(per_file[slowest]["ms"]) >= S.g13_reps:
            break
        again = [slowest]
    floor = max(spawn_once([shutil.which("true") or "/bin/true"], scratch)[3] for _ in range(3))
    repeated = [rel for rel in names if len(per_file[rel]["ms"]) > 1]
    largest = max(names, key=lambda rel: per_file[rel]["max_rss_kib"])
    bad = {rel: f for rel, f in per_file.items() if f["exits"] != [EX_CONFIG]}
    out = {"files": len(names), "exit_78": len(names) - len(bad),
           "mismatches": {rel: {"exits": f["exits"], "said": f.get("said")} for rel, f in bad.items()},
           "first_pass_s": round(first_pass_s, 2), "reps": S.g13_reps, "repeated": repeated,
           "slowest": {"file": slowest, "ms": round(fig(slowest), 3), "runs": per_file[slowest]["ms"],
                       "cpu_ms": round(statistics.median(per_file[slowest]["cpu_ms"]), 3)},
           "median_ms": round(statistics.median(fig(rel) for rel in names), 3),
           "median_cpu_ms": round(statistics.median(statistics.median(per_file[rel]["cpu_ms"]) for rel in names), 3),
           "largest_rss": {"file": largest, "kib": per_file[largest]["max_rss_kib"]},
           "median_rss_kib": statistics.median(per_file[rel]["max_rss_kib"] for rel in names),
           "rss_floor_kib": floor, "above_floor": sum(per_file[rel]["max_rss_kib"] > floor for rel in names),
           "per_file": per_file}
    log(f"   {({k: v for k, v in out.items() if k not in ('per_file', 'repeated')})}")
    if bad:
        log(f"   error: {len(bad)} of {len(names)} malformed configs did not exit {EX_CONFIG}")
    return out


def rows(R):
    """G13's rows."""
    rows = []
    if "g13" not in R:
        return rows
    g = R["g13"]
    n, bad = g["files"], len(g["mismatches"])
    rows.append(("G13", f"{n} malformed configs: exit {EX_CONFIG}",
                 f"{g['exit_78']} of {n}" + (f", {bad} MISMATCHED (error)" if bad else ""), "all",
                 verdict(bad == 0), f"hawkey check -c FILE, every {CORPUS}/*.yaml, release build"))
    s = g["slowest"]
    rows.append(("G13", "slowest rejection", f"{s['ms']:.1f} ms, CPU {s['cpu_ms']:.1f} ms ({os.path.basename(s['file'])})",
                 f"< {TIME_GOAL_MS} ms", verdict(s["ms"] < TIME_GOAL_MS),
                 (f"median of {g['reps']} interleaved runs for the {len(g['repeated'])} slowest of a first pass; "
                  "wall: spawn -> wait4; CPU: its user + system time")))
    rows.append(("G13", "median rejection", f"{g['median_ms']:.1f} ms, CPU {g['median_cpu_ms']:.1f} ms", "(info)", "-",
                 "median over the files (1 run each, else the median of its runs)"))
    big = g["largest_rss"]
    rows.append(("G13", "largest peak RSS", f"{big['kib'] / 1024:.1f} MiB ({os.path.basename(big['file'])})",
                 f"< {RSS_GOAL_KIB // 1024} MiB", verdict(big["kib"] < RSS_GOAL_KIB),
                 (f"wait4 ru_maxrss over every run; {g['above_floor']} files above the floor of "
                  f"{g['rss_floor_kib'] / 1024:.1f} MiB (the spawning Python's own peak)")))
    return rows
