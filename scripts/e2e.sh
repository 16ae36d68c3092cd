#!/usr/bin/env bash
# The upstream Kubernetes e2e suites against caracal on the lab's real cluster:
#
#   sudo scripts/e2e.sh [granular|netpol|services|all] [ginkgo procs, default 2]
#   sudo E2E_FOCUS='<ginkgo focus regex>' scripts/e2e.sh focus [procs]
#   sudo scripts/e2e.sh conformance [case files or folders]   # the shared policy cases, --mode kube
#   sudo scripts/e2e.sh faults        # the real-cluster fault tests instead (k8s_faults.rs)
#
# Brings up tests/topologies/k8s (two workers, a BIRD ToR), installs caracal with
# `kubectl apply -f crds/ -f deploy/`, runs the focused upstream specs of e2e.test (built from the
# Go module proxy by tests/kube/e2e/build.sh) with the ginkgo CLI, prints the pass counts and
# writes the JUnit report under target/e2e/<suite>/. Not part of scripts/test.sh: the Netpol suite
# takes an hour or more on 2 cores. The lab is torn down on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"
[ "$(id -u)" = 0 ] || { echo "scripts/e2e.sh needs root; run it with sudo" >&2; exit 1; }
suite=${1:-granular}
if [ "$suite" = faults ]; then
  # The real-cluster fault tests: each brings its own cluster up (crates/controller/tests/k8s_faults.rs).
  export KUBE_BIN_DIR=$(bash tests/kube/build.sh | tail -n 1) CARACAL_REQUIRE_K8S=1
  cargo build --quiet -p caracal -p caracal-cni
  exec cargo test -p caracal --test k8s_faults -- --ignored --test-threads=1
fi
procs=${2:-2}
bash scripts/install-deps.sh >/dev/null
KUBE_BIN_DIR=$(bash tests/kube/build.sh | tail -n 1)
if [ "$suite" != conformance ]; then
  E2E_DIR=$(bash tests/kube/e2e/build.sh | tail -n 1)
fi
# Cluster DNS (the Services hairpin spec reaches its Service by name): CoreDNS from source; the
# lab imports its image into every node when this build is in the cache.
COREDNS_DIR=$(bash tests/kube/dns/build.sh | tail -n 1)
export KUBE_BIN_DIR CARACAL_COREDNS_BIN=$COREDNS_DIR/coredns
cargo build --quiet -p caracal -p caracal-cni
caracal=$root/target/debug/caracal
name=e2e-$$
trap '$caracal lab down $name >/dev/null 2>&1 || true' EXIT

# DNS: the suite's DNS specs are not the CNI's (CoreDNS serves names to the Services specs).
# SCTP specs need the kernel's sctp module; this machine kind has no modules at all.
skip='\[Slow\]|\[Serial\]|\[Disruptive\]|\[Flaky\]|IPv6|DualStack|Internet|DNS|LoadBalancer'
if ! modprobe sctp 2>/dev/null && ! grep -qw sctp /proc/net/protocols 2>/dev/null; then
  skip="$skip|SCTP"
  echo "e2e: SCTP specs skipped: the kernel has no sctp module"
fi
case "$suite" in
  granular) focus='Networking Granular Checks: Pods' ;;
  netpol) focus='Netpol' ;;
  services) focus='Services should (allow pods to hairpin back to themselves through services|preserve source pod IP for traffic thru service cluster IP)' ;;
  all) focus='Networking Granular Checks: Pods|Netpol|Services should (allow pods to hairpin back to themselves through services|preserve source pod IP for traffic thru service cluster IP)' ;;
  # Any ginkgo focus regex, e.g. the specs of one earlier failure: E2E_FOCUS='named port' scripts/e2e.sh focus
  focus) focus=${E2E_FOCUS:?E2E_FOCUS must hold a ginkgo focus regex} ;;
  # caracal's own harness instead of e2e.test: ../shared/conformance (68 cases, ~40 s each).
  conformance) focus= ;;
  *) echo "unknown suite $suite (granular|netpol|services|all|focus|conformance)" >&2; exit 2 ;;
esac

start=$(date +%s)
kubeconfig=$($caracal lab up --name "$name" tests/topologies/k8s | awk '/^kubeconfig:/ {print $2}')
export KUBECONFIG=$kubeconfig
kubectl apply -f crds/ -f deploy/ >/dev/null
kubectl apply -f tests/topologies/k8s/caracal-config.yaml >/dev/null
# The agents read the ConfigMap at start; the first may have started with the shipped one.
kubectl -n kube-system rollout restart daemonset/caracal-node >/dev/null
kubectl wait --for=condition=Ready node --all --timeout=300s
kubectl -n kube-system rollout status daemonset/caracal-node --timeout=300s
kubectl apply -f tests/topologies/k8s/coredns.yaml >/dev/null
kubectl -n kube-system rollout status deployment/coredns --timeout=300s
echo "e2e: cluster up and caracal installed in $(( $(date +%s) - start )) s"

if [ "$suite" = conformance ]; then
  shift || true
  [ $# -gt 0 ] || set -- "$root/../shared/conformance"
  rc=0
  "$caracal" conformance --mode kube "$@" || rc=$?
  echo "e2e conformance: wall $(( $(date +%s) - start )) s, rc=$rc"
  exit "$rc"
fi

report=$root/target/e2e/$suite
rm -rf "$report" && mkdir -p "$report"
rc=0
"$E2E_DIR/ginkgo" --procs="$procs" --no-color --timeout=4h --output-dir="$report" --junit-report=junit.xml \
  "$E2E_DIR/e2e.test" -- --kubeconfig "$KUBECONFIG" --provider skeleton \
  --ginkgo.focus="$focus" --ginkgo.skip="$skip" --report-dir "$report" \
  > "$report/e2e.log" 2>&1 || rc=$?
grep -v "^[S•]*$" "$report/e2e.log" | tail -n 40
echo "e2e $suite: $(grep -Eo 'Ran [0-9]+ of [0-9]+ Specs.*' "$report/e2e.log" | tail -1)"
grep -E '^\s*\[FAIL\]' "$report/e2e.log" | sort -u || true
echo "e2e $suite: wall $(( $(date +%s) - start )) s, rc=$rc, log $report/e2e.log"
exit "$rc"
