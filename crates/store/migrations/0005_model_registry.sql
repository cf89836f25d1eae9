-- Model registry (crate proact-trainer): when each version became active or retired, and the
-- held-out rows each version was evaluated on.
--
-- Why the timestamps: "roll back to the previously active version" needs the order in which
-- versions left the active status, which `status` alone does not keep.
-- Why the held-out rows: the promotion gate compares a candidate with the active version on
-- the *same* held-out data (the candidate's 20 %), also when an operator promotes it later by
-- hand, so the rows are kept with the version (row-major little-endian f64, one u8 label per
-- row) and deleted with it.

ALTER TABLE models ADD COLUMN IF NOT EXISTS activated_at timestamptz;
ALTER TABLE models ADD COLUMN IF NOT EXISTS retired_at timestamptz;

CREATE TABLE IF NOT EXISTS model_holdout (
    name       text    NOT NULL,
    version    text    NOT NULL,
    n_features integer NOT NULL CHECK (n_features > 0),
    n_rows     integer NOT NULL CHECK (n_rows >= 0),
    features   bytea   NOT NULL,
    labels     bytea   NOT NULL,
    PRIMARY KEY (name, version),
    FOREIGN KEY (name, version) REFERENCES models (name, version) ON DELETE CASCADE
);
