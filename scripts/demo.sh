#!/usr/bin/env bash
# The demo: `sudo scripts/demo.sh` brings a lab up on this machine (network namespaces only),
# shows what every router learned, and tears it down.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"
[ "$(id -u)" = 0 ] || { echo "scripts/demo.sh needs root; run it with sudo" >&2; exit 1; }
bash scripts/install-deps.sh
cargo build --quiet -p caracal
caracal=./target/debug/caracal
topo=${1:-tests/topologies/bgp-interop}
name=demo-$$
trap '$caracal lab down $name >/dev/null 2>&1 || true' EXIT
$caracal lab up --name "$name" "$topo"
run="/run/caracal-lab/$name"
echo; echo "waiting for the sessions to come up..."; sleep 10
echo; echo "==== BIRD: birdc show route"
$caracal lab exec "$name" bird -- birdc -s "$run/bird/bird.ctl" show route
echo; echo "==== FRR: vtysh -c 'show ip bgp'"
$caracal lab exec "$name" frr -- vtysh --vty_socket "$run/frr" -c "show ip bgp"
echo; echo "==== GoBGP: gobgp global rib"
$caracal lab exec "$name" gobgp -- gobgp -u 127.0.0.1 -p 50051 global rib
echo; echo "==== ExaBGP: prefixes received through its API"
grep -o '"nlri": "[0-9./]*"' "$run/exabgp/received.jsonl" | sort -u || true
echo; echo "tearing the lab down"
