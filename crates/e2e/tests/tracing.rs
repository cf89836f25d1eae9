//! One reading, one trace: with an OTLP endpoint configured, a hot reading published over
//! MQTT must come out as one connected trace across ingest, archive, detector and gateway,
//! received by a real OTLP/gRPC collector (a small one in this test), and a gRPC call that
//! carries a `traceparent` must be continued by the server it reaches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A span as the collector received it, with the service that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

#[derive(Default, Clone)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut out = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    AnyValue::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(Received {
                        service: service.clone(),
                        name: s.name,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn rfc3339_now() -> String {
    // The broker and the services share this clock; a reading a second old is current.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - 1;
    chrono::DateTime::from_timestamp(now, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_reading_is_one_trace_from_mqtt_to_the_websocket() {
    // The collector, on a free port, before any service starts.
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    // Every service of this process reads its settings from the environment as in production.
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{port}"));
    std::env::set_var("PROACT_TRACE_SAMPLE_RATIO", "1");
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");

    let stack = proact_testkit::Stack::start().await.expect("real servers start");
    let pipeline = proact_e2e::Pipeline::start(&stack, None).await.expect("services start");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/alerts", pipeline.gateway_http))
        .await
        .expect("ws connects");

    let mut opts = MqttOptions::new("trace-sensor", "127.0.0.1", stack.mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let acked = tokio::spawn(async move {
        loop {
            if let Ok(Event::Incoming(Packet::PubAck(_))) = eventloop.poll().await {
                return;
            }
        }
    });
    let payload =
        format!(r#"{{"equipement_id":"PUMP-42","temperature":95.5,"vibration":3.1,"timestamp":"{}"}}"#, rfc3339_now());
    client.publish("sensors/PUMP-42/telemetry", QoS::AtLeastOnce, false, payload).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), acked).await.expect("the broker acks").unwrap();

    // The alert reaches the dashboard client, stamped with the trace id.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let alert = loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.expect("alert arrives").unwrap().unwrap();
        let WsMessage::Text(text) = msg else { continue };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if v["type"] == "alert" {
            break v;
        }
    };
    let trace_id = alert["alert"]["trace_id"].as_str().expect("the alert carries a trace id").to_string();
    assert_eq!(trace_id.len(), 32, "a W3C trace id: {trace_id}");

    // A gRPC call carrying a trace context is continued by the server (the tower layer).
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut archive =
        proact_proto::v1::archive_client::ArchiveClient::connect(format!("http://{}", pipeline.archive_grpc))
            .await
            .unwrap();
    let mut req = tonic::Request::new(proact_proto::v1::TelemetryRangeRequest {
        equipement_id: "PUMP-42".into(),
        from_micros: 0,
        to_micros: i64::MAX / 2,
        limit: 10,
    });
    req.metadata_mut().insert("traceparent", format!("00-{caller_trace}-{caller_span}-01").parse().unwrap());
    req.metadata_mut().insert("authorization", format!("Bearer {}", proact_e2e::INTERNAL_TOKEN).parse().unwrap());
    let mut points = archive.query_range(req).await.expect("query runs").into_inner();
    while points.message().await.unwrap().is_some() {}

    // Wait until every part of the trace has been exported (batches go out every 100 ms).
    let want = [
        ("proact-ingest", "ingest.accept"),
        ("proact-archive", "archive.store"),
        ("proact-anomaly-detector", "detector.score"),
        ("proact-alert-gateway", "gateway.broadcast"),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans: Vec<Received> = collector.spans.lock().unwrap().clone();
        let of_trace: Vec<Received> = spans.iter().filter(|s| s.trace_id == trace_id).cloned().collect();
        let complete = want.iter().all(|(svc, name)| of_trace.iter().any(|s| s.service == *svc && s.name == *name))
            && spans.iter().any(|s| s.trace_id == caller_trace);
        if complete {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trace {trace_id} incomplete; received: {:#?}",
            spans.iter().map(|s| (&s.service, &s.name, &s.trace_id)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // One connected trace: each span of the reading's path hangs below the one before it.
    let of_trace: HashMap<&str, &Received> =
        spans.iter().filter(|s| s.trace_id == trace_id).map(|s| (s.name.as_str(), s)).collect();
    let ingest = of_trace["ingest.accept"];
    assert_eq!(ingest.parent_span_id, "", "ingest starts the trace");
    assert_eq!(of_trace["archive.store"].parent_span_id, ingest.span_id, "archive continues ingest's span");
    let detector = of_trace["detector.score"];
    assert_eq!(detector.parent_span_id, ingest.span_id, "the detector continues ingest's span");
    assert_eq!(
        of_trace["gateway.broadcast"].parent_span_id, detector.span_id,
        "the gateway continues the scoring that raised the alert"
    );
    // Nothing else of the reading went into another trace.
    let ingest_traces: Vec<&Received> =
        spans.iter().filter(|s| s.name == "ingest.accept" && s.service == "proact-ingest").collect();
    assert_eq!(ingest_traces.len(), 1, "one reading, one trace: {ingest_traces:#?}");

    let grpc = spans.iter().find(|s| s.trace_id == caller_trace).expect("the archive continued the caller's trace");
    assert_eq!(grpc.service, "proact-archive");
    assert_eq!(grpc.name, "/proact.v1.Archive/QueryRange");
    assert_eq!(grpc.parent_span_id, caller_span);

    pipeline.stop().await.expect("services drain cleanly");
}
