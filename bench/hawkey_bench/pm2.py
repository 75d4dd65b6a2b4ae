"""P10: hawkey against PM2 (what a Node user would pick instead), the same
unmodified Express app (tests/recipes/express/app.js: `app.listen(PORT)`,
no stop handler, no sd_notify) and N = 2.

hawkey runs it adopted (`workers.adopt`, `ready: auto`, the Node drain
shim); PM2 runs it as `pm2 start app.js -i 2` (cluster mode: the PM2
daemon is the `cluster` primary and accepts every connection), in a
PM2_HOME of this run's own, killed at the end. Figures: throughput with a
new connection per request and keep-alive (loadgen, interleaved rotating
rounds, medians of the per-round ratios); failed requests (failed +
refused) over `S.p10_reloads` reloads under load (`hawkey reload --wait`
against `pm2 reload app`, one after the other, each manager's load window
sized to cover its own reloads) in three modes: loadgen
connection-per-request, wrk keep-alive (8 connections; wrk reconnects on
`Connection: close`) and loadgen keep-alive (shown only: it ignores
`Connection: close`, so it charges a correctly draining server with its
own error); the manager's RSS (the hawkey master against the PM2 daemon,
smaps_rollup). Needs wrk (Debian's, from install.sh).

Needs tests/recipes/install.sh to have run (target/recipes-node: express,
pm2) and a hawkey with `workers.adopt`."""

import json
import os
import re
import shutil
import socket
import subprocess
import time

from .load import compare
from .procs import base_env, free_port, http_ok, log, memory_kib, started, stop
from .servers import start_hawkey
from .settings import S
from .table import pair_str, verdict


def paths():
    node = f"{S.root}/target/recipes-node"
    return {"app": f"{S.root}/tests/recipes/express/app.js", "node_modules": f"{node}/node_modules",
            "pm2": f"{node}/node_modules/.bin/pm2"}


def wait_serving(port, timeout=30):
    """Waits until GET / is answered (PM2 returns from `start` before the app listens)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(port, "/"):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing serves on 127.0.0.1:{port}")


class Pm2:
    """A PM2 daemon of this run's own (PM2_HOME under S.work) running the app
    as `pm2 start app.js -i 2 --name app`."""

    def __init__(self, name, port):
        p = paths()
        self.home = f"{S.work}/{name}/pm2-home"
        shutil.rmtree(self.home, ignore_errors=True)
        os.makedirs(self.home)
        self.env = base_env(PM2_HOME=self.home, PORT=port, NODE_PATH=p["node_modules"])
        self.pm2, self.port = p["pm2"], port
        self.cli("start", p["app"], "-i", "2", "--name", "app")
        with open(f"{self.home}/pm2.pid") as f:
            self.pid = int(f.read().strip())
        wait_serving(port)

    def cli(self, *args, timeout=120):
        r = subprocess.run([self.pm2, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                           check=False, cwd=os.path.dirname(paths()["app"]))
        return r

    def kill(self):
        self.cli("kill", timeout=60)
        try:
            os.kill(self.pid, 0)
            os.kill(self.pid, 9)
        except OSError:
            pass


def hawkey_yaml(port):
    p = paths()
    return (f"  app: exec\n  command: [node, '{p['app']}']\n"
            f"  env: {{PORT: '{port}', NODE_PATH: '{p['node_modules']}'}}\n"
            f"  adopt: {{http: {port}}}\n")


def wrk_run(port, seconds):
    """wrk keep-alive load (2 threads, 8 connections) for `seconds`: its
    counts. Unlike loadgen's keep-alive mode, wrk honours a response's
    `Connection: close` (it reconnects), as an HTTP/1.1 client must: a
    server that drains that way is not charged with the client's error."""
    return subprocess.Popen(["wrk", "-t2", "-c8", f"-d{seconds:.0f}s", f"http://127.0.0.1:{port}/"],
                            env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wrk_counts(text):
    """ok, failed (socket errors and non-2xx/3xx) from wrk's summary."""
    total = int(re.search(r"(\d+) requests in", text).group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    sock = [int(x) for x in m.groups()] if m else [0, 0, 0, 0]
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non2xx = int(m.group(1)) if m else 0
    return {"ok": total - non2xx, "failed": sum(sock[1:]) + non2xx, "connect_errors": sock[0]}


def reloads_under_load(port, mode, reload_once, n):
    """n reloads (reload_once() -> exit code) under loadgen load in `mode`.
    loadgen's window is fixed before it starts, so it is sized from one
    reload timed first (not counted), 3 times over: a reload under load
    takes longer than one without (PM2's: 1.2 s idle, 4 s under keep-alive
    load). `all_inside_window` says whether every reload ended inside it."""
    t = time.monotonic()
    reload_once()
    one = max(0.2, time.monotonic() - t)
    gap = 0.5
    # Capped: one slow first reload (PM2's once took ~28 s) must not make
    # the window half an hour; the rows say if reloads then fall outside.
    window = min(1.0 + n * (one + gap) * 3 + 1.0, 2.0 + n * 8.0)
    if mode == "wrk":
        lg = wrk_run(port, window + 0.5)
    else:
        lg = subprocess.Popen([S.loadgen, "--port", str(port), "--mode", mode, "--threads", str(S.threads[mode]),
                               "--warmup", "0.5", "--ramp", "0.25", "--duration", f"{window:.1f}"],
                              env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started.append(lg)
    time.sleep(0.5 + 1.0)
    t0 = time.monotonic()
    rcs, times = [], []
    for _ in range(n):
        if time.monotonic() - t0 > window - 1.0 - one:
            break       # no time left in the window for another: the row says so
        a = time.monotonic()
        rcs.append(reload_once())
        times.append(round(time.monotonic() - a, 3))
        time.sleep(gap)
    inside = len(rcs) == n and time.monotonic() - t0 <= window - 1.0
    out, _ = lg.communicate(timeout=window + 60)
    r = wrk_counts(out) if mode == "wrk" else json.loads(out)
    return {"reloads": len(rcs), "exit_codes": sorted(set(rcs)), "median_reload_s": sorted(times)[len(times) // 2],
            "window_s": round(window, 1), "all_inside_window": inside, "ok": r["ok"], "failed": r["failed"],
            "connect_errors": r["connect_errors"]}


def p10():
    log(f"== P10 unmodified Express app: hawkey (adopted, 2) vs pm2 start -i 2; throughput, "
        f"{S.p10_reloads} reloads under load per mode, manager RSS")
    p = paths()
    for f in (p["app"], p["pm2"]):
        if not os.path.exists(f):
            raise RuntimeError(f"no {f}: run tests/recipes/install.sh first")
    ph, pp = free_port(), free_port()
    h = start_hawkey("p10-hawkey-express", ph, 2, hawkey_yaml(ph), env={"NODE_PATH": p["node_modules"]})
    pm = Pm2("p10-pm2-express", pp)
    out = {}
    try:
        wait_serving(ph)
        time.sleep(1.0)
        out["rss_kib"] = {"hawkey_master": memory_kib(h.pid)["rss"], "pm2_daemon": memory_kib(pm.pid)["rss"]}
        log(f"   manager RSS: {out['rss_kib']}")
        out["throughput"] = compare({"hawkey": ph, "pm2": pp}, "hawkey", ["close", "keepalive"])
        out["rss_kib_after_load"] = {"hawkey_master": memory_kib(h.pid)["rss"],
                                     "pm2_daemon": memory_kib(pm.pid)["rss"]}

        def hawkey_reload():
            return subprocess.run([S.bin, "reload", "--wait", "-c", h.config], env=base_env(), capture_output=True,
                                  timeout=120, check=False).returncode

        def pm2_reload():
            return pm.cli("reload", "app").returncode
        out["reloads"] = {}
        for mode in S.p10_modes:
            for name, fn, port in (("hawkey", hawkey_reload, ph), ("pm2", pm2_reload, pp)):
                r = reloads_under_load(port, mode, fn, S.p10_reloads)
                out["reloads"].setdefault(mode, {})[name] = r
                log(f"   {mode:9} {name:6} {r}")
    finally:
        stop(h)
        pm.kill()
    return out


def rows(R):
    """P10's rows."""
    rows = []
    if "p10" not in R:
        return rows
    x = R["p10"]
    for mode, goal in (("close", 1.8), ("keepalive", None)):
        c = x["throughput"][mode]["hawkey/pm2"]
        rps = x["throughput"][mode]["rps"]
        rows.append(("P10", f"express {mode}: throughput hawkey/pm2", pair_str(c["throughput"]),
                     f">= {goal}" if goal else "(info)", verdict(c["throughput"]["median"] >= goal) if goal else "-",
                     f"median of {len(c['throughput']['pairs'])} rotated rounds; rps hawkey "
                     f"{sorted(rps['hawkey'])[len(rps['hawkey']) // 2]}, pm2 {sorted(rps['pm2'])[len(rps['pm2']) // 2]}"))
    for mode in x["reloads"]:
        h, p = x["reloads"][mode]["hawkey"], x["reloads"][mode]["pm2"]
        hf, pf = h["failed"] + h["connect_errors"], p["failed"] + p["connect_errors"]
        inside = h["all_inside_window"] and p["all_inside_window"]
        rows.append(("P10", f"express {mode}: failed over {h['reloads']}/{p['reloads']} reloads",
                     f"hawkey {hf} of {h['ok']}, pm2 {pf} of {p['ok']}" + ("" if inside else " (NOT ALL IN WINDOW)"),
                     # loadgen's keep-alive mode ignores Connection: close: shown, not judged
                     "(info)" if mode == "keepalive" else "hawkey <= pm2",
                     "-" if mode == "keepalive" else verdict(hf <= pf and h["exit_codes"] == [0] and inside),
                     f"{'wrk -c8 keep-alive' if mode == 'wrk' else 'loadgen ' + mode}; median reload hawkey {h['median_reload_s']} s, pm2 {p['median_reload_s']} s; "
                     f"exit codes hawkey {h['exit_codes']}, pm2 {p['exit_codes']}"))
    r = x["rss_kib"]
    rows.append(("P10", "manager RSS: hawkey master / PM2 daemon",
                 f"{r['hawkey_master'] / 1024:.1f} MiB / {r['pm2_daemon'] / 1024:.1f} MiB = "
                 f"{r['hawkey_master'] / r['pm2_daemon']:.3f}", "<= 0.05",
                 verdict(r["hawkey_master"] / r["pm2_daemon"] <= 0.05),
                 f"smaps_rollup Rss, idle after start; after the load: {x['rss_kib_after_load']}"))
    return rows
