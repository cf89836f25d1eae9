//! What tracing costs per reading on the hot path (ingest's `begin` + `inject` + `end`,
//! the detector's `follow`), side by side: tracing off, on but the reading not sampled, and
//! sampled. The exporter points at a closed port, so sampled spans are queued and dropped as
//! in production with the collector away (never waited for).
//!
//! `cargo bench -p proact-server --bench tracing`

use std::collections::HashMap;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use proact_server::otel::{KeyValue, TraceArgs, Tracing};

fn tracing_with(ratio: f64) -> Tracing {
    let args = TraceArgs { otlp_endpoint: Some("http://127.0.0.1:9".into()), trace_sample_ratio: ratio };
    Tracing::start("bench", &args).expect("tracer builds")
}

fn per_reading(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let cases =
        [("off", Tracing::disabled()), ("on, not sampled", tracing_with(0.0)), ("on, sampled", tracing_with(1.0))];
    let mut g = c.benchmark_group("ingest: begin + inject + end");
    for (name, t) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut carrier: HashMap<String, String> = HashMap::new();
                // As ingest does it: attributes only once sampled.
                if let Some(mut span) = t.begin("ingest.accept", &carrier, SystemTime::now(), Vec::new()) {
                    span.set_attribute(KeyValue::new("equipement_id", "PUMP-01"));
                    span.inject(&mut carrier);
                    span.end();
                }
                carrier
            })
        });
    }
    g.finish();

    // Downstream: a reading without a trace (the common case) and one with a sampled trace.
    let mut traced = HashMap::new();
    traced.insert("traceparent".to_string(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string());
    let untraced: HashMap<String, String> = HashMap::new();
    let on = tracing_with(1.0);
    let mut g = c.benchmark_group("detector: follow + end");
    g.bench_function("reading without a trace", |b| {
        b.iter(|| on.follow("detector.score", &untraced, SystemTime::now(), Vec::new()).map(|s| s.end()))
    });
    g.bench_function("reading with a sampled trace", |b| {
        b.iter(|| on.follow("detector.score", &traced, SystemTime::now(), Vec::new()).map(|s| s.end()))
    });
    g.finish();
}

criterion_group!(benches, per_reading);
criterion_main!(benches);
