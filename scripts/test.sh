#!/usr/bin/env bash
# The whole test suite, as CI runs it: `sudo scripts/test.sh` on a fresh Debian machine.
# Installs what it needs, checks formatting and lints, builds, runs every test (unit, lab,
# interop, CNI, policy conformance offline and on a real node, the real kube-apiserver tests).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh needs root (network namespaces, iptables); run it with sudo" >&2
  exit 1
fi

bash scripts/install-deps.sh

section() { printf '\n==== %s\n' "$*"; }

section "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

section "build"
cargo build --workspace --all-targets --quiet
if [ -x tests/kube/build.sh ]; then
  section "Kubernetes from source: control plane, kubelet, kube-proxy, agnhost"
  KUBE_BIN_DIR=$(bash tests/kube/build.sh | tail -n 1)
  # The control-plane tests and the real-cluster smoke must run in CI, not skip.
  export KUBE_BIN_DIR CARACAL_REQUIRE_KUBE=1 CARACAL_REQUIRE_K8S=1
fi

section "tests"
# Tests that need root (namespaces, the lab, its daemons) or the shared conformance cases fail
# here instead of skipping (caracal_testkit::require).
export CARACAL_REQUIRE_ROOT=1 CARACAL_REQUIRE_SHARED=1
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/caracal-test.log
status=${PIPESTATUS[0]}

shared="$root/../shared/conformance"
if [ -d "$shared" ] && ./target/debug/caracal conformance --help 2>/dev/null | grep -q -- --mode; then
  for mode in offline node; do
    section "policy conformance ($mode)"
    if ! ./target/debug/caracal conformance --mode "$mode" "$shared"; then status=1; fi
  done
fi

section "summary"
grep -E '^test result:' /tmp/caracal-test.log | awk '
  { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
  END { printf "%d passed, %d failed, %d skipped\n", p, f, s }'
exit "$status"
