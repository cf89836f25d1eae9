# ProAct — tasks. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

datasets := env_var_or_default("PROACT_DATASETS", "../shared/datasets")

# List the recipes.
default:
    @just --list

# Local stack + the five services + simulated sensors + live dashboard, until Ctrl-C.
demo:
    bash deploy/demo.sh

# Every test: unit, integration against real Mosquitto/Redis/PostgreSQL, end to end.
test:
    bash deploy/install-deps.sh --browser
    cargo test --workspace --lib --bins --tests
    cargo test --workspace --doc

# Fault injection under load (docs/RELIABILITY.md): `just chaos` (short, CI), `just chaos cluster` (Redis Cluster with master kills, CI), `just chaos long`; extra flags after it (`--seed N`).
chaos profile="short" *args:
    bash deploy/install-deps.sh
    # The same build as `just test` (same features): nothing to rebuild after it.
    cargo test -q --workspace --lib --bins --tests --no-run
    target/debug/proact-chaos --profile {{profile}} {{args}}

# Formatting and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks: `just bench` runs all, `just bench trainer` one area (ingest, archive, trainer, training, detector, online, gateway, tracing, pipeline, knowledge, planning, replica-wait, checkpoint).
bench area="all":
    bash bench/run.sh {{area}}

# Evaluations on the real public datasets (PROACT_DATASETS, default ../shared/datasets).
eval:
    test -d "{{datasets}}" || { echo "eval: no datasets at {{datasets}} (set PROACT_DATASETS)"; exit 1; }
    cargo run --release -p proact-dataprep --bin proact-prepare -- eval --datasets "{{datasets}}"
    cargo run --release -p proact-model-eval -- skab --datasets "{{datasets}}"
    cargo run --release -p proact-model-eval -- ai4i --datasets "{{datasets}}"
    mkdir -p target/eval
    # The knowledge base's retrieval on the UWA FMEA, side by side with BM25 and TF-IDF (docs/knowledge.md).
    cargo run --release -p proact-knowledge --bin proact-knowledge-eval -- --datasets "{{datasets}}" --out target/eval/knowledge.json
    # The live detector's code path on a SKAB file (normal-behaviour model fitted on the first 400 rows).
    cargo run --release -p proact-anomaly-detector -- replay --input "{{datasets}}/SKAB/data/valve1/0.csv" --fit-first 400 --label-column anomaly --output target/eval/skab-valve1-0.scores.csv
    # NAB (crates/model-eval/EVAL.md): the scorer is first checked against NAB's own per-row scores of HTM (fails on any difference),
    # then the detector replays the 51 development series (rules off, the online detectors judging, each file's probation learned
    # from, never judged, hold 3 h) and its episode onsets and continuous score (one detection where it crosses the threshold)
    # are scored beside the published detectors.
    cargo run --release -p proact-model-eval -- nab --datasets "{{datasets}}" --check-published
    cargo build --release -p proact-anomaly-detector
    rm -rf target/eval/nab && bash crates/model-eval/scripts/nab-replay.sh "{{datasets}}/NAB_dev" target/eval/nab target/release/proact-anomaly-detector
    cargo run --release -p proact-model-eval -- nab --datasets "{{datasets}}" --results target/eval/nab --detections-column onset --crossings --name ProAct

# Run one service alone against the local defaults: just run ingest|archive|anomaly-detector|alert-gateway|trainer|simulator
run service *args:
    cargo run -p proact-{{service}} --bin proact-{{service}} -- {{args}}

# Start only the local stack (Mosquitto, Redis, PostgreSQL on their default ports) until Ctrl-C.
stack:
    bash deploy/install-deps.sh
    cargo run -p proact-testkit --bin proact-stack

# Validate the Helm chart without a cluster (lint, render, schemas, policy rules).
k8s-validate:
    bash k8s/validate/validate.sh

# Regenerate the sample data in data/ from the seeded generator.
data:
    cargo run -p proact-dataprep --bin proact-prepare -- generate --out data --seed 42

# Coverage-guided fuzzing with libFuzzer on stable (docs/RELIABILITY.md): each target for `seconds`; fails on a crash.
fuzz seconds="30":
    bash deploy/fuzz.sh {{seconds}}
