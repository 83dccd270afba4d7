#!/usr/bin/env bash
# The main job: sets up a fresh machine (scripts/setup.sh), then runs the local testnet demo: anvil with the
# contracts, a coordinator and 4 nodes (each `zoo-node join`: a supervisor and its worker) that register on chain,
# train zen-3-tiny-moe for 60 steps on the CPU, get their epoch settled and claim their rewards; then a summary.
# Extra arguments go to `zoo-node testnet up` (e.g. --chaos, --nodes 3, --steps 30, --json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
exec zoo-node testnet up --nodes 4 --steps 60 "$@"
