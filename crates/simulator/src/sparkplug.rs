//! A Sparkplug B edge node with one device, for the demo: NBIRTH (with its NDEATH as the MQTT
//! will), DBIRTH, then a DDATA of temperature and vibration at the plan's rate; every so often
//! the device dies (DDEATH) and is born again a little later, so the dashboard shows a death
//! raising the no-data alarm at once and the birth clearing it (docs/sparkplug.md).

use std::time::Duration;

use chrono::Utc;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS};
use tokio_util::sync::CancellationToken;

use proact_sparkplug::encode::{encode_dbirth, encode_ddata, encode_ddeath, encode_nbirth, encode_ndeath};

/// What the edge node publishes.
#[derive(Debug, Clone)]
pub struct EdgeNode {
    pub host: String,
    pub port: u16,
    pub group: String,
    pub node: String,
    /// The device id, which ingest maps to the equipment id (`PROACT_INGEST_SPARKPLUG_ID=device`).
    pub device: String,
    /// DDATA per second.
    pub rate: f64,
    /// Seconds between the device's deaths; 0: it never dies.
    pub offline_every_secs: u64,
    /// Seconds the device stays dead.
    pub offline_secs: u64,
    pub seed: u64,
}

const TEMPERATURE: u64 = 1;
const VIBRATION: u64 = 2;

impl EdgeNode {
    fn topic(&self, kind: &str, device: bool) -> String {
        match device {
            true => format!("spBv1.0/{}/{kind}/{}/{}", self.group, self.node, self.device),
            false => format!("spBv1.0/{}/{kind}/{}", self.group, self.node),
        }
    }

    /// Publishes until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let bd_seq = 0;
        let mut opts = MqttOptions::new(format!("proact-sim-edge-{}", std::process::id()), &self.host, self.port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_last_will(LastWill::new(self.topic("NDEATH", false), encode_ndeath(bd_seq), QoS::AtLeastOnce, false));
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        let poller = tokio::spawn(async move {
            loop {
                if let Err(e) = eventloop.poll().await {
                    tracing::warn!(error = %e, "Sparkplug edge node: MQTT connection lost; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut seq: u8 = 0;
        let next = |s: &mut u8| {
            let v = *s;
            *s = s.wrapping_add(1);
            v
        };
        let now_ms = || Utc::now().timestamp_millis().max(0) as u64;
        let nbirth = encode_nbirth(bd_seq, next(&mut seq), now_ms(), &[]);
        client.publish(self.topic("NBIRTH", false), QoS::AtLeastOnce, false, nbirth).await?;
        let birth = |seq: u8, t: f64, v: f64| {
            encode_dbirth(seq, now_ms(), &[("temperature", TEMPERATURE, t), ("vibration", VIBRATION, v)])
        };
        client.publish(self.topic("DBIRTH", true), QoS::AtLeastOnce, false, birth(next(&mut seq), 60.0, 4.0)).await?;
        let started = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / self.rate.max(0.001)));
        let mut dead_until: Option<tokio::time::Instant> = None;
        let mut deaths = 0u64;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = tokio::time::Instant::now();
            if let Some(until) = dead_until {
                if now < until {
                    continue;
                }
                dead_until = None;
                let payload = birth(next(&mut seq), 60.0, 4.0);
                client.publish(self.topic("DBIRTH", true), QoS::AtLeastOnce, false, payload).await?;
                tracing::info!(device = %self.device, "Sparkplug device born again (DBIRTH)");
                continue;
            }
            let due = self.offline_every_secs > 0
                && now.duration_since(started).as_secs() >= self.offline_every_secs * (deaths + 1);
            if due {
                deaths += 1;
                dead_until = Some(now + Duration::from_secs(self.offline_secs));
                client
                    .publish(
                        self.topic("DDEATH", true),
                        QoS::AtLeastOnce,
                        false,
                        encode_ddeath(next(&mut seq), now_ms()),
                    )
                    .await?;
                tracing::info!(device = %self.device, secs = self.offline_secs, "Sparkplug device dead (DDEATH)");
                continue;
            }
            let t = 60.0 + rng.gen_range(-1.5..1.5);
            let v = 4.0 + rng.gen_range(-0.4..0.4);
            let payload = encode_ddata(next(&mut seq), now_ms(), &[(TEMPERATURE, t), (VIBRATION, v)]);
            client.publish(self.topic("DDATA", true), QoS::AtLeastOnce, false, payload).await?;
        }
        // A clean stop is an NDEATH too (the will is only for a lost connection).
        let _ = client.publish(self.topic("NDEATH", false), QoS::AtLeastOnce, false, encode_ndeath(bd_seq)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = client.disconnect().await;
        poller.abort();
        Ok(())
    }
}
