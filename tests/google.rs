//! Google (Data Manager, OAuth, Ads API provisioning) against the strict
//! sandbox and a real PostgreSQL: the same business event ID at Meta and
//! Google, an expired access token refreshed transparently, `invalid_grant`
//! pausing and resuming with nothing lost, provisioning idempotently with
//! the 6-hour hold, send-test, and dead letters managed by the operator.

mod support;

use std::time::{Duration, Instant};

use capi_cdc::sandbox::google::GoogleFault;
use capi_cdc::spool::Spool;
use support::harness::Pipeline;

const WAIT: Duration = Duration::from_secs(60);

/// A customer and a session with a gclid, in the snapshot.
async fn shopper(p: &Pipeline) {
    p.sql(
        "INSERT INTO customers (id, email, phone, country) VALUES (1, 'Google.Shopper@Example.com', '(650) 555-1212', 'US');
         INSERT INTO sessions (id, customer_id, gclid, client_ip, user_agent, landing_url)
           VALUES ('g1', 1, 'Cj0KCQ-Test-Gclid', '203.0.113.9', 'Mozilla/5.0', 'https://shop.example/');",
    )
    .await;
}

/// A Pipeline with Google on, the purchase kind mapped to a seeded action
/// (one already past Google's 6-hour hold).
async fn with_google(prefix: &str) -> (Pipeline, String) {
    let mut p = Pipeline::new(prefix).await;
    let action = p
        .sandbox
        .google()
        .seed_conversion_action("Purchases (seeded)", "PURCHASE");
    p.google_extra = Some(format!(
        "[destinations.google.conversion_actions]\n\"transaction.purchase\" = \"{action}\"\n"
    ));
    shopper(&p).await;
    p.setup().await;
    (p, action)
}

async fn wait_google(p: &Pipeline, action: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let report = p.sandbox.google().report();
        let got: Vec<serde_json::Value> = report
            .accepted
            .get(action)
            .map(|v| v.iter().map(|e| serde_json::to_value(e).unwrap()).collect())
            .unwrap_or_default();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "google accepted {} of {n}: {:?}",
            got.len(),
            report.rejections
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_and_google_receive_one_purchase_with_the_same_business_event_id() {
    let (p, action) = with_google("both").await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total, session_id) VALUES (1, 1, 'paid', 42.50, 'g1')").await;
    p.wait_for_events(1, WAIT).await;
    let google = wait_google(&p, &action, 1).await;
    running.stop().await;
    assert!(p.delivered_ids().contains("purchase-1"));
    let text = google[0].to_string();
    assert!(
        text.contains("purchase-1"),
        "transactionId is the event ID: {text}"
    );
    assert!(
        text.contains("Cj0KCQ-Test-Gclid"),
        "the gclid as captured: {text}"
    );
    assert!(
        !text.to_lowercase().contains("google.shopper"),
        "no raw email: {text}"
    );
    let report = p.sandbox.google().report();
    assert!(report.rejections.is_empty(), "{:?}", report.rejections);
    // The ledger keeps Data Manager's request ID.
    let conn = rusqlite::Connection::open(p.spool_file()).unwrap();
    let receipt: Option<String> = conn
        .query_row(
            "SELECT reason FROM deliveries WHERE destination = 'google' AND state = 'delivered'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(receipt.is_some_and(|r| r.contains("request_id")));
    // The event's whole story, as an operator asks for it.
    let (code, story, err) = p.binary(&["status", "--event", "purchase-1"]);
    assert_eq!(code, 0, "{story}{err}");
    let story: serde_json::Value = serde_json::from_str(&story).unwrap();
    assert_eq!(story["event"]["rule"], "purchase");
    assert_eq!(story["event"]["consent"]["ad_user_data"], "unknown");
    assert!(
        story["event"]["user"]["google"]["email"]
            .as_str()
            .is_some_and(|h| h.len() == 64),
        "hashed, as sent"
    );
    let dests = story["destinations"].as_array().unwrap();
    assert!(
        dests
            .iter()
            .all(|d| d["state"] == "delivered" && d["attempts"] == 1),
        "{dests:?}"
    );
    let google = dests.iter().find(|d| d["destination"] == "google").unwrap();
    assert_eq!(
        google["google_request_id"].as_str().map(str::len),
        Some(36),
        "{google}"
    );
    assert_eq!(
        google["google_processing"]["requestStatusPerDestination"][0]["requestStatus"], "SUCCESS",
        "Data Manager's later processing status: {google}"
    );
    let (code, _, err) = p.binary(&["status", "--event", "purchase-999"]);
    assert_ne!(code, 0);
    assert!(err.contains("no event purchase-999"), "{err}");
    let (code, json, _) = p.binary(&["status", "--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["destinations"].as_array().map(Vec::len),
        Some(2),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_refreshed_transparently() {
    let (p, action) = with_google("token_expiry").await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total, session_id) VALUES (1, 1, 'paid', 1, 'g1')").await;
    wait_google(&p, &action, 1).await;
    p.sandbox.google().expire_access_tokens();
    p.sql("INSERT INTO orders (id, customer_id, status, total, session_id) VALUES (2, 1, 'paid', 1, 'g1')").await;
    wait_google(&p, &action, 2).await;
    running.stop().await;
    let report = p.sandbox.google().report();
    assert_eq!(report.tokens_issued, 2, "one refresh after the expiry");
    let counts = Spool::open(&p.spool_file())
        .unwrap()
        .ledger()
        .unwrap()
        .counts("google")
        .unwrap();
    assert_eq!((counts.delivered, counts.dead), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_pauses_with_an_alarm_and_resumes_with_nothing_lost() {
    let (mut p, action) = with_google("invalid_grant").await;
    let admin = p.admin_on_free_port();
    p.sandbox
        .google()
        .push_fault(GoogleFault::InvalidGrant { count: 3 })
        .unwrap();
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total, session_id) VALUES (1, 1, 'paid', 1, 'g1')").await;
    // Paused: /readyz says so and names the destination.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(r) = http.get(format!("{admin}/readyz")).send().await {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            if status == 503 && text.contains("google") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no pause reported by /readyz");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("capi_cdc_destination_paused{destination=\"google\"} 1"),
        "{metrics}"
    );
    // Once the grant works again (the fault is used up), it resumes.
    let events = wait_google(&p, &action, 1).await;
    assert_eq!(events.len(), 1);
    let deadline = Instant::now() + WAIT;
    while http
        .get(format!("{admin}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "still not ready after the grant works"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
    let counts = Spool::open(&p.spool_file())
        .unwrap()
        .ledger()
        .unwrap()
        .counts("google")
        .unwrap();
    assert_eq!((counts.delivered, counts.dead, counts.pending), (1, 0, 0));
    let conn = rusqlite::Connection::open(p.spool_file()).unwrap();
    let attempts: u32 = conn
        .query_row(
            "SELECT attempts FROM deliveries WHERE destination = 'google'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(attempts, 1, "pauses cost no attempts");
    // The story shows each refusal, none counted as an attempt.
    let (code, story, _) = p.binary(&["status", "--event", "purchase-1"]);
    assert_eq!(code, 0);
    let story: serde_json::Value = serde_json::from_str(&story).unwrap();
    let google = story["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == "google")
        .unwrap()
        .clone();
    let answers = google["answers"].as_array().unwrap();
    assert!(answers.len() >= 3, "{google}");
    assert!(
        answers.iter().all(|a| a["counted_as_attempt"] == false
            && a["answer"].as_str().unwrap().contains("invalid_grant")),
        "{answers:?}"
    );
    assert_eq!(google["state"], "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_is_idempotent_and_new_actions_hold_uploads_for_six_hours() {
    let mut p = Pipeline::new("provision").await;
    p.google_extra = Some(String::new());
    shopper(&p).await;
    p.setup().await;
    let (code, first, err) = p.binary(&["provision"]);
    assert_eq!(code, 0, "{first}{err}");
    assert_eq!(first.matches("created now").count(), 7, "{first}");
    let table: toml::Table = toml::from_str(&first).unwrap();
    let ids = table["destinations"]["google"]["conversion_actions"]
        .as_table()
        .unwrap();
    assert_eq!(ids.len(), 7);
    let actions = p.sandbox.google().report().conversion_actions;
    assert_eq!(actions.len(), 7);
    let (code, second, _) = p.binary(&["provision"]);
    assert_eq!(code, 0);
    assert_eq!(second.matches("found").count(), 7, "{second}");
    assert_eq!(
        p.sandbox.google().report().conversion_actions.len(),
        7,
        "the second run created nothing"
    );
    // The purchase action was created just now: Google's upload waits 6 h
    // as a hold in the ledger, not as a failure; Meta is not held.
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total, session_id) VALUES (1, 1, 'paid', 1, 'g1')").await;
    p.wait_for_events(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    running.stop().await;
    assert!(p
        .sandbox
        .google()
        .report()
        .accepted
        .values()
        .all(Vec::is_empty));
    let conn = rusqlite::Connection::open(p.spool_file()).unwrap();
    let (state, attempts, not_before, reason): (String, u32, i64, String) = conn
        .query_row(
            "SELECT d.state, d.attempts, d.not_before_ms, d.reason FROM deliveries d JOIN events e ON e.seq = d.seq
             WHERE d.destination = 'google' AND e.event_id = 'purchase-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    assert!(
        not_before > capi_cdc::spool::Ledger::now_ms() + 5 * 3_600_000,
        "held about 6 h"
    );
    assert!(reason.contains("6 hours"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_reaches_both_platforms_marked_as_a_test() {
    let (p, _action) = with_google("send_test").await;
    let (code, stdout, stderr) = p.binary(&["send-test", "--test-event-code", "TEST4242"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("meta:   accepted"), "{stdout}");
    assert!(stdout.contains("google: accepted"), "{stdout}");
    let meta = p.sandbox.meta_report();
    assert_eq!(meta.received.len(), 1);
    assert_eq!(
        meta.received[0].test_event_code.as_deref(),
        Some("TEST4242")
    );
    let google = p.sandbox.google().report();
    assert_eq!(
        google.validate_only_requests, 1,
        "Google validated, recorded nothing"
    );
    assert!(google.accepted.values().all(Vec::is_empty));
    // Without a test event code it refuses rather than send a real event.
    let (code, _, stderr) = p.binary(&["send-test"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--test-event-code"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_retried_and_dropped_by_destination_and_kind() {
    let p = Pipeline::new("dead").await;
    p.sql("INSERT INTO sessions (id, fbc, user_agent, client_ip) VALUES ('bad', 'not-an-fbc', 'Mozilla/5.0', '192.0.2.6')").await;
    p.setup().await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, status, total, session_id) VALUES (1, 'paid', 5, 'bad')")
        .await;
    let ledger = Spool::open(&p.spool_file()).unwrap().ledger().unwrap();
    let deadline = Instant::now() + WAIT;
    while ledger.counts("meta").unwrap().dead == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
    let (code, list, _) = p.binary(&[
        "dead-letters",
        "list",
        "--destination",
        "meta",
        "--kind",
        "transaction.purchase",
        "--since",
        "1h",
    ]);
    assert_eq!(code, 0);
    assert!(
        list.contains("1 dead letters") && list.contains("purchase-1") && list.contains("fbc"),
        "{list}"
    );
    let (_, none, _) = p.binary(&["dead-letters", "list", "--kind", "product.viewed"]);
    assert!(none.contains("0 dead letters"), "{none}");
    let (code, retried, _) = p.binary(&["dead-letters", "retry", "--destination", "meta"]);
    assert_eq!(code, 0);
    assert!(
        retried.contains("1 dead letters are pending again"),
        "{retried}"
    );
    assert_eq!(ledger.counts("meta").unwrap().pending, 1);
    let (code, dropped, _) = p.binary(&["dead-letters", "drop", "--destination", "meta"]);
    assert_eq!(code, 0);
    assert!(
        dropped.contains("0 dead letters dropped"),
        "pending ones are not dead: {dropped}"
    );
    // Back to dead (it is still invalid), then dropped.
    let running = p.start();
    let deadline = Instant::now() + WAIT;
    while ledger.counts("meta").unwrap().dead == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
    let (_, dropped, _) = p.binary(&["dead-letters", "drop", "--destination", "meta"]);
    assert!(dropped.contains("1 dead letters dropped"), "{dropped}");
    let c = ledger.counts("meta").unwrap();
    assert_eq!((c.dead, c.skipped), (0, 1));
    let (code, _, stderr) = p.binary(&["dead-letters", "list", "--since", "yesterday"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("not a time"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_daily_quota_parks_the_lane_until_the_reset_instead_of_spinning() {
    let (p, _action) = with_google("quota").await;
    p.sandbox
        .google()
        .push_fault(GoogleFault::DailyQuotaExhausted {
            endpoint: capi_cdc::sandbox::google::GoogleEndpoint::Ingest,
            count: 1,
            retry_delay_s: Some(3 * 3600),
        })
        .unwrap();
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total, session_id) VALUES (1, 1, 'paid', 1, 'g1')").await;
    p.wait_for_events(1, WAIT).await; // Meta is not affected
    let deadline = Instant::now() + WAIT;
    while p.sandbox.google().report().faults_fired == 0 {
        assert!(Instant::now() < deadline, "the quota answer never came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two more seconds: no further ingest request (parked, not spinning).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = p.sandbox.google().report();
    running.stop().await;
    let ingest = serde_json::to_value(&report.requests).unwrap();
    assert_eq!(ingest["ingest"]["total"], 1, "{ingest}");
    let conn = rusqlite::Connection::open(p.spool_file()).unwrap();
    let (state, attempts, not_before): (String, u32, i64) = conn
        .query_row(
            "SELECT state, attempts, not_before_ms FROM deliveries WHERE destination = 'google'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (state.as_str(), attempts),
        ("pending", 0),
        "kept, no attempt used"
    );
    assert!(
        not_before > capi_cdc::spool::Ledger::now_ms() + 2 * 3_600_000,
        "parked until the quota resets"
    );
}
