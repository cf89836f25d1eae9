use clap::Parser;
use proact_archive::{App, Command, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    proact_server::telemetry::init(&config.admin.log_format);
    if let Err(e) = config.validate() {
        eprintln!("proact-archive: {e}");
        return std::process::ExitCode::from(proact_server::EXIT_CONFIG as u8);
    }
    let shutdown = proact_server::shutdown::on_signal();
    let result = async {
        match config.command {
            Some(Command::Migrate) => proact_archive::migrate(&config.pg).await,
            None => App::build(config).await?.run_until_stopped(shutdown).await,
        }
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "proact-archive failed");
            std::process::ExitCode::FAILURE
        }
    }
}
