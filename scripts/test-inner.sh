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
rc=$?
# The same code on Python 3.13, river 0.26 and numpy 2 without seldon-core (.venv-current): the
# modules that need no seldon-core, a few minutes; only for the whole run (no pytest arguments).
if [ $# -eq 0 ]; then
  SELDON_RIVER_FUZZ_EXAMPLES=${SELDON_RIVER_FUZZ_EXAMPLES_CURRENT:-15} .venv-current/bin/python -m pytest -q \
    tests/test_doctests.py tests/test_artifact.py tests/test_export_checks.py tests/test_kept_checkpoints.py \
    tests/test_trust.py tests/test_pull.py tests/test_cli_surface.py tests/test_server.py \
    tests/test_redis_password.py tests/test_shared_state.py tests/test_fuzz.py tests/test_linear_table.py tests/test_log_marks.py || rc=1
fi
exit $rc
