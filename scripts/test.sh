#!/usr/bin/env bash
# The test command: sets up a fresh machine (scripts/setup.sh), then runs the whole suite, which includes ruff's lint
# and format check (tests/foundation/test_lint.py). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
exec python -m pytest "$@"
