//! `proact-device add ID`: provisions a device (see `proact_ingest::provision`) and prints
//! its credentials as one JSON object, for the operator to put on the device.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "proact-device",
    version,
    about = "Provision devices: per-device MQTT credentials bound to their own topic"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Add a device (or give a known one a new password) and print its credentials as JSON.
    Add {
        /// The device's equipement_id: its MQTT user name, and the id in its topic.
        id: String,
        /// Mosquitto's password file (`password_file`); created if missing.
        #[arg(long, env = "PROACT_MQTT_PASSWORD_FILE")]
        passwd_file: PathBuf,
        /// Ingest's allow-list file (`PROACT_INGEST_ALLOWLIST=<file>`): the id is added.
        #[arg(long)]
        allowlist_file: Option<PathBuf>,
        /// The `mosquitto_passwd` program.
        #[arg(long, default_value = "mosquitto_passwd")]
        mosquitto_passwd: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let Cmd::Add { id, passwd_file, allowlist_file, mosquitto_passwd } = Cli::parse().command;
    match proact_ingest::provision::provision(&id, &passwd_file, allowlist_file.as_deref(), &mosquitto_passwd) {
        Ok(device) => {
            println!("{}", serde_json::to_string(&device).expect("a device serialises"));
            eprintln!("proact-device: {id} added; send SIGHUP to Mosquitto so it reloads {}", passwd_file.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("proact-device: {e}");
            std::process::ExitCode::from(proact_server::EXIT_CONFIG as u8)
        }
    }
}
