//! The control plane's command lines: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler, all inside the control-plane node's network namespace. etcd and the
//! components' health ports listen on that namespace's loopback; the API server on every
//! address of the namespace, which only the lab's nodes (and the forwarder) can reach.

use std::{net::IpAddr, path::Path};

use super::ClusterSpec;

/// The API server's port inside the control-plane namespace.
pub const API_PORT: u16 = 6443;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

pub fn etcd(bin: &Path, data: &Path) -> Vec<String> {
    let mut v = vec![bin.join("etcd").display().to_string()];
    v.extend(s(&[
        "--name",
        "lab",
        "--listen-client-urls",
        "http://127.0.0.1:2379",
        "--advertise-client-urls",
        "http://127.0.0.1:2379",
        "--listen-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-cluster",
        "lab=http://127.0.0.1:2380",
        "--listen-metrics-urls",
        "http://127.0.0.1:2381",
        "--quota-backend-bytes",
        "2147483648",
        "--log-level",
        "warn",
    ]));
    v.push("--data-dir".into());
    v.push(data.display().to_string());
    v
}

pub fn apiserver(bin: &Path, pki: &Path, advertise: IpAddr, spec: &ClusterSpec) -> Vec<String> {
    let p = |f: &str| pki.join(f).display().to_string();
    vec![
        bin.join("kube-apiserver").display().to_string(),
        "--etcd-servers=http://127.0.0.1:2379".into(),
        "--bind-address=0.0.0.0".into(),
        format!("--advertise-address={advertise}"),
        format!("--secure-port={API_PORT}"),
        format!("--tls-cert-file={}", p("apiserver.crt")),
        format!("--tls-private-key-file={}", p("apiserver.key")),
        format!("--client-ca-file={}", p("ca.crt")),
        format!("--token-auth-file={}", p("tokens.csv")),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", p("sa.pub")),
        format!("--service-account-signing-key-file={}", p("sa.key")),
        format!("--service-cluster-ip-range={}", spec.service_cidr),
        "--allow-privileged=true".into(),
        format!(
            "--kubelet-client-certificate={}",
            p("apiserver-kubelet-client.crt")
        ),
        format!("--kubelet-client-key={}", p("apiserver-kubelet-client.key")),
        "--kubelet-preferred-address-types=InternalIP".into(),
        "--profiling=false".into(),
    ]
}

pub fn controller_manager(bin: &Path, pki: &Path, kubeconfig: &Path, spec: &ClusterSpec) -> Vec<String> {
    let p = |f: &str| pki.join(f).display().to_string();
    let k = kubeconfig.display();
    vec![
        bin.join("kube-controller-manager").display().to_string(),
        format!("--kubeconfig={k}"),
        format!("--authentication-kubeconfig={k}"),
        format!("--authorization-kubeconfig={k}"),
        "--bind-address=127.0.0.1".into(),
        "--leader-elect=false".into(),
        format!("--service-account-private-key-file={}", p("sa.key")),
        format!("--root-ca-file={}", p("ca.crt")),
        "--use-service-account-credentials".into(),
        "--allocate-node-cidrs".into(),
        format!("--cluster-cidr={}", spec.cluster_cidr),
        format!("--node-cidr-mask-size={}", spec.node_cidr_mask),
        format!("--service-cluster-ip-range={}", spec.service_cidr),
        format!("--cluster-signing-cert-file={}", p("ca.crt")),
        format!("--cluster-signing-key-file={}", p("ca.key")),
        "--controllers=*,-cloud-node-lifecycle".into(),
        "--profiling=false".into(),
    ]
}

pub fn scheduler(bin: &Path, kubeconfig: &Path) -> Vec<String> {
    let k = kubeconfig.display();
    vec![
        bin.join("kube-scheduler").display().to_string(),
        format!("--kubeconfig={k}"),
        format!("--authentication-kubeconfig={k}"),
        format!("--authorization-kubeconfig={k}"),
        "--bind-address=127.0.0.1".into(),
        "--leader-elect=false".into(),
        "--profiling=false".into(),
    ]
}
