//! IPAM decisions as plain functions over data: which address a new attachment gets, what a
//! release or a GC frees. No files, no locks (those are in `store`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A contiguous span of usable addresses inside one subnet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    first: u128,
    last: u128,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

impl Range {
    /// The default span leaves out the network address (and the IPv4 broadcast address) of
    /// subnets big enough to have them; `start`/`end` narrow it further.
    pub fn new(subnet: IpNet, start: Option<IpAddr>, end: Option<IpAddr>) -> Result<Range, String> {
        let subnet = subnet.trunc();
        let net = to_u128(subnet.network());
        let bcast = to_u128(subnet.broadcast());
        let (mut first, mut last) = (net, bcast);
        match subnet {
            IpNet::V4(n) if n.prefix_len() <= 30 => {
                first += 1;
                last -= 1;
            }
            IpNet::V6(n) if n.prefix_len() <= 126 => first += 1,
            _ => {}
        }
        for (bound, what) in [(start, "rangeStart"), (end, "rangeEnd")] {
            if let Some(b) = bound
                && !subnet.contains(&b)
            {
                return Err(format!("{what} {b} is outside {subnet}"));
            }
        }
        if let Some(s) = start {
            first = first.max(to_u128(s));
        }
        if let Some(e) = end {
            last = last.min(to_u128(e));
        }
        if first > last {
            return Err(format!("range of {subnet} is empty"));
        }
        Ok(Range { subnet, first, last })
    }

    pub fn size(&self) -> u128 {
        self.last - self.first + 1
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.subnet.contains(&ip) && (self.first..=self.last).contains(&to_u128(ip))
    }
}

/// The ranges of one address family; a pod gets one address from each set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSet(Vec<Range>);

impl RangeSet {
    pub fn new(ranges: Vec<Range>) -> Result<RangeSet, String> {
        let Some(first) = ranges.first() else {
            return Err("empty range set".into());
        };
        let v4 = first.subnet.addr().is_ipv4();
        if ranges.iter().any(|r| r.subnet.addr().is_ipv4() != v4) {
            return Err("a range set mixes IPv4 and IPv6".into());
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if a.first <= b.last && b.first <= a.last {
                    return Err(format!("ranges of {} and {} overlap", a.subnet, b.subnet));
                }
            }
        }
        Ok(RangeSet(ranges))
    }

    pub fn is_ipv4(&self) -> bool {
        self.0[0].subnet.addr().is_ipv4()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|r| r.contains(ip))
    }

    /// The set's key in the state's "last allocated" map, stable across restarts.
    fn key(&self) -> String {
        self.0
            .iter()
            .map(|r| r.subnet.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn ranges(&self) -> &[Range] {
        &self.0
    }
}

/// One address held by one attachment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    pub ip: IpAddr,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Everything the store persists for one network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub allocations: Vec<Allocation>,
    /// Per range set, the address handed out last: the next search starts after it, so a freed
    /// address is not reused at once (as host-local does).
    #[serde(default)]
    pub last_reserved: BTreeMap<String, IpAddr>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AllocError {
    Exhausted(String),
}

impl State {
    /// One address per range set for (container, ifname); the same addresses again if it already
    /// holds them, so a repeated ADD is idempotent. On exhaustion nothing is changed.
    pub fn allocate(
        &mut self,
        pools: &[RangeSet],
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<IpAddr>, AllocError> {
        let used: HashSet<u128> = self.allocations.iter().map(|a| to_u128(a.ip)).collect();
        let mut picked = Vec::new();
        let mut fresh = Vec::new();
        for set in pools {
            let held = self
                .allocations
                .iter()
                .find(|a| a.container_id == container_id && a.ifname == ifname && set.contains(a.ip));
            if let Some(a) = held {
                picked.push(a.ip);
                continue;
            }
            let ip = next_free(set, &used, self.last_reserved.get(&set.key()).copied())
                .ok_or_else(|| AllocError::Exhausted(set.key()))?;
            picked.push(ip);
            fresh.push((set.key(), ip));
        }
        for (key, ip) in fresh {
            self.last_reserved.insert(key, ip);
            self.allocations.push(Allocation {
                ip,
                container_id: container_id.to_owned(),
                ifname: ifname.to_owned(),
            });
        }
        Ok(picked)
    }

    /// Frees what (container, ifname) holds; returns the freed addresses (none is not an error).
    pub fn release(&mut self, container_id: &str, ifname: &str) -> Vec<IpAddr> {
        let mut freed = Vec::new();
        self.allocations.retain(|a| {
            let hit = a.container_id == container_id && a.ifname == ifname;
            if hit {
                freed.push(a.ip);
            }
            !hit
        });
        freed
    }

    /// Frees every allocation whose attachment is not in `valid`; returns them.
    pub fn gc(&mut self, valid: &BTreeSet<(String, String)>) -> Vec<Allocation> {
        let (keep, stale): (Vec<_>, Vec<_>) = std::mem::take(&mut self.allocations)
            .into_iter()
            .partition(|a| valid.contains(&(a.container_id.clone(), a.ifname.clone())));
        self.allocations = keep;
        stale
    }

    pub fn held_by(&self, container_id: &str, ifname: &str) -> Vec<IpAddr> {
        self.allocations
            .iter()
            .filter(|a| a.container_id == container_id && a.ifname == ifname)
            .map(|a| a.ip)
            .collect()
    }
}

/// The first unused address after `last` (wrapping), or `None` when the set is full.
fn next_free(set: &RangeSet, used: &HashSet<u128>, last: Option<IpAddr>) -> Option<IpAddr> {
    let v4 = set.is_ipv4();
    let ranges = set.ranges();
    // Start in the range holding `last`, just after it; otherwise at the beginning.
    let (start_range, start_at) = last
        .and_then(|ip| {
            ranges
                .iter()
                .position(|r| r.contains(ip))
                .map(|i| (i, to_u128(ip)))
        })
        .map(|(i, n)| {
            if n >= ranges[i].last {
                ((i + 1) % ranges.len(), ranges[(i + 1) % ranges.len()].first)
            } else {
                (i, n + 1)
            }
        })
        .unwrap_or((0, ranges[0].first));
    // Each range is scanned at most once (twice for the start range: the tail, then the head);
    // a full range is skipped without scanning, so the cost is bounded by used + 1 per range.
    for k in 0..=ranges.len() {
        let i = (start_range + k) % ranges.len();
        let r = &ranges[i];
        let in_use = used.iter().filter(|n| (r.first..=r.last).contains(*n)).count() as u128;
        if in_use >= r.size() {
            continue;
        }
        let (from, to) = match k {
            0 => (start_at, r.last),
            k if k == ranges.len() => (r.first, start_at.saturating_sub(1).max(r.first)),
            _ => (r.first, r.last),
        };
        let mut n = from;
        while n <= to {
            if !used.contains(&n) {
                return Some(from_u128(v4, n));
            }
            n += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> RangeSet {
        RangeSet::new(vec![Range::new(s.parse().unwrap(), None, None).unwrap()]).unwrap()
    }

    #[test]
    fn v4_ranges_skip_network_and_broadcast() {
        let r = Range::new("10.0.0.0/30".parse().unwrap(), None, None).unwrap();
        assert_eq!(r.size(), 2);
        let r = Range::new("10.0.0.4/32".parse().unwrap(), None, None).unwrap();
        assert_eq!(r.size(), 1);
        let r = Range::new("fd00::/126".parse().unwrap(), None, None).unwrap();
        assert_eq!(r.size(), 3);
        assert!(
            Range::new(
                "10.0.0.0/24".parse().unwrap(),
                Some("10.0.1.1".parse().unwrap()),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn allocation_is_idempotent_per_attachment_and_distinct_across() {
        let pools = vec![set("10.0.0.0/24"), set("fd00::/120")];
        let mut s = State::default();
        let a = s.allocate(&pools, "c1", "eth0").unwrap();
        assert_eq!(
            a,
            vec!["10.0.0.1".parse::<IpAddr>().unwrap(), "fd00::1".parse().unwrap()]
        );
        assert_eq!(s.allocate(&pools, "c1", "eth0").unwrap(), a);
        let b = s.allocate(&pools, "c1", "eth1").unwrap();
        assert_ne!(a, b);
        assert_eq!(s.allocations.len(), 4);
    }

    #[test]
    fn released_addresses_are_not_reused_at_once_and_exhaustion_changes_nothing() {
        let pools = vec![set("10.0.0.0/29")]; // .1 .. .6
        let mut s = State::default();
        for i in 0..6 {
            s.allocate(&pools, &format!("c{i}"), "eth0").unwrap();
        }
        let before = s.clone();
        assert!(matches!(
            s.allocate(&pools, "x", "eth0"),
            Err(AllocError::Exhausted(_))
        ));
        assert_eq!(s, before);
        assert_eq!(
            s.release("c1", "eth0"),
            vec!["10.0.0.2".parse::<IpAddr>().unwrap()]
        );
        assert!(s.release("c1", "eth0").is_empty());
        // .2 is the only free one, so it comes back even though it was just released.
        assert_eq!(
            s.allocate(&pools, "y", "eth0").unwrap(),
            vec!["10.0.0.2".parse::<IpAddr>().unwrap()]
        );
        s.release("c3", "eth0");
        s.release("c4", "eth0");
        // The search continues after the last handed out (.2): .4 comes before .5.
        assert_eq!(
            s.allocate(&pools, "z", "eth0").unwrap(),
            vec!["10.0.0.4".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn search_wraps_around_and_spans_several_ranges() {
        let pools = vec![
            RangeSet::new(vec![
                Range::new("10.0.0.0/30".parse().unwrap(), None, None).unwrap(),
                Range::new("10.0.1.0/30".parse().unwrap(), None, None).unwrap(),
            ])
            .unwrap(),
        ];
        let mut s = State::default();
        let got: Vec<IpAddr> = (0..4)
            .map(|i| s.allocate(&pools, &format!("c{i}"), "eth0").unwrap()[0])
            .collect();
        let want: Vec<IpAddr> = ["10.0.0.1", "10.0.0.2", "10.0.1.1", "10.0.1.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        s.release("c0", "eth0");
        assert_eq!(
            s.allocate(&pools, "n", "eth0").unwrap()[0],
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn gc_frees_exactly_the_stale_attachments() {
        let pools = vec![set("10.0.0.0/24")];
        let mut s = State::default();
        for c in ["a", "b", "c"] {
            s.allocate(&pools, c, "eth0").unwrap();
        }
        let valid: BTreeSet<_> = [("b".to_string(), "eth0".to_string())].into();
        let stale: Vec<_> = s.gc(&valid).into_iter().map(|a| a.container_id).collect();
        assert_eq!(stale, vec!["a", "c"]);
        assert_eq!(s.held_by("b", "eth0").len(), 1);
        assert_eq!(s.allocations.len(), 1);
    }
}
