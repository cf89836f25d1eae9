use proact_ingest::{App, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    proact_server::service::main("proact-ingest", |config: Config, shutdown| async move {
        // One process-wide TLS provider (ring), for the broker and gRPC connections alike.
        let _ = rustls::crypto::ring::default_provider().install_default();
        App::build(config).await?.run_until_stopped(shutdown).await?;
        Ok(0)
    })
    .await
}
