//! Publishes the fleet's readings over MQTT in real time: seed-shaped JSON on
//! `sensors/{id}/telemetry` at QoS 1, with failure episodes that drive the signals past the
//! critical threshold, and optionally a share of malformed messages to exercise the
//! dead-letter path.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, QoS};
use tokio_util::sync::CancellationToken;

use crate::reading::reading;
use proact_store::taxonomy::{episodes, fleet};

/// What to publish.
#[derive(Debug, Clone)]
pub struct Plan {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// Readings per second per equipment.
    pub rate: f64,
    /// Readings per equipment before stopping; 0: run until cancelled.
    pub count: u64,
    /// Mean gap between failure episodes of one equipment, seconds.
    pub episode_every_secs: i64,
    /// Length of an episode, seconds.
    pub episode_secs: i64,
    /// One message in this many is malformed on purpose; 0: none.
    pub malformed_every: u64,
    pub seed: u64,
    /// Restrict to these equipment ids; empty: the whole fleet.
    pub only: Vec<String>,
}

/// Publishes until the plan's count is reached or `stop` is cancelled; returns how many
/// messages the broker acknowledged.
pub async fn run(plan: Plan, stop: CancellationToken) -> anyhow::Result<u64> {
    let mut opts = MqttOptions::new(plan.client_id.clone(), plan.host.clone(), plan.port);
    opts.set_keep_alive(Duration::from_secs(30)).set_inflight(200);
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let acked2 = acked.clone();
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    acked2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "MQTT connection lost; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    let machines: Vec<_> = fleet().into_iter().filter(|e| plan.only.is_empty() || plan.only.contains(&e.id)).collect();
    let start = Utc::now().timestamp();
    let horizon = start + 30 * 86_400;
    let schedule: Vec<_> = machines
        .iter()
        .map(|eq| episodes(plan.seed, eq, start, horizon, plan.episode_every_secs.max(1), plan.episode_secs.max(1)))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let period = Duration::from_secs_f64(1.0 / plan.rate.max(0.001));
    let mut tick = tokio::time::interval(period);
    let mut sent: u64 = 0;
    let mut n: u64 = 0;
    'outer: loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = Utc::now();
        let t = now.timestamp();
        for (eq, eps) in machines.iter().zip(&schedule) {
            let ep = eps.iter().find(|e| e.start <= t && t < e.end);
            let s = reading(eq, t, ep.map(|e| &e.mode), ep.map(|e| e.degradation(t)).unwrap_or(0.0), &mut rng);
            let topic = format!("sensors/{}/telemetry", eq.id);
            sent += 1;
            let payload = if plan.malformed_every > 0 && sent % plan.malformed_every == 0 {
                malformed(&eq.id, rng.gen_range(0..4))
            } else {
                format!(
                    r#"{{"equipement_id":"{}","temperature":{},"vibration":{},"pressure":{},"current":{},"timestamp":"{}"}}"#,
                    eq.id,
                    s.temperature,
                    s.vibration,
                    s.pressure,
                    s.current,
                    now.to_rfc3339_opts(SecondsFormat::Millis, true)
                )
            };
            client.publish(topic, QoS::AtLeastOnce, false, payload.into_bytes()).await?;
        }
        n += 1;
        if plan.count > 0 && n >= plan.count {
            break 'outer;
        }
    }
    // Let the last acknowledgements arrive.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while acked.load(std::sync::atomic::Ordering::Relaxed) < sent && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), poller).await;
    Ok(acked.load(std::sync::atomic::Ordering::Relaxed))
}

fn malformed(id: &str, kind: u32) -> String {
    match kind {
        0 => "{not json".to_string(),
        1 => format!(r#"{{"equipement_id":"{id}","vibration":1.0,"timestamp":"2024-03-20T10:00:00Z"}}"#),
        2 => format!(
            r#"{{"equipement_id":"{id}","temperature":"hot","vibration":1.0,"timestamp":"2024-03-20T10:00:00Z"}}"#
        ),
        _ => format!(r#"{{"equipement_id":"{id}","temperature":50,"vibration":1.0,"timestamp":"20/03/2024"}}"#),
    }
}
