use super::*;

#[test]
fn as4_path_merge_keeps_leading_old_ases() {
    // AS_PATH from the old speaker: 100 AS_TRANS AS_TRANS; AS4_PATH: 70000 80000.
    let mut attrs = PathAttributes {
        as_path: Some(AsPath::sequence([100, 23456, 23456])),
        ..Default::default()
    };
    merge_as4(&mut attrs, Some(AsPath::sequence([70000, 80000])), None);
    assert_eq!(attrs.as_path, Some(AsPath::sequence([100, 70000, 80000])));
}

#[test]
fn as4_path_longer_than_as_path_is_ignored() {
    let mut attrs = PathAttributes {
        as_path: Some(AsPath::sequence([23456])),
        ..Default::default()
    };
    merge_as4(&mut attrs, Some(AsPath::sequence([70000, 80000])), None);
    assert_eq!(attrs.as_path, Some(AsPath::sequence([23456])));
}

#[test]
fn aggregator_without_as_trans_voids_as4_attributes() {
    let agg = Aggregator {
        asn: 65001,
        address: Ipv4Addr::new(1, 1, 1, 1),
    };
    let mut attrs = PathAttributes {
        as_path: Some(AsPath::sequence([23456])),
        aggregator: Some(agg),
        ..Default::default()
    };
    let a4 = Aggregator {
        asn: 70000,
        address: Ipv4Addr::new(2, 2, 2, 2),
    };
    merge_as4(&mut attrs, Some(AsPath::sequence([70000])), Some(a4));
    assert_eq!(attrs.aggregator, Some(agg));
    assert_eq!(attrs.as_path, Some(AsPath::sequence([23456])));
}

#[test]
fn as4_aggregator_replaces_as_trans_aggregator() {
    let mut attrs = PathAttributes {
        aggregator: Some(Aggregator {
            asn: 23456,
            address: Ipv4Addr::new(1, 1, 1, 1),
        }),
        ..Default::default()
    };
    let a4 = Aggregator {
        asn: 70000,
        address: Ipv4Addr::new(1, 1, 1, 1),
    };
    merge_as4(&mut attrs, None, Some(a4));
    assert_eq!(attrs.aggregator, Some(a4));
}

#[test]
fn as_set_counts_as_one_when_merging() {
    let set = AsSegment {
        kind: SegmentKind::Set,
        asns: vec![5, 6, 7],
    };
    let seq = |asns: Vec<u32>| AsSegment {
        kind: SegmentKind::Sequence,
        asns,
    };
    let mut attrs = PathAttributes {
        as_path: Some(AsPath {
            segments: vec![seq(vec![1, 23456]), set.clone()],
        }),
        ..Default::default()
    };
    let as4 = AsPath {
        segments: vec![seq(vec![70000]), set.clone()],
    };
    merge_as4(&mut attrs, Some(as4), None);
    assert_eq!(
        attrs.as_path,
        Some(AsPath {
            segments: vec![seq(vec![1, 70000]), set]
        })
    );
}
