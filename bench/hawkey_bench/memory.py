"""P3 (master memory) and P4 (idle master).

P3: the master's RSS/PSS with 1..256 exec'd workers and with 2 builtin
ones; its growth over 1000 respawns, then up to 5000. P4: voluntary context
switches of idle masters, with and without the systemd watchdog; they idle
while P5-P7 run (`p4_start` ... `p4_finish`)."""

import os
import signal
import time

from .procs import (
    binary_rss_kib,
    children,
    comm,
    cpu_ms,
    free_port,
    log,
    memory_kib,
    now_ns,
    status_field,
    stop,
    wait_for,
)
from .servers import EXEC_SLEEP, start_hawkey
from .settings import S
from .table import verdict


def p4_start():
    log(f"== P4 idle masters ({S.idle_s} s): exec sleep x2, same with WATCHDOG_USEC=2000000, builtin x2")
    ms = {
        "exec_no_watchdog": start_hawkey("p4-idle", free_port(), 2, EXEC_SLEEP),
        "exec_watchdog_2s": start_hawkey("p4-idle-wd", free_port(), 2, EXEC_SLEEP,
                                         env={"WATCHDOG_USEC": 2000000}),
        "builtin_no_watchdog": start_hawkey("p4-idle-builtin", free_port(), 2),
    }
    time.sleep(1.0)   # let start-up settle
    marks = {k: (status_field(p.pid, "voluntary_ctxt_switches"),
                 status_field(p.pid, "nonvoluntary_ctxt_switches"), cpu_ms(p.pid)[1]) for k, p in ms.items()}
    return ms, marks, now_ns()


def p4_finish(ms, marks, t0):
    left = S.idle_s - (now_ns() - t0) / 1e9
    if left > 0:
        time.sleep(left)
    t1 = now_ns()
    out = {"window_s": round((t1 - t0) / 1e9, 2)}
    for k, p in ms.items():
        v0, n0, c0 = marks[k]
        out[k] = {"voluntary_ctxt_switches": status_field(p.pid, "voluntary_ctxt_switches") - v0,
                  "nonvoluntary_ctxt_switches": status_field(p.pid, "nonvoluntary_ctxt_switches") - n0,
                  "cpu_ms": round(cpu_ms(p.pid)[1] - c0, 3),
                  "watchdog_pings_received": p.notify.count("WATCHDOG=1", t0, t1)}
        stop(p)
    return out


def p3():
    log(f"== P3 master memory: N exec'd workers (sleep), builtin x2, then {S.respawns} respawns")
    out = {"by_workers": {}}
    for n in S.p3_counts:
        h = start_hawkey(f"p3-mem-{n}", free_port(), n, EXEC_SLEEP)
        wait_for(f"{n} workers exec'd", lambda h=h, n=n: sum(1 for c in children(h.pid) if comm(c) == "sleep") == n)
        time.sleep(0.3)
        out["by_workers"][n] = memory_kib(h.pid)
        log(f"   exec x{n:3}: {out['by_workers'][n]}")
        stop(h)
    h = start_hawkey("p3-mem-builtin", free_port(), 2)
    time.sleep(0.3)
    out["builtin_2"] = memory_kib(h.pid)
    out["builtin_2"]["binary_text_rss"] = binary_rss_kib(h.pid)
    log(f"   builtin x2: {out['builtin_2']}")
    stop(h)
    m = out["by_workers"]
    for key in ("rss", "pss", "anonymous"):
        out[f"{key}_per_extra_worker_kib"] = round((m[256][key] - m[2][key]) / 254, 2)

    n = 8
    h = start_hawkey("p3-respawn", free_port(), n, EXEC_SLEEP + "  restart_backoff: {initial: 1ms, max: 1ms}\n")
    def pool():
        kids = children(h.pid)
        return kids if len(kids) == n and all(comm(c) == "sleep" for c in kids) else None
    wait_for("pool", pool)
    time.sleep(0.3)
    marks = {"at_ready": memory_kib(h.pid)}
    done = 0
    t0 = time.monotonic()
    while done < S.respawns:
        victims = wait_for("pool", pool, timeout=30, every=0.001)
        for v in victims:
            os.kill(v, signal.SIGKILL)
        done += len(victims)
        def respawned(victims=victims):
            kids = pool()
            return kids and not set(kids) & set(victims)
        wait_for("respawned pool", respawned, timeout=30, every=0.001)
        for mark in (100, 1000, 2000, 3000, 4000):
            if done >= mark and f"after_{mark}" not in marks:
                marks[f"after_{mark}"] = memory_kib(h.pid)
    took = time.monotonic() - t0
    time.sleep(0.3)
    marks[f"after_{done}"] = memory_kib(h.pid)

    def pick(key):
        return {k: v[key] for k, v in marks.items()}

    def grow(key, a, b):
        return marks[b][key] - marks[a][key]
    out["respawns"] = {"count": done, "took_s": round(took, 2), "rss_kib": pick("rss"), "pss_kib": pick("pss"),
                       "anonymous_kib": pick("anonymous"),
                       "rss_growth_first_1000_kib": grow("rss", "at_ready", "after_1000"),
                       "anonymous_growth_first_1000_kib": grow("anonymous", "at_ready", "after_1000"),
                       "rss_growth_after_1000_kib": grow("rss", "after_1000", f"after_{done}"),
                       "anonymous_growth_after_1000_kib": grow("anonymous", "after_1000", f"after_{done}")}
    log(f"   respawns: {out['respawns']}")
    stop(h)
    return out


def rows_p3(R):
    """P3's rows."""
    rows = []
    if "p3" not in R:
        return rows
    m = R["p3"]
    two, bi = m["by_workers"][2], m["builtin_2"]
    rows.append(("P3", "master RSS / PSS, 2 exec'd workers", f"{two['rss']} / {two['pss']} KiB (anon {two['anonymous']})",
                 "<= 4096 / 1536 KiB", verdict(two["rss"] <= 4096 and two["pss"] <= 1536), "/proc/<master>/smaps_rollup once READY=1"))
    rows.append(("P3", "master RSS / PSS, 2 builtin workers", (f"{bi['rss']} / {bi['pss']} KiB (anon {bi['anonymous']}, "
                  f"binary {bi['binary_text_rss']})"), "<= 4096 / 1536 KiB", verdict(bi["rss"] <= 4096 and bi["pss"] <= 1536),
                 "same; the workers share the binary's pages"))
    rows.append(("P3", "per extra worker", f"RSS {m['rss_per_extra_worker_kib']} KiB, anon {m['anonymous_per_extra_worker_kib']} KiB",
                 "<= 64 KiB", verdict(m["rss_per_extra_worker_kib"] <= 64), "(X(256) - X(2)) / 254, exec'd sleep"))
    rp = m["respawns"]
    rows.append(("P3", f"growth over 1000 respawns (then to {rp['count']})",
                 (f"RSS +{rp['rss_growth_first_1000_kib']} KiB, anon +{rp['anonymous_growth_first_1000_kib']} KiB "
                  f"(then +{rp['rss_growth_after_1000_kib']} / +{rp['anonymous_growth_after_1000_kib']})"),
                 "0", verdict(rp["anonymous_growth_first_1000_kib"] <= 4),
                 "kill -9 of all 8 exec'd workers, repeated; verdict on anon (heap, stack) over the first 1000"))
    return rows


def rows_p4(R):
    """P4's rows."""
    rows = []
    if "p4" not in R:
        return rows
    p4 = R["p4"]
    rows.append(("P4", f"idle wake-ups, no watchdog ({p4['window_s']:.0f} s)", str(p4["exec_no_watchdog"]["voluntary_ctxt_switches"]), "0",
                 verdict(p4["exec_no_watchdog"]["voluntary_ctxt_switches"] == 0), "voluntary_ctxt_switches of the master, exec'd workers"))
    wd = p4["exec_watchdog_2s"]
    rows.append(("P4", "idle wake-ups, WATCHDOG_USEC=2s", f"{wd['voluntary_ctxt_switches']} ({wd['watchdog_pings_received']} pings)",
                 f"= pings (~{p4['window_s']:.0f})", verdict(wd["voluntary_ctxt_switches"] <= wd["watchdog_pings_received"] + 1), "same"))
    bw = p4["builtin_no_watchdog"]
    rows.append(("P4", "idle wake-ups, builtin workers", str(bw["voluntary_ctxt_switches"]), "(info)", "-",
                 "their heartbeats (WATCHDOG=1 every 10 s each) wake the master"))
    return rows
