#!/usr/bin/env bash
# The test command: sets up a fresh machine (scripts/setup.sh), then runs the whole suite, which includes ruff's lint
# and format check (tests/foundation/test_lint.py). hivemind and py-libp2p cannot share an interpreter, so the suite
# runs as two pytest sessions (see conftest.py): everything but the data plane, then the data plane.
# Extra arguments go to both pytest sessions.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
status=0
python -m pytest --plane control "$@" || status=$?
python -m pytest --plane data "$@" || status=$?
# pytest exits 5 when a selection has no test: that is a failure here too.
exit "$status"
