-- Telemetry partitioned by time (declarative range partitioning on `ts`).
--
-- Why: the table grows without bound; time partitions make retention a `DROP TABLE` of old
-- partitions instead of a `DELETE` that bloats the table, keep each partition's unique index
-- small enough to stay in memory while it is written, and let range queries prune to the
-- partitions they touch. The archive creates partitions ahead of time and on demand (for a
-- batch carrying an older or newer timestamp) and drops the expired ones; the partition
-- width is its setting (`PROACT_ARCHIVE_PARTITION_DAYS`). There is no DEFAULT partition: rows
-- in a default partition would make creating the matching partition later fail.
--
-- The contract stays: table `telemetry` with `equipement_id`, `ts` timestamptz,
-- `temperature`, `vibration`, unique on (`equipement_id`, `ts`) (that B-tree also serves
-- per-equipment range queries; docs/BENCHMARKS.md "Archive" has the index measurements).
--
-- Idempotent: a database whose `telemetry` is already partitioned is left alone; an older
-- plain table is converted, its rows moved into daily partitions (UTC days).

DO $$
DECLARE
    day date;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('telemetry')) THEN
        RETURN;
    END IF;
    IF to_regclass('telemetry') IS NOT NULL THEN
        ALTER TABLE telemetry RENAME TO telemetry_unpartitioned;
        ALTER TABLE telemetry_unpartitioned RENAME CONSTRAINT telemetry_equipement_ts TO telemetry_unpartitioned_equipement_ts;
    END IF;

    CREATE TABLE telemetry (
        equipement_id text        NOT NULL,
        ts            timestamptz NOT NULL,
        temperature   double precision NOT NULL,
        vibration     double precision NOT NULL,
        extra         jsonb       NOT NULL DEFAULT '{}'::jsonb,
        received_at   timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT telemetry_equipement_ts UNIQUE (equipement_id, ts)
    ) PARTITION BY RANGE (ts);

    IF to_regclass('telemetry_unpartitioned') IS NOT NULL THEN
        FOR day IN SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date FROM telemetry_unpartitioned LOOP
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                'telemetry_p' || to_char(day, 'YYYYMMDD'),
                day::timestamp AT TIME ZONE 'UTC',
                (day + 1)::timestamp AT TIME ZONE 'UTC');
        END LOOP;
        INSERT INTO telemetry (equipement_id, ts, temperature, vibration, extra, received_at)
            SELECT equipement_id, ts, temperature, vibration, extra, received_at FROM telemetry_unpartitioned;
        DROP TABLE telemetry_unpartitioned;
    END IF;
END
$$;

-- Time-window queries over every equipment (the trainer's history, retention checks) prune
-- to the partitions they touch; inside one, a BRIN index on `ts` skips the rest of it for a
-- fraction of a per-cent of the insert cost (rows arrive in time order, so block ranges stay
-- narrow). Measured against no index and a B-tree on `ts`: docs/BENCHMARKS.md "Archive".
CREATE INDEX IF NOT EXISTS telemetry_ts_brin ON telemetry USING brin (ts) WITH (autosummarize = on);
