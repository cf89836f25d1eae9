//! `just bench knowledge`: the knowledge base over the real FMEA plus 100,000 generated
//! interventions. Measures the full (re-)index, the search latency over a mix of questions
//! (p50 / p99), the time for one new intervention to become searchable, and, side by side
//! on the same rows and questions, PostgreSQL full-text search (GIN index, `ts_rank`), the
//! alternative docs/knowledge.md weighs. Results go to docs/BENCHMARKS.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use proact_knowledge::{load_amdec, KnowledgeBase, Record, RowRef, Source};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PARTS: &[&str] = &[
    "roulement",
    "bearing",
    "garniture mécanique",
    "mechanical seal",
    "courroie",
    "belt",
    "filtre",
    "filter",
    "moteur",
    "motor",
    "pompe",
    "pump",
    "ventilateur",
    "fan",
    "accouplement",
    "coupling",
    "vanne",
    "valve",
    "capteur de température",
    "temperature sensor",
    "variateur",
    "drive",
    "compresseur",
    "compressor",
    "radiateur",
    "radiator",
    "flexible hydraulique",
    "hydraulic hose",
    "injecteur",
    "injector",
    "alternateur",
    "alternator",
    "démarreur",
    "starter motor",
    "condenseur",
    "condenser",
    "réducteur",
    "gearbox",
];
const PROBLEMS: &[&str] = &[
    "fuite",
    "leak",
    "usure",
    "wear",
    "surchauffe",
    "overheating",
    "vibrations anormales",
    "abnormal vibration",
    "bruit",
    "noise",
    "corrosion",
    "colmatage",
    "blocked",
    "rupture",
    "broken",
    "desserrage",
    "loose fittings",
    "court-circuit",
    "short circuit",
    "balourd",
    "imbalance",
    "désalignement",
    "misalignment",
];
const ACTIONS: &[&str] = &[
    "remplacement",
    "replaced",
    "nettoyage",
    "cleaned",
    "graissage",
    "greased",
    "resserrage",
    "tightened",
    "réglage",
    "adjusted",
    "inspection",
    "inspected",
    "équilibrage",
    "balanced",
    "alignement laser",
    "laser alignment",
];
const TYPES: &[&str] =
    &["pump", "compressor", "motor", "conveyor", "fan", "truck", "excavator", "crusher", "mill", "press"];
const INTERVENTION_QUESTIONS: &[&str] = &[
    "fuite garniture mécanique pompe",
    "bearing replaced on the fan after abnormal vibration",
    "surchauffe moteur nettoyage radiateur",
    "courroie usée remplacement",
    "misalignment coupling laser alignment",
    "court-circuit capteur de température",
    "compressor overheating",
    "hydraulic hose leak",
    "démarreur corrosion",
    "alternator noise",
];

fn interventions(n: usize, seed: u64) -> Vec<Record> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let t = TYPES[rng.gen_range(0..TYPES.len())];
            let part = PARTS[rng.gen_range(0..PARTS.len())];
            let problem = PROBLEMS[rng.gen_range(0..PROBLEMS.len())];
            let action = ACTIONS[rng.gen_range(0..ACTIONS.len())];
            Record {
                source: Some(Source::Intervention),
                origin: "generated".into(),
                row: Some(RowRef::Id(format!("OT-{i:06}"))),
                equipement_id: Some(format!("{}-{:03}", t.to_uppercase(), rng.gen_range(0..20))),
                equipment_type: Some(t.into()),
                intervention_type: Some(["corrective", "preventive", "predictive"][rng.gen_range(0..3)].into()),
                description: Some(format!("{problem} {part} : {action} {part}")),
                technician_id: Some(format!("T{:02}", rng.gen_range(1..41))),
                duration_h: Some(rng.gen_range(0.5..12.0)),
                status: Some("closed".into()),
                ..Record::default()
            }
        })
        .collect()
}

fn questions() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("eval/questions.jsonl");
    let mut qs: Vec<String> =
        proact_knowledge::eval::read_questions(&path).expect("question set").into_iter().map(|q| q.question).collect();
    qs.extend(INTERVENTION_QUESTIONS.iter().map(|s| s.to_string()));
    qs
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn latencies(mut f: impl FnMut(&str), qs: &[String], rounds: usize) -> (Duration, Duration, Duration) {
    for q in qs {
        f(q);
    }
    let mut times = Vec::with_capacity(qs.len() * rounds);
    for _ in 0..rounds {
        for q in qs {
            let t = Instant::now();
            f(q);
            times.push(t.elapsed());
        }
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99), *times.last().expect("some"))
}

fn main() {
    let n: usize = std::env::var("KNOWLEDGE_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let datasets = PathBuf::from(std::env::var("PROACT_DATASETS").unwrap_or_else(|_| "../shared/datasets".into()));
    let fmea = load_amdec(&datasets.join("UWA_mining_truck_FMEA/fmea_dataset_combined.csv"))
        .expect("the UWA FMEA (set PROACT_DATASETS)");
    let generated = interventions(n, 42);
    let mut all = fmea.clone();
    all.extend(generated.clone());
    let qs = questions();
    println!("rows: {} FMEA + {n} interventions; {} questions", fmea.len(), qs.len());

    let t = Instant::now();
    let kb = KnowledgeBase::with_records(all.clone()).expect("index");
    let index_time = t.elapsed();
    println!("tantivy: full index of {} rows: {:.2} s", all.len(), index_time.as_secs_f64());

    let (p50, p99, max) = latencies(|q| drop(kb.search(q, 10).expect("search")), &qs, 20);
    println!("tantivy: search p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", ms(p50), ms(p99), ms(max));
    // Where the tail comes from: each question's median over 5 runs, the slowest first.
    let mut per_question: Vec<(Duration, &String)> = qs
        .iter()
        .map(|q| {
            let mut t: Vec<Duration> = (0..5)
                .map(|_| {
                    let s = Instant::now();
                    drop(kb.search(q, 10).expect("search"));
                    s.elapsed()
                })
                .collect();
            t.sort();
            (t[2], q)
        })
        .collect();
    per_question.sort_by_key(|b| std::cmp::Reverse(b.0));
    for (t, q) in per_question.iter().take(5) {
        println!("tantivy: slowest questions (median of 5): {:.2} ms  {q}", ms(*t));
    }

    let mut upserts = Vec::new();
    for (i, g) in generated.iter().take(50).enumerate() {
        let mut r = g.clone();
        r.row = Some(RowRef::Id(format!("OT-NEW-{i}")));
        r.description = Some(format!("vibromètre{i} remplacé"));
        let t = Instant::now();
        kb.upsert(vec![r]).expect("upsert");
        let found = kb.search(&format!("vibromètre{i}"), 1).expect("search");
        upserts.push(t.elapsed());
        assert_eq!(found.hits.len(), 1, "the new intervention is searchable");
    }
    upserts.sort();
    println!(
        "tantivy: one new intervention searchable after p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&upserts, 0.5)),
        ms(percentile(&upserts, 0.99))
    );

    postgres(&all, &qs, p50, p99, index_time);
}

/// The same rows and questions in PostgreSQL full-text search: a `tsvector` per row (the
/// `simple` configuration, since rows mix French and English), a GIN index, OR-ed terms
/// ranked by `ts_rank`.
fn postgres(all: &[Record], qs: &[String], tp50: Duration, tp99: Duration, tindex: Duration) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let pg = match proact_testkit::Postgres::start().await {
            Ok(pg) => pg,
            Err(e) => {
                println!("postgres: skipped ({e})");
                return;
            }
        };
        let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(conn);
        client.batch_execute("CREATE TABLE kdocs (id bigint PRIMARY KEY, body text NOT NULL)").await.expect("table");
        let sink = client.copy_in("COPY kdocs (id, body) FROM STDIN").await.expect("copy");
        let mut buf = String::new();
        for (i, r) in all.iter().enumerate() {
            let body: Vec<&str> = r.text_fields().into_iter().map(|(_, _, v)| v).collect();
            let body = body.join(" ").replace(['\t', '\n', '\\', '\r'], " ");
            buf.push_str(&format!("{i}\t{body}\n"));
        }
        use futures::SinkExt;
        let mut sink = Box::pin(sink);
        sink.send(bytes::Bytes::from(buf)).await.expect("copy rows");
        sink.as_mut().finish().await.expect("copy done");
        let t = Instant::now();
        client
            .batch_execute(
                "ALTER TABLE kdocs ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED;
                 CREATE INDEX kdocs_tsv ON kdocs USING gin (tsv); ANALYZE kdocs;",
            )
            .await
            .expect("index");
        let index_time = t.elapsed();
        let stmt = client
            .prepare(
                "SELECT id, ts_rank(tsv, q) AS r FROM kdocs, to_tsquery('simple', $1) q
                 WHERE tsv @@ q ORDER BY r DESC LIMIT 10",
            )
            .await
            .expect("prepare");
        let or_query = |q: &str| {
            let words: Vec<String> = proact_knowledge::analysis::words(q).into_iter().filter(|w| w.len() > 1).collect();
            if words.is_empty() {
                "x".to_string()
            } else {
                words.join(" | ")
            }
        };
        for q in qs {
            client.query(&stmt, &[&or_query(q)]).await.expect("warm");
        }
        let mut times = Vec::new();
        for _ in 0..5 {
            for q in qs {
                let t = Instant::now();
                client.query(&stmt, &[&or_query(q)]).await.expect("query");
                times.push(t.elapsed());
            }
        }
        times.sort();
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        println!(
            "postgres: tsvector + GIN build {:.2} s, search p50 {:.2} ms, p99 {:.2} ms",
            index_time.as_secs_f64(),
            ms(p50),
            ms(p99)
        );
        println!(
            "ratio postgres / tantivy: index {:.2}, p50 {:.2}, p99 {:.2}",
            index_time.as_secs_f64() / tindex.as_secs_f64(),
            ms(p50) / ms(tp50),
            ms(p99) / ms(tp99)
        );
    });
}
