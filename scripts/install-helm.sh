#!/usr/bin/env bash
# Builds helm (Helm 3, pinned) from the Go module proxy into .tools/bin, for the
# chart tests (helm lint, helm template). Skipped when that version is there.
# Needs Go >= 1.24 (`go`); the first build takes minutes (see README, Kubernetes).
set -euo pipefail

VERSION=v3.22.0
# The Kubernetes version helm assumes for lint and template (.Capabilities.KubeVersion):
# that of its client-go (v0.37.0 -> 1.37), as helm's own Makefile sets it. Without it a
# `go install` build says v1.20 and refuses charts that need newer APIs.
K8S_MAJOR=1
K8S_MINOR=37
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.tools/bin"
HELM="$BIN/helm"
STAMP="$BIN/.helm-$VERSION-k8s$K8S_MAJOR.$K8S_MINOR"

if [ -x "$HELM" ] && [ -e "$STAMP" ] \
  && [ "$("$HELM" version --template '{{.Version}}' 2>/dev/null)" = "$VERSION" ]; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "borderwatch: go is not installed; the chart tests need helm built with it" >&2
  echo "  install Go (Debian: golang-go >= 1.24), then run make install again" >&2
  exit 1
fi

mkdir -p "$BIN"
echo "borderwatch: building helm $VERSION from the Go module proxy into .tools/bin (once; takes minutes)" >&2
start=$(date +%s)
# Version strings set as helm's own release build sets them (its Makefile's LDFLAGS).
LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$VERSION"
for pkg in pkg/lint/rules pkg/chartutil; do
  LDFLAGS+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=$K8S_MAJOR"
  LDFLAGS+=" -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$K8S_MINOR"
done
rm -f "$BIN"/.helm-*
GOBIN="$BIN" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install -trimpath -ldflags "$LDFLAGS" \
  "helm.sh/helm/v3/cmd/helm@$VERSION"
touch "$STAMP"
echo "borderwatch: helm $VERSION built in $(( $(date +%s) - start ))s: $("$HELM" version --short)" >&2
