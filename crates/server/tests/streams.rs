//! Stream helpers against a real Redis: a group read returns each entry once, in order.

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
