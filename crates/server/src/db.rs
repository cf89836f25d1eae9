//! PostgreSQL: the connection pool and single connections. The schema and its migrations
//! belong to the domain crate (`proact_store::schema`).
//!
//! Every connection may use TLS ([`crate::tls`]): the URL's `sslmode` decides (`disable`,
//! `prefer`, the default, or `require`; libpq's `verify-ca` and `verify-full` mean
//! `require`, since the certificate is always verified), and `sslrootcert=PATH` names the CA.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Errors of the database plumbing.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("PostgreSQL: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(String),
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
