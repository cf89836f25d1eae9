//! Stream helpers against a real Redis: a group read returns each entry once, in order, and
//! says which payload field (single reading `p`, batch `b`, equipment status `s`) each entry
//! carried, read or claimed.

use fred::prelude::*;

#[tokio::test]
async fn read_group_returns_each_entry_once() {
    let redis = proact_testkit::Redis::start().await.unwrap();
    let c = proact_server::redis::connect(&redis.url()).await.unwrap();
    let keys: Vec<String> = vec!["s:{0}".into(), "s:{1}".into(), "s:{2}".into()];
    for k in &keys {
        proact_server::redis::ensure_group(&c, k, "g").await.unwrap();
        for i in 0..3 {
            let _: String = c.xadd(k.as_str(), false, None::<()>, "*", ("p", format!("{k}-{i}"))).await.unwrap();
        }
    }
    let got = proact_server::redis::read_group(&c, "g", "c", &keys, 100, 10).await.unwrap();
    let payloads: Vec<String> =
        got.iter().map(|e| String::from_utf8(e.payload.clone().unwrap().to_vec()).unwrap()).collect();
    assert_eq!(payloads.len(), 9, "{payloads:?}");
    assert_eq!(payloads[0], "s:{0}-0");
    assert_eq!(payloads[8], "s:{2}-2");
    proact_server::redis::ack(&c, "g", &got).await.unwrap();
    assert!(proact_server::redis::read_group(&c, "g", "c", &keys, 100, 10).await.unwrap().is_empty());
    assert!(proact_server::redis::read_own_pending(&c, "g", "c", &keys, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn each_entry_says_which_payload_field_it_carried() {
    use proact_server::redis::{BATCH_FIELD, PAYLOAD_FIELD, STATUS_FIELD};
    let redis = proact_testkit::Redis::start().await.unwrap();
    let c = proact_server::redis::connect(&redis.url()).await.unwrap();
    let keys = vec!["f:{0}".to_string()];
    proact_server::redis::ensure_group(&c, &keys[0], "g").await.unwrap();
    for (field, value) in [("p", "one"), ("b", "many"), ("s", "down"), ("other", "none")] {
        let _: String = c.xadd(keys[0].as_str(), false, None::<()>, "*", (field, value)).await.unwrap();
    }
    let seen = |entries: &[proact_server::redis::StreamEntry]| -> Vec<(&'static str, Option<String>)> {
        entries.iter().map(|e| (e.field, e.payload.as_ref().map(|p| String::from_utf8(p.to_vec()).unwrap()))).collect()
    };
    let want = vec![
        (PAYLOAD_FIELD, Some("one".to_string())),
        (BATCH_FIELD, Some("many".to_string())),
        (STATUS_FIELD, Some("down".to_string())),
        (PAYLOAD_FIELD, None),
    ];
    let got = proact_server::redis::read_group(&c, "g", "dead", &keys, 100, 10).await.unwrap();
    assert_eq!(seen(&got), want, "read");
    let claimed = proact_server::redis::claim_stale(&c, "g", "alive", &keys, 0, 100).await.unwrap();
    assert_eq!(seen(&claimed), want, "claimed");
}

#[tokio::test]
async fn group_lag_and_pending_are_reported() {
    let redis = proact_testkit::Redis::start().await.unwrap();
    let c = proact_server::redis::connect(&redis.url()).await.unwrap();
    assert!(proact_server::redis::groups(&c, "absent").await.unwrap().is_empty(), "no stream, no groups");
    let key = "lag:{0}";
    proact_server::redis::ensure_group(&c, key, "g").await.unwrap();
    for i in 0..5 {
        let _: String = c.xadd(key, false, None::<()>, "*", ("p", i)).await.unwrap();
    }
    // Two delivered (pending), three not delivered yet (lag).
    let got = proact_server::redis::read_group(&c, "g", "c", &[key.to_string()], 2, 10).await.unwrap();
    assert_eq!(got.len(), 2);
    let g = proact_server::redis::groups(&c, key).await.unwrap();
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].name, "g");
    assert_eq!(g[0].pending, 2);
    assert_eq!(g[0].lag, Some(3));
    assert_eq!(g[0].last_delivered, got[1].id);

    // The watcher publishes the same numbers as gauges.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let w = tokio::spawn(proact_server::redis::watch_lag(
        c.clone(),
        "proact_test",
        "g".into(),
        vec![key.to_string()],
        std::time::Duration::from_millis(50),
        shutdown.clone(),
    ));
    let text = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let t = proact_server::telemetry::metrics_handle().render();
            if t.contains("proact_test_stream_lag_entries") {
                break t;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the watcher reports within seconds");
    assert!(text.contains(r#"proact_test_stream_lag_entries{stream="lag:{0}",group="g"} 3"#), "{text}");
    assert!(text.contains(r#"proact_test_stream_pending_entries{stream="lag:{0}",group="g"} 2"#), "{text}");
    shutdown.cancel();
    w.await.unwrap();
}
