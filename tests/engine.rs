//! The delivery engine against the strict sandbox and a real PostgreSQL:
//! an outage longer than any fixed attempt budget, a 429 storm under the
//! configured rate, one bad event in a batch of 1,000, the real-time lane
//! beside a waiting batched lane, and a destination enabled on a running
//! spool.

mod support;

use std::time::{Duration, Instant};

use capi_cdc::spool::Spool;
use support::harness::Pipeline;

const WAIT: Duration = Duration::from_secs(90);

async fn fault(p: &Pipeline, body: serde_json::Value) {
    p.meta_fault(body).await;
}

/// A customer in the snapshot, so orders carry identifiers Meta can match.
async fn customer(p: &Pipeline) {
    p.sql("INSERT INTO customers (id, email, country) VALUES (1, 'engine@example.com', 'US')")
        .await;
}

fn ledger_attempts(p: &Pipeline, event_id: &str) -> u32 {
    let conn = rusqlite::Connection::open(p.spool_file()).unwrap();
    conn.query_row(
        "SELECT d.attempts FROM deliveries d JOIN events e ON e.seq = d.seq WHERE e.event_id = ?1",
        [event_id],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_old_attempt_budget_ends_with_every_event_delivered_once() {
    let mut p = Pipeline::new("outage_long").await;
    // Backoff shortened by configuration: 20 ms doubling to 100 ms.
    p.meta_extra
        .push_str("retry_initial_ms = 20\nretry_max_ms = 100\n");
    customer(&p).await;
    p.setup().await;
    fault(&p, serde_json::json!({"status": 503, "count": 40})).await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) SELECT g, 1, 'paid', 5 FROM generate_series(1, 20) g").await;
    p.wait_for_events(20, WAIT).await;
    let report = p.sandbox.meta_report();
    assert_eq!(report.faulted, 40, "every fault was hit");
    assert_eq!(
        report.received.len(),
        20,
        "each event delivered exactly once"
    );
    running.stop().await;
    let ledger = Spool::open(&p.spool_file()).unwrap().ledger().unwrap();
    let c = ledger.counts("meta").unwrap();
    assert_eq!((c.delivered, c.dead, c.pending), (20, 0, 0));
    // The events' retries spread out (jitter), so the 40 failures fall on
    // different subsets; together they took far more than 12 attempts.
    let total: u32 = (1..=20)
        .map(|i| ledger_attempts(&p, &format!("purchase-{i}")))
        .sum();
    assert!(total >= 40 + 20, "{total} attempts");
    // One event alone through a longer outage: 30 failures, then delivered.
    fault(&p, serde_json::json!({"status": 503, "count": 30})).await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (21, 1, 'paid', 5)")
        .await;
    p.wait_for_events(21, WAIT).await;
    running.stop().await;
    assert_eq!(
        ledger_attempts(&p, "purchase-21"),
        31,
        "30 failed attempts, more than the old budget of 12, then delivered"
    );
    assert_eq!(p.sandbox.meta_report().received.len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_never_exceeds_the_configured_rate_and_costs_no_attempts() {
    let mut p = Pipeline::new("storm").await;
    p.meta_extra = "requests_per_second = 5\nbatch_max_age_s = 1\n".into();
    customer(&p).await;
    p.setup().await;
    fault(
        &p,
        serde_json::json!({"status": 429, "count": 25, "retry_after_s": 0}),
    )
    .await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (1, 1, 'paid', 5)")
        .await;
    p.wait_for_events(1, WAIT).await;
    running.stop().await;
    let times = p.sandbox.meta_report().request_times_ms;
    assert!(times.len() >= 26, "{} requests", times.len());
    // In any one-second window: at most the burst (5) plus 5 per second.
    let max_in_window = times
        .iter()
        .map(|t| times.iter().filter(|u| **u >= *t && **u < t + 1000).count())
        .max()
        .unwrap();
    assert!(
        max_in_window <= 10,
        "{max_in_window} requests in one second at 5/s"
    );
    assert_eq!(
        ledger_attempts(&p, "purchase-1"),
        1,
        "throttling used up no attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_event_in_a_batch_of_1000_leaves_999_delivered_and_1_dead_lettered() {
    let p = Pipeline::new("bisect").await;
    p.setup().await;
    // Build the backlog before delivery starts so it goes as one batch.
    p.sql(
        "INSERT INTO sessions (id, fbc, user_agent, client_ip) VALUES ('ok', 'fb.1.1554763741205.AbCdEf', 'Mozilla/5.0', '192.0.2.5'),
                                                        ('bad', 'not-an-fbc', 'Mozilla/5.0', '192.0.2.6');
         INSERT INTO orders (id, status, total, session_id)
           SELECT g, 'paid', 5, CASE WHEN g = 637 THEN 'bad' ELSE 'ok' END FROM generate_series(1, 1000) g;",
    )
    .await;
    let running = p.start();
    p.wait_for_events(999, WAIT).await;
    let deadline = Instant::now() + WAIT;
    let ledger = Spool::open(&p.spool_file()).unwrap().ledger().unwrap();
    loop {
        let c = ledger.counts("meta").unwrap();
        if c.pending == 0 {
            assert_eq!((c.delivered, c.dead), (999, 1));
            break;
        }
        assert!(Instant::now() < deadline, "{c:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop().await;
    let dead = ledger.dead_letters(&Default::default(), 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, "purchase-637");
    assert!(
        dead[0].reason.as_deref().unwrap().contains("fbc"),
        "{:?}",
        dead[0].reason
    );
    assert!(!p.delivered_ids().contains("purchase-637"));
    // The first request carried all 1,000: bisection, not one request each.
    assert!(
        p.sandbox.meta_report().rejections.len() <= 11,
        "{} rejected requests",
        p.sandbox.meta_report().rejections.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_time_purchase_goes_at_once_while_the_batched_lane_holds_views_until_their_age_limit(
) {
    let mut p = Pipeline::new("lanes").await;
    p.meta_extra = "requests_per_second = 200\nbatch_max_age_s = 4\n".into();
    p.setup().await;
    let running = p.start();
    p.sql("INSERT INTO sessions (id, user_agent, client_ip, landing_url) VALUES ('l1', 'Mozilla/5.0', '192.0.2.7', 'https://shop.example/')").await;
    p.sql("INSERT INTO product_views (id, session_id, product_id) VALUES (1, 'l1', 'SKU-1'), (2, 'l1', 'SKU-2')").await;
    let committed = Instant::now();
    p.sql("INSERT INTO orders (id, status, total, session_id) VALUES (1, 'paid', 5, 'l1')")
        .await;
    p.wait_for_events(1, Duration::from_secs(5)).await;
    let first = committed.elapsed();
    assert!(
        p.delivered_ids().contains("purchase-1"),
        "{:?}",
        p.delivered_ids()
    );
    assert!(
        !p.delivered_ids().contains("view-1"),
        "views wait for their batch"
    );
    assert!(first < Duration::from_secs(5), "purchase took {first:?}");
    p.wait_for_events(3, Duration::from_secs(20)).await;
    let views_after = committed.elapsed();
    assert!(
        views_after >= Duration::from_secs(3),
        "views went after {views_after:?}, before their age limit"
    );
    // Both views in one request.
    let report = p.sandbox.meta_report();
    let view_times: Vec<u64> = report
        .received
        .iter()
        .filter(|e| e.event_id().is_some_and(|i| i.starts_with("view-")))
        .map(|e| e.received_at_ms)
        .collect();
    assert_eq!(view_times.len(), 2);
    assert_eq!(view_times[0], view_times[1]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_enabled_on_a_running_spool_gets_the_events_derived_from_then_on() {
    let mut p = Pipeline::new("enable").await;
    p.meta_extra = "enabled = false\n".into();
    customer(&p).await;
    p.setup().await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (1, 1, 'paid', 5)")
        .await;
    p.wait_spooled(&["purchase-1"], WAIT).await;
    running.stop().await;
    p.meta_extra = "batch_max_age_s = 1\n".into();
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (2, 1, 'paid', 5)")
        .await;
    p.wait_for_events(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    assert_eq!(
        p.delivered_ids().into_iter().collect::<Vec<_>>(),
        ["purchase-2"],
        "older events reach it only by replay"
    );
    let b = Spool::open(&p.spool_file())
        .unwrap()
        .ledger()
        .unwrap()
        .breakdown()
        .unwrap();
    assert_eq!(
        b.derived["transaction.purchase"], 2,
        "derived while no destination was enabled still counts"
    );
    assert_eq!(b.destinations["meta"]["transaction.purchase"].delivered, 1);
    let (code, stdout, _) = p.binary(&["status"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("transaction.purchase: 2") && stdout.contains("delivered 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("match quality") && stdout.contains("coverage 100 %"),
        "the health picture in the terminal: {stdout}"
    );
}
