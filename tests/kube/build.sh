#!/bin/sh
# Builds the real Kubernetes parts the tests run against (kube-apiserver, etcd, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy and agnhost, at the versions pinned in go.mod) into a cache outside the repository, keyed by go.sum's checksum, and
# prints the directory holding the two binaries. A cached build is reused without invoking Go.
#
#   dir=$(tests/kube/build.sh)            # then: CARACAL_KUBE_BIN=$dir cargo test -p caracal
#
# Environment: CARACAL_CACHE (default ~/.cache/caracal), GO (default: go on PATH, else /usr/local/go/bin/go).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${CARACAL_CACHE:-$HOME/.cache/caracal}
hash=$(sha256sum "$here/go.sum" | cut -c1-16)
out="$cache/kube-$hash"

# The binaries, by the package each is built from (agnhost: the e2e suite's test image).
BINARIES="kube-apiserver etcd kube-controller-manager kube-scheduler kubelet kube-proxy agnhost"
pkg() {
    case "$1" in
        etcd) echo go.etcd.io/etcd/server/v3 ;;
        agnhost) echo k8s.io/kubernetes/test/images/agnhost ;;
        *) echo "k8s.io/kubernetes/cmd/$1" ;;
    esac
}
complete() {
    for b in $BINARIES; do [ -x "$1/$b" ] || return 1; done
}
if complete "$out"; then
    echo "$out"
    exit 0
fi

# go.mod needs Go 1.24 (tool directives; kubernetes v1.34 says go 1.24.0): take $GO, else the
# first recent enough of `go` on PATH and /usr/local/go, and say so plainly if there is none
# instead of failing in the middle of a 15-minute build.
recent_go() {
    v=$("$1" env GOVERSION 2>/dev/null || true)
    case "$v" in
        go1.2[4-9]* | go1.[3-9][0-9]* | go[2-9]*) return 0 ;;
        *) return 1 ;;
    esac
}
if [ -z "${GO:-}" ]; then
    for candidate in "$(command -v go || true)" /usr/local/go/bin/go; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && recent_go "$candidate"; then
            GO=$candidate
            break
        fi
    done
fi
if [ -z "${GO:-}" ] || ! recent_go "$GO"; then
    echo "build.sh: Go 1.24 or newer is needed (tried ${GO:-go on PATH and /usr/local/go/bin/go}; set GO=/path/to/go)" >&2
    exit 1
fi

# A go.work up the tree, a toolchain download or -mod=vendor would all change what gets built.
export GOWORK=off GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0

cd "$here"
. "$here/version-stamp.sh"

# Build into a scratch directory and rename, so a concurrent or interrupted build never leaves a
# half-written binary where the tests look.
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.kube-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build.sh: building $BINARIES ($kver) into $out" >&2
for b in $BINARIES; do
    start=$(date +%s)
    "$GO" build -trimpath -ldflags "-s -w $x" -o "$tmp/$b" "$(pkg "$b")"
    echo "build.sh: $b in $(( $(date +%s) - start )) s" >&2
done
"$tmp/kube-apiserver" --version >&2
if [ -d "$out" ]; then
    rm -rf "$out"
fi
mv "$tmp" "$out"
trap - EXIT
echo "$out"
