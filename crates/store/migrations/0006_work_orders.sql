-- Work orders (crate proact-maintenance): the GMAO side of an alert, from planning to the
-- outcome the technician records, and the intervention history they join when closed.
--
-- One history: a closed work order is a row of `gmao_interventions` with `origin =
-- 'work_order'`, next to the imported rows (`origin = 'gmao_import'`), so the trainer's labels,
-- the knowledge base and the planning read one table (docs/maintenance.md says why not a view).

ALTER TABLE gmao_interventions
    ADD COLUMN IF NOT EXISTS origin text NOT NULL DEFAULT 'gmao_import'
        CHECK (origin IN ('gmao_import', 'work_order'));
-- What the technician found (work orders only; imported rows leave them empty).
ALTER TABLE gmao_interventions
    ADD COLUMN IF NOT EXISTS outcome text
        CHECK (outcome IN ('failure_confirmed', 'false_alarm', 'no_fault_found'));
ALTER TABLE gmao_interventions ADD COLUMN IF NOT EXISTS cause_found text;
ALTER TABLE gmao_interventions ADD COLUMN IF NOT EXISTS action_taken text;
ALTER TABLE gmao_interventions ADD COLUMN IF NOT EXISTS parts text;
ALTER TABLE gmao_interventions ADD COLUMN IF NOT EXISTS alert_id text;
-- When the fault began, as far as anyone knows (the alert's start): the labels' windows end
-- there, not at the repair, which may come days later.
ALTER TABLE gmao_interventions ADD COLUMN IF NOT EXISTS fault_started_at timestamptz;

CREATE TABLE IF NOT EXISTS work_orders (
    work_order_id        text        PRIMARY KEY,
    kind                 text        NOT NULL CHECK (kind IN ('corrective', 'preventive')),
    equipement_id        text        NOT NULL,
    -- Empty for preventive work planned by hand.
    alert_id             text,
    -- The alert's start and the model (or rules) version that raised it, as they were when
    -- the order was made: labels and the per-version precision must not move with the alert.
    alert_started_at     timestamptz,
    alert_model_version  text        NOT NULL DEFAULT '',
    failure_mode_code    text,
    priority             double precision NOT NULL CHECK (priority >= 0 AND priority <= 100),
    technician_id        text        NOT NULL,
    planned_start        timestamptz NOT NULL,
    estimated_duration_h double precision NOT NULL CHECK (estimated_duration_h >= 0),
    description          text        NOT NULL DEFAULT '',
    state                text        NOT NULL CHECK (state IN ('planned', 'in_progress', 'done', 'cancelled')),
    created_by           text        NOT NULL,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    started_at           timestamptz,
    closed_at            timestamptz,
    outcome              text        CHECK (outcome IN ('failure_confirmed', 'false_alarm', 'no_fault_found')),
    found_failure_mode_code text,
    cause_found          text,
    action_taken         text,
    parts                text,
    actual_duration_h    double precision CHECK (actual_duration_h >= 0),
    CHECK ((state = 'done') = (outcome IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS work_orders_technician_state ON work_orders (technician_id, state);
CREATE INDEX IF NOT EXISTS work_orders_state ON work_orders (state, planned_start);
-- A retried "create from this alert" finds the open order instead of making a second one.
CREATE UNIQUE INDEX IF NOT EXISTS work_orders_one_open_per_alert ON work_orders (alert_id)
    WHERE alert_id IS NOT NULL AND state IN ('planned', 'in_progress');

-- Every state change, who made it and when; also the outbox of the `proact:workorders`
-- stream: `event` is the `WorkOrderEvent` (protobuf) written in the same transaction as the
-- change, `event_id` stays empty until it is on the stream, so an event lost to a Redis
-- outage is published later, in order, as it was.
CREATE TABLE IF NOT EXISTS work_order_transitions (
    id            bigserial   PRIMARY KEY,
    work_order_id text        NOT NULL REFERENCES work_orders (work_order_id),
    from_state    text,
    to_state      text        NOT NULL,
    by_whom       text        NOT NULL,
    at            timestamptz NOT NULL,
    comment       text        NOT NULL DEFAULT '',
    event         bytea       NOT NULL,
    event_id      text
);
CREATE INDEX IF NOT EXISTS work_order_transitions_order ON work_order_transitions (work_order_id, id);
CREATE INDEX IF NOT EXISTS work_order_transitions_unpublished ON work_order_transitions (id)
    WHERE event_id IS NULL;
