"""The processes a run starts and what it reads about them: every process
is tagged (HAWKEY_BENCH_TAG) and kept in `started`, to be stopped at exit;
readers of /proc; waiting on a condition with a deadline."""

import os
import signal
import socket
import subprocess
import sys
import time

from .settings import S

CLK_TCK = os.sysconf("SC_CLK_TCK")

started = []          # every Popen, stopped at exit


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def read_text(path):
    with open(path) as f:
        return f.read()


def now_ns():
    """The clock of every timestamp here: CLOCK_REALTIME, as SO_TIMESTAMPNS."""
    return time.time_ns()

# ---------------------------------------------------------------- processes


def base_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LISTEN_", "WATCHDOG_", "HAWKEY_"))
           and k not in ("NOTIFY_SOCKET", "INVOCATION_ID", "JOURNAL_STREAM")}
    env["HAWKEY_BENCH_TAG"] = S.tag
    env["NO_COLOR"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def spawn(cmd, name, **env):
    with open(f"{S.work}/{name}.log", "ab") as logf:
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
    s = read_text(f"/proc/{pid}/stat")
    return s[s.rindex(")") + 2:].split()


def cpu_ms(pid):
    """utime+stime in ms (clock ticks: 10 ms steps) and on-CPU ns from schedstat."""
    f = stat_fields(pid)
    ticks = int(f[11]) + int(f[12])
    ns = int(read_text(f"/proc/{pid}/schedstat").split()[0])
    return ticks * 1000 / CLK_TCK, ns / 1e6


def children(pid):
    try:
        return [int(x) for x in read_text(f"/proc/{pid}/task/{pid}/children").split()]
    except OSError:
        return []


def comm(pid):
    try:
        return read_text(f"/proc/{pid}/comm").strip()
    except OSError:
        return None


def status_field(pid, name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])


def memory_kib(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if parts[0] in ("Rss:", "Pss:", "Anonymous:", "Private_Dirty:"):
                out[parts[0][:-1].lower()] = int(parts[1])
    return out


def binary_rss_kib(pid):
    """RSS of the mappings of the hawkey executable itself (its text and data)."""
    total, mine = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and not parts[0].endswith(":"):
                mine = len(parts) >= 6 and parts[5].endswith("/hawkey")
            elif mine and parts[0] == "Rss:":
                total += int(parts[1])
    return total


def loadavg():
    return read_text("/proc/loadavg").split()
