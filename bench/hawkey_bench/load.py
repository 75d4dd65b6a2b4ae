"""Load: one examples/loadgen.rs run, and `compare`, which runs it against
several variants in interleaved, rotating rounds and gives the ratios of
one variant over the others round by round (median, range, spread).

Throughput and latency ratios are medians over interleaved rounds: each
round runs every variant once, the order rotating so that each variant
takes each position equally often, and gives one ratio per pair (>= 7).
A second bare_launcher ("bare2") is measured like the others: bare2/bare
is an A/A comparison, the method's own noise floor on this machine. A
comparison whose ratios spread more than NOISY (interquartile range over
the median) is flagged NOISY."""

import json
import statistics
import subprocess

from .procs import base_env, log
from .settings import NOISY, S


def loadgen(port, mode, warmup=None, duration=None, threads=None, path="/"):
    args = [S.loadgen, "--port", str(port), "--mode", mode,
            "--threads", str(threads or S.threads[mode]),
            "--warmup", str(S.warmup if warmup is None else warmup),
            "--ramp", str((S.warmup if warmup is None else warmup) / 2),
            "--duration", str(S.duration if duration is None else duration), "--path", path]
    out = subprocess.run(args, env=base_env(), capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr}")
    return json.loads(out.stdout)


def quartiles(v):
    s = sorted(v)
    if len(s) < 2:
        return s[0], s[0]
    q = statistics.quantiles(s, n=4, method="inclusive")
    return q[0], q[2]


def summarize_pairs(ratios):
    med = statistics.median(ratios)
    q1, q3 = quartiles(ratios)
    spread = (q3 - q1) / med if med else float("inf")
    return {"median": round(med, 4), "min": round(min(ratios), 4), "max": round(max(ratios), 4),
            "iqr_spread": round(spread, 4), "noisy": spread > NOISY,
            "pairs": [round(r, 4) for r in ratios]}


def compare(variants, base, modes, pairs=None, on_run=None, duration=None):
    """Runs loadgen against every variant (name -> port) in rotating order,
    at least `pairs` rounds per mode (default: the run's), rounded up to a
    multiple of the number of variants so that each variant runs in each
    position of a round equally often; ratios of `base` over each other
    variant, round by round."""
    names = list(variants)
    rounds = -(-(pairs or S.pairs) // len(names)) * len(names)
    runs = {m: {n: [] for n in names} for m in modes}
    for mode in modes:
        for i in range(rounds):
            order = names[i % len(names):] + names[:i % len(names)]
            for n in order:
                before = on_run(n, mode, "before") if on_run else None
                r = loadgen(variants[n], mode, duration=duration)
                if on_run:
                    on_run(n, mode, "after", before, r)
                runs[mode][n].append(r)
                log(f"   {mode:9} {n:12} {r['rps']:9.0f} rps  p99 {r['p99_us']:6} us  "
                    f"failed {r['failed']} conn_err {r['connect_errors']} slots {r['slots']}")
    out = {}
    for mode in modes:
        out[mode] = {"rps": {n: [round(r["rps"]) for r in runs[mode][n]] for n in names},
                     "p99_us": {n: [r["p99_us"] for r in runs[mode][n]] for n in names},
                     "failed": {n: sum(r["failed"] + r["connect_errors"] for r in runs[mode][n]) for n in names},
                     "slots": {n: [r["slots"] for r in runs[mode][n]] for n in names}}
        pairs = [(base, other) for other in names if other != base]
        if "bare" in names and "bare2" in names:
            pairs.append(("bare2", "bare"))     # A/A: the same thing twice, the method's noise floor
        for one, other in pairs:
            a, b = runs[mode][one], runs[mode][other]
            out[mode][f"{one}/{other}"] = {
                "throughput": summarize_pairs([x["rps"] / y["rps"] for x, y in zip(a, b)]),
                "p99": summarize_pairs([x["p99_us"] / max(1, y["p99_us"]) for x, y in zip(a, b)]),
            }
    return out
