#!/usr/bin/env bash
# The main job: sets up a fresh machine (scripts/setup.sh), then runs the local demo of the network on this machine.
# Extra arguments go to the demo command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
demo_home="$(mktemp -d -t zoo-node-demo.XXXXXX)"
trap 'rm -rf "$demo_home"' EXIT
printf 'demo-password\n' > "$demo_home/password"
echo "== zoo-node init: a node home with an encrypted operator key and two libp2p identities"
zoo-node init --home "$demo_home/node" --password-file "$demo_home/password"
echo "== zoo-node keys check"
zoo-node keys check --home "$demo_home/node" --password-file "$demo_home/password"
echo "== zoo-node config show"
zoo-node config show --home "$demo_home/node"
