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
        // A command stops at Ctrl-C or SIGTERM too: what it committed stays (a back-fill
        // resumes, a training run's versions are stored one by one).
        Some(command) => tokio::select! {
            r = proact_trainer::run_command(&config, command) => r,
            _ = shutdown.cancelled() => {
                eprintln!("proact-trainer: interrupted");
                Ok(130)
            }
        },
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
