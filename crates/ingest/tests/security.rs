//! Refusals at the transport: the broker's password, TLS to the broker (rustls, CA and
//! client certificate from files), and mutual TLS on gRPC. Each refusal is checked next to
//! the accepted case, with real Mosquitto and Redis.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use common::*;
use proact_ingest::{App, Config};
use proact_proto::v1::ingest_client::IngestClient;
use proact_proto::v1::{PublishRequest, Telemetry};
use proact_testkit::pki::Pki;
use proact_testkit::{Mosquitto, MosquittoOptions, Redis};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use tokio_util::sync::CancellationToken;

/// Starts ingest without waiting for readiness; returns (readiness, shutdown, task).
async fn spawn(
    args: Vec<String>,
) -> (proact_server::Readiness, CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let app = App::build(Config::try_parse_from(args).unwrap()).await.expect("builds");
    let ready = app.readiness();
    let stop = CancellationToken::new();
    (ready, stop.clone(), tokio::spawn(app.run_until_stopped(stop)))
}

/// `true` if ingest got connected and subscribed within a few seconds.
async fn becomes_ready(args: Vec<String>) -> bool {
    let (ready, stop, task) = spawn(args).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut ok = false;
    while tokio::time::Instant::now() < deadline {
        if ready.is_ready() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let _ = task.await;
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_password_is_required() {
    let opts = MosquittoOptions { users: vec![("ingest".into(), "pa55".into())], ..Default::default() };
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start_secured(opts), Redis::start()).unwrap();
    let a = |extra: &[&str]| args(&mqtt.url(), &redis.url(), "ingest-auth", extra);
    assert!(!becomes_ready(a(&[])).await, "anonymous is refused");
    assert!(
        !becomes_ready(a(&["--mqtt-username", "ingest", "--mqtt-password", "wrong"])).await,
        "bad password refused"
    );
    assert!(
        becomes_ready(a(&["--mqtt-username", "ingest", "--mqtt-password", "pa55"])).await,
        "right password accepted"
    );
}

/// Publishes `(topic, payload)` pairs as `user` and waits for every PUBACK.
async fn publish_as(port: u16, user: &str, password: &str, msgs: &[(String, String)]) {
    let mut opts = MqttOptions::new(format!("dev-{user}"), "127.0.0.1", port);
    opts.set_credentials(user, password);
    let msgs: Vec<(String, Vec<u8>)> = msgs.iter().map(|(t, p)| (t.clone(), p.clone().into_bytes())).collect();
    publish_acked(opts, &msgs).await;
}

/// Devices provisioned with `proact-device add` against the shipped ACL: each publishes
/// under its own id only. PUMP-01 publishing as PUMP-02 (topic and payload agree, so
/// ingest's own check cannot tell) never reaches the streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_publishes_as_itself_only() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let allow = dir.path().join("allow.txt");
    let mut creds = std::collections::HashMap::new();
    for id in ["PUMP-01", "PUMP-02"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_proact-device"))
            .args(["add", id, "--passwd-file"])
            .arg(&passwd)
            .arg("--allowlist-file")
            .arg(&allow)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let device: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(device["topic"], format!("sensors/{id}/telemetry"));
        creds.insert(id, device["password"].as_str().unwrap().to_string());
    }
    assert_eq!(std::fs::read_to_string(&allow).unwrap(), "PUMP-01\nPUMP-02\n");
    let acl = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/docker/mosquitto-acl.conf");
    let opts = MosquittoOptions {
        users: vec![("proact-ingest".into(), "ingest-pw".into())],
        password_file: Some(passwd),
        acl_file: Some(acl),
        ..Default::default()
    };
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start_secured(opts), Redis::start()).unwrap();
    let r = common::redis(&redis.url()).await;
    let allow_arg = allow.display().to_string();
    let ingest = start_ingest(
        &mqtt.url(),
        &redis.url(),
        "ingest-acl",
        &["--mqtt-username", "proact-ingest", "--mqtt-password", "ingest-pw", "--allowlist", &allow_arg],
    )
    .await;
    let base = base_micros();
    let reading = |id: &str, i: u64| (format!("sensors/{id}/telemetry"), payload(id, ts_micros(base, i), i));
    publish_as(mqtt.port(), "PUMP-01", &creds["PUMP-01"], &[reading("PUMP-01", 0), reading("PUMP-02", 1)]).await;
    // PUMP-01's last reading and PUMP-02's own come after the spoof on their connections:
    // once both are stored, the spoof had its chance.
    publish_as(mqtt.port(), "PUMP-01", &creds["PUMP-01"], &[reading("PUMP-01", 2)]).await;
    publish_as(mqtt.port(), "PUMP-02", &creds["PUMP-02"], &[reading("PUMP-02", 3)]).await;
    let (_, distinct) = wait_for_distinct(&r, 3, Duration::from_secs(20)).await;
    assert_eq!(distinct, 3);
    let (_, stored) = stream_contents(&r).await;
    let mut stored: Vec<_> = stored.into_iter().map(|(id, ts)| (id, (ts - base) / 1000)).collect();
    stored.sort();
    assert_eq!(stored, [("PUMP-01".to_string(), 0), ("PUMP-01".to_string(), 2), ("PUMP-02".to_string(), 3)]);
    ingest.stop().await;
}

async fn tls_publish(port: u16, tls: Arc<rustls::ClientConfig>, body: String) {
    let mut opts = MqttOptions::new("sensor-tls", "127.0.0.1", port);
    opts.set_transport(Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls)));
    let (client, mut ev) = AsyncClient::new(opts, 10);
    client.publish("sensors/T-1/telemetry", QoS::AtLeastOnce, false, body).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no PUBACK over TLS");
        if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
            tokio::time::timeout(Duration::from_secs(2), ev.poll()).await
        {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_tls_with_client_certificate() {
    let pki = Pki::new().unwrap();
    let other = Pki::new().unwrap();
    let opts = MosquittoOptions {
        tls: Some((pki.path("ca.pem"), pki.path("server.pem"), pki.path("server.key"))),
        require_client_cert: true,
        ..Default::default()
    };
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start_secured(opts), Redis::start()).unwrap();
    let url = format!("mqtts://127.0.0.1:{}", mqtt.port());
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    let a = |ca: &Path, client: bool| {
        let mut e = vec!["--mqtt-ca-file".to_string(), s(ca.to_path_buf())];
        if client {
            e.extend([
                "--mqtt-cert-file".into(),
                s(pki.path("client.pem")),
                "--mqtt-key-file".into(),
                s(pki.path("client.key")),
            ]);
        }
        let e: Vec<&str> = e.iter().map(String::as_str).collect();
        args(&url, &redis.url(), "ingest-tls", &e)
    };
    // mqtts:// without a CA is a configuration error.
    let c = Config::try_parse_from(args(&url, &redis.url(), "x", &[])).unwrap();
    assert_eq!(c.validate().unwrap_err().setting, "PROACT_MQTT_CA_FILE");
    assert!(!becomes_ready(a(&other.path("ca.pem"), true)).await, "a broker certificate from another CA is refused");
    assert!(!becomes_ready(a(&pki.path("ca.pem"), false)).await, "the broker refuses a client without a certificate");

    let r = common::redis(&redis.url()).await;
    let (ready, stop, task) = spawn(a(&pki.path("ca.pem"), true)).await;
    wait_until(Duration::from_secs(20), || ready.is_ready()).await;
    let tls = proact_ingest::security::mqtt_tls(
        &pki.path("ca.pem"),
        Some((&pki.path("client.pem"), &pki.path("client.key"))),
    )
    .unwrap();
    let base = base_micros();
    tls_publish(mqtt.port(), Arc::new(tls), payload("T-1", base, 1)).await;
    let (_, n) = wait_for_distinct(&r, 1, Duration::from_secs(20)).await;
    assert_eq!(n, 1, "a reading over TLS reaches the streams");
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_mutual_tls_refuses_clients_without_a_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = Pki::new().unwrap();
    let (mqtt, redis) = tokio::try_join!(Mosquitto::start(), Redis::start()).unwrap();
    let s = |n: &str| pki.path(n).to_str().unwrap().to_string();
    let (cert, key, ca) = (s("server.pem"), s("server.key"), s("ca.pem"));
    let ingest = start_ingest(
        &mqtt.url(),
        &redis.url(),
        "ingest-mtls",
        &["--grpc-tls-cert", &cert, "--grpc-tls-key", &key, "--grpc-client-ca", &ca],
    )
    .await;
    let read = |n: &str| std::fs::read(pki.path(n)).unwrap();
    let ca_cert = tonic::transport::Certificate::from_pem(read("ca.pem"));
    let endpoint = || tonic::transport::Endpoint::from_shared(format!("https://{}", ingest.grpc)).unwrap();
    let item = Telemetry {
        equipement_id: "M-1".into(),
        ts_micros: base_micros(),
        temperature: 1.0,
        vibration: 2.0,
        ..Default::default()
    };

    // TLS, but no client certificate: the handshake (or the first call) fails.
    let no_cert = tonic::transport::ClientTlsConfig::new().ca_certificate(ca_cert.clone()).domain_name("localhost");
    let refused = match endpoint().tls_config(no_cert).unwrap().connect().await {
        Err(_) => true,
        Ok(ch) => IngestClient::new(ch).publish(PublishRequest { items: vec![item.clone()] }).await.is_err(),
    };
    assert!(refused, "a client without a certificate is refused");
    // Plain text against a TLS server fails too.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", ingest.grpc)).unwrap();
    let refused = match plain.connect().await {
        Err(_) => true,
        Ok(ch) => IngestClient::new(ch).publish(PublishRequest { items: vec![item.clone()] }).await.is_err(),
    };
    assert!(refused, "plain text is refused");

    let with_cert = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(ca_cert)
        .domain_name("localhost")
        .identity(tonic::transport::Identity::from_pem(read("client.pem"), read("client.key")));
    let ch = endpoint().tls_config(with_cert).unwrap().connect().await.expect("mTLS connects");
    let resp = IngestClient::new(ch).publish(PublishRequest { items: vec![item] }).await.unwrap().into_inner();
    assert_eq!(resp.accepted, 1);
    ingest.stop().await;
}
