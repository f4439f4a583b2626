#!/usr/bin/env bash
# A Kubernetes control plane reduced to what checks manifests: etcd and kube-apiserver on
# 127.0.0.1, with Seldon Core's SeldonDeployment CRD installed and Seldon's operator installed
# (scripts/operator.sh: its seldon-config, and its manager ready for the tests to start). Nothing
# runs pods here (no scheduler, no kubelet): objects are validated, stored and, where a test
# starts the operator, turned into Deployments and Services, never executed.
#
#   bash scripts/cluster.sh up     start, install the CRD, append exports to $SELDON_RIVER_RUN_DIR/env
#   bash scripts/cluster.sh down   stop what `up` started (by the PIDs it saved in the run dir)
#
# `up` also starts a second API server on the same etcd (its own key prefix) that has NO Seldon
# CRD, so that "Seldon Core is not installed" can be checked against a real server, and makes a
# client certificate for a user with read-only rights in one namespace, for RBAC denials.
#
# Exports written to the env file:
#   KUBECONFIG                         admin (system:masters) kubeconfig, contexts below
#     context seldon-river-admin       current context, full rights
#     context seldon-river-limited     user seldon-river-limited: may only get/list/watch
#                                      SeldonDeployments in namespace seldon-river-limited
#     context seldon-river-bare        admin on the API server without Seldon's CRD
#   SELDON_RIVER_KUBECTL, SELDON_RIVER_HELM   the pinned tools (scripts/tools.sh)
#   SELDON_CRD                         the CRD file that was installed
#   SELDON_RIVER_CLUSTER=1
#   SELDON_RIVER_LIMITED_CONTEXT, SELDON_RIVER_LIMITED_NAMESPACE, SELDON_RIVER_NO_CRD_CONTEXT
#                                      the context names above, and the limited user's namespace
#   SELDON_RIVER_OPERATOR, SELDON_RIVER_OPERATOR_ENV, SELDON_RIVER_OPERATOR_NAMESPACE
#                                      Seldon's operator (see scripts/operator.sh)
# Runs inside the loopback-only test namespace (scripts/in-netns.sh) or anywhere 127.0.0.1 is free.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${SELDON_RIVER_RUN_DIR:?set SELDON_RIVER_RUN_DIR to a directory for this run}"
RUN=$SELDON_RIVER_RUN_DIR/cluster
CRD=${SELDON_CRD:-$REPO/../shared/crds/seldondeployment-v1.17.1.yaml}
LIMITED_NS=seldon-river-limited

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*" >&2; }

free_ports() {
  # Asks the kernel for N distinct free ports on 127.0.0.1.
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

make_certs() {
  local d=$RUN/pki
  mkdir -p "$d"
  # ECDSA P-256 keys: generated instantly, accepted by kube-apiserver and every client used here.
  local key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  # shellcheck disable=SC2086
  openssl req -x509 $key -keyout "$d/ca.key" -out "$d/ca.crt" -days 3650 \
    -subj "/CN=seldon-river-test-ca" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  sign() { # sign NAME SUBJECT EXTENSIONS
    # shellcheck disable=SC2086
    openssl req -new $key -keyout "$d/$1.key" -out "$d/$1.csr" -subj "$2" 2>/dev/null
    printf '%b' "$3" >"$d/$1.ext"
    openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
      -days 3650 -extfile "$d/$1.ext" -out "$d/$1.crt" 2>/dev/null
  }
  sign apiserver "/CN=kube-apiserver" \
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
  local client="basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
  sign admin "/O=system:masters/CN=seldon-river-admin" "$client"
  sign limited "/CN=seldon-river-limited" "$client"
  # Service-account token signing key pair (kube-apiserver refuses to start without one).
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/sa.key" 2>/dev/null
  openssl pkey -in "$d/sa.key" -pubout -out "$d/sa.pub"
}

write_kubeconfig() { # write_kubeconfig API_PORT BARE_PORT
  local d=$RUN/pki
  cat >"$RUN/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: seldon-river
  cluster:
    server: https://127.0.0.1:$1
    certificate-authority: $d/ca.crt
- name: seldon-river-bare
  cluster:
    server: https://127.0.0.1:$2
    certificate-authority: $d/ca.crt
users:
- name: seldon-river-admin
  user:
    client-certificate: $d/admin.crt
    client-key: $d/admin.key
- name: seldon-river-limited
  user:
    client-certificate: $d/limited.crt
    client-key: $d/limited.key
contexts:
- name: seldon-river-admin
  context: {cluster: seldon-river, user: seldon-river-admin, namespace: default}
- name: seldon-river-limited
  context: {cluster: seldon-river, user: seldon-river-limited, namespace: $LIMITED_NS}
- name: seldon-river-bare
  context: {cluster: seldon-river-bare, user: seldon-river-admin, namespace: default}
current-context: seldon-river-admin
EOF
}

start_bg() { # start_bg NAME LOGFILE CMD...: starts CMD detached, records its PID
  local name=$1 logfile=$2
  shift 2
  setsid "$@" >"$logfile" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

start_apiserver() { # start_apiserver NAME PORT ETCD_URL ETCD_PREFIX
  # No controller-manager runs, so nothing would ever remove the pvc-protection finalizer
  # that StorageObjectInUseProtection adds: without that plugin a deleted PVC really goes.
  # The kubernetes Service's endpoints would be loopback addresses, which validation refuses:
  # no endpoint reconciler.
  local d=$RUN/pki
  start_bg "$1" "$RUN/$1.log" "$APISERVER" \
    --bind-address=127.0.0.1 --secure-port="$2" --advertise-address=127.0.0.1 \
    --etcd-servers="$3" --etcd-prefix="$4" \
    --cert-dir="$RUN/$1-certs" \
    --tls-cert-file="$d/apiserver.crt" --tls-private-key-file="$d/apiserver.key" \
    --client-ca-file="$d/ca.crt" \
    --authorization-mode=RBAC \
    --service-account-key-file="$d/sa.pub" --service-account-signing-key-file="$d/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range=10.0.0.0/24 \
    --endpoint-reconciler-type=none \
    --disable-admission-plugins=StorageObjectInUseProtection \
    --profiling=false
}

wait_ready() { # wait_ready NAME PORT: until /readyz answers ok, or the process died
  local d=$RUN/pki i
  for i in $(seq 1 600); do
    if curl -sf --max-time 2 --cacert "$d/ca.crt" --cert "$d/admin.crt" --key "$d/admin.key" \
        "https://127.0.0.1:$2/readyz" >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null || { tail -n 30 "$RUN/$1.log" >&2; die "$1 exited"; }
    sleep 0.2
  done
  tail -n 30 "$RUN/$1.log" >&2
  die "$1 not ready on 127.0.0.1:$2 after 120 s"
}

up() {
  [ -f "$CRD" ] || die "Seldon CRD not found at $CRD (set SELDON_CRD)"
  CRD=$(cd "$(dirname "$CRD")" && pwd)/$(basename "$CRD")
  command -v etcd >/dev/null || die "etcd not found (apt package etcd-server; scripts/setup-system.sh)"
  command -v openssl >/dev/null || die "openssl not found (scripts/setup-system.sh)"
  bash "$REPO/scripts/tools.sh" ensure kube-apiserver
  bash "$REPO/scripts/tools.sh" ensure kubectl
  APISERVER=$(bash "$REPO/scripts/tools.sh" path kube-apiserver)
  KUBECTL=$(bash "$REPO/scripts/tools.sh" path kubectl)
  HELM=$(bash "$REPO/scripts/tools.sh" path helm)
  [ -e "$RUN/etcd.pid" ] && die "$RUN already holds a cluster: run 'cluster.sh down' first"
  mkdir -p "$RUN"
  # Whatever makes `up` fail, leave nothing running behind.
  trap 'rc=$?; if [ "$rc" -ne 0 ]; then log "up failed; stopping what was started"; down; fi' EXIT
  local start=$SECONDS etcd_port peer_port api_port bare_port
  read -r etcd_port peer_port api_port bare_port <<<"$(free_ports 4)"
  make_certs

  # Test data only: fsync is not worth its cost here. (etcd 3.4 has no --unsafe-no-fsync.)
  start_bg etcd "$RUN/etcd.log" etcd --name seldon-river --data-dir "$RUN/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "seldon-river=http://127.0.0.1:$peer_port" --logger zap --log-level error
  local i
  for i in $(seq 1 100); do
    curl -sf --max-time 1 "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break
    kill -0 "$(cat "$RUN/etcd.pid")" 2>/dev/null || { tail -n 30 "$RUN/etcd.log" >&2; die "etcd exited"; }
    sleep 0.1
  done

  start_apiserver kube-apiserver "$api_port" "http://127.0.0.1:$etcd_port" /registry
  start_apiserver kube-apiserver-bare "$bare_port" "http://127.0.0.1:$etcd_port" /registry-bare
  write_kubeconfig "$api_port" "$bare_port"
  wait_ready kube-apiserver "$api_port"
  wait_ready kube-apiserver-bare "$bare_port"
  log "API servers ready after $((SECONDS - start)) s"

  export KUBECONFIG=$RUN/kubeconfig
  local k=("$KUBECTL" --context seldon-river-admin)
  # The CRD is 1.8 MB: client-side apply would exceed the 256 kB annotation limit.
  "${k[@]}" create -f "$CRD" >/dev/null
  # (kubectl wait fails outright while the new CRD has no status yet: poll instead.)
  local established=
  for i in $(seq 1 300); do
    established=$("${k[@]}" get crd seldondeployments.machinelearning.seldon.io \
      -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null || true)
    [ "$established" = True ] && break
    sleep 0.1
  done
  [ "$established" = True ] || die "the Seldon CRD was not Established within 30 s"
  "${k[@]}" create namespace "$LIMITED_NS" >/dev/null
  "${k[@]}" -n "$LIMITED_NS" create role seldondeployment-viewer \
    --verb=get,list,watch --resource=seldondeployments.machinelearning.seldon.io >/dev/null
  "${k[@]}" -n "$LIMITED_NS" create rolebinding seldon-river-limited-viewer \
    --role=seldondeployment-viewer --user=seldon-river-limited >/dev/null
  # Discovery must list the new kind before clients that look it up can use it.
  for i in $(seq 1 100); do
    "${k[@]}" get seldondeployments -A >/dev/null 2>&1 && break
    sleep 0.1
  done
  "${k[@]}" get seldondeployments -A >/dev/null 2>&1 || die "SeldonDeployments not served after installing $CRD"

  {
    echo "export KUBECONFIG=$RUN/kubeconfig"
    echo "export SELDON_RIVER_KUBECTL=$KUBECTL"
    echo "export SELDON_RIVER_HELM=$HELM"
    echo "export SELDON_CRD=$CRD"
    echo "export SELDON_RIVER_CLUSTER=1"
    echo "export SELDON_RIVER_LIMITED_CONTEXT=seldon-river-limited"
    echo "export SELDON_RIVER_LIMITED_NAMESPACE=$LIMITED_NS"
    echo "export SELDON_RIVER_NO_CRD_CONTEXT=seldon-river-bare"
  } >>"$SELDON_RIVER_RUN_DIR/env"
  bash "$REPO/scripts/operator.sh" install
  trap - EXIT
  log "cluster up in $((SECONDS - start)) s: https://127.0.0.1:$api_port (KUBECONFIG=$RUN/kubeconfig)"
}

stop_pids() { # stop_pids NAME...: TERM all, then KILL what is left after 15 s
  local name pid pids=() i
  for name in "$@"; do
    [ -f "$RUN/$name.pid" ] || continue
    pid=$(cat "$RUN/$name.pid")
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  for i in $(seq 1 150); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for name in "$@"; do rm -f "$RUN/$name.pid"; done
}

down() {
  [ -d "$RUN" ] || return 0
  bash "$REPO/scripts/operator.sh" stop
  # API servers first (together), then the etcd they write to.
  stop_pids kube-apiserver kube-apiserver-bare
  stop_pids etcd
  # Logs and certificates stay in the run dir for inspection; the data dir alone is large.
  rm -rf "$RUN/etcd-data"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) die "usage: cluster.sh up|down" ;;
esac
