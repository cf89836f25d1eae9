use proact_archive::{App, Command, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    proact_server::service::main("proact-archive", |config: Config, shutdown| async move {
        match config.command {
            Some(Command::Migrate) => proact_archive::migrate(&config.pg).await?,
            None => App::build(config).await?.run_until_stopped(shutdown).await?,
        }
        Ok(0)
    })
    .await
}
