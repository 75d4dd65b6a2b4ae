"""waitress on hawkey's listener, with the stop handler waitress lacks.

waitress-serve binds its own address and cannot take an inherited fd, and
waitress has no SIGTERM handler: the signal kills it mid-request. This
launcher serves app.app on fd 3 (LISTEN_FDS) and, on SIGTERM, drains:
it stops accepting, answers each further request on a kept connection
with `Connection: close`, and exits once no connection is left or every
one left has been idle for IDLE seconds (at most DRAIN seconds)."""
import os
import signal
import socket
import sys
import threading
import time

from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import WSGITask

from app import app

IDLE, DRAIN = 1.0, 20.0

if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
    sys.exit("serve.py: no listener passed (LISTEN_FDS); run it under hawkey or systemd socket activation")
listener = socket.socket(fileno=3)
server = create_server(app, sockets=[listener], threads=4)
stopping = threading.Event()

build_response_header = WSGITask.build_response_header


def closing_response_header(task):
    if stopping.is_set():
        task.set_close_on_finish()      # this answer says Connection: close
    return build_response_header(task)


WSGITask.build_response_header = closing_response_header


def drain():
    deadline = time.monotonic() + DRAIN
    while time.monotonic() < deadline:
        now = time.time()
        left = [c for c in list(server._map.values()) if isinstance(c, HTTPChannel)]
        if all(not c.requests and now - c.last_activity > IDLE for c in left):
            break
        time.sleep(0.05)
    os._exit(0)


def on_stop(signum, frame):
    if not stopping.is_set():
        stopping.set()
        server.accepting = False
        server.del_channel()            # no more accepts here; the other workers keep the socket
        threading.Thread(target=drain, daemon=True).start()


signal.signal(signal.SIGTERM, on_stop)
server.run()
