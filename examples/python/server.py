#!/usr/bin/env python3
"""A Python HTTP app run by hawkey (app: exec, ready: notify), standard
library only.

What an app under hawkey does, and where this file does it:
  1. serve on the inherited listening socket, fd 3 (LISTEN_FDS), never on
     a port of its own: every worker shares that one socket (main);
  2. once accepting, send READY=1 to NOTIFY_SOCKET (notify);
  3. on SIGTERM, stop accepting, let in-flight requests finish and exit 0,
     within hawkey's stop_timeout (stop).

GET /            -> "python worker <slot> pid <pid> generation <gen>\\n"
GET /delay/<ms>  -> the same line after <ms> milliseconds (at most 30000)
GET /healthz     -> "ok\\n"
"""
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOT = os.environ.get("HAWKEY_WORKER", "-")
GENERATION = os.environ.get("HAWKEY_GENERATION", "-")
# Graceful stop never takes longer than this; keep it below hawkey's
# workers.stop_timeout (25s by default), after which hawkey sends SIGKILL.
SHUTDOWN_LIMIT_S = 20
# A keep-alive connection idle this long is closed (and a client this slow
# to send its request is dropped).
IDLE_TIMEOUT_S = 5
MAX_DELAY_MS = 30_000

stopping = False
# Handlers waiting for the next request on a kept-alive connection: closed
# at once on stop. A connection that has not sent its first request yet is
# not in here: it is served (with Connection: close), as it may have been
# accepted just before the stop signal.
idle = set()
idle_lock = threading.Lock()


def log(message):
    # stderr: hawkey passes its own (the journal, under systemd).
    print(f"worker {SLOT} (pid {os.getpid()}): {message}", file=sys.stderr, flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S

    def handle(self):
        # BaseHTTPRequestHandler.handle, with the waits between requests
        # marked idle.
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            with idle_lock:
                if stopping:
                    break
                idle.add(self)
            try:
                self.handle_one_request()
            finally:
                with idle_lock:
                    idle.discard(self)

    def parse_request(self):
        # A request line arrived: no longer idle.
        with idle_lock:
            idle.discard(self)
        return super().parse_request()

    def do_GET(self):
        path = self.path.split("?")[0]
        hello = f"python worker {SLOT} pid {os.getpid()} generation {GENERATION}\n"
        delay = re.fullmatch(r"/delay/(\d+)", path)
        if path == "/":
            self.answer(200, hello)
        elif path == "/healthz":
            self.answer(200, "ok\n")
        elif delay:
            time.sleep(min(int(delay[1]), MAX_DELAY_MS) / 1000)
            self.answer(200, hello)
        else:
            self.answer(404, "not found\n")

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        if stopping:
            # This worker serves no next request: close after this one.
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    """An HTTP server on a socket it was given, not one it binds."""

    daemon_threads = False  # server_close() waits for in-flight requests
    block_on_close = True

    def __init__(self, listener):
        # Skip TCPServer.__init__, which would create and bind a socket.
        socketserver.BaseServer.__init__(self, listener.getsockname(), Handler)
        self.socket = listener


def notify(message):
    """One datagram to NOTIFY_SOCKET, as sd_notify(3) sends it. hawkey
    credits it to this process: the kernel stamps it with our pid."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(address)
        s.send(message.encode())


def main():
    # LISTEN_PID names the process the sockets are meant for: anything else
    # (a copy of the environment, a child of ours) must not touch fd 3.
    fds = os.environ.get("LISTEN_FDS", "")
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or not fds.isdigit() or int(fds) < 1:
        sys.exit(
            "server.py: no listening socket was passed to this process "
            f"(LISTEN_FDS={os.environ.get('LISTEN_FDS', 'unset')}, "
            f"LISTEN_PID={os.environ.get('LISTEN_PID', 'unset')}, own pid {os.getpid()}).\n"
            "Run it under hawkey (workers.app: exec), which passes the listener at fd 3; "
            "it does not open a port of its own."
        )
    for name in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"):
        del os.environ[name]  # ours alone, not our children's

    listener = socket.socket(fileno=3)  # family and type read from the fd
    # NON-BLOCKING, essential: the socket is shared by every worker, so a
    # new connection wakes them all and only one wins accept(). A blocking
    # accept() in the others would then sit there until the next connection
    # -- past SIGTERM, keeping a stopping worker alive. Non-blocking, a lost
    # race is just EAGAIN and the loop goes back to waiting.
    listener.setblocking(False)
    server = Server(listener)

    def stop(signum, frame):
        global stopping
        if stopping:
            return
        stopping = True
        log(f"{signal.Signals(signum).name}: finishing in-flight requests")
        # What server.shutdown() does, without its wait: waiting inside a
        # signal handler (which runs in the serving thread) would deadlock.
        server._BaseServer__shutdown_request = True
        # A hard limit, so a stuck request cannot keep the worker forever.
        signal.signal(signal.SIGALRM, give_up)
        signal.alarm(SHUTDOWN_LIMIT_S)

    def give_up(signum, frame):
        log(f"still busy after {SHUTDOWN_LIMIT_S} s, exiting anyway")
        os._exit(1)

    # hawkey sends workers.stop_signal (SIGTERM) to our process group;
    # SIGINT too, for a run by hand.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    notify(f"READY=1\nSTATUS=accepting on fd 3, generation {GENERATION}")
    server.serve_forever(poll_interval=0.05)
    # Stopping: close the idle keep-alive connections (their threads see
    # end-of-file and end); stop accepting (closing our copy of the socket:
    # it stays open in the other workers and in hawkey) and wait for the
    # in-flight requests' threads.
    with idle_lock:
        for handler in idle:
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    server.server_close()


if __name__ == "__main__":
    main()
