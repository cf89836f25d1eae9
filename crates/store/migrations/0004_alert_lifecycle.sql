-- Alert gateway (crate proact-alert-gateway): the audit trail of operators' actions on alerts,
-- and the skill each AMDEC failure mode needs, to suggest technicians for an alert.

-- One row per acknowledge / assign / clear, in the order they happened: the `alerts` row
-- keeps only the latest state, this keeps who did what and why.
CREATE TABLE IF NOT EXISTS alert_actions (
    id            bigserial   PRIMARY KEY,
    alert_id      text        NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    action        text        NOT NULL CHECK (action IN ('acknowledged', 'assigned', 'cleared')),
    by_whom       text        NOT NULL DEFAULT '',
    comment       text        NOT NULL DEFAULT '',
    technician_id text        NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alert_actions_alert ON alert_actions (alert_id, at);

-- The trade a failure mode's repair needs (values of `workload.skills`). The AMDEC export has
-- no such column; these are the fleet's modes (crate proact-simulator, `fleet`). A mode
-- missing here falls back to the skills of the technicians who repaired it before
-- (`gmao_interventions`).
CREATE TABLE IF NOT EXISTS failure_mode_skills (
    failure_mode_code text PRIMARY KEY,
    skill             text NOT NULL
);
INSERT INTO failure_mode_skills (failure_mode_code, skill) VALUES
    ('CAVITATION', 'mecanique'),
    ('BEARING_WEAR', 'mecanique'),
    ('SEAL_LEAK', 'mecanique'),
    ('OVERHEATING', 'thermique'),
    ('VALVE_FAILURE', 'mecanique'),
    ('WINDING_INSULATION', 'electrique'),
    ('MISALIGNMENT', 'mecanique'),
    ('BELT_MISALIGNMENT', 'mecanique'),
    ('GEARBOX_WEAR', 'mecanique'),
    ('IMBALANCE', 'mecanique')
ON CONFLICT (failure_mode_code) DO NOTHING;
