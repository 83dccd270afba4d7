#!/usr/bin/env bash
# Installs everything zoo-node needs for development, tests and the local testnet, into ./.venv and ./node_modules.
# Idempotent: a second run only checks. Needs Python 3.11+ and Node.js/npm on PATH (Debian: python3-venv, nodejs, npm).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
# systemd-analyze checks the units in systemd/ (tests/operations); Debian's systemd package carries it.
if ! command -v systemd-analyze >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing systemd (for systemd-analyze)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=".venv/.zoo-node-installed"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing Python packages (pinned by constraints.txt)"
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet -c constraints.txt -e '.[dev]'
    echo "$want" > "$stamp"
fi
if [ ! -x node_modules/.bin/anvil ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "setup: installing npm tools (anvil, solc, OpenZeppelin) from package-lock.json"
    npm ci --no-audit --no-fund --loglevel=error
fi
