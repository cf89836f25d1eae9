//! PostgreSQL: the connection pool. The schema and its migrations belong to the domain
//! crate (`proact_store::schema`).

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// Errors of the database plumbing.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("PostgreSQL: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(String),
}

/// A pool of `size` connections to `url`. Connections are made lazily.
pub fn pool(url: &str, size: usize) -> Result<Pool, DbError> {
    let config: tokio_postgres::Config = url.parse()?;
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager).max_size(size).build().map_err(|e| DbError::Pool(e.to_string()))
}
