#!/usr/bin/env bash
# What the recipes (tests/recipes/run.py) and the PM2 benchmark
# (bench/hawkey_bench/pm2.py) run, installed from the registries, pinned,
# idempotently: a second run with everything in place does nothing.
#   target/recipes-venv  PyPI: gunicorn, uvicorn, hypercorn, waitress, flask
#   target/recipes-node  npm:  express, fastify, pm2
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

# PyPI, pinned. The stamp holds the pins: change a pin and the venv is redone.
venv=target/recipes-venv
pins_py="gunicorn==23.0.0 uvicorn==0.30.6 hypercorn==0.17.3 waitress==3.0.0 flask==3.0.3"
if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins_py" ]; then
    say "installing $pins_py into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q --disable-pip-version-check $pins_py
    echo "$pins_py" >"$venv/.pins"
fi

# npm, pinned, exact versions (no ^ ranges), in a prefix of its own.
node=target/recipes-node
pins_js="express@4.21.1 fastify@4.28.1 pm2@5.4.2"
if [ "$(cat "$node/.pins" 2>/dev/null)" != "$pins_js" ]; then
    say "installing $pins_js into $node"
    rm -rf "$node"
    mkdir -p "$node"
    echo '{"name":"hawkey-recipes","private":true}' >"$node/package.json"
    # shellcheck disable=SC2086
    (cd "$node" && npm install --silent --no-audit --no-fund --save-exact $pins_js)
    echo "$pins_js" >"$node/.pins"
fi
say "ready: $venv, $node, $(puma --version 2>/dev/null || echo 'puma ?'), $(command -v wrk)"
