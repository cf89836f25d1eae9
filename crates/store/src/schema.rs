//! The contract tables' schema: the versioned migrations every service applies at start.
//!
//! Migrations are the files `crates/store/migrations/NNNN_name.sql`, embedded at build time
//! and applied in order, each once, inside a transaction under an advisory lock, so any
//! number of services may start at the same time and run [`migrate`] idempotently. Adding a
//! migration is adding a file.

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// A migration that could not be applied; nothing of it was committed.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("PostgreSQL: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration { version: i32, name: &'static str, source: tokio_postgres::Error },
}

/// Every embedded migration, in version order: (version, name, SQL).
pub fn migrations() -> &'static [(i32, &'static str, &'static str)] {
    MIGRATIONS
}

/// Applies the migrations not applied yet. Returns the versions applied by this call.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<Vec<i32>, MigrationError> {
    // Any fixed key: all ProAct processes serialise their migrations on it.
    const LOCK: i64 = 0x5052_4f41_4354; // "PROACT"
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .or_else(ignore_concurrent_create)?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK]).await?;
    let done: Vec<i32> =
        tx.query("SELECT version FROM schema_migrations", &[]).await?.iter().map(|r| r.get(0)).collect();
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(|source| MigrationError::Migration { version: *version, name, source })?;
        tx.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", &[version, name]).await?;
        tracing::info!(version, name, "migration applied");
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}

/// Two processes racing on `CREATE TABLE IF NOT EXISTS` can collide on the catalog's unique
/// index; the loser's table exists all the same.
fn ignore_concurrent_create(e: tokio_postgres::Error) -> Result<(), tokio_postgres::Error> {
    match e.code() {
        Some(c) if *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => Ok(()),
        _ => Err(e),
    }
}
