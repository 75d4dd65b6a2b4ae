"""P7: reloads under connection-per-request load, interleaved with as many
no-op controls (`hawkey status`): each event's second of completions
against the quiet seconds either side of it."""

import json
import statistics
import subprocess
import time

from .procs import base_env, free_port, log, now_ns, started, stop
from .servers import start_hawkey
from .settings import NOISY, S
from .table import verdict


def p7():
    log(f"== P7 {S.p7_reloads} reloads under connection-per-request load, alternating with as many no-op "
        f"controls (hawkey status), one event every 2 s")
    port = free_port()
    h = start_hawkey("p7-reload", port, 2)
    lead, every, tail = 2.0, 2.0, 1.0
    events = ["reload", "control"] * S.p7_reloads
    total = lead + len(events) * every + tail
    lg = subprocess.Popen([S.loadgen, "--port", str(port), "--mode", "close", "--threads", str(S.threads["close"]),
                           "--warmup", "1", "--ramp", "0.5", "--duration", str(total)],
                          env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started.append(lg)
    first = time.time() + 1.0 + lead
    done = []
    for k, kind in enumerate(events):
        left = first + k * every - time.time()
        if left > 0:
            time.sleep(left)
        w0, m0 = time.time(), now_ns()
        args = ["reload", "--wait"] if kind == "reload" else ["status"]
        cli = subprocess.run([S.bin, *args, "-c", h.config], env=base_env(), capture_output=True, text=True,
                             timeout=60, check=False)
        m1 = now_ns()
        inner = None
        if kind == "reload":
            try:
                ta, _ = h.notify.wait(lambda m: "RELOADING=1" in m, after_ns=m0, timeout=1)
                tb, _ = h.notify.wait(lambda m: "READY=1" in m, after_ns=ta, timeout=1)
                inner = (tb - ta) / 1e6
            except RuntimeError:
                pass
        done.append({"kind": kind, "start_unix": w0, "cli_ms": (m1 - m0) / 1e6, "reloading_to_ready_ms": inner,
                     "exit": cli.returncode, "said": (cli.stdout + cli.stderr).strip()[:200]})
    stdout, _ = lg.communicate(timeout=total + 60)
    res = json.loads(stdout)
    stop(h)
    b = res["buckets"]
    t0 = res["start_unix_us"] / 1e6
    per_s = 1000 // res["bucket_ms"]
    def window(i):      # completions in the second starting at bucket i
        return sum(b[i:i + per_s]) if 0 <= i and i + per_s <= len(b) else None
    # Each event's second against the quiet seconds either side of it; the
    # controls (a CLI run that changes nothing) give the noise floor.
    ratios = {"reload": [], "control": []}
    for ev in done:
        i = int((ev["start_unix"] - t0) * per_s)
        w, before, after = window(i), window(i - per_s), window(i + per_s)
        if None not in (w, before, after):
            ratios[ev["kind"]].append(w / ((before + after) / 2))
    reloads = [ev for ev in done if ev["kind"] == "reload"]

    def summary(v):
        return {"median": round(statistics.median(v), 3), "worst": round(min(v), 3),
                "all": [round(x, 3) for x in v]} if v else None
    out = {"reloads": len(reloads), "ok": res["ok"], "failed": res["failed"],
           "connect_errors": res["connect_errors"], "p99_us": res["p99_us"], "max_us": res["max_us"],
           "reload_exit_codes": sorted({ev["exit"] for ev in reloads}),
           "median_cli_ms": round(statistics.median(ev["cli_ms"] for ev in reloads), 2),
           "median_reloading_to_ready_ms": round(statistics.median(
               [ev["reloading_to_ready_ms"] for ev in reloads if ev["reloading_to_ready_ms"] is not None] or [0]), 2),
           "reload_over_quiet": summary(ratios["reload"]),
           "control_over_quiet": summary(ratios["control"]),
           "buckets": b, "events": [{k: v for k, v in ev.items() if k != "said"} | {"offset_s": round(ev["start_unix"] - t0, 3)}
                                    for ev in done]}
    log(f"   {({k: v for k, v in out.items() if k not in ('buckets', 'events')})}")
    return out


def rows(R):
    """P7's rows."""
    rows = []
    if "p7" not in R:
        return rows
    p7 = R["p7"]
    rows.append(("P7", f"{p7['reloads']} reloads under load: failed", f"{p7['failed']} failed, {p7['connect_errors']} refused of {p7['ok']}",
                 "0", verdict(p7["failed"] == 0 and p7["connect_errors"] == 0), "loadgen close mode, 4 threads"))
    rows.append(("P7", "reload duration (median)", f"{p7['median_cli_ms']} ms CLI, {p7['median_reloading_to_ready_ms']} ms RELOADING=1->READY=1",
                 "", "-", "hawkey reload --wait"))
    rq, cq = p7["reload_over_quiet"], p7["control_over_quiet"]
    rows.append(("P7", "reload second / quiet seconds either side", f"worst {rq['worst']}, median {rq['median']}",
                 ">= 0.70", verdict(rq["worst"] >= 0.70),
                 "100 ms buckets; events every 2 s; each event's second against the seconds around it"))
    rows.append(("P7", "control second (hawkey status) / quiet", f"worst {cq['worst']}, median {cq['median']}"
                 + (" NOISY" if cq["worst"] < 1 - NOISY else ""), "(noise floor)", "-",
                 "same, for a CLI run that changes nothing, interleaved with the reloads"))
    return rows
