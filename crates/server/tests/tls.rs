//! TLS to PostgreSQL and Redis against servers started with generated certificates: the
//! production values' `sslmode=require` connects encrypted, `rediss://` really speaks TLS,
//! and a server whose certificate the configured CA did not sign is refused.

use fred::prelude::*;
use proact_testkit::pki::Pki;
use proact_testkit::{Postgres, Redis, ServerTls};

fn server_tls(pki: &Pki) -> ServerTls {
    ServerTls { ca: pki.path("ca.pem"), cert: pki.path("server.pem"), key: pki.path("server.key") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_with_the_url_sslmode() {
    let (pki, stranger) = (Pki::new().unwrap(), Pki::new().unwrap());
    let pg = Postgres::start_tls(server_tls(&pki)).await.unwrap();
    let ca = pki.path("ca.pem").display().to_string();
    for mode in ["require", "verify-full"] {
        let url = format!("{}?sslmode={mode}&sslrootcert={ca}", pg.url());
        let pool = proact_server::db::pool(&url, 2).unwrap();
        let client = pool.get().await.expect("a TLS connection");
        let row = client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap();
        assert!(row.get::<_, bool>(0), "sslmode={mode}: the session is encrypted");
        let one = proact_server::db::connect(&url).await.unwrap();
        let row = one.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap();
        assert!(row.get::<_, bool>(0));
    }
    let wrong = format!("{}?sslmode=require&sslrootcert={}", pg.url(), stranger.path("ca.pem").display());
    let e = proact_server::db::connect(&wrong).await.unwrap_err();
    assert!(e.to_string().to_lowercase().contains("certificate") || e.to_string().contains("TLS"), "{e}");
    let plain = proact_server::db::connect(&format!("{}?sslmode=disable", pg.url())).await.unwrap();
    let row = plain.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap();
    assert!(!row.get::<_, bool>(0), "sslmode=disable stays in clear, as asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_speaks_tls_and_verifies_the_server() {
    let (pki, stranger) = (Pki::new().unwrap(), Pki::new().unwrap());
    let redis = Redis::start_tls(server_tls(&pki)).await.unwrap();
    assert!(redis.url().starts_with("rediss://"));
    let url = format!("{}?sslrootcert={}", redis.url(), pki.path("ca.pem").display());
    let client = proact_server::redis::connect(&url).await.expect("a TLS connection");
    let _: () = client.set("k", "v", None, None, false).await.unwrap();
    let v: String = client.get("k").await.unwrap();
    assert_eq!(v, "v");
    let wrong = format!("{}?sslrootcert={}", redis.url(), stranger.path("ca.pem").display());
    assert!(proact_server::redis::connect(&wrong).await.is_err(), "a server the CA did not sign is refused");
    let clear = redis.url().replacen("rediss://", "redis://", 1);
    // Refused as a server that does not answer is: tried again until the patience runs out.
    let e = proact_server::redis::connect_within(&clear, std::time::Duration::from_secs(1))
        .await
        .expect_err("a TLS-only port does not answer in clear");
    assert!(e.details().contains("rediss://"), "{e:?}");
}
