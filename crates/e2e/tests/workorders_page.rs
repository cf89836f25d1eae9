//! The work-order panels of the dashboard in a real headless Chromium against the whole
//! pipeline: a hot reading over MQTT becomes an alert; the operator opens its case, reads the
//! briefing (each line citing its AMDEC row or intervention), creates a work order from the
//! pre-filled form, starts it and closes it with an outcome; the order shows in the open list
//! of its technician (from the WebSocket notices) and leaves it once closed, and the outcome
//! is counted for the alert's model version. A second page follows the list by the notices alone. Screenshot in `target/workorders-case.png`.

mod webdriver;

use std::path::PathBuf;
use std::time::Duration;

use rumqttc::QoS;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alert_is_briefed_then_handled_through_a_work_order_on_the_page() {
    let driver = webdriver::Driver::start().await;
    let stack = proact_testkit::Stack::start().await.expect("real servers start");
    proact_e2e::load_sample_data(&stack).await.expect("reference data loads");
    let pipeline = proact_e2e::Pipeline::start(&stack, None).await.expect("services start");

    let url = format!("http://{}/", pipeline.gateway_http);
    // The operator's page, and a second one that only watches: its list moves by notices.
    let page = driver.session(1366, 1000).await;
    let other = driver.session(820, 1180).await;
    for p in [&page, &other] {
        p.goto(&url).await;
        p.wait_for("the live feed", "return document.getElementById('conn').className === 'live'", WAIT).await;
        p.wait_for("the open work-order list", "return !!document.querySelector('#wo-list .empty')", WAIT).await;
    }

    // A hot reading on PUMP-01.
    let (mqtt, mut acked) = proact_e2e::sensor(&stack, "workorders-sensor", 100);
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let payload = json!({"equipement_id": "PUMP-01", "temperature": 97.3, "vibration": 3.1, "timestamp": at});
    mqtt.publish("sensors/PUMP-01/telemetry", QoS::AtLeastOnce, false, payload.to_string()).await.unwrap();
    tokio::time::timeout(WAIT, acked.recv()).await.expect("broker acks");

    let alert_id = page
        .wait_for(
            "the alert on the page",
            "const r = [...document.querySelectorAll('#alerts tr')].find(r => r.dataset.equipment === 'PUMP-01' \
             && r.dataset.rule !== 'no_data'); return r && r.dataset.alertId",
            WAIT,
        )
        .await;
    let alert_id = alert_id.as_str().unwrap().to_string();
    let row = format!("#alerts tr[data-alert-id='{alert_id}']");
    // The band is shown in the list.
    let sev = page.text(&format!("{row} .sev")).await;
    assert!(sev.starts_with('P') && sev.contains(" · "), "band in the severity cell: {sev:?}");

    // Open the case: the briefing, each line with its source.
    page.click(&format!("{row} button.act-open")).await;
    page.wait_for("the case dialog", "return document.getElementById('case-dialog').open", WAIT).await;
    let cite = page
        .wait_for(
            "the briefing's failure modes",
            "const li = document.querySelector('#briefing-modes li'); return li && li.querySelector('.cite').textContent",
            WAIT,
        )
        .await;
    assert!(cite.as_str().unwrap().starts_with("AMDEC "), "an AMDEC line cites its row: {cite}");
    let modes = page.eval("return document.querySelectorAll('#briefing-modes li').length", json!([])).await;
    println!("briefing: {modes} failure mode line(s), first cited as {cite}");

    // The form is pre-filled: the suggested mode, the alert's priority.
    page.wait_for("the work-order form", "return !!document.getElementById('wo-create-form')", WAIT).await;
    let prefilled = page
        .eval(
            "return [document.getElementById('wo-mode').value, document.getElementById('wo-priority').value]",
            json!([]),
        )
        .await;
    println!("form pre-filled with {prefilled}");
    let alert_priority = page.eval(&format!("return String(alerts.get('{alert_id}').priority)"), json!([])).await;
    assert_eq!(prefilled[1], alert_priority, "priority defaults to the alert's");

    // An API error is shown to the user: an unknown technician.
    page.type_into("#wo-tech", "NOBODY-42").await;
    page.type_into("#wo-duration", "2,5").await;
    page.type_into("#wo-by", "Léa Martin").await;
    page.click("#wo-create").await;
    let error =
        page.wait_for("the API's error", "return document.getElementById('case-error').textContent", WAIT).await;
    println!("unknown technician refused: {error}");
    assert!(page.eval("return !!document.getElementById('wo-create-form')", json!([])).await.as_bool().unwrap());

    page.type_into("#wo-tech", "T01").await;
    page.click("#wo-create").await;
    let wo_id = page
        .wait_for(
            "the created order",
            "const s = document.getElementById('case-order-summary'); return s && s.dataset.state === 'planned' \
             && s.dataset.workOrderId",
            WAIT,
        )
        .await;
    let wo_id = wo_id.as_str().unwrap().to_string();
    let item = format!("#wo-list .wo-tech[data-technician='T01'] li[data-work-order-id='{wo_id}']");
    for p in [&page, &other] {
        p.wait_for("the order in T01's open list", &format!("return !!document.querySelector(\"{item}\")"), WAIT).await;
    }

    // Start, then close with an outcome.
    page.click("#wo-start").await;
    page.wait_for("the close form", "return !!document.getElementById('wo-close-form')", WAIT).await;
    other
        .wait_for(
            "the order in progress on the second page",
            &format!("const li = document.querySelector(\"{item}\"); return li && li.dataset.state === 'in_progress'"),
            WAIT,
        )
        .await;
    page.eval("const s = document.getElementById('wo-outcome'); s.value = 'failure_confirmed'; return true", json!([]))
        .await;
    page.type_into("#wo-cause", "Lubrification insuffisante").await;
    page.type_into("#wo-action", "Roulements remplacés").await;
    page.type_into("#wo-parts", "2 roulements 6205").await;
    page.type_into("#wo-actual", "1,5").await;
    page.click("#wo-close").await;
    page.wait_for(
        "the closed order",
        "const s = document.getElementById('case-order-summary'); return s && s.dataset.state === 'done'",
        WAIT,
    )
    .await;
    for p in [&page, &other] {
        p.wait_for("the order leaves the open list", &format!("return !document.querySelector(\"{item}\")"), WAIT)
            .await;
    }

    // Stored as the page said, and counted for the alert's model version.
    let (db, conn) = tokio_postgres::connect(&stack.postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let row = db
        .query_one(
            "SELECT technician_id, state, outcome, action_taken, parts, actual_duration_h FROM work_orders \
             WHERE work_order_id = $1",
            &[&wo_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "T01");
    assert_eq!(row.get::<_, String>(1), "done");
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("failure_confirmed"));
    assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some("Roulements remplacés"));
    assert_eq!(row.get::<_, Option<String>>(4).as_deref(), Some("2 roulements 6205"));
    assert_eq!(row.get::<_, Option<f64>>(5), Some(1.5));
    let outcomes = page
        .wait_for(
            "the outcome counted per model",
            "const t = document.getElementById('wo-outcomes-table'); return t && t.querySelector('tbody tr td:nth-child(2)').textContent",
            WAIT,
        )
        .await;
    assert_eq!(outcomes, "1");

    page.screenshot(&repo().join("target/workorders-case.png")).await;
    page.quit().await;
    other.quit().await;
    pipeline.stop().await.expect("services drain");
}
