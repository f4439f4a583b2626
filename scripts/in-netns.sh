#!/usr/bin/env bash
# Runs a command in a private network namespace that has only a loopback interface.
# Seldon's wrapper binds 0.0.0.0 by design (a pod needs it); inside this namespace every
# listener the tests start is reachable on 127.0.0.1 and from nowhere else.
# The loopback interface also gets 192.0.2.1/32 (TEST-NET-1, documentation only, no route out):
# with 127.0.0.1 as the only IPv4 address, getaddrinfo's AI_ADDRCONFIG (which the librdkafka in
# Seldon's orchestrator uses) resolves no IPv4 address at all, not even 127.0.0.1.
set -euo pipefail
if [ "${SELDON_RIVER_IN_NETNS:-}" = 1 ]; then exec "$@"; fi
if [ "$(id -u)" -eq 0 ]; then
  exec unshare --net --fork -- env SELDON_RIVER_IN_NETNS=1 bash -c 'ip link set lo up && ip addr add 192.0.2.1/32 dev lo && exec "$@"' _ "$@"
fi
exec unshare --user --map-root-user --net --fork -- env SELDON_RIVER_IN_NETNS=1 bash -c 'ip link set lo up && ip addr add 192.0.2.1/32 dev lo && exec "$@"' _ "$@"
