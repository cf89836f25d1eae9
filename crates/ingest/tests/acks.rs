//! Every message ingest wrote is acked to the broker, even when the acks cannot keep up with
//! the reads: here rumqttc's request channel holds only 16 requests, so most acks have to
//! wait in ingest (they used to be dropped, leaving written messages unacked at the broker,
//! to be redelivered on the next connection). After a graceful stop, a successor that takes
//! the same persistent session over must receive nothing again.

mod common;

use std::time::Duration;

use common::*;
use proact_testkit::{Mosquitto, Redis};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet};

const CLIENT_ID: &str = "ingest-acks";

/// Messages the broker sends to a client that resumes `client_id`'s session, within `wait`.
async fn redelivered(port: u16, client_id: &str, wait: Duration) -> u64 {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_clean_session(false).set_manual_acks(true);
    let (client, mut ev) = AsyncClient::new(opts, 64);
    let mut n = 0;
    let _ = tokio::time::timeout(wait, async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(_))) => n += 1,
                Ok(_) => {}
                Err(e) => panic!("successor connection failed: {e}"),
            }
        }
    })
    .await;
    let _ = client.disconnect().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_written_message_is_acked_even_when_acks_cannot_keep_up() {
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start(), Redis::start()).expect("servers");
    let r = common::redis(&redis.url()).await;
    // The acks lag by design here; on a loaded machine flushing thousands of them through a
    // request channel of 16 can take longer than the tests' usual 5 s grace, after which
    // leaving them to redelivery is the intended behaviour, not what this test is about.
    let ingest = start_ingest(
        &mqtt.url(),
        &redis.url(),
        CLIENT_ID,
        &["--mqtt-request-channel", "16", "--shutdown-grace-secs", "60"],
    )
    .await;

    let n = 20_000u64;
    let stats = publish(mqtt.port(), "sensor-acks", n, 50, 0, base_micros()).await;
    assert!(stats.acked.load(std::sync::atomic::Ordering::Relaxed) >= n, "the broker took every message");
    let (_, distinct) = wait_for_distinct(&r, n as usize, Duration::from_secs(60)).await;
    assert_eq!(distinct, n as usize, "every message is in the streams");
    let page = http_get(ingest.admin, "/metrics").await;
    assert!(page.contains("proact_ingest_acks_deferred"), "the deferred-ack gauge is exported");
    ingest.stop().await;

    let again = redelivered(mqtt.port(), CLIENT_ID, Duration::from_secs(3)).await;
    assert_eq!(again, 0, "{again} written messages were left unacked at the broker and came again");
}

#[test]
fn keep_alive_out_of_range_is_refused_at_start() {
    use clap::Parser;
    for bad in ["0", "4", "3601"] {
        let config = proact_ingest::Config::try_parse_from(args(
            "mqtt://127.0.0.1:1883",
            "redis://127.0.0.1:6379",
            CLIENT_ID,
            &["--mqtt-keep-alive-secs", bad],
        ))
        .expect("flags parse");
        let err = config.validate().expect_err("out of range").to_string();
        assert!(err.contains("PROACT_MQTT_KEEP_ALIVE_SECS"), "{err}");
    }
}
