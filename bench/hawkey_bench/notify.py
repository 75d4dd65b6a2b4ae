"""A datagram NOTIFY_SOCKET, as systemd's (sd_notify(3)), that keeps every
message with the kernel's receive timestamp."""

import os
import socket
import threading
import time

from .procs import now_ns
from .settings import S

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class Notify:
    """A datagram NOTIFY_SOCKET; a thread receives every message with the
    kernel's receive timestamp (SO_TIMESTAMPNS: when the sender's sendmsg
    queued it, not when this thread got to run)."""
    def __init__(self, name):
        self.path = f"{S.work}/{name}.notify"
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
