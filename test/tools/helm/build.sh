#!/usr/bin/env bash
# Builds .fhirwall/bin/helm from the version pinned in this module's go.mod. The ldflags are the ones
# helm's own Makefile sets: without them `helm version` lacks the patch number and helm assumes
# Kubernetes 1.20 for .Capabilities and lint's deprecation checks.
set -euo pipefail
cd "$(dirname "$0")"
GO=${GO:-go}
out=../../../.fhirwall/bin/helm
helm_version=$("$GO" list -m -f '{{.Version}}' helm.sh/helm/v3)
k8s_minor=$("$GO" list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2) # client-go v0.N.x is Kubernetes 1.N
ldflags="-X helm.sh/helm/v3/internal/version.version=$helm_version"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done
mkdir -p "$(dirname "$out")"
"$GO" build -trimpath -ldflags "$ldflags" -o "$out" helm.sh/helm/v3/cmd/helm
"$out" version --short
