//! Sparkplug B through ingest with real Mosquitto and Redis: births then report-by-exception
//! data by alias become whole readings in the equipment's shard; births and deaths become
//! status entries (field `s`) in order with them; each malformed message, and data before
//! any birth, ends in the dead-letter stream with source `sparkplug` and its reason.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use fred::prelude::*;
use proact_proto::streams::{shard_for, telemetry_stream, BATCH_FIELD, STATUS_FIELD};
use proact_proto::v1::{EquipmentStatus, RejectReason, Telemetry};
use proact_sparkplug::encode::{encode_dbirth, encode_ddata, encode_ddeath, encode_nbirth, encode_ndeath};
use proact_testkit::{Mosquitto, Redis};
use prost::Message;

/// What one shard entry is.
#[derive(Debug, PartialEq)]
enum Entry {
    Reading(Telemetry),
    Status(EquipmentStatus),
}

/// What the entries of `id`'s shard say about `id`, in stream order: each reading of a
/// reading entry (single or batch), each status.
async fn shard_entries(r: &Client, id: &str) -> Vec<Entry> {
    let key = telemetry_stream(shard_for(id, SHARDS));
    let entries: Vec<(String, HashMap<String, Bytes>)> = r.xrange(key.as_str(), "-", "+", None).await.expect("xrange");
    entries
        .into_iter()
        .flat_map(|(_, f)| match f.get(STATUS_FIELD) {
            Some(s) => vec![Entry::Status(EquipmentStatus::decode(s.as_ref()).expect("status"))],
            None => readings_of(&f).into_iter().map(Entry::Reading).collect(),
        })
        .filter(|e| match e {
            Entry::Reading(t) => t.equipement_id == id,
            Entry::Status(s) => s.equipement_id == id,
        })
        .collect()
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} did not happen in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const NBIRTH: &str = "spBv1.0/Plant1/NBIRTH/Edge2";
const DBIRTH: &str = "spBv1.0/Plant1/DBIRTH/Edge2/PUMP-01";
const DDATA: &str = "spBv1.0/Plant1/DDATA/Edge2/PUMP-01";

fn ms_ago(ms: i64) -> u64 {
    (proact_proto::time::now_micros() / 1000 - ms) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn births_then_data_by_alias_become_readings_and_statuses_in_order() {
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start(), Redis::start()).expect("servers");
    let r = common::redis(&redis.url()).await;
    let ingest = start_ingest(&mqtt.url(), &redis.url(), "ingest-spb", &["--sparkplug", "Plant1"]).await;
    let t0 = ms_ago(10_000);
    let msgs = [
        (NBIRTH, encode_nbirth(4, 0, t0, &[])),
        (
            DBIRTH,
            encode_dbirth(
                1,
                t0,
                &[("Sensors/Temperature", 1, 70.0), ("Sensors/Vibration", 2, 3.0), ("Pressure", 3, 4.5)],
            ),
        ),
        (DDATA, encode_ddata(2, t0 + 1000, &[(1, 91.0)])),
        (DDATA, encode_ddata(3, t0 + 2000, &[(2, 7.5)])),
        ("spBv1.0/Plant1/DDEATH/Edge2/PUMP-01", encode_ddeath(4, t0 + 3000)),
        // Another group: not subscribed, so never seen.
        ("spBv1.0/Other/NBIRTH/Edge9", encode_nbirth(0, 0, t0, &[])),
    ];
    publish_raw(mqtt.port(), &msgs.map(|(t, p)| (t.to_string(), p))).await;
    let entries = wait_for("five PUMP-01 entries", async || {
        let e = shard_entries(&r, "PUMP-01").await;
        (e.len() >= 5).then_some(e)
    })
    .await;
    let shape: Vec<String> = entries
        .iter()
        .map(|e| match e {
            Entry::Reading(t) => format!("{}:{}/{}", (t.ts_micros / 1000) as u64 - t0, t.temperature, t.vibration),
            Entry::Status(s) => format!("{}:{}", if s.online { "online" } else { "offline" }, s.reason),
        })
        .collect();
    assert_eq!(
        shape,
        ["online:Sparkplug DBIRTH", "0:70/3", "1000:91/3", "2000:91/7.5", "offline:Sparkplug DDEATH"],
        "per-equipment order across readings and statuses"
    );
    let Entry::Reading(last) = &entries[3] else { unreachable!() };
    assert_eq!((last.source.as_str(), last.extra.get("Pressure")), ("sparkplug", Some(&4.5)));
    // Sparkplug readings go through the same sink as JSON ones: batch entries by default.
    let key = telemetry_stream(shard_for("PUMP-01", SHARDS));
    let raw: Vec<(String, HashMap<String, Bytes>)> = r.xrange(key.as_str(), "-", "+", None).await.expect("xrange");
    let mut fields: Vec<&str> = raw.iter().flat_map(|(_, f)| f.keys().map(String::as_str)).collect();
    fields.dedup();
    assert_eq!(fields, [STATUS_FIELD, BATCH_FIELD, STATUS_FIELD], "status, batch entries, status");
    assert!(dead_letters(&r).await.is_empty());
    let page = http_get(ingest.admin, "/metrics").await;
    // The recorder is the process's: the other test of this file may have counted too.
    assert!(metric(&page, "proact_ingest_accepted_total", "source=\"sparkplug\"").unwrap() >= 3.0, "{page}");
    assert!(metric(&page, "proact_ingest_sparkplug_status_total", "online=\"false\"").unwrap() >= 1.0);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_and_data_before_birth_are_dead_lettered_with_their_reason() {
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start(), Redis::start()).expect("servers");
    let r = common::redis(&redis.url()).await;
    let ingest = start_ingest(&mqtt.url(), &redis.url(), "ingest-spb-bad", &["--sparkplug", "all"]).await;
    let t0 = ms_ago(10_000);
    let cases: Vec<(&str, Vec<u8>, RejectReason)> = vec![
        // Data of a node never born here.
        ("spBv1.0/G/DDATA/Ghost/PUMP-09", encode_ddata(5, t0, &[(1, 1.0)]), RejectReason::NoSession),
        (NBIRTH, encode_nbirth(1, 0, t0, &[]), RejectReason::Unspecified),
        (DBIRTH, encode_dbirth(1, t0, &[("Temperature", 1, 70.0), ("Vibration", 2, 3.0)]), RejectReason::Unspecified),
        (DDATA, b"\x0a\xff\xff".to_vec(), RejectReason::UndecodablePayload),
        (DDATA, encode_ddata(3, t0 + 1000, &[(9, 1.0)]), RejectReason::UnknownAlias),
        // Data from a device of a born node that has no DBIRTH.
        ("spBv1.0/Plant1/DDATA/Edge2/PUMP-02", encode_ddata(4, t0, &[(1, 1.0)]), RejectReason::NoSession),
        // An hour ahead of the reception: past PROACT_INGEST_MAX_FUTURE_SECS.
        (DDATA, encode_ddata(5, ms_ago(-3_600_000), &[(1, 1.0)]), RejectReason::AbsurdTimestamp),
        ("spBv1.0/Plant1/DDATA/Edge2", encode_ddata(6, t0, &[(1, 1.0)]), RejectReason::BadTopic),
        // A device id that cannot be an equipment id.
        (
            "spBv1.0/Plant1/DBIRTH/Edge2/Pump 3",
            encode_dbirth(7, t0, &[("Temperature", 1, 1.0), ("Vibration", 2, 1.0)]),
            RejectReason::InvalidId,
        ),
        // The stale will of an older session (bdSeq 0): ignored, the node lives on.
        ("spBv1.0/Plant1/NDEATH/Edge2", encode_ndeath(0), RejectReason::Unspecified),
        (DDATA, encode_ddata(8, t0 + 2000, &[(1, 95.0)]), RejectReason::Unspecified),
    ];
    let msgs: Vec<(String, Vec<u8>)> = cases.iter().map(|(t, p, _)| (t.to_string(), p.clone())).collect();
    publish_raw(mqtt.port(), &msgs).await;
    let want: Vec<RejectReason> = cases.iter().map(|c| c.2).filter(|r| *r != RejectReason::Unspecified).collect();
    let dead = wait_for("the dead letters", async || {
        let d = dead_letters(&r).await;
        (d.len() >= want.len()).then_some(d)
    })
    .await;
    let got: Vec<RejectReason> = dead.iter().map(|d| RejectReason::try_from(d.reason).unwrap()).collect();
    // The invalid id is refused twice: its status and its birth reading.
    let mut want = want;
    want.insert(want.len() - 1, RejectReason::InvalidId);
    assert_eq!(got[..want.len()], want[..], "{dead:#?}");
    assert!(dead.iter().all(|d| d.source == "sparkplug" && !d.detail.is_empty()));
    assert!(dead[0].detail.contains("before its NBIRTH"), "{}", dead[0].detail);
    assert_eq!(dead[1].payload, b"\x0a\xff\xff", "the raw payload is kept");
    let readings = wait_for("the data after the stale death", async || {
        let e = shard_entries(&r, "PUMP-01").await;
        (e.len() >= 3).then_some(e)
    })
    .await;
    assert!(matches!(&readings[2], Entry::Reading(t) if t.temperature == 95.0), "{readings:?}");
    ingest.stop().await;
}
