//! Rendering, read-back parsing and repair plans of the outgoing-NAT program.

use super::*;

fn nets(text: &str) -> BTreeSet<IpNet> {
    text.split_whitespace().map(|n| n.parse().unwrap()).collect()
}

fn want() -> NatSets {
    NatSets {
        masq: nets("10.244.0.0/16"),
        all: nets("10.244.0.0/16 10.96.0.0/16"),
    }
}

fn saved(sets: &[(&str, &str)]) -> BTreeMap<String, SavedSet> {
    sets.iter()
        .map(|(name, members)| {
            (
                name.to_string(),
                SavedSet {
                    kind: "hash:net".into(),
                    members: nets(members),
                },
            )
        })
        .collect()
}

/// The kernel after a correct apply, as `iptables-save -t nat` prints it next to kube-proxy.
fn save_text(rule_line: &str, hooks: &[&str]) -> String {
    let mut s = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:CARACAL-POSTROUTING - [0:0]\n:KUBE-POSTROUTING - [0:0]\n",
    );
    for h in hooks {
        s += &format!("-A POSTROUTING {h}\n");
    }
    s += "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n";
    if !rule_line.is_empty() {
        s += &format!("-A CARACAL-POSTROUTING {rule_line}\n");
    }
    s += "-A KUBE-POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE --random-fully\nCOMMIT\n";
    s
}

#[test]
fn the_rule_masquerades_pool_sources_to_destinations_outside_every_range() {
    let r = rule(Family::V4);
    assert!(
        r.ends_with(
            "-m set --match-set caracal-masq-v4 src -m set ! --match-set caracal-all-v4 dst -j MASQUERADE --random-fully"
        ),
        "{r}"
    );
    assert!(r.starts_with("-m comment --comment caracal:") && tag(&r).len() == "caracal:".len() + 8);
    assert!(rule(Family::V6).contains("caracal-masq-v6 src") && tag(&rule(Family::V6)) != tag(&r));
}

#[test]
fn an_empty_kernel_gets_sets_then_chain_then_hook() {
    let p = plan(
        Family::V4,
        Some(&want()),
        &SavedNat::default(),
        &BTreeMap::new(),
        None,
    );
    assert_eq!(
        p.sets_before,
        "create caracal-masq-v4 hash:net family inet -exist\nadd caracal-masq-v4 10.244.0.0/16\n\
         create caracal-all-v4 hash:net family inet -exist\nadd caracal-all-v4 10.96.0.0/16\nadd caracal-all-v4 10.244.0.0/16\n"
    );
    assert_eq!(
        p.restore.unwrap(),
        format!(
            "*nat\n:CARACAL-POSTROUTING - [0:0]\n-A CARACAL-POSTROUTING {}\n-I POSTROUTING 1 -j CARACAL-POSTROUTING\nCOMMIT\n",
            rule(Family::V4)
        )
    );
    assert!(p.sets_after.is_empty());
    let v6 = plan(
        Family::V6,
        Some(&NatSets {
            masq: nets("fd00:244::/48"),
            all: nets("fd00:244::/48"),
        }),
        &SavedNat::default(),
        &BTreeMap::new(),
        None,
    );
    assert!(
        v6.sets_before
            .starts_with("create caracal-masq-v6 hash:net family inet6 -exist\n")
    );
}

#[test]
fn a_kernel_in_sync_needs_nothing() {
    // As iptables-save prints it: the comment quoted.
    let printed_rule = rule(Family::V4).replace("--comment caracal:", "--comment \"caracal:");
    let printed_rule = printed_rule.replacen(" -m set", "\" -m set", 1);
    let text = save_text(&printed_rule, &[HOOK]);
    let have = parse_nat_save(&text);
    assert_eq!(have.hooks, [HOOK]);
    assert_eq!(have.chain.as_deref(), Some(&[printed_rule.clone()][..]));
    let sets = saved(&[
        ("caracal-masq-v4", "10.244.0.0/16"),
        ("caracal-all-v4", "10.96.0.0/16 10.244.0.0/16"),
    ]);
    let p = plan(Family::V4, Some(&want()), &have, &sets, None);
    assert!(p.is_empty(), "{p:?}");
    let printed = have.chain.clone().unwrap();
    assert!(plan(Family::V4, Some(&want()), &have, &sets, Some(&printed)).is_empty());
}

#[test]
fn drift_is_repaired() {
    let sets = saved(&[
        ("caracal-masq-v4", "10.244.0.0/16"),
        ("caracal-all-v4", "10.96.0.0/16 10.244.0.0/16"),
    ]);
    // The rule deleted, the hook kept.
    let p = plan(
        Family::V4,
        Some(&want()),
        &parse_nat_save(&save_text("", &[HOOK])),
        &sets,
        None,
    );
    let restore = p.restore.unwrap();
    assert!(restore.contains(&format!("-A CARACAL-POSTROUTING {}", rule(Family::V4))));
    assert!(
        !restore.contains("-I POSTROUTING"),
        "the hook is in place: {restore}"
    );
    // The hook deleted.
    let p = plan(
        Family::V4,
        Some(&want()),
        &parse_nat_save(&save_text(&rule(Family::V4), &[])),
        &sets,
        None,
    );
    assert!(
        p.restore
            .unwrap()
            .contains("-I POSTROUTING 1 -j CARACAL-POSTROUTING\n")
    );
    // The hook doubled, one of them with a match added: both go, one comes back.
    let have = parse_nat_save(&save_text(
        &rule(Family::V4),
        &[HOOK, "-o eth0 -j CARACAL-POSTROUTING"],
    ));
    let restore = plan(Family::V4, Some(&want()), &have, &sets, None)
        .restore
        .unwrap();
    assert!(
        restore.contains(
            "-D POSTROUTING -j CARACAL-POSTROUTING\n-D POSTROUTING -o eth0 -j CARACAL-POSTROUTING\n-I POSTROUTING 1 -j CARACAL-POSTROUTING\n"
        ),
        "{restore}"
    );
    // The rule changed in place, keeping its comment: told apart by the last printed text.
    let printed = vec![rule(Family::V4)];
    let edited = rule(Family::V4).replace("MASQUERADE --random-fully", "ACCEPT");
    let have = parse_nat_save(&save_text(&edited, &[HOOK]));
    assert!(
        plan(Family::V4, Some(&want()), &have, &sets, Some(&printed))
            .restore
            .is_some()
    );
    // Another rule added to the chain.
    let mut have = parse_nat_save(&save_text(&rule(Family::V4), &[HOOK]));
    have.chain.as_mut().unwrap().push("-j ACCEPT".into());
    assert!(
        plan(Family::V4, Some(&want()), &have, &sets, None)
            .restore
            .is_some()
    );
}

#[test]
fn changed_members_are_swapped_in_whole() {
    let sets = saved(&[
        ("caracal-masq-v4", "10.244.0.0/16"),
        ("caracal-all-v4", "10.244.0.0/16"),
    ]);
    let have = parse_nat_save(&save_text(&rule(Family::V4), &[HOOK]));
    let p = plan(Family::V4, Some(&want()), &have, &sets, None);
    assert_eq!(
        p.sets_before,
        "create caracal-tmp-v4 hash:net family inet -exist\nflush caracal-tmp-v4\n\
         add caracal-tmp-v4 10.96.0.0/16\nadd caracal-tmp-v4 10.244.0.0/16\n\
         swap caracal-tmp-v4 caracal-all-v4\ndestroy caracal-tmp-v4\n"
    );
    assert!(p.restore.is_none());
}

#[test]
fn nothing_wanted_removes_hook_chain_and_sets_and_leaves_others_alone() {
    let have = parse_nat_save(&save_text(&rule(Family::V4), &[HOOK]));
    let sets = saved(&[("caracal-masq-v4", "10.244.0.0/16"), ("caracal-all-v4", "")]);
    let p = plan(Family::V4, None, &have, &sets, None);
    assert!(p.sets_before.is_empty());
    assert_eq!(
        p.restore.unwrap(),
        "*nat\n-D POSTROUTING -j CARACAL-POSTROUTING\n-F CARACAL-POSTROUTING\n-X CARACAL-POSTROUTING\nCOMMIT\n"
    );
    assert_eq!(p.sets_after, "destroy caracal-masq-v4\ndestroy caracal-all-v4\n");
    let untouched = parse_nat_save(&save_text("", &[]).replace(":CARACAL-POSTROUTING - [0:0]\n", ""));
    assert!(plan(Family::V4, None, &untouched, &BTreeMap::new(), None).is_empty());
}

#[test]
fn ipset_save_is_read_for_caracal_sets_only() {
    let text = "create cara-4s-abc hash:ip family inet hashsize 1024 maxelem 65536\n\
                add cara-4s-abc 10.244.1.5\n\
                create caracal-all-v4 hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12\n\
                add caracal-all-v4 10.96.0.0/16\nadd caracal-all-v4 192.0.2.7\n\
                create caracal-masq-v4 hash:net family inet hashsize 1024 maxelem 65536\n";
    let sets = parse_ipset_save(text);
    assert_eq!(
        sets.keys().collect::<Vec<_>>(),
        ["caracal-all-v4", "caracal-masq-v4"]
    );
    assert_eq!(sets["caracal-all-v4"].members, nets("10.96.0.0/16 192.0.2.7/32"));
    assert_eq!(sets["caracal-all-v4"].kind, "hash:net");
    assert!(sets["caracal-masq-v4"].members.is_empty());
}
