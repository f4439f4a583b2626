#!/usr/bin/env bash
# Downloads Seldon Core's v1.17.1 SeldonDeployment CRD, which the manifest tests validate against
# (they read it from $SELDON_CRD, by default ../shared/crds/seldondeployment-v1.17.1.yaml beside
# the clone). Needs a machine that reaches Seldon's chart repository; the file is written outside
# the repository and never committed.
#
#   SELDON_CHART_REPO=URL bash scripts/fetch-crd.sh [OUT]
#
# The chart repository is SELDON_CHART_REPO, or the URL of the helm repository named
# $SELDON_CHART_REPO_NAME (default "seldon") in helm's own repository config (`helm repo add`).
#
# The CRD is rendered from seldon-core-operator's own chart at 1.17.1 (release "sco" in namespace
# seldon-system, as an operator installation renders it), with helm from scripts/tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.17.1
CHART_REPO=${SELDON_CHART_REPO:-}
REPO_NAME=${SELDON_CHART_REPO_NAME:-seldon}
TEMPLATE=templates/customresourcedefinition_v1_seldondeployments.machinelearning.seldon.io.yaml
OUT=${1:-${SELDON_CRD:-../shared/crds/seldondeployment-v$VERSION.yaml}}

die() { echo "fetch-crd.sh: $*" >&2; exit 1; }

bash scripts/tools.sh ensure helm
HELM=$(bash scripts/tools.sh path helm)
if [ -z "$CHART_REPO" ]; then
  CHART_REPO=$("$HELM" repo list 2>/dev/null | awk -v name="$REPO_NAME" '$1 == name { print $2 }')
fi
[ -n "$CHART_REPO" ] || die "no chart repository: pass SELDON_CHART_REPO=URL (Seldon's chart repository), or add it to helm as $REPO_NAME (helm repo add $REPO_NAME URL)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$HELM" pull seldon-core-operator --repo "$CHART_REPO" --version "$VERSION" --destination "$work" \
  || die "could not download seldon-core-operator $VERSION from $CHART_REPO (this needs network access to it)"
"$HELM" template sco "$work/seldon-core-operator-$VERSION.tgz" --namespace seldon-system \
  --show-only "$TEMPLATE" >"$work/crd.yaml" \
  || die "could not render $TEMPLATE from seldon-core-operator $VERSION"
grep -q '^  name: seldondeployments.machinelearning.seldon.io$' "$work/crd.yaml" \
  || die "the rendering is not the SeldonDeployment CRD (expected metadata.name seldondeployments.machinelearning.seldon.io)"

mkdir -p "$(dirname "$OUT")"
mv "$work/crd.yaml" "$OUT"
echo "fetch-crd.sh: wrote $OUT ($(wc -c <"$OUT") bytes)"
