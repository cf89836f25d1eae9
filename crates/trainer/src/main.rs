use clap::Parser;
use proact_trainer::{App, Command, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    proact_server::telemetry::init(&config.admin.log_format);
    if let Err(e) = config.validate() {
        eprintln!("proact-trainer: {e}");
        return std::process::ExitCode::from(proact_server::EXIT_CONFIG as u8);
    }
    let shutdown = proact_server::shutdown::on_signal();
    let result = async {
        match &config.command {
            Some(Command::Migrate) => proact_trainer::migrate(&config.pg).await,
            Some(Command::LoadReference { data }) => {
                let mut client = proact_dataprep::load::connect(&config.pg.database_url).await?;
                for s in proact_dataprep::load::load_dir(&mut client, data).await? {
                    println!("{s:?}");
                }
                Ok(())
            }
            None => App::build(config).await?.run_until_stopped(shutdown).await,
        }
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "proact-trainer failed");
            std::process::ExitCode::FAILURE
        }
    }
}
