#!/usr/bin/env bash
# Creates .venv and installs the package with every extra in ONE resolve: installing anything
# afterwards (e.g. kubernetes) can pull urllib3 2.x and break seldon-core's pins.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade "pip>=23" >/dev/null
.venv/bin/pip install -q -e ".[dev,demo]"
.venv/bin/pip check
