#!/usr/bin/env bash
# Creates the two Python environments, each installed in ONE resolve: installing anything
# afterwards (e.g. kubernetes) can pull urllib3 2.x and break seldon-core's pins.
#   .venv          Python 3.11, .[seldon-core,dev,demo]: river 0.23, Seldon's stock wrapper and
#                  SeldonClient (the suite's main environment and its client side).
#   .venv-current  Python 3.13, .[dev] without seldon-core: today's river and numpy 2, served by
#                  the project's own server.
# Rerunning it only installs what changed. `setup-python.sh main` or `current` makes one of them.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}

# The first of the named interpreter on PATH that runs, then pyenv's versions directory.
find_python() {
  local name=$1 candidate
  for candidate in "$(command -v "$name" || true)" \
      "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"${name#python}"*/bin/"$name"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c "import sys" >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

make_venv() {
  local dir=$1 name=$2 spec=$3 python
  if [ ! -x "$dir/bin/python" ]; then
    python=$(find_python "$name") || {
      echo "setup-python.sh: $name not found (looked on PATH and in pyenv's versions); install it to create $dir" >&2
      exit 1
    }
    "$python" -m venv "$dir"
  fi
  "$dir/bin/pip" install -q --upgrade "pip>=23" >/dev/null
  "$dir/bin/pip" install -q -e "$spec"
  "$dir/bin/pip" check
}

case $which in
  all|main) make_venv .venv "${PYTHON:-python3.11}" ".[seldon-core,dev,demo]" ;;&
  all|current) make_venv .venv-current "${PYTHON_CURRENT:-python3.13}" ".[dev]" ;;
  main) ;;
  *) echo "usage: setup-python.sh [all|main|current]" >&2; exit 2 ;;
esac
