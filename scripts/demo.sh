#!/usr/bin/env bash
# The demo: `sudo scripts/demo.sh` runs a two-node caracal cluster behind a BIRD top-of-rack
# router, entirely in network namespaces on this machine: the agents advertise their pod CIDRs
# over BGP, pods plumbed by caracal-cni talk across nodes, and a NetworkPolicy drops them.
# `sudo scripts/demo.sh tests/topologies/bgp-interop` shows BIRD, FRR, GoBGP and ExaBGP instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"
[ "$(id -u)" = 0 ] || { echo "scripts/demo.sh needs root; run it with sudo" >&2; exit 1; }
bash scripts/install-deps.sh
cargo build --quiet -p caracal -p caracal-cni
if [ "${1:-}" = k8s ]; then
  # The real cluster needs the Kubernetes binaries (built once from the Go module proxy).
  export KUBE_BIN_DIR=$(bash tests/kube/build.sh | tail -n 1)
fi
caracal=$PWD/target/debug/caracal
topo=${1:-tests/topologies/cluster}
[ "$topo" = k8s ] && topo=tests/topologies/k8s
name=demo-$$
run="/run/caracal-lab/$name"
trap '$caracal lab down $name >/dev/null 2>&1 || true' EXIT
say() { printf '\n\033[1m==== %s\033[0m\n' "$*"; }

$caracal lab up --name "$name" "$topo"

if [ "$(basename "$topo")" = bgp-interop ]; then
  say "waiting for the sessions"; sleep 10
  say "BIRD: birdc show route"
  $caracal lab exec "$name" bird -- birdc -s "$run/bird/bird.ctl" show route
  say "FRR: show ip bgp"
  $caracal lab exec "$name" frr -- vtysh --vty_socket "$run/frr" -c "show ip bgp"
  say "GoBGP: gobgp global rib"
  $caracal lab exec "$name" gobgp -- gobgp -u 127.0.0.1 -p 50051 global rib
  say "ExaBGP: prefixes received through its API"
  grep -o '"nlri": "[0-9./]*"' "$run/exabgp/received.jsonl" | sort -u || true
  exit 0
fi

if [ "$(basename "$topo")" = k8s ]; then
  export KUBECONFIG=$run/pki/admin.kubeconfig
  say "a real cluster: kubelet, containerd and kube-proxy on two nodes; no pod network yet"
  kubectl get nodes -o wide
  say "kubectl apply -f crds/ -f deploy/ (and the ToR as a BGP peer in the ConfigMap)"
  kubectl apply -f crds/ -f deploy/
  kubectl apply -f tests/topologies/k8s/caracal-config.yaml
  # The agents read the ConfigMap when they start: restart them after editing it.
  kubectl -n kube-system rollout restart daemonset/caracal-node
  kubectl wait --for=condition=Ready node --all --timeout=180s
  kubectl -n kube-system rollout status daemonset/caracal-node --timeout=180s
  kubectl create namespace demo
  for p in a:node1 b:node2; do
    kubectl -n demo run "${p%%:*}" --image=registry.k8s.io/e2e-test-images/agnhost:2.56 --labels="app=${p%%:*}" \
      --overrides="{\"spec\":{\"nodeName\":\"${p#*:}\"}}" -- netexec --http-port=8080
  done
  kubectl -n demo wait --for=condition=Ready pod --all --timeout=120s
  kubectl get pods -n demo -o wide
  ip_b=$(kubectl -n demo get pod b -o jsonpath='{.status.podIP}')
  say "the ToR learned each node's pod CIDR over BGP"
  $caracal lab exec "$name" tor -- birdc -s "$run/tor/bird.ctl" show route
  say "demo/a (node1) -> demo/b (node2) :8080"
  kubectl -n demo exec a -- /agnhost connect "$ip_b:8080" --timeout=2s && echo connected
  say "a NetworkPolicy isolating demo/b, applied with kubectl"
  printf '%s\n' 'apiVersion: networking.k8s.io/v1' 'kind: NetworkPolicy' 'metadata: {namespace: demo, name: deny-b}' \
    'spec: {podSelector: {matchLabels: {app: b}}, policyTypes: [Ingress]}' | kubectl apply -f -
  sleep 2
  kubectl -n demo exec a -- /agnhost connect "$ip_b:8080" --timeout=2s || echo "dropped"
  say "tearing the lab down"
  exit 0
fi

for n in node1 node2; do
  until [ -f "$run/$n/net.d/10-caracal.conflist" ]; do sleep 0.2; done
done
say "pods: x/a and x/c on node1, x/b on node2 (plumbed by caracal-cni)"
$caracal lab pod add "$name" node1 x/a -p 80/TCP
$caracal lab pod add "$name" node2 x/b -p 80/TCP
$caracal lab pod add "$name" node1 x/c -p 80/TCP
ip_b=$($caracal lab exec "$name" x/b -- ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
sleep 3
say "top-of-rack BIRD learned each node's pod CIDR over BGP"
$caracal lab exec "$name" tor -- birdc -s "$run/tor/bird.ctl" show route
say "node1's kernel routes: its pods' /32s (proto 91, CNI) and node2's CIDR (proto 201, BGP)"
$caracal lab exec "$name" node1 -- ip route
say "node1's BGP speaker"
$caracal bgp status --socket "$run/node1/caracal.sock"

server="import socket
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 80)); s.listen(8)
while True:
    c, _ = s.accept(); c.sendall(b'hello from x/b'); c.close()"
client="import socket
try:
    print(socket.create_connection(('$ip_b', 80), timeout=2).recv(64).decode())
except socket.timeout:
    print('timed out: dropped')"
$caracal lab exec "$name" x/b -- python3 -c "$server" &
sleep 0.5
say "x/a (node1) -> x/b (node2) port 80"
$caracal lab exec "$name" x/a -- python3 -c "$client"

say "a NetworkPolicy isolating x/b, written into the datastore (the lab's manifest folder)"
cat > "$run/manifests/deny-b.yaml" <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: deny-b}
spec:
  podSelector: {matchLabels: {pod: b}}
  policyTypes: [Ingress]
YAML
cat "$run/manifests/deny-b.yaml"
sleep 2
say "x/a -> x/b again"
$caracal lab exec "$name" x/a -- python3 -c "$client"
say "caracal policy explain x/a x/b 80/TCP"
$caracal policy explain x/a x/b 80/TCP --manifests "$run/manifests" || true
say "tearing the lab down"
