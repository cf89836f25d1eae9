//! `proact-trainer plan`: the technicians' week from the workload data, as text or JSON.
//! The planning itself is in crate proact-planning, which also reads its inputs from the
//! database (`proact_planning::db`: reference tables and open work orders); this picks the
//! data folder or the database and adds the orders of a file.

use std::path::Path;

use proact_planning::data::Sources;
use proact_planning::{Order, PlanInput, Week};

/// The inputs of `plan`: from the folder, reference data, the preventive orders due and the
/// orders of a file; from the database, also its open work orders.
pub async fn input(
    week: Week,
    data: &Path,
    database_url: Option<&str>,
    orders: Option<&Path>,
    preventive: bool,
) -> anyhow::Result<PlanInput> {
    let extra: Vec<Order> = match orders {
        Some(path) => proact_planning::data::read_orders(path)?,
        None => Vec::new(),
    };
    Ok(match database_url {
        Some(url) => {
            let pool = proact_server::db::pool(url, 1)?;
            proact_planning::db::input(&pool, week, extra, preventive).await?
        }
        None => Sources::from_dir(data)?.input(week, extra, preventive),
    })
}
