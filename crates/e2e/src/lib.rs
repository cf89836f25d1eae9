//! Starts the five ProAct services in-process against a [`proact_testkit::Stack`], on free
//! ports, for end-to-end tests: what a test publishes over MQTT must come out as rows in
//! PostgreSQL, entries in the dead-letter stream and alerts on a WebSocket.

use std::net::SocketAddr;

use clap::Parser;
use proact_testkit::Stack;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The five services running in this process.
pub struct Pipeline {
    pub shutdown: CancellationToken,
    pub gateway_http: SocketAddr,
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

fn common(stack: &Stack, bin: &str) -> Vec<String> {
    vec![
        bin.to_string(),
        "--redis-url".into(),
        stack.redis.url(),
        "--admin-addr".into(),
        "127.0.0.1:0".into(),
        "--grpc-addr".into(),
        "127.0.0.1:0".into(),
    ]
}

/// The trainer's flags for a test of the model registry alone: the kit's servers, free ports,
/// no schedule (the test promotes), then `extra`.
pub fn registry_config(stack: &Stack, extra: &[&str]) -> proact_trainer::Config {
    let mut args = common(stack, "proact-trainer");
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
    let mut args = common(stack, "proact-anomaly-detector");
    args.extend(["--database-url".into(), stack.postgres.url(), "--registry-url".into(), registry_url.into()]);
    args.extend(["--consumer".into(), consumer.into(), "--silence-after-secs".into(), "0".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    proact_anomaly_detector::Config::try_parse_from(args).expect("detector flags")
}

impl Pipeline {
    /// Starts every service with `extra` flags per binary name (e.g. the gateway's token).
    pub async fn start(stack: &Stack, gateway_token: Option<&str>) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let db = stack.postgres.url();
        let mut tasks = Vec::new();

        let mut a = common(stack, "proact-archive");
        a.extend([
            "--database-url".into(),
            db.clone(),
            "--block-ms".into(),
            "100".into(),
            "--consumer".into(),
            "archive-e2e".into(),
        ]);
        a.extend(internal_token());
        let archive = proact_archive::App::build(proact_archive::Config::try_parse_from(a)?).await?;
        let archive_grpc = archive.grpc_addr();
        tasks.push(tokio::spawn(archive.run_until_stopped(shutdown.clone())));

        let mut d = common(stack, "proact-anomaly-detector");
        // No registry in these tests: the detector scores with its rules.
        d.extend(["--consumer".into(), "detector-e2e".into(), "--database-url".into(), db.clone()]);
        d.extend(["--registry-url".into(), "http://127.0.0.1:9".into(), "--lease-ttl-ms".into(), "3000".into()]);
        d.extend(internal_token());
        let detector = proact_anomaly_detector::App::build(proact_anomaly_detector::Config::try_parse_from(d)?).await?;
        tasks.push(tokio::spawn(detector.run_until_stopped(shutdown.clone())));

        // The trainer's registry on a free port the gateway is told about (the trainer does not
        // report its bound address).
        let registry_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut t = vec!["proact-trainer".to_string(), "--admin-addr".into(), "127.0.0.1:0".into()];
        // The trainer publishes model events, so it needs the stack's Redis too.
        t.extend(["--redis-url".into(), stack.redis.url()]);
        t.extend(["--grpc-addr".into(), format!("127.0.0.1:{registry_port}"), "--database-url".into(), db.clone()]);
        t.extend(internal_token());
        let trainer = proact_trainer::App::build(proact_trainer::Config::try_parse_from(t)?).await?;
        tasks.push(tokio::spawn(trainer.run_until_stopped(shutdown.clone())));

        let mut g = common(stack, "proact-alert-gateway");
        g.extend(["--database-url".into(), db.clone(), "--http-addr".into(), "127.0.0.1:0".into()]);
        g.extend(["--archive-grpc-url".into(), format!("http://{archive_grpc}")]);
        g.extend(["--registry-grpc-url".into(), format!("http://127.0.0.1:{registry_port}")]);
        g.extend(internal_token());
        if let Some(t) = gateway_token {
            g.extend(["--token".into(), t.to_string()]);
        }
        let gateway = proact_alert_gateway::App::build(proact_alert_gateway::Config::try_parse_from(g)?).await?;
        let gateway_http = gateway.http_addr();
        tasks.push(tokio::spawn(gateway.run_until_stopped(shutdown.clone())));

        let mut i = common(stack, "proact-ingest");
        i.extend(["--mqtt-url".into(), stack.mqtt.url(), "--client-id".into(), "ingest-e2e".into()]);
        let ingest = proact_ingest::App::build(proact_ingest::Config::try_parse_from(i)?).await?;
        let ingest_grpc = ingest.grpc_addr();
        let ingest_ready = ingest.readiness();
        tasks.push(tokio::spawn(ingest.run_until_stopped(shutdown.clone())));
        // Publishing before ingest's subscription exists would lose QoS 1 messages at the broker.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while !ingest_ready.is_ready() {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "ingest not ready: {:?}", ingest_ready.snapshot());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }

        Ok(Self { shutdown, gateway_http, ingest_grpc, archive_grpc, tasks })
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
    use rumqttc::{Event, Packet};
    let mut opts = rumqttc::MqttOptions::new(client_id, "127.0.0.1", stack.mqtt.port());
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
