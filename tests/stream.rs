//! The replication stream under change: ALTER TABLE mid-stream, unchanged
//! TOAST values, a dropped connection, a stalled spool, and an idle slot.

mod support;

use std::time::{Duration, Instant};

use capi_cdc::derive::identity::{meta, sha256_hex};
use support::harness::Pipeline;
use support::pg::start_cluster;

const WAIT: Duration = Duration::from_secs(60);

fn email_hash(raw: &str) -> String {
    sha256_hex(&meta::email(raw).unwrap()).to_hex().to_owned()
}

fn em_of(p: &Pipeline, event_id: &str) -> String {
    let report = p.sandbox.meta_report();
    let event = report
        .received
        .iter()
        .find(|e| e.event_id() == Some(event_id))
        .unwrap_or_else(|| panic!("{event_id} not delivered"));
    event.event["user_data"]["em"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_mid_stream_and_unchanged_toast_are_handled() {
    let p = Pipeline::new("alter").await;
    // Out-of-line storage so the notes value really is TOASTed.
    p.sql("ALTER TABLE customers ALTER COLUMN notes SET STORAGE EXTERNAL")
        .await;
    p.sql("INSERT INTO customers (id, email, country, notes) VALUES (1, 'old@example.com', 'US', repeat('x', 8000))")
        .await;
    p.setup().await;
    let running = p.start();

    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (1, 1, 'paid', 10.00)")
        .await;
    p.wait_for_events(1, WAIT).await;
    assert_eq!(em_of(&p, "purchase-1"), email_hash("old@example.com"));

    // Shape changes while streaming: add a column, use it, drop another.
    p.sql("ALTER TABLE orders ADD COLUMN coupon text").await;
    p.sql("INSERT INTO orders (id, customer_id, status, total, coupon) VALUES (2, 1, 'paid', 20.00, 'WINTER')")
        .await;
    p.sql("ALTER TABLE orders DROP COLUMN note").await;
    p.sql("INSERT INTO orders (id, customer_id, status, total, coupon) VALUES (3, 1, 'paid', 30.00, NULL)")
        .await;

    // An UPDATE that leaves the TOASTed notes unchanged: the new email is
    // used, nothing is invented for notes, and the lookup keeps working.
    p.sql("UPDATE customers SET email = 'new@example.com' WHERE id = 1")
        .await;
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (4, 1, 'paid', 40.00)")
        .await;
    // A TOAST-unchanged update of the notes' row that touches no identity
    // column keeps the identity as it was.
    p.sql("UPDATE customers SET phone = '+1 650 555 1212' WHERE id = 1")
        .await;
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (5, 1, 'paid', 50.00)")
        .await;
    p.wait_for_events(5, WAIT).await;
    assert_eq!(em_of(&p, "purchase-2"), email_hash("old@example.com"));
    assert_eq!(em_of(&p, "purchase-4"), email_hash("new@example.com"));
    assert_eq!(em_of(&p, "purchase-5"), email_hash("new@example.com"));
    let values: Vec<f64> = (1..=5)
        .map(|i| {
            let report = p.sandbox.meta_report();
            let e = report
                .received
                .iter()
                .find(|e| e.event_id() == Some(&format!("purchase-{i}")))
                .unwrap()
                .event
                .clone();
            e["custom_data"]["value"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(values, [10.0, 20.0, 30.0, 40.0, 50.0]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_resumes_from_the_checkpoint() {
    let p = Pipeline::new("reconnect").await;
    p.sql("INSERT INTO customers (id, email) VALUES (1, 'r@example.com')")
        .await;
    p.setup().await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) SELECT g, 1, 'paid', 1 FROM generate_series(1, 50) g")
        .await;
    p.wait_for_events(50, WAIT).await;
    let pid = walsender_pid(&p).await;
    p.sql(&format!("SELECT pg_terminate_backend({pid})")).await;
    // Written while the connection is down or coming back.
    p.sql("INSERT INTO orders (id, customer_id, status, total) SELECT g, 1, 'paid', 1 FROM generate_series(51, 100) g")
        .await;
    p.wait_for_events(100, WAIT).await;
    let new_pid = walsender_pid(&p).await;
    assert_ne!(pid, new_pid, "the connector did not reconnect");
    assert_eq!(p.sandbox.meta_report().deduplicated.len(), 100);
    running.stop().await;
}

async fn walsender_pid(p: &Pipeline) -> i32 {
    let deadline = Instant::now() + WAIT;
    loop {
        let row =
            p.db.client()
                .await
                .query_one(
                    "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                    &[&p.slot],
                )
                .await
                .unwrap();
        if let Some(pid) = row.get::<_, Option<i32>>(0) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "slot {} never became active",
            p.slot
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Standby status keeps flowing while the apply loop is blocked: with
/// `wal_sender_timeout = 2s`, a spool locked for 6 s must not cost the
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_updates_flow_while_the_spool_is_stalled() {
    let cluster = start_cluster(&[("wal_sender_timeout", "2s")]);
    let p = Pipeline::new_on(&cluster, "stall").await;
    p.sql("INSERT INTO customers (id, email) VALUES (1, 's@example.com')")
        .await;
    p.setup().await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (1, 1, 'paid', 1)")
        .await;
    p.wait_for_events(1, WAIT).await;
    let pid = walsender_pid(&p).await;

    // Hold the spool's write lock from outside for 6 s while orders stream in.
    let spool = p.spool_file();
    let lock = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(spool).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        std::thread::sleep(Duration::from_secs(6));
        conn.execute_batch("COMMIT").unwrap();
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for id in 2..=20 {
        p.sql(&format!(
            "INSERT INTO orders (id, customer_id, status, total) VALUES ({id}, 1, 'paid', 1)"
        ))
        .await;
    }
    // The stall is real: nothing new got through while the lock is held.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(p.delivered_ids().len(), 1, "the spool was not stalled");
    lock.join().unwrap();
    p.wait_for_events(20, WAIT).await;
    assert_eq!(
        walsender_pid(&p).await,
        pid,
        "the walsender was replaced: status updates stopped during the stall"
    );
    assert!(
        !cluster.log_tail().contains("replication timeout"),
        "server log shows a replication timeout:\n{}",
        cluster.log_tail()
    );
    running.stop().await;
}

/// Changes to unpublished tables move the server's WAL but give the
/// connector nothing to spool; the idle keepalive acknowledgement still
/// advances the slot so it does not pin WAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_slot_advances_past_unpublished_writes() {
    let p = Pipeline::new("idle").await;
    p.sql("CREATE TABLE audit_log (id bigserial PRIMARY KEY, line text)")
        .await;
    p.setup().await;
    let running = p.start();
    walsender_pid(&p).await;
    p.sql("INSERT INTO audit_log (line) SELECT 'line ' || g FROM generate_series(1, 5000) g")
        .await;
    let target = p.wal_lsn().await;
    p.wait_confirmed(target, Duration::from_secs(30)).await;
    let spooled = p.spool_checkpoint().unwrap();
    assert!(
        p.confirmed_flush().await <= spooled,
        "slot ahead of the spool"
    );
    assert!(p.sandbox.meta_report().received.is_empty());
    running.stop().await;
}

/// With `source.heartbeat_interval_s`, heartbeat messages are written into
/// this database's WAL, come back through the stream, and move the slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_travel_the_stream_and_move_the_slot() {
    let mut p = Pipeline::new("heartbeat").await;
    let base = p.admin_on_free_port();
    p.source_extra = "heartbeat_interval_s = 1".into();
    p.setup().await;
    let running = p.start();
    walsender_pid(&p).await;
    let before = p.confirmed_flush().await;
    let deadline = Instant::now() + WAIT;
    let heartbeats = loop {
        let metrics = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let n: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("capi_cdc_heartbeats_received_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if n >= 3 || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        heartbeats >= 3,
        "only {heartbeats} heartbeats came back within {WAIT:?}"
    );
    let after = p.confirmed_flush().await;
    assert!(after > before, "the slot stayed at {before}");
    assert!(after <= p.spool_checkpoint().unwrap());
    running.stop().await;
}
