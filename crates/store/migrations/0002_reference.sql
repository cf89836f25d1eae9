-- Reference data loaded from data/ by `proact-prepare load` (crate proact-dataprep):
-- the AMDEC table, the GMAO intervention history, the technicians' workload.
-- Column names are the canonical columns of the clean CSVs (docs/data.md); the loader
-- upserts on the primary keys, so loading twice changes nothing.

CREATE TABLE IF NOT EXISTS amdec (
    equipement_id       text     NOT NULL,
    equipment_type      text,
    subsystem           text,
    component           text,
    sub_component       text,
    failure_mode_code   text     NOT NULL,
    failure_mode        text     NOT NULL,
    effect              text,
    cause               text,
    current_controls    text,
    severity            integer  NOT NULL CHECK (severity >= 0),
    occurrence          integer  NOT NULL CHECK (occurrence >= 0),
    detection           integer  NOT NULL CHECK (detection >= 0),
    rpn                 integer  NOT NULL,
    -- The RPN the source stated when it disagreed with S × O × D (kept for the audit trail).
    rpn_stated_mismatch integer,
    criticality         text,
    recommended_action  text,
    PRIMARY KEY (equipement_id, failure_mode_code)
);

CREATE TABLE IF NOT EXISTS gmao_interventions (
    intervention_id   text        PRIMARY KEY,
    equipement_id     text        NOT NULL,
    equipment_type    text,
    started_at        timestamptz NOT NULL,
    ended_at          timestamptz,
    intervention_type text        NOT NULL,
    failure_mode_code text,
    description       text,
    technician_id     text,
    duration_h        double precision,
    cost_eur          double precision,
    status            text
);
-- "What was done last time on this machine", and labels by time range.
CREATE INDEX IF NOT EXISTS gmao_interventions_equipement_start
    ON gmao_interventions (equipement_id, started_at DESC);

CREATE TABLE IF NOT EXISTS workload (
    technician_id    text        NOT NULL,
    technician_name  text,
    skills           text,
    period_start     timestamptz NOT NULL,
    planned_hours    double precision,
    actual_hours     double precision,
    interventions    integer,
    availability_pct double precision,
    PRIMARY KEY (technician_id, period_start)
);
