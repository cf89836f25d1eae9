//! Offline replay: scores a historical CSV through the same engine as the live loop (the
//! same windows, features, rules, models and episodes), for backtests and `just eval`.
//!
//! `proact-anomaly-detector replay --input FILE.csv [--model ARTEFACT]… [--fit-first N]
//! [--probation N] [--rules off] [--channels A,B] --output scores.csv`
//!
//! The input has a timestamp column and numeric channels; the delimiter (`,` or `;`) is
//! detected. Every numeric column is a channel (but the timestamp, the label column and the
//! benchmarks' label columns `anomaly`, `changepoint`, `label`), unless `--channels` lists
//! them: the one read as the temperature and the one read as the vibration feed the rules and
//! the models, the others are extra channels the models score too. A series without a
//! temperature or a vibration column (a single `value`, say) has that base channel held at 0.
//! With `--fit-first N`, a normal-behaviour model is learned on the features of the first N
//! rows before scoring, as benchmark protocols such as SKAB's do. With `--probation N` the
//! first N rows are learned from but never judged (no episode opens on them), as NAB's
//! probationary period wants; without a model or `--fit-first`, the model is fitted on them.
//!
//! Every output row carries the alert score, the models' continuous score (`anomaly_score`,
//! on every row, inside an episode or not), whether an episode is open after it and whether
//! it raised one (`onset`: once per episode), so a backtest can score onsets as detections.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use proact_features::{FeatureSchema, Window, BASE_CHANNELS};
use proact_models::{ArtefactInfo, ModelArtefact, NormalBehaviourParams, SchemaRef};
use proact_proto::v1::{Severity, Telemetry};

use crate::engine::{channel_values, Engine, Models, Thresholds};
use crate::models::{FOREST_MODEL, NORMAL_PREFIX};

pub use proact_models::metrics::Confusion;

#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// CSV to score.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the scores (CSV).
    #[arg(long)]
    pub output: PathBuf,
    /// Model artefact files to score with (as the registry stores them).
    #[arg(long = "model")]
    pub models: Vec<PathBuf>,
    /// Learn a normal-behaviour model on the first N rows before scoring.
    #[arg(long)]
    pub fit_first: Option<usize>,
    /// Equipment id the rows belong to (default: the file name without extension).
    #[arg(long)]
    pub equipement_id: Option<String>,
    /// Timestamp column (default: `timestamp`, `datetime`, `ts` or `time`, case-insensitive).
    #[arg(long)]
    pub timestamp_column: Option<String>,
    /// Column read as the temperature (default: the first whose name contains "temp").
    #[arg(long)]
    pub temperature_column: Option<String>,
    /// Column read as the vibration (default: the first containing "vib", else "accelerometer").
    #[arg(long)]
    pub vibration_column: Option<String>,
    /// A label column copied to the output next to the verdict, for evaluation.
    #[arg(long)]
    pub label_column: Option<String>,
    /// The columns to score (default: every column but the timestamp and the labels).
    #[arg(long, value_delimiter = ',')]
    pub channels: Vec<String>,
    /// `off`: the threshold rules never fire, only the models judge.
    #[arg(long, value_enum, default_value = "on")]
    pub rules: Rules,
    /// Rows learned from but never judged at the start of the file.
    #[arg(long, default_value_t = 0)]
    pub probation: usize,
    /// Multiplier on the fitted model's threshold (its training distances' 0.99 quantile).
    #[arg(long, default_value_t = 1.0)]
    pub margin: f64,
}

/// Whether the threshold rules judge the replayed rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rules {
    On,
    Off,
}

/// Columns that label rows in the public benchmarks: never read as a channel by default.
const LABEL_COLUMNS: [&str; 3] = ["anomaly", "changepoint", "label"];

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{file}: {detail}")]
    Input { file: String, detail: String },
    #[error("{file}:{line}: {detail}")]
    Row { file: String, line: u64, detail: String },
    #[error("model {file}: {detail}")]
    Model { file: String, detail: String },
    #[error("writing {file}: {detail}")]
    Output { file: String, detail: String },
}

/// One scored row.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub ts_micros: i64,
    pub score: f64,
    pub severity: Severity,
    pub rule: String,
    pub model_version: String,
    /// The models' score, whether or not it crossed a threshold.
    pub model_score: f64,
    /// True while an alert episode is open after this row.
    pub in_episode: bool,
    /// This row raised an episode.
    pub onset: bool,
    pub label: Option<String>,
}

/// Runs the replay as the CLI asks.
pub fn run(args: &ReplayArgs, rules: &crate::RuleArgs) -> anyhow::Result<()> {
    let cfg = rules.engine_config()?;
    let scored = replay_file(args, cfg)?;
    write_scores(&args.output, &scored)?;
    let flagged = scored.iter().filter(|s| s.severity != Severity::Unspecified).count();
    let onsets = scored.iter().filter(|s| s.onset).count();
    println!(
        "replay: {} rows scored, {} flagged, {} episodes raised, written to {}",
        scored.len(),
        flagged,
        onsets,
        args.output.display()
    );
    if args.label_column.is_some() {
        // Rows used for fitting or learning are not scored against their labels.
        let test = &scored[args.fit_first.unwrap_or(0).max(args.probation).min(scored.len())..];
        let c = confusion(test);
        println!(
            "replay: against {:?} on {} rows (an open episode counts as positive): precision {:.3}, recall {:.3}, F1 {:.3}, FAR {:.1} %, MAR {:.1} %",
            args.label_column.as_deref().unwrap_or(""),
            test.len(),
            c.precision(),
            c.recall(),
            c.f1(),
            100.0 * c.far(),
            100.0 * c.mar()
        );
    }
    Ok(())
}

fn find(
    headers: &[String],
    wanted: Option<&str>,
    guesses: &[&str],
    file: &str,
    what: &str,
) -> Result<usize, ReplayError> {
    let lower: Vec<String> = headers.iter().map(|h| h.trim().to_lowercase()).collect();
    if let Some(w) = wanted {
        return lower.iter().position(|h| *h == w.to_lowercase()).ok_or_else(|| ReplayError::Input {
            file: file.into(),
            detail: format!("no column {w:?} for the {what}; columns are {}", headers.join(", ")),
        });
    }
    for g in guesses {
        if let Some(i) = lower.iter().position(|h| h == g || h.contains(g)) {
            return Ok(i);
        }
    }
    Err(ReplayError::Input {
        file: file.into(),
        detail: format!("no {what} column found (looked for {}); name it with a flag", guesses.join(", ")),
    })
}

fn parse_ts(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    s.parse::<f64>().ok().map(|x| if x > 1e12 { x as i64 * 1000 } else { (x * 1e6) as i64 })
}

/// The name a column takes as a channel: lower case, anything but `a-z 0-9 _ . -` as `_`.
fn channel_name(header: &str) -> String {
    header
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' { c } else { '_' })
        .collect()
}

/// Which columns feed which channel.
struct ChannelColumns {
    temperature: Option<usize>,
    vibration: Option<usize>,
    /// (column, channel name) of the extra channels.
    extra: Vec<(usize, String)>,
}

fn channel_columns(
    args: &ReplayArgs,
    headers: &[String],
    ts_col: usize,
    label_col: Option<usize>,
    file: &str,
) -> Result<ChannelColumns, ReplayError> {
    let input_err = |detail: String| ReplayError::Input { file: file.into(), detail };
    let mut cols: Vec<usize> = if args.channels.is_empty() {
        (0..headers.len())
            .filter(|&c| c != ts_col && Some(c) != label_col)
            .filter(|&c| !LABEL_COLUMNS.contains(&headers[c].trim().to_lowercase().as_str()))
            .collect()
    } else {
        args.channels.iter().map(|c| find(headers, Some(c), &[], file, "channel")).collect::<Result<_, _>>()?
    };
    let pick = |wanted: Option<&str>, guesses: &[&str], what: &str, cols: &[usize]| match wanted {
        Some(w) => find(headers, Some(w), &[], file, what).map(Some),
        None => Ok(guesses.iter().find_map(|g| cols.iter().copied().find(|&c| headers[c].to_lowercase().contains(g)))),
    };
    let temperature = pick(args.temperature_column.as_deref(), &["temp"], "temperature", &cols)?;
    let vibration = pick(args.vibration_column.as_deref(), &["vib", "accelerometer"], "vibration", &cols)?;
    if temperature.is_some() && temperature == vibration {
        return Err(input_err(format!(
            "column {:?} cannot be both the temperature and the vibration",
            headers[temperature.unwrap_or_default()]
        )));
    }
    cols.retain(|&c| Some(c) != temperature && Some(c) != vibration);
    let mut extra: Vec<(usize, String)> = Vec::with_capacity(cols.len());
    for c in cols {
        let name = channel_name(&headers[c]);
        if BASE_CHANNELS.contains(&name.as_str()) || name.is_empty() || name.len() > 64 {
            return Err(input_err(format!(
                "column {:?} cannot be an extra channel (named {name:?}); leave it out with --channels or choose it with --temperature-column / --vibration-column",
                headers[c]
            )));
        }
        if let Some((other, _)) = extra.iter().find(|(_, n)| *n == name) {
            return Err(input_err(format!(
                "columns {:?} and {:?} are both channel {name:?}; keep one with --channels",
                headers[*other], headers[c]
            )));
        }
        extra.push((c, name));
    }
    Ok(ChannelColumns { temperature, vibration, extra })
}

/// Scores every row of the file through a fresh engine (its rules off if `args` says so).
pub fn replay_file(args: &ReplayArgs, mut cfg: crate::engine::EngineConfig) -> Result<Vec<Scored>, ReplayError> {
    if args.rules == Rules::Off {
        cfg.default_thresholds = Thresholds::off();
        cfg.type_thresholds.clear();
    }
    let file = args.input.display().to_string();
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| ReplayError::Input { file: file.clone(), detail: e.to_string() })?;
    let first = text.lines().next().unwrap_or("");
    let delimiter = if first.matches(';').count() > first.matches(',').count() { b';' } else { b',' };
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| ReplayError::Input { file: file.clone(), detail: e.to_string() })?
        .iter()
        .map(str::to_string)
        .collect();
    let ts_col =
        find(&headers, args.timestamp_column.as_deref(), &["timestamp", "datetime", "ts", "time"], &file, "timestamp")?;
    let label_col = match &args.label_column {
        Some(l) => Some(find(&headers, Some(l), &[], &file, "label")?),
        None => None,
    };
    let channels = channel_columns(args, &headers, ts_col, label_col, &file)?;
    let schema =
        FeatureSchema::with_extra_channels(&channels.extra.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>())
            .map_err(|e| ReplayError::Input { file: file.clone(), detail: e.to_string() })?;
    let equipement_id = args.equipement_id.clone().unwrap_or_else(|| {
        Path::new(&args.input).file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "replay".into())
    });
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i as u64 + 2;
        let rec = rec.map_err(|e| ReplayError::Row { file: file.clone(), line, detail: e.to_string() })?;
        let num = |c: usize| -> Result<f64, ReplayError> {
            rec.get(c).and_then(|v| v.trim().parse::<f64>().ok()).filter(|x| x.is_finite()).ok_or_else(|| {
                ReplayError::Row {
                    file: file.clone(),
                    line,
                    detail: format!("column {:?} is not a finite number", headers[c]),
                }
            })
        };
        let ts = rec.get(ts_col).and_then(parse_ts).ok_or_else(|| ReplayError::Row {
            file: file.clone(),
            line,
            detail: format!("timestamp {:?} is not a date", rec.get(ts_col).unwrap_or("")),
        })?;
        let mut t = Telemetry {
            equipement_id: equipement_id.clone(),
            ts_micros: ts,
            temperature: channels.temperature.map(num).transpose()?.unwrap_or(0.0),
            vibration: channels.vibration.map(num).transpose()?.unwrap_or(0.0),
            ..Default::default()
        };
        for (c, name) in &channels.extra {
            t.extra.insert(name.clone(), num(*c)?);
        }
        rows.push((t, label_col.and_then(|c| rec.get(c).map(str::to_string))));
    }

    let mut engine = Engine::with_schema(cfg.clone(), schema.clone());
    let schema_id = engine.schema_id().to_string();
    let mut models = Models::default();
    for path in &args.models {
        let pf = path.display().to_string();
        let artefact =
            ModelArtefact::load(path).map_err(|e| ReplayError::Model { file: pf.clone(), detail: e.to_string() })?;
        let scorer = artefact.scorer(&schema_id).map_err(|e| ReplayError::Model {
            file: pf.clone(),
            detail: format!(
                "{e} (the replayed channels are {}; choose them with --channels)",
                schema.channels().join(", ")
            ),
        })?;
        if scorer.name() == FOREST_MODEL {
            models.forest = Some(scorer);
        } else {
            // A normal-behaviour model from a file applies to the replayed equipment.
            models.normal.insert(equipement_id.clone(), scorer);
        }
    }
    // Probationary rows are what the model may learn from when nothing else says so.
    let fit_first = args.fit_first.or((args.probation > 0 && args.models.is_empty()).then_some(args.probation));
    if let Some(n) = fit_first {
        let mut window = Window::new(&schema, cfg.window);
        let mut feats = Vec::with_capacity(n.min(rows.len()) * schema.len());
        let mut buf = vec![0.0; schema.len()];
        let mut values = Vec::with_capacity(schema.channels().len());
        for (t, _) in rows.iter().take(n) {
            channel_values(&schema, t, &mut values);
            if window.push(t.ts_micros / 1000, &values).map(|p| p.accepted()).unwrap_or(false)
                && window.write_features(&mut buf).is_ok()
            {
                feats.extend_from_slice(&buf);
            }
        }
        let model =
            NormalBehaviourParams { margin: args.margin, ..Default::default() }.fit(&feats, schema.len()).map_err(
                |e| ReplayError::Model { file: format!("fitting on the first {n} rows"), detail: e.to_string() },
            )?;
        let info =
            ArtefactInfo::new(&format!("{NORMAL_PREFIX}{equipement_id}"), "replay-fit", SchemaRef::from(&schema));
        let scorer = model
            .to_artefact(info)
            .scorer(&schema_id)
            .map_err(|e| ReplayError::Model { file: "fit".into(), detail: e.to_string() })?;
        models.normal.insert(equipement_id.clone(), scorer);
    }
    engine.set_models(models);

    let mut open = false;
    let mut out = Vec::with_capacity(rows.len());
    for (i, (t, label)) in rows.into_iter().enumerate() {
        let a = engine.score(&t);
        let transitions =
            if i < args.probation { engine.learn(&t, t.ts_micros) } else { engine.observe(&t, "", t.ts_micros) };
        let mut onset = false;
        for tr in transitions.iter().filter(|tr| tr.episode == crate::engine::Episode::Condition) {
            open = tr.kind != proact_proto::v1::AlertEventKind::Cleared;
            onset |= tr.kind == proact_proto::v1::AlertEventKind::Raised;
        }
        out.push(Scored {
            ts_micros: t.ts_micros,
            score: a.score,
            severity: a.severity,
            rule: a.rule,
            model_version: a.model_version,
            model_score: a.model_score,
            in_episode: open,
            onset,
            label,
        });
    }
    Ok(out)
}

pub fn write_scores(path: &Path, scored: &[Scored]) -> Result<(), ReplayError> {
    let file = path.display().to_string();
    let err = |e: &dyn std::fmt::Display| ReplayError::Output { file: file.clone(), detail: e.to_string() };
    let mut w = csv::Writer::from_path(path).map_err(|e| err(&e))?;
    w.write_record([
        "timestamp",
        "score",
        "anomaly_score",
        "onset",
        "severity",
        "rule",
        "model_version",
        "in_episode",
        "label",
    ])
    .map_err(|e| err(&e))?;
    for s in scored {
        let ts = DateTime::<Utc>::from_timestamp_micros(s.ts_micros).map(|t| t.to_rfc3339()).unwrap_or_default();
        let sev = match s.severity {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
            Severity::Unspecified => "",
        };
        w.write_record([
            ts,
            format!("{:.6}", s.score),
            format!("{:.6}", s.model_score),
            (s.onset as u8).to_string(),
            sev.into(),
            s.rule.clone(),
            s.model_version.clone(),
            (s.in_episode as u8).to_string(),
            s.label.clone().unwrap_or_default(),
        ])
        .map_err(|e| err(&e))?;
    }
    w.flush().map_err(|e| err(&e))
}

/// Confusion counts of episodes against labels (a label other than empty, 0 or 0.0 is positive).
pub fn confusion(rows: &[Scored]) -> Confusion {
    let mut c = Confusion::default();
    for r in rows {
        let positive = r.label.as_deref().map(str::trim).is_some_and(|l| !l.is_empty() && l != "0" && l != "0.0");
        match (r.in_episode, positive) {
            (true, true) => c.tp += 1,
            (true, false) => c.fp += 1,
            (false, false) => c.tn += 1,
            (false, true) => c.fn_ += 1,
        }
    }
    c
}
