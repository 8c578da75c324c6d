//! Delivery against the strict sandbox: a wrong token pauses without losing
//! anything, platform outages are retried, stale events are skipped with a
//! reason instead of poisoning a batch.

mod support;

use std::time::Duration;

use capi_cdc::spool::Spool;
use support::harness::{Pipeline, TOKEN};

const WAIT: Duration = Duration::from_secs(60);

async fn fault(p: &Pipeline, body: serde_json::Value) {
    p.meta_fault(body).await;
}

async fn prepared(prefix: &str) -> Pipeline {
    let p = Pipeline::new(prefix).await;
    p.sql("INSERT INTO customers (id, email, country) VALUES (1, 'd@example.com', 'US')")
        .await;
    p.setup().await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_pauses_delivery_and_loses_nothing() {
    let mut p = prepared("token").await;
    p.token = "not-the-right-token".into();
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (1, 1, 'paid', 9.50)")
        .await;
    let deadline = std::time::Instant::now() + WAIT;
    while p.sandbox.meta_report().rejected == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox never saw the request"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = p.sandbox.meta_report();
    assert_eq!(report.rejections[0].code, 190);
    assert!(report.received.is_empty());
    running.stop().await;
    let counts = Spool::open(&p.spool_file())
        .unwrap()
        .ledger()
        .unwrap()
        .counts("meta")
        .unwrap();
    assert_eq!(
        (counts.pending, counts.dead),
        (1, 0),
        "an auth failure must not dead-letter"
    );

    // The operator fixes the token and restarts: the event goes at once.
    p.token = TOKEN.into();
    let running = p.start();
    p.wait_for_events(1, Duration::from_secs(10)).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_are_retried_until_delivered_once() {
    let p = prepared("outage").await;
    fault(&p, serde_json::json!({"status": 503, "count": 2})).await;
    fault(
        &p,
        serde_json::json!({"status": 429, "count": 1, "retry_after_s": 1}),
    )
    .await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (1, 1, 'paid', 9.50)")
        .await;
    p.wait_for_events(1, WAIT).await;
    let report = p.sandbox.meta_report();
    assert_eq!(report.faulted, 3, "the faults were not all hit");
    assert_eq!(report.received.len(), 1);
    running.stop().await;
    let ledger = Spool::open(&p.spool_file()).unwrap().ledger().unwrap();
    assert_eq!(ledger.counts("meta").unwrap().delivered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_metas_window_are_skipped_with_a_reason() {
    let p = prepared("stale").await;
    let running = p.start();
    p.sql("BEGIN;
           INSERT INTO orders (id, customer_id, status, total, paid_at) VALUES (1, 1, 'paid', 1, now() - interval '8 days');
           INSERT INTO orders (id, customer_id, status, total, paid_at) VALUES (2, 1, 'paid', 2, now() - interval '1 hour');
           COMMIT;")
        .await;
    p.wait_for_events(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    let report = p.sandbox.meta_report();
    assert_eq!(
        report.rejected, 0,
        "a stale event reached Meta and poisoned the batch"
    );
    assert_eq!(
        p.delivered_ids().into_iter().collect::<Vec<_>>(),
        ["purchase-2"]
    );
    let ledger = Spool::open(&p.spool_file()).unwrap().ledger().unwrap();
    let outcomes = ledger.outcomes("meta", 10).unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(
        (outcomes[0].event_id.as_str(), outcomes[0].state.as_str()),
        ("purchase-1", "skipped")
    );
    assert!(
        outcomes[0].reason.as_deref().unwrap().contains("7 days"),
        "{:?}",
        outcomes[0].reason
    );
}
