//! The reference tables loaded from the historical datasets (`proact-prepare load`): `amdec`
//! (failure modes and their criticality), `failure_mode_skills`, `gmao_interventions` and
//! `workload`, as the services read them.

use crate::StoreError;

/// The RPN from which an AMDEC mode is classed `high` when its source gives no class
/// (`docs/data.md`; `medium` from [`RPN_MEDIUM`]). The detector's "critical equipment"
/// threshold (`PROACT_RPN_CRITICAL`) defaults to it, so the rule and the data agree.
pub const RPN_HIGH: i32 = 120;
/// The RPN from which an unclassed AMDEC mode is `medium`.
pub const RPN_MEDIUM: i32 = 80;

/// Upserts `rows` (values in the order of `columns`) into the reference table `table`, on its
/// natural key `keys`; returns how many rows were inserted or changed. A row identical to the
/// stored one is not rewritten, so loading the same files again writes nothing. Table and
/// column names are the schema's identifiers (`'static`), never input.
pub async fn upsert_rows(
    tx: &tokio_postgres::Transaction<'_>,
    table: &'static str,
    columns: &[&'static str],
    keys: &[&'static str],
    rows: impl IntoIterator<Item = crate::SqlParams>,
) -> Result<u64, StoreError> {
    let list = columns.join(", ");
    let params = (1..=columns.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    let set = columns.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect::<Vec<_>>().join(", ");
    let mine = columns.iter().map(|c| format!("{table}.{c}")).collect::<Vec<_>>().join(", ");
    let theirs = columns.iter().map(|c| format!("EXCLUDED.{c}")).collect::<Vec<_>>().join(", ");
    // The WHERE makes an identical row a no-op (0 rows affected), not a rewrite.
    let sql = format!(
        "INSERT INTO {table} ({list}) VALUES ({params}) ON CONFLICT ({}) DO UPDATE SET {set} \
         WHERE ({mine}) IS DISTINCT FROM ({theirs})",
        keys.join(", ")
    );
    let stmt = tx.prepare(&sql).await?;
    let mut written = 0;
    for values in rows {
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            values.iter().map(|v| v.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        written += tx.execute(&stmt, &refs).await?;
    }
    Ok(written)
}

/// Rows in the reference table `table`.
pub async fn count_rows(tx: &tokio_postgres::Transaction<'_>, table: &'static str) -> Result<i64, StoreError> {
    Ok(tx.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await?.get(0))
}

/// One equipment of the AMDEC table, summed over its failure modes.
#[derive(Debug, Clone, PartialEq)]
pub struct AmdecSummary {
    pub equipement_id: String,
    /// Empty when the table does not say.
    pub equipment_type: String,
    /// Highest criticality of its failure modes (`high`, `medium`, `low`), empty if none is rated.
    pub criticality: &'static str,
    /// Highest RPN of its failure modes.
    pub max_rpn: i32,
    pub failure_modes: i64,
}

/// Every equipment of the AMDEC table with its type, highest criticality and RPN.
pub async fn amdec_summary(client: &tokio_postgres::Client) -> Result<Vec<AmdecSummary>, StoreError> {
    let rows = client
        .query(
            "SELECT equipement_id, coalesce(max(equipment_type), '') AS equipment_type,
                    coalesce(max(CASE criticality WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 END), 0) AS crit,
                    coalesce(max(rpn), 0) AS max_rpn, count(*) AS modes
             FROM amdec GROUP BY equipement_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AmdecSummary {
            equipement_id: r.get("equipement_id"),
            equipment_type: r.get("equipment_type"),
            criticality: match r.get::<_, i32>("crit") {
                3 => "high",
                2 => "medium",
                1 => "low",
                _ => "",
            },
            max_rpn: r.get("max_rpn"),
            failure_modes: r.get("modes"),
        })
        .collect())
}

/// The equipment ids the AMDEC table knows: the fleet a site has declared.
pub async fn amdec_equipment_ids(client: &tokio_postgres::Client) -> Result<Vec<String>, StoreError> {
    Ok(client.query("SELECT DISTINCT equipement_id FROM amdec", &[]).await?.iter().map(|r| r.get(0)).collect())
}

/// One AMDEC failure mode of an equipment, with the skill its repair needs.
#[derive(Debug, Clone, PartialEq)]
pub struct AmdecMode {
    pub code: String,
    pub name: String,
    pub component: String,
    pub effect: String,
    pub rpn: i32,
    pub criticality: String,
    pub recommended_action: String,
    /// `|`-separated: the mapping table's skill, else the skills of whoever repaired the mode before.
    pub skill: String,
}

/// The failure modes of `equipement_id`, highest RPN first.
pub async fn failure_modes(client: &tokio_postgres::Client, equipement_id: &str) -> Result<Vec<AmdecMode>, StoreError> {
    let rows = client
        .query(
            "SELECT a.failure_mode_code, a.failure_mode, coalesce(a.component, '') AS component,
                    coalesce(a.effect, '') AS effect, a.rpn, coalesce(a.criticality, '') AS criticality,
                    coalesce(a.recommended_action, '') AS action,
                    coalesce(s.skill, (
                        SELECT string_agg(DISTINCT w.skills, '|') FROM gmao_interventions g
                        JOIN workload w ON w.technician_id = g.technician_id
                        WHERE g.failure_mode_code = a.failure_mode_code), '') AS skill
             FROM amdec a LEFT JOIN failure_mode_skills s ON s.failure_mode_code = a.failure_mode_code
             WHERE a.equipement_id = $1 ORDER BY a.rpn DESC, a.failure_mode_code",
            &[&equipement_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AmdecMode {
            code: r.get("failure_mode_code"),
            name: r.get("failure_mode"),
            component: r.get("component"),
            effect: r.get("effect"),
            rpn: r.get("rpn"),
            criticality: r.get("criticality"),
            recommended_action: r.get("action"),
            skill: r.get("skill"),
        })
        .collect())
}

/// A technician as of their latest workload period.
#[derive(Debug, Clone, PartialEq)]
pub struct TechnicianLoad {
    pub technician_id: String,
    pub name: String,
    pub skills: Vec<String>,
    /// Actual / planned hours, in percent (unrounded); `None` without planned hours.
    pub load_pct: Option<f64>,
    pub availability_pct: Option<f64>,
    /// Alerts assigned to them and not cleared yet.
    pub open_assignments: i64,
}

/// Every technician of the workload table, with their latest period and open assignments.
pub async fn technicians(client: &tokio_postgres::Client) -> Result<Vec<TechnicianLoad>, StoreError> {
    let rows = client
        .query(
            "SELECT DISTINCT ON (w.technician_id) w.technician_id, coalesce(w.technician_name, w.technician_id) AS name,
                    coalesce(w.skills, '') AS skills,
                    CASE WHEN w.planned_hours > 0 THEN 100 * w.actual_hours / w.planned_hours END AS load_pct,
                    w.availability_pct,
                    (SELECT count(*) FROM alerts al WHERE al.assigned_to = w.technician_id AND al.state <> $1) AS open_assignments
             FROM workload w ORDER BY w.technician_id, w.period_start DESC",
            &[&(proact_proto::v1::AlertState::Cleared as i16)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TechnicianLoad {
            technician_id: r.get("technician_id"),
            name: r.get("name"),
            skills: r.get::<_, String>("skills").split('|').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            load_pct: r.get("load_pct"),
            availability_pct: r.get("availability_pct"),
            open_assignments: r.get("open_assignments"),
        })
        .collect())
}
