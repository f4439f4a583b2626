#!/usr/bin/env bash
# Builds and serves seldon-river's container images with a private Docker engine.
#
#   bash scripts/docker.sh build  starts a build engine, makes the local base image (once),
#                                 builds the component image, the s2i builder image and the
#                                 s2i-built model image, then stops that engine
#   bash scripts/docker.sh s2i    the same without the component image: builder + s2i build
#   bash scripts/docker.sh up     (inside the loopback-only test network namespace) starts an
#                                 engine on the same data root and appends DOCKER_HOST and the
#                                 image names to $SELDON_RIVER_RUN_DIR/env
#   bash scripts/docker.sh down   stops the engine `up` started, by its PID
#   bash scripts/docker.sh names  prints the image names (NAME=image lines); needs no engine
#
# The engine is this script's own dockerd: data root ${SELDON_RIVER_CACHE}/docker/data (kept, so
# images survive between runs), its own socket and exec root, no default bridge and no iptables
# or IP-forwarding changes. Containers run with `--network host`, which in the test namespace is
# loopback only. Builds use the legacy builder (DOCKER_BUILDKIT=0) with `--network host`.
#
# Environment:
#   SELDON_RIVER_CACHE     cache root (default ~/.cache/seldon-river)
#   BASE_IMAGE             "local" (default): a Debian bookworm image made here with
#                          `debootstrap --variant=minbase` and `docker import`, because no image
#                          registry needs to be reachable; or a reference such as python:3.11-slim
#   DEBIAN_MIRROR          mirror debootstrap uses (default: the machine's own apt source for
#                          bookworm, from /etc/apt/sources.list and sources.list.d, see
#                          scripts/apt-mirror.sh)
#   SELDON_RIVER_BUILD_CA  CA bundle pip trusts while building (default: $PIP_CERT, else
#                          /etc/ssl/certs/ca-certificates.crt) - needed behind TLS interception
#   SELDON_RIVER_PIP_CONF  pip.conf used while building (default: $PIP_CONFIG_FILE, else
#                          /etc/pip.conf when present)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST, PIP_DEFAULT_TIMEOUT: passed to builds.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

CACHE=${SELDON_RIVER_CACHE:-$HOME/.cache/seldon-river}
DOCKER_ROOT=$CACHE/docker
DATA_ROOT=$DOCKER_ROOT/data
# The data root serves one engine at a time; this file names the engine currently on it.
ACTIVE=$DOCKER_ROOT/engine.active

VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
IMAGE=seldon-river:$VERSION
BUILDER_IMAGE=seldon-river-s2i-builder:$VERSION
S2I_IMAGE=seldon-river-s2i-model:$VERSION
LOCAL_BASE_IMAGE=seldon-river-base:bookworm
BASE_IMAGE=${BASE_IMAGE:-local}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-}

die() { echo "docker.sh: $*" >&2; exit 1; }
log() { echo "docker.sh: $*" >&2; }

need() {
  command -v "$1" >/dev/null || die "$1 not found on PATH: $2"
}

# ---------------------------------------------------------------------------------------------
# The engine

is_dockerd() { # PID: true when that process runs and is a dockerd
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q '^[^ ]*dockerd '
}

engine_start() { # DIR: socket, pidfile, exec root and log go there
  local dir=$1 pid other
  need dockerd "install docker.io (scripts/setup-system.sh)"
  need docker "install docker.io (scripts/setup-system.sh)"
  mkdir -p "$dir" "$DATA_ROOT"
  if [ -s "$ACTIVE" ]; then
    other=$(cat "$ACTIVE")
    if is_dockerd "${other%% *}"; then
      die "an engine (pid ${other%% *}, ${other#* }) already runs on $DATA_ROOT: stop it first (scripts/docker.sh down)"
    fi
  fi
  # unix sockets take at most 107 bytes; containerd's lives two levels under the exec root.
  [ ${#dir} -le 70 ] || die "engine directory $dir is too long for unix sockets (${#dir} > 70 characters): use a shorter SELDON_RIVER_CACHE or SELDON_RIVER_RUN_DIR"
  # An empty config file, so that a machine-wide /etc/docker/daemon.json cannot change this engine.
  printf '{}\n' >"$dir/daemon.json"
  rm -f "$dir/docker.sock" "$dir/dockerd.pid"
  dockerd \
    --config-file "$dir/daemon.json" \
    --data-root "$DATA_ROOT" \
    --exec-root "$dir/exec" \
    --pidfile "$dir/dockerd.pid" \
    --host "unix://$dir/docker.sock" \
    --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    </dev/null >"$dir/dockerd.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/engine.pid"
  echo "$pid $dir" >"$ACTIVE"
  export DOCKER_HOST=unix://$dir/docker.sock
  for _ in $(seq 1 240); do
    if docker version >/dev/null 2>&1; then
      log "engine up (pid $pid, $DOCKER_HOST)"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$dir/dockerd.log" >&2 || true
      rm -f "$ACTIVE"
      die "dockerd exited before answering on $DOCKER_HOST (log: $dir/dockerd.log)"
    fi
    sleep 0.25
  done
  engine_stop "$dir"
  die "dockerd did not answer on $DOCKER_HOST within 60 s (log: $dir/dockerd.log)"
}

engine_stop() { # DIR
  local dir=$1 pid
  [ -s "$dir/engine.pid" ] || { log "no engine recorded in $dir"; return 0; }
  pid=$(cat "$dir/engine.pid")
  # A recorded PID may have been reused by another process since: signal only a dockerd.
  if is_dockerd "$pid"; then
    kill -TERM "$pid"
    for _ in $(seq 1 120); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "dockerd (pid $pid) still running after 30 s: sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # dockerd bind-mounts its network namespace under the exec root and leaves the mount behind.
  { grep -F " $dir/exec/" /proc/mounts || true; } | cut -d' ' -f2 | sort -r | while read -r mnt; do
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || log "could not unmount $mnt"
  done
  rm -f "$dir/engine.pid"
  if [ -s "$ACTIVE" ] && [ "$(cut -d' ' -f1 "$ACTIVE")" = "$pid" ]; then rm -f "$ACTIVE"; fi
  log "engine stopped (pid $pid)"
}

# ---------------------------------------------------------------------------------------------
# Build inputs

# Collects what builds need from this machine (CA bundle, pip.conf) into a folder; prints it.
build_env_dir() {
  local dir ca conf
  dir=$(mktemp -d "${TMPDIR:-/tmp}/seldon-river-build-env.XXXXXX")
  ca=${SELDON_RIVER_BUILD_CA:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}
  conf=${SELDON_RIVER_PIP_CONF:-${PIP_CONFIG_FILE:-/etc/pip.conf}}
  if [ -s "$ca" ]; then cp "$ca" "$dir/ca-certificates.crt"; fi
  if [ -s "$conf" ]; then cp "$conf" "$dir/pip.conf"; fi
  chmod 0755 "$dir"
  chmod 0644 "$dir"/* 2>/dev/null || true
  echo "$dir"
}

# Writes the build context as a tar stream: the files the Dockerfiles copy (the same allow-list
# as .dockerignore) plus this machine's build settings as docker/build-env/, which therefore
# never have to be written into the work tree.
build_context() { # BUILD_ENV_DIR
  local env_dir=$1 files=(pyproject.toml README.md .dockerignore model_wrappers docker)
  local f
  for f in LICENSE*; do [ -e "$f" ] && files+=("$f"); done
  tar -c --exclude=__pycache__ --exclude='*.pyc' --exclude='docker/build-env/*.crt' \
    --exclude='docker/build-env/pip.conf' -f - "${files[@]}" \
    -C "$env_dir" --transform 's,^\./,docker/build-env/,' .
}

build_args() {
  local v
  printf -- '--build-arg\nBASE_IMAGE=%s\n' "$(base_image)"
  for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT; do
    if [ -n "${!v:-}" ]; then printf -- '--build-arg\n%s=%s\n' "$v" "${!v}"; fi
  done
}

base_image() {
  if [ "$BASE_IMAGE" = local ]; then echo "$LOCAL_BASE_IMAGE"; else echo "$BASE_IMAGE"; fi
}

# The local base: Debian bookworm minbase with python3 (3.11), venv and CA certificates, made
# with debootstrap from the Debian mirror and imported; skipped when the image already exists.
ensure_base() {
  [ "$BASE_IMAGE" = local ] || return 0
  if docker image inspect "$LOCAL_BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $LOCAL_BASE_IMAGE present"
    return 0
  fi
  need debootstrap "install debootstrap (scripts/setup-system.sh)"
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root to make $LOCAL_BASE_IMAGE (or set BASE_IMAGE=python:3.11-slim where a registry is reachable)"
  [ -n "$DEBIAN_MIRROR" ] || DEBIAN_MIRROR=$(bash scripts/apt-mirror.sh bookworm)
  [ -n "$DEBIAN_MIRROR" ] || die "no apt source of this machine serves Debian bookworm: set DEBIAN_MIRROR to a Debian mirror"
  local rootfs start=$SECONDS
  rootfs=$(mktemp -d "$DOCKER_ROOT/rootfs.XXXXXX")
  log "making $LOCAL_BASE_IMAGE with debootstrap from $DEBIAN_MIRROR"
  if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" "$DEBIAN_MIRROR" >"$DOCKER_ROOT/debootstrap.log" 2>&1; then
    tail -n 30 "$DOCKER_ROOT/debootstrap.log" >&2
    rm -rf "$rootfs"
    die "debootstrap failed (log: $DOCKER_ROOT/debootstrap.log)"
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . \
    | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase bookworm + python3 python3-venv ca-certificates" \
        - "$LOCAL_BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  log "made $LOCAL_BASE_IMAGE in $((SECONDS - start)) s"
}

docker_build() { # DOCKERFILE TAG BUILD_ENV_DIR
  local dockerfile=$1 tag=$2 env_dir=$3 start=$SECONDS args=()
  mapfile -t args < <(build_args)
  log "building $tag from $dockerfile (base $(base_image))"
  build_context "$env_dir" | DOCKER_BUILDKIT=0 docker build --network host \
    -f "$dockerfile" "${args[@]}" -t "$tag" - >"$DOCKER_ROOT/build-${tag%%:*}.log" 2>&1 \
    || { tail -n 40 "$DOCKER_ROOT/build-${tag%%:*}.log" >&2; die "building $tag failed (log: $DOCKER_ROOT/build-${tag%%:*}.log)"; }
  log "built $tag in $((SECONDS - start)) s"
}

s2i_build() { # BUILD_ENV_DIR
  local env_dir=$1 s2i start=$SECONDS
  bash scripts/tools.sh ensure s2i
  s2i=$(bash scripts/tools.sh path s2i)
  log "s2i build of s2i/model with $BUILDER_IMAGE -> $S2I_IMAGE"
  # The build settings are mounted for the assemble step only: a mount is not committed.
  "$s2i" build "$REPO/s2i/model" "$BUILDER_IMAGE" "$S2I_IMAGE" \
    --network host --pull-policy never --incremental=false \
    -v "$env_dir:/run/secrets/build-env" >"$DOCKER_ROOT/build-s2i-model.log" 2>&1 \
    || { tail -n 40 "$DOCKER_ROOT/build-s2i-model.log" >&2; die "s2i build failed (log: $DOCKER_ROOT/build-s2i-model.log)"; }
  log "built $S2I_IMAGE with s2i in $((SECONDS - start)) s"
}

# ---------------------------------------------------------------------------------------------
# Commands

cmd_build() { # WHAT: all | s2i
  local what=$1 dir env_dir
  dir=$DOCKER_ROOT/build-engine
  mkdir -p "$DOCKER_ROOT"
  env_dir=$(build_env_dir)
  # shellcheck disable=SC2064
  trap "engine_stop '$dir'; rm -rf '$env_dir'" EXIT
  engine_start "$dir"
  ensure_base
  if [ "$what" = all ]; then
    docker_build docker/Dockerfile "$IMAGE" "$env_dir"
  fi
  docker_build docker/builder/Dockerfile "$BUILDER_IMAGE" "$env_dir"
  s2i_build "$env_dir"
  # Untagged images are also the build stages' cache: only those unused for ten days go.
  docker image prune -f --filter until=240h >/dev/null || true
}

run_dir() {
  [ -n "${SELDON_RIVER_RUN_DIR:-}" ] || die "SELDON_RIVER_RUN_DIR is not set: 'up' and 'down' run inside scripts/test-inner.sh, which sets it"
  echo "$SELDON_RIVER_RUN_DIR/docker"
}

cmd_up() {
  local dir img
  dir=$(run_dir)
  engine_start "$dir"
  for img in "$IMAGE" "$S2I_IMAGE"; do
    if ! docker image inspect "$img" >/dev/null 2>&1; then
      engine_stop "$dir"
      die "image $img is missing from $DATA_ROOT: run 'bash scripts/docker.sh build' first"
    fi
  done
  # Containers a killed earlier run left behind would hold ports and names.
  docker container prune -f >/dev/null || true
  {
    echo "export DOCKER_HOST=unix://$dir/docker.sock"
    echo "export SELDON_RIVER_IMAGE=$IMAGE"
    echo "export SELDON_RIVER_S2I_IMAGE=$S2I_IMAGE"
    echo "export SELDON_RIVER_S2I_BUILDER_IMAGE=$BUILDER_IMAGE"
  } >>"$SELDON_RIVER_RUN_DIR/env"
}

cmd_down() {
  local dir
  dir=$(run_dir)
  engine_stop "$dir"
}

case "${1:-}" in
  build) cmd_build all ;;
  s2i) cmd_build s2i ;;
  up) cmd_up ;;
  down) cmd_down ;;
  names)
    echo "IMAGE=$IMAGE"
    echo "S2I_IMAGE=$S2I_IMAGE"
    echo "BUILDER_IMAGE=$BUILDER_IMAGE"
    echo "BASE_IMAGE=$(base_image)"
    ;;
  *) die "usage: docker.sh build|s2i|up|down|names (got '${1:-}')" ;;
esac
