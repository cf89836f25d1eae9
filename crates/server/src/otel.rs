//! OpenTelemetry tracing of readings through the pipeline, exported over OTLP/gRPC when an
//! endpoint is configured and free when it is not.
//!
//! One trace follows one reading: ingest starts it (a root span per sampled reading, the
//! head-sampling decision), and writes its W3C `traceparent` into the reading's
//! `trace_context`, which the stream entries carry. Archive, detector and gateway continue
//! it from there (the detector puts its own span's context on the alert events it emits, so
//! the gateway's span hangs below the scoring that raised the alert). gRPC calls carry the
//! context in their headers through the tower layers in [`crate::grpc`].
//!
//! Each service builds its own [`Tracing`] (its own provider, `service.name` resource and
//! exporter) instead of a process-global one, so that several services started in one
//! process (the end-to-end tests) still report as themselves.
//!
//! Cost: with no endpoint every call returns at once; with one, an unsampled reading costs a
//! sampler decision and nothing is injected, so downstream services skip it on a map lookup.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
pub use opentelemetry::trace::SpanKind as Kind;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
pub use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::config::ConfigError;
pub use crate::config::TraceArgs;

/// A service's tracer, or nothing when no endpoint is configured. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tracing {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// The share of incoming items traced, applied at the edge to callers' traces too.
    ratio: f64,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing").field("enabled", &self.enabled()).finish()
    }
}

impl Tracing {
    /// No tracing: every span request returns `None`.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Builds the service's tracer and its batch exporter (must run inside the Tokio runtime,
    /// which drives the exporter's connection). The collector need not be up: spans queue
    /// (bounded) and are dropped, never blocking, when it stays away.
    pub fn start(service: &'static str, args: &TraceArgs) -> Result<Self, ConfigError> {
        args.validate()?;
        let Some(endpoint) = &args.otlp_endpoint else { return Ok(Self::disabled()) };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint, e.to_string()))?;
        let name = format!("proact-{service}");
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(args.trace_sample_ratio))))
            .with_resource(Resource::builder().with_service_name(name.clone()).build())
            .build();
        let tracer = provider.tracer(name);
        tracing::info!(endpoint = %endpoint, sample_ratio = args.trace_sample_ratio, "exporting traces over OTLP");
        Ok(Self { inner: Some(Arc::new(Inner { provider, tracer, ratio: args.trace_sample_ratio })) })
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// A new trace for a reading entering the pipeline; `None` when tracing is off or the
    /// sampler leaves this one out.
    pub fn root(&self, name: &'static str, start: SystemTime, attributes: Vec<KeyValue>) -> Option<PipelineSpan> {
        self.start_span(name, SpanKind::Producer, start, attributes, &Context::new())
    }

    /// A span continuing the trace carried in `carrier` (a reading's or an alert's
    /// `trace_context`); `None` when tracing is off or the carrier has no sampled trace.
    pub fn follow(
        &self,
        name: &'static str,
        carrier: &HashMap<String, String>,
        start: SystemTime,
        attributes: Vec<KeyValue>,
    ) -> Option<PipelineSpan> {
        self.inner.as_ref()?;
        if !carrier.contains_key(TRACEPARENT) {
            return None;
        }
        let parent = extract(carrier);
        if !parent.span().span_context().is_sampled() {
            return None;
        }
        self.start_span(name, SpanKind::Consumer, start, attributes, &parent)
    }

    /// The span of an item entering the pipeline: it continues the trace `carrier` already
    /// holds (a traced gRPC client's), else the trace of the call being served, else it
    /// starts a new one (subject to sampling). A caller's trace is continued only if the
    /// service's own ratio admits its trace id: an outside client marking every item
    /// "sampled" must not make the pipeline trace every reading.
    pub fn begin(
        &self,
        name: &'static str,
        carrier: &HashMap<String, String>,
        start: SystemTime,
        attributes: Vec<KeyValue>,
    ) -> Option<PipelineSpan> {
        let ratio = self.inner.as_ref()?.ratio;
        if carrier.contains_key(TRACEPARENT) {
            let parent = extract(carrier);
            if !ratio_admits(ratio, parent.span().span_context().trace_id()) {
                return None;
            }
            return self.follow(name, carrier, start, attributes);
        }
        let current = Context::current();
        if current.span().span_context().is_valid() {
            if !ratio_admits(ratio, current.span().span_context().trace_id()) {
                return None;
            }
            return self.start_span(name, SpanKind::Producer, start, attributes, &current);
        }
        self.root(name, start, attributes)
    }

    /// A span below `parent` (e.g. the context of the gRPC request being served).
    pub fn child(
        &self,
        name: impl Into<std::borrow::Cow<'static, str>>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
        parent: &Context,
    ) -> Option<PipelineSpan> {
        self.start_span(name, kind, SystemTime::now(), attributes, parent)
    }

    fn start_span(
        &self,
        name: impl Into<std::borrow::Cow<'static, str>>,
        kind: SpanKind,
        start: SystemTime,
        attributes: Vec<KeyValue>,
        parent: &Context,
    ) -> Option<PipelineSpan> {
        let inner = self.inner.as_ref()?;
        let span = inner
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(&inner.tracer, parent);
        span.span_context().is_sampled().then_some(PipelineSpan { span })
    }

    /// Exports what is queued (on drain, so the last spans are not lost).
    pub fn flush(&self) {
        if let Some(inner) = &self.inner {
            if let Err(e) = inner.provider.force_flush() {
                tracing::warn!(error = %e, "trace export flush failed");
            }
        }
    }

    /// Flushes and stops the exporter. Spans started afterwards are dropped.
    pub fn shutdown(&self) {
        if let Some(inner) = &self.inner {
            if let Err(e) = inner.provider.shutdown() {
                tracing::debug!(error = %e, "trace exporter shutdown");
            }
        }
    }
}

/// The W3C trace-context key carried by readings, alerts and gRPC headers.
pub const TRACEPARENT: &str = "traceparent";

/// One recorded span of the pipeline; ends when [`PipelineSpan::end`] is called or it is dropped.
pub struct PipelineSpan {
    span: opentelemetry_sdk::trace::Span,
}

impl PipelineSpan {
    /// Writes this span's context (`traceparent`, `tracestate`) into `carrier`, so whatever
    /// carries it continues the trace below this span.
    pub fn inject(&self, carrier: &mut HashMap<String, String>) {
        inject(&self.context(), carrier);
    }

    /// This span as a parent context.
    pub fn context(&self) -> Context {
        Context::new().with_remote_span_context(self.span.span_context().clone())
    }

    pub fn span_context(&self) -> &SpanContext {
        self.span.span_context()
    }

    /// The trace id in hex (as logs and alerts show it).
    pub fn trace_id(&self) -> String {
        self.span.span_context().trace_id().to_string()
    }

    pub fn set_attribute(&mut self, kv: KeyValue) {
        self.span.set_attribute(kv);
    }

    pub fn set_error(&mut self, message: impl Into<std::borrow::Cow<'static, str>>) {
        self.span.set_status(Status::error(message));
    }

    pub fn end(mut self) {
        self.span.end();
    }

    pub fn end_at(mut self, at: SystemTime) {
        self.span.end_with_timestamp(at);
    }
}

/// The context carried in a `trace_context` map or in request headers.
pub fn extract(carrier: &dyn Extractor) -> Context {
    TraceContextPropagator::new().extract(carrier)
}

/// Writes `cx`'s span context into a `trace_context` map or request headers.
pub fn inject(cx: &Context, carrier: &mut dyn Injector) {
    TraceContextPropagator::new().inject_context(cx, carrier);
}

/// The trace id of a `traceparent` value (`00-<trace id>-<span id>-<flags>`), if well formed.
pub fn trace_id_of(carrier: &HashMap<String, String>) -> Option<&str> {
    let tp = carrier.get(TRACEPARENT)?;
    let id = tp.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// The decision `Sampler::TraceIdRatioBased(ratio)` makes for `trace_id` (its low 64 bits
/// against the ratio), so the edge and the SDK agree on which traces a ratio keeps.
fn ratio_admits(ratio: f64, trace_id: opentelemetry::trace::TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let bytes = trace_id.to_bytes();
    let low = u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes"));
    (low >> 1) < bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_callers_sampled_trace_is_kept_at_the_services_own_ratio() {
        let sampled = |i: u64| {
            let mut c = HashMap::new();
            c.insert(
                TRACEPARENT.to_string(),
                format!("00-{:016x}{:016x}-b7ad6b7169203331-01", i, i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            );
            c
        };
        let endpoint = Some("http://127.0.0.1:9".to_string());
        let none =
            Tracing::start("test", &TraceArgs { otlp_endpoint: endpoint.clone(), trace_sample_ratio: 0.0 }).unwrap();
        let all =
            Tracing::start("test", &TraceArgs { otlp_endpoint: endpoint.clone(), trace_sample_ratio: 1.0 }).unwrap();
        let tenth = Tracing::start("test", &TraceArgs { otlp_endpoint: endpoint, trace_sample_ratio: 0.1 }).unwrap();
        let kept = |t: &Tracing| {
            (1..=2000).filter(|&i| t.begin("x", &sampled(i), SystemTime::now(), vec![]).is_some()).count()
        };
        assert_eq!(kept(&none), 0, "ratio 0 traces nothing, whatever the caller says");
        assert_eq!(kept(&all), 2000);
        let k = kept(&tenth);
        assert!((120..=280).contains(&k), "about a tenth of 2000 callers' traces kept: {k}");
        // Following an alert's or reading's carrier inside the pipeline is not an edge: kept.
        assert!(none.follow("x", &sampled(1), SystemTime::now(), vec![]).is_some());
    }

    #[test]
    fn settings_are_checked() {
        let ok = TraceArgs { otlp_endpoint: Some("http://127.0.0.1:4317".into()), trace_sample_ratio: 0.5 };
        ok.validate().unwrap();
        let bad = TraceArgs { otlp_endpoint: Some("127.0.0.1:4317".into()), trace_sample_ratio: 0.5 };
        assert_eq!(bad.validate().unwrap_err().setting, "OTEL_EXPORTER_OTLP_ENDPOINT");
        let bad = TraceArgs { otlp_endpoint: None, trace_sample_ratio: 1.5 };
        assert_eq!(bad.validate().unwrap_err().setting, "PROACT_TRACE_SAMPLE_RATIO");
    }

    #[test]
    fn disabled_tracing_records_nothing() {
        let t = Tracing::disabled();
        assert!(t.root("x", SystemTime::now(), vec![]).is_none());
        let mut carrier = HashMap::new();
        carrier.insert(TRACEPARENT.to_string(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        assert!(t.follow("x", &carrier, SystemTime::now(), vec![]).is_none());
    }

    #[test]
    fn trace_ids_are_read_from_well_formed_traceparents_only() {
        let mut c = HashMap::new();
        c.insert(TRACEPARENT.to_string(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        assert_eq!(trace_id_of(&c), Some("0af7651916cd43dd8448eb211c80319c"));
        c.insert(TRACEPARENT.to_string(), "garbage".into());
        assert_eq!(trace_id_of(&c), None);
    }

    #[test]
    fn context_round_trips_through_a_carrier() {
        let mut c: HashMap<String, String> = HashMap::new();
        c.insert(TRACEPARENT.to_string(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        let cx = extract(&c);
        assert!(cx.span().span_context().is_sampled());
        let mut out: HashMap<String, String> = HashMap::new();
        inject(&cx, &mut out);
        assert_eq!(out[TRACEPARENT], c[TRACEPARENT]);
    }
}
