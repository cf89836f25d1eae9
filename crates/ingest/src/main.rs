use clap::Parser;
use proact_ingest::{App, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    proact_server::telemetry::init(&config.admin.log_format);
    if let Err(e) = config.validate() {
        eprintln!("proact-ingest: {e}");
        return std::process::ExitCode::from(proact_server::EXIT_CONFIG as u8);
    }
    // One process-wide TLS provider (ring), for the broker and gRPC connections alike.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shutdown = proact_server::shutdown::on_signal();
    let result = async { App::build(config).await?.run_until_stopped(shutdown).await }.await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "proact-ingest failed");
            std::process::ExitCode::FAILURE
        }
    }
}
