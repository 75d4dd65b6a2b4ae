#!/usr/bin/env python3
"""A load client that counts exactly, for the system tests (loopback only).

    load.py PORT SECONDS THREADS [PATH] [MAX_REQUESTS]

Each thread sends GET PATH on a new connection per request until SECONDS
have passed or MAX_REQUESTS (all threads together) were sent, then prints
one JSON line: {"ok": N, "connect_errors": N, "failed": N}. connect_errors
are connections refused or reset before the request was sent; failed are
connections that gave no complete 2xx response.
"""
import json
import socket
import sys
import threading
import time

port, seconds, threads = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
path = sys.argv[4] if len(sys.argv) > 4 else "/healthz"
max_requests = int(sys.argv[5]) if len(sys.argv) > 5 else 1_000_000
counts = {"ok": 0, "connect_errors": 0, "failed": 0}
lock = threading.Lock()
deadline = time.monotonic() + seconds
sent = 0


def one():
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        return "connect_errors"
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0
        return "ok" if 200 <= status < 300 else "failed"
    except (OSError, ValueError, IndexError):
        return "failed"
    finally:
        s.close()


def run():
    global sent
    while time.monotonic() < deadline:
        with lock:
            if sent >= max_requests:
                return
            sent += 1
        outcome = one()
        with lock:
            counts[outcome] += 1


workers = [threading.Thread(target=run) for _ in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(json.dumps(counts))
