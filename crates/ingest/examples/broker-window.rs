//! Does a broker hold its in-flight window for a subscriber with manual acks? Ingest relies
//! on it to bound its batches (docs/deploy.md, "MQTT broker").
//!
//! `cargo run --release -p proact-ingest --example broker-window -- mqtt://127.0.0.1:1883 [N]`
//! subscribes with a persistent session and manual acks, publishes N (20,000) QoS 1 messages,
//! and prints how many arrive before any ack (the window), then after acking those, how many
//! more arrive within a second without further acks. A broker that keeps to its window sends
//! about one window more; Mosquitto 2.0.11 sends everything it holds.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

fn drain(rx: &mut UnboundedReceiver<Publish>) -> Vec<Publish> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "mqtt://127.0.0.1:1883".into());
    let n: usize = std::env::args().nth(2).map(|v| v.parse()).transpose()?.unwrap_or(20_000);
    let args = proact_server::config::MqttArgs { mqtt_url: url, mqtt_username: None, mqtt_password: None };
    let (host, port, _tls) = args.endpoint()?;
    let topic = format!("proact-broker-window/{}", std::process::id());

    let mut opts = MqttOptions::new(format!("broker-window-sub-{}", std::process::id()), host.clone(), port);
    opts.set_clean_session(false).set_manual_acks(true);
    let (sub, mut sub_loop) = AsyncClient::new(opts, 100_000);
    sub.subscribe(topic.clone(), QoS::AtLeastOnce).await?;
    let (tx, mut rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Ok(ev) = sub_loop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = ev {
                let _ = tx.send(p);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (publisher, mut pub_loop) = AsyncClient::new(MqttOptions::new("broker-window-pub", host, port), 10_000);
    tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    for _ in 0..n {
        publisher.publish(topic.clone(), QoS::AtLeastOnce, false, vec![b'x'; 100]).await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first = drain(&mut rx);
    println!("{} of {n} arrived before any ack (the broker's window)", first.len());
    for p in &first {
        sub.ack(p).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let more = drain(&mut rx);
    println!(
        "after acking those {}, {} more arrived without further acks ({})",
        first.len(),
        more.len(),
        if more.len() > first.len() { "the window is NOT held" } else { "the window is held" }
    );
    for p in &more {
        sub.ack(p).await?;
    }
    let _ = sub.unsubscribe(topic).await;
    Ok(())
}
