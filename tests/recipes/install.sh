#!/usr/bin/env bash
# What the recipes (tests/recipes/run.py) and the PM2 benchmark
# (bench/hawkey_bench/pm2.py) run, installed from the registries, pinned,
# idempotently: a second run with everything in place does nothing.
#   target/recipes-venv  PyPI: gunicorn, uvicorn, hypercorn, waitress, flask
#                        (tests/recipes/requirements.txt)
#   target/recipes-node  npm:  express, fastify, pm2 (tests/recipes/node/)
#   Debian:              puma (bookworm: 5.6.5), ruby-rack, wrk
# Run from anywhere; paths are relative to the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { echo "tests/recipes/install.sh: $*" >&2; }

# Debian packages: puma (bookworm: 5.6.5), the rack it runs and the sd_notify
# gem its systemd integration needs (READY=1), wrk.
# npm only where node came without it (Debian's nodejs; a nodejs package
# that bundles npm conflicts with Debian's npm).
debs=(puma ruby-rack ruby-sd-notify wrk python3-venv nodejs)
missing=()
for p in "${debs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
command -v npm >/dev/null || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    # Other apt users on the machine: wait for their lock rather than fail.
    apt-get update -qq -o DPkg::Lock::Timeout=600
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"
fi

# PyPI: requirements.txt pins every package, dependencies included (pip
# freeze of the venv the recipes were written against). The stamp is the
# file's hash: change it and the venv is made anew.
venv=target/recipes-venv
req=tests/recipes/requirements.txt
stamp_py=$(sha256sum "$req" | cut -d' ' -f1)
if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp_py" ]; then
    say "installing $req into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$req"
    echo "$stamp_py" >"$venv/.stamp"
fi

# npm: tests/recipes/node/package.json (exact versions) and its
# package-lock.json (every dependency), installed with `npm ci` into a
# prefix of its own. Same stamp rule.
node=target/recipes-node
stamp_js=$(cat tests/recipes/node/package.json tests/recipes/node/package-lock.json | sha256sum | cut -d' ' -f1)
if [ "$(cat "$node/.stamp" 2>/dev/null)" != "$stamp_js" ]; then
    say "installing tests/recipes/node/package-lock.json into $node"
    rm -rf "$node"
    mkdir -p "$node"
    cp tests/recipes/node/package.json tests/recipes/node/package-lock.json "$node/"
    (cd "$node" && npm ci --silent --no-audit --no-fund)
    echo "$stamp_js" >"$node/.stamp"
fi
say "ready: $venv, $node, $(puma --version 2>/dev/null || echo 'puma ?'), $(command -v wrk)"
