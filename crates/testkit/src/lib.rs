//! Real servers for tests and the local stack: Mosquitto, Redis and PostgreSQL started from
//! the system's binaries, on free loopback ports, in a temporary directory, and stopped
//! when dropped (also when a test panics). Integration tests and `just demo` both use it,
//! so the demo runs on exactly what the tests exercise.
//!
//! PostgreSQL refuses to run as root; as root, the kit runs it as the `postgres` user (or
//! `nobody`). A missing binary is an error that names the Debian package to install.
//!
//! [`RedisCluster`] is a real Redis Cluster (three masters, three replicas) for the tests
//! that prove ProAct on one, with a way to kill a master and wait for its replica's promotion.
//!
//! [`fuzz`] holds the stable-toolchain half of the fuzz targets: corpus replay and seeded
//! mutations.

mod cluster;
pub mod fuzz;
pub mod pki;
mod process;
pub mod procstat;
mod servers;

pub use cluster::{Master, RedisCluster};
pub use process::free_port;
pub use servers::{Mosquitto, MosquittoOptions, Postgres, Redis, ServerTls, Stack, StackOptions};

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("{binary} not found: install the Debian package `{package}` (or run deploy/install-deps.sh)")]
    Missing { binary: &'static str, package: &'static str },
    #[error("{server} did not start: {detail}")]
    Start { server: &'static str, detail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
