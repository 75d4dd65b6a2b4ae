"""P5: start -> READY=1, hawkey against bare_launcher --wait-ready (the
same contract without the master), built-in app x2; 64 exec'd workers
against bare_launcher --wait-exec."""

import json
import statistics

from .notify import Notify
from .procs import free_port, log, now_ns, spawn, stop
from .servers import EXEC_SLEEP, hawkey_config
from .settings import S
from .table import verdict


def internal_ready_ms(p):
    """The master's own "all N workers ready, Xms after start" (log level info)."""
    vals = []
    with open(f"{S.work}/{p.name}.log") as f:
        for line in f:
            if "workers ready," in line and "ms after start" in line:
                vals.append(int(line.split("ms after start")[0].split(", ")[-1]))
    return vals[-1] if vals else None


def bare_json(p, key):
    with open(f"{S.work}/{p.name}.log") as f:
        for line in f:
            if line.startswith('{"' + key + '"'):
                return json.loads(line)[key]


def time_to_ready(cmd, name, **env):
    """Process fork (just before Popen) -> READY=1 on its NOTIFY_SOCKET, in ms."""
    notify = Notify(name)
    t0 = now_ns()
    p = spawn(cmd, name, NOTIFY_SOCKET=notify.path, **env)
    t1, _ = notify.wait(lambda m: "READY=1" in m, after_ns=t0, timeout=60)
    stop(p)
    notify.close()
    return (t1 - t0) / 1e6, p


def p5():
    log("== P5 start -> READY=1: hawkey vs bare_launcher, builtin x2 and exec'd sleep x64")
    keys = ("hawkey_builtin_ms", "hawkey_builtin_internal_ms", "bare_builtin_ms", "bare_fork_to_ready_ms",
            "hawkey_exec64_ms", "hawkey_exec64_internal_ms", "bare_exec64_ms", "bare_exec64_spawn_loop_ms")
    out = {k: [] for k in keys}
    for i in range(S.p5_reps):
        for variant in (("hawkey", "bare") if i % 2 == 0 else ("bare", "hawkey")):
            port = free_port()
            if variant == "hawkey":
                cfg = hawkey_config(f"p5-hawkey-{i}", port, 2, level="info")
                ms, p = time_to_ready([S.bin, "run", "-c", cfg], f"p5-hawkey-{i}")
                out["hawkey_builtin_ms"].append(ms)
                out["hawkey_builtin_internal_ms"].append(internal_ready_ms(p))
            else:
                ms, p = time_to_ready([S.launcher, "--role-worker", "--wait-ready", f"127.0.0.1:{port}", "2", S.bin],
                                      f"p5-bare-{i}", HAWKEY_LOG="warn/text")
                out["bare_builtin_ms"].append(ms)
                out["bare_fork_to_ready_ms"] += [us / 1000 for us in bare_json(p, "bare_ready")["fork_to_ready_us"]]
    for i in range(S.p5_reps):
        for variant in (("hawkey", "bare") if i % 2 == 0 else ("bare", "hawkey")):
            port = free_port()
            if variant == "hawkey":
                cfg = hawkey_config(f"p5-exec64-{i}", port, 64, EXEC_SLEEP, level="info")
                ms, p = time_to_ready([S.bin, "run", "-c", cfg], f"p5-exec64-{i}")
                out["hawkey_exec64_ms"].append(ms)
                out["hawkey_exec64_internal_ms"].append(internal_ready_ms(p))
            else:
                ms, p = time_to_ready([S.launcher, "--wait-exec", f"127.0.0.1:{port}", "64", "sleep", "1000"],
                                      f"p5-bare64-{i}")
                out["bare_exec64_ms"].append(ms)
                out["bare_exec64_spawn_loop_ms"].append(bare_json(p, "bare_spawned")["spawn_loop_us"] / 1000)

    def med(k):
        return round(statistics.median([v for v in out[k] if v is not None]), 3)
    out["median"] = {k: med(k) for k in keys if any(v is not None for v in out[k])}
    m = out["median"]
    out["hawkey_share_ms"] = round(m["hawkey_builtin_ms"] - m["bare_builtin_ms"], 3)
    out["hawkey_share_exec64_ms"] = round(m["hawkey_exec64_ms"] - m["bare_exec64_ms"], 3)
    log(f"   {m}  hawkey share: builtin x2 {out['hawkey_share_ms']} ms, exec x64 {out['hawkey_share_exec64_ms']} ms")
    return out


def rows(R):
    """P5's rows."""
    rows = []
    if "p5" not in R:
        return rows
    p5, p5m = R["p5"], R["p5"]["median"]
    rows.append(("P5", "start -> READY=1, builtin x2", f"{p5m['hawkey_builtin_ms']} ms (bare {p5m['bare_builtin_ms']} ms)",
                 "", "-", f"median of {S.p5_reps} each, interleaved; fork of the process -> READY=1 (kernel timestamp)"))
    rows.append(("P5", "hawkey's own share, builtin x2", f"{p5['hawkey_share_ms']} ms", "<= 10 ms",
                 verdict(p5["hawkey_share_ms"] <= 10), "hawkey minus bare_launcher --wait-ready"))
    rows.append(("P5", "64 exec'd workers: start -> READY=1", f"{p5m['hawkey_exec64_ms']} ms (internal {p5m.get('hawkey_exec64_internal_ms')})",
                 "<= 50 ms", verdict(p5m["hawkey_exec64_ms"] <= 50), "ready: started; internal = the master's own log"))
    rows.append(("P5", "64 exec'd: bare_launcher --wait-exec", f"{p5m['bare_exec64_ms']} ms (spawn loop {p5m['bare_exec64_spawn_loop_ms']})",
                 "(limit)", "-", f"hawkey's share {p5['hawkey_share_exec64_ms']} ms"))
    return rows
