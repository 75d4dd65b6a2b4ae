"""P1 (data path), P2 (against the Node `cluster` master) and P8 (balance).

P1: the built-in app as 2 hawkey workers against the same binary as 2
builtin workers under the bare launcher, and a second bare launcher (A/A:
the method's noise floor); bench/node/app.js likewise; keep-alive and
connection-per-request; the master's CPU during the load. P2: the Node app
under hawkey against the same app as a `cluster` primary (SCHED_RR, Node's
default, and SCHED_NONE), in the same interleaved rounds. P8: per-worker
request counts of P1's connection-per-request runs."""

import statistics
import time

from .load import compare
from .procs import cpu_ms, free_port, http_ok, log, status_field, stop, wait_for
from .servers import exec_node, start_bare, start_cluster, start_hawkey
from .settings import S
from .table import pair_str, verdict


def p1_builtin():
    log("== P1 builtin app: hawkey (2 workers) vs bare_launcher (2 builtin workers; twice: A/A)")
    ph, pb, pb2 = free_port(), free_port(), free_port()
    h = start_hawkey("p1-hawkey-builtin", ph, 2)
    b = start_bare("p1-bare-builtin", pb, 2, [S.bin], role_worker=True)
    b2 = start_bare("p1-bare2-builtin", pb2, 2, [S.bin], role_worker=True)
    wait_for("builtin apps", lambda: http_ok(ph) and http_ok(pb) and http_ok(pb2))
    master_cpu = {"keepalive": [0.0, 0.0, 0.0], "close": [0.0, 0.0, 0.0]}  # ticks ms, schedstat ms, wall s
    def on_run(name, mode, when, before=None, r=None):
        if name != "hawkey":
            return None
        if when == "before":
            return cpu_ms(h.pid), time.monotonic()
        (t0, n0), w0 = before
        t1, n1 = cpu_ms(h.pid)
        acc = master_cpu[mode]
        acc[0] += t1 - t0
        acc[1] += n1 - n0
        acc[2] += time.monotonic() - w0
    out = compare({"hawkey": ph, "bare": pb, "bare2": pb2}, "hawkey", ["keepalive", "close"], on_run=on_run)
    out["master_cpu"] = {}
    for mode, (ticks_ms, sched_ms, wall) in master_cpu.items():
        out["master_cpu"][mode] = {
            "load_s": round(wall, 1), "stat_ms": round(ticks_ms, 1), "schedstat_ms": round(sched_ms, 3),
            "stat_ms_per_30s": round(ticks_ms * 30 / wall, 2), "schedstat_ms_per_30s": round(sched_ms * 30 / wall, 3)}
    out["master_voluntary_ctxt_switches_total"] = status_field(h.pid, "voluntary_ctxt_switches")
    for p in (h, b, b2):
        stop(p)
    return out


def p1_p2_node():
    log("== P1/P2 node app: hawkey (exec, 2) vs bare_launcher (2, twice: A/A) vs cluster SCHED_RR vs SCHED_NONE (2)")
    ports = {"hawkey": free_port(), "bare": free_port(), "bare2": free_port(),
             "cluster_rr": free_port(), "cluster_none": free_port()}
    h = start_hawkey("p2-hawkey-node", ports["hawkey"], 2, exec_node())
    b = start_bare("p2-bare-node", ports["bare"], 2, ["node", S.app_js])
    b2 = start_bare("p2-bare2-node", ports["bare2"], 2, ["node", S.app_js])
    rr = start_cluster("p2-cluster-rr", ports["cluster_rr"], "rr")
    no = start_cluster("p2-cluster-none", ports["cluster_none"], "none")
    wait_for("node apps", lambda: all(http_ok(p) for p in ports.values()), timeout=30)
    # 5 variants x 10 rounds: a shorter counted window keeps the run in budget.
    out = compare(ports, "hawkey", ["close", "keepalive"], duration=None if S.quick else 2.5)
    for p in (h, b, b2, rr, no):
        stop(p)
    return out


def p8(builtin):
    per_run = []
    total = {}
    for slots in builtin["close"]["slots"]["hawkey"]:
        counts = [slots.get("0", 0), slots.get("1", 0)]
        per_run.append(round(max(counts) / max(1, min(counts)), 3))
        for k, v in slots.items():
            total[k] = total.get(k, 0) + v
    counts = [total.get("0", 0), total.get("1", 0)]
    return {"per_run_max_over_min": per_run, "median_run": statistics.median(per_run),
            "worst_run": max(per_run), "total_slots": total,
            "total_max_over_min": round(max(counts) / max(1, min(counts)), 3)}


def rows_p1_builtin(R):
    """P1's rows for the built-in app."""
    rows = []
    if "p1_builtin" not in R:
        return rows
    b = R["p1_builtin"]
    for mode in ("keepalive", "close"):
        c, aa = b[mode]["hawkey/bare"], b[mode]["bare2/bare"]
        rows.append(("P1", f"builtin {mode}: throughput hawkey/bare", pair_str(c["throughput"]), ">= 0.98",
                     verdict(c["throughput"]["median"] >= 0.98),
                     f"median of {len(c['throughput']['pairs'])} rotated rounds; A/A bare2/bare {pair_str(aa['throughput'])}"))
        rows.append(("P1", f"builtin {mode}: p99 hawkey/bare", pair_str(c["p99"]), "<= 1.05",
                     verdict(c["p99"]["median"] <= 1.05), f"same runs; A/A {pair_str(aa['p99'])}"))
    mc = b["master_cpu"]["keepalive"]
    rows.append(("P1", "master CPU under keep-alive load", f"{mc['stat_ms_per_30s']} ms/30s (schedstat {mc['schedstat_ms_per_30s']})",
                 "<= 10 ms/30s", verdict(mc["schedstat_ms_per_30s"] <= 10),
                 f"/proc stat utime+stime over {mc['load_s']} s of load"))
    return rows


def rows_node(R):
    """P1's rows for the Node app, and P2's."""
    rows = []
    if "p2_node" not in R:
        return rows
    n = R["p2_node"]
    for mode in ("keepalive", "close"):
        c, aa = n[mode]["hawkey/bare"], n[mode]["bare2/bare"]
        rows.append(("P1", f"node {mode}: throughput hawkey/bare", pair_str(c["throughput"]), ">= 0.98",
                     verdict(c["throughput"]["median"] >= 0.98),
                     f"median of {len(c['throughput']['pairs'])} rounds (5 variants rotated); A/A {pair_str(aa['throughput'])}"))
        rows.append(("P1", f"node {mode}: p99 hawkey/bare", pair_str(c["p99"]), "<= 1.05",
                     verdict(c["p99"]["median"] <= 1.05), f"same runs; A/A {pair_str(aa['p99'])}"))
    for mode, goal in (("close", 1.8), ("keepalive", 0.97)):
        for pol in ("cluster_rr", "cluster_none"):
            c = n[mode][f"hawkey/{pol}"]
            rows.append(("P2", f"node {mode}: hawkey/{pol}", pair_str(c["throughput"]), f">= {goal}" if pol == "cluster_rr" else "(info)",
                         verdict(c["throughput"]["median"] >= goal) if pol == "cluster_rr" else "-",
                         "median of the same interleaved rounds"))
    return rows


def rows_p8(R):
    """P8's row."""
    rows = []
    if "p8" not in R:
        return rows
    p8r = R["p8"]
    rows.append(("P8", "builtin accepted max/min", f"{p8r['median_run']} median run, {p8r['worst_run']} worst",
                 "<= 1.5", verdict(p8r["worst_run"] <= 1.5), "slot tallies of P1's close-mode hawkey runs"))
    return rows
