//! What the operator's tools read is what the services export: after traffic through the
//! five services, every `proact_*` metric they render is in a service's `METRICS` catalogue
//! (with its kind and a name that follows `proact_<service>_<what>_<unit>`), every counter
//! of the catalogues is there from the start, and every metric the Grafana dashboard and the
//! Prometheus alert rules in `deploy/observability/` use is one the services export (and
//! the chart ships the same two files).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use proact_server::telemetry::{Kind, Metric};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

fn catalogue() -> BTreeMap<&'static str, (Kind, &'static str)> {
    let all: [(&str, &[Metric]); 5] = [
        ("ingest", proact_ingest::METRICS),
        ("archive", proact_archive::METRICS),
        ("detector", proact_anomaly_detector::METRICS),
        ("gateway", proact_alert_gateway::METRICS),
        ("trainer", proact_trainer::METRICS),
    ];
    let mut out = BTreeMap::new();
    for (service, metrics) in all {
        for m in metrics {
            assert!(out.insert(m.name, (m.kind, service)).is_none(), "{} listed twice", m.name);
            assert!(!m.help.is_empty(), "{} has no help text", m.name);
        }
    }
    out
}

/// `proact_<service>_<what>` names in a text (PromQL in JSON or YAML), histogram series
/// suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("proact_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_')
        {
            end += 1;
        }
        let name = &text[start..end];
        let name = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        out.insert(name.to_string());
        i = end;
    }
    out
}

fn repo_file(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn catalogue_names_follow_the_convention() {
    for (name, (kind, service)) in catalogue() {
        let prefix = format!("proact_{service}_");
        assert!(name.starts_with(&prefix), "{name} should start with {prefix}");
        assert!(name.len() > prefix.len(), "{name} says nothing after the service");
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{name}");
        match kind {
            Kind::Counter => assert!(name.ends_with("_total"), "counter {name} should end with _total"),
            Kind::Histogram => assert!(
                ["_seconds", "_size", "_entries"].iter().any(|u| name.ends_with(u)),
                "histogram {name} should end with its unit (_seconds, _size, _entries)"
            ),
            Kind::Gauge => assert!(!name.ends_with("_total"), "gauge {name} must not look like a counter"),
        }
    }
}

#[test]
fn dashboard_and_alert_rules_use_only_exported_metrics() {
    let cat = catalogue();
    let dashboard = repo_file("deploy/observability/grafana-dashboard.json");
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let mut exprs = 0;
    for p in parsed["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("panel {} has no targets", p["title"]));
        assert!(!targets.is_empty(), "panel {} queries nothing", p["title"]);
        for t in targets {
            assert!(!t["expr"].as_str().unwrap_or_default().is_empty(), "panel {} has an empty query", p["title"]);
            exprs += 1;
        }
    }
    assert!(exprs > 20, "only {exprs} queries in the dashboard");

    let rules = repo_file("deploy/observability/prometheus-rules.yaml");
    let count = |needle: &str| rules.lines().filter(|l| l.trim_start().starts_with(needle)).count();
    let alerts = count("- alert:");
    assert!(alerts >= 8, "only {alerts} alert rules");
    assert_eq!(count("expr:"), alerts, "every rule has an expression");
    assert_eq!(count("severity:"), alerts, "every rule has a severity");
    assert_eq!(count("summary:"), alerts, "every rule has a summary");

    for (file, text) in [("grafana-dashboard.json", &dashboard), ("prometheus-rules.yaml", &rules)] {
        assert!(
            repo_file(&format!("k8s/proact/files/{file}")) == *text,
            "the chart's copy of {file} differs: cp deploy/observability/{file} k8s/proact/files/"
        );
        let used = metric_names(text);
        assert!(used.len() > 5, "{file} uses {used:?}");
        for name in used {
            assert!(cat.contains_key(name.as_str()), "{file} uses {name}, which no service exports");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn running_services_export_their_catalogue() {
    let stack = proact_testkit::Stack::start().await.expect("real servers start");
    let pipeline = proact_e2e::Pipeline::start(&stack, None).await.expect("services start");

    // A little traffic: readings, one hot, one malformed.
    let mut opts = MqttOptions::new("metrics-sensor", "127.0.0.1", stack.mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let acks = tokio::spawn(async move {
        let mut n = 0;
        while n < 6 {
            if let Ok(Event::Incoming(Packet::PubAck(_))) = eventloop.poll().await {
                n += 1;
            }
        }
    });
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for (i, temp) in [60.0, 61.0, 62.0, 95.0, 63.0].into_iter().enumerate() {
        let ts = chrono::DateTime::from_timestamp(now - 10 + i as i64, 0).unwrap().to_rfc3339();
        let p = format!(r#"{{"equipement_id":"FAN-01","temperature":{temp},"vibration":2.0,"timestamp":"{ts}"}}"#);
        client.publish("sensors/FAN-01/telemetry", QoS::AtLeastOnce, false, p).await.unwrap();
    }
    client.publish("sensors/FAN-01/telemetry", QoS::AtLeastOnce, false, "{oops").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), acks).await.expect("acked").unwrap();

    // Wait for the pipeline to have done its work: rows stored, the alert published.
    let rendered = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let text = proact_server::telemetry::metrics_handle().render();
            let done = ["proact_archive_rows_written_total 5", "proact_detector_alert_events_total 1"]
                .iter()
                .all(|l| text.lines().any(|x| x == *l))
                && text.contains("proact_archive_stream_lag_entries");
            if done {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the pipeline processes the readings");

    let cat = catalogue();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    for line in rendered.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(n), Some(k)) = (parts.next(), parts.next()) {
                types.insert(n.to_string(), k.to_string());
            }
        }
    }
    for (name, kind) in &types {
        if !name.starts_with("proact_") {
            continue;
        }
        let (want, _) =
            cat.get(name.as_str()).unwrap_or_else(|| panic!("{name} is exported but in no METRICS catalogue"));
        let want = match want {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert_eq!(kind, want, "{name} is exported as a {kind}");
    }
    for (name, (kind, _)) in &cat {
        if *kind == Kind::Counter {
            assert!(types.contains_key(*name), "counter {name} is not exported from the start");
        }
    }
    // Labelled counters start at 0 for every known label, and count what happened.
    assert!(rendered.contains(r#"proact_ingest_rejected_total{reason="invalid_json"} 1"#), "{rendered}");
    assert!(rendered.contains(r#"proact_ingest_rejected_total{reason="oversize"} 0"#));
    assert!(rendered.contains("# HELP proact_ingest_accepted_total"), "help text is exported");

    pipeline.stop().await.expect("services drain cleanly");
}
