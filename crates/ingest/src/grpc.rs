//! gRPC `Ingest`: the same validation and guarantees as MQTT, with per-item rejections.
//! A call returns only after its accepted items are in the streams.

use proact_proto::time::now_micros;
use proact_proto::v1::ingest_server::Ingest;
use proact_proto::v1::{ItemRejection, PublishRequest, PublishResponse, Telemetry};
use proact_server::otel::{PipelineSpan, Tracing};
use proact_server::Readiness;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::mqtt::write_with_retry;
use crate::security::Allowlist;
use crate::sink::{dead_letter, StreamSink};
use crate::validate::{check_telemetry, reason_label, Limits};

/// Largest batch accepted in one call.
pub const MAX_ITEMS: usize = 10_000;

/// Rejections listed in one response; `rejected` counts them all. A client stream that sent
/// bad items for hours must not make the server hold every rejection until it ends.
pub const MAX_REJECTIONS_LISTED: usize = 1_000;

/// Longest `traceparent` kept (version 00 is 55 bytes) and longest `tracestate` (the W3C
/// limit): a reading carries its trace context through every stream and table.
const MAX_TRACEPARENT: usize = 128;
const MAX_TRACESTATE: usize = 512;

/// Keeps only the W3C keys, within their bounds: the rest of a caller's map is dropped, not
/// refused (tracing metadata never costs a reading).
fn bound_trace_context(c: &mut std::collections::HashMap<String, String>) {
    c.retain(|k, v| match k.as_str() {
        "traceparent" => v.len() <= MAX_TRACEPARENT,
        "tracestate" => v.len() <= MAX_TRACESTATE,
        _ => false,
    });
}

pub struct IngestService {
    pub sink: StreamSink,
    pub limits: Limits,
    pub ready: Readiness,
    pub allow: Allowlist,
    pub tracing: Tracing,
}

impl IngestService {
    async fn publish_items(&self, items: Vec<Telemetry>, offset: u32) -> Result<PublishResponse, Status> {
        if items.len() > MAX_ITEMS {
            return Err(Status::invalid_argument(format!("{} items in one batch, at most {MAX_ITEMS}", items.len())));
        }
        let now = now_micros();
        let mut accepted = Vec::with_capacity(items.len());
        let mut dead = Vec::new();
        let mut rejections = Vec::new();
        let allow = self.allow.snapshot();
        let started = std::time::SystemTime::now();
        let mut spans: Vec<PipelineSpan> = Vec::new();
        let mut rejected = 0u32;
        for (i, mut t) in items.into_iter().enumerate() {
            bound_trace_context(&mut t.trace_context);
            match check_telemetry(&t, &self.limits, now).and_then(|()| allow.check(&t.equipement_id)) {
                Ok(()) => {
                    t.received_micros = now;
                    t.source = "grpc".into();
                    if self.tracing.enabled() {
                        spans.extend(crate::trace_reading(&self.tracing, &mut t, started, "grpc:Ingest.Publish"));
                    }
                    accepted.push(t);
                }
                Err(r) => {
                    metrics::counter!("proact_ingest_rejected_total", "reason" => reason_label(r.reason)).increment(1);
                    dead.push(dead_letter("grpc", "grpc:Ingest.Publish", &r, &t.encode_to_vec(), now));
                    rejected += 1;
                    if rejections.len() < MAX_REJECTIONS_LISTED {
                        rejections.push(ItemRejection {
                            index: offset + i as u32,
                            reason: r.reason as i32,
                            detail: r.detail,
                        });
                    }
                }
            }
        }
        write_with_retry(&self.sink, &accepted, &dead, &self.ready).await;
        spans.into_iter().for_each(PipelineSpan::end);
        metrics::counter!("proact_ingest_accepted_total", "source" => "grpc").increment(accepted.len() as u64);
        Ok(PublishResponse { accepted: accepted.len() as u32, rejections, rejected })
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn publish(&self, request: Request<PublishRequest>) -> Result<Response<PublishResponse>, Status> {
        let items = request.into_inner().items;
        metrics::counter!("proact_ingest_received_total", "source" => "grpc").increment(items.len() as u64);
        Ok(Response::new(self.publish_items(items, 0).await?))
    }

    async fn publish_stream(
        &self,
        request: Request<Streaming<PublishRequest>>,
    ) -> Result<Response<PublishResponse>, Status> {
        let mut stream = request.into_inner();
        let mut total = PublishResponse::default();
        let mut offset = 0u32;
        while let Some(batch) = stream.message().await? {
            let n = batch.items.len() as u32;
            metrics::counter!("proact_ingest_received_total", "source" => "grpc").increment(u64::from(n));
            let r = self.publish_items(batch.items, offset).await?;
            total.accepted += r.accepted;
            total.rejected += r.rejected;
            let room = MAX_REJECTIONS_LISTED - total.rejections.len();
            total.rejections.extend(r.rejections.into_iter().take(room));
            offset += n;
        }
        Ok(Response::new(total))
    }
}
