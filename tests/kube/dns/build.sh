#!/bin/sh
# Builds CoreDNS (main.go: coremain with the cluster-DNS plugins, at go.mod's version) into a
# cache outside the repository, keyed by this folder's go.sum, and prints the directory holding
# `coredns`. A cached build is reused without invoking Go. Used by scripts/e2e.sh, not by the
# default test run.
#
# Environment: CARACAL_CACHE (default ~/.cache/caracal), GO (default: go on PATH).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${CARACAL_CACHE:-$HOME/.cache/caracal}
hash=$(sha256sum "$here/go.sum" | cut -c1-16)
out="$cache/coredns-$hash"
if [ -x "$out/coredns" ]; then
    echo "$out"
    exit 0
fi
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOWORK=off GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0
cd "$here"
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.coredns-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build.sh: building coredns into $out" >&2
start=$(date +%s)
"$GO" build -trimpath -ldflags "-s -w" -o "$tmp/coredns" .
echo "build.sh: built in $(( $(date +%s) - start )) s" >&2
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out"
