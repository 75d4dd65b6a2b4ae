#!/usr/bin/env bash
# bench/run.sh — hawkey's benchmarks: the performance goals P1–P8 of
# DESIGN §6, measured on loopback and printed as a table with the method
# beside each figure; also written to target/bench/results.json.
#
#   bench/run.sh                  # full run, about 12 minutes
#   BENCH_QUICK=1 bench/run.sh    # smoke run, about 3 minutes
#   BENCH_ONLY=p5,p6 bench/run.sh # some goals only (p1..p8; p8 runs p1's builtin part)
#
# Not part of the test suite. Needs: the Rust toolchain, node (>= 18),
# python3 (>= 3.9, stdlib only: it drives the runs and reads /proc), Linux.
# Builds in release mode first. Uses loopback ports picked at random.
#
# What is compared with what (see BENCHMARKS.md for the reading):
#   P1  the built-in app as 2 hawkey workers vs the same binary as 2 builtin
#       workers under examples/bare_launcher.rs (one socket bound, N forks,
#       nothing else: the limit); bench/node/app.js likewise; keep-alive and
#       connection-per-request; the master's CPU during the load.
#   P2  bench/node/app.js under hawkey vs the same app as a Node `cluster`
#       primary (SCHED_RR, Node's default, and SCHED_NONE).
#   P3  master RSS/PSS with 1..256 exec'd workers and with 2 builtin ones;
#       its growth over 1000 respawns, then up to 5000.
#   P4  idle master wake-ups (voluntary context switches) with and without
#       the systemd watchdog.
#   P5  start -> READY=1, hawkey vs bare_launcher; 64 exec'd workers.
#   P6  kill -9 of a worker -> replacement forked -> exec'd -> ready (split
#       with perf's sched/signal tracepoints when perf can record them).
#   P7  20 reloads under connection-per-request load, interleaved with as
#       many no-op controls (`hawkey status`).
#   P8  per-worker request counts of P1's connection-per-request runs.
# Throughput and latency ratios are medians over interleaved rounds: each
# round runs every variant once, the order rotating so that each variant
# takes each position equally often, and gives one ratio per pair (>= 7).
# A second bare_launcher ("bare2") is measured like the others: bare2/bare
# is an A/A comparison, the method's own noise floor on this machine. A
# comparison whose ratios spread more than 10% (interquartile range over
# the median) is flagged NOISY.
#
# Every process started carries HAWKEY_BENCH_TAG in its environment; on
# exit (normal, error, Ctrl-C) the driver stops what it started and the
# trap below kills anything still carrying the tag.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="$ROOT/target/bench"
TAG="hawkey-bench-$$-$RANDOM"
mkdir -p "$OUT"

PYTHON=python3
[ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3

driver=""
sweep() {
    # Anything this run started that is still alive, found by its tag.
    local pid
    for env in /proc/[0-9]*/environ; do
        pid=${env#/proc/}
        pid=${pid%/environ}
        if [ "$pid" != "$$" ] && grep -qa "HAWKEY_BENCH_TAG=$TAG" "$env" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$driver" ] && kill -0 "$driver" 2>/dev/null; then
        kill -TERM "$driver" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$driver" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$driver" 2>/dev/null || true
    fi
    sweep
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm -rf "$OUT/work"   # this run's logs, configs and sockets only

echo "== building (release)" >&2
cargo build --release --bin hawkey --example bare_launcher --example loadgen >&2
# Run from a snapshot: a rebuild or clean of target/ meanwhile (another
# checkout's build, a packaging step) cannot swap binaries mid-run.
mkdir -p "$OUT/bin"
for f in target/release/hawkey target/release/examples/bare_launcher target/release/examples/loadgen; do
    cp "$f" "$OUT/bin/.new" && mv -f "$OUT/bin/.new" "$OUT/bin/$(basename "$f")"
done

"$PYTHON" - "$ROOT" "$OUT" "$TAG" "${BENCH_QUICK:-0}" <<'PY' &
import json, os, platform, select, signal, socket, statistics, subprocess, sys, threading, time

ROOT, OUT, TAG, QUICK = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
BIN = f"{OUT}/bin/hawkey"
LAUNCHER = f"{OUT}/bin/bare_launcher"
LOADGEN = f"{OUT}/bin/loadgen"
APP_JS = f"{ROOT}/bench/node/app.js"
WORK = f"{OUT}/work"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Sizes of everything, full and quick.
PAIRS = 3 if QUICK else 7             # at least this many interleaved rounds per comparison
WARMUP = 0.5 if QUICK else 1.0        # s, not counted
DURATION = 1.5 if QUICK else 3.0      # s, counted
THREADS = {"keepalive": 8, "close": 4}
IDLE_S = 15 if QUICK else 60          # P4 window
P3_COUNTS = [1, 2, 8, 64, 256]
RESPAWNS = 5000                       # memory marked at 100, 1000, 2000, ... 5000
P5_REPS = 3 if QUICK else 7
P6_KILLS = 8 if QUICK else 20
P7_RELOADS = 5 if QUICK else 20
NOISY = 0.10

os.makedirs(WORK, exist_ok=True)
started = []          # every Popen, stopped at exit
results = {"quick": QUICK}

def log(*a):
    print(*a, file=sys.stderr, flush=True)

# ---------------------------------------------------------------- processes

def base_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LISTEN_", "WATCHDOG_", "HAWKEY_"))
           and k not in ("NOTIFY_SOCKET", "INVOCATION_ID", "JOURNAL_STREAM")}
    env["HAWKEY_BENCH_TAG"] = TAG
    env["NO_COLOR"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env

def spawn(cmd, name, **env):
    logf = open(f"{WORK}/{name}.log", "ab")
    p = subprocess.Popen(cmd, env=base_env(**env), stdin=subprocess.DEVNULL,
                         stdout=logf, stderr=logf)
    p.name = name
    started.append(p)
    return p

def stop(p, timeout=30):
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode

def stop_all():
    for p in started:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for p in started:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

def on_signal(signum, frame):
    raise SystemExit(128 + signum)

signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def http_ok(port, path="/healthz"):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False

def wait_for(what, check, timeout=20, every=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise RuntimeError(f"timed out waiting for {what}")

# ---------------------------------------------------------------- /proc

def stat_fields(pid):
    s = open(f"/proc/{pid}/stat").read()
    return s[s.rindex(")") + 2:].split()

def cpu_ms(pid):
    """utime+stime in ms (clock ticks: 10 ms steps) and on-CPU ns from schedstat."""
    f = stat_fields(pid)
    ticks = int(f[11]) + int(f[12])
    ns = int(open(f"/proc/{pid}/schedstat").read().split()[0])
    return ticks * 1000 / CLK_TCK, ns / 1e6

def children(pid):
    try:
        return [int(x) for x in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []

def comm(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return None

def status_field(pid, name):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(name + ":"):
            return int(line.split()[1])

def memory_kib(pid):
    out = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        parts = line.split()
        if parts[0] in ("Rss:", "Pss:", "Anonymous:", "Private_Dirty:"):
            out[parts[0][:-1].lower()] = int(parts[1])
    return out

# ---------------------------------------------------------------- notify

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)

def now_ns():
    """The clock of every timestamp here: CLOCK_REALTIME, as SO_TIMESTAMPNS."""
    return time.time_ns()

class Notify:
    """A datagram NOTIFY_SOCKET; a thread receives every message with the
    kernel's receive timestamp (SO_TIMESTAMPNS: when the sender's sendmsg
    queued it, not when this thread got to run)."""
    def __init__(self, name):
        self.path = f"{WORK}/{name}.notify"
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.messages = []          # (now_ns() clock, text)
        self.cond = threading.Condition()
        self.closed = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, 64)
            except OSError:
                return
            if not data:
                return
            now = now_ns()
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                    sec, nsec = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:16], "little")
                    now = sec * 1_000_000_000 + nsec
            with self.cond:
                self.messages.append((now, data.decode(errors="replace")))
                self.cond.notify_all()

    def wait(self, pred, after_ns=0, timeout=20):
        """First (t, text) received at or after `after_ns` with pred(text)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, m in self.messages:
                    if t >= after_ns and pred(m):
                        return t, m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no matching notify message on {self.path}; last: {self.messages[-3:]}")
                self.cond.wait(left)

    def count(self, needle, since_ns, until_ns):
        with self.cond:
            return sum(1 for t, m in self.messages if since_ns <= t <= until_ns and needle in m)

    def close(self):
        # Wakes the receiving thread (recv returns b""), which then ends.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

# ---------------------------------------------------------------- hawkey

def hawkey_config(name, port, count, workers_yaml="", level="warn"):
    d = f"{WORK}/{name}"
    os.makedirs(d, exist_ok=True)
    path = f"{d}/hawkey.yaml"
    with open(path, "w") as f:
        f.write(f"""listen:
  - {{name: http, address: '127.0.0.1:{port}'}}
workers:
  count: {count}
{workers_yaml}pidfile: {d}/hawkey.pid
control_socket: {d}/hawkey.sock
log: {{level: {level}, format: text}}
""")
    return path

EXEC_SLEEP = "  app: exec\n  command: [sleep, '1000']\n"
EXEC_NODE = f"  app: exec\n  command: [node, '{APP_JS}']\n"

def start_hawkey(name, port, count, workers_yaml="", level="warn", env=None, wait=True):
    cfg = hawkey_config(name, port, count, workers_yaml, level)
    notify = Notify(name)
    p = spawn([BIN, "run", "-c", cfg], name, NOTIFY_SOCKET=notify.path, **(env or {}))
    p.config, p.notify = cfg, notify
    if wait:
        notify.wait(lambda m: "READY=1" in m, timeout=60)
    return p

def start_bare(name, port, count, command, role_worker=False):
    args = [LAUNCHER] + (["--role-worker"] if role_worker else []) + [f"127.0.0.1:{port}", str(count)] + command
    return spawn(args, name, HAWKEY_LOG="warn/text")

def start_cluster(name, port, policy):
    return spawn(["node", APP_JS], name, PORT=port, WORKERS=2, NODE_SCHED=policy)

# ---------------------------------------------------------------- load

def loadgen(port, mode, warmup=None, duration=None, threads=None, path="/"):
    args = [LOADGEN, "--port", str(port), "--mode", mode,
            "--threads", str(threads or THREADS[mode]),
            "--warmup", str(WARMUP if warmup is None else warmup),
            "--ramp", str((WARMUP if warmup is None else warmup) / 2),
            "--duration", str(DURATION if duration is None else duration), "--path", path]
    out = subprocess.run(args, env=base_env(), capture_output=True, text=True, timeout=600)
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

def compare(variants, base, modes, pairs=PAIRS, on_run=None, duration=None):
    """Runs loadgen against every variant (name -> port) in rotating order,
    at least `pairs` rounds per mode, rounded up to a multiple of the number
    of variants so that each variant runs in each position of a round
    equally often; ratios of `base` over each other variant, round by round."""
    names = list(variants)
    rounds = -(-pairs // len(names)) * len(names)
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

# ---------------------------------------------------------------- P1, P2, P8

def p1_builtin():
    log("== P1 builtin app: hawkey (2 workers) vs bare_launcher (2 builtin workers; twice: A/A)")
    ph, pb, pb2 = free_port(), free_port(), free_port()
    h = start_hawkey("p1-hawkey-builtin", ph, 2)
    b = start_bare("p1-bare-builtin", pb, 2, [BIN], role_worker=True)
    b2 = start_bare("p1-bare2-builtin", pb2, 2, [BIN], role_worker=True)
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
    stop(h); stop(b); stop(b2)
    return out

def p1_p2_node():
    log("== P1/P2 node app: hawkey (exec, 2) vs bare_launcher (2, twice: A/A) vs cluster SCHED_RR vs SCHED_NONE (2)")
    ports = {"hawkey": free_port(), "bare": free_port(), "bare2": free_port(),
             "cluster_rr": free_port(), "cluster_none": free_port()}
    h = start_hawkey("p2-hawkey-node", ports["hawkey"], 2, EXEC_NODE)
    b = start_bare("p2-bare-node", ports["bare"], 2, ["node", APP_JS])
    b2 = start_bare("p2-bare2-node", ports["bare2"], 2, ["node", APP_JS])
    rr = start_cluster("p2-cluster-rr", ports["cluster_rr"], "rr")
    no = start_cluster("p2-cluster-none", ports["cluster_none"], "none")
    wait_for("node apps", lambda: all(http_ok(p) for p in ports.values()), timeout=30)
    # 5 variants x 10 rounds: a shorter counted window keeps the run in budget.
    out = compare(ports, "hawkey", ["close", "keepalive"], duration=None if QUICK else 2.5)
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

# ---------------------------------------------------------------- P3, P4

def p4_start():
    log(f"== P4 idle masters ({IDLE_S} s): exec sleep x2, same with WATCHDOG_USEC=2000000, builtin x2")
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
    left = IDLE_S - (now_ns() - t0) / 1e9
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
    log(f"== P3 master memory: N exec'd workers (sleep), builtin x2, then {RESPAWNS} respawns")
    out = {"by_workers": {}}
    for n in P3_COUNTS:
        h = start_hawkey(f"p3-mem-{n}", free_port(), n, EXEC_SLEEP)
        wait_for(f"{n} workers exec'd", lambda: sum(1 for c in children(h.pid) if comm(c) == "sleep") == n)
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
    while done < RESPAWNS:
        victims = wait_for("pool", pool, timeout=30, every=0.001)
        for v in victims:
            os.kill(v, signal.SIGKILL)
        done += len(victims)
        wait_for("respawned pool", lambda: (lambda k: k and not set(k) & set(victims))(pool()),
                 timeout=30, every=0.001)
        for mark in (100, 1000, 2000, 3000, 4000):
            if done >= mark and f"after_{mark}" not in marks:
                marks[f"after_{mark}"] = memory_kib(h.pid)
    took = time.monotonic() - t0
    time.sleep(0.3)
    marks[f"after_{done}"] = memory_kib(h.pid)
    pick = lambda key: {k: v[key] for k, v in marks.items()}
    grow = lambda key, a, b: marks[b][key] - marks[a][key]
    out["respawns"] = {"count": done, "took_s": round(took, 2), "rss_kib": pick("rss"), "pss_kib": pick("pss"),
                       "anonymous_kib": pick("anonymous"),
                       "rss_growth_first_1000_kib": grow("rss", "at_ready", "after_1000"),
                       "anonymous_growth_first_1000_kib": grow("anonymous", "at_ready", "after_1000"),
                       "rss_growth_after_1000_kib": grow("rss", "after_1000", f"after_{done}"),
                       "anonymous_growth_after_1000_kib": grow("anonymous", "after_1000", f"after_{done}")}
    log(f"   respawns: {out['respawns']}")
    stop(h)
    return out

def binary_rss_kib(pid):
    """RSS of the mappings of the hawkey executable itself (its text and data)."""
    total, mine = 0, False
    for line in open(f"/proc/{pid}/smaps"):
        parts = line.split()
        if parts and "-" in parts[0] and not parts[0].endswith(":"):
            mine = len(parts) >= 6 and parts[5].endswith("/hawkey")
        elif mine and parts[0] == "Rss:":
            total += int(parts[1])
    return total

# ---------------------------------------------------------------- P5

def internal_ready_ms(p):
    """The master's own "all N workers ready, Xms after start" (log level info)."""
    vals = []
    for line in open(f"{WORK}/{p.name}.log"):
        if "workers ready," in line and "ms after start" in line:
            vals.append(int(line.split("ms after start")[0].split(", ")[-1]))
    return vals[-1] if vals else None

def bare_json(p, key):
    for line in open(f"{WORK}/{p.name}.log"):
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
    for i in range(P5_REPS):
        for variant in (("hawkey", "bare") if i % 2 == 0 else ("bare", "hawkey")):
            port = free_port()
            if variant == "hawkey":
                cfg = hawkey_config(f"p5-hawkey-{i}", port, 2, level="info")
                ms, p = time_to_ready([BIN, "run", "-c", cfg], f"p5-hawkey-{i}")
                out["hawkey_builtin_ms"].append(ms)
                out["hawkey_builtin_internal_ms"].append(internal_ready_ms(p))
            else:
                ms, p = time_to_ready([LAUNCHER, "--role-worker", "--wait-ready", f"127.0.0.1:{port}", "2", BIN],
                                      f"p5-bare-{i}", HAWKEY_LOG="warn/text")
                out["bare_builtin_ms"].append(ms)
                out["bare_fork_to_ready_ms"] += [us / 1000 for us in bare_json(p, "bare_ready")["fork_to_ready_us"]]
    for i in range(P5_REPS):
        for variant in (("hawkey", "bare") if i % 2 == 0 else ("bare", "hawkey")):
            port = free_port()
            if variant == "hawkey":
                cfg = hawkey_config(f"p5-exec64-{i}", port, 64, EXEC_SLEEP, level="info")
                ms, p = time_to_ready([BIN, "run", "-c", cfg], f"p5-exec64-{i}")
                out["hawkey_exec64_ms"].append(ms)
                out["hawkey_exec64_internal_ms"].append(internal_ready_ms(p))
            else:
                ms, p = time_to_ready([LAUNCHER, "--wait-exec", f"127.0.0.1:{port}", "64", "sleep", "1000"],
                                      f"p5-bare64-{i}")
                out["bare_exec64_ms"].append(ms)
                out["bare_exec64_spawn_loop_ms"].append(bare_json(p, "bare_spawned")["spawn_loop_us"] / 1000)
    med = lambda k: round(statistics.median([v for v in out[k] if v is not None]), 3)
    out["median"] = {k: med(k) for k in keys if any(v is not None for v in out[k])}
    m = out["median"]
    out["hawkey_share_ms"] = round(m["hawkey_builtin_ms"] - m["bare_builtin_ms"], 3)
    out["hawkey_share_exec64_ms"] = round(m["hawkey_exec64_ms"] - m["bare_exec64_ms"], 3)
    log(f"   {m}  hawkey share: builtin x2 {out['hawkey_share_ms']} ms, exec x64 {out['hawkey_share_exec64_ms']} ms")
    return out

# ---------------------------------------------------------------- P6

PERF_EVENTS = ["-e", "sched:sched_process_exit,sched:sched_process_fork,sched:sched_process_exec",
               "-e", "signal:signal_generate", "--filter", "sig == 17"]

def perf_usable():
    try:
        r = subprocess.run(["perf", "record", "-q", "-k", "1", *PERF_EVENTS, "-a", "-o", f"{WORK}/perf-probe.data",
                            "--", "true"], capture_output=True, timeout=30)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False

def perf_events(path):
    """(pid, CLOCK_MONOTONIC ns, event, {key: value}) from a perf record file."""
    out = subprocess.run(["perf", "script", "-i", path, "--ns", "-F", "pid,time,event,trace"],
                         capture_output=True, text=True, timeout=120).stdout
    events = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[1].endswith(":"):
            continue
        sec, _, frac = parts[1][:-1].partition(".")
        fields = dict(kv.split("=", 1) for kv in parts[3:] if "=" in kv)
        events.append((int(parts[0]), int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9]), parts[2].rstrip(":"), fields))
    return events

def p6_variant(name, workers_yaml, use_perf):
    h = start_hawkey(name, free_port(), 2, workers_yaml)
    tracer = None
    if use_perf:
        tracer = spawn(["perf", "record", "-q", "-k", "1", *PERF_EVENTS, "-a", "-o", f"{WORK}/{name}.perf"],
                       f"{name}-perf")
        time.sleep(1.0)
    ready_at = {}
    def live():
        kids = children(h.pid)
        return kids if len(kids) == 2 else None
    for c in wait_for("2 workers", live):
        ready_at[c] = time.monotonic()
    rows, kills = [], []
    for k in range(P6_KILLS):
        kids = wait_for("2 workers", live)
        for c in kids:
            ready_at.setdefault(c, time.monotonic())
        victim = min(kids, key=lambda c: ready_at[c])
        # Only a worker ready for >= 1 s is replaced at once (no backoff).
        wait = ready_at[victim] + 1.1 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        fd = os.pidfd_open(victim)
        t_kill, t_kill_mono = now_ns(), time.monotonic_ns()
        os.kill(victim, signal.SIGKILL)
        select.select([fd], [], [], 5)
        t_dead = now_ns()
        os.close(fd)
        # The master sends its first STATUS= after the kill once the
        # replacement's execve succeeded (spawn waits for it); STATUS=2/2
        # once it is ready.
        t_started, _ = h.notify.wait(lambda m: "STATUS=" in m and "workers ready" in m, after_ns=t_kill, timeout=10)
        t_ready, _ = h.notify.wait(lambda m: "STATUS=2/2 workers ready" in m, after_ns=t_kill, timeout=10)
        now = time.monotonic()
        for c in wait_for("2 workers", live):
            ready_at.setdefault(c, now)
        kills.append((victim, t_kill_mono))
        rows.append({"started_ms": (t_started - t_kill) / 1e6, "ready_ms": (t_ready - t_kill) / 1e6,
                     "observed_dead_ms": (t_dead - t_kill) / 1e6})
    if tracer:
        stop(tracer)
        events = perf_events(f"{WORK}/{name}.perf")
        for row, (victim, t_kill_mono) in zip(rows, kills):
            exit_t = next((t for pid, t, ev, f in events if ev == "sched:sched_process_exit"
                           and pid == victim and f.get("group_dead") == "true"), None)
            # SIGCHLD to the master: the kernel is done with the victim.
            sigchld = next((t for pid, t, ev, f in events if ev == "signal:signal_generate"
                            and f.get("pid") == str(h.pid) and exit_t is not None and t >= exit_t), None)
            fork = next(((t, int(f["child_pid"])) for pid, t, ev, f in events if ev == "sched:sched_process_fork"
                         and f.get("pid") == str(h.pid) and exit_t is not None and t >= exit_t), None)
            exec_t = fork and next((t for pid, t, ev, f in events if ev == "sched:sched_process_exec"
                                    and pid == fork[1]), None)
            if exit_t and sigchld and fork and exec_t:
                row.update({"kill_to_exit_ms": (exit_t - t_kill_mono) / 1e6,
                            "exit_to_sigchld_ms": (sigchld - exit_t) / 1e6,
                            "sigchld_to_fork_ms": (fork[0] - sigchld) / 1e6,
                            "exit_to_fork_ms": (fork[0] - exit_t) / 1e6,
                            "kill_to_fork_ms": (fork[0] - t_kill_mono) / 1e6,
                            "kill_to_exec_ms": (exec_t - t_kill_mono) / 1e6,
                            "fork_to_exec_ms": (exec_t - fork[0]) / 1e6,
                            "exit_to_exec_ms": (exec_t - exit_t) / 1e6})
    stop(h)
    keys = [k for k in rows[0] if all(k in r for r in rows)]
    return {"kills": len(rows), "traced": bool(tracer),
            "median": {k: round(statistics.median(r[k] for r in rows), 3) for k in keys},
            "max": {k: round(max(r[k] for r in rows), 3) for k in keys}}

def p6():
    use_perf = perf_usable()
    log(f"== P6 respawn: kill -9 of a worker -> replacement exec'd -> ready (STATUS=2/2){' , traced with perf' if use_perf else ''}")
    out = {"builtin": p6_variant("p6-builtin", "", use_perf),
           "exec_sleep": p6_variant("p6-exec", EXEC_SLEEP, use_perf)}
    log(f"   {out}")
    return out

# ---------------------------------------------------------------- P7

def p7():
    log(f"== P7 {P7_RELOADS} reloads under connection-per-request load, alternating with as many no-op "
        f"controls (hawkey status), one event every 2 s")
    port = free_port()
    h = start_hawkey("p7-reload", port, 2)
    lead, every, tail = 2.0, 2.0, 1.0
    events = ["reload", "control"] * P7_RELOADS
    total = lead + len(events) * every + tail
    lg = subprocess.Popen([LOADGEN, "--port", str(port), "--mode", "close", "--threads", str(THREADS["close"]),
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
        cli = subprocess.run([BIN, *args, "-c", h.config], env=base_env(), capture_output=True, text=True, timeout=60)
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
    summary = lambda v: {"median": round(statistics.median(v), 3), "worst": round(min(v), 3),
                         "all": [round(x, 3) for x in v]} if v else None
    out = {"reloads": len(reloads), "ok": res["ok"], "failed": res["failed"],
           "connect_errors": res["connect_errors"], "p99_us": res["p99_us"], "max_us": res["max_us"],
           "reload_exit_codes": sorted(set(ev["exit"] for ev in reloads)),
           "median_cli_ms": round(statistics.median(ev["cli_ms"] for ev in reloads), 2),
           "median_reloading_to_ready_ms": round(statistics.median(
               [ev["reloading_to_ready_ms"] for ev in reloads if ev["reloading_to_ready_ms"] is not None] or [0]), 2),
           "reload_over_quiet": summary(ratios["reload"]),
           "control_over_quiet": summary(ratios["control"]),
           "buckets": b, "events": [{k: v for k, v in ev.items() if k != "said"} | {"offset_s": round(ev["start_unix"] - t0, 3)}
                                    for ev in done]}
    log(f"   {({k: v for k, v in out.items() if k not in ('buckets', 'events')})}")
    return out

# ---------------------------------------------------------------- machine

def machine():
    def run(*a):
        try:
            return subprocess.run(a, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception:
            return None
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
            "os": run("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
            "memory_mib": int(open("/proc/meminfo").readline().split()[1]) // 1024,
            "rustc": run("rustc", "--version"), "node": run("node", "--version"),
            "commit": run("git", "-C", ROOT, "rev-parse", "--short", "HEAD"),
            "hawkey_sha256": run("sha256sum", BIN).split()[0],
            "worktree_dirty": bool(run("git", "-C", ROOT, "status", "--porcelain", "--", "src")),
            "loadavg_start": open("/proc/loadavg").read().split()[:3]}

# ---------------------------------------------------------------- table

def table(R):
    rows = []
    def verdict(ok):
        return "met" if ok else "MISSED"
    def pair_str(c):
        s = f"{c['median']:.3f} [{c['min']:.3f}-{c['max']:.3f}]"
        return s + (" NOISY" if c["noisy"] else "")
    if "p1_builtin" in R:
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
    if "p2_node" in R:
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
    if "p3" in R:
        m = R["p3"]
        two, bi = m["by_workers"][2], m["builtin_2"]
        rows.append(("P3", "master RSS / PSS, 2 exec'd workers", f"{two['rss']} / {two['pss']} KiB (anon {two['anonymous']})",
                     "<= 4096 / 1536 KiB", verdict(two["rss"] <= 4096 and two["pss"] <= 1536), "/proc/<master>/smaps_rollup once READY=1"))
        rows.append(("P3", "master RSS / PSS, 2 builtin workers", f"{bi['rss']} / {bi['pss']} KiB (anon {bi['anonymous']}, "
                     f"binary {bi['binary_text_rss']})", "<= 4096 / 1536 KiB", verdict(bi["rss"] <= 4096 and bi["pss"] <= 1536),
                     "same; the workers share the binary's pages"))
        rows.append(("P3", "per extra worker", f"RSS {m['rss_per_extra_worker_kib']} KiB, anon {m['anonymous_per_extra_worker_kib']} KiB",
                     "<= 64 KiB", verdict(m["rss_per_extra_worker_kib"] <= 64), "(X(256) - X(2)) / 254, exec'd sleep"))
        rp = m["respawns"]
        rows.append(("P3", f"growth over 1000 respawns (then to {rp['count']})",
                     f"RSS +{rp['rss_growth_first_1000_kib']} KiB, anon +{rp['anonymous_growth_first_1000_kib']} KiB "
                     f"(then +{rp['rss_growth_after_1000_kib']} / +{rp['anonymous_growth_after_1000_kib']})",
                     "0", verdict(rp["anonymous_growth_first_1000_kib"] <= 4),
                     "kill -9 of all 8 exec'd workers, repeated; verdict on anon (heap, stack) over the first 1000"))
    if "p4" in R:
        p4 = R["p4"]
        rows.append(("P4", f"idle wake-ups, no watchdog ({p4['window_s']:.0f} s)", str(p4["exec_no_watchdog"]["voluntary_ctxt_switches"]), "0",
                     verdict(p4["exec_no_watchdog"]["voluntary_ctxt_switches"] == 0), "voluntary_ctxt_switches of the master, exec'd workers"))
        wd = p4["exec_watchdog_2s"]
        rows.append(("P4", "idle wake-ups, WATCHDOG_USEC=2s", f"{wd['voluntary_ctxt_switches']} ({wd['watchdog_pings_received']} pings)",
                     f"= pings (~{p4['window_s']:.0f})", verdict(wd["voluntary_ctxt_switches"] <= wd["watchdog_pings_received"] + 1), "same"))
        bw = p4["builtin_no_watchdog"]
        rows.append(("P4", "idle wake-ups, builtin workers", str(bw["voluntary_ctxt_switches"]), "(info)", "-",
                     "their heartbeats (WATCHDOG=1 every 10 s each) wake the master"))
    if "p5" in R:
        p5, p5m = R["p5"], R["p5"]["median"]
        rows.append(("P5", "start -> READY=1, builtin x2", f"{p5m['hawkey_builtin_ms']} ms (bare {p5m['bare_builtin_ms']} ms)",
                     "", "-", f"median of {P5_REPS} each, interleaved; fork of the process -> READY=1 (kernel timestamp)"))
        rows.append(("P5", "hawkey's own share, builtin x2", f"{p5['hawkey_share_ms']} ms", "<= 10 ms",
                     verdict(p5["hawkey_share_ms"] <= 10), "hawkey minus bare_launcher --wait-ready"))
        rows.append(("P5", "64 exec'd workers: start -> READY=1", f"{p5m['hawkey_exec64_ms']} ms (internal {p5m.get('hawkey_exec64_internal_ms')})",
                     "<= 50 ms", verdict(p5m["hawkey_exec64_ms"] <= 50), "ready: started; internal = the master's own log"))
        rows.append(("P5", "64 exec'd: bare_launcher --wait-exec", f"{p5m['bare_exec64_ms']} ms (spawn loop {p5m['bare_exec64_spawn_loop_ms']})",
                     "(limit)", "-", f"hawkey's share {p5['hawkey_share_exec64_ms']} ms"))
    if "p6" in R:
        p6 = R["p6"]
        boot = R.get("p5", {}).get("median", {}).get("bare_fork_to_ready_ms", 0)
        for variant in ("builtin", "exec_sleep"):
            md = p6[variant]["median"]
            if "kill_to_fork_ms" in md:
                rows.append(("P6", f"kill -9 -> replacement exists (forked), {variant}",
                             f"{md['kill_to_fork_ms']} ms = exit {md['kill_to_exit_ms']} + teardown->SIGCHLD "
                             f"{md['exit_to_sigchld_ms']} + SIGCHLD->fork (hawkey) {md['sigchld_to_fork_ms']}",
                             "<= 1 ms", verdict(md["kill_to_fork_ms"] <= 1),
                             f"median of {p6[variant]['kills']}; perf sched/signal tracepoints"))
                rows.append(("P6", f"kill -9 -> replacement exec'd, {variant}",
                             f"{md['kill_to_exec_ms']} ms (fork->exec {md['fork_to_exec_ms']}); STATUS= at {md['started_ms']}",
                             "(info)", "-", "same; STATUS= = the master's next notify after the exec"))
            else:
                rows.append(("P6", f"kill -9 -> replacement exec'd, {variant}", f"{md['started_ms']} ms", "<= 1 ms",
                             verdict(md["started_ms"] <= 1),
                             f"median of {p6[variant]['kills']}; first STATUS= after the kill (upper bound: no perf)"))
        rows.append(("P6", "kill -9 -> ready, builtin", f"{p6['builtin']['median']['ready_ms']} ms (own boot {boot} ms)",
                     f"<= {boot + 5:.1f} ms", verdict(p6["builtin"]["median"]["ready_ms"] <= boot + 5),
                     "STATUS=2/2 after the kill; own boot = fork -> READY=1 under bare_launcher"))
    if "p7" in R:
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
    if "p8" in R:
        p8r = R["p8"]
        rows.append(("P8", "builtin accepted max/min", f"{p8r['median_run']} median run, {p8r['worst_run']} worst",
                     "<= 1.5", verdict(p8r["worst_run"] <= 1.5), "slot tallies of P1's close-mode hawkey runs"))
    w = [max(len(str(r[i])) for r in rows) for i in range(6)]
    head = ("goal", "figure", "value", "target", "verdict", "method")
    w = [max(w[i], len(head[i])) for i in range(6)]
    fmt = lambda r: "  ".join(str(r[i]).ljust(w[i]) for i in range(6)).rstrip()
    print(fmt(head))
    print(fmt(["-" * x for x in w]))
    for r in rows:
        print(fmt(r))
    return rows

# ---------------------------------------------------------------- main

ONLY = set(x.strip().lower() for x in os.environ.get("BENCH_ONLY", "").split(",") if x.strip())
want = lambda goal: not ONLY or goal in ONLY

try:
    t_all = time.monotonic()
    results["machine"] = machine()
    log(f"== machine: {results['machine']}")
    # P4's idle masters idle while P5-P7 run: those do not wake them (and
    # they are measured apart from P3, whose PSS they would share).
    results["loadavg"] = {}
    mark = lambda goal: results["loadavg"].__setitem__(goal, open("/proc/loadavg").read().split()[0])
    mark("p4")
    p4_run = p4_start() if want("p4") else None
    if want("p5"):
        mark("p5")
        results["p5"] = p5()
    if want("p6"):
        mark("p6")
        results["p6"] = p6()
    if want("p7"):
        mark("p7")
        results["p7"] = p7()
    if p4_run:
        results["p4"] = p4_finish(*p4_run)
        log(f"   {results['p4']}")
    if want("p3"):
        mark("p3")
        results["p3"] = p3()
    if want("p1") or want("p8"):
        mark("p1_builtin")
        results["p1_builtin"] = p1_builtin()
        results["p8"] = p8(results["p1_builtin"])
    if want("p1") or want("p2"):
        mark("p2_node")
        results["p2_node"] = p1_p2_node()
    mark("end")
    results["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    results["elapsed_s"] = round(time.monotonic() - t_all, 1)
    print()
    print(f"hawkey benchmarks ({'BENCH_QUICK' if QUICK else 'full'}{', only ' + ','.join(sorted(ONLY)) if ONLY else ''}), "
          f"{results['machine']['cpus']} CPUs, kernel {results['machine']['kernel']}, load average "
          f"{results['machine']['loadavg_start']} -> {results['machine']['loadavg_end']}, {results['elapsed_s']} s")
    print("1-minute load average at the start of each part: " + ", ".join(f"{k} {v}" for k, v in results["loadavg"].items()))
    results["table"] = table(results)
finally:
    stop_all()
    with open(f"{OUT}/results.json", "w") as f:
        json.dump(results, f, indent=1, default=str)
    log(f"== results: {OUT}/results.json, logs: {WORK}/")
PY
driver=$!
wait "$driver"
