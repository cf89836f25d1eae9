//! The dashboard's planning view in a real headless Chromium against the whole pipeline: it
//! shows the week (technicians × five days, from the reference tables), and a critical work
//! order created through `/api/work-orders` appears on it once the gateway has re-planned.
//! Screenshot in `target/planning-view.png`.

mod webdriver;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{Datelike, Days, Weekday};
use serde_json::json;

/// Generous: the view refreshes itself every 15 s.
const WAIT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_planning_view_shows_the_week_and_a_critical_order_after_the_replan() {
    let driver = webdriver::Driver::start().await;
    let stack = proact_testkit::Stack::start().await.expect("real servers start");
    proact_e2e::load_sample_data(&stack).await.expect("reference data loads");
    let pipeline = proact_e2e::Pipeline::start(&stack, None).await.expect("services start");
    let url = format!("http://{}/", pipeline.gateway_http);

    let page = driver.session(1366, 900).await;
    page.goto(&url).await;
    page.wait_for(
        "the week's grid (technicians × 5 days)",
        "const g = document.getElementById('plan-grid');
         return g && g.querySelectorAll('thead th').length === 6 && g.querySelectorAll('tbody tr').length > 0",
        WAIT,
    )
    .await;

    // A working day of the week shown: today, or the coming Monday at the weekend.
    let today = chrono::Utc::now().date_naive();
    let day = match today.weekday() {
        Weekday::Sat => today + Days::new(2),
        Weekday::Sun => today + Days::new(1),
        _ => today,
    };
    let body = json!({
        "equipement_id": "PUMP-01",
        "failure_mode_code": "BEARING_WEAR",
        "priority": 95.0,
        "technician_id": "T01",
        "planned_start": format!("{day}T06:00:00Z"),
        "estimated_duration_h": 3.0,
        "description": "Roulement bruyant, intervention urgente",
        "by": "e2e",
    });
    page.eval(
        "window.__created = null;
         fetch('/api/work-orders', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: arguments[0] })
           .then(r => r.json()).then(b => { window.__created = b; });",
        json!([body.to_string()]),
    )
    .await;
    let created = page
        .wait_for("the work order created", "return window.__created && window.__created.work_order_id", WAIT)
        .await;
    let id = created.as_str().expect("an id").to_string();
    page.wait_for(
        "the critical order's bar on the re-planned week",
        &format!(
            "const b = document.querySelector('#plan-grid .bar[data-order=\"{id}\"]');
             return b && b.dataset.priority === 'critical'"
        ),
        WAIT,
    )
    .await;
    // The bar is a button (Enter and Space activate it): activating it explains the placement.
    page.eval(&format!("document.querySelector('#plan-grid .bar[data-order=\"{id}\"]').click()"), json!([])).await;
    page.wait_for("the explanation", "return document.getElementById('plan-detail').textContent.length > 0", WAIT)
        .await;
    page.screenshot(&repo().join("target/planning-view.png")).await;
    page.quit().await;
    drop(pipeline);
}
