#!/usr/bin/env bash
# README's test command (`make test`): installs what the tests need, builds the tools and images,
# then runs the whole suite in a private loopback-only network namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-system.sh
bash scripts/setup-python.sh
bash scripts/tools.sh ensure all
bash scripts/docker.sh build
exec bash scripts/in-netns.sh bash scripts/test-inner.sh "$@"
