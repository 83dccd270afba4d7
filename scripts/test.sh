#!/usr/bin/env bash
# The test command: sets up a fresh machine (scripts/setup.sh), then runs lint, format check and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
echo "test: ruff check"
ruff check .
echo "test: ruff format --check"
ruff format --check .
echo "test: pytest"
exec python -m pytest "$@"
