//! The kit starts real servers that accept connections, and stops them on drop.

use std::net::TcpStream;

#[tokio::test]
async fn stack_starts_and_stops() {
    let stack = proact_testkit::Stack::start().await.expect("stack starts");
    let ports = [stack.mqtt.port(), stack.redis.port(), stack.postgres.port()];
    for p in ports {
        assert!(TcpStream::connect(("127.0.0.1", p)).is_ok(), "port {p} accepts");
    }
    let (client, conn) =
        tokio_postgres::connect(&stack.postgres.url(), tokio_postgres::NoTls).await.expect("login to proact");
    tokio::spawn(conn);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    drop(client);
    drop(stack);
    for p in ports {
        assert!(TcpStream::connect(("127.0.0.1", p)).is_err(), "port {p} closed after drop");
    }
}

#[tokio::test]
async fn postgres_restart_keeps_data() {
    let mut pg = proact_testkit::Postgres::start().await.unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (42)").await.unwrap();
    drop(c);
    pg.restart().await.unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let x: i32 = c.query_one("SELECT x FROM t", &[]).await.unwrap().get(0);
    assert_eq!(x, 42);
}
