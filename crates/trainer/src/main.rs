use proact_trainer::{App, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    proact_server::service::main("proact-trainer", |config: Config, shutdown| async move {
        match &config.command {
            // A command stops at Ctrl-C or SIGTERM too: what it committed stays (a back-fill
            // resumes, a training run's versions are stored one by one).
            Some(command) => tokio::select! {
                r = proact_trainer::run_command(&config, command) => r,
                _ = shutdown.cancelled() => {
                    eprintln!("proact-trainer: interrupted");
                    Ok(130)
                }
            },
            None => {
                App::build(config).await?.run_until_stopped(shutdown).await?;
                Ok(0)
            }
        }
    })
    .await
}
