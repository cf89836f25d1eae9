//! `proact-stack`: starts the local stack (Mosquitto, Redis, PostgreSQL) on the default
//! ports, prints the environment that points services at it, and runs until Ctrl-C.

use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = std::env::args().nth(1).map(PathBuf::from);
    let stack =
        proact_testkit::Stack::start_with(proact_testkit::StackOptions { ports: Some((1883, 6379, 5432)), data_dir })
            .await?;
    for (k, v) in stack.env() {
        println!("{k}={v}");
    }
    println!("stack ready");
    tokio::signal::ctrl_c().await?;
    drop(stack);
    Ok(())
}
