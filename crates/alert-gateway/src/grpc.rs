//! gRPC `Alerts`: subscribe with resume, list, and the lifecycle actions.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use proact_proto::v1::alerts_server::Alerts;
use proact_proto::v1::{
    AcknowledgeAlertRequest, Alert, AlertEvent, AlertsQuery, AssignAlertRequest, ClearAlertRequest, ListAlertsRequest,
    ListAlertsResponse, SubscribeAlertsRequest,
};
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use crate::feed;
use crate::http::Shared;
use crate::lifecycle::{self, Change};

pub struct AlertsService {
    pub shared: Arc<Shared>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<AlertEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Alerts for AlertsService {
    type SubscribeStream = EventStream;

    async fn subscribe(&self, req: Request<SubscribeAlertsRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let after = req.into_inner().resume_after;
        let mut rx = self.shared.feed.subscribe();
        let redis = self.shared.redis.clone();
        let (tx, out) = tokio::sync::mpsc::channel(feed::CLIENT_BUFFER);
        tokio::spawn(async move {
            let mut last = String::new();
            if !after.is_empty() {
                match feed::replay_after(&redis, &after, 10_000).await {
                    Ok(missed) => {
                        for ev in missed {
                            last = ev.event_id.clone();
                            if tx.send(Ok(ev)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::unavailable(format!("replay failed: {e}")))).await;
                        return;
                    }
                }
            }
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        if !last.is_empty() && !feed::id_after(&ev.event_id, &last) {
                            continue;
                        }
                        if tx.send(Ok(ev)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "too slow: {n} events behind; resubscribe with resume_after"
                            ))))
                            .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
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
        let alerts =
            proact_store::list_alerts(&self.shared.pool, &q).await.map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(ListAlertsResponse { alerts }))
    }

    async fn acknowledge(&self, req: Request<AcknowledgeAlertRequest>) -> Result<Response<Alert>, Status> {
        let r = req.into_inner();
        let a = lifecycle::apply(
            &self.shared.pool,
            &self.shared.redis,
            &r.alert_id,
            Change::Acknowledge { by: r.by, comment: r.comment },
        )
        .await?;
        Ok(Response::new(a))
    }

    async fn assign(&self, req: Request<AssignAlertRequest>) -> Result<Response<Alert>, Status> {
        let r = req.into_inner();
        let c = Change::Assign { technician_id: r.technician_id, by: r.by, comment: r.comment };
        Ok(Response::new(lifecycle::apply(&self.shared.pool, &self.shared.redis, &r.alert_id, c).await?))
    }

    async fn clear(&self, req: Request<ClearAlertRequest>) -> Result<Response<Alert>, Status> {
        let r = req.into_inner();
        let c = Change::Clear { by: r.by, comment: r.comment };
        Ok(Response::new(lifecycle::apply(&self.shared.pool, &self.shared.redis, &r.alert_id, c).await?))
    }
}
