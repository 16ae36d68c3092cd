#!/bin/sh
# Builds the upstream e2e suite (`e2e.test`, k8s.io/kubernetes/test/e2e at ../go.mod's version) and
# the ginkgo CLI into a cache outside the repository, keyed by this folder's go.sum, and prints the
# directory holding them. A cached build is reused without invoking Go. Not part of the default
# test run (scripts/e2e.sh uses it): cold, about 10 minutes on 2 cores.
#
# Environment: CARACAL_CACHE (default ~/.cache/caracal), GO (default: go on PATH).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${CARACAL_CACHE:-$HOME/.cache/caracal}
hash=$(sha256sum "$here/go.sum" | cut -c1-16)
out="$cache/e2e-$hash"
if [ -x "$out/e2e.test" ] && [ -x "$out/ginkgo" ]; then
    echo "$out"
    exit 0
fi
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOWORK=off GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0
cd "$here"
. "$here/../version-stamp.sh"
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.e2e-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build.sh: building e2e.test ($kver) and ginkgo into $out" >&2
start=$(date +%s)
"$GO" test -c -vet=off -trimpath -ldflags "-s -w $x" -o "$tmp/e2e.test" k8s.io/kubernetes/test/e2e
"$GO" build -trimpath -o "$tmp/ginkgo" github.com/onsi/ginkgo/v2/ginkgo
echo "build.sh: built in $(( $(date +%s) - start )) s" >&2
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out"
