//! Benchmark driver (`bench/training/run.sh`): a training run on a realistic archive.
//!
//! Starts a throw-away PostgreSQL and Redis (test kit, free ports on 127.0.0.1), loads the
//! committed GMAO history from `data/`, archives the telemetry the simulator's fleet produced
//! before those interventions (same seed and episodes as `proact-prepare generate`, one reading
//! every `--step-secs` over the last `--days` of the history), then times: reading + featurising
//! the archive, a first full training run (everything promoted), and a second run on the same
//! data (every candidate gated against the active version on its held-out rows).

use std::time::Instant;

use chrono::{DateTime, Utc};
use clap::Parser;
use proact_dataprep::generate::{DEFAULT_SEED, EPISODE_DURATION_S, EPISODE_MEAN_GAP_S, HISTORY_FROM, HISTORY_TO};
use proact_maintenance::labels::Labels;
use proact_simulator::reading::reading;
use proact_store::taxonomy as fleet;
use proact_trainer::dataset;
use proact_trainer::{Registry, TrainSettings};
use rand::SeedableRng;

#[derive(Parser)]
struct Args {
    /// Days of history archived, ending at the end of the sample history (2026-11-01).
    #[arg(long, default_value_t = 60)]
    days: i64,
    /// Seconds between two readings of one machine.
    #[arg(long, default_value_t = 20)]
    step_secs: i64,
    /// Training stride (PROACT_TRAIN_SAMPLE_EVERY_SECS).
    #[arg(long, default_value_t = 600)]
    sample_every_secs: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (redis, pg) = tokio::try_join!(proact_testkit::Redis::start(), proact_testkit::Postgres::start())?;
    let pool = proact_server::db::pool(&pg.url(), 4)?;
    proact_store::schema::migrate(&mut *pool.get().await?).await?;
    let mut loader = proact_dataprep::load::connect(&pg.url()).await?;
    proact_dataprep::load::load_dir(&mut loader, std::path::Path::new("data")).await?;

    let to = HISTORY_TO;
    let from = to - args.days * 86_400;
    let client = pool.get().await?;
    let partitioned: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('telemetry'))", &[])
        .await?
        .get(0);
    if partitioned {
        let (f, t) = (DateTime::from_timestamp(from, 0).unwrap(), DateTime::from_timestamp(to, 0).unwrap());
        client
            .execute(
                &format!(
                    "CREATE TABLE IF NOT EXISTS telemetry_bench PARTITION OF telemetry FOR VALUES FROM ('{}') TO ('{}')",
                    f.to_rfc3339(),
                    t.to_rfc3339()
                ),
                &[],
            )
            .await?;
    }
    let started = Instant::now();
    let mut rows = 0usize;
    for eq in fleet::fleet() {
        let eps = fleet::episodes(DEFAULT_SEED, &eq, HISTORY_FROM, HISTORY_TO, EPISODE_MEAN_GAP_S, EPISODE_DURATION_S);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(DEFAULT_SEED ^ rows as u64);
        let (mut ids, mut ts, mut temp, mut vib) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut t = from;
        while t < to {
            let ep = eps.iter().find(|e| e.start <= t && t < e.end);
            let s = reading(&eq, t, ep.map(|e| &e.mode), ep.map_or(0.0, |e| e.degradation(t)), &mut rng);
            ids.push(eq.id.clone());
            ts.push(DateTime::<Utc>::from_timestamp(t, 0).unwrap());
            temp.push(s.temperature);
            vib.push(s.vibration);
            t += args.step_secs;
        }
        rows += ids.len();
        for c in 0..ids.len().div_ceil(50_000) {
            let r = c * 50_000..((c + 1) * 50_000).min(ids.len());
            let (i, t, te, v) = (&ids[r.clone()], &ts[r.clone()], &temp[r.clone()], &vib[r]);
            client
                .execute(
                    "INSERT INTO telemetry (equipement_id, ts, temperature, vibration)
                     SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::float8[])",
                    &[&i, &t, &te, &v],
                )
                .await?;
        }
    }
    client.batch_execute("ANALYZE telemetry").await?;
    println!(
        "archived {rows} readings of {} machines in {:.1} s",
        fleet::fleet().len(),
        started.elapsed().as_secs_f64()
    );

    let settings = TrainSettings {
        from: Some(DateTime::from_timestamp(from, 0).unwrap()),
        to: Some(DateTime::from_timestamp(to, 0).unwrap()),
        sampling: dataset::Sampling { every_ms: args.sample_every_secs * 1000, ..Default::default() },
        ..Default::default()
    };
    let t0 = Instant::now();
    let labels = Labels::load(&client, settings.horizon_ms).await?;
    let ds = dataset::from_archive(&client, settings.from.unwrap(), settings.to.unwrap(), settings.sampling, &labels)
        .await?;
    let read_s = t0.elapsed().as_secs_f64();
    println!(
        "read + featurise: {rows} readings → {} training rows ({} positive) in {read_s:.2} s = {:.0} readings/s",
        ds.rows(),
        ds.positives(),
        rows as f64 / read_s
    );

    let redis_client = proact_server::redis::connect(&redis.url()).await?;
    let registry = Registry::new(pool.clone(), redis_client, 0.0);
    for run in ["first run (nothing active)", "second run (gated against the active versions)"] {
        let t0 = Instant::now();
        let out = proact_trainer::train::train(&registry, &settings, "", Utc::now()).await?;
        let secs = t0.elapsed().as_secs_f64();
        let promoted = out.events.iter().filter(|e| e.kind == 2).count();
        println!(
            "{run}: {} versions in {secs:.2} s, {promoted} promoted, {} skipped",
            out.trained.len(),
            out.skipped.len()
        );
        if let Some(rf) = out.trained.iter().find(|m| m.name == "anomaly-rf") {
            let m = rf.metrics.clone().unwrap_or_default();
            println!(
                "  anomaly-rf {}: held-out F1 {:.4} precision {:.4} recall {:.4} ROC AUC {:.4} on {} rows; artefact {} bytes",
                rf.version, m.f1, m.precision, m.recall, m.roc_auc, m.test_rows, rf.size_bytes
            );
        }
        let nb: Vec<f64> = out
            .trained
            .iter()
            .filter(|m| m.name.starts_with("normal-behaviour/"))
            .filter_map(|m| m.metrics.as_ref().map(|x| x.f1))
            .collect();
        if !nb.is_empty() {
            println!(
                "  normal-behaviour: {} models, held-out F1 mean {:.4} (min {:.4}, max {:.4})",
                nb.len(),
                nb.iter().sum::<f64>() / nb.len() as f64,
                nb.iter().cloned().fold(f64::INFINITY, f64::min),
                nb.iter().cloned().fold(0.0, f64::max)
            );
        }
    }
    Ok(())
}
