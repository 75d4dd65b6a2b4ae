"""The servers measured: hawkey from a config written for the run, the
bare launcher (examples/bare_launcher.rs: one socket, N forks, nothing
else: the limit) and bench/node/app.js as a Node `cluster` primary."""

import os

from .notify import Notify
from .procs import spawn
from .settings import S

EXEC_SLEEP = "  app: exec\n  ready: started\n  command: [sleep, '1000']\n"


def exec_node():
    return f"  app: exec\n  command: [node, '{S.app_js}']\n"


def hawkey_config(name, port, count, workers_yaml="", level="warn"):
    d = f"{S.work}/{name}"
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


def start_hawkey(name, port, count, workers_yaml="", level="warn", env=None, wait=True):
    cfg = hawkey_config(name, port, count, workers_yaml, level)
    notify = Notify(name)
    p = spawn([S.bin, "run", "-c", cfg], name, NOTIFY_SOCKET=notify.path, **(env or {}))
    p.config, p.notify = cfg, notify
    if wait:
        notify.wait(lambda m: "READY=1" in m, timeout=60)
    return p


def start_bare(name, port, count, command, role_worker=False):
    args = [S.launcher] + (["--role-worker"] if role_worker else []) + [f"127.0.0.1:{port}", str(count)] + command
    return spawn(args, name, HAWKEY_LOG="warn/text")


def start_cluster(name, port, policy):
    return spawn(["node", S.app_js], name, PORT=port, WORKERS=2, NODE_SCHED=policy)
