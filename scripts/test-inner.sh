#!/usr/bin/env bash
# Runs inside the test network namespace: starts the control plane and the container engine
# for this run, runs pytest, and stops both by PID whatever the outcome.
set -uo pipefail
cd "$(dirname "$0")/.."
export SELDON_RIVER_RUN_DIR=${SELDON_RIVER_RUN_DIR:-$(mktemp -d /tmp/seldon-river-test.XXXXXX)}
cleanup() {
  bash scripts/docker.sh down || true
  bash scripts/cluster.sh down || true
}
trap cleanup EXIT
bash scripts/cluster.sh up || exit 1
bash scripts/docker.sh up || exit 1
# shellcheck disable=SC1091
source "$SELDON_RIVER_RUN_DIR/env"
.venv/bin/python -m pytest "$@"
