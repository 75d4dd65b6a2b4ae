"""The command line (flags, and the BENCH_* variables they default from),
the order the parts run in, the summary and table, results.json."""

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import time

from . import corpus, memory, pm2, reload, respawn, scale, start, throughput
from .procs import loadavg, log, read_text, stop_all
from .settings import S
from .table import print_table

# The names BENCH_ONLY / --only take; p8 runs p1's builtin part; scale is
# issue #11's pools of 2-256 workers and hostile notify senders; pm2 (P10)
# runs only when named: it needs tests/recipes/install.sh's packages.
GOALS = ("p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "g13", "scale", "pm2")
ONLY_WHEN_NAMED = ("pm2",)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

EPILOG = """\
environment (the flags win):
  BENCH_QUICK=1        as --quick
  BENCH_ONLY=p5,p6     as --only p5,p6
  BENCH_ONLY=scale     issue #11: start -> READY=1 and reload --wait of 2, 64 and
                       256 workers (builtin and exec'd), master RSS/PSS and CPU;
                       the master's fds and pool under 10 000 hostile notify
                       datagrams from nobody and from root with 9 fds each
                       (about 3 minutes; as root: needs setpriv, /usr/bin/python3)
  BENCH_ONLY=pm2       P10: the unmodified Express app of tests/recipes/express
                       under hawkey (adopted) and under `pm2 start app.js -i 2`:
                       throughput, failed requests over 20 reloads (5 quick) in
                       both modes, manager RSS (about 6 minutes; needs
                       tests/recipes/install.sh, which bench/run.sh runs for it)

Run by bench/run.sh, which first builds hawkey, examples/bare_launcher and
examples/loadgen in release mode and copies them to OUT/bin/, and on exit
kills whatever still carries this run's tag. Run directly, it needs those
binaries in OUT/bin/ already; it stops what it started itself at exit.
"""


def parse_args(argv, environ):
    ap = argparse.ArgumentParser(
        prog="hawkey_bench", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=("hawkey's benchmarks: the performance goals P1-P8 and G13's time and memory\n"
                     "half (docs/goals.md) and issue #11's scale figures (scale), printed as a table\n"
                     "with the method beside each figure; every raw figure goes to\n"
                     "OUT/results.json, logs, configs and sockets to OUT/work/. BENCHMARKS.md\n"
                     "has the method and the reading."))
    ap.add_argument("--quick", action="store_true", default=environ.get("BENCH_QUICK", "0") == "1",
                    help="smoke run: fewer rounds, shorter windows (about 3 minutes for everything, plus 1.5 for scale)")
    ap.add_argument("--only", metavar="GOALS", default=environ.get("BENCH_ONLY", ""),
                    help=f"comma-separated goals to run, of {','.join(GOALS)}; p8 runs p1's builtin part; "
                         "scale is issue #11's (see below) (default: all, about 15 minutes)")
    ap.add_argument("--root", default=ROOT, help="the hawkey checkout (default: %(default)s)")
    ap.add_argument("--out", help="where bin/, work/ and results.json are (default: ROOT/target/bench)")
    ap.add_argument("--tag", help="HAWKEY_BENCH_TAG given to every process started (default: a new one)")
    args = ap.parse_args(argv)
    args.only = {x.strip().lower() for x in args.only.split(",") if x.strip()}
    if args.only - set(GOALS):
        ap.error(f"unknown goal(s) {','.join(sorted(args.only - set(GOALS)))}; known: {','.join(GOALS)}")
    args.root = os.path.abspath(args.root)
    args.out = os.path.abspath(args.out or f"{args.root}/target/bench")
    args.tag = args.tag or f"hawkey-bench-{os.getpid()}-{random.randrange(1 << 15)}"
    missing = [b for b in (f"{args.out}/bin/{n}" for n in ("hawkey", "bare_launcher", "loadgen"))
               if not os.access(b, os.X_OK)]
    if missing:
        ap.error(f"no {', '.join(missing)}: bench/run.sh builds them (release) and copies them there")
    return args


def machine():
    def run(*a):
        try:
            return subprocess.run(a, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError, ValueError):
            return None
    cpu = next((line.split(":", 1)[1].strip() for line in read_text("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), "?")
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
            "os": run("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
            "memory_mib": int(read_text("/proc/meminfo").split("\n", 1)[0].split()[1]) // 1024,
            "rustc": run("rustc", "--version"), "node": run("node", "--version"),
            "commit": run("git", "-C", S.root, "rev-parse", "--short", "HEAD"),
            "hawkey_sha256": run("sha256sum", S.bin).split()[0],
            "worktree_dirty": bool(run("git", "-C", S.root, "status", "--porcelain", "--", "src")),
            "loadavg_start": loadavg()[:3]}


def measure(only, results):
    """Runs the parts asked for into `results`, in the order that keeps
    them apart: P4's idle masters idle while P5-P7 run (those do not wake
    them) and are gone before P3 (whose PSS they would share)."""
    def want(goal):
        return goal in only if goal in ONLY_WHEN_NAMED or only else True

    def mark(goal):
        results["loadavg"][goal] = loadavg()[0]
    results["loadavg"] = {}
    if want("g13"):
        # First: its wall times are held to a goal, and the machine is
        # quietest now.
        mark("g13")
        results["g13"] = corpus.g13()
    mark("p4")
    p4_run = memory.p4_start() if want("p4") else None
    if want("p5"):
        mark("p5")
        results["p5"] = start.p5()
    if want("p6"):
        mark("p6")
        results["p6"] = respawn.p6()
    if want("p7"):
        mark("p7")
        results["p7"] = reload.p7()
    if p4_run:
        results["p4"] = memory.p4_finish(*p4_run)
        log(f"   {results['p4']}")
    if want("p3"):
        mark("p3")
        results["p3"] = memory.p3()
    if want("p1") or want("p8"):
        mark("p1_builtin")
        results["p1_builtin"] = throughput.p1_builtin()
        results["p8"] = throughput.p8(results["p1_builtin"])
    if want("p1") or want("p2"):
        mark("p2_node")
        results["p2_node"] = throughput.p1_p2_node()
    if want("scale"):
        # Last: 256-worker pools and floods would load everything else.
        mark("scale")
        results["scale"] = scale.scale()
    if want("pm2"):
        mark("pm2")
        results["p10"] = pm2.p10()
    mark("end")


def rows(R):
    return (throughput.rows_p1_builtin(R) + throughput.rows_node(R) + memory.rows_p3(R) + memory.rows_p4(R)
            + start.rows(R) + respawn.rows(R) + reload.rows(R) + throughput.rows_p8(R) + corpus.rows(R)
            + scale.rows(R) + pm2.rows(R))


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None):
    args = parse_args(argv, os.environ)
    S.configure(args.root, args.out, args.tag, args.quick)
    os.chdir(S.root)
    shutil.rmtree(S.work, ignore_errors=True)   # this run's logs, configs and sockets only
    os.makedirs(S.work)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    only = args.only
    results = {"quick": S.quick}
    try:
        t_all = time.monotonic()
        results["machine"] = machine()
        log(f"== machine: {results['machine']}")
        measure(only, results)
        results["machine"]["loadavg_end"] = loadavg()[:3]
        results["elapsed_s"] = round(time.monotonic() - t_all, 1)
        print()
        print(f"hawkey benchmarks ({'BENCH_QUICK' if S.quick else 'full'}"
              f"{', only ' + ','.join(sorted(only)) if only else ''}), "
              f"{results['machine']['cpus']} CPUs, kernel {results['machine']['kernel']}, load average "
              f"{results['machine']['loadavg_start']} -> {results['machine']['loadavg_end']}, {results['elapsed_s']} s")
        print("1-minute load average at the start of each part: "
              + ", ".join(f"{k} {v}" for k, v in results["loadavg"].items()))
        results["table"] = print_table(rows(results))
    finally:
        stop_all()
        with open(f"{S.out}/results.json", "w") as f:
            json.dump(results, f, indent=1, default=str)
        log(f"== results: {S.out}/results.json, logs: {S.work}/")
    return 0
