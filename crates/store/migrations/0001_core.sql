-- Core tables of the pipeline: archived telemetry, alert episodes, the model registry.

CREATE TABLE IF NOT EXISTS telemetry (
    equipement_id text        NOT NULL,
    ts            timestamptz NOT NULL,
    temperature   double precision NOT NULL,
    vibration     double precision NOT NULL,
    extra         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    received_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT telemetry_equipement_ts UNIQUE (equipement_id, ts)
);

CREATE TABLE IF NOT EXISTS alerts (
    alert_id        text PRIMARY KEY,
    equipement_id   text        NOT NULL,
    start_ts        timestamptz NOT NULL,
    end_ts          timestamptz,
    severity        smallint    NOT NULL,
    score           double precision NOT NULL,
    reason          text        NOT NULL,
    rule            text        NOT NULL,
    model_version   text        NOT NULL DEFAULT '',
    trace_id        text        NOT NULL DEFAULT '',
    state           smallint    NOT NULL,
    updated_at      timestamptz NOT NULL,
    acknowledged_by text        NOT NULL DEFAULT '',
    comment         text        NOT NULL DEFAULT '',
    assigned_to     text        NOT NULL DEFAULT '',
    value           double precision NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alerts_equipement_start ON alerts (equipement_id, start_ts DESC);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (state) WHERE state <> 3;

CREATE TABLE IF NOT EXISTS models (
    name           text        NOT NULL,
    version        text        NOT NULL,
    status         smallint    NOT NULL,
    metrics        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    parameters     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    feature_schema jsonb       NOT NULL DEFAULT '[]'::jsonb,
    sha256         text        NOT NULL,
    artefact       bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    data_from      timestamptz,
    data_to        timestamptz,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS models_one_active ON models (name) WHERE status = 2;
