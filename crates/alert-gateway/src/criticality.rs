//! The AMDEC modes of every equipment, kept in memory so that each alert the gateway shows
//! (live on the sockets, replayed, or listed over JSON) carries its priority: its severity
//! combined with the criticality of the matching AMDEC modes and, for a model alert, the
//! model's risk (`proact_maintenance::priority`, formula in docs/maintenance.md). The table
//! is small (one row per equipment and failure mode) and read again every minute, so a newly
//! loaded AMDEC takes effect without a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use proact_proto::v1::Alert;
use proact_store::work_orders::AmdecMode;
use tokio_util::sync::CancellationToken;

/// How often the AMDEC is read again.
pub const REFRESH: Duration = Duration::from_secs(60);

#[derive(Clone, Default)]
pub struct Criticality {
    modes: Arc<RwLock<HashMap<String, Vec<AmdecMode>>>>,
}

impl Criticality {
    /// The priority of `alert` (0–100), from what is known of its equipment.
    pub fn priority(&self, alert: &Alert) -> f64 {
        let modes = self.modes.read().unwrap_or_else(|p| p.into_inner());
        let amdec = modes.get(&alert.equipement_id).map(Vec::as_slice).unwrap_or_default();
        proact_maintenance::priority::of_alert(alert, amdec)
    }

    /// Reads the AMDEC again.
    pub async fn refresh(&self, pool: &deadpool_postgres::Pool) -> Result<usize, proact_store::StoreError> {
        let client = pool.get().await?;
        let rows = proact_store::work_orders::all_amdec_modes(&**client).await?;
        let n = rows.len();
        let mut by_eq: HashMap<String, Vec<AmdecMode>> = HashMap::new();
        for m in rows {
            by_eq.entry(m.equipement_id.clone()).or_default().push(m);
        }
        *self.modes.write().unwrap_or_else(|p| p.into_inner()) = by_eq;
        Ok(n)
    }

    /// Reads the AMDEC every [`REFRESH`] until `shutdown`.
    pub async fn keep_fresh(self, pool: deadpool_postgres::Pool, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.refresh(&pool).await {
                tracing::warn!(error = %e, "reading the AMDEC for alert priorities failed; keeping the last one");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(REFRESH) => {}
            }
        }
    }
}
