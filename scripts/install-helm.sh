#!/usr/bin/env bash
# Builds helm (Helm 3, pinned) from the Go module proxy into .tools/bin, for the
# chart tests (helm lint, helm template). Skipped when that version is there.
# Needs Go >= 1.24 (`go`); the first build takes minutes (see README, Kubernetes).
set -euo pipefail

VERSION=v3.22.0
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.tools/bin"
HELM="$BIN/helm"

if [ -x "$HELM" ] && [ "$("$HELM" version --template '{{.Version}}' 2>/dev/null)" = "$VERSION" ]; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "borderwatch: go is not installed; the chart tests need helm built with it" >&2
  echo "  install Go (https://go.dev/doc/install, or Debian's golang-go >= 1.24), then make helm" >&2
  exit 1
fi

mkdir -p "$BIN"
echo "borderwatch: building helm $VERSION from the Go module proxy into .tools/bin (once; takes minutes)" >&2
start=$(date +%s)
# The version string is set as helm's own release build sets it (its Makefile's LDFLAGS).
GOBIN="$BIN" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$VERSION" \
  "helm.sh/helm/v3/cmd/helm@$VERSION"
echo "borderwatch: helm $VERSION built in $(( $(date +%s) - start ))s: $("$HELM" version --short)" >&2
