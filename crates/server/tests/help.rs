//! `--help` prints the value of each setting's environment variable unless told not to: a
//! password in a connection URL would land in a terminal, a CI log or a support ticket.
//! Its own test binary, since it sets process-wide environment variables.

use clap::{CommandFactory, Parser};
use proact_server::config::{GrpcAuthArgs, MqttArgs, PgArgs, RedisArgs};

#[derive(Parser)]
struct Service {
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    pg: PgArgs,
    #[command(flatten)]
    mqtt: MqttArgs,
    #[command(flatten)]
    grpc: GrpcAuthArgs,
}

#[test]
fn help_never_prints_a_secret_from_the_environment() {
    std::env::set_var("PROACT_DATABASE_URL", "postgres://proact:pg-s3cret@db:5432/proact");
    std::env::set_var("PROACT_REDIS_URL", "redis://:redis-s3cret@redis:6379");
    std::env::set_var("PROACT_MQTT_URL", "mqtts://dev:mqtt-s3cret@broker:8883");
    std::env::set_var("PROACT_MQTT_PASSWORD", "mqtt-pass-s3cret");
    std::env::set_var("PROACT_GRPC_TOKEN", "grpc-token-s3cret-0123");
    let help = Service::command().render_long_help().to_string();
    assert!(help.contains("PROACT_DATABASE_URL"), "{help}");
    for secret in ["pg-s3cret", "redis-s3cret", "mqtt-s3cret", "mqtt-pass-s3cret", "grpc-token-s3cret"] {
        assert!(!help.contains(secret), "`{secret}` printed by --help:\n{help}");
    }
}
