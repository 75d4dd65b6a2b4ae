#!/usr/bin/env python3
"""Recipes for real servers under hawkey, each run for real: the package
from its registry (tests/recipes/install.sh), the recipe's own hawkey.yaml
and app, and the checks a user would make.

    tests/recipes/run.py                 # every recipe
    tests/recipes/run.py gunicorn puma   # some of them
    tests/recipes/run.py --list

For each recipe (a folder beside this file with a hawkey.yaml), with N = 2:
  start   `hawkey run -c CONFIG` (HAWKEY_BIN, default target/debug/hawkey);
          ready when hawkey logs "all 2 workers ready" and the port answers
  spread  requests are served, each answer names its pid: both workers serve
          (requests from 4 threads until both answered);
          and the median latency on one kept connection (reported only)
  reload  5 x `hawkey reload --wait` under load, twice: connection-per-request
          (a new connection and `Connection: close` per request) and
          keep-alive without retry (each client thread reuses one
          http.client.HTTPConnection; a failed request is counted, not
          retried); every reload must exit 0 and the pids must change
  stop    SIGTERM to the master: exit 0, no process of the tree left (found
          by a tag in the environment, so setsid'd ones too), port free
Failed requests are printed for every recipe and asserted 0 only where
the recipe's `assert_zero` says hawkey can guarantee it (see RECIPES).

Stdlib only. 127.0.0.1 only. Every wait has a deadline and every loop a
count bound. Exit 0 if every recipe run passed its assertions, 1 if not,
2 on a usage error. A recipe that this hawkey cannot run (its config is
rejected by `hawkey check`: a key from a later hawkey) fails: it is not
skipped.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VENV = os.path.join(ROOT, "target", "recipes-venv")
NODE = os.path.join(ROOT, "target", "recipes-node")

N = 2                 # workers per recipe
RELOADS = 5           # per mode
CLIENTS = 4           # load threads per mode
REQ_TIMEOUT = 5.0     # s, one request
START_TIMEOUT = 60.0  # s, hang guard: start to "all 2 workers ready"
SPREAD_TIMEOUT = 20.0  # s, hang guard: both workers answered
RELOAD_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0

# What each recipe promises about failed requests over reloads, and why.
#   close:     connection-per-request. The old worker drains (stops
#              accepting, finishes what it accepted) on the stop signal and
#              hawkey stops it only once its replacement is ready; the
#              listener is shared, so nothing queued is lost. Asserted 0
#              wherever the server drains on SIGTERM (or hawkey drains it).
#   keepalive: an idle keep-alive connection is closed by the old worker at
#              some moment of its drain; a request the client sends at that
#              moment fails. Only a server that says `Connection: close`
#              on every answer (gunicorn's sync worker) or that answers the
#              next request with `Connection: close` before closing can
#              promise 0; hawkey cannot change how a third-party server
#              closes its connections, so elsewhere the figure is reported.
RECIPES = {
    "gunicorn": {"assert_zero": {"close", "keepalive"},
                 "why": "gunicorn drains on SIGTERM (graceful_timeout); its sync worker answers every "
                        "request with Connection: close, so keep-alive clients reconnect and lose nothing"},
    "gunicorn-uvicorn": {"assert_zero": set(),
                         "why": "uvicorn's shutdown closes every connection with no request parsed yet, "
                                "including ones just accepted whose request is in flight: a few resets "
                                "per reload, in both modes; hawkey cannot change that"},
    "uvicorn": {"assert_zero": set(),
                "why": "as gunicorn-uvicorn: uvicorn's shutdown closes connections accepted whose "
                       "request it has not read yet"},
    "hypercorn": {"assert_zero": set(),
                  "why": "hypercorn drains requests in progress on SIGTERM, but closes every connection "
                         "idle at that moment, just-accepted ones whose request is in flight too"},
    "waitress": {"assert_zero": {"close", "keepalive"},
                 "why": "waitress has no stop handler; serve.py's stops accepting, answers the next "
                        "request on each connection with Connection: close, exits once all are idle"},
    "express": {"assert_zero": {"close", "keepalive"},
                "why": "unmodified: hawkey's Node drain shim stops accepting on SIGTERM, answers the next "
                       "request on each connection with Connection: close, exits when all are closed"},
    "fastify": {"assert_zero": {"close", "keepalive"},
                "why": "app.js's stop handler stops accepting without Node's closeIdleConnections() "
                       "(which resets just-accepted connections), answers with Connection: close, "
                       "exits when no connection is left"},
    "puma": {"assert_zero": {"close"},
             "why": "puma drains on SIGTERM; queue_requests false keeps it from closing accepted "
                    "connections whose request has not arrived"},
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Failed(Exception):
    """An assertion of a recipe failed; the message says which."""


# ---------------------------------------------------------------- HTTP


def get_close(port):
    """One request on a new connection; the body, or raises OSError/HTTPException."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=REQ_TIMEOUT)
    try:
        c.request("GET", "/", headers={"Connection": "close"})
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise http.client.HTTPException(f"status {r.status}")
        return body.decode(errors="replace")
    finally:
        c.close()


def get_on(conn):
    """One request on a kept connection (reopened by http.client only if the
    server had said Connection: close); never retried."""
    conn.request("GET", "/")
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise http.client.HTTPException(f"status {r.status}")
    return body.decode(errors="replace")


def pid_of(body):
    """The pid an app answers with: the last word of its first line."""
    try:
        return int(body.split("\n", 1)[0].split()[-1])
    except (ValueError, IndexError):
        return None


class Load:
    """CLIENTS threads sending requests in one mode until stopped (or a hard
    bound of requests and time), counting ok and failed, and the pids."""

    def __init__(self, port, mode, max_s):
        self.port, self.mode = port, mode
        self.ok = self.failed = 0
        self.errors = {}
        self.pids = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.deadline = time.monotonic() + max_s
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(CLIENTS)]

    def client(self):
        conn = None
        for _ in range(200_000):
            if self.stopping.is_set() or time.monotonic() > self.deadline:
                break
            try:
                if self.mode == "close":
                    body = get_close(self.port)
                else:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQ_TIMEOUT)
                    body = get_on(conn)
                pid = pid_of(body)
                with self.lock:
                    self.ok += 1
                    self.pids[pid] = self.pids.get(pid, 0) + 1
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failed += 1
                    k = type(e).__name__
                    self.errors[k] = self.errors.get(k, 0) + 1
                if conn is not None:
                    conn.close()    # the next request opens a new one: no retry of this one
                time.sleep(0.005)
        if conn is not None:
            conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join(REQ_TIMEOUT * 3)


# ---------------------------------------------------------------- processes


_TAKEN = []


def free_port():
    """A port on 127.0.0.1 that is this run's alone, as tests/support's
    free_port takes it: from below the kernel's ephemeral range (which
    bind(:0) and outgoing connections draw from, so nothing takes it by
    chance before hawkey binds it), reserved by a flock on a file named
    after it in a private directory, held until this process exits."""
    import fcntl
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        high = int(f.read().split()[0])
    low = 10000
    assert high > 12000, f"ip_local_port_range starts at {high}"
    d = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"hawkey-test-ports-{os.geteuid()}")
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(d)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022, \
        f"{d} is not a private directory of this uid: remove it"
    span = high - low
    start = (os.getpid() * 7919 + len(_TAKEN)) % span
    for i in range(span):
        port = low + (start + i) % span
        f = open(os.path.join(d, str(port)), "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        if not port_free(port):
            f.close()
            continue
        _TAKEN.append(f)
        return port
    raise RuntimeError(f"no free port in {low}..{high}")


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
            return True
        except OSError:
            return False


def tagged(tag):
    """Pids of live processes whose environment carries the tag."""
    out = []
    needle = f"HAWKEY_RECIPE_TAG={tag}".encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if needle in f.read():
                    with open(f"/proc/{d}/stat") as s:
                        state = s.read().rsplit(")", 1)[1].split()[0]
                    if state != "Z":
                        out.append(int(d))
        except OSError:
            pass
    return out


def wait_until(what, check, timeout, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = check()
        if v:
            return v
        time.sleep(every)
    raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")


def render(name, port, run_dir):
    with open(os.path.join(HERE, name, "hawkey.yaml")) as f:
        text = f.read()
    for k, v in {"@PORT@": str(port), "@HERE@": os.path.join(HERE, name), "@VENV@": VENV,
                 "@NODE@": NODE, "@RUN@": run_dir}.items():
        text = text.replace(k, v)
    path = os.path.join(run_dir, "hawkey.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def cli(hawkey, *args, timeout=RELOAD_TIMEOUT):
    return subprocess.run([hawkey, *args], capture_output=True, text=True, timeout=timeout, check=False)


# ---------------------------------------------------------------- one recipe


def run_recipe(name, hawkey, keep):
    """Runs one recipe; returns its row of figures (with 'ok' and 'why not')."""
    row = {"recipe": name, "ok": False, "problems": []}
    run_dir = tempfile.mkdtemp(prefix=f"hawkey-recipe-{name}-")
    os.chmod(run_dir, 0o700)
    port = free_port()
    cfg = render(name, port, run_dir)
    tag = f"{name}-{os.getpid()}-{port}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LISTEN_", "HAWKEY_", "WATCHDOG_")) and k not in ("NOTIFY_SOCKET", "NODE_OPTIONS")}
    env.update({"HAWKEY_RECIPE_TAG": tag, "PORT": str(port), "NO_COLOR": "1",
                "PATH": f"{VENV}/bin:{NODE}/node_modules/.bin:{env.get('PATH', '/usr/bin:/bin')}",
                "NODE_PATH": f"{NODE}/node_modules"})
    logpath = os.path.join(run_dir, "hawkey.log")
    master = None
    try:
        chk = cli(hawkey, "check", "-c", cfg, timeout=30)
        if chk.returncode != 0:
            raise Failed(f"hawkey check refused the recipe (exit {chk.returncode}): "
                         f"{(chk.stderr or chk.stdout).strip().splitlines()[-1:]}")
        logf = open(logpath, "wb")
        t0 = time.monotonic()
        master = subprocess.Popen([hawkey, "run", "-c", cfg], env=env, stdin=subprocess.DEVNULL,
                                  stdout=logf, stderr=subprocess.STDOUT, cwd=run_dir)
        logf.close()

        def ready():
            if master.poll() is not None:
                raise Failed(f"hawkey exited with {master.returncode} before ready")
            with open(logpath, errors="replace") as f:
                return f"all {N} workers ready" in f.read()
        wait_until("hawkey's 'all 2 workers ready'", ready, START_TIMEOUT)
        row["ready_ms"] = round((time.monotonic() - t0) * 1000)

        # Served, and by both workers: connection-per-request from 4 threads
        # until both pids answered (a hang guard of 20 s; well under 1 s here).
        with Load(port, "close", SPREAD_TIMEOUT) as spread:
            wait_until("answers from 2 workers", lambda: len([p for p in spread.pids if p]) >= N,
                       SPREAD_TIMEOUT, 0.02)
        row["spread"] = "/".join(str(v) for _, v in sorted(spread.pids.items()))
        served = {p for p in spread.pids if p}
        if spread.ok == 0:
            raise Failed("no request was served")
        if len(served) < N:
            raise Failed(f"only {len(served)} worker(s) served: {spread.pids}")

        row["ka_p50_ms"] = keepalive_p50_ms(port)

        for mode in ("close", "keepalive"):
            before = set(served)
            with Load(port, mode, RELOADS * 30.0) as load:
                time.sleep(0.5)
                rcs = []
                for _ in range(RELOADS):
                    r = cli(hawkey, "reload", "--wait", "-c", cfg)
                    rcs.append(r.returncode)
                    if r.returncode != 0:
                        row["problems"].append(f"reload exit {r.returncode}: {(r.stderr or r.stdout).strip()[:200]}")
                    time.sleep(0.3)
                time.sleep(0.5)
            after = set(get_close_pids(port))
            row[f"{mode}_ok"], row[f"{mode}_failed"] = load.ok, load.failed
            row[f"{mode}_errors"] = load.errors
            row[f"{mode}_reload_rcs"] = rcs
            if any(rcs):
                raise Failed(f"{mode}: reload exit codes {rcs}")
            if before & after:
                raise Failed(f"{mode}: pids {sorted(before & after)} served before and after {RELOADS} reloads")
            if load.ok == 0:
                raise Failed(f"{mode}: no request served during the reloads")
            if load.failed and mode in RECIPES.get(name, {}).get("assert_zero", set()):
                row["problems"].append(f"{mode}: {load.failed} failed requests ({load.errors}), promised 0")
            served = after

        # A clean stop: SIGTERM, exit 0, nothing of the tree left, port free.
        tree = set(tagged(tag))
        t1 = time.monotonic()
        master.send_signal(signal.SIGTERM)
        try:
            rc = master.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Failed(f"hawkey did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM")
        row["stop_ms"] = round((time.monotonic() - t1) * 1000)
        row["stop_rc"] = rc
        left = wait_until_empty(tag, 2.0)
        row["left"] = len(left)
        row["tree"] = len(tree)
        if rc != 0:
            raise Failed(f"hawkey exited {rc} on SIGTERM")
        if left:
            raise Failed(f"processes left after stop: {left}")
        if not port_free(port):
            raise Failed(f"port {port} still bound after stop")
        row["ok"] = not row["problems"]
    except (Failed, OSError, subprocess.SubprocessError) as e:
        row["problems"].append(str(e))
    finally:
        if master is not None and master.poll() is None:
            master.kill()
            master.wait()
        for pid in tagged(tag):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if not row["ok"]:
            try:
                with open(logpath, errors="replace") as f:
                    row["log_tail"] = f.read().splitlines()[-15:]
            except OSError:
                pass
        if not keep:
            subprocess.run(["rm", "-rf", run_dir], check=False)
        else:
            row["run_dir"] = run_dir
    return row


def get_close_pids(port, n=40):
    pids = []
    for _ in range(n):
        try:
            pids.append(pid_of(get_close(port)))
        except (OSError, http.client.HTTPException):
            pass
    return [p for p in pids if p]


def keepalive_p50_ms(port, n=60):
    """Median latency of sequential requests on one kept connection (the
    first 10 not counted): a few ms at most, unless the server's sockets
    lack TCP_NODELAY (uvicorn --fd: about 40 ms, Nagle against delayed ACK).
    Reported, not asserted."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQ_TIMEOUT)
    times = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            get_on(conn)
            times.append((time.perf_counter() - t) * 1000)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    times = sorted(times[10:])
    return round(times[len(times) // 2], 2)


def wait_until_empty(tag, timeout):
    deadline = time.monotonic() + timeout
    left = tagged(tag)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = tagged(tag)
    return left


# ---------------------------------------------------------------- table


def table(rows):
    head = ("recipe", "start", "spread", "keep-alive p50", "close: failed/ok", "keep-alive: failed/ok", "stop",
            "result")
    lines = []
    for r in rows:
        def f(mode):
            if f"{mode}_ok" not in r:
                return "-"
            zero = mode in RECIPES.get(r["recipe"], {}).get("assert_zero", set())
            return f"{r[f'{mode}_failed']}/{r[f'{mode}_ok']}" + (" (=0)" if zero else "")
        stop = f"rc {r['stop_rc']}, {r['stop_ms']} ms, {r['left']} left" if "stop_rc" in r else "-"
        ka = f"{r['ka_p50_ms']} ms" if r.get("ka_p50_ms") is not None else "-"
        lines.append((r["recipe"], f"{r['ready_ms']} ms" if "ready_ms" in r else "-", r.get("spread", "-"), ka,
                      f("close"), f("keepalive"), stop, "pass" if r["ok"] else "FAIL"))
    w = [max(len(str(x[i])) for x in lines + [head]) for i in range(len(head))]
    out = ["  ".join(str(x[i]).ljust(w[i]) for i in range(len(head))).rstrip() for x in [head] + lines]
    out.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(out)


def main(argv=None):
    names = sorted(d for d in os.listdir(HERE) if os.path.isfile(os.path.join(HERE, d, "hawkey.yaml")))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipes", nargs="*", help=f"of {', '.join(names)} (default: all)")
    ap.add_argument("--list", action="store_true", help="list the recipes and what each promises")
    ap.add_argument("--keep", action="store_true", help="keep each run's directory (config, log)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    args = ap.parse_args(argv)
    if args.list:
        for n in names:
            r = RECIPES.get(n, {})
            print(f"{n:18} 0 failed asserted: {','.join(sorted(r.get('assert_zero', ()))) or '-':16} {r.get('why', '')}")
        return 0
    unknown = [n for n in args.recipes if n not in names]
    if unknown:
        ap.error(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(names)}")
    hawkey = os.path.abspath(os.environ.get("HAWKEY_BIN", os.path.join(ROOT, "target", "debug", "hawkey")))
    if not os.access(hawkey, os.X_OK):
        ap.error(f"no hawkey at {hawkey} (build it, or set HAWKEY_BIN)")
    rows = []
    for n in args.recipes or names:
        log(f"== recipe {n}")
        row = run_recipe(n, hawkey, args.keep)
        for p in row["problems"]:
            log(f"   {n}: {p}")
        for line in row.get("log_tail", []) if not row["ok"] else []:
            log(f"   | {line}")
        rows.append(row)
    print(table(rows))
    passed = sum(r["ok"] for r in rows)
    print(f"recipes: {passed} passed, {len(rows) - passed} failed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
