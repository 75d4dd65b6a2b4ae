#!/usr/bin/env python3
"""Generates the malformed-config corpus in tests/configs/invalid/.

    tests/configs/generate.py            write every invalid/NNN-CATEGORY-NAME.yaml
    tests/configs/generate.py --bless    ... and write each .expected from the real
                                         binary (target/debug/hawkey, or $HAWKEY_BIN),
                                         run as `hawkey check -c tests/configs/invalid/F`
                                         from the repository root
    tests/configs/generate.py --review   compare the binary's output with what each
                                         case says it should be; write nothing

Python 3 standard library only; the output is deterministic.

Every case states where its error must be reported, and the review checks it
for every case, not only a sample:

* The marker character U+27EA (shown as MARK below) in a case's text sits
  immediately before the offending token; the generator removes it and turns
  its position into the expected LINE:COL (1-based; columns count characters,
  as hawkey's YAML parser does).
* `path` is the expected key path: the innermost key (or sequence index)
  whose value contains the offending token. Conventions, written down once:
  - an unknown key: the path includes the unknown key itself;
  - a duplicate key: the path of the mapping holding it, the key named in
    the message (the second occurrence is the offending token);
  - a token that is not part of any key's value (a stray bracket after a
    value, a mis-indented key, a second document, a root that is not a
    mapping): the path of the collection that holds it, "" at the root;
  - a scalar's error may point at the scalar's first character (its opening
    quote), an anchor's error at the node it is attached to, a tab used as
    indentation at the token it indents.
* The .expected file of a normal case is the binary's real output, written
  by --bless only when it is one line with that location and key path (a
  case that does not match is reported and its .expected left alone).
* Time and memory (200 ms, 64 MiB) are figures the benchmark (bench/) prints;
  neither this script nor tests/corpus.rs judges them.
* One documented exception: a file over hawkey's 1 MiB limit is refused
  before it is parsed, so its line has no LINE:COL (`hawkey: error: FILE:
  file is larger than 1048576 bytes`); such cases set `located=False`.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
INVALID = os.path.join(HERE, "invalid")
REL = "tests/configs/invalid"

MARK = "\u27ea"
M = MARK

CASES = []
CATEGORY = [None]


def category(name):
    CATEGORY[0] = name


def case(name, text, path, located=True, at=None):
    """One malformed config. `text` is a str (invalid bytes written as
    surrogate escapes, e.g. '\\udcff' for the byte 0xff) or bytes (then
    `at` gives the location)."""
    assert CATEGORY[0] is not None
    CASES.append(
        dict(
            category=CATEGORY[0],
            name=name,
            text=text,
            path=path,
            located=located,
            at=at,
        )
    )


def locate(text):
    """(text without the marker, (line, col) of the marker or None)."""
    i = text.find(MARK)
    if i < 0:
        return text, None
    assert text.count(MARK) == 1, text[:80]
    before = text[:i]
    line, col, k = 1, 1, 0
    while k < len(before):
        ch = before[k]
        if ch == "\r" and k + 1 < len(before) and before[k + 1] == "\n":
            k += 1
            ch = "\n"
        if ch in "\r\n":
            line, col = line + 1, 1
        elif ch == "\ufeff" and k == 0:
            pass
        else:
            col += 1
        k += 1
    return before + text[i + 1 :], (line, col)


# ---------------------------------------------------------------------------
# Building blocks

LISTENER = 'listen:\n  - name: web\n    address: "127.0.0.1:8080"\n'


def listener(extra):
    """One block-style listener followed by `extra` (already indented)."""
    return LISTENER + extra


def exec_workers(extra=""):
    return 'workers:\n  app: exec\n  command: [sleep, "1000"]\n' + extra


def alias_chain(levels, width, mark, indent="    ", style="block"):
    """Billion-laughs style nested aliases: each level is a list of `width`
    aliases to the level before. `mark` = (level, index) puts the marker
    before that alias: the one whose expansion breaks the node budget."""
    first = "[" + ", ".join(["lol"] * width) + "]"
    items = [f"&a0 {first}"]
    for i in range(1, levels):
        refs = [f"*a{i - 1}"] * width
        if mark[0] == i:
            refs[mark[1]] = M + refs[mark[1]]
        items.append(f"&a{i} [" + ", ".join(refs) + "]")
    if style == "block":
        return "".join(f"{indent}- {item}\n" for item in items)
    return "[" + ", ".join(items) + "]"


# ---------------------------------------------------------------------------
# The cases

category("syntax")
# Unclosed brackets.
case("unclosed-bracket-listen", f'listen: {M}[{{name: web, address: "127.0.0.1:8080"}}\n', "listen")
case(
    "unclosed-brace-listener",
    f'listen:\n  - {M}{{name: web, address: "127.0.0.1:8080"\n',
    "listen[0]",
)
case(
    "unclosed-brace-second-listener",
    f'listen: [{{name: a, address: "127.0.0.1:1"}}, {M}{{name: b\n',
    "listen[1]",
)
case("unclosed-brace-env", f"workers:\n  env: {M}{{A: x, B: y\n", "workers.env")
case("unclosed-bracket-count", f"workers:\n  count: {M}[1, 2\n", "workers.count")
case("unclosed-bracket-command", f'workers:\n  app: exec\n  command: {M}[sleep, "1000"\n', "workers.command")
case("unclosed-brace-backoff", f"workers:\n  restart_backoff: {M}{{initial: 1s, max: 2s\n", "workers.restart_backoff")
case("unclosed-brace-log", f"log: {M}{{level: info\n", "log")
case("unclosed-brace-workers", f"log: {{level: info}}\nworkers: {M}{{count: 2, app: builtin\n", "workers")
case("unclosed-brace-root", f"{M}{{workers: {{count: 2}}\n", "")
case("mismatched-bracket-env", f"workers:\n  env: {M}{{A: x, B: y]\n", "workers.env")
case("mismatched-bracket-command", f"workers:\n  app: exec\n  command: {M}[sleep, 1000}}\n", "workers.command")
case("stray-closing-brace", f"workers:\n  env: {{A: x}}{M}}}\n", "workers")
case("stray-closing-bracket", f"workers:\n  app: exec\n  command: [sleep, \"1\"]{M}]\n", "workers")
case("stray-closing-bracket-root", f"log: {{level: info}}{M}]\n", "")
# Unclosed quotes.
case(
    "unclosed-double-quote-pidfile",
    f'pidfile: {M}"/run/hawkey/hawkey.pid\n',
    "pidfile",
)
case(
    "unclosed-single-quote-user",
    f"workers:\n  user: {M}'root\n  group: root\n",
    "workers.user",
)
case(
    "unclosed-quote-address",
    f'listen:\n  - name: web\n    address: {M}"127.0.0.1:8080\n',
    "listen[0].address",
)
case(
    "unclosed-quote-env-value",
    f'workers:\n  env:\n    A: {M}"x\n',
    "workers.env.A",
)
case(
    "unclosed-quote-in-flow-command",
    f'workers:\n  app: exec\n  command: [sleep, {M}"1]\n',
    "workers.command[1]",
)
case(
    "unclosed-single-quote-level",
    f"log:\n  level: {M}'info\n",
    "log.level",
)
case(
    "unclosed-quote-escaped-quote",
    f"log:\n  level: {M}'it''s\n",
    "log.level",
)
# Invalid escapes (reported at the quoted scalar).
for name, text, path in [
    ("escape-q-pidfile", f'pidfile: {M}"/run/\\q.pid"\n', "pidfile"),
    ("escape-q-control-socket", f'control_socket: {M}"/run/\\q.sock"\n', "control_socket"),
    ("escape-q-cwd", f'workers:\n  count: 1\n  cwd: {M}"/srv\\q"\n', "workers.cwd"),
    ("escape-q-env-value", f'workers:\n  env:\n    A: {M}"x\\q"\n    B: y\n', "workers.env.A"),
    ("escape-q-env-flow", f'workers:\n  env: {{A: {M}"x\\q"}}\n', "workers.env.A"),
    ("escape-percent-command", f'workers:\n  app: exec\n  command: [sh, {M}"\\%"]\n', "workers.command[1]"),
    ("escape-q-listener-name", f'listen:\n  - name: {M}"w\\qeb"\n    address: "127.0.0.1:8080"\n', "listen[0].name"),
    ("escape-q-address", f'listen:\n  - name: web\n    address: {M}"127.0.0.1:8080\\q"\n', "listen[0].address"),
    ("escape-bad-hex-level", f'log:\n  level: {M}"\\xZZ"\n', "log.level"),
    ("escape-short-unicode-format", f'log:\n  format: {M}"\\u12"\n', "log.format"),
    ("escape-codepoint-too-large-user", f'workers:\n  user: {M}"\\U0011FFFF"\n', "workers.user"),
    ("escape-empty-hex-group", f'workers:\n  group: {M}"\\x"\n', "workers.group"),
    ("escape-surrogate-signal", f'workers:\n  stop_signal: {M}"\\uD800"\n', "workers.stop_signal"),
]:
    case(
        name,
        text,
        path,
    )
# Tabs used as indentation (reported at the token the tab indents).
case(
    "tab-indent-first-key",
    f"workers:\n\t{M}count: 1\n",
    "workers",
)
case(
    "tab-indent-second-key",
    f"workers:\n  count: 1\n\t{M}app: exec\n",
    "workers",
)
case("tab-indent-env", f"workers:\n  env:\n\t{M}A: b\n", "workers.env")
case("tab-indent-after-comment", f"workers:\n  count: 1\n  # note\n\t{M}app: exec\n", "workers")
case("tab-indent-sequence", f"workers:\n  count:\n\t{M}- 1\n", "workers.count")
case("tab-indent-listen", f"listen:\n\t{M}- name: web\n", "listen")
case(
    "tab-indent-log",
    f"log:\n  level: info\n\t{M}format: json\n",
    "log",
)
# Bad indentation.
case("dedented-key", f"workers:\n  count: 1\n {M}app: exec\n", "")
case("dedented-key-deeper", f"workers:\n    count: 1\n  {M}app: exec\n", "")
case("dedented-log-key", f"log:\n  level: info\n {M}format: json\n", "")
case("over-indented-key", f"workers:\n  count: 1\n    app{M}: exec\n", "workers")
case("listener-key-dedented", f'listen:\n  - name: web\n    address: "127.0.0.1:8080"\n   {M}backlog: 1\n', "listen")
case("listener-key-over-indented", f'listen:\n  - name: web\n    address: "127.0.0.1:8080"\n      {M}backlog: 1\n', "listen[0]")
case("listener-second-key-over-indented", f'listen:\n  - name: web\n     address{M}: "127.0.0.1:8080"\n', "listen[0]")
case("env-key-dedented", f"workers:\n  env:\n    A: x\n   {M}B: y\n", "workers")
case(
    "sequence-entry-in-mapping",
    f"workers:\n  count: 1\n  {M}- 2\n",
    "workers",
)
# Stray colons.
case("stray-colon-after-value", f"log:\n  level: info{M}: warn\n", "log")
case("stray-colon-top-value", f"pidfile: /run/x{M}: y\n", "")
case("stray-colon-env-value", f"workers:\n  env:\n    A: b{M}: c\n", "workers.env")
case("stray-colon-unquoted-address", f"listen:\n  - name: web\n    address: 127.0.0.1{M}: 8080\n", "listen[0]")
case("empty-key-root", f"{M}: x\n", "")
case("empty-key-workers", f"workers:\n  {M}: exec\n", "workers")
case("empty-flow-entry", f"log: {{level: info,{M}, format: json}}\n", "log")
# Several documents.
case("two-documents", f"pidfile: /run/a.pid\n{M}---\npidfile: /run/b.pid\n", "")
case("two-explicit-documents", f"---\nlog: {{level: info}}\n{M}---\nlog: {{level: warn}}\n", "")
case("document-end-then-start", f"log: {{level: info}}\n...\n{M}---\n", "")
case("bare-document-after-end", f"log:\n  level: info\n...\n{M}log:\n  level: warn\n", "")
case("second-document-tagged", f"workers: {{count: 2}}\n{M}--- !!map\n", "")
# An empty document is refused as not a mapping before the second one is seen.
case("two-empty-documents", f"---{M}\n---\n", "")
case("directive-after-content", f"log: {{}}\n{M}%YAML 1.2\n---\n", "")
# Bad anchors and aliases.
for name, text, path in [
    ("unknown-alias-pidfile", f"pidfile: {M}*nope\n", "pidfile"),
    ("unknown-alias-listen", f"listen: {M}*listeners\n", "listen"),
    ("unknown-alias-format", f"log:\n  level: &l info\n  format: {M}*missing\n", "log.format"),
    ("unknown-alias-cwd", f"workers:\n  env:\n    A: &x one\n    B: *x\n  cwd: {M}*y\n", "workers.cwd"),
    ("empty-anchor-count", f"workers:\n  count: {M}& 2\n", "workers.count"),
    ("empty-alias-level", f"log:\n  level: {M}*\n", "log.level"),
    ("two-anchors-user", f"workers:\n  user: &a {M}&b root\n", "workers.user"),
]:
    case(name, text, path)
case("alias-before-anchor", f"workers:\n  env:\n    A: {M}*later\n    B: &later x\n", "workers.env.A")
# Characters YAML does not allow.
case("nul-byte-pidfile", f"pidfile: /run/x{M}\x00y\n", "pidfile")
case("control-char-user", f"workers:\n  user: {M}ro\x01ot\n", "workers.user")
case("del-char-pidfile", f"pidfile: {M}/run/x\x7fy\n", "pidfile")
case("control-char-quoted-name", f'listen:\n  - name: "we{M}\x02b"\n    address: "127.0.0.1:8080"\n', "listen[0].name")
case("reserved-at-sign-group", f"workers:\n  user: root\n  group: {M}@staff\n", "workers.group")
case("reserved-backtick-user", f"workers:\n  user: {M}`whoami`\n", "workers.user")
case("percent-plain-scalar", f"workers:\n  user: {M}%u\n", "workers.user")
case("trailing-after-quoted", f'log:\n  level: "info"{M}x\n', "log")
case("bad-block-scalar-header", f"log:\n  level: {M}|x\n    info\n", "log.level")
# Bytes that are not UTF-8: hawkey reports no location at all.
case("latin1-pidfile", f"pidfile: /run/caf{M}\udce9.pid\n", "pidfile")
case("truncated-utf8-env", f'workers:\n  env:\n    A: "x{M}\udcc3"\n', "workers.env.A")
case("invalid-byte-ff-name", f'listen:\n  - name: we{M}\udcffb\n    address: "127.0.0.1:8080"\n', "listen[0].name")
case("utf8-surrogate-level", f"log:\n  level: in{M}\udced\udca0\udc80fo\n", "log.level")
case("latin1-in-comment", f"# caf{M}\udce9\nworkers:\n  count: 2\n", "")
case("latin1-in-key", f"work{M}\udce9rs:\n  count: 2\n", "")
case(
    "utf16-file",
    "workers:\n  count: 2\n".encode("utf-16"),
    "",
    at=(1, 1),
)
# Newlines in names and values (one line per error).
case(
    "newline-in-unknown-key",
    f'workers:\n  {M}"a\\nb": 1\n',
    "workers.a\\nb",
)
case(
    "newline-in-env-name",
    f'workers:\n  env: {{"A\\nB": {M}[x]}}\n',
    "workers.env.A\\nB",
)

category("type")
# The document itself.
case("root-sequence", f"{M}- listen\n- workers\n", "")
case("root-flow-sequence", f"{M}[listen, workers]\n", "")
case("root-scalar", f"{M}hawkey\n", "")
case("root-number", f"{M}42\n", "")
case("root-quoted-string", f'{M}"workers: {{count: 2}}"\n', "")
# listen
case("listen-mapping", f"listen: {M}{{name: web, address: '127.0.0.1:8080'}}\n", "listen")
case("listen-block-mapping", f'listen:\n  {M}name: web\n  address: "127.0.0.1:8080"\n', "listen")
case("listen-string", f"listen: {M}127.0.0.1:8080\n", "listen")
case("listen-number", f"listen: {M}8080\n", "listen")
case("listen-bool", f"listen: {M}true\n", "listen")
case("listen-entry-string", f'listen:\n  - {M}"127.0.0.1:8080"\n', "listen[0]")
case("listen-entry-list", f"listen: [{M}[web, '127.0.0.1:8080']]\n", "listen[0]")
case("listen-entry-null", f"listen: [{{name: a, address: '127.0.0.1:1'}}, {M}null]\n", "listen[1]")
case("listen-name-list", f'listen:\n  - name: {M}[web]\n    address: "127.0.0.1:8080"\n', "listen[0].name")
case("listen-name-mapping", f'listen:\n  - name: {M}{{web: 1}}\n    address: "127.0.0.1:8080"\n', "listen[0].name")
case("listen-name-null", f'listen:\n  - name: {M}null\n    address: "127.0.0.1:8080"\n', "listen[0].name")
case("listen-name-missing", f'listen:\n  - {M}address: "127.0.0.1:8080"\n', "listen[0]")
case(
    "listen-address-missing",
    f"listen:\n  - {M}name: web\n    backlog: 10\n",
    "listen[0]",
)
case("listen-address-list", f"listen:\n  - name: web\n    address: {M}[127.0.0.1, 8080]\n", "listen[0].address")
case("listen-address-mapping", f"listen:\n  - name: web\n    address: {M}{{host: 127.0.0.1, port: 8080}}\n", "listen[0].address")
case("listen-address-null", f"listen:\n  - name: web\n    address: {M}~\n", "listen[0].address")
case("listen-backlog-list", listener(f"    backlog: {M}[128]\n"), "listen[0].backlog")
case("listen-backlog-mapping", listener(f"    backlog: {M}{{size: 128}}\n"), "listen[0].backlog")
case("listen-backlog-word", listener(f"    backlog: {M}many\n"), "listen[0].backlog")
case("listen-backlog-bool", listener(f"    backlog: {M}true\n"), "listen[0].backlog")
case("listen-backlog-float", listener(f"    backlog: {M}12.5\n"), "listen[0].backlog")
case("listen-mode-list", f'listen:\n  - name: s\n    address: "unix:/run/hawkey/s.sock"\n    mode: {M}["0660"]\n', "listen[0].mode")
case("listen-mode-mapping", f'listen:\n  - name: s\n    address: "unix:/run/hawkey/s.sock"\n    mode: {M}{{user: rw}}\n', "listen[0].mode")
case("listen-mode-bool", f'listen:\n  - name: s\n    address: "unix:/run/hawkey/s.sock"\n    mode: {M}true\n', "listen[0].mode")
# workers
case("workers-list", f"workers: {M}[count: 2]\n", "workers")
case("workers-block-list", f"workers:\n  {M}- count: 1\n  - app: exec\n", "workers")
case("workers-string", f"workers: {M}four\n", "workers")
case("workers-number", f"workers: {M}4\n", "workers")
case("count-list", f"workers:\n  count: {M}[2]\n", "workers.count")
case("count-mapping", f"workers:\n  count: {M}{{min: 1, max: 4}}\n", "workers.count")
case("count-bool", f"workers:\n  count: {M}true\n", "workers.count")
case("count-float", f"workers:\n  count: {M}2.5\n", "workers.count")
case("count-float-integral", f"workers:\n  count: {M}2.0\n", "workers.count")
case("count-quoted-number", f'workers:\n  count: {M}"4"\n', "workers.count")
case("count-tagged-float", f"workers:\n  count: !!float {M}2\n", "workers.count")
case("app-list", f"workers:\n  app: {M}[exec]\n", "workers.app")
case(
    "app-mapping",
    f"workers:\n  app: {M}{{builtin: null}}\n",
    "workers.app",
)
case("app-number", f"workers:\n  app: {M}1\n", "workers.app")
case("app-bool", f"workers:\n  app: {M}true\n", "workers.app")
case("command-string", f"workers:\n  app: exec\n  command: {M}sleep 1000\n", "workers.command")
case("command-mapping", f"workers:\n  app: exec\n  command: {M}{{program: sleep}}\n", "workers.command")
case("command-number", f"workers:\n  app: exec\n  command: {M}3\n", "workers.command")
case("command-nested-list", f"workers:\n  app: exec\n  command: [sleep, {M}[1000]]\n", "workers.command[1]")
case("command-null-arg", f"workers:\n  app: exec\n  command: [sleep, {M}null]\n", "workers.command[1]")
case("command-mapping-arg", f"workers:\n  app: exec\n  command:\n    - sleep\n    - {M}{{seconds: 1000}}\n", "workers.command[1]")
case("env-list", f"workers:\n  env: {M}[A=1, B=2]\n", "workers.env")
case("env-string", f"workers:\n  env: {M}A=1\n", "workers.env")
case("env-number", f"workers:\n  env: {M}3\n", "workers.env")
case("env-block-list", f"workers:\n  env:\n    {M}- A=1\n", "workers.env")
case("env-value-list", f"workers:\n  env: {{A: {M}[1, 2]}}\n", "workers.env.A")
case("env-value-mapping", f"workers:\n  env:\n    A: {M}{{B: c}}\n", "workers.env.A")
case("env-value-null", f"workers:\n  env:\n    NODE_ENV: {M}null\n", "workers.env.NODE_ENV")
case("env-complex-key", f"workers:\n  env: {{? {M}[A, B] : x}}\n", "workers.env")
case("cwd-list", f"workers:\n  cwd: {M}[/srv]\n", "workers.cwd")
case("cwd-mapping", f"workers:\n  cwd: {M}{{path: /srv}}\n", "workers.cwd")
case("cwd-bool", f"workers:\n  cwd: {M}true\n", "workers.cwd")
case("user-list", f"workers:\n  user: {M}[root]\n", "workers.user")
case("user-mapping", f"workers:\n  user: {M}{{name: root}}\n", "workers.user")
case("group-mapping", f"workers:\n  group: {M}{{a: 1}}\n", "workers.group")
case("group-list", f"workers:\n  group: {M}[root, daemon]\n", "workers.group")
case("ready-list", exec_workers(f"  ready: {M}[notify]\n"), "workers.ready")
case(
    "ready-mapping",
    exec_workers(f"  ready: {M}{{notify: ~}}\n"),
    "workers.ready",
)
case("ready-bool", exec_workers(f"  ready: {M}yes\n"), "workers.ready")
case("ready-number", exec_workers(f"  ready: {M}1\n"), "workers.ready")
case("ready-timeout-list", f"workers:\n  ready_timeout: {M}[30s]\n", "workers.ready_timeout")
case("ready-timeout-mapping", f"workers:\n  ready_timeout: {M}{{seconds: 30}}\n", "workers.ready_timeout")
case("ready-timeout-bool", f"workers:\n  ready_timeout: {M}true\n", "workers.ready_timeout")
case("heartbeat-list", f"workers:\n  heartbeat_timeout: {M}[10s]\n", "workers.heartbeat_timeout")
case("heartbeat-mapping", f"workers:\n  heartbeat_timeout: {M}{{every: 10s}}\n", "workers.heartbeat_timeout")
case("stop-signal-list", f"workers:\n  stop_signal: {M}[TERM]\n", "workers.stop_signal")
case("stop-signal-mapping", f"workers:\n  stop_signal: {M}{{name: TERM}}\n", "workers.stop_signal")
case("stop-signal-bool", f"workers:\n  stop_signal: {M}true\n", "workers.stop_signal")
case("stop-timeout-list", f"workers:\n  stop_timeout: {M}[25s]\n", "workers.stop_timeout")
case("stop-timeout-mapping", f"workers:\n  stop_timeout: {M}{{a: 1}}\n", "workers.stop_timeout")
case("backoff-string", f"workers:\n  restart_backoff: {M}100ms\n", "workers.restart_backoff")
case("backoff-list", f"workers:\n  restart_backoff: {M}[100ms, 30s]\n", "workers.restart_backoff")
case("backoff-number", f"workers:\n  restart_backoff: {M}5\n", "workers.restart_backoff")
case("backoff-initial-list", f"workers:\n  restart_backoff:\n    initial: {M}[1s]\n", "workers.restart_backoff.initial")
case("backoff-max-mapping", f"workers:\n  restart_backoff: {{max: {M}{{s: 30}}}}\n", "workers.restart_backoff.max")
# pidfile, control_socket
case("pidfile-list", f"pidfile: {M}[/run/a.pid]\n", "pidfile")
case("pidfile-mapping", f"pidfile: {M}{{path: /run/a.pid}}\n", "pidfile")
case("pidfile-bool", f"pidfile: {M}true\n", "pidfile")
case("pidfile-number", f"pidfile: {M}1\n", "pidfile")
case("control-socket-list", f"control_socket: {M}[/run/a.sock]\n", "control_socket")
case("control-socket-mapping", f"control_socket:\n  {M}path: /run/a.sock\n", "control_socket")
case("control-socket-bool", f"control_socket: {M}false\n", "control_socket")
# log
case("log-list", f"log: {M}[]\n", "log")
case("log-string", f"log: {M}json\n", "log")
case("log-number", f"log: {M}3\n", "log")
case("log-level-list", f"log:\n  level: {M}[info]\n", "log.level")
case(
    "log-level-mapping",
    f"log:\n  level: {M}{{info: null}}\n",
    "log.level",
)
case(
    "log-level-mapping-unknown",
    f"log:\n  level: {M}{{loud: 1}}\n",
    "log.level",
)
case("log-level-number", f"log:\n  level: {M}3\n", "log.level")
case("log-level-bool", f"log:\n  level: {M}true\n", "log.level")
case("log-format-list", f"log:\n  format: {M}[json]\n", "log.format")
case(
    "log-format-mapping",
    f"log:\n  format: {M}{{json: 1}}\n",
    "log.format",
)
case("log-format-bool", f"log:\n  format: {M}false\n", "log.format")

category("range")
case("count-zero", f"workers:\n  count: {M}0\n", "workers.count")
case("count-negative", f"workers:\n  count: {M}-1\n", "workers.count")
case("count-1025", f"workers:\n  count: {M}1025\n", "workers.count")
case("count-huge", f"workers:\n  count: {M}4294967297\n", "workers.count")
case("count-beyond-i64", f"workers:\n  count: {M}99999999999999999999\n", "workers.count")
case("count-hex-too-large", f"workers:\n  count: {M}0x401\n", "workers.count")
case("count-auto-uppercase", f"workers:\n  count: {M}AUTO\n", "workers.count")
case("count-word", f"workers:\n  count: {M}many\n", "workers.count")
case("count-padded-quoted", f'workers:\n  count: {M}" 4"\n', "workers.count")
case("count-zero-crlf", f"workers:\r\n  count: {M}0\r\n", "workers.count")
case(
    "count-newline-in-value",
    f'workers:\n  count: {M}"a\\nb"\n',
    "workers.count",
)
case("backlog-zero", listener(f"    backlog: {M}0\n"), "listen[0].backlog")
case("backlog-65536", listener(f"    backlog: {M}65536\n"), "listen[0].backlog")
case("backlog-negative", listener(f"    backlog: {M}-1\n"), "listen[0].backlog")
case("backlog-u32-overflow", listener(f"    backlog: {M}4294967296\n"), "listen[0].backlog")
case("backlog-second-listener", f'listen:\n  - {{name: a, address: "127.0.0.1:1", backlog: 10}}\n  - {{name: b, address: "127.0.0.1:2", backlog: {M}70000}}\n', "listen[1].backlog")
DURATION_KEYS = [
    ("ready-timeout", "workers:\n  ready_timeout: ", "workers.ready_timeout"),
    ("heartbeat", "workers:\n  heartbeat_timeout: ", "workers.heartbeat_timeout"),
    ("stop-timeout", "workers:\n  stop_timeout: ", "workers.stop_timeout"),
    ("backoff-initial", "workers:\n  restart_backoff:\n    max: 1h\n    initial: ", "workers.restart_backoff.initial"),
    ("backoff-max", "workers:\n  restart_backoff: {max: ", "workers.restart_backoff.max"),
]
DURATION_VALUES = [
    ("no-unit", "30"),
    ("unknown-unit-days", "2d"),
    ("unknown-unit-sec", "5sec"),
    ("uppercase-unit", "30S"),
    ("negative", "-5s"),
    ("too-large", "25h"),
    ("too-large-ms", "86400001ms"),
    ("overflow", "99999999999999999999999ms"),
    ("fraction", "1.5s"),
    ("space-before-unit", '"30 s"'),
    ("empty", '""'),
    ("unit-only", "ms"),
]
for ki, (kname, prefix, kpath) in enumerate(DURATION_KEYS):
    suffix = "}\n" if prefix.endswith("{max: ") else "\n"
    for vi, (vname, value) in enumerate(DURATION_VALUES):
        # Every value for ready_timeout; a rotating share for the others, so
        # that each key meets each kind of mistake somewhere.
        if ki != 0 and (vi + ki) % 3 != 0:
            continue
        case(f"{kname}-{vname}", f"{prefix}{M}{value}{suffix}", kpath)
case("ready-timeout-zero", f"workers:\n  ready_timeout: {M}0s\n", "workers.ready_timeout")
case("heartbeat-below-100ms", f"workers:\n  heartbeat_timeout: {M}50ms\n", "workers.heartbeat_timeout")
case("heartbeat-zero", f"workers:\n  heartbeat_timeout: {M}0s\n", "workers.heartbeat_timeout")
case(
    "backoff-initial-zero",
    f"workers:\n  restart_backoff: {{initial: {M}0s, max: 1s}}\n",
    "workers.restart_backoff.initial",
)
case(
    "backoff-initial-zero-block",
    f"workers:\n  restart_backoff:\n    max: 1s\n    initial: {M}0ms\n",
    "workers.restart_backoff.initial",
)
case(
    "stop-timeout-newline",
    f'workers:\n  stop_timeout: {M}"1\\n2"\n',
    "workers.stop_timeout",
)
MODE_PREFIX = 'listen:\n  - name: admin\n    address: "unix:/run/hawkey/admin.sock"\n    mode: '
for name, value in [
    ("not-octal", '"0999"'),
    ("setuid-bits", '"1777"'),
    ("too-large", '"01000"'),
    ("all-bits", '"7777"'),
    ("letters", '"rw-rw----"'),
    ("empty", '""'),
    ("hex", '"0x1ff"'),
    ("negative", '"-1"'),
    ("bad-0o-prefix", "0o888"),
    ("unquoted-decimal-digits", "0980"),
    ("bare-0o", '"0o"'),
]:
    case(f"mode-{name}", f"{MODE_PREFIX}{M}{value}\n", "listen[0].mode")
for name, value in [
    ("sigstop", "SIGSTOP"),
    ("sigchld", "SIGCHLD"),
    ("sigtstp", "SIGTSTP"),
    ("sigcont", "SIGCONT"),
    ("stop-no-prefix", "STOP"),
    ("chld-lowercase", "chld"),
    ("unknown", "SIGNOPE"),
    ("number", "15"),
    ("empty", '""'),
    ("bare-sig", "SIG"),
    ("realtime", "SIGRTMIN"),
    ("typo", "SIGTREM"),
]:
    case(f"signal-{name}", f"workers:\n  stop_signal: {M}{value}\n", "workers.stop_signal")
for name, text, path in [
    ("app-unknown", f"workers:\n  app: {M}docker\n", "workers.app"),
    ("app-capitalised", f"workers:\n  app: {M}Exec\n", "workers.app"),
    ("ready-unknown", exec_workers(f"  ready: {M}ready\n"), "workers.ready"),
    ("ready-uppercase", exec_workers(f"  ready: {M}NOTIFY\n"), "workers.ready"),
    ("level-unknown", f"log:\n  level: {M}verbose\n", "log.level"),
    ("level-uppercase", f"log:\n  level: {M}INFO\n", "log.level"),
    ("level-warning", f"log:\n  level: {M}warning\n", "log.level"),
    ("format-unknown", f"log:\n  format: {M}xml\n", "log.format"),
    ("format-uppercase", f"log:\n  format: {M}JSON\n", "log.format"),
    ("format-syslog", f"log:\n  format: {M}syslog\n", "log.format"),
    ("level-tagged-int", f"log:\n  level: !!int {M}info\n", "log.level"),
]:
    case(name, text, path)

category("address")
ADDR = 'listen:\n  - name: web\n    address: '
for name, value in [
    ("localhost", "localhost:80"),
    ("hostname", '"example.com:443"'),
    ("hostname-dashed", "my-host:8080"),
    ("missing-port", '"127.0.0.1"'),
    ("missing-port-v6", '"[::1]"'),
    ("empty-port", '"127.0.0.1:"'),
    ("empty-host", '":8080"'),
    ("port-only", "8080"),
    ("port-70000", '"127.0.0.1:70000"'),
    ("port-65536", '"0.0.0.0:65536"'),
    ("port-negative", '"127.0.0.1:-1"'),
    ("port-name", '"127.0.0.1:http"'),
    ("v6-port-too-large", '"[::1]:99999"'),
    ("v6-without-brackets", '"::1:80"'),
    ("bad-ipv4", '"256.0.0.1:80"'),
    ("scheme", '"tcp://127.0.0.1:80"'),
    ("url", '"http://127.0.0.1:8080/"'),
    ("unix-relative", '"unix:run/hawkey.sock"'),
    ("unix-empty", '"unix:"'),
    ("unix-dot-relative", '"unix:./hawkey.sock"'),
    ("unix-tilde", '"unix:~/hawkey.sock"'),
    ("unix-too-long", '"unix:/run/' + "s" * 98 + '.sock"'),
    ("unix-far-too-long", '"unix:/' + "d/" * 300 + 'x.sock"'),
    ("empty", '""'),
]:
    case(name, f"{ADDR}{M}{value}\n", "listen[0].address")
case(
    "newline",
    f'{ADDR}{M}"1.2.3.4:5\\nx"\n',
    "listen[0].address",
)
case("in-second-listener", f'listen:\n  - {{name: a, address: "127.0.0.1:1"}}\n  - {{name: b, address: {M}"localhost:2"}}\n', "listen[1].address")
case("duplicate-name", f'listen:\n  - name: web\n    address: "127.0.0.1:8080"\n  - name: {M}web\n    address: "127.0.0.1:8081"\n', "listen[1].name")
case("duplicate-name-flow", f'listen: [{{name: a, address: "127.0.0.1:1"}}, {{name: b, address: "127.0.0.1:2"}}, {{name: {M}a, address: "127.0.0.1:3"}}]\n', "listen[2].name")
case("duplicate-address", f'listen:\n  - name: a\n    address: "127.0.0.1:8080"\n  - name: b\n    address: {M}"127.0.0.1:8080"\n', "listen[1].address")
case("duplicate-address-spelled-differently", f'listen:\n  - name: a\n    address: "127.0.0.1:80"\n  - name: b\n    address: {M}"127.0.0.1:080"\n', "listen[1].address")
case("duplicate-address-v6", f'listen:\n  - {{name: a, address: "[::1]:80"}}\n  - {{name: b, address: {M}"[0:0:0:0:0:0:0:1]:80"}}\n', "listen[1].address")
case("duplicate-unix-path", f'listen:\n  - {{name: a, address: "unix:/run/hawkey/a.sock"}}\n  - {{name: b, address: {M}"unix:/run/hawkey/a.sock"}}\n', "listen[1].address")
case("listen-empty", f"listen: {M}[]\n", "listen")
for name, value in [
    ("space", '"my web"'),
    ("colon", '"web:1"'),
    ("empty", '""'),
    ("too-long", "w" * 256),
    ("non-ascii", "wéb"),
    ("tab", '"we\\tb"'),
]:
    case(f"name-{name}", f'listen:\n  - name: {M}{value}\n    address: "127.0.0.1:8080"\n', "listen[0].name")
case(
    "name-newline",
    f'listen:\n  - name: {M}"a\\nb"\n    address: "127.0.0.1:8080"\n',
    "listen[0].name",
)
case("mode-on-tcp", listener(f'    mode: {M}"0660"\n'), "listen[0].mode")
case("mode-on-tcp-flow", f'listen: [{{name: a, address: "[::1]:80", mode: {M}"0600"}}]\n', "listen[0].mode")

category("unknown")
TOP_KEYS = "expected one of listen, workers, pidfile, control_socket, log, reload"
for name, key in [
    ("worker", "worker"),
    ("listeners", "listeners"),
    ("listener", "listener"),
    ("workers-capitalised", "Workers"),
    ("pid-file", "pid_file"),
    ("pidfile-dashed", "pid-file"),
    ("control-socket-dashed", "control-socket"),
    ("controlsocket", "controlsocket"),
    ("logging", "logging"),
    ("log-level-flat", "log_level"),
    ("version", "version"),
    ("include", "include"),
]:
    case(f"top-{name}", f"log: {{level: info}}\n{M}{key}: 1\n", key)
case("top-unknown-first", f"{M}hawkey:\n  workers: 2\n", "hawkey")
case("top-unknown-flow", f"{{log: {{level: info}}, {M}extra: 1}}\n", "extra")
case("top-quoted-unknown", f'{M}"workers ": {{count: 1}}\n', "workers ")
for name, key in [
    ("port", "port"),
    ("host", "host"),
    ("adress", "adress"),
    ("Name", "Name"),
    ("socket", "socket"),
    ("backlog-size", "backlog_size"),
    ("file-mode", "file_mode"),
]:
    case(f"listen-{name}", listener(f"    {M}{key}: 1\n"), f"listen[0].{key}")
case("listen-second-unknown", f'listen:\n  - {{name: a, address: "127.0.0.1:1"}}\n  - {{name: b, address: "127.0.0.1:2", {M}reuseport: true}}\n', "listen[1].reuseport")
for name, key in [
    ("stop-timeout-dashed", "stop-timeout"),
    ("ready-timeout-dashed", "ready-timeout"),
    ("restart-backoff-dashed", "restart-backoff"),
    ("worker-count", "worker_count"),
    ("counts", "counts"),
    ("commands", "commands"),
    ("cmd", "cmd"),
    ("environment", "environment"),
    ("heartbeat", "heartbeat"),
    ("restart", "restart"),
    ("timeout", "timeout"),
    ("working-directory", "working_directory"),
    ("Count", "Count"),
]:
    case(f"workers-{name}", f"workers:\n  count: 2\n  {M}{key}: 1\n", f"workers.{key}")
case("workers-unknown-flow", f"workers: {{count: 2, {M}threads: 4}}\n", "workers.threads")
for name, key in [
    ("initial-delay", "initial_delay"),
    ("maximum", "maximum"),
    ("min", "min"),
    ("jitter", "jitter"),
    ("Max", "Max"),
]:
    case(f"backoff-{name}", f"workers:\n  restart_backoff:\n    initial: 1s\n    {M}{key}: 1\n", f"workers.restart_backoff.{key}")
case("backoff-unknown-flow", f"workers:\n  restart_backoff: {{initial: 1s, {M}factor: 2}}\n", "workers.restart_backoff.factor")
for name, key in [
    ("lvl", "lvl"),
    ("levels", "levels"),
    ("colour", "colour"),
    ("file", "file"),
    ("target", "target"),
    ("format-typo", "fromat"),
]:
    case(f"log-{name}", f"log:\n  level: info\n  {M}{key}: x\n", f"log.{key}")
case("merged-unknown-key", f"workers: &w {{{M}count: 2}}\nlog: {{<<: *w}}\n", "log.count")

category("duplicate")
for name, text, path in [
    ("top-workers", f"workers:\n  count: 1\n{M}workers:\n  count: 2\n", ""),
    ("top-listen", f"{LISTENER}{M}listen: []\n", ""),
    ("top-pidfile", f"pidfile: /run/a.pid\n{M}pidfile: /run/b.pid\n", ""),
    ("top-pidfile-same-value", f"pidfile: /run/a.pid\n{M}pidfile: /run/a.pid\n", ""),
    ("top-control-socket", f"control_socket: /run/a.sock\n{M}control_socket: null\n", ""),
    ("top-log", f"log:\n  level: info\nworkers:\n  count: 1\n{M}log:\n  level: warn\n", ""),
    ("top-flow", f"{{workers: {{count: 1}}, {M}workers: {{count: 2}}}}\n", ""),
    ("top-quoted-and-plain", f'workers: {{count: 1}}\n{M}"workers": {{count: 2}}\n', ""),
    ("listener-name", f'listen:\n  - name: a\n    address: "127.0.0.1:1"\n    {M}name: b\n', "listen[0]"),
    ("listener-address-flow", f'listen:\n  - {{name: a, address: "127.0.0.1:1", {M}address: "127.0.0.1:2"}}\n', "listen[0]"),
    ("listener-backlog", listener(f"    backlog: 10\n    {M}backlog: 20\n"), "listen[0]"),
    ("listener-mode", f'listen:\n  - name: s\n    address: "unix:/run/hawkey/s.sock"\n    mode: "0600"\n    {M}mode: "0660"\n', "listen[0]"),
    ("second-listener-name", f'listen:\n  - {{name: a, address: "127.0.0.1:1"}}\n  - {{name: b, {M}name: c, address: "127.0.0.1:2"}}\n', "listen[1]"),
    ("env-name", f"workers:\n  env:\n    A: x\n    {M}A: y\n", "workers.env"),
    ("env-name-flow", f"workers:\n  env: {{A: x, {M}A: x}}\n", "workers.env"),
    ("env-name-quoted", f"workers:\n  env:\n    NODE_ENV: production\n    {M}'NODE_ENV': test\n", "workers.env"),
    ("backoff-initial", f"workers:\n  restart_backoff:\n    initial: 1s\n    {M}initial: 2s\n", "workers.restart_backoff"),
    ("backoff-max-flow", f"workers:\n  restart_backoff: {{max: 1m, initial: 1s, {M}max: 2m}}\n", "workers.restart_backoff"),
    ("log-level", f"log:\n  level: info\n  {M}level: warn\n", "log"),
    ("log-format-flow", f"log: {{format: json, level: info, {M}format: text}}\n", "log"),
]:
    case(name, text, path)
for key, v1, v2 in [
    ("count", "1", "2"),
    ("app", "builtin", "exec"),
    ("command", "[sleep, '1']", "[sleep, '2']"),
    ("env", "{A: x}", "{B: y}"),
    ("cwd", "/", "/tmp"),
    ("user", "root", "nobody"),
    ("group", "root", "nogroup"),
    ("ready", "started", "notify"),
    ("ready_timeout", "30s", "1m"),
    ("heartbeat_timeout", "10s", "null"),
    ("stop_signal", "SIGTERM", "SIGINT"),
    ("stop_timeout", "25s", "5s"),
    ("restart_backoff", "{initial: 1s}", "{max: 1m}"),
]:
    case(f"workers-{key.replace('_', '-')}", f"workers:\n  {key}: {v1}\n  {M}{key}: {v2}\n", "workers")

category("cross")
case("exec-without-command", f"workers:\n  count: 2\n  app: {M}exec\n", "workers.app")
case("exec-without-command-flow", f"workers: {{app: {M}exec, count: 2}}\n", "workers.app")
case("exec-null-command", f"workers:\n  app: {M}exec\n  command: null\n", "workers.app")
case("exec-empty-command", f"workers:\n  app: exec\n  command: {M}[]\n", "workers.command")
case("command-with-builtin", f"workers:\n  app: builtin\n  command: {M}[/bin/sh, -c, 'exit 0']\n", "workers.command")
case("command-with-default-app", f"workers:\n  command:\n    {M}- /bin/sh\n", "workers.command")
case("notify-with-builtin", f"workers:\n  app: builtin\n  ready: {M}notify\n", "workers.ready")
case("notify-with-default-app", f"workers:\n  ready: {M}notify\n", "workers.ready")
case("heartbeat-with-started", exec_workers(f"  ready: started\n  heartbeat_timeout: {M}10s\n"), "workers.heartbeat_timeout")
case("heartbeat-with-default-ready", exec_workers(f"  heartbeat_timeout: {M}5s\n"), "workers.heartbeat_timeout")
case("backoff-initial-over-max", f"workers:\n  restart_backoff: {M}{{initial: 2s, max: 1s}}\n", "workers.restart_backoff")
case("backoff-initial-over-max-block", f"workers:\n  restart_backoff:\n    {M}initial: 2s\n    max: 1s\n", "workers.restart_backoff")
case("backoff-initial-over-default-max", f"workers:\n  restart_backoff: {M}{{initial: 1m}}\n", "workers.restart_backoff")
case("backoff-max-under-default-initial", f"workers:\n  restart_backoff: {M}{{max: 10ms}}\n", "workers.restart_backoff")
for name in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "HAWKEY_WORKER", "HAWKEY_GENERATION", "HAWKEY_ROLE"]:
    case(
        f"env-reserved-{name.lower().replace('_', '-')}",
        f"workers:\n  env:\n    PATH: /usr/bin:/bin\n    {M}{name}: x\n",
        f"workers.env.{name}",
    )
case("env-reserved-flow", f"workers:\n  env: {{{M}LISTEN_FDS: '3'}}\n", "workers.env.LISTEN_FDS")
case("env-name-with-equals", f'workers:\n  env: {{{M}"A=B": x}}\n', "workers.env.A=B")
case("env-name-leading-equals", f'workers:\n  env:\n    {M}"=A": x\n', "workers.env.=A")
case("env-name-leading-digit", f"workers:\n  env:\n    {M}1ST: x\n", "workers.env.1ST")
case("env-name-number", f"workers:\n  env: {{{M}1: x}}\n", "workers.env.1")
case("env-name-empty", f'workers:\n  env: {{{M}"": x}}\n', "workers.env.")
case(
    "env-name-nul",
    f'workers:\n  env: {{{M}"A\\0B": x}}\n',
    "workers.env.A\\u{0}B",
)
case("env-value-nul", f'workers:\n  env: {{A: {M}"a\\0b"}}\n', "workers.env.A")
case("pidfile-relative", f"pidfile: {M}hawkey.pid\n", "pidfile")
case("pidfile-dot-relative", f"pidfile: {M}./run/hawkey.pid\n", "pidfile")
case("pidfile-tilde", f'pidfile: {M}"~/hawkey.pid"\n', "pidfile")
case("pidfile-empty", f'pidfile: {M}""\n', "pidfile")
case("control-socket-relative", f"control_socket: {M}hawkey.sock\n", "control_socket")
case("control-socket-empty", f"control_socket: {M}''\n", "control_socket")
case("control-socket-too-long", f"control_socket: {M}/run/{'c' * 98}.sock\n", "control_socket")
case("cwd-relative", f"workers:\n  cwd: {M}srv/app\n", "workers.cwd")
case("cwd-dot", f"workers:\n  cwd: {M}.\n", "workers.cwd")
case("cwd-empty", f'workers:\n  cwd: {M}""\n', "workers.cwd")
case("cwd-missing", f"workers:\n  cwd: {M}/nonexistent/hawkey-corpus\n", "workers.cwd")
case("cwd-is-a-file", f"workers:\n  cwd: {M}/etc/passwd\n", "workers.cwd")
case("user-missing", f"workers:\n  user: {M}hawkey-no-such-user\n", "workers.user")
case("user-numeric", f"workers:\n  user: {M}0\n", "workers.user")
case("user-empty", f'workers:\n  user: {M}""\n', "workers.user")
case("group-missing", f"workers:\n  user: nobody\n  group: {M}hawkey-no-such-group\n", "workers.group")
case("group-empty", f"workers:\n  group: {M}''\n", "workers.group")
case(
    "user-newline",
    f'workers:\n  user: {M}"a\\nb"\n',
    "workers.user",
)
case("command-not-executable", f"workers:\n  app: exec\n  command: [{M}/etc/passwd]\n", "workers.command[0]")
case("command-is-directory", f"workers:\n  app: exec\n  command: [{M}/etc, x]\n", "workers.command[0]")
case("command-missing-absolute", f"workers:\n  app: exec\n  command:\n    - {M}/nonexistent/bin/app\n    - --port\n", "workers.command[0]")
case("command-not-in-path", f"workers:\n  app: exec\n  command: [{M}hawkey-no-such-program, serve]\n", "workers.command[0]")
case("command-relative-missing", f"workers:\n  app: exec\n  command: [{M}./missing.sh]\n", "workers.command[0]")
case(
    "command-nul-program",
    f'workers:\n  app: exec\n  command: [{M}"/bin/sh\\0x"]\n',
    "workers.command[0]",
)
case(
    "command-nul-argument",
    f'workers:\n  app: exec\n  command:\n    - /bin/sh\n    - {M}"a\\0b"\n',
    "workers.command[1]",
)

category("bomb")
# The classic, at the top level: refused at its first (unknown) key.
laughs = f"{M}a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
laughs += "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 12))
case("billion-laughs-unknown-key", laughs, "a0")
# Under workers.count (an untagged enum: its whole value is read before it
# is judged), the aliases are expanded up to the node budget.
NODES = "workers.count[4][7][8][8][8]"
bomb = "workers:\n  count:\n" + alias_chain(9, 10, (4, 7))
case("billion-laughs-count", bomb, NODES)
bomb = "workers:\n  count: " + alias_chain(9, 10, (4, 7), style="flow") + "\n"
case("billion-laughs-count-flow", bomb, NODES)
bomb = "workers:\n  count:\n" + alias_chain(3, 100, (2, 8))
case("wide-laughs-count", bomb, "workers.count[2][8][88]")
big = "x" * (400 * 1024)
case(
    "scalar-amplification-env",
    "workers:\n  env:\n    A: &big " + big + "\n    B0: *big\n    B1: " + M + "*big\n" + "".join(f"    B{i}: *big\n" for i in range(2, 999)),
    "workers.env.B1",
)
case(
    "scalar-amplification-command",
    "workers:\n  app: exec\n  command: [/bin/sh, &big " + big + ", *big, " + M + "*big" + ", *big" * 996 + "]\n",
    "workers.command[3]",
)
case(
    "many-anchors",
    "workers:\n  env:\n" + "".join(f"    V{i}: &v{i} x\n" for i in range(1000)) + f"    V1000: &v1000 {M}x\n" + "".join(f"    V{i}: &v{i} x\n" for i in range(1001, 1100)),
    "workers.env.V1000",
)
case(
    "many-aliases",
    "workers:\n  env:\n    A: &v x\n" + "".join(f"    V{i}: *v\n" for i in range(1000)) + f"    V1000: {M}*v\n" + "".join(f"    V{i}: *v\n" for i in range(1001, 1100)),
    "workers.env.V1000",
)
case(
    "alias-storm-listen",
    "listen:\n  - &l {name: a, address: '127.0.0.1:1'}\n" + "".join("  - *l\n" for _ in range(99)) + f"  - {M}*l\n" + "".join("  - *l\n" for _ in range(899)),
    "listen[100]",
)
case("deep-flow-count", "workers:\n  count: " + "[" * 30 + M + "[" * 3 + "]" * 33 + "\n", "workers.count" + "[0]" * 30)
case(
    "deep-flow-count-10000",
    "workers:\n  count: " + "[" * 30 + M + "[" * 9970 + "]" * 10000 + "\n",
    "workers.count" + "[0]" * 30,
)
case(
    "deep-flow-unclosed-10000",
    "workers:\n  count: " + "[" * 30 + M + "[" * 9970 + "\n",
    "workers.count" + "[0]" * 30,
)
deep = "workers:\n  count:\n"
for i in range(40):
    deep += "    " + " " * i + ("-" if i != 30 else M + "-") + "\n"
case("deep-block-count", deep, "workers.count" + "[0]" * 30)
case("deep-mapping-count", "workers:\n  count: " + "{a: " * 30 + M + "{a: " * 10 + "x" + "}" * 40 + "\n", "workers.count" + ".a" * 30)
case("deep-mapping-unknown-log", "log:\n" + "".join("  " * (i + 1) + (M if i == 0 else "") + f"k{i}:\n" for i in range(200)), "log.k0")
case("recursive-alias-count", f"workers:\n  count: &a [{M}*a]\n", "workers.count[0]")
case("recursive-alias-workers", f"workers: &w\n  count: 2\n  env: {M}*w\n", "workers.env")
case(
    "flat-100k-nodes-count",
    "workers:\n  count: [" + "1," * 99_995 + M + "1," * 5 + "1]\n",
    "workers.count[99995]",
)

category("huge")
env_line = "    HAWKEY_CORPUS_VARIABLE_{:06d}: some value that fills the file\n"


def env_block(size):
    out, i = ["workers:\n  env:\n"], 0
    total = len(out[0])
    while total < size:
        line = env_line.format(i)
        out.append(line)
        total += len(line)
        i += 1
    return "".join(out), i


text, _ = env_block(2 * 1024 * 1024)
case("two-mebibytes", text, "", located=False)
text, _ = env_block(1024 * 1024 - 200)
pad = 1024 * 1024 + 1 - len(text.encode())
text = text + "#" + "x" * (pad - 2) + "\n"
assert len(text.encode()) == 1024 * 1024 + 1
case("one-mebibyte-plus-one", text, "", located=False)
text, n = env_block(1024 * 1024 - 300)
tail = f"  {M}bogus: 1\n"
pad = 1024 * 1024 - len(text.encode()) - len(tail.encode()) + len(M.encode())
text = text + "#" + "x" * (pad - 2) + "\n" + tail
assert len(text.replace(M, "").encode()) == 1024 * 1024
case("exactly-one-mebibyte", text, "workers.bogus")
keys = "".join(f"unknown_key_{i:06d}: value number {i} of a big file of unknown keys\n" for i in range(14_000))
case("unknown-keys-900k", M + keys, "unknown_key_000000")
text, n = env_block(900 * 1024)
case("valid-env-then-unknown-key", text + f"  {M}bogus: 1\n", "workers.bogus")
text, n = env_block(900 * 1024)
case("valid-env-then-bad-count", text + f"  count: {M}0\n", "workers.count")
case("long-control-socket", f"control_socket: {M}/" + "s" * (900 * 1024) + "\n", "control_socket")
case("long-unknown-key", f"workers:\n  {M}" + "k" * 1000 + ": 1\n", "workers." + "k" * 1000)
case("long-key-beyond-lookahead", f"workers:\n  count: 1\n  {M}" + "k" * 2000 + ": 1\n", "workers")
case("comments-then-error", ("# " + "c" * 100 + "\n") * 8001 + f"workers:\n  count: {M}0\n", "workers.count")
flow = "workers: {env: {" + ", ".join(f"V{i}: {M if i == 49_997 else ''}x{i}" for i in range(60_000)) + "}}\n"
case(
    "one-line-env-beyond-node-budget",
    flow,
    "workers.env.V49997",
)


# Appended after the others so that no earlier case is renumbered.
category("empty")
# A file that holds nothing is no config (it used to mean "every default",
# so a truncated file replaced the app on a reload): located where the file
# ends, key path empty. `{}` is the way to ask for every default.
case("zero-bytes", M, "")
case("only-newlines", "\n\n\n" + M, "")
case("only-whitespace", "  \n\t\n   " + M, "")
case("only-crlf-blank-lines", "\r\n \r\n" + M, "")
case("only-comments", "# hawkey.yaml\n#\n#   workers:\n#     count: 2\n" + M, "")
case("only-indented-comments", "   # one\n\t# two\n# three" + M, "")
case("bom-then-comment", "\ufeff# nothing here\n" + M, "")

category("cross")
# The variables hawkey sets for each worker besides those above (src/env.rs,
# WORKER_VARS): a second value in workers.env would be the one getenv finds.
for name in ["WATCHDOG_USEC", "WATCHDOG_PID", "HAWKEY_LOG", "JOURNAL_STREAM", "HAWKEY_STOP_SIGNAL"]:
    case(
        f"env-reserved-{name.lower().replace('_', '-')}",
        f"workers:\n  env:\n    PATH: /usr/bin:/bin\n    {M}{name}: x\n",
        f"workers.env.{name}",
    )

category("syntax")
# An unclosed flow collection that the parser notices only on a later line:
# the message names where the collection opened (issue #9), the location is
# where the parser noticed.
case("unclosed-brace-then-next-key", f"workers: {{count: 2\napp{M}: builtin\n", "workers")
case("unclosed-bracket-then-next-key", f'listen: [{{name: a, address: "127.0.0.1:1"}}\nworkers{M}:\n  count: 2\n', "listen[0]")
case("unclosed-nested-brace-in-flow-list", f"workers:\n  app: exec\n  command: [node, {M}{{a: b\n  count: 2\n", "workers.command[1]")

category("type")
# A command written as one string, as a shell would take it: the message
# shows it as a list.
case("command-string-with-arguments", f"workers:\n  app: exec\n  command: {M}node server.js --port 3000\n", "workers.command")
case("command-quoted-string", f'workers:\n  app: exec\n  command: {M}"gunicorn app:app"\n', "workers.command")
# workers.adopt (docs/adopt.md): exec workers only, a TCP listener of
# `listen` by name, a port 1..65535 or an address of one.
UNIX_LISTENER = 'listen:\n  - name: sock\n    address: "unix:/run/hawkey-corpus.sock"\n'
case("adopt-with-builtin", f"workers:\n  app: builtin\n  adopt: {M}{{http: 3000}}\n", "workers.adopt")
case("adopt-with-default-app", f"workers:\n  adopt:\n    {M}http: 3000\n", "workers.adopt")
case("adopt-unknown-listener", listener(exec_workers(f"  adopt:\n    {M}http: 3000\n")), "workers.adopt.http")
case("adopt-unknown-listener-default-listen", exec_workers(f"  adopt: {{{M}web: 3000}}\n"), "workers.adopt.web")
case("adopt-unix-listener", UNIX_LISTENER + exec_workers(f"  adopt: {{{M}sock: 3000}}\n"), "workers.adopt.sock")
case("adopt-port-zero", listener(exec_workers(f"  adopt: {{web: {M}0}}\n")), "workers.adopt.web")
case("adopt-port-65536", listener(exec_workers(f"  adopt: {{web: {M}65536}}\n")), "workers.adopt.web")
case("adopt-port-negative", listener(exec_workers(f"  adopt:\n    web: {M}-3000\n")), "workers.adopt.web")
case("adopt-star-port-zero", listener(exec_workers(f"  adopt: {{web: {M}'*:0'}}\n")), "workers.adopt.web")
case("adopt-address-port-zero", listener(exec_workers(f"  adopt: {{web: {M}'0.0.0.0:0'}}\n")), "workers.adopt.web")
case("adopt-host-name", listener(exec_workers(f"  adopt: {{web: {M}'localhost:3000'}}\n")), "workers.adopt.web")
case("adopt-bare-v6", listener(exec_workers(f"  adopt: {{web: {M}'::1:3000'}}\n")), "workers.adopt.web")
case("adopt-list-value", listener(exec_workers(f"  adopt: {{web: {M}[3000]}}\n")), "workers.adopt.web")
case("adopt-not-a-mapping", listener(exec_workers(f"  adopt: {M}[web]\n")), "workers.adopt")
case(
    "adopt-same-address-twice",
    'listen:\n  - name: web\n    address: "127.0.0.1:8080"\n  - name: api\n    address: "127.0.0.1:8081"\n'
    + exec_workers(f"  adopt:\n    web: 3000\n    api: {M}'*:3000'\n"),
    "workers.adopt.api",
)
# workers.preload: false injects nothing, so nothing could adopt.
case("preload-false-with-adopt", listener(exec_workers(f"  preload: {M}false\n  adopt: {{web: 3000}}\n")), "workers.preload")
case("preload-not-a-bool", exec_workers(f"  preload: {M}maybe\n"), "workers.preload")

# workers.recycle: {memory: SIZE, age: DURATION, jitter: PERCENT}. Sizes take
# KiB/MiB/GiB (or K/M/G), powers of 1024; kB/MB/GB are refused as ambiguous.
category("recycle")
RECYCLE = "workers:\n  recycle: "
for name, value in [
    ("memory-no-unit", "512"),
    ("memory-decimal-unit", "512MB"),
    ("memory-lowercase-kb", "64kB"),
    ("memory-bytes-unit", "1048576B"),
    ("memory-terabytes", "1TiB"),
    ("memory-fraction", "1.5GiB"),
    ("memory-negative", "-512MiB"),
    ("memory-too-large", "1025GiB"),
    ("memory-overflow", "99999999999999999999MiB"),
    ("memory-zero", "0MiB"),
    ("memory-below-1mib", "512KiB"),
    ("memory-space-before-unit", '"512 MiB"'),
    ("memory-empty", '""'),
    ("memory-list", "[512MiB]"),
]:
    case(name, f"{RECYCLE}{{memory: {M}{value}}}\n", "workers.recycle.memory")
for name, value in [
    ("age-no-unit", "24"),
    ("age-days", "1d"),
    ("age-zero", "0s"),
    ("age-below-1s", "500ms"),
    ("age-negative", "-1h"),
    ("age-too-large", "25h"),
]:
    case(name, f"{RECYCLE}{{age: {M}{value}}}\n", "workers.recycle.age")
for name, value in [
    ("jitter-above-50", "60%"),
    ("jitter-100", "100%"),
    ("jitter-no-sign", "10"),
    ("jitter-negative", "-5%"),
    ("jitter-fraction", "2.5%"),
    ("jitter-word", "some"),
]:
    case(name, f"{RECYCLE}{{age: 1h, jitter: {M}{value}}}\n", "workers.recycle.jitter")
case("jitter-without-age", f"{RECYCLE}{{memory: 1GiB, jitter: {M}5%}}\n", "workers.recycle.jitter")
case("recycle-empty", f"{RECYCLE}{M}{{}}\n", "workers.recycle")
case("recycle-jitter-only-block", f"workers:\n  recycle:\n    jitter: {M}10%\n", "workers.recycle.jitter")
case("recycle-unknown-key-requests", f"{RECYCLE}{{memory: 1GiB, {M}max_requests: 1000}}\n", "workers.recycle.max_requests")
case("recycle-unknown-key-block", f"workers:\n  recycle:\n    age: 1h\n    {M}rss: 1GiB\n", "workers.recycle.rss")
case("recycle-misspelt-memory", f"{RECYCLE}{{{M}mem: 1GiB}}\n", "workers.recycle.mem")
case("recycle-a-size", f"{RECYCLE}{M}512MiB\n", "workers.recycle")
case("recycle-a-list", f"{RECYCLE}{M}[512MiB, 24h]\n", "workers.recycle")
case("recycle-at-top-level", f"{M}recycle: {{memory: 1GiB}}\n", "recycle")
case("recycle-under-reload", f"reload:\n  {M}recycle: {{memory: 1GiB}}\n", "reload.recycle")
case("recycle-duplicate-memory", f"workers:\n  recycle:\n    memory: 1GiB\n    {M}memory: 2GiB\n", "workers.recycle")

# ---------------------------------------------------------------------------


def build():
    """[(file name, bytes, (line, col) or None, case)]."""
    out = []
    for n, c in enumerate(CASES, 1):
        fname = f"{n:03d}-{c['category']}-{c['name']}"
        text = c["text"]
        if isinstance(text, bytes):
            data, at = text, c["at"]
        else:
            clean, at = locate(text)
            if c["at"] is not None:
                at = c["at"]
            data = clean.encode("utf-8", "surrogateescape")
        if c["located"]:
            assert at is not None, f"{fname}: no marker"
        out.append((fname, data, at, c))
    return out


def binary():
    return os.environ.get("HAWKEY_BIN", os.path.join(REPO, "target", "debug", "hawkey"))


def run_check(fname):
    rel = f"{REL}/{fname}.yaml"
    env = {k: v for k, v in os.environ.items() if k not in ("HAWKEY_CONFIG", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID")}
    p = subprocess.run([binary(), "check", "-c", rel], cwd=REPO, env=env, capture_output=True)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def intended_prefix(fname, at, path):
    rel = f"{REL}/{fname}.yaml"
    loc = f"{rel}:{at[0]}:{at[1]}: "
    return loc + (f"{path}: " if path else "")


def main(argv):
    mode = argv[1] if len(argv) > 1 else ""
    cases = build()
    if mode not in ("", "--bless", "--review"):
        print(__doc__)
        return 2
    if mode != "--review":
        os.makedirs(INVALID, exist_ok=True)
        wanted = set()
        for fname, data, _, _ in cases:
            wanted.add(fname + ".yaml")
            wanted.add(fname + ".expected")
            path = os.path.join(INVALID, fname + ".yaml")
            old = open(path, "rb").read() if os.path.exists(path) else None
            if old != data:
                with open(path, "wb") as f:
                    f.write(data)
        for name in sorted(os.listdir(INVALID)):
            if name not in wanted:
                os.remove(os.path.join(INVALID, name))
    if mode == "":
        print(f"{len(cases)} cases written to {INVALID}")
        return 0
    problems = 0
    for fname, data, at, c in cases:
        code, stdout, stderr = run_check(fname)
        one_line = stderr.count("\n") == 1 and stderr.endswith("\n")
        rel = f"{REL}/{fname}.yaml"
        if not c["located"]:
            expected = f"hawkey: error: {rel}: file is larger than 1048576 bytes"
            if stderr != expected + "\n" or code != 78:
                problems += 1
                expected = None
                print(f"MISMATCH {fname}: exit {code}: {stderr.strip()[:300]}")
        else:
            prefix = intended_prefix(fname, at, c["path"])
            expected = stderr.rstrip("\n")
            if code != 78 or not one_line or not stderr.startswith(prefix):
                problems += 1
                expected = None
                print(f"MISMATCH {fname}: exit {code}\n    want {prefix}...\n    got  {stderr.strip()[:300]}")
        if mode == "--bless" and expected is not None:
            with open(os.path.join(INVALID, fname + ".expected"), "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(expected + "\n")
    print(f"{len(cases)} cases, {problems} not as the case says", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
