//! What the allocator needs to know about a Service, read from the typed object: whether it is
//! caracal's to serve, its families, what it asks for and what it holds. Pure.

use std::{fmt, net::IpAddr};

use caracal_policy::selector::Labels;
use k8s_openapi::{api::core::v1::Service, jiff::Timestamp};

use super::{LB_CLASS, LB_IPS_ANNOTATION, pool::Family};

/// A Service's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Whose addresses a Service's status holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// `type: LoadBalancer` without a class or with [`LB_CLASS`]: this allocator's.
    Caracal,
    /// `type: LoadBalancer` of another class: another implementation's; its addresses are
    /// never handed out again, and its status is never touched.
    Other,
    /// Not a LoadBalancer (any more): whatever it holds from a pool is released.
    NotLoadBalancer,
}

/// One Service as the allocator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceView {
    pub key: ServiceKey,
    pub created: Option<Timestamp>,
    pub owner: Owner,
    /// From `spec.ipFamilies`, primary first; IPv4 if the API left it empty.
    pub families: Vec<Family>,
    /// `spec.ipFamilyPolicy` is PreferDualStack: a secondary family without any pool is not
    /// worth a warning.
    pub prefer_dual_stack: bool,
    /// The requested addresses (annotation or `spec.loadBalancerIP`), at most one per family;
    /// an error names what is wrong with the request.
    pub requested: Result<Vec<IpAddr>, String>,
    /// `status.loadBalancer.ingress[].ip`, in order (hostnames and unparseable entries left out).
    pub current: Vec<IpAddr>,
    /// Its labels plus `io.kubernetes.service.namespace` and `io.kubernetes.service.name`.
    pub labels: Labels,
}

impl ServiceView {
    pub fn from_k8s(svc: &Service) -> ServiceView {
        let meta = &svc.metadata;
        let key = ServiceKey {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        };
        let spec = svc.spec.as_ref();
        let is_lb = spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        let class = spec.and_then(|s| s.load_balancer_class.as_deref());
        let owner = match (is_lb, class) {
            (false, _) => Owner::NotLoadBalancer,
            (true, None) => Owner::Caracal,
            (true, Some(c)) if c == LB_CLASS => Owner::Caracal,
            (true, Some(_)) => Owner::Other,
        };
        let mut families: Vec<Family> = spec
            .and_then(|s| s.ip_families.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|f| Family::parse(f))
            .collect();
        families.dedup();
        if families.is_empty() {
            families.push(Family::V4);
        }
        let prefer_dual_stack = spec.and_then(|s| s.ip_family_policy.as_deref()) == Some("PreferDualStack");
        let annotation = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(LB_IPS_ANNOTATION))
            .map(String::as_str);
        let spec_ip = spec
            .and_then(|s| s.load_balancer_ip.as_deref())
            .filter(|s| !s.is_empty());
        let current = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref()?.parse().ok())
            .collect();
        let mut labels = meta.labels.clone().unwrap_or_default();
        labels.insert("io.kubernetes.service.namespace".into(), key.namespace.clone());
        labels.insert("io.kubernetes.service.name".into(), key.name.clone());
        ServiceView {
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            owner,
            families,
            prefer_dual_stack,
            requested: parse_request(annotation, spec_ip),
            current,
            labels,
            key,
        }
    }

    /// The requested address of `family`, if the request is valid and names one.
    pub fn requested_ip(&self, family: Family) -> Option<IpAddr> {
        self.requested
            .as_ref()
            .ok()?
            .iter()
            .find(|ip| Family::of(ip) == family)
            .copied()
    }
}

/// The annotation's comma list (at most one address per family) or `spec.loadBalancerIP`; if
/// both are set they must agree.
pub fn parse_request(annotation: Option<&str>, spec_ip: Option<&str>) -> Result<Vec<IpAddr>, String> {
    let mut ips: Vec<IpAddr> = Vec::new();
    if let Some(list) = annotation {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let ip: IpAddr = item.parse().map_err(|_| {
                format!("annotation {LB_IPS_ANNOTATION}: {item:?} is not an IPv4 or IPv6 address")
            })?;
            if let Some(other) = ips.iter().find(|o| Family::of(o) == Family::of(&ip)) {
                return Err(format!(
                    "annotation {LB_IPS_ANNOTATION}: {other} and {ip} are both {}; at most one address per family",
                    Family::of(&ip).name()
                ));
            }
            ips.push(ip);
        }
    }
    if let Some(text) = spec_ip {
        let ip: IpAddr = text
            .trim()
            .parse()
            .map_err(|_| format!("spec.loadBalancerIP: {text:?} is not an IPv4 or IPv6 address"))?;
        if annotation.is_some() && !ips.contains(&ip) {
            return Err(format!(
                "spec.loadBalancerIP {ip} is not among the annotation {LB_IPS_ANNOTATION}'s addresses; set one of them"
            ));
        }
        if ips.is_empty() {
            ips.push(ip);
        }
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn ownership_by_type_and_class() {
        let cases = [
            ("{type: LoadBalancer}", Owner::Caracal),
            (
                "{type: LoadBalancer, loadBalancerClass: caracal.dev/lb}",
                Owner::Caracal,
            ),
            (
                "{type: LoadBalancer, loadBalancerClass: metallb.io/metallb}",
                Owner::Other,
            ),
            ("{type: ClusterIP}", Owner::NotLoadBalancer),
            ("{}", Owner::NotLoadBalancer),
        ];
        for (spec, want) in cases {
            let svc = service(&format!("metadata: {{name: s, namespace: n}}\nspec: {spec}"));
            assert_eq!(ServiceView::from_k8s(&svc).owner, want, "{spec}");
        }
    }

    #[test]
    fn reads_families_current_addresses_and_pseudo_labels() {
        let svc = service(
            "metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {type: LoadBalancer, ipFamilies: [IPv6, IPv4], ipFamilyPolicy: PreferDualStack}
status: {loadBalancer: {ingress: [{ip: '2001:db8::1'}, {hostname: lb.example}, {ip: 192.0.2.1}]}}",
        );
        let v = ServiceView::from_k8s(&svc);
        assert_eq!(v.key.to_string(), "shop/web");
        assert_eq!(v.families, vec![Family::V6, Family::V4]);
        assert!(v.prefer_dual_stack);
        assert_eq!(
            v.current,
            vec![
                "2001:db8::1".parse::<IpAddr>().unwrap(),
                "192.0.2.1".parse().unwrap()
            ]
        );
        assert_eq!(v.labels["app"], "web");
        assert_eq!(v.labels["io.kubernetes.service.namespace"], "shop");
        assert_eq!(v.labels["io.kubernetes.service.name"], "web");
        assert_eq!(v.requested, Ok(vec![]));
    }

    #[test]
    fn requests_from_the_annotation_or_load_balancer_ip() {
        let ok = |a: Option<&str>, s: Option<&str>| parse_request(a, s).unwrap();
        let err = |a: Option<&str>, s: Option<&str>| parse_request(a, s).unwrap_err();
        let v4: IpAddr = "192.0.2.5".parse().unwrap();
        let v6: IpAddr = "2001:db8::5".parse().unwrap();
        assert_eq!(ok(None, None), Vec::<IpAddr>::new());
        assert_eq!(ok(Some("192.0.2.5, 2001:db8::5"), None), vec![v4, v6]);
        assert_eq!(ok(None, Some("192.0.2.5")), vec![v4]);
        assert_eq!(ok(Some("2001:db8::5,192.0.2.5"), Some("192.0.2.5")), vec![v6, v4]);
        assert!(err(Some("192.0.2.5,192.0.2.6"), None).contains("at most one address per family"));
        assert!(err(Some("192.0.2.x"), None).contains("\"192.0.2.x\" is not an IPv4 or IPv6 address"));
        assert!(err(None, Some("nope")).contains("spec.loadBalancerIP: \"nope\""));
        assert!(err(Some("192.0.2.5"), Some("192.0.2.6")).contains("not among the annotation"));
    }

    #[test]
    fn requested_ip_by_family() {
        let svc = service(&format!(
            "metadata: {{name: s, namespace: n, annotations: {{{LB_IPS_ANNOTATION}: '192.0.2.9'}}}}\nspec: {{type: LoadBalancer}}"
        ));
        let v = ServiceView::from_k8s(&svc);
        assert_eq!(v.requested_ip(Family::V4), Some("192.0.2.9".parse().unwrap()));
        assert_eq!(v.requested_ip(Family::V6), None);
        assert_eq!(v.families, vec![Family::V4], "no ipFamilies: IPv4");
    }
}
