//! End to end: paid orders travel from the WAL to the Meta sandbox, once,
//! checkpointed; against a real PostgreSQL with `wal_level=logical`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::harness::Pipeline;

/// Meta's published example (spec/meta-capi.md §3.1).
const JOHN_EM: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";
const JOHN_PH: &str = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176";
const US: &str = "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621";

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_orders_reach_meta_exactly_once_with_metas_hashes() {
    let p = Pipeline::new("exactly_once").await;
    p.sql(
        "INSERT INTO customers (id, email, phone, first_name, last_name, country)
           VALUES (1, '  John_Smith@gmail.com ', '(650)555-1212', 'John', 'Smith', 'US')",
    )
    .await;
    let lines = p.setup().await;
    assert!(
        lines.iter().any(|l| l.contains("public.customers: 1,")),
        "{lines:?}"
    );
    let running = p.start();

    // Single-row transactions, paid on insert.
    for id in 1..=5 {
        p.sql(&format!(
            "INSERT INTO orders (id, customer_id, status, total, currency, paid_at)
             VALUES ({id}, 1, 'paid', {id}0.05, 'usd', date_trunc('second', now()) - interval '2 days')"
        ))
        .await;
    }
    // A multi-row transaction, some paid, some not.
    p.sql("BEGIN;
           INSERT INTO orders (id, customer_id, status, total) SELECT g, 1, 'paid', 1.10 FROM generate_series(6, 25) g;
           INSERT INTO orders (id, customer_id, status, total) SELECT g, 1, 'pending', 9.99 FROM generate_series(26, 30) g;
           COMMIT;")
        .await;
    // Pending orders that become paid by UPDATE.
    p.sql("UPDATE orders SET status = 'paid', paid_at = now() WHERE id IN (26, 27)")
        .await;
    // Orders flipping status several times, across and within transactions.
    p.sql("UPDATE orders SET status = 'refunded' WHERE id = 1")
        .await;
    p.sql("UPDATE orders SET status = 'paid' WHERE id = 1")
        .await;
    p.sql(
        "BEGIN; UPDATE orders SET status = 'paid' WHERE id = 28;
           UPDATE orders SET status = 'pending' WHERE id = 28;
           UPDATE orders SET status = 'paid' WHERE id = 28; COMMIT;",
    )
    .await;
    let last_commit = p.wal_lsn().await;

    // 1..=25 paid at insert, 26, 27 by update, 28 flipping: 28 orders.
    p.wait_for_events(28, WAIT).await;
    p.wait_confirmed(last_commit, WAIT).await;
    // Give duplicates a chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = p.sandbox.meta_report();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for e in &report.received {
        *per_id.entry(e.event_id().unwrap().to_owned()).or_default() += 1;
    }
    let expected: Vec<String> = (1..=28).map(|i| format!("purchase-{i}")).collect();
    assert_eq!(per_id.keys().cloned().collect::<Vec<_>>().len(), 28);
    for id in &expected {
        assert_eq!(
            per_id.get(id),
            Some(&1),
            "{id} delivered {:?} times",
            per_id.get(id)
        );
    }
    assert!(!per_id.contains_key("purchase-29") && !per_id.contains_key("purchase-30"));

    let first = report
        .received
        .iter()
        .find(|e| e.event_id() == Some("purchase-3"))
        .unwrap();
    let ev = &first.event;
    assert_eq!(ev["event_name"], "Purchase");
    assert_eq!(ev["user_data"]["em"], JOHN_EM);
    assert_eq!(ev["user_data"]["ph"], JOHN_PH);
    assert_eq!(ev["user_data"]["country"], US);
    // Exact money: 30.05 stays 30.05, currency upper-cased.
    assert_eq!(ev["custom_data"]["value"].to_string(), "30.05");
    assert_eq!(ev["custom_data"]["currency"], "USD");
    assert_eq!(ev["custom_data"]["order_id"], "3");
    // event_time is paid_at, not the commit or send time.
    let paid_at: f64 =
        p.db.client()
            .await
            .query_one(
                "SELECT extract(epoch FROM paid_at)::float8 FROM orders WHERE id = 3",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(ev["event_time"].as_i64(), Some(paid_at as i64));

    // The slot never gets ahead of the spool.
    let confirmed = p.confirmed_flush().await;
    let spooled = p.spool_checkpoint().unwrap();
    assert!(
        confirmed >= last_commit,
        "slot at {confirmed}, last commit before {last_commit}"
    );
    assert!(
        confirmed <= spooled,
        "slot {confirmed} ahead of spool {spooled}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_health_metrics_and_status() {
    let mut p = Pipeline::new("admin").await;
    let base = p.admin_on_free_port();
    p.sql("INSERT INTO customers (id, email) VALUES (1, 'adm@example.com')")
        .await;
    p.setup().await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (1, 1, 'paid', 3.00)")
        .await;
    p.wait_for_events(1, WAIT).await;
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move { http.get(url).send().await.unwrap() }
    };
    assert_eq!(get("/healthz").await.status(), 200);
    assert_eq!(get("/readyz").await.status(), 200);
    // The ledger is written right after the sandbox answers: allow a moment.
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        let status: serde_json::Value = get("/api/status").await.json().await.unwrap();
        if status["destinations"]["meta"]["delivered"] == 1 || std::time::Instant::now() > deadline
        {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["events"], 1, "{status}");
    assert_eq!(status["destinations"]["meta"]["delivered"], 1, "{status}");
    assert_eq!(status["derived"]["transaction.purchase"], 1, "{status}");
    assert_eq!(
        status["by_kind"]["meta"]["transaction.purchase"]["delivered"], 1,
        "{status}"
    );
    assert_eq!(
        status["checkpoint"].as_str().unwrap(),
        p.spool_checkpoint().unwrap().to_string()
    );
    let metrics = get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("capi_cdc_events_spooled_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "capi_cdc_delivered_total{destination=\"meta\",kind=\"transaction.purchase\"} 1"
        ),
        "{metrics}"
    );
    running.stop().await;
}

/// The lookup snapshot taken by `setup` covers every customer (read through
/// a cursor in chunks) and is what the first orders join against.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_snapshot_covers_every_customer_for_the_first_orders() {
    let p = Pipeline::new("snapshot").await;
    p.sql("INSERT INTO customers (id, email, country) SELECT g, 'c' || g || '@example.com', 'US' FROM generate_series(1, 12000) g")
        .await;
    let lines = p.setup().await;
    assert!(
        lines.iter().any(|l| l.contains("public.customers: 12000,")),
        "{lines:?}"
    );
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (1, 11999, 'paid', 1), (2, 3, 'paid', 1)")
        .await;
    p.wait_for_events(2, WAIT).await;
    let report = p.sandbox.meta_report();
    for (order, customer) in [("purchase-1", 11999), ("purchase-2", 3)] {
        let event = &report
            .received
            .iter()
            .find(|e| e.event_id() == Some(order))
            .unwrap()
            .event;
        let want = capi_cdc::derive::identity::sha256_hex(&format!("c{customer}@example.com"));
        assert_eq!(event["user_data"]["em"], want.to_hex(), "{order}");
    }
    running.stop().await;
}
