//! The tracker against the message sequences of the Sparkplug 3.0 specification's
//! "Operational Behavior" chapter: births, report-by-exception data by alias, sequence
//! numbers, deaths (current and stale), and each way a message can be malformed.

use proact_sparkplug::encode::{
    bd_seq_metric, birth_metric, data_metric, encode_dbirth, encode_ddata, encode_ddeath, encode_nbirth, encode_ndeath,
    payload,
};
use proact_sparkplug::pb::payload::metric::Value as Raw;
use proact_sparkplug::pb::payload::Metric;
use proact_sparkplug::pb::DataType;
use proact_sparkplug::{ErrorKind, IdRule, Limits, Mapping, SeqGap, Skip, Tracker};

const NOW: i64 = 1_710_928_800_000_000; // 2024-03-20T10:00:00Z
const T0: u64 = 1_710_928_790_000; // ten seconds earlier, in ms

const NBIRTH: &str = "spBv1.0/Plant1/NBIRTH/Edge2";
const NDEATH: &str = "spBv1.0/Plant1/NDEATH/Edge2";
const DBIRTH: &str = "spBv1.0/Plant1/DBIRTH/Edge2/PUMP-01";
const DDATA: &str = "spBv1.0/Plant1/DDATA/Edge2/PUMP-01";
const DDEATH: &str = "spBv1.0/Plant1/DDEATH/Edge2/PUMP-01";

/// A node born (bdSeq 7, seq 0) with PUMP-01 born (seq 1): temperature alias 1, vibration
/// alias 2, pressure alias 3.
fn born() -> Tracker {
    let mut t = Tracker::new(Mapping::default(), Limits::default());
    let n = t.handle(NBIRTH, &encode_nbirth(7, 0, T0, &[("Node Control/Rebirth", 0, 0.0)]), NOW).unwrap();
    assert!(n.readings.is_empty(), "a node without measurements has no reading");
    let d = t
        .handle(
            DBIRTH,
            &encode_dbirth(
                1,
                T0,
                &[("Sensors/Temperature", 1, 70.0), ("Sensors/Vibration", 2, 3.0), ("Pressure", 3, 4.5)],
            ),
            NOW,
        )
        .unwrap();
    assert_eq!(d.readings.len(), 1, "the birth's values are a reading");
    assert_eq!(d.statuses.len(), 1);
    assert!(d.statuses[0].online && d.statuses[0].equipement_id == "PUMP-01");
    t
}

#[test]
fn data_by_alias_rebuilds_the_whole_reading() {
    let mut t = born();
    // Report by exception: only the temperature changed.
    let d = t.handle(DDATA, &encode_ddata(2, T0 + 1000, &[(1, 91.5)]), NOW).unwrap();
    assert_eq!(d.readings.len(), 1);
    let r = &d.readings[0];
    assert_eq!((r.equipement_id.as_str(), r.ts_micros), ("PUMP-01", (T0 as i64 + 1000) * 1000));
    assert_eq!((r.temperature, r.vibration), (91.5, 3.0), "vibration carried from the birth");
    assert_eq!(r.extra.get("Pressure"), Some(&4.5));
    assert_eq!((r.source.as_str(), r.received_micros), ("sparkplug", NOW));
    assert_eq!(d.seq_gap, None);
}

#[test]
fn metrics_with_their_own_timestamps_make_one_reading_each_in_time_order() {
    let mut t = born();
    let at = |alias, v, ts| Metric { timestamp: Some(ts), ..data_metric(alias, v) };
    let p =
        payload(Some(T0 + 5000), Some(2), vec![at(1, 80.0, T0 + 3000), at(2, 5.0, T0 + 2000), at(1, 81.0, T0 + 3000)]);
    let d = t.handle(DDATA, &p, NOW).unwrap();
    let got: Vec<(i64, f64, f64)> =
        d.readings.iter().map(|r| (r.ts_micros / 1000, r.temperature, r.vibration)).collect();
    assert_eq!(got, vec![(T0 as i64 + 2000, 70.0, 5.0), (T0 as i64 + 3000, 81.0, 5.0)]);
}

#[test]
fn historical_values_do_not_move_the_current_state() {
    let mut t = born();
    let old = Metric { is_historical: Some(true), timestamp: Some(T0 - 60_000), ..data_metric(1, 10.0) };
    let d = t.handle(DDATA, &payload(Some(T0 + 1000), Some(2), vec![old]), NOW).unwrap();
    assert_eq!(d.readings.len(), 1);
    assert_eq!(d.readings[0].temperature, 10.0);
    let d = t.handle(DDATA, &encode_ddata(3, T0 + 2000, &[(2, 6.0)]), NOW).unwrap();
    assert_eq!(d.readings[0].temperature, 70.0, "the birth's value still holds");
}

#[test]
fn data_before_birth_is_refused_and_asks_for_a_rebirth() {
    let mut t = Tracker::new(Mapping::default(), Limits::default());
    let e = t.handle(DDATA, &encode_ddata(2, T0, &[(1, 1.0)]), NOW).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoSession);
    assert!(e.wants_rebirth() && e.detail.contains("before its NBIRTH"), "{}", e.detail);
    // The node is born, the device is not.
    t.handle(NBIRTH, &encode_nbirth(0, 0, T0, &[]), NOW).unwrap();
    let e = t.handle(DDATA, &encode_ddata(1, T0, &[(1, 1.0)]), NOW).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoSession);
    assert!(e.detail.contains("before its DBIRTH"), "{}", e.detail);
}

#[test]
fn an_unknown_alias_refuses_the_whole_message_and_changes_nothing() {
    let mut t = born();
    let e = t.handle(DDATA, &encode_ddata(2, T0 + 1000, &[(1, 99.0), (42, 1.0)]), NOW).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnknownAlias);
    assert!(e.detail.contains("alias 42"), "{}", e.detail);
    let d = t.handle(DDATA, &encode_ddata(3, T0 + 2000, &[(2, 4.0)]), NOW).unwrap();
    assert_eq!(d.readings[0].temperature, 70.0, "the refused message's 99.0 was not applied");
    assert_eq!(d.seq_gap, None, "the refused message's seq was counted");
}

#[test]
fn sequence_numbers_wrap_and_gaps_are_reported() {
    let mut t = born();
    let d = t.handle(DDATA, &encode_ddata(5, T0 + 1000, &[(1, 1.0)]), NOW).unwrap();
    assert_eq!(d.seq_gap, Some(SeqGap { expected: 2, got: 5 }));
    assert_eq!(d.readings.len(), 1, "data after a gap is still data");
    for seq in 6..=255u8 {
        assert_eq!(t.handle(DDATA, &encode_ddata(seq, T0, &[(1, 1.0)]), NOW).unwrap().seq_gap, None);
    }
    assert_eq!(t.handle(DDATA, &encode_ddata(0, T0, &[(1, 1.0)]), NOW).unwrap().seq_gap, None, "255 wraps to 0");
    let e = t.handle(DDATA, &payload(Some(T0), Some(256), vec![data_metric(1, 1.0)]), NOW).unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrongType);
}

#[test]
fn deaths_take_devices_offline_and_a_stale_ndeath_is_ignored() {
    let mut t = born();
    // The will of an older connection (bdSeq 6), delivered late.
    let stale = t.handle(NDEATH, &encode_ndeath(6), NOW).unwrap();
    assert!(stale.statuses.is_empty() && stale.ignored.is_some_and(|w| w.contains("stale")));
    assert!(t.handle(DDATA, &encode_ddata(2, T0, &[(1, 1.0)]), NOW).is_ok(), "the session lives on");
    let dead = t.handle(NDEATH, &encode_ndeath(7), NOW).unwrap();
    let offline: Vec<(&str, bool)> = dead.statuses.iter().map(|s| (s.equipement_id.as_str(), s.online)).collect();
    assert_eq!(offline, vec![("PUMP-01", false)], "the node itself measures nothing: no status of its own");
    assert!(dead.statuses[0].reason.contains("NDEATH"));
    assert_eq!(t.handle(DDATA, &encode_ddata(3, T0, &[(1, 1.0)]), NOW).unwrap_err().kind, ErrorKind::NoSession);
    assert_eq!(t.sessions(), 0);
}

#[test]
fn an_edge_node_that_measures_is_an_equipment_too() {
    let mut t = Tracker::new(Mapping::default(), Limits::default());
    let b =
        t.handle(NBIRTH, &encode_nbirth(3, 0, T0, &[("Temperature", 1, 40.0), ("Vibration", 2, 0.5)]), NOW).unwrap();
    assert_eq!((b.statuses[0].equipement_id.as_str(), b.statuses[0].online), ("Edge2", true));
    assert_eq!(b.readings[0].equipement_id, "Edge2");
    let n = t.handle("spBv1.0/Plant1/NDATA/Edge2", &encode_ddata(1, T0 + 1000, &[(1, 41.0)]), NOW).unwrap();
    assert_eq!((n.readings[0].temperature, n.readings[0].vibration), (41.0, 0.5));
    let d = t.handle(NDEATH, &encode_ndeath(3), NOW).unwrap();
    assert_eq!((d.statuses[0].equipement_id.as_str(), d.statuses[0].online), ("Edge2", false));
}

#[test]
fn a_device_death_and_rebirth() {
    let mut t = born();
    let d = t.handle(DDEATH, &encode_ddeath(2, T0 + 1000), NOW).unwrap();
    assert_eq!(d.statuses.len(), 1);
    assert!(!d.statuses[0].online && d.statuses[0].reason == "Sparkplug DDEATH");
    assert_eq!(t.handle(DDATA, &encode_ddata(3, T0, &[(1, 1.0)]), NOW).unwrap_err().kind, ErrorKind::NoSession);
    let again = t.handle(DDEATH, &encode_ddeath(4, T0 + 1000), NOW).unwrap();
    assert!(again.statuses.is_empty() && again.ignored.is_some(), "a second death changes nothing");
    let b = t.handle(DBIRTH, &encode_dbirth(5, T0, &[("Temperature", 1, 60.0), ("Vibration", 2, 1.0)]), NOW).unwrap();
    assert!(b.statuses[0].online);
}

#[test]
fn what_is_not_a_measurement_is_skipped_and_counted() {
    let mut t = Tracker::new(Mapping::default(), Limits::default());
    t.handle(NBIRTH, &encode_nbirth(0, 0, T0, &[]), NOW).unwrap();
    let text = Metric {
        name: Some("Mode".into()),
        alias: Some(4),
        datatype: Some(DataType::String as u32),
        value: Some(Raw::StringValue("AUTO".into())),
        ..Default::default()
    };
    let null = Metric { is_null: Some(true), value: None, ..birth_metric("Flow", 5, 0.0) };
    let transient = Metric { is_transient: Some(true), ..birth_metric("Debug", 6, 1.0) };
    let birth =
        vec![birth_metric("Temperature", 1, 70.0), birth_metric("Vibration", 2, f64::NAN), text, null, transient];
    let d = t.handle(DBIRTH, &payload(Some(T0), Some(1), birth), NOW).unwrap();
    assert!(d.readings.is_empty(), "no vibration known yet");
    let counts: Vec<(Skip, u32)> = d.skipped.into_iter().collect();
    assert_eq!(
        counts,
        vec![(Skip::Null, 1), (Skip::NonFinite, 1), (Skip::NotNumeric, 1), (Skip::Transient, 1), (Skip::Incomplete, 1)]
    );
    let d = t.handle(DDATA, &encode_ddata(2, T0 + 1000, &[(2, 2.0)]), NOW).unwrap();
    assert_eq!((d.readings[0].temperature, d.readings[0].vibration), (70.0, 2.0));
    assert!(d.readings[0].extra.is_empty(), "Mode, Flow and Debug are not kept");
}

#[test]
fn malformed_payloads_have_their_reason() {
    let mut t = born();
    assert_eq!(t.handle(DDATA, b"\xff\xff\xff", NOW).unwrap_err().kind, ErrorKind::Undecodable);
    assert_eq!(t.handle(DDATA, br#"{"temperature":1}"#, NOW).unwrap_err().kind, ErrorKind::Undecodable);
    let wrong = Metric { value: Some(Raw::StringValue("hot".into())), ..data_metric(1, 0.0) };
    let e = t.handle(DDATA, &payload(Some(T0), Some(2), vec![wrong]), NOW).unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrongType);
    assert!(e.detail.contains("Sensors/Temperature"), "names the metric: {}", e.detail);
    let retyped = Metric { datatype: Some(DataType::Float as u32), ..data_metric(1, 0.0) };
    assert_eq!(
        t.handle(DDATA, &payload(Some(T0), Some(3), vec![retyped]), NOW).unwrap_err().kind,
        ErrorKind::WrongType
    );
    let e = t.handle(DDATA, &payload(None, Some(4), vec![data_metric(1, 1.0)]), NOW).unwrap_err();
    assert_eq!(e.kind, ErrorKind::MissingField);
    let e = t.handle(DDATA, &payload(Some(u64::MAX), Some(5), vec![data_metric(1, 1.0)]), NOW).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AbsurdTimestamp);
    let nameless = Metric { name: None, ..birth_metric("x", 9, 1.0) };
    let e = t.handle(DBIRTH, &payload(Some(T0), Some(6), vec![nameless]), NOW).unwrap_err();
    assert_eq!(e.kind, ErrorKind::MissingField);
    let twice = vec![birth_metric("a", 1, 1.0), birth_metric("b", 1, 1.0)];
    assert_eq!(t.handle(DBIRTH, &payload(Some(T0), Some(7), twice), NOW).unwrap_err().kind, ErrorKind::UnknownAlias);
    assert_eq!(t.handle("spBv1.0/Plant1/DDATA/Edge2", b"", NOW).unwrap_err().kind, ErrorKind::BadTopic);
}

#[test]
fn commands_and_host_state_are_not_data() {
    let mut t = born();
    for topic in ["spBv1.0/Plant1/NCMD/Edge2", "spBv1.0/Plant1/DCMD/Edge2/PUMP-01", "spBv1.0/STATE/scada"] {
        let d = t.handle(topic, b"{\"online\":true}", NOW).unwrap();
        assert!(d.ignored.is_some() && d.readings.is_empty(), "{topic}");
    }
}

#[test]
fn names_and_ids_map_by_the_configured_rules() {
    let names = Mapping::parse_names("Motor/Winding T=temperature, Motor/Accel RMS=vibration,Flow=flow_m3h").unwrap();
    assert!(Mapping::parse_names("no-equals").is_err());
    let mapping = Mapping { id_rule: IdRule::NodeDevice, names };
    let mut t = Tracker::new(mapping, Limits::default());
    let nbirth = payload(Some(T0), Some(0), vec![bd_seq_metric(1)]);
    t.handle(NBIRTH, &nbirth, NOW).unwrap();
    let birth = encode_dbirth(1, T0, &[("Motor/Winding T", 1, 65.0), ("Motor/Accel RMS", 2, 0.7), ("Flow", 3, 12.0)]);
    let d = t.handle(DBIRTH, &birth, NOW).unwrap();
    let r = &d.readings[0];
    assert_eq!((r.equipement_id.as_str(), r.temperature, r.vibration), ("Edge2.PUMP-01", 65.0, 0.7));
    assert_eq!(r.extra.get("flow_m3h"), Some(&12.0));
    assert_eq!("group.node.device".parse::<IdRule>(), Ok(IdRule::GroupNodeDevice));
    assert!("serial".parse::<IdRule>().is_err());
}

#[test]
fn the_tracker_is_bounded() {
    let limits = Limits { max_nodes: 1, max_devices_per_node: 1, max_metrics_per_birth: 2 };
    let mut t = Tracker::new(Mapping::default(), limits);
    t.handle(NBIRTH, &encode_nbirth(0, 0, T0, &[]), NOW).unwrap();
    let e = t.handle("spBv1.0/Plant1/NBIRTH/Edge3", &encode_nbirth(0, 0, T0, &[]), NOW).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    t.handle(NBIRTH, &encode_nbirth(1, 0, T0, &[]), NOW).expect("a rebirth of a known node is not a new one");
    t.handle(DBIRTH, &encode_dbirth(1, T0, &[("a", 1, 1.0)]), NOW).unwrap();
    let e = t.handle("spBv1.0/Plant1/DBIRTH/Edge2/P2", &encode_dbirth(2, T0, &[("a", 1, 1.0)]), NOW).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    let big = encode_dbirth(3, T0, &[("a", 1, 1.0), ("b", 2, 1.0), ("c", 3, 1.0)]);
    assert_eq!(t.handle(DBIRTH, &big, NOW).unwrap_err().kind, ErrorKind::TooLarge);
    // Refused births of ever new groups leave nothing behind: the node's death frees its room.
    for g in 0..100 {
        let e = t.handle(&format!("spBv1.0/G{g}/NBIRTH/N"), &encode_nbirth(0, 0, T0, &[]), NOW).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge);
    }
    t.handle(NDEATH, &encode_ndeath(1), NOW).unwrap();
    assert_eq!(t.sessions(), 0);
    t.handle("spBv1.0/Other/NBIRTH/N", &encode_nbirth(0, 0, T0, &[]), NOW).expect("room again");
}
