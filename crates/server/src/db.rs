//! PostgreSQL: the connection pool and the versioned migrations.
//!
//! Every connection may use TLS ([`crate::tls`]): the URL's `sslmode` decides (`disable`,
//! `prefer`, the default, or `require`; libpq's `verify-ca` and `verify-full` mean
//! `require`, since the certificate is always verified), and `sslrootcert=PATH` names the CA.
//!
//! Migrations are the files `crates/server/migrations/NNNN_name.sql`, embedded at build time
//! and applied in order, each once, inside a transaction under an advisory lock, so any
//! number of services may start at the same time and run `migrate` idempotently.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres_rustls::MakeRustlsConnect;

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Errors of the database plumbing.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("PostgreSQL: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(String),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration { version: i32, name: &'static str, source: tokio_postgres::Error },
    #[error("TLS to PostgreSQL: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// The connection settings and TLS connector a PostgreSQL URL asks for.
pub fn connect_config(url: &str) -> Result<(tokio_postgres::Config, MakeRustlsConnect), DbError> {
    let (url, root) = crate::tls::take_root_cert(url);
    let url = libpq_sslmode(&url);
    let config: tokio_postgres::Config = url.parse()?;
    let tls = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
        // Never used; no need for a CA store that may not exist.
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(crate::tls::TlsError::from)?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    } else {
        crate::tls::client_config(root.as_deref())?
    };
    Ok((config, MakeRustlsConnect::new(tls)))
}

/// libpq's `verify-ca` / `verify-full` as tokio-postgres' `require` (we always verify).
fn libpq_sslmode(url: &str) -> String {
    url.replace("sslmode=verify-full", "sslmode=require").replace("sslmode=verify-ca", "sslmode=require")
}

/// A pool of `size` connections to `url`. Connections are made lazily.
pub fn pool(url: &str, size: usize) -> Result<Pool, DbError> {
    let (config, tls) = connect_config(url)?;
    let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager).max_size(size).build().map_err(|e| DbError::Pool(e.to_string()))
}

/// One connection to `url` (TLS as the URL asks), its connection task spawned.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, DbError> {
    let (config, tls) = connect_config(url)?;
    let (client, conn) = config.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// Every embedded migration, in version order.
pub fn migrations() -> &'static [(i32, &'static str, &'static str)] {
    MIGRATIONS
}

/// Applies the migrations not applied yet. Returns the versions applied by this call.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<Vec<i32>, DbError> {
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
        tx.batch_execute(sql).await.map_err(|source| DbError::Migration { version: *version, name, source })?;
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
