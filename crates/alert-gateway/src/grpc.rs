//! gRPC `Alerts`: subscribe with resume, list with filters, and the lifecycle actions,
//! behind the same bearer token as the HTTP side (checked by [`auth_interceptor`]).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use proact_proto::v1::alerts_server::Alerts;
use proact_proto::v1::{
    AcknowledgeAlertRequest, Alert, AlertEvent, AlertsQuery, AssignAlertRequest, ClearAlertRequest, ListAlertsRequest,
    ListAlertsResponse, SubscribeAlertsRequest,
};
use tonic::{Request, Response, Status};

use crate::feed::{StreamId, Subscription, SubscriptionError};
use crate::lifecycle::Change;
use crate::state::GatewayState;

pub struct AlertsService {
    pub shared: Arc<GatewayState>,
}

/// Refuses calls without `authorization: Bearer <token>` when a token is configured.
pub fn auth_interceptor(token: Option<&str>) -> proact_server::auth::BearerAuth {
    proact_server::auth::BearerAuth::new(token, || {
        metrics::counter!("proact_gateway_auth_refused_total", "api" => "grpc").increment(1)
    })
}

type EventStream = Pin<Box<dyn Stream<Item = Result<AlertEvent, Status>> + Send>>;

/// Events queued for one gRPC subscriber beyond what HTTP/2 flow control already buffers.
const GRPC_QUEUE: usize = 64;

#[tonic::async_trait]
impl Alerts for AlertsService {
    type SubscribeStream = EventStream;

    async fn subscribe(&self, req: Request<SubscribeAlertsRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let after = req.into_inner().resume_after;
        let after = match after.as_str() {
            "" => None,
            a => Some(
                StreamId::parse(a)
                    .ok_or_else(|| Status::invalid_argument(format!("resume_after: {a:?} is not a stream id")))?,
            ),
        };
        let mut sub =
            Subscription::new(self.shared.feed.subscribe(), self.shared.redis.clone(), after, self.shared.crit.clone());
        let (tx, out) = tokio::sync::mpsc::channel(GRPC_QUEUE);
        let write_timeout = self.shared.write_timeout;
        let shutdown = self.shared.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = sub.next() => n,
                };
                let item = match next {
                    Ok(Some(f)) => Ok(f.event.clone()),
                    Ok(None) => return,
                    Err(SubscriptionError::Lagged(n)) => {
                        metrics::counter!("proact_gateway_grpc_evicted_total").increment(1);
                        Err(Status::resource_exhausted(format!(
                            "too slow: {n} alerts behind; subscribe again with resume_after=<last event_id>"
                        )))
                    }
                    Err(e) => {
                        Err(Status::unavailable(proact_server::telemetry::logged_error("alerts feed unavailable", &e)))
                    }
                };
                let end = item.is_err();
                // A subscriber that takes nothing for the write timeout is cut off, like a WebSocket.
                match tokio::time::timeout(write_timeout, tx.send(item)).await {
                    Ok(Ok(())) if !end => {}
                    Err(_) => {
                        let _ = tx.try_send(Err(Status::resource_exhausted(
                            "not reading; subscribe again with resume_after",
                        )));
                        return;
                    }
                    _ => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(out))))
    }

    async fn list(&self, req: Request<ListAlertsRequest>) -> Result<Response<ListAlertsResponse>, Status> {
        let r = req.into_inner();
        let q = AlertsQuery {
            equipement_id: r.equipement_id,
            min_severity: r.min_severity,
            state: r.state,
            from_micros: r.from_micros,
            to_micros: r.to_micros,
            limit: r.limit,
        };
        let alerts = proact_store::list_alerts(&self.shared.pool, &q)
            .await
            .map_err(|e| Status::unavailable(proact_server::telemetry::logged_error("database unavailable", &e)))?;
        Ok(Response::new(ListAlertsResponse { alerts }))
    }

    async fn acknowledge(&self, req: Request<AcknowledgeAlertRequest>) -> Result<Response<Alert>, Status> {
        let r = req.into_inner();
        let c = Change::Acknowledge { by: r.by, comment: r.comment };
        Ok(Response::new(self.shared.lifecycle().apply(&r.alert_id, c).await?))
    }

    async fn assign(&self, req: Request<AssignAlertRequest>) -> Result<Response<Alert>, Status> {
        let r = req.into_inner();
        let c = Change::Assign { technician_id: r.technician_id, by: r.by, comment: r.comment };
        Ok(Response::new(self.shared.lifecycle().apply(&r.alert_id, c).await?))
    }

    async fn clear(&self, req: Request<ClearAlertRequest>) -> Result<Response<Alert>, Status> {
        let r = req.into_inner();
        let c = Change::Clear { by: r.by, comment: r.comment };
        Ok(Response::new(self.shared.lifecycle().apply(&r.alert_id, c).await?))
    }
}
