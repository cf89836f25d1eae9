//! Shared by the trainer's integration tests: real PostgreSQL and Redis, the service on free ports.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use fred::prelude::*;
use proact_proto::streams::{MODEL_EVENTS_STREAM, PAYLOAD_FIELD};
use proact_proto::v1::ModelEvent;
use proact_testkit::{Postgres, Redis};
use proact_trainer::{App, Config, Registry};
use prost::Message;
use tokio_util::sync::CancellationToken;

pub struct Running {
    pub pg: Postgres,
    pub redis: Redis,
    pub grpc: SocketAddr,
    pub registry: Registry,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// What the service was started with (for the CLI commands).
    pub config: Config,
}

/// Starts PostgreSQL, Redis and the trainer service with `extra` flags.
pub async fn start(extra: &[&str]) -> Running {
    let (redis, pg) = tokio::try_join!(Redis::start(), Postgres::start()).unwrap();
    let mut args: Vec<String> = ["proact-trainer", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--database-url".into(), pg.url(), "--redis-url".into(), redis.url()]);
    args.extend(["--train-schedule".into(), "off".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = Config::try_parse_from(args).unwrap();
    config.validate().unwrap();
    let app = App::build(config.clone()).await.unwrap();
    let (grpc, registry) = (app.grpc_addr(), app.trainer().registry().clone());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    Running { pg, redis, grpc, registry, shutdown, task, config }
}

pub async fn pg_client(pg: &Postgres) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

/// Every model event in the stream, oldest first.
pub async fn events(redis: &Redis) -> Vec<ModelEvent> {
    let client = proact_server::redis::connect(&redis.url()).await.unwrap();
    let entries: Vec<(String, std::collections::HashMap<String, Bytes>)> =
        client.xrange(MODEL_EVENTS_STREAM, "-", "+", None).await.unwrap();
    entries
        .into_iter()
        .filter_map(|(_, f)| f.get(PAYLOAD_FIELD).and_then(|p| ModelEvent::decode(p.as_ref()).ok()))
        .collect()
}

pub async fn grpc_client(
    addr: SocketAddr,
) -> proact_proto::v1::model_registry_client::ModelRegistryClient<tonic::transport::Channel> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match proact_proto::v1::model_registry_client::ModelRegistryClient::connect(format!("http://{addr}")).await {
            Ok(c) => return c,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("registry not reachable: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
