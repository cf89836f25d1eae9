use clap::Parser;
use proact_chaos::{run, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    if let Err(e) = config.validate() {
        eprintln!("proact-chaos: {e}");
        return std::process::ExitCode::from(proact_server::EXIT_CONFIG as u8);
    }
    match run(config).await {
        Ok(outcome) => {
            println!("{}", outcome.report());
            if outcome.passed() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("proact-chaos: the run could not be completed: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
