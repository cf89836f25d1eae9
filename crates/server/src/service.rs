//! The `main` of every ProAct service binary: parse the command line and environment, start
//! logging, refuse a bad configuration at once (exit code 64, naming the setting), turn
//! SIGINT/SIGTERM into a cancellation token, run the service, and map its outcome to an exit
//! code. Each binary's `main.rs` is one call to [`main`].

use std::future::Future;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::ConfigError;

/// What [`main`] needs of a service's configuration.
pub trait ServiceConfig: clap::Parser {
    /// `json` or `text` (`PROACT_LOG_FORMAT`).
    fn log_format(&self) -> &str;
    /// Every setting checked, the first bad one named.
    fn check(&self) -> Result<(), ConfigError>;
}

/// Runs `body` with the parsed configuration and the shutdown token; its `Ok` value is the
/// exit code (0 for a service that stopped cleanly), an error is logged and exits with 1.
pub async fn main<C, F, Fut>(name: &'static str, body: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<u8>>,
{
    let config = C::parse();
    crate::telemetry::init(config.log_format());
    if let Err(e) = config.check() {
        eprintln!("{name}: {e}");
        return ExitCode::from(crate::EXIT_CONFIG as u8);
    }
    let shutdown = crate::shutdown::on_signal();
    match body(config, shutdown).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "{name} failed");
            ExitCode::FAILURE
        }
    }
}
