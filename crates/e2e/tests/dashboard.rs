//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`)
//! against the whole pipeline: a hot reading published over MQTT shows up as an alert on
//! the page, an operator acknowledges it with the button, and a second page (another
//! browser, tablet-sized) sees the new state. Screenshots go to `target/dashboard-*.png`.

mod webdriver;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rumqttc::QoS;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
/// Equipment with normal readings before the hot one (so the chart and the tiles have data).
const FLEET: [&str; 4] = ["PUMP-01", "PUMP-02", "FAN-01", "COMP-01"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ts(offset_s: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_s)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The row of the first alert of `equipment` raised by a measurement rule (not a no-data alarm).
fn alert_row(equipment: &str) -> String {
    format!(
        "return [...document.querySelectorAll('#alerts tr')].find(r => r.dataset.equipment === '{equipment}' && r.dataset.rule !== 'no_data')"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_shows_a_hot_reading_live_and_an_acknowledgement_on_a_second_page() {
    // First, so that a machine without the browser fails at once with the package names.
    let driver = webdriver::Driver::start().await;
    let stack = proact_testkit::Stack::start().await.expect("real servers start");
    proact_e2e::load_sample_data(&stack).await.expect("reference data loads");
    let pipeline = proact_e2e::Pipeline::start(&stack, None).await.expect("services start");

    // Normal readings over the last five minutes.
    let (mqtt, mut acked) = proact_e2e::sensor(&stack, "dashboard-sensor", 1000);
    let publish = |id: &str, temperature: f64, at: String| {
        let payload = json!({"equipement_id": id, "temperature": temperature, "vibration": 3.1, "timestamp": at});
        let (mqtt, topic) = (mqtt.clone(), format!("sensors/{id}/telemetry"));
        async move { mqtt.publish(topic, QoS::AtLeastOnce, false, payload.to_string()).await.unwrap() }
    };
    let mut sent = 0;
    for i in 0..30i64 {
        for (k, id) in FLEET.iter().enumerate() {
            let t = 62.0 + ((i as usize + k) % 7) as f64 * 0.8;
            publish(id, t, ts(-300 + i * 10)).await;
            sent += 1;
        }
    }
    for _ in 0..sent {
        tokio::time::timeout(WAIT, acked.recv()).await.expect("broker acks");
    }

    // Two operators: a laptop and a tablet.
    let url = format!("http://{}/", pipeline.gateway_http);
    let laptop = driver.session(1366, 900).await;
    let tablet = driver.session(820, 1180).await;
    for page in [&laptop, &tablet] {
        page.goto(&url).await;
        page.wait_for("the live feed", "return document.getElementById('conn').className === 'live'", WAIT).await;
        page.wait_for("the equipment overview", "return document.querySelectorAll('#fleet .tile').length >= 12", WAIT)
            .await;
    }

    // A hot reading: the alert appears on both pages.
    let start = Instant::now();
    publish("PUMP-01", 97.3, ts(0)).await;
    let row = alert_row("PUMP-01");
    let alert_id = laptop
        .wait_for(
            "the alert on the page",
            &format!("const r = (() => {{ {row} }})(); return r && r.dataset.alertId"),
            WAIT,
        )
        .await;
    let appeared = start.elapsed();
    let alert_id = alert_id.as_str().unwrap().to_string();
    println!("alert {alert_id} on the page {} ms after the MQTT publish", appeared.as_millis());
    tablet.wait_for("the alert on the second page", &format!("return !!(() => {{ {row} }})()"), WAIT).await;
    assert_eq!(laptop.text(&format!("#alerts tr[data-alert-id='{alert_id}'] .state")).await, "ouverte");

    // Acknowledge through the button and its dialog, as an operator does.
    laptop.click(&format!("#alerts tr[data-alert-id='{alert_id}'] button.act-ack")).await;
    laptop.wait_for("the acknowledge dialog", "return document.getElementById('ack-dialog').open", WAIT).await;
    laptop.type_into("#ack-by", "Léa Martin").await;
    laptop.type_into("#ack-comment", "Je m'en occupe").await;
    laptop.click("#ack-submit").await;
    let state = tablet
        .wait_for(
            "the acknowledgement on the second page",
            &format!(
                "const r = document.querySelector(\"#alerts tr[data-alert-id='{alert_id}']\"); \
                 return r && r.dataset.state === 'acknowledged' && r.querySelector('.state').textContent"
            ),
            WAIT,
        )
        .await;
    assert_eq!(state, "acquittée");
    assert!(laptop.eval("return !document.getElementById('ack-dialog').open", json!([])).await.as_bool().unwrap());
    let (db, conn) = tokio_postgres::connect(&stack.postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let by: String =
        db.query_one("SELECT acknowledged_by FROM alerts WHERE alert_id = $1", &[&alert_id]).await.unwrap().get(0);
    assert_eq!(by, "Léa Martin");

    // The overview marks the pump critical; its chart shows the readings and the alert span.
    for page in [&laptop, &tablet] {
        page.wait_for(
            "PUMP-01 critical in the overview",
            "return document.querySelector(\"#fleet .tile[data-id='PUMP-01']\").classList.contains('critical')",
            WAIT,
        )
        .await;
        page.click("#fleet .tile[data-id='PUMP-01']").await;
        page.wait_for(
            "the chart with the alert span",
            "return document.querySelector('#chart path') && document.querySelector('#chart rect[data-alert-id]') \
             && document.getElementById('chart-eq').textContent === 'PUMP-01'",
            WAIT,
        )
        .await;
    }
    // Keyboard: the actions are reachable with Tab (buttons, in document order).
    let focusable = laptop
        .eval("return [...document.querySelectorAll('#alerts button')].every(b => b.tabIndex >= 0)", json!([]))
        .await;
    assert_eq!(focusable, json!(true));

    let target = repo().join("target");
    laptop.screenshot(&target.join("dashboard-laptop.png")).await;
    tablet.screenshot(&target.join("dashboard-tablet.png")).await;
    laptop.quit().await;
    tablet.quit().await;
    pipeline.stop().await.expect("services drain");
}
