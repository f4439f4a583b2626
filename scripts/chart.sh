#!/usr/bin/env bash
# Checks the Helm chart, and keeps manifests/ in step with it.
#
#   bash scripts/chart.sh             helm lint --strict, then helm template with the default
#                                     values and with each charts/seldon-river/examples/*.yaml
#   bash scripts/chart.sh render DIR  the same, writing each rendering to DIR/<example>.yaml
#   bash scripts/chart.sh manifests   rewrites manifests/<example>.yaml from the chart
#
# An example values file renders the release "river-<example>"; manifests/<example>.yaml is that
# rendering with helm's "# Source:" lines dropped, headed by the example's leading comment.
# helm comes from scripts/tools.sh (built once and cached).
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=charts/seldon-river
die() { echo "chart.sh: $*" >&2; exit 1; }

bash scripts/tools.sh ensure helm
HELM=$(bash scripts/tools.sh path helm)

render() { # EXAMPLE_FILE: prints the rendering
  local example=$1 stem
  stem=$(basename "$example" .yaml)
  "$HELM" template "river-$stem" "$CHART" -f "$example"
}

# The example's leading comment block, then the rendering without helm's "# Source:" lines.
manifest() { # EXAMPLE_FILE
  local example=$1 stem
  stem=$(basename "$example" .yaml)
  sed -n '/^#/!q; p' "$example"
  echo "# Rendered from charts/seldon-river with examples/$stem.yaml (bash scripts/chart.sh manifests)."
  echo "# Apply as it is: kubectl apply -n NAMESPACE -f manifests/$stem.yaml"
  render "$example" | grep -v '^# Source: '
}

lint_and_render() { # [OUT_DIR]
  local out=${1:-} example stem n
  "$HELM" lint --strict "$CHART" || die "helm lint --strict failed"
  n=$("$HELM" template river "$CHART" | grep -c '^kind: ') || die "helm template with the default values failed"
  echo "chart.sh: default values render $n objects"
  for example in "$CHART"/examples/*.yaml; do
    stem=$(basename "$example" .yaml)
    if [ -n "$out" ]; then
      mkdir -p "$out"
      render "$example" >"$out/$stem.yaml" || die "helm template with $example failed"
      n=$(grep -c '^kind: ' "$out/$stem.yaml")
    else
      n=$(render "$example" | grep -c '^kind: ') || die "helm template with $example failed"
    fi
    echo "chart.sh: examples/$stem.yaml renders $n objects"
  done
}

case "${1:-check}" in
  check) lint_and_render ;;
  render)
    [ $# -eq 2 ] || die "usage: chart.sh render DIR"
    lint_and_render "$2"
    ;;
  manifests)
    for example in "$CHART"/examples/*.yaml; do
      stem=$(basename "$example" .yaml)
      manifest "$example" >"manifests/$stem.yaml.tmp" || { rm -f "manifests/$stem.yaml.tmp"; die "rendering $example failed"; }
      mv "manifests/$stem.yaml.tmp" "manifests/$stem.yaml"
      echo "chart.sh: wrote manifests/$stem.yaml"
    done
    ;;
  *) die "usage: chart.sh [check | render DIR | manifests] (got '$1')" ;;
esac
