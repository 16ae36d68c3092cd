//! `ipset restore` input, and the parser for `ipset save` output.
//!
//! Members are rendered the way `ipset save` prints them (a host network without its prefix
//! length, `ip,proto:port`), so that what was written and what is read back compare equal.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::{Error, Result, family_names};
use crate::program::{Family, IpSet, MAX_SET_NAME, Protocol, SET_PREFIX, SetKind, SetMember};

/// Kernel sets grow their hash as needed; this only sizes the first allocation.
const HASH_SIZE: u32 = 1024;
/// A selector of a large cluster can match far more than the kernel default of 65,536 pods.
pub const MAX_ELEM: u32 = 1 << 20;

pub fn kind_name(kind: SetKind) -> &'static str {
    match kind {
        SetKind::HashIp => "hash:ip",
        SetKind::HashNet => "hash:net",
        SetKind::HashIpPort => "hash:ip,port",
    }
}

pub fn check_set_name(name: &str) -> Result<()> {
    if super::valid_name(name, SET_PREFIX, MAX_SET_NAME) {
        Ok(())
    } else {
        Err(Error::SetName {
            name: name.to_owned(),
            prefix: SET_PREFIX,
            max: MAX_SET_NAME,
        })
    }
}

/// `create NAME TYPE family F hashsize N maxelem M`.
pub fn create_line(name: &str, set: &IpSet) -> String {
    format!(
        "create {name} {} family {} hashsize {HASH_SIZE} maxelem {MAX_ELEM}\n",
        kind_name(set.kind),
        family_names(set.family).0
    )
}

/// A member as `ipset save` prints it; checks that it fits the set's kind and family.
pub fn member_arg(name: &str, set: &IpSet, member: &SetMember) -> Result<String> {
    let err = |reason: String| Error::Set {
        set: name.to_owned(),
        reason,
    };
    let fam_ok = |ip: IpAddr| {
        matches!(
            (ip, set.family),
            (IpAddr::V4(_), Family::V4) | (IpAddr::V6(_), Family::V6)
        )
    };
    let net = |n: &IpNet| {
        let n = n.trunc();
        if n.prefix_len() == n.max_prefix_len() {
            n.addr().to_string()
        } else {
            n.to_string()
        }
    };
    match (set.kind, member) {
        (SetKind::HashIp | SetKind::HashNet, SetMember::Net(n)) if fam_ok(n.addr()) => {
            if set.kind == SetKind::HashIp && n.prefix_len() != n.max_prefix_len() {
                return Err(err(format!("hash:ip member {n} is not a single address")));
            }
            Ok(net(n))
        }
        (SetKind::HashNet, SetMember::NoMatch(n)) if fam_ok(n.addr()) => Ok(format!("{} nomatch", net(n))),
        (SetKind::HashIpPort, SetMember::IpPort { ip, protocol, port }) if fam_ok(*ip) => {
            let p = match protocol {
                Protocol::Tcp | Protocol::Udp | Protocol::Sctp => protocol.number(),
                other => return Err(err(format!("ip,port member with protocol {}", other.name()))),
            };
            Ok(format!("{ip},{p}:{port}"))
        }
        (kind, m) => Err(err(format!(
            "member {m:?} does not fit a {} {:?} set",
            kind_name(kind),
            set.family
        ))),
    }
}

/// Every set of the program as `ipset restore` input that creates it from nothing.
pub fn render_sets(sets: &BTreeMap<String, IpSet>) -> Result<String> {
    let mut out = String::new();
    for (name, set) in sets {
        check_set_name(name)?;
        out.push_str(&create_line(name, set));
        for m in &set.members {
            push_member(&mut out, "add", name, &member_arg(name, set, m)?);
        }
    }
    Ok(out)
}

pub fn push_member(out: &mut String, op: &str, name: &str, arg: &str) {
    out.push_str(op);
    out.push(' ');
    out.push_str(name);
    out.push(' ');
    out.push_str(arg);
    out.push('\n');
}

/// Parses `ipset save` output back into typed caracal sets. The names of other sets (other
/// prefixes, or kinds caracal does not create) come back in the second value: stale caracal
/// ones can still be destroyed, the rest are left alone.
pub fn parse_save(text: &str) -> Result<(BTreeMap<String, IpSet>, BTreeSet<String>)> {
    let mut sets: BTreeMap<String, IpSet> = BTreeMap::new();
    let mut other = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let err = || Error::Parse {
            tool: "ipset save",
            line: n + 1,
            text: line.to_owned(),
        };
        let mut words = line.split_whitespace();
        match words.next() {
            None => continue,
            Some("create") => {
                let name = words.next().ok_or_else(err)?;
                // Other tools' sets are never parsed: only their names matter (to leave them be).
                if !name.starts_with(SET_PREFIX) {
                    other.insert(name.to_owned());
                    continue;
                }
                let kind = match words.next().ok_or_else(err)? {
                    "hash:ip" => SetKind::HashIp,
                    "hash:net" => SetKind::HashNet,
                    "hash:ip,port" => SetKind::HashIpPort,
                    _ => {
                        other.insert(name.to_owned());
                        continue;
                    }
                };
                let mut family = Family::V4;
                while let Some(w) = words.next() {
                    if w == "family" && words.next() == Some("inet6") {
                        family = Family::V6;
                    }
                }
                sets.insert(
                    name.to_owned(),
                    IpSet {
                        family,
                        kind,
                        members: BTreeSet::new(),
                    },
                );
            }
            Some("add") => {
                let name = words.next().ok_or_else(err)?;
                let Some(set) = sets.get_mut(name) else {
                    if other.contains(name) {
                        continue;
                    }
                    return Err(err());
                };
                let arg = words.next().ok_or_else(err)?;
                let nomatch = words.any(|w| w == "nomatch");
                let member = parse_member(set.kind, arg, nomatch).ok_or_else(err)?;
                set.members.insert(member);
            }
            Some(_) => return Err(err()),
        }
    }
    Ok((sets, other))
}

fn parse_member(kind: SetKind, arg: &str, nomatch: bool) -> Option<SetMember> {
    let net = |s: &str| -> Option<IpNet> {
        s.parse::<IpNet>()
            .ok()
            .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
    };
    match kind {
        SetKind::HashIp | SetKind::HashNet => {
            let n = net(arg)?;
            Some(if nomatch {
                SetMember::NoMatch(n)
            } else {
                SetMember::Net(n)
            })
        }
        SetKind::HashIpPort => {
            let (ip, rest) = arg.split_once(',')?;
            let (proto, port) = rest.split_once(':')?;
            // `ipset save` prints the name where /etc/protocols has one, else the number.
            let protocol = Protocol::from_name_or_number(proto)
                .filter(|p| matches!(p, Protocol::Tcp | Protocol::Udp | Protocol::Sctp))?;
            Some(SetMember::IpPort {
                ip: ip.parse().ok()?,
                protocol,
                port: port.parse().ok()?,
            })
        }
    }
}

/// The member as it reads back: networks masked to their prefix.
pub fn canonical(member: &SetMember) -> SetMember {
    match member {
        SetMember::Net(n) => SetMember::Net(n.trunc()),
        SetMember::NoMatch(n) => SetMember::NoMatch(n.trunc()),
        m => m.clone(),
    }
}

pub fn is_canonical(member: &SetMember) -> bool {
    match member {
        SetMember::Net(n) | SetMember::NoMatch(n) => n.trunc() == *n,
        SetMember::IpPort { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(kind: SetKind, family: Family, members: &[SetMember]) -> IpSet {
        IpSet {
            family,
            kind,
            members: members.iter().cloned().collect(),
        }
    }

    #[test]
    fn rendered_sets_parse_back_to_the_same_sets() {
        let mut sets = BTreeMap::new();
        sets.insert(
            "cara-n".to_owned(),
            set(
                SetKind::HashNet,
                Family::V4,
                &[
                    SetMember::Net("10.0.0.0/8".parse().unwrap()),
                    SetMember::NoMatch("10.1.0.0/16".parse().unwrap()),
                    SetMember::Net("10.2.0.1/32".parse().unwrap()),
                ],
            ),
        );
        sets.insert(
            "cara-p6".to_owned(),
            set(
                SetKind::HashIpPort,
                Family::V6,
                &[SetMember::IpPort {
                    ip: "fd00::1".parse().unwrap(),
                    protocol: Protocol::Sctp,
                    port: 80,
                }],
            ),
        );
        let text = render_sets(&sets).unwrap();
        assert!(text.contains("add cara-n 10.2.0.1\n"), "{text}");
        assert!(text.contains("add cara-n 10.1.0.0/16 nomatch\n"));
        assert!(text.contains("create cara-p6 hash:ip,port family inet6"));
        // Numbers, not names: ipset needs /etc/protocols for names, and the image may lack it.
        assert!(text.contains("add cara-p6 fd00::1,132:80\n"), "{text}");
        let (back, other) = parse_save(&text).unwrap();
        assert_eq!(back, sets);
        assert!(other.is_empty());
    }

    #[test]
    fn ip_port_members_read_back_by_protocol_name_or_number() {
        let text =
            "create cara-p hash:ip,port family inet\nadd cara-p 10.0.0.1,tcp:80\nadd cara-p 10.0.0.1,17:81\n";
        let (sets, _) = parse_save(text).unwrap();
        let members: Vec<_> = sets["cara-p"].members.iter().cloned().collect();
        assert_eq!(
            members,
            [
                SetMember::IpPort {
                    ip: "10.0.0.1".parse().unwrap(),
                    protocol: Protocol::Tcp,
                    port: 80
                },
                SetMember::IpPort {
                    ip: "10.0.0.1".parse().unwrap(),
                    protocol: Protocol::Udp,
                    port: 81
                },
            ]
        );
        let bad = "create cara-p hash:ip,port family inet\nadd cara-p 10.0.0.1,icmp:0\n";
        assert!(
            parse_save(bad).is_err(),
            "an ip,port member of another protocol is refused"
        );
    }

    #[test]
    fn member_of_the_wrong_family_or_kind_is_rejected() {
        let s = set(SetKind::HashIp, Family::V4, &[]);
        assert!(member_arg("cara-a", &s, &SetMember::Net("fd00::1/128".parse().unwrap())).is_err());
        assert!(member_arg("cara-a", &s, &SetMember::Net("10.0.0.0/24".parse().unwrap())).is_err());
        assert!(member_arg("cara-a", &s, &SetMember::NoMatch("10.0.0.1/32".parse().unwrap())).is_err());
    }

    #[test]
    fn set_names_are_bounded_and_prefixed() {
        assert!(check_set_name("cara-ok").is_ok());
        assert!(check_set_name("other").is_err());
        assert!(check_set_name(&format!("cara-{}", "x".repeat(30))).is_err());
    }

    #[test]
    fn foreign_set_kinds_are_listed_not_parsed() {
        let text =
            "create KUBE-X bitmap:port range 0-65535\nadd KUBE-X 80\ncreate cara-a hash:ip family inet\n";
        let (sets, other) = parse_save(text).unwrap();
        assert!(sets.contains_key("cara-a"));
        assert!(other.contains("KUBE-X"));
    }
}
