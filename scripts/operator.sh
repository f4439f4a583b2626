#!/usr/bin/env bash
# Installs Seldon Core v1.17.1's operator (its own SeldonDeployment controller, prebuilt to run
# outside a cluster; ../shared/tools/seldon-operator/README.md) into the test API server, the way
# an operator install leaves a cluster: namespace seldon-system with the seldon-config ConfigMap,
# whose predictor_servers gets the RIVER_SERVER entry README asks users to register.
#
#   bash scripts/operator.sh install   (run by `cluster.sh up`, with KUBECONFIG set) copies the
#                                      manager into the run dir and appends to $SELDON_RIVER_RUN_DIR/env:
#     SELDON_RIVER_OPERATOR            the manager binary (executable copy)
#     SELDON_RIVER_OPERATOR_ENV        its environment (operator.env: POD_NAMESPACE=seldon-system, ...)
#     SELDON_RIVER_OPERATOR_NAMESPACE  where seldon-config lives (seldon-system)
#
#   bash scripts/operator.sh stop      (run by `cluster.sh down`) ends any manager a test left
#                                      running, by the PID files the tests write beside it
#
# The manager itself is started by the tests that use it (tests/cluster/test_operator.py), one per
# test namespace (`manager --namespace NS`), so that it reconciles only what those tests create.
# SELDON_OPERATOR_DIR overrides where the prebuilt operator is (default ../shared/tools/seldon-operator).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=${SELDON_OPERATOR_DIR:-$REPO/../shared/tools/seldon-operator}
: "${SELDON_RIVER_RUN_DIR:?set SELDON_RIVER_RUN_DIR to a directory for this run}"
RUN=$SELDON_RIVER_RUN_DIR/operator
NAMESPACE=seldon-system
PY=${SELDON_RIVER_VENV:-$REPO/.venv}/bin/python

die() { echo "operator.sh: $*" >&2; exit 1; }

install() {
  local f
  for f in manager operator.env seldon-config.yaml; do
    [ -f "$SRC/$f" ] || die "$SRC/$f not found (set SELDON_OPERATOR_DIR)"
  done
  [ -x "$PY" ] || die "$PY not found (bash scripts/setup-python.sh)"
  [ -n "${KUBECONFIG:-}" ] || die "set KUBECONFIG to the kubeconfig of the test API server"
  KUBECTL=$(bash "$REPO/scripts/tools.sh" path kubectl)
  mkdir -p "$RUN"
  # shared/ is read-only: run a copy.
  cp "$SRC/manager" "$RUN/manager"
  chmod +x "$RUN/manager"
  cp "$SRC/operator.env" "$RUN/operator.env"
  "$KUBECTL" create namespace "$NAMESPACE" >/dev/null
  # seldon-config as Seldon's chart renders it, plus the entry README tells users to add.
  "$PY" - "$SRC/seldon-config.yaml" "$REPO/charts/seldon-river" "$NAMESPACE" >"$RUN/seldon-config.yaml" <<'EOF'
import json, sys
from pathlib import Path

import yaml

source, chart, namespace = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
config = next(d for d in yaml.safe_load_all(source.read_text()) if d and d.get("kind") == "ConfigMap")
values = yaml.safe_load((chart / "values.yaml").read_text())
version = yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"]
servers = json.loads(config["data"]["predictor_servers"])
servers[values["modelServer"]["implementation"]] = {
    "protocols": {"seldon": {"image": values["image"]["repository"], "defaultImageVersion": str(version)}}
}
config["data"]["predictor_servers"] = json.dumps(servers, sort_keys=True)
config["metadata"]["namespace"] = namespace
print(yaml.safe_dump(config, sort_keys=False))
EOF
  "$KUBECTL" create -f "$RUN/seldon-config.yaml" >/dev/null
  {
    echo "export SELDON_RIVER_OPERATOR=$RUN/manager"
    echo "export SELDON_RIVER_OPERATOR_ENV=$RUN/operator.env"
    echo "export SELDON_RIVER_OPERATOR_NAMESPACE=$NAMESPACE"
  } >>"$SELDON_RIVER_RUN_DIR/env"
  echo "operator.sh: Seldon's operator installed (seldon-config in $NAMESPACE, manager $RUN/manager)" >&2
}

stop() {
  local f pid
  for f in "$RUN"/manager-*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

case "${1:-}" in
  install) install ;;
  stop) stop ;;
  *) die "usage: operator.sh install|stop" ;;
esac
