//! Topology files in the containerlab format.
//!
//! ```yaml
//! name: interop
//! topology:
//!   nodes:
//!     bird1: {kind: bird, startup-config: bird1.conf, exec: ["ip addr add 10.0.0.1/30 dev eth1"]}
//!     frr1:  {kind: frr,  startup-config: frr1.conf}
//!   links:
//!     - endpoints: ["bird1:eth1", "frr1:eth1"]
//! ```
//!
//! Fields containerlab knows but a namespace lab has no use for (`image`, `binds`, `mgmt`, ...)
//! are accepted and ignored, so one file serves both.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

/// The node kinds the runner starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A plain host: a namespace and its interfaces, no process.
    Linux,
    /// BIRD 2 (`bird`), controlled with `birdc`.
    Bird,
    /// FRR's `bgpd` on its own (no zebra), controlled with `vtysh`.
    Frr,
    /// `gobgpd`, controlled with `gobgp`.
    Gobgp,
    /// ExaBGP.
    Exabgp,
    /// A node running caracal's standalone BGP speaker (`caracal bgp run --config ...`).
    Caracal,
    /// A Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
    /// kube-scheduler) inside the node's namespace; its optional startup-config sets the
    /// cluster's ranges (see `lab::k8s::ClusterSpec`).
    #[serde(rename = "k8s-control-plane")]
    K8sControlPlane,
    /// A Kubernetes worker: containerd, kubelet and kube-proxy sharing the node's network,
    /// UTS and mount namespaces; it joins the topology's one `k8s-control-plane`.
    #[serde(rename = "k8s-node")]
    K8sNode,
}

impl Kind {
    /// The kinds that make a Kubernetes cluster out of the lab.
    pub fn is_k8s(self) -> bool {
        matches!(self, Kind::K8sControlPlane | Kind::K8sNode)
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Topology {
    pub name: String,
    pub topology: Body,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Body {
    #[serde(default)]
    pub nodes: BTreeMap<String, Node>,
    #[serde(default)]
    pub links: Vec<Link>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Node {
    pub kind: Kind,
    /// The daemon's configuration file, relative to the topology file's folder.
    #[serde(rename = "startup-config")]
    pub startup_config: Option<String>,
    /// For a `caracal` node, the arguments of the `caracal` command (containerlab's `cmd`),
    /// with `${CONFIG}` replaced by the rendered startup-config; default `bgp run --config ${CONFIG}`.
    pub cmd: Option<String>,
    /// More files of the topology folder rendered into the node's folder like the
    /// startup-config (caracal's extension; containerlab would use `binds`).
    #[serde(default)]
    pub files: Vec<String>,
    /// Commands run in the node's namespace (through `sh -c`) once its daemon is ready.
    #[serde(default)]
    pub exec: Vec<String>,
    /// Environment for the daemon.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Link {
    pub endpoints: [String; 2],
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// One end of a link: `node:interface`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub node: String,
    pub iface: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read topology {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("topology {path} is not valid: {source}")]
    Parse { path: String, source: serde_yaml::Error },
    #[error("topology {path}: {reason}")]
    Invalid { path: String, reason: String },
}

impl Topology {
    pub fn load(path: &Path) -> Result<Topology, Error> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: p.clone(),
            source,
        })?;
        let topo: Topology = serde_yaml::from_str(&text).map_err(|source| Error::Parse {
            path: p.clone(),
            source,
        })?;
        topo.validate()
            .map_err(|reason| Error::Invalid { path: p, reason })?;
        Ok(topo)
    }

    fn validate(&self) -> Result<(), String> {
        if !valid_name(&self.name) {
            return Err(format!(
                "name {:?}: use letters, digits and '-', at most 24",
                self.name
            ));
        }
        for (name, node) in &self.topology.nodes {
            if !valid_name(name) {
                return Err(format!("node {name:?}: use letters, digits and '-', at most 24"));
            }
            let needs_config = !matches!(node.kind, Kind::Linux) && !node.kind.is_k8s();
            if needs_config && node.startup_config.is_none() {
                return Err(format!(
                    "node {name}: kind {:?} needs a startup-config",
                    node.kind
                ));
            }
        }
        let planes = self
            .topology
            .nodes
            .values()
            .filter(|n| n.kind == Kind::K8sControlPlane);
        let has_workers = self.topology.nodes.values().any(|n| n.kind == Kind::K8sNode);
        match planes.count() {
            0 if has_workers => return Err("k8s-node nodes need one k8s-control-plane node".into()),
            0 | 1 => {}
            n => return Err(format!("{n} k8s-control-plane nodes: a lab runs one cluster")),
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, link) in self.topology.links.iter().enumerate() {
            for end in &link.endpoints {
                let ep = parse_endpoint(end)
                    .ok_or_else(|| format!("links[{i}].endpoints: {end:?} is not node:interface"))?;
                if !self.topology.nodes.contains_key(&ep.node) {
                    return Err(format!("links[{i}].endpoints: unknown node {:?}", ep.node));
                }
                if ep.iface.is_empty() || ep.iface.len() > 15 || ep.iface == "lo" {
                    return Err(format!("links[{i}].endpoints: bad interface name {:?}", ep.iface));
                }
                if !seen.insert((ep.node.clone(), ep.iface.clone())) {
                    return Err(format!("links[{i}].endpoints: {end} is used twice"));
                }
            }
        }
        Ok(())
    }

    pub fn links(&self) -> impl Iterator<Item = (Endpoint, Endpoint, Option<u32>)> + '_ {
        self.topology.links.iter().map(|l| {
            let a = parse_endpoint(&l.endpoints[0]).expect("validated");
            let b = parse_endpoint(&l.endpoints[1]).expect("validated");
            (a, b, l.mtu)
        })
    }
}

pub fn parse_endpoint(s: &str) -> Option<Endpoint> {
    let (node, iface) = s.split_once(':')?;
    Some(Endpoint {
        node: node.to_string(),
        iface: iface.to_string(),
    })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 24 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Topology, String> {
        let t: Topology = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        t.validate()?;
        Ok(t)
    }

    #[test]
    fn containerlab_fields_are_accepted_and_ignored() {
        let t = parse(
            "name: t1\nmgmt: {network: x}\ntopology:\n  nodes:\n    a: {kind: linux, image: alpine, binds: [x]}\n    b: {kind: bird, startup-config: b.conf}\n  links:\n    - endpoints: [\"a:eth1\", \"b:eth1\"]\n",
        )
        .unwrap();
        assert_eq!(t.topology.nodes.len(), 2);
        let (a, b, _) = t.links().next().unwrap();
        assert_eq!(
            a,
            Endpoint {
                node: "a".into(),
                iface: "eth1".into()
            }
        );
        assert_eq!(b.node, "b");
    }

    #[test]
    fn link_to_unknown_node_is_rejected_with_its_index() {
        let e = parse("name: t\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n    - endpoints: [\"a:eth1\", \"z:eth1\"]\n")
            .unwrap_err();
        assert!(e.contains("links[0]") && e.contains("\"z\""), "{e}");
    }

    #[test]
    fn daemon_without_config_is_rejected() {
        let e = parse("name: t\ntopology:\n  nodes:\n    r: {kind: frr}\n").unwrap_err();
        assert!(e.contains("startup-config"), "{e}");
    }

    #[test]
    fn interface_used_twice_is_rejected() {
        let e = parse(
            "name: t\ntopology:\n  nodes:\n    a: {kind: linux}\n    b: {kind: linux}\n  links:\n    - endpoints: [\"a:eth1\", \"b:eth1\"]\n    - endpoints: [\"a:eth1\", \"b:eth2\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("used twice"), "{e}");
    }

    #[test]
    fn k8s_nodes_need_exactly_one_control_plane() {
        let worker_only = "name: t\ntopology:\n  nodes:\n    n1: {kind: k8s-node}\n";
        assert!(
            parse(worker_only)
                .unwrap_err()
                .contains("need one k8s-control-plane")
        );
        let two = "name: t\ntopology:\n  nodes:\n    a: {kind: k8s-control-plane}\n    b: {kind: k8s-control-plane}\n";
        assert!(parse(two).unwrap_err().contains("2 k8s-control-plane"));
        let ok =
            "name: t\ntopology:\n  nodes:\n    cp: {kind: k8s-control-plane}\n    n1: {kind: k8s-node}\n";
        let t = parse(ok).unwrap();
        assert_eq!(t.topology.nodes["n1"].kind, Kind::K8sNode);
    }

    #[test]
    fn unknown_kind_is_rejected() {
        assert!(parse("name: t\ntopology:\n  nodes:\n    a: {kind: ceos}\n").is_err());
    }
}
