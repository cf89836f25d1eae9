use proact_alert_gateway::{App, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    proact_server::service::main("proact-alert-gateway", |config: Config, shutdown| async move {
        App::build(config).await?.run_until_stopped(shutdown).await?;
        Ok(0)
    })
    .await
}
