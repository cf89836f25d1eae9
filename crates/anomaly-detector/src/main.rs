use proact_anomaly_detector::{App, Command, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    proact_server::service::main("proact-anomaly-detector", |config: Config, shutdown| async move {
        match &config.command {
            Some(Command::Replay(args)) => proact_anomaly_detector::replay::run(args, &config.rules)?,
            None => App::build(config).await?.run_until_stopped(shutdown).await?,
        }
        Ok(0)
    })
    .await
}
