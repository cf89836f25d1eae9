//! Server plumbing shared by every ProAct service, and nothing domain-specific:
//! configuration pieces ([`config`]), logging and metrics ([`telemetry`]), the admin HTTP
//! server with `/healthz`, `/readyz` and `/metrics` ([`admin`]), graceful shutdown
//! ([`shutdown`]), and connections to Redis ([`redis`]) and PostgreSQL ([`db`]; the schema
//! and its migrations are the domain's, in `proact_store::schema`).

pub mod admin;
pub mod auth;
pub mod backoff;
pub mod config;
pub mod consumer;
pub mod db;
pub mod grpc;
pub mod otel;
pub mod redis;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

pub use admin::Readiness;
pub use config::ConfigError;

/// Exit code for a configuration error (EX_USAGE), as every service's `main` returns it.
pub const EXIT_CONFIG: i32 = 64;
