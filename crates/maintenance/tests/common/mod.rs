//! A real PostgreSQL (migrated, with the sample AMDEC, GMAO history and workload of `data/`)
//! and a real Redis, plus the alerts the work orders are made from.
#![allow(dead_code)]

use std::path::Path;

use deadpool_postgres::Pool;
use proact_proto::streams::{PAYLOAD_FIELD, WORK_ORDERS_STREAM};
use proact_proto::v1::{Alert, AlertState, Severity, WorkOrderEvent};
use proact_proto::Message;

pub struct Env {
    pub pg: proact_testkit::Postgres,
    pub redis_server: proact_testkit::Redis,
    pub pool: Pool,
    pub redis: fred::prelude::Client,
}

/// The alert's start: 2026-01-10 06:00 UTC.
pub const ALERT_START: i64 = 1_768_024_800_000_000;

impl Env {
    pub async fn start() -> Env {
        let pg = proact_testkit::Postgres::start().await.expect("PostgreSQL starts");
        let redis_server = proact_testkit::Redis::start().await.expect("Redis starts");
        let mut client = proact_dataprep::load::connect(&pg.url()).await.unwrap();
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
        proact_dataprep::load::load_dir(&mut client, &data).await.expect("the sample reference data loads");
        let pool = proact_server::db::pool(&pg.url(), 4).unwrap();
        let redis = proact_server::redis::connect(&redis_server.url()).await.unwrap();
        Env { pg, redis_server, pool, redis }
    }

    /// Stores an alert as the archive would.
    pub async fn alert(
        &self,
        id: &str,
        equipement_id: &str,
        rule: &str,
        severity: Severity,
        model_version: &str,
    ) -> Alert {
        let a = Alert {
            alert_id: id.into(),
            equipement_id: equipement_id.into(),
            start_micros: ALERT_START,
            severity: severity as i32,
            score: 0.9,
            reason: rule.into(),
            rule: rule.into(),
            model_version: model_version.into(),
            state: AlertState::Open as i32,
            updated_micros: ALERT_START,
            value: 95.0,
            ..Default::default()
        };
        proact_store::store_alerts(&self.pool, std::slice::from_ref(&a)).await.unwrap();
        a
    }

    /// Every event on the work-orders stream, in stream order.
    pub async fn events(&self) -> Vec<WorkOrderEvent> {
        use fred::prelude::*;
        let entries: Vec<(String, std::collections::HashMap<String, bytes::Bytes>)> =
            self.redis.xrange(WORK_ORDERS_STREAM, "-", "+", None).await.unwrap();
        entries.iter().map(|(_, f)| WorkOrderEvent::decode(f[PAYLOAD_FIELD].clone()).unwrap()).collect()
    }

    pub async fn count(&self, table: &str) -> i64 {
        let c = self.pool.get().await.unwrap();
        c.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0)
    }

    /// Rows of the tables a work order writes, and the stream's length.
    pub async fn footprint(&self) -> (i64, i64, i64, usize) {
        (
            self.count("work_orders").await,
            self.count("work_order_transitions").await,
            self.count("gmao_interventions").await,
            self.events().await.len(),
        )
    }
}
