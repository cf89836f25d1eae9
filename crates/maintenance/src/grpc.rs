//! gRPC `proact.v1.WorkOrders` over [`WorkOrders`]; errors map to status codes in
//! [`crate::error`].

use proact_proto::v1::work_orders_server::{WorkOrders as WorkOrdersRpc, WorkOrdersServer};
use proact_proto::v1::{
    CloseWorkOrderRequest, CreateWorkOrderRequest, ListWorkOrdersRequest, ListWorkOrdersResponse, ModelOutcomesRequest,
    ModelOutcomesResponse, SuggestFailureModesRequest, SuggestFailureModesResponse, WorkOrder, WorkOrderHistory,
    WorkOrderRef,
};
use tonic::{Request, Response, Status};

use crate::WorkOrders;

/// The tonic service; the gateway adds it to its gRPC server (with its auth interceptor).
pub struct WorkOrdersService {
    orders: WorkOrders,
}

impl WorkOrdersService {
    pub fn new(orders: WorkOrders) -> Self {
        WorkOrdersService { orders }
    }

    pub fn into_server(self) -> WorkOrdersServer<Self> {
        WorkOrdersServer::new(self)
    }
}

#[tonic::async_trait]
impl WorkOrdersRpc for WorkOrdersService {
    async fn create(&self, r: Request<CreateWorkOrderRequest>) -> Result<Response<WorkOrder>, Status> {
        Ok(Response::new(self.orders.create(r.get_ref()).await?))
    }

    async fn start(&self, r: Request<WorkOrderRef>) -> Result<Response<WorkOrder>, Status> {
        let r = r.get_ref();
        Ok(Response::new(self.orders.start(&r.work_order_id, &r.by, &r.comment).await?))
    }

    async fn close(&self, r: Request<CloseWorkOrderRequest>) -> Result<Response<WorkOrder>, Status> {
        Ok(Response::new(self.orders.close(r.get_ref()).await?))
    }

    async fn cancel(&self, r: Request<WorkOrderRef>) -> Result<Response<WorkOrder>, Status> {
        let r = r.get_ref();
        Ok(Response::new(self.orders.cancel(&r.work_order_id, &r.by, &r.comment).await?))
    }

    async fn get(&self, r: Request<WorkOrderRef>) -> Result<Response<WorkOrderHistory>, Status> {
        let (w, transitions) = self.orders.get(&r.get_ref().work_order_id).await?;
        Ok(Response::new(WorkOrderHistory { work_order: Some(w), transitions }))
    }

    async fn list(&self, r: Request<ListWorkOrdersRequest>) -> Result<Response<ListWorkOrdersResponse>, Status> {
        Ok(Response::new(ListWorkOrdersResponse { work_orders: self.orders.list(r.get_ref()).await? }))
    }

    async fn suggest_failure_modes(
        &self,
        r: Request<SuggestFailureModesRequest>,
    ) -> Result<Response<SuggestFailureModesResponse>, Status> {
        let r = r.get_ref();
        Ok(Response::new(self.orders.suggest(&r.alert_id, &r.equipement_id).await?))
    }

    async fn outcomes_by_model(
        &self,
        _: Request<ModelOutcomesRequest>,
    ) -> Result<Response<ModelOutcomesResponse>, Status> {
        Ok(Response::new(ModelOutcomesResponse { versions: self.orders.outcomes_by_model().await? }))
    }
}
