use clap::Parser;
use proact_anomaly_detector::{App, Command, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    proact_server::telemetry::init(&config.admin.log_format);
    if let Err(e) = config.validate() {
        eprintln!("proact-anomaly-detector: {e}");
        return std::process::ExitCode::from(proact_server::EXIT_CONFIG as u8);
    }
    let shutdown = proact_server::shutdown::on_signal();
    let result = async {
        match &config.command {
            Some(Command::Replay(args)) => proact_anomaly_detector::replay::run(args, &config.rules),
            None => App::build(config).await?.run_until_stopped(shutdown).await,
        }
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "proact-anomaly-detector failed");
            std::process::ExitCode::FAILURE
        }
    }
}
