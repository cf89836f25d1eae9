//! Starts the five ProAct services in-process against a [`proact_testkit::Stack`] (or other
//! servers: [`Endpoints`], e.g. a Redis Cluster), on free ports, one replica of each or
//! several, for end-to-end tests: what a test publishes over MQTT must come out as rows in
//! PostgreSQL, entries in the dead-letter stream and alerts on a WebSocket.

use std::net::SocketAddr;

use clap::Parser;
use proact_testkit::Stack;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The five services running in this process.
pub struct Pipeline {
    pub shutdown: CancellationToken,
    /// The first gateway's HTTP address (dashboard, `/ws/alerts`).
    pub gateway_http: SocketAddr,
    /// Every gateway's, one per replica.
    pub gateways_http: Vec<SocketAddr>,
    pub ingest_grpc: SocketAddr,
    pub archive_grpc: SocketAddr,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

/// The token the archive, detector and registry gRPC APIs require in the pipeline, which the
/// detector and the gateway send to them (`PROACT_GRPC_TOKEN`).
pub const INTERNAL_TOKEN: &str = "e2e-internal-grpc-token-0123";

fn internal_token() -> [String; 2] {
    ["--grpc-token".into(), INTERNAL_TOKEN.into()]
}

/// Where the services connect: a [`Stack`]'s servers, or others (a Redis Cluster).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub mqtt_url: String,
    pub redis_url: String,
    pub database_url: String,
}

impl Endpoints {
    pub fn of(stack: &Stack) -> Self {
        Self { mqtt_url: stack.mqtt.url(), redis_url: stack.redis.url(), database_url: stack.postgres.url() }
    }
}

fn common(ep: &Endpoints, bin: &str) -> Vec<String> {
    vec![
        bin.to_string(),
        "--redis-url".into(),
        ep.redis_url.clone(),
        "--admin-addr".into(),
        "127.0.0.1:0".into(),
        "--grpc-addr".into(),
        "127.0.0.1:0".into(),
    ]
}

/// The consumer name or client id of replica `i` of a service: `base` for the first, so that
/// a one-replica pipeline keeps the names it always had.
fn replica_name(base: &str, i: usize) -> String {
    if i == 0 {
        base.to_string()
    } else {
        format!("{base}-{i}")
    }
}

/// The trainer's flags for a test of the model registry alone: the kit's servers, free ports,
/// no schedule (the test promotes), then `extra`.
pub fn registry_config(stack: &Stack, extra: &[&str]) -> proact_trainer::Config {
    let mut args = common(&Endpoints::of(stack), "proact-trainer");
    args.extend(["--database-url".into(), stack.postgres.url(), "--train-schedule".into(), "off".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    proact_trainer::Config::try_parse_from(args).expect("trainer flags")
}

/// A detector's flags against that registry: consumer `consumer`, no silence alarms (the tests
/// send one equipment), then `extra`.
pub fn detector_config(
    stack: &Stack,
    registry_url: &str,
    consumer: &str,
    extra: &[&str],
) -> proact_anomaly_detector::Config {
    let mut args = common(&Endpoints::of(stack), "proact-anomaly-detector");
    args.extend(["--database-url".into(), stack.postgres.url(), "--registry-url".into(), registry_url.into()]);
    args.extend(["--consumer".into(), consumer.into(), "--silence-after-secs".into(), "0".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    proact_anomaly_detector::Config::try_parse_from(args).expect("detector flags")
}

impl Pipeline {
    /// Starts every service once against `stack`, the gateway with `gateway_token` if given.
    pub async fn start(stack: &Stack, gateway_token: Option<&str>) -> anyhow::Result<Self> {
        Self::start_replicas(&Endpoints::of(stack), 1, gateway_token).await
    }

    /// Starts `replicas` replicas of ingest, archive, detector and gateway (and one trainer)
    /// against `ep`; returns once every ingest replica subscribed.
    pub async fn start_replicas(ep: &Endpoints, replicas: usize, gateway_token: Option<&str>) -> anyhow::Result<Self> {
        anyhow::ensure!(replicas > 0, "at least one replica of each service");
        let shutdown = CancellationToken::new();
        let db = ep.database_url.clone();
        let mut tasks = Vec::new();

        let mut archives = Vec::new();
        for r in 0..replicas {
            let mut a = common(ep, "proact-archive");
            a.extend([
                "--database-url".into(),
                db.clone(),
                "--block-ms".into(),
                "100".into(),
                "--consumer".into(),
                replica_name("archive-e2e", r),
            ]);
            a.extend(internal_token());
            let archive = proact_archive::App::build(proact_archive::Config::try_parse_from(a)?).await?;
            archives.push(archive.grpc_addr());
            tasks.push(tokio::spawn(archive.run_until_stopped(shutdown.clone())));
        }
        let archive_grpc = archives[0];

        for r in 0..replicas {
            let mut d = common(ep, "proact-anomaly-detector");
            // No registry in these tests: the detector scores with its rules.
            d.extend(["--consumer".into(), replica_name("detector-e2e", r), "--database-url".into(), db.clone()]);
            d.extend(["--registry-url".into(), "http://127.0.0.1:9".into(), "--lease-ttl-ms".into(), "3000".into()]);
            d.extend(internal_token());
            let detector =
                proact_anomaly_detector::App::build(proact_anomaly_detector::Config::try_parse_from(d)?).await?;
            tasks.push(tokio::spawn(detector.run_until_stopped(shutdown.clone())));
        }

        // The trainer's registry on a free port the gateway is told about (the trainer does not
        // report its bound address).
        let registry_port = proact_testkit::free_port()?;
        let mut t = vec!["proact-trainer".to_string(), "--admin-addr".into(), "127.0.0.1:0".into()];
        // The trainer publishes model events, so it needs the stack's Redis too.
        t.extend(["--redis-url".into(), ep.redis_url.clone()]);
        t.extend(["--grpc-addr".into(), format!("127.0.0.1:{registry_port}"), "--database-url".into(), db.clone()]);
        t.extend(internal_token());
        let trainer = proact_trainer::App::build(proact_trainer::Config::try_parse_from(t)?).await?;
        tasks.push(tokio::spawn(trainer.run_until_stopped(shutdown.clone())));

        let mut gateways_http = Vec::new();
        // Gateway replica r reads recent telemetry from archive replica r.
        for archive in &archives {
            let mut g = common(ep, "proact-alert-gateway");
            g.extend(["--database-url".into(), db.clone(), "--http-addr".into(), "127.0.0.1:0".into()]);
            g.extend(["--archive-grpc-url".into(), format!("http://{archive}")]);
            g.extend(["--registry-grpc-url".into(), format!("http://127.0.0.1:{registry_port}")]);
            g.extend(internal_token());
            if let Some(t) = gateway_token {
                g.extend(["--token".into(), t.to_string()]);
            }
            let gateway = proact_alert_gateway::App::build(proact_alert_gateway::Config::try_parse_from(g)?).await?;
            gateways_http.push(gateway.http_addr());
            tasks.push(tokio::spawn(gateway.run_until_stopped(shutdown.clone())));
        }

        let mut ingest_grpc = Vec::new();
        let mut ingest_ready = Vec::new();
        for r in 0..replicas {
            let mut i = common(ep, "proact-ingest");
            i.extend(["--mqtt-url".into(), ep.mqtt_url.clone(), "--client-id".into(), replica_name("ingest-e2e", r)]);
            let ingest = proact_ingest::App::build(proact_ingest::Config::try_parse_from(i)?).await?;
            ingest_grpc.push(ingest.grpc_addr());
            ingest_ready.push(ingest.readiness());
            tasks.push(tokio::spawn(ingest.run_until_stopped(shutdown.clone())));
        }
        // Publishing before ingest's subscription exists would lose QoS 1 messages at the broker.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        for ready in &ingest_ready {
            while !ready.is_ready() {
                anyhow::ensure!(tokio::time::Instant::now() < deadline, "ingest not ready: {:?}", ready.snapshot());
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }

        Ok(Self {
            shutdown,
            gateway_http: gateways_http[0],
            gateways_http,
            ingest_grpc: ingest_grpc[0],
            archive_grpc,
            tasks,
        })
    }

    /// Sends the shutdown signal and waits for every service to drain.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for t in self.tasks {
            t.await??;
        }
        Ok(())
    }
}

/// Loads the sample reference data of `data/` (AMDEC, GMAO history, workload) into the
/// stack's database, as `proact-trainer load-reference` does.
pub async fn load_sample_data(stack: &Stack) -> anyhow::Result<()> {
    let mut pg = proact_dataprep::load::connect(&stack.postgres.url()).await?;
    let data = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data");
    proact_dataprep::load::load_dir(&mut pg, &data).await?;
    Ok(())
}

/// A sensor on the stack's broker (client id `client_id`, request channel of `capacity`):
/// one unit arrives on the returned channel for each PUBACK.
pub fn sensor(
    stack: &Stack,
    client_id: &str,
    capacity: usize,
) -> (rumqttc::AsyncClient, tokio::sync::mpsc::UnboundedReceiver<()>) {
    sensor_on(stack.mqtt.port(), client_id, capacity)
}

/// [`sensor`] on the broker at 127.0.0.1:`port`.
pub fn sensor_on(
    port: u16,
    client_id: &str,
    capacity: usize,
) -> (rumqttc::AsyncClient, tokio::sync::mpsc::UnboundedReceiver<()>) {
    use rumqttc::{Event, Packet};
    let mut opts = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_keep_alive(std::time::Duration::from_secs(30));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, capacity);
    let (acked_tx, acked) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    let _ = acked_tx.send(());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    });
    (client, acked)
}

/// Waits until `probe` is true, trying every 100 ms; panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: std::time::Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !probe().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
