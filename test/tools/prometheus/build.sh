#!/usr/bin/env bash
# Builds prometheus and promtool from the version of github.com/prometheus/prometheus pinned in this module's
# go.mod (its own module, so the main go.mod gains none of Prometheus's dependencies). The binaries are kept
# in $FHIRWALL_CACHE/bin/prometheus-<version>/ (shared by every clone: a fresh clone with a warm cache builds
# nothing) and linked into the checkout's .fhirwall/bin, where the tests look for them.
#
# No build tag leaves service discovery out in this version: plugins/plugins.go registers every SD mechanism
# without a tag (the list is generated from plugins.yml), so the build carries them; the stack's Prometheus
# uses static_configs only. The version ldflags are the ones Prometheus's promu sets, so `promtool --version`
# and the server's build info name the version.
set -euo pipefail
cd "$(dirname "$0")"
GO=${GO:-go}
root=$(cd ../../.. && pwd)
cache=${FHIRWALL_CACHE:-$HOME/.cache/fhirwall}
module=github.com/prometheus/prometheus
mod_version=$("$GO" list -m -f '{{.Version}}' "$module")
dir=$cache/bin/prometheus-$mod_version
if [ ! -x "$dir/prometheus" ] || [ ! -x "$dir/promtool" ]; then
  # v0.3MM.P of the Go module is Prometheus 3.MM.P (the module's major stays 0).
  minor_patch=${mod_version#v0.3}
  release=3.$((10#${minor_patch%%.*})).${minor_patch#*.}
  ldflags="-X github.com/prometheus/common/version.Version=$release -X github.com/prometheus/common/version.Branch=module"
  tmp=$(mktemp -d "$cache/bin/.prometheus-build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  for cmd in prometheus promtool; do
    "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp/$cmd" "$module/cmd/$cmd"
  done
  mkdir -p "$dir"
  mv "$tmp/prometheus" "$dir/prometheus.part" && mv "$dir/prometheus.part" "$dir/prometheus"
  mv "$tmp/promtool" "$dir/promtool.part" && mv "$dir/promtool.part" "$dir/promtool"
fi
mkdir -p "$root/.fhirwall/bin"
for cmd in prometheus promtool; do
  ln -sfn "$dir/$cmd" "$root/.fhirwall/bin/$cmd"
done
"$root/.fhirwall/bin/promtool" --version | head -1
