-- The demo's simulated history (`proact-trainer backfill`): one row per back-fill, written
-- before its first batch and finished after its last, so a second run skips a finished one and
-- resumes an interrupted one with the same plan (the generation is deterministic), instead of
-- writing a second, overlapping past.

CREATE TABLE IF NOT EXISTS simulated_history (
    id           bigserial   PRIMARY KEY,
    -- The generator's plan (seed, range, step, episodes, rule thresholds), as JSON.
    plan         jsonb       NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    readings     bigint      NOT NULL DEFAULT 0,
    failures     integer     NOT NULL DEFAULT 0,
    false_alarms integer     NOT NULL DEFAULT 0
);
