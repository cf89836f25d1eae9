//! `proact-simulator`: publishes the sample fleet's telemetry over MQTT.

use clap::Parser;
use proact_server::config::MqttArgs;
use proact_simulator::publisher::{run, Plan};

#[derive(Debug, Parser)]
#[command(name = "proact-simulator", version, about = "Simulated factory sensors publishing over MQTT")]
struct Args {
    #[command(flatten)]
    mqtt: MqttArgs,
    /// Readings per second per equipment.
    #[arg(long, env = "PROACT_SIM_RATE", default_value_t = 1.0)]
    rate: f64,
    /// Readings per equipment before stopping (0: until Ctrl-C).
    #[arg(long, env = "PROACT_SIM_COUNT", default_value_t = 0)]
    count: u64,
    /// Mean seconds between failure episodes of one equipment.
    #[arg(long, env = "PROACT_SIM_EPISODE_EVERY_SECS", default_value_t = 600)]
    episode_every_secs: i64,
    /// Seconds an episode lasts.
    #[arg(long, env = "PROACT_SIM_EPISODE_SECS", default_value_t = 120)]
    episode_secs: i64,
    /// One message in this many is malformed on purpose (0: none).
    #[arg(long, env = "PROACT_SIM_MALFORMED_EVERY", default_value_t = 0)]
    malformed_every: u64,
    #[arg(long, env = "PROACT_SIM_SEED", default_value_t = 42)]
    seed: u64,
    /// Only these equipment ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also run a Sparkplug B edge node with this device id (`spBv1.0/proact-demo/…/edge-01/<id>`).
    #[arg(long, env = "PROACT_SIM_SPARKPLUG_DEVICE")]
    sparkplug_device: Option<String>,
    /// Seconds between the Sparkplug device's deaths (DDEATH; 0: never).
    #[arg(long, env = "PROACT_SIM_SPARKPLUG_OFFLINE_EVERY_SECS", default_value_t = 150)]
    sparkplug_offline_every_secs: u64,
    /// Seconds the Sparkplug device stays dead before its DBIRTH.
    #[arg(long, env = "PROACT_SIM_SPARKPLUG_OFFLINE_SECS", default_value_t = 30)]
    sparkplug_offline_secs: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    proact_server::telemetry::init("text");
    let (host, port, _) = match args.mqtt.endpoint() {
        Ok(e) if args.rate > 0.0 && args.rate.is_finite() => e,
        Ok(_) => {
            eprintln!("proact-simulator: invalid setting PROACT_SIM_RATE = {}: must be > 0", args.rate);
            return std::process::ExitCode::from(64);
        }
        Err(e) => {
            eprintln!("proact-simulator: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    let stop = proact_server::shutdown::on_signal();
    let edge = args.sparkplug_device.map(|device| {
        let node = proact_simulator::sparkplug::EdgeNode {
            host: host.clone(),
            port,
            group: "proact-demo".into(),
            node: "edge-01".into(),
            device,
            rate: args.rate,
            offline_every_secs: args.sparkplug_offline_every_secs,
            offline_secs: args.sparkplug_offline_secs,
            seed: args.seed,
        };
        tokio::spawn(node.run(stop.clone()))
    });
    let plan = Plan {
        host,
        port,
        client_id: format!("proact-simulator-{}", std::process::id()),
        rate: args.rate,
        count: args.count,
        episode_every_secs: args.episode_every_secs,
        episode_secs: args.episode_secs,
        malformed_every: args.malformed_every,
        seed: args.seed,
        only: args.only,
    };
    let outcome = run(plan, stop.clone()).await;
    stop.cancel();
    if let Some(edge) = edge {
        match edge.await {
            Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "Sparkplug edge node failed"),
            Err(e) => tracing::error!(error = %e, "Sparkplug edge node panicked"),
            Ok(Ok(())) => {}
        }
    }
    match outcome {
        Ok(n) => {
            tracing::info!(acknowledged = n, "simulator stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "simulator failed");
            std::process::ExitCode::FAILURE
        }
    }
}
