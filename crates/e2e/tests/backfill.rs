//! The demo's history back-fill (`proact-trainer backfill`) against real PostgreSQL and Redis:
//! it refuses to run without the reference data, writes the fleet's readings into partitions
//! and the rules' alerts with their closed work orders (failures confirmed, false alarms) as
//! the live pipeline would, is written once however often it runs, resumes an interrupted
//! run without doubling anything, and a training run on it promotes a RandomForest that
//! recognises the live simulator's episodes (an unseen seed, at the live rate) before the rules.

use chrono::Utc;
use clap::Parser;
use proact_trainer::backfill::{self, BackfillArgs, BackfillError, Report};

fn args() -> BackfillArgs {
    BackfillArgs {
        days: 3,
        step_secs: 10,
        seed: 42,
        episode_secs: 60,
        episode_every_hours: 4.0,
        false_alarm_every: 3,
        temperature_warning: 80.0,
        vibration_warning: 11.0,
        partition_days: 1,
        retention_days: 0,
    }
}

async fn count(pg: &tokio_postgres::Client, sql: &str) -> i64 {
    pg.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backfill_writes_a_labelled_history_once_and_a_forest_learns_from_it() {
    let stack = proact_testkit::Stack::start().await.unwrap();
    let pool = proact_server::db::pool(&stack.postgres.url(), backfill::POOL_SIZE).unwrap();
    let redis = proact_server::redis::connect(&stack.redis.url()).await.unwrap();
    let pg = pool.get().await.unwrap();

    // Without the AMDEC and the technicians a work order cannot be made: a clear error, and
    // nothing written (no back-fill on record to skip or resume later).
    let err = backfill::run(&pool, Some(redis.clone()), &args(), Utc::now()).await.unwrap_err();
    assert!(matches!(err, BackfillError::MissingReference(_)), "{err}");
    assert!(err.to_string().contains("load-reference"), "{err}");
    assert_eq!(count(&pg, "SELECT count(*) FROM telemetry").await, 0);
    assert_eq!(count(&pg, "SELECT count(*) FROM simulated_history").await, 0);

    proact_e2e::load_sample_data(&stack).await.unwrap();
    let imported = count(&pg, "SELECT count(*) FROM gmao_interventions").await;
    let Report::Written(w) = backfill::run(&pool, Some(redis.clone()), &args(), Utc::now()).await.unwrap() else {
        panic!("a first run writes")
    };
    let per_machine = 3 * 86_400 / 10;
    assert_eq!(w.machines, 12);
    assert_eq!(w.readings, 12 * per_machine as u64);
    assert_eq!(w.new_readings, w.readings);
    assert!(w.failures >= 12 * 3 * 24 / 4 / 2, "{w:?}");
    assert!(w.false_alarms >= 12, "{w:?}");
    assert_eq!(w.work_orders, w.failures + w.false_alarms);

    // The readings, in the archive's daily partitions.
    assert_eq!(count(&pg, "SELECT count(*) FROM telemetry").await, w.readings as i64);
    let parts = count(&pg, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'telemetry'::regclass").await;
    assert!(parts >= 3, "{parts} partitions for 3 days");
    let with_extras = count(&pg, "SELECT count(*) FROM telemetry WHERE extra ? 'pressure' AND extra ? 'current'").await;
    assert_eq!(with_extras, w.readings as i64, "the live simulator's extra channels");
    // One rules alert per failure and false alarm, each with its closed work order.
    let alerts = count(&pg, "SELECT count(*) FROM alerts WHERE model_version = 'rules-v1' AND state = 3").await;
    assert_eq!(alerts as usize, w.failures + w.false_alarms);
    let done = count(&pg, "SELECT count(*) FROM work_orders WHERE state = 'done' AND alert_id IS NOT NULL").await;
    assert_eq!(done as usize, w.work_orders);
    // …which joined the intervention history with their outcome, where the labels come from.
    let confirmed = count(
        &pg,
        "SELECT count(*) FROM gmao_interventions WHERE origin = 'work_order' AND outcome = 'failure_confirmed'
           AND intervention_type = 'corrective' AND fault_started_at IS NOT NULL",
    )
    .await;
    assert_eq!(confirmed as usize, w.failures);
    let false_alarms =
        count(&pg, "SELECT count(*) FROM gmao_interventions WHERE origin = 'work_order' AND outcome = 'false_alarm'")
            .await;
    assert_eq!(false_alarms as usize, w.false_alarms);
    // Every transition went out on the work-order stream once (create, start, close; a false
    // alarm is closed from planned), and none is left in the outbox.
    let transitions = 3 * w.failures + 2 * w.false_alarms;
    assert_eq!(w.events, transitions);
    let events: u64 =
        fred::prelude::StreamsInterface::xlen(&redis, proact_proto::streams::WORK_ORDERS_STREAM).await.unwrap();
    assert_eq!(events as usize, transitions);
    assert_eq!(count(&pg, "SELECT count(*) FROM work_order_transitions WHERE event_id IS NULL").await, 0);

    // A second run is a no-op, whenever it runs.
    let later = Utc::now() + chrono::Duration::hours(2);
    let again = backfill::run(&pool, Some(redis.clone()), &args(), later).await.unwrap();
    assert!(matches!(again, Report::AlreadyDone { .. }), "{again}");
    assert!(again.to_string().contains("nothing written"), "{again}");
    // An interrupted run is resumed with its recorded plan: nothing is doubled.
    pg.execute("UPDATE simulated_history SET finished_at = NULL", &[]).await.unwrap();
    let Report::Written(r) = backfill::run(&pool, Some(redis.clone()), &args(), later).await.unwrap() else {
        panic!("an unfinished back-fill is resumed")
    };
    assert!(r.resumed);
    assert_eq!((r.plan.from, r.plan.to), (w.plan.from, w.plan.to), "the recorded range, not the new clock's");
    assert_eq!((r.new_readings, r.work_orders), (0, 0));
    assert_eq!(count(&pg, "SELECT count(*) FROM telemetry").await, w.readings as i64);
    let history = count(&pg, "SELECT count(*) FROM gmao_interventions").await;
    assert_eq!(history as usize, imported as usize + w.work_orders);

    // A training run on it, with the demo's label settings, promotes a forest.
    let cfg = proact_trainer::Config::try_parse_from([
        "proact-trainer",
        "--database-url",
        &stack.postgres.url(),
        "--redis-url",
        &stack.redis.url(),
        "--label-horizon-hours",
        "0.0125",
        "--sample-every-secs",
        "10",
        "--negative-every-secs",
        "120",
        "--rf-trees",
        "30",
        "--nb-min-rows",
        "100000000",
    ])
    .unwrap();
    let trainer = proact_trainer::Trainer::new(proact_trainer::connect(&cfg).await.unwrap(), cfg.train.settings());
    let out = trainer.run("anomaly-rf").await.unwrap();
    assert_eq!(out.trained.len(), 1, "{:?}", out.skipped);
    let rf = &out.trained[0];
    let promoted = proact_proto::v1::ModelEventKind::Promoted as i32;
    assert_eq!(out.events[0].kind, promoted, "{}", out.events[0].detail);
    let m = rf.metrics.clone().unwrap();
    assert!(m.f1 > 0.5, "held-out F1 {} on the back-filled history", m.f1);

    // The promoted forest on what the demo's sensors will send: another seed, one reading a
    // second, the demo's live episodes (60 s, a few minutes apart), through the detector's window.
    let (_, bytes) = trainer.registry().artefact(&rf.name, &rf.version).await.unwrap();
    let schema = proact_features::FeatureSchema::base();
    let scorer = proact_models::ModelArtefact::from_bytes(&bytes).unwrap().scorer(schema.id()).unwrap();
    let start = Utc::now().timestamp();
    let live = proact_simulator::history::HistoryPlan {
        seed: 7,
        from: start,
        to: start + 2 * 3600,
        step_secs: 1,
        episode_secs: 60,
        episode_every_secs: 600,
        false_alarm_every: 0,
        rules: proact_simulator::history::RuleThresholds { temperature_warning: 80.0, vibration_warning: 11.0 },
    };
    let (mut episodes, mut recognised, mut before_rules, mut healthy, mut flagged_healthy) = (0, 0, 0, 0, 0);
    for (i, eq) in proact_store::taxonomy::fleet().iter().enumerate() {
        let h = proact_simulator::history::machine_history(&live, eq, i);
        let mut window = proact_features::Window::new(&schema, proact_features::WindowConfig::default());
        let mut features = vec![0.0; schema.len()];
        let mut first_flag: Vec<Option<i64>> = vec![None; h.failures.len()];
        for (t, s) in &h.readings {
            let _ = window.push(t * 1000, &[s.temperature, s.vibration]).unwrap();
            if t - live.from < 60 {
                continue; // the window's warm-up, as in training
            }
            window.write_features(&mut features).unwrap();
            let flagged = scorer.is_anomalous(&features);
            match h.failures.iter().position(|f| f.episode.start <= *t && *t < f.episode.end) {
                Some(k) if flagged && first_flag[k].is_none() => first_flag[k] = Some(*t),
                Some(_) => {}
                // Healthy: no episode in the window (60 s) or just before it.
                None if h.failures.iter().all(|f| *t < f.episode.start || *t >= f.episode.end + 120) => {
                    healthy += 1;
                    flagged_healthy += usize::from(flagged);
                }
                None => {}
            }
        }
        for (f, flag) in h.failures.iter().zip(&first_flag) {
            episodes += 1;
            if let Some(at) = flag {
                recognised += 1;
                before_rules += usize::from(*at < f.detected_at);
            }
        }
    }
    let fp = flagged_healthy as f64 / healthy as f64;
    println!(
        "live episodes recognised: {recognised}/{episodes}, before the rules: {before_rules}; healthy readings flagged: \
         {flagged_healthy}/{healthy} ({:.3} %)",
        fp * 100.0
    );
    assert!(recognised * 10 >= episodes * 8, "{recognised} of {episodes} live episodes recognised");
    assert!(before_rules * 2 >= episodes, "{before_rules} of {episodes} recognised before the rules");
    assert!(fp < 0.005, "{flagged_healthy} of {healthy} healthy readings flagged");

    // Resumed a day later under a retention of 2 days: the readings whose partitions the
    // archive's next pass drops (the day partitions ending before the horizon, here removed
    // first) are not written again; the rest is already there.
    let later = Utc::now() + chrono::Duration::days(1);
    let horizon = later.timestamp_micros() - 2 * 86_400_000_000 + proact_store::partitions::RETENTION_MARGIN_MICROS;
    let kept_from =
        chrono::DateTime::from_timestamp_micros(horizon.div_euclid(86_400_000_000) * 86_400_000_000).unwrap();
    let expired = pg.execute("DELETE FROM telemetry WHERE ts < $1", &[&kept_from]).await.unwrap();
    assert!(expired > 0, "the first day is past the horizon");
    pg.execute("UPDATE simulated_history SET finished_at = NULL", &[]).await.unwrap();
    // (`--days 3` is now refused; whatever its days, a run resumes the recorded plan.)
    let retained = BackfillArgs { days: 2, retention_days: 2, ..args() };
    let report = backfill::run(&pool, Some(redis.clone()), &retained, later).await.unwrap();
    let line = report.to_string();
    let Report::Written(r) = report else { panic!("an unfinished back-fill is resumed") };
    assert_eq!((r.past_retention, r.new_readings), (expired, 0), "{r:?}");
    assert!(line.contains(&format!("{expired} past the archive's retention not written")), "{line}");
    assert_eq!(count(&pg, "SELECT count(*) FROM telemetry").await, (w.readings - expired) as i64);
}
