"""Issue #11's figures (part 7): a pool of N = 2, 64, 256 workers, built-in
and exec'd, and the master against hostile neighbours on its notify
channels. A benchmark: figures with their method, verdicts only where an
invariant is clear (every worker ready, exit 0, fds back to where they
were, nothing delivered from another uid); the tests judge behaviour.

Pool rounds, each a fresh `hawkey run` with the driver's NOTIFY_SOCKET
(a fake systemd: the master sends READY=1 there once every worker is):
- start: the fork of `hawkey run` (just before Popen) -> the master's
  READY=1, kernel receive timestamp; then, 0.3 s later (as P3), the
  master's RSS/PSS from smaps_rollup and its CPU so far (utime+stime from
  /proc/<pid>/stat, and schedstat's on-CPU time beside it);
- `hawkey status`: "N/N workers ready";
- reload: `hawkey reload --wait` (exit 0 = finished), timed around the
  CLI, with the master's RELOADING=1 -> READY=1 on the driver's socket
  and the master's CPU over it; `hawkey status` again;
- stop: SIGTERM -> exit of the master.
Rounds are interleaved (round r of every variant before round r+1 of any)
and bounded in count (`scale_rounds`) and time (`scale_budget_s`: no new
round starts after it; the first always runs). Each figure is the median
over the rounds.

Hostile neighbours, on one pool of `hostile_workers` built-in workers
beating at `heartbeat_timeout: 3s` (issue #11's), each worker's
NOTIFY_SOCKET read from /proc/<worker>/environ:
- (a) `nobody` (setpriv --reuid=65534 --regid=65534 --clear-groups
  /usr/bin/python3): `hostile_datagrams` attempts, round robin over every
  worker's socket, each a new socket, connect(), send(): delivered vs
  refused (by errno);
- (b) root, the master's own uid: `hostile_datagrams` datagrams into one
  worker's channel, each `READY=1\\nWATCHDOG=1` with `hostile_fds` fds by
  SCM_RIGHTS (blocking send, 1 s timeout each: the channel queues 10);
- the control: (b) again without fds (the cost of a message alone).
Before them, the master's CPU over 3 quiet seconds: the pool's own
heartbeats, to read the floods' CPU against.
For each: the master's fd count (ls /proc/<pid>/fd) before, every 10 ms
while the sender runs (its peak), and after the sender ended and the count
held still for 1 s (polled every 50 ms, at most 15 s); the master's CPU
from before the sender started to then; `hawkey status` after (every
worker ready, no restart); the master log's growth. Then, 4.5 s later (one
and a half heartbeat timeouts: a heartbeat lost to a flood would have cost
a worker by then), `hawkey status` again. Every sender stops itself after
120 s and is killed at 300."""

import json
import os
import re
import statistics
import subprocess
import time

from .notify import Notify
from .procs import (
    base_env,
    cpu_ms,
    free_port,
    log,
    memory_kib,
    now_ns,
    read_text,
    spawn,
    started,
    stop,
    wait_for,
)
from .servers import hawkey_config
from .settings import S
from .table import verdict

SETPRIV = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
PYTHON = "/usr/bin/python3"     # root's python3 may be a pyenv shim under /root, out of nobody's reach

# The exec'd worker: python3 without site (-S), READY=1 on its
# NOTIFY_SOCKET, then sleep (SIGTERM ends it by its default action). The
# one-liner of tests/exec.rs's notify test, lighter than
# tests/fixtures/app.py (no http.server import: about 20 ms of CPU and
# 9 MiB against 70 ms and 17 MiB), which matters at 256 per generation.
EXEC_WORKER = ("import os,socket,time; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
               "s.connect(os.environ['NOTIFY_SOCKET']); s.send(b'READY=1'); time.sleep(1000000)")
EXEC_YAML = f"  app: exec\n  ready: notify\n  command: {json.dumps([PYTHON, '-S', '-c', EXEC_WORKER])}\n"
APPS = {"builtin": "  app: builtin\n", "exec": EXEC_YAML}

# The hostile senders' pool beats at the issue's timeout (the built-in app
# then sends WATCHDOG=1 several times per timeout), and is looked at again
# this long after the last flood.
HOSTILE_HEARTBEAT = "3s"
HOSTILE_HOLD_S = 4.5
QUIET_S = 3.0       # the quiet window before the floods

# The hostile sender: argv = mode (each: a new socket and connect() per
# attempt; once: one socket per path, sendmsg), count, fds per datagram,
# time limit in s, then the socket paths. Prints one JSON line.
HOSTILE = r"""
import array, errno, json, os, socket, sys, time
mode, count, per, limit, paths = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]
fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(per)]
anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if per else []
out = {"uid": os.getuid(), "attempted": 0, "delivered": 0, "refused": {}, "timed_out": 0}
kept = {}
t0 = time.monotonic()
for i in range(count):
    if time.monotonic() - t0 > limit:
        out["stopped_at_time_limit"] = True
        break
    out["attempted"] += 1
    path = paths[i % len(paths)]
    try:
        if mode == "each":
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.settimeout(1.0)
                s.connect(path)
                s.sendmsg([b"READY=1\nWATCHDOG=1\n"], anc)
        else:
            s = kept.get(path)
            if s is None:
                s = kept[path] = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                s.settimeout(1.0)
                s.connect(path)
            s.sendmsg([b"READY=1\nWATCHDOG=1\n"], anc)
        out["delivered"] += 1
    except socket.timeout:
        out["timed_out"] += 1
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno))
        out["refused"][name] = out["refused"].get(name, 0) + 1
out["s"] = round(time.monotonic() - t0, 3)
print(json.dumps(out))
"""

STATUS_RE = re.compile(r"(\d+)/(\d+) workers ready, generation (\d+), (\d+) restarts")


def status(cfg):
    """`hawkey status`: (ready, target, generation, restarts) or None, and what it said."""
    r = subprocess.run([S.bin, "status", "-c", cfg], env=base_env(), capture_output=True, text=True,
                       timeout=30, check=False)
    m = STATUS_RE.search(r.stdout)
    return (tuple(int(x) for x in m.groups()) if m else None), (r.stdout + r.stderr).split("\n", 1)[0][:200]


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def all_ready(st, n):
    return st is not None and st[0] == st[1] == n


def one_round(app, n, r):
    name = f"scale-{app}-{n}-{r}"
    cfg = hawkey_config(name, free_port(), n, APPS[app])
    notify = Notify(name)
    t0 = now_ns()
    p = spawn([S.bin, "run", "-c", cfg], name, NOTIFY_SOCKET=notify.path)
    out = {}
    try:
        t1, _ = notify.wait(lambda m: "READY=1" in m, after_ns=t0, timeout=180)
        out["start_ms"] = round((t1 - t0) / 1e6, 3)
        time.sleep(0.3)
        out["memory_kib"] = memory_kib(p.pid)
        out["start_cpu_ms"], out["start_sched_ms"] = cpu_ms(p.pid)
        out["fds"] = fd_count(p.pid)
        st, said = status(cfg)
        out["ready_after_start"] = all_ready(st, n)
        out["status_after_start"] = said
        c0 = cpu_ms(p.pid)
        m0 = now_ns()
        cli = subprocess.run([S.bin, "reload", "--wait", "-c", cfg], env=base_env(), capture_output=True,
                             text=True, timeout=600, check=False)
        m1 = now_ns()
        c1 = cpu_ms(p.pid)
        out["reload_exit"] = cli.returncode
        out["reload_said"] = (cli.stdout + cli.stderr).strip()[:200]
        out["reload_ms"] = round((m1 - m0) / 1e6, 3)
        out["reload_cpu_ms"] = c1[0] - c0[0]
        out["reload_sched_ms"] = round(c1[1] - c0[1], 3)
        try:
            ta, _ = notify.wait(lambda m: "RELOADING=1" in m, after_ns=m0, timeout=1)
            tb, _ = notify.wait(lambda m: "READY=1" in m, after_ns=ta, timeout=1)
            out["reloading_to_ready_ms"] = round((tb - ta) / 1e6, 3)
        except RuntimeError:
            out["reloading_to_ready_ms"] = None
        st, said = status(cfg)
        out["ready_after_reload"] = all_ready(st, n) and st[2] == 2
        out["status_after_reload"] = said
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        # A round that fails is kept as such (and fails the readiness
        # row); the next rounds still run.
        out["error"] = str(e)[:300]
        log(f"   error: {name}: {out['error']}")
    finally:
        s0 = time.monotonic()
        out["stop_exit"] = stop(p, timeout=60)
        out["stop_ms"] = round((time.monotonic() - s0) * 1000, 1)
        notify.close()
    return out


def pools():
    variants = [(app, n) for app in APPS for n in S.scale_counts]
    log(f"== SCALE pools: {', '.join(f'{a} x{n}' for a, n in variants)}; start -> READY=1, "
        f"reload --wait, RSS/PSS, master CPU; up to {S.scale_rounds} interleaved rounds, "
        f"no new round after {S.scale_budget_s} s")
    runs = {f"{a}_{n}": [] for a, n in variants}
    t_all = time.monotonic()
    for r in range(S.scale_rounds):
        if r and time.monotonic() - t_all > S.scale_budget_s:
            log(f"   time budget reached: {r} rounds")
            break
        for app, n in variants:
            res = one_round(app, n, r)
            runs[f"{app}_{n}"].append(res)
            log(f"   {app} x{n} round {r}: start {res.get('start_ms')} ms, reload {res.get('reload_ms')} ms "
                f"(exit {res.get('reload_exit')}), rss {res.get('memory_kib', {}).get('rss')} KiB, "
                f"cpu {res.get('start_cpu_ms')} / {res.get('reload_cpu_ms')} ms, {res.get('status_after_reload')}")

    def med(v):
        v = [x for x in v if x is not None]
        return round(statistics.median(v), 3) if v else None
    out = {"took_s": round(time.monotonic() - t_all, 1), "variants": {}}
    for key, rs in runs.items():
        out["variants"][key] = {
            "rounds": len(rs),
            "median": {k: med([x.get(k) for x in rs]) for k in
                       ("start_ms", "reload_ms", "reloading_to_ready_ms", "start_cpu_ms", "start_sched_ms",
                        "reload_cpu_ms", "reload_sched_ms", "stop_ms", "fds")}
            | {f"{k}_kib": med([x["memory_kib"][k] for x in rs if "memory_kib" in x]) for k in ("rss", "pss", "anonymous")},
            "min_max": {k: [min(vs), max(vs)] if vs else [None, None]
                        for k in ("start_ms", "reload_ms") for vs in [[x[k] for x in rs if k in x]]},
            "errors": [x["error"] for x in rs if "error" in x],
            "all_ready": all(x.get("ready_after_start") and x.get("ready_after_reload") for x in rs),
            "reload_exits": sorted({x.get("reload_exit") for x in rs}, key=str),
            "stop_exits": sorted({x.get("stop_exit") for x in rs}, key=str),
            "runs": rs}
    return out


def worker_sockets(pid, n):
    """Each worker's NOTIFY_SOCKET, from its environment."""
    def read():
        paths = []
        for c in (int(x) for x in read_text(f"/proc/{pid}/task/{pid}/children").split()):
            try:
                with open(f"/proc/{c}/environ", "rb") as f:
                    env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
            except OSError:
                continue
            if b"NOTIFY_SOCKET" in env:
                paths.append(env[b"NOTIFY_SOCKET"].decode())
        return paths if len(paths) == n else None
    return wait_for(f"{n} workers' NOTIFY_SOCKET", read, timeout=30, every=0.1)


def flood(p, cfg, argv, n):
    """Runs one hostile sender; the master's fds (sampled every 10 ms while
    it runs, then until still), CPU, status and log around it."""
    logf = f"{S.work}/{p.name}.log"
    fd0, c0, l0 = fd_count(p.pid), cpu_ms(p.pid), os.path.getsize(logf)
    w0 = time.monotonic()
    sender = subprocess.Popen(argv, env=base_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    started.append(sender)
    during = [fd0]
    t_start = time.monotonic()
    while sender.poll() is None and time.monotonic() - t_start < 300:
        during.append(fd_count(p.pid))
        time.sleep(0.01)
    stdout, stderr = sender.communicate(timeout=10)    # it stops itself at its own time limit (120 s)
    sent = json.loads(stdout) if sender.returncode == 0 and stdout.strip() else {"exit": sender.returncode,
                                                                                "said": stderr[-300:]}
    t_end = time.monotonic()
    # After the sender: the count once it has held still for 1 s.
    seen, since, fd1 = [], time.monotonic(), fd_count(p.pid)
    while time.monotonic() - t_end < 15:
        time.sleep(0.05)
        now = fd_count(p.pid)
        seen.append(now)
        if now != fd1:
            fd1, since = now, time.monotonic()
        elif time.monotonic() - since >= 1.0:
            break
    c1 = cpu_ms(p.pid)
    window = time.monotonic() - w0
    st, said = status(cfg)
    return {"sender": sent, "window_s": round(window, 3), "fds_before": fd0, "fds_after": fd1, "fds_peak_during": max(during),
            "fds_samples_during": len(during), "fds_peak_after": max(seen + [fd1]),
            "stable_after_s": round(since - t_end, 2), "cpu_ms": c1[0] - c0[0], "sched_ms": round(c1[1] - c0[1], 3),
            "status": said, "all_ready": all_ready(st, n), "restarts": st[3] if st else None,
            "log_bytes": os.path.getsize(logf) - l0}


def hostile():
    n = S.hostile_workers
    if os.geteuid() != 0:
        log("== SCALE hostile neighbours: skipped, setpriv to nobody needs root")
        return {"skipped": "not root: setpriv to nobody needs root"}
    log(f"== SCALE hostile neighbours: builtin x{n}, heartbeat_timeout {HOSTILE_HEARTBEAT}; "
        f"{S.hostile_datagrams} datagrams from nobody to every worker's NOTIFY_SOCKET, then "
        f"{S.hostile_datagrams} with {S.hostile_fds} fds each from root into one, then as many without fds")
    name = f"scale-hostile-{n}"
    cfg = hawkey_config(name, free_port(), n, f"  heartbeat_timeout: {HOSTILE_HEARTBEAT}\n")
    notify = Notify(name)
    p = spawn([S.bin, "run", "-c", cfg], name, NOTIFY_SOCKET=notify.path)
    try:
        notify.wait(lambda m: "READY=1" in m, timeout=180)
        time.sleep(0.3)
        paths = worker_sockets(p.pid, n)
        st, said = status(cfg)
        out = {"workers": n, "datagrams": S.hostile_datagrams, "fds_per_datagram": S.hostile_fds,
               "heartbeat_timeout": HOSTILE_HEARTBEAT, "socket_dir": os.path.dirname(paths[0]),
               "status_before": said, "restarts_before": st[3] if st else None}
        # The pool's own traffic (256 workers' heartbeats) costs the master
        # CPU too: its rate over a quiet window, to read the floods against.
        q0, t_q = cpu_ms(p.pid), time.monotonic()
        time.sleep(QUIET_S)
        q1 = cpu_ms(p.pid)
        out["quiet"] = {"window_s": round(time.monotonic() - t_q, 3), "cpu_ms": q1[0] - q0[0],
                        "sched_ms": round(q1[1] - q0[1], 3)}
        out["quiet"]["sched_ms_per_s"] = round(out["quiet"]["sched_ms"] / out["quiet"]["window_s"], 3)
        log(f"   quiet pool: {out['quiet']}")
        out["nobody"] = flood(p, cfg, SETPRIV + [PYTHON, "-S", "-c", HOSTILE, "each", str(S.hostile_datagrams),
                                                 "0", "120", *paths], n)
        log(f"   nobody: {out['nobody']}")
        out["root_fds"] = flood(p, cfg, [PYTHON, "-S", "-c", HOSTILE, "once", str(S.hostile_datagrams),
                                         str(S.hostile_fds), "120", paths[0]], n)
        log(f"   root, {S.hostile_fds} fds each: {out['root_fds']}")
        # The control: the same datagrams without descriptors, to tell the
        # cost of a message from the cost of its fds.
        out["root_plain"] = flood(p, cfg, [PYTHON, "-S", "-c", HOSTILE, "once", str(S.hostile_datagrams),
                                           "0", "120", paths[0]], n)
        log(f"   root, no fds: {out['root_plain']}")
        # A heartbeat lost to the floods would kill a worker within a
        # timeout: look again after one and a half.
        time.sleep(HOSTILE_HOLD_S)
        st, said = status(cfg)
        out["after_hold"] = {"hold_s": HOSTILE_HOLD_S, "status": said, "all_ready": all_ready(st, n),
                             "restarts": st[3] if st else None}
        log(f"   {HOSTILE_HOLD_S} s later: {said}")
    finally:
        stop(p, timeout=60)
        notify.close()
    return out


def scale():
    return {"pools": pools(), "hostile": hostile()}


def num(x, digits=1):
    return "?" if x is None else f"{x:.{digits}f}"


def rows(R):
    """The scale goal's rows."""
    rows = []
    if "scale" not in R:
        return rows
    pools_, h = R["scale"]["pools"], R["scale"]["hostile"]
    for key, v in pools_["variants"].items():
        app, n = key.rsplit("_", 1)
        m, mm, k = v["median"], v["min_max"], v["rounds"]
        label = f"{app} x{n}"
        rows.append(("SCALE", f"{label}: start -> READY=1", f"{num(m['start_ms'], 1)} ms [{num(mm['start_ms'][0], 1)}-{num(mm['start_ms'][1], 1)}]",
                     "(info)", "-", f"median of {k}; fork of `hawkey run` -> master's READY=1 (kernel timestamp)"))
        rows.append(("SCALE", f"{label}: reload --wait", (f"{num(m['reload_ms'], 1)} ms [{num(mm['reload_ms'][0], 1)}-{num(mm['reload_ms'][1], 1)}]"
                     f", RELOADING=1->READY=1 {m['reloading_to_ready_ms']} ms, exits {v['reload_exits']}"),
                     "exit 0", verdict(v["reload_exits"] == [0]), f"median of {k}; around the CLI"))
        rows.append(("SCALE", f"{label}: every worker ready", f"{'yes' if v['all_ready'] else 'NO'}, {k} rounds",
                     f"{n}/{n}", verdict(v["all_ready"]), "hawkey status after the start and after the reload (generation 2)"))
        rows.append(("SCALE", f"{label}: master RSS / PSS", f"{num(m['rss_kib'], 0)} / {num(m['pss_kib'], 0)} KiB (anon {num(m['anonymous_kib'], 0)})",
                     "(info)", "-", "median; /proc/<master>/smaps_rollup 0.3 s after READY=1"))
        rows.append(("SCALE", f"{label}: master CPU, start / reload", (f"{num(m['start_cpu_ms'], 0)} / {num(m['reload_cpu_ms'], 0)} ms "
                     f"(schedstat {num(m['start_sched_ms'], 1)} / {num(m['reload_sched_ms'], 1)})"), "(info)", "-",
                     "median; /proc/<master>/stat utime+stime (10 ms ticks): up to READY=1+0.3 s, over the reload"))
    if "skipped" in h:
        rows.append(("SCALE", "hostile neighbours", "skipped", "", "-", h["skipped"]))
        return rows
    n = h["workers"]
    a, b = h["nobody"], h["root_fds"]
    sa, sb = a["sender"], b["sender"]
    refused = ", ".join(f"{e} {c}" for e, c in sorted(sa.get("refused", {}).items())) or "none"
    rows.append(("SCALE", f"nobody -> every NOTIFY_SOCKET (x{n}): delivered", (f"{sa.get('delivered')} of {sa.get('attempted')} "
                 f"(refused: {refused}; timed out {sa.get('timed_out')})"), "0", verdict(sa.get("delivered") == 0),
                 "setpriv --reuid=65534 /usr/bin/python3: new socket, connect(), send() per attempt, round robin"))
    rows.append(("SCALE", "nobody flood: master fds before -> after", f"{a['fds_before']} -> {a['fds_after']} (peak while sending {a['fds_peak_during']})", "equal",
                 verdict(a["fds_after"] == a["fds_before"]), "ls /proc/<master>/fd every 10 ms while sending; after: once still for 1 s"))
    rows.append(("SCALE", "nobody flood: master CPU; pool", (f"{num(a['cpu_ms'], 0)} ms (schedstat {num(a['sched_ms'], 1)}) over {num(a['window_s'], 2)} s; "
                 f"{a['status'].split(': ', 1)[-1]}"),
                 "all ready", verdict(a["all_ready"] and a["restarts"] == h["restarts_before"]),
                 (f"stat utime+stime from before the sender to the fds' settling (quiet pool: schedstat "
                  f"{num(h['quiet']['sched_ms_per_s'], 1)} ms/s); hawkey status after")))
    rows.append(("SCALE", f"root, {h['fds_per_datagram']} fds x {h['datagrams']} into one channel",
                 f"{sb.get('delivered')} delivered in {sb.get('s')} s, {sb.get('timed_out')} timed out, refused {sb.get('refused')}",
                 "(info)", "-", "same uid as the master; blocking sendmsg (1 s timeout each) of READY=1\\nWATCHDOG=1 + SCM_RIGHTS"))
    rows.append(("SCALE", "root fd flood: master fds before -> after", f"{b['fds_before']} -> {b['fds_after']} (peak while sending {b['fds_peak_during']})",
                 "equal", verdict(b["fds_after"] == b["fds_before"]), "ls /proc/<master>/fd every 10 ms while sending; after: once still for 1 s"))
    rows.append(("SCALE", "root fd flood: master CPU; pool", (f"{num(b['cpu_ms'], 0)} ms (schedstat {num(b['sched_ms'], 1)}) over {num(b['window_s'], 2)} s; "
                 f"{b['status'].split(': ', 1)[-1]}; "
                 f"log +{b['log_bytes']} B"), "all ready", verdict(b["all_ready"] and b["restarts"] == h["restarts_before"]),
                 "as above; no restart either"))
    c = h["root_plain"]
    sc = c["sender"]
    rows.append(("SCALE", f"control: root, {h['datagrams']} without fds", (f"master CPU {num(c['cpu_ms'], 0)} ms (schedstat "
                 f"{num(c['sched_ms'], 1)}) over {num(c['window_s'], 2)} s, {sc.get('delivered')} delivered in {sc.get('s')} s, fds {c['fds_before']} -> {c['fds_after']}"),
                 "(info)", "-", "the same sender and channel, no SCM_RIGHTS: the cost of a message without its fds"))
    hold = h["after_hold"]
    rows.append(("SCALE", f"pool {hold['hold_s']} s after the floods", hold["status"].split(": ", 1)[-1],
                 f"{n}/{n}, 0 restarts", verdict(hold["all_ready"] and hold["restarts"] == h["restarts_before"]),
                 f"hawkey status; heartbeat_timeout {h['heartbeat_timeout']} (a lost heartbeat would kill a worker by then)"))
    return rows
