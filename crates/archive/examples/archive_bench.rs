//! `just bench archive` (bench/archive/run.sh): how fast telemetry goes from the Redis
//! streams into PostgreSQL, next to raw COPY of the same rows in the same run.
//!
//! Starts its own Redis and PostgreSQL (test kit, free loopback ports), then measures:
//! 1. references: `psql \copy` of the rows as CSV, and one binary COPY through tokio-postgres;
//! 2. the database paths alone (`copy-first`, `staging`, `unnest`, and `copy-first` on rows
//!    already stored, i.e. a full redelivery), in batches;
//! 3. the archive end to end: streams pre-filled with N protobuf entries, the archive App run
//!    in-process, timed until every row is committed and acked;
//! 4. archive lag while a producer adds entries at a fixed rate;
//! 5. index choices for the partitions: insert and query cost of BRIN vs B-tree on `ts`.
//!
//! Prints a Markdown report and writes target/bench-archive/results.json.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use fred::prelude::*;
use proact_archive::partitions::Partitions;
use proact_proto::streams::{shard_for, telemetry_stream, PAYLOAD_FIELD};
use proact_proto::v1::Telemetry;
use proact_store::telemetry::{copy_telemetry_plain, write_telemetry, WriteMethod};
use prost::Message;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
struct Args {
    /// Rows in the throughput runs.
    #[arg(long, env = "ROWS", default_value_t = 1_000_000)]
    rows: usize,
    /// Equipment the rows are spread over.
    #[arg(long, env = "EQUIPMENT", default_value_t = 200)]
    equipment: usize,
    /// Batch size of the database-path runs and of the archive (`--batch-rows`).
    #[arg(long, env = "BATCH_ROWS", default_value_t = 10_000)]
    batch_rows: usize,
    /// Archive writers (`--writers`).
    #[arg(long, env = "WRITERS", default_value_t = 2)]
    writers: usize,
    /// Producer rate of the lag run, rows per second.
    #[arg(long, env = "LAG_RATE", default_value_t = 50_000)]
    lag_rate: u64,
    /// Duration of the lag run, seconds.
    #[arg(long, env = "LAG_SECS", default_value_t = 20)]
    lag_secs: u64,
    /// Rows of the index measurements.
    #[arg(long, env = "INDEX_ROWS", default_value_t = 1_000_000)]
    index_rows: usize,
    #[arg(long, env = "SHARDS", default_value_t = 8)]
    shards: u32,
    /// Sections to run: any of refs,db,archive,lag,indexes (comma-separated).
    #[arg(long, env = "ONLY", default_value = "refs,db,archive,lag,indexes")]
    only: String,
    /// Output directory.
    #[arg(long, default_value = "target/bench-archive")]
    out: String,
}

const BASE: i64 = 1_795_478_400_000_000; // 2026-11-24T00:00:00Z

fn rows(n: usize, equipment: usize, base: i64) -> Vec<Telemetry> {
    rows_every(n, equipment, base, 1_000_000)
}

/// `n` readings over `equipment` ids, each id every `step` microseconds from `base`.
fn rows_every(n: usize, equipment: usize, base: i64, step: i64) -> Vec<Telemetry> {
    (0..n)
        .map(|i| {
            let e = i % equipment;
            let k = (i / equipment) as i64;
            let x = (i as f64 * 0.001).sin();
            Telemetry {
                equipement_id: format!("PUMP-{e:04}"),
                ts_micros: base + k * step,
                temperature: 60.0 + 10.0 * x,
                vibration: 3.0 + x,
                extra: [("pressure".to_string(), 5.0 + x)].into_iter().collect(),
                received_micros: base + k * step + 1500,
                source: "mqtt".into(),
                ..Default::default()
            }
        })
        .collect()
}

async fn pg_connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(c)
}

async fn truncate(db: &tokio_postgres::Client) -> anyhow::Result<()> {
    db.batch_execute("TRUNCATE telemetry; CHECKPOINT").await?;
    Ok(())
}

async fn produce(redis: &Client, rows: &[Telemetry], shards: u32) -> anyhow::Result<()> {
    for chunk in rows.chunks(5000) {
        let p = redis.pipeline();
        for t in chunk {
            let key = telemetry_stream(shard_for(&t.equipement_id, shards));
            let _: () = p.xadd(key, false, None::<()>, "*", (PAYLOAD_FIELD, Bytes::from(t.encode_to_vec()))).await?;
        }
        let _: Vec<Value> = p.all().await?;
    }
    Ok(())
}

struct Report {
    lines: Vec<String>,
    json: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    fn line(&mut self, s: String) {
        println!("{s}");
        let _ = std::io::stdout().flush();
        self.lines.push(s);
    }
    fn rate(&mut self, key: &str, what: &str, n: usize, secs: f64, reference: Option<f64>) -> f64 {
        let r = n as f64 / secs;
        let ratio = reference.map(|x| format!("{:.0} %", 100.0 * r / x)).unwrap_or_default();
        self.line(format!("| {what} | {n} | {secs:.2} | {r:.0} | {ratio} |"));
        self.json.insert(key.into(), serde_json::json!({"rows": n, "seconds": secs, "rows_per_s": r}));
        r
    }
}

fn app_config(redis: &str, pg: &str, args: &Args, method: &str, consumer: &str) -> proact_archive::Config {
    proact_archive::Config::try_parse_from([
        "proact-archive",
        "--redis-url",
        redis,
        "--database-url",
        pg,
        "--shards",
        &args.shards.to_string(),
        "--admin-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--consumer",
        consumer,
        "--batch-rows",
        &args.batch_rows.to_string(),
        "--writers",
        &args.writers.to_string(),
        "--write-method",
        method,
        "--block-ms",
        "100",
    ])
    .expect("bench config")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (redis, pg) = tokio::try_join!(proact_testkit::Redis::start(), proact_testkit::Postgres::start())?;
    let (rurl, purl) = (redis.url(), pg.url());
    let mut db = pg_connect(&purl).await?;
    proact_store::schema::migrate(&mut db).await?;
    let pool = proact_server::db::pool(&purl, 4)?;
    let parts = Partitions::new(1);
    let data = rows(args.rows, args.equipment, BASE);
    parts.refresh(&db).await?;
    parts.ensure(&pool, data.iter().map(|t| t.ts_micros)).await?;
    let mut rep = Report { lines: Vec::new(), json: serde_json::Map::new() };
    std::fs::create_dir_all(&args.out)?;
    rep.line(format!(
        "rows: {}, equipment: {}, batch: {} rows, archive writers: {}, shards: {}",
        args.rows, args.equipment, args.batch_rows, args.writers, args.shards
    ));
    rep.line(String::new());
    rep.line("| path | rows | seconds | rows/s | vs psql \\copy |".into());
    rep.line("| --- | ---: | ---: | ---: | ---: |".into());

    let on = |s: &str| args.only.split(',').any(|x| x.trim() == s);
    let mut psql = f64::NAN;
    // 1. References.
    if on("refs") {
        let csv = format!("{}/rows.csv", args.out);
        {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&csv)?);
            for t in &data {
                let ts = chrono::DateTime::from_timestamp_micros(t.ts_micros).unwrap().to_rfc3339();
                let rc = chrono::DateTime::from_timestamp_micros(t.received_micros).unwrap().to_rfc3339();
                writeln!(
                    w,
                    "{},{},{},{},\"{{\"\"pressure\"\":{}}}\",{}",
                    t.equipement_id, ts, t.temperature, t.vibration, t.extra["pressure"], rc
                )?;
            }
        }
        truncate(&db).await?;
        let t0 = Instant::now();
        let status = std::process::Command::new("psql")
        .arg(&purl)
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!(
            "\\copy telemetry (equipement_id, ts, temperature, vibration, extra, received_at) FROM '{csv}' WITH (FORMAT csv)"
        ))
        .status()?;
        anyhow::ensure!(status.success(), "psql \\copy failed");
        psql = rep.rate("psql_copy", "psql `\\copy` (CSV, reference)", args.rows, t0.elapsed().as_secs_f64(), None);
        let _ = std::fs::remove_file(&csv);

        truncate(&db).await?;
        let t0 = Instant::now();
        copy_telemetry_plain(&mut db, &data).await?;
        rep.rate(
            "binary_copy",
            "binary COPY, one statement (reference)",
            args.rows,
            t0.elapsed().as_secs_f64(),
            Some(psql),
        );
    }
    let psql = (!psql.is_nan()).then_some(psql);

    // 2. Database paths alone, in batches on one connection.
    if on("db") {
        for (key, what, method, pre) in [
            ("db_copy_first", "copy-first, batches", WriteMethod::CopyFirst, false),
            ("db_staging", "staging + INSERT ON CONFLICT, batches", WriteMethod::Staging, false),
            ("db_unnest", "INSERT … unnest ON CONFLICT, batches", WriteMethod::Unnest, false),
            ("db_copy_first_redelivery", "copy-first, every row already stored", WriteMethod::CopyFirst, true),
        ] {
            truncate(&db).await?;
            if pre {
                copy_telemetry_plain(&mut db, &data).await?;
            }
            let t0 = Instant::now();
            for chunk in data.chunks(args.batch_rows) {
                write_telemetry(&mut db, chunk, method).await?;
            }
            rep.rate(key, what, args.rows, t0.elapsed().as_secs_f64(), psql);
        }
    }

    // 3. End to end: streams pre-filled, then the archive.
    let redis_c = proact_server::redis::connect(&rurl).await?;
    for method in ["copy-first", "staging"] {
        if !on("archive") {
            break;
        }
        truncate(&db).await?;
        let _: () = redis_c.flushall(false).await?;
        let t0 = Instant::now();
        produce(&redis_c, &data, args.shards).await?;
        let fill = t0.elapsed().as_secs_f64();
        eprintln!("streams filled: {} entries in {fill:.1} s", args.rows);
        let app = proact_archive::App::build(app_config(&rurl, &purl, &args, method, "bench")).await?;
        let stats = app.stats();
        let shutdown = CancellationToken::new();
        let t0 = Instant::now();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        while stats.entries_acked.load(Ordering::Relaxed) < args.rows as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(600), "archive did not finish");
        }
        let secs = t0.elapsed().as_secs_f64();
        shutdown.cancel();
        task.await??;
        let n: i64 = db.query_one("SELECT count(*) FROM telemetry", &[]).await?.get(0);
        anyhow::ensure!(n as usize == args.rows, "{n} rows stored, expected {}", args.rows);
        rep.rate(
            &format!("archive_{}", method.replace('-', "_")),
            &format!("**archive end to end** (streams → PostgreSQL, {method})"),
            args.rows,
            secs,
            psql,
        );
    }

    // 4. Lag at a fixed producer rate.
    if on("lag") {
        truncate(&db).await?;
        let _: () = redis_c.flushall(false).await?;
        let app = proact_archive::App::build(app_config(&rurl, &purl, &args, "copy-first", "lag")).await?;
        let stats = app.stats();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let total = (args.lag_rate * args.lag_secs) as usize;
        let lag_rows = rows(total, args.equipment, BASE + 86_400_000_000 / 2);
        let producer = {
            let (r, shards, rate) = (redis_c.clone(), args.shards, args.lag_rate);
            tokio::spawn(async move {
                // Every 10 ms, the entries due by then.
                let start = Instant::now();
                let mut sent = 0usize;
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                while sent < lag_rows.len() {
                    tick.tick().await;
                    let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(lag_rows.len());
                    if due > sent {
                        produce(&r, &lag_rows[sent..due], shards).await.expect("produce");
                        sent = due;
                    }
                }
            })
        };
        let t0 = Instant::now();
        let mut samples: Vec<f64> = Vec::new();
        while !producer.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let expected = (t0.elapsed().as_secs_f64() * args.lag_rate as f64).min(total as f64);
            let lag = (expected - stats.rows_committed.load(Ordering::Relaxed) as f64).max(0.0);
            samples.push(lag);
        }
        let produced_at = t0.elapsed();
        while stats.entries_acked.load(Ordering::Relaxed) < total as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let drain_ms = (t0.elapsed() - produced_at).as_secs_f64() * 1000.0;
        shutdown.cancel();
        task.await??;
        samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
        let to_ms = |rows: f64| rows / args.lag_rate as f64 * 1000.0;
        rep.line(String::new());
        rep.line(format!(
        "Lag at {} rows/s for {} s ({} rows): median {:.0} rows ({:.0} ms), p99 {:.0} rows ({:.0} ms), max {:.0} rows ({:.0} ms); last row committed {:.0} ms after the producer finished.",
        args.lag_rate, args.lag_secs, total, pct(0.5), to_ms(pct(0.5)), pct(0.99), to_ms(pct(0.99)),
        pct(1.0), to_ms(pct(1.0)), drain_ms
    ));
        rep.json.insert(
        "lag".into(),
        serde_json::json!({"rate": args.lag_rate, "secs": args.lag_secs, "median_rows": pct(0.5), "p99_rows": pct(0.99),
                           "max_rows": pct(1.0), "drain_ms": drain_ms}),
    );
    }

    // 5. Indexes on `ts`: insert cost (binary COPY into the partitioned table) and query cost.
    if on("indexes") {
        rep.line(String::new());
        rep.line(format!(
        "Indexes ({} rows, {} equipment, one daily partition; the unique B-tree on (equipement_id, ts) is always there):",
        args.index_rows, args.equipment
    ));
        rep.line(String::new());
        rep.line("| extra index on ts | COPY rows/s | index size | 1 equipment, 1 h (ms) | all equipment, 10 min (ms) | all equipment, 1 h, avg (ms) |".into());
        rep.line("| --- | ---: | ---: | ---: | ---: | ---: |".into());
        // Each equipment's readings spread over the whole day, as a daily partition holds them.
        let per_eq = (args.index_rows / args.equipment).max(1) as i64;
        let idx_rows = rows_every(args.index_rows, args.equipment, BASE, 86_400_000_000 / per_eq);
        let mid = BASE + 43_200_000_000;
        // Migration 0003 ships the BRIN index; the other variants replace it for the measurement.
        for (name, ddl) in [
            ("none", "DROP INDEX IF EXISTS telemetry_ts_brin"),
            (
                "BRIN (ts), as shipped",
                "CREATE INDEX IF NOT EXISTS telemetry_ts_brin ON telemetry USING brin (ts) WITH (autosummarize = on)",
            ),
            (
                "B-tree (ts)",
                "DROP INDEX IF EXISTS telemetry_ts_brin; CREATE INDEX telemetry_ts_bench ON telemetry (ts)",
            ),
        ] {
            db.batch_execute("DROP INDEX IF EXISTS telemetry_ts_bench").await?;
            truncate(&db).await?;
            db.batch_execute(ddl).await?;
            let t0 = Instant::now();
            for chunk in idx_rows.chunks(args.batch_rows) {
                copy_telemetry_plain(&mut db, chunk).await?;
            }
            let ins = args.index_rows as f64 / t0.elapsed().as_secs_f64();
            db.batch_execute("VACUUM ANALYZE telemetry").await?;
            let size: i64 = db
                .query_one(
                    "SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0)::bigint FROM pg_index i
                 JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 'telemetry_p%ts_%idx'",
                    &[],
                )
                .await?
                .get(0);
            let mid_ts = proact_store::micros_to_ts(mid);
            let time = |sql: &'static str, span: i64| {
                let db = &db;
                async move {
                    let to = proact_store::micros_to_ts(mid + span);
                    let mut v = Vec::new();
                    for _ in 0..15 {
                        let t0 = Instant::now();
                        db.query(sql, &[&mid_ts, &to]).await?;
                        v.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
                    anyhow::Ok(v[v.len() / 2])
                }
            };
            let q1 = time(
                "SELECT ts, temperature FROM telemetry WHERE equipement_id = 'PUMP-0007' AND ts >= $1 AND ts < $2",
                3_600_000_000,
            )
            .await?;
            let q2 =
                time("SELECT equipement_id, ts, temperature FROM telemetry WHERE ts >= $1 AND ts < $2", 600_000_000)
                    .await?;
            let q3 = time("SELECT avg(temperature) FROM telemetry WHERE ts >= $1 AND ts < $2", 3_600_000_000).await?;
            rep.line(format!("| {name} | {ins:.0} | {} kB | {q1:.2} | {q2:.2} | {q3:.2} |", size / 1024));
            rep.json.insert(
            format!("index_{name}"),
            serde_json::json!({"copy_rows_per_s": ins, "index_bytes": size, "q_equipment_1h_ms": q1, "q_all_10min_ms": q2, "q_all_1h_avg_ms": q3}),
        );
        }
        db.batch_execute(
            "DROP INDEX IF EXISTS telemetry_ts_bench;
             CREATE INDEX IF NOT EXISTS telemetry_ts_brin ON telemetry USING brin (ts) WITH (autosummarize = on)",
        )
        .await?;
    }

    std::fs::write(format!("{}/results.json", args.out), serde_json::to_string_pretty(&rep.json)?)?;
    std::fs::write(format!("{}/report.md", args.out), rep.lines.join("\n") + "\n")?;
    Ok(())
}
