//! The training schedule: a cron expression (`PROACT_TRAIN_SCHEDULE`, UTC, weekly by default)
//! after which the service retrains every model, as `TriggerTraining` would.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;
use tokio_util::sync::CancellationToken;

use crate::train::Trainer;

/// Default: Mondays at 03:00 UTC, when the factory's weekend history is archived.
pub const DEFAULT_SCHEDULE: &str = "0 3 * * 1";

/// A parsed schedule; `None` when disabled (`off`).
pub fn parse(expr: &str) -> Result<Option<Cron>, String> {
    let e = expr.trim();
    if e.is_empty() || e.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    Cron::from_str(e)
        .map(Some)
        .map_err(|err| format!("not a cron expression ({err}); e.g. \"{DEFAULT_SCHEDULE}\" or off"))
}

/// The next run strictly after `now`.
pub fn next_after(cron: &Cron, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&now, false).ok()
}

/// Runs the trainer at every occurrence until shutdown. A failed run is logged and the next
/// occurrence is kept: the models in use keep serving meanwhile.
pub async fn run(cron: Cron, trainer: Trainer, shutdown: CancellationToken) {
    loop {
        let Some(next) = next_after(&cron, Utc::now()) else {
            tracing::warn!(schedule = %cron.pattern, "the schedule has no next occurrence; scheduled training stops");
            return;
        };
        tracing::info!(next = %next, schedule = %cron.pattern, "next scheduled training");
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match trainer.run("").await {
            Ok(out) => tracing::info!(trained = out.trained.len(), skipped = ?out.skipped, "scheduled training done"),
            Err(e) => tracing::error!(error = %e, "scheduled training failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekly_default_and_off() {
        let c = parse(DEFAULT_SCHEDULE).unwrap().unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z").unwrap().with_timezone(&Utc);
        let next = next_after(&c, now).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-30T03:00:00+00:00");
        assert!(parse("off").unwrap().is_none());
        assert!(parse("every tuesday").is_err());
    }
}
