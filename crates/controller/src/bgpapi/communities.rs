//! The BGPConfiguration's communities on the prefixes this node originates, as Calico's
//! `apply_communities()` does: a prefix inside a `prefixAdvertisements` CIDR gets that entry's
//! communities (named in `communities` or literal; `aa:nn` standard, `aa:nn:mm` large), and every
//! prefix gets `largeCommunities`.

use caracal_bgp::{
    config::Originate,
    wire::{LargeCommunity, community},
};
use ipnet::IpNet;

use super::types::BgpConfigurationSpec;

/// A community value of either kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    Standard(u32),
    Large(LargeCommunity),
}

/// `aa:nn` (two 16-bit numbers) or `aa:nn:mm` (three 32-bit numbers).
pub fn parse(text: &str) -> Option<Value> {
    match text.split(':').count() {
        2 => community::parse(text).map(Value::Standard),
        3 => community::parse_large(text).map(Value::Large),
        _ => None,
    }
}

/// The communities to attach, by prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Communities {
    /// `(cidr, values)` in the object's order.
    pub advertisements: Vec<(IpNet, Vec<Value>)>,
    /// On every prefix.
    pub everywhere: Vec<Value>,
}

impl Communities {
    /// From a spec that [`super::validate::configuration`] accepted (anything that does not
    /// parse is left out).
    pub fn of(spec: &BgpConfigurationSpec) -> Communities {
        let named = |name: &str| -> Option<Value> {
            let value = spec.communities.iter().find(|c| c.name == name);
            parse(value.map_or(name, |c| c.value.as_str()))
        };
        Communities {
            advertisements: spec
                .prefix_advertisements
                .iter()
                .filter_map(|a| {
                    let cidr: IpNet = a.cidr.trim().parse().ok()?;
                    let values = a.communities.iter().filter_map(|c| named(c)).collect();
                    Some((cidr, values))
                })
                .collect(),
            everywhere: spec.large_communities.iter().filter_map(|c| parse(c)).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.advertisements.is_empty() && self.everywhere.is_empty()
    }

    /// Adds the communities to every originated prefix they apply to (each value once).
    pub fn apply(&self, originate: &mut [Originate]) {
        for o in originate {
            let matching = self
                .advertisements
                .iter()
                .filter(|(cidr, _)| cidr.contains(&o.prefix))
                .flat_map(|(_, values)| values)
                .chain(&self.everywhere);
            for v in matching {
                match *v {
                    Value::Standard(c) if !o.communities.contains(&c) => o.communities.push(c),
                    Value::Large(c) if !o.large_communities.contains(&c) => o.large_communities.push(c),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_inside_an_advertisement_get_its_named_and_literal_communities() {
        let spec: BgpConfigurationSpec = serde_yaml::from_str(
            "{communities: [{name: rack, value: '64512:100'}, {name: big, value: '64512:1:2'}], \
             prefixAdvertisements: [{cidr: 10.244.0.0/16, communities: [rack, '64512:7']}, \
             {cidr: 10.244.1.0/24, communities: [big, rack]}], largeCommunities: ['64512:9:9']}",
        )
        .unwrap();
        let c = Communities::of(&spec);
        let mut originate: Vec<Originate> = ["10.244.1.0/24", "10.244.2.0/24", "10.96.0.0/12"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        c.apply(&mut originate);
        let std = |s: &str| community::parse(s).unwrap();
        let large = |s: &str| community::parse_large(s).unwrap();
        assert_eq!(
            originate[0].communities,
            [std("64512:100"), std("64512:7")],
            "each once"
        );
        assert_eq!(
            originate[0].large_communities,
            [large("64512:1:2"), large("64512:9:9")]
        );
        assert_eq!(originate[1].communities, [std("64512:100"), std("64512:7")]);
        assert_eq!(originate[1].large_communities, [large("64512:9:9")]);
        assert!(originate[2].communities.is_empty(), "outside every CIDR");
        assert_eq!(originate[2].large_communities, [large("64512:9:9")]);
        assert!(Communities::of(&serde_yaml::from_str("{}").unwrap()).is_empty());
    }
}
