use clap::Parser;
use proact_trainer::{App, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    proact_server::telemetry::init(&config.admin.log_format);
    if let Err(e) = config.validate() {
        eprintln!("proact-trainer: {e}");
        return std::process::ExitCode::from(proact_server::EXIT_CONFIG as u8);
    }
    let shutdown = proact_server::shutdown::on_signal();
    let result = match &config.command {
        Some(command) => proact_trainer::run_command(&config, command).await,
        None => async { App::build(config).await?.run_until_stopped(shutdown).await.map(|_| 0) }.await,
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "proact-trainer failed");
            std::process::ExitCode::FAILURE
        }
    }
}
