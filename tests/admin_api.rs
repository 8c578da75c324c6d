//! The admin API against a running pipeline: `/api/health`'s numbers after
//! real deliveries, and every mutating endpoint's guard firing (401 without
//! or with a wrong token, 403 when no token is configured), then working
//! with the token: pause and resume a destination, a test event, retrying
//! dead letters.

mod support;

use std::time::{Duration, Instant};

use support::harness::{self, Pipeline};

const WAIT: Duration = Duration::from_secs(60);
const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

const MUTATING: [&str; 4] = [
    "/api/test-event",
    "/api/destinations/meta/pause",
    "/api/destinations/meta/resume",
    "/api/dead-letters/retry",
];

async fn post(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = http.post(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_real_numbers_and_mutating_endpoints_need_the_token() {
    let mut p = Pipeline::new("admin_api").await;
    let base = p.admin_on_free_port();
    p.meta_extra =
        "requests_per_second = 200\nbatch_max_age_s = 1\ntest_event_code = \"TEST77\"\n".into();
    p.admin_token = Some(ADMIN_TOKEN.into());
    p.sql(
        "INSERT INTO customers (id, email, country) VALUES (1, 'health@example.com', 'US');
         INSERT INTO sessions (id, customer_id, fbp, client_ip, user_agent) VALUES ('a1', 1, 'fb.1.1596403881668.1116446470', '192.0.2.20', 'Mozilla/5.0');",
    )
    .await;
    p.setup().await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total, session_id) VALUES (1, 1, 'paid', 10, 'a1'), (2, 1, 'paid', 10, 'a1')").await;
    p.wait_for_events(2, WAIT).await;
    let http = reqwest::Client::new();
    // Health: the numbers a person would check.
    let deadline = Instant::now() + WAIT;
    let health = loop {
        let h: serde_json::Value = harness::get_json(&format!("{base}/api/health")).await;
        let k = &h["destinations"][0]["kinds"];
        if k.as_array().is_some_and(|a| {
            a.iter()
                .any(|r| r["kind"] == "transaction.purchase" && r["delivered"] == 2)
        }) {
            break h;
        }
        assert!(Instant::now() < deadline, "{h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let meta = &health["destinations"][0];
    assert_eq!(meta["name"], "meta");
    assert_eq!(meta["paused"], false);
    let purchase = meta["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "transaction.purchase")
        .unwrap();
    assert_eq!(purchase["derived"], 2);
    assert_eq!(purchase["coverage"], 1.0);
    assert_eq!(purchase["dedup_ready"], 1.0, "pixel-style IDs with fbp");
    // email 3 + ip 1 + ua 0.5 + fbp 1 + external_id 0.5 + country 0.5 = 6.5
    assert_eq!(purchase["match_quality"], 6.5, "{purchase}");
    assert!(
        purchase["freshness_ms"]["p50"].as_i64().is_some(),
        "{purchase}"
    );
    assert_eq!(health["replication"]["streaming"], true);
    assert!(
        health["replication"]["retained_wal_bytes"].is_u64(),
        "the slot watcher read the slot: {}",
        health["replication"]
    );
    assert!(health["replication"]["lag_bytes"].is_u64());
    let metrics = harness::get_text(&format!("{base}/metrics")).await;
    for name in [
        "capi_cdc_slot_retained_wal_bytes ",
        "capi_cdc_lag_bytes ",
        "capi_cdc_lag_seconds ",
        "capi_cdc_received_lsn ",
        "capi_cdc_rate_limit_wait_ms_total{destination=\"meta\"}",
        "capi_cdc_delivery_latency_seconds_count{destination=\"meta\"} 2",
        "capi_cdc_spool_bytes ",
        "capi_cdc_lookup_rows{lookup=\"customers\"} 1",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    // Every mutating endpoint refuses without a token and with a wrong one.
    for path in MUTATING {
        let (status, body) = post(&http, format!("{base}{path}"), None).await;
        assert_eq!(status, 401, "{path}: {body}");
        let (status, _) = post(
            &http,
            format!("{base}{path}"),
            Some("admin-token-wrong-wrong-wrong"),
        )
        .await;
        assert_eq!(status, 401, "{path}");
    }
    // With it: pause holds events and /readyz says so; resume sends them.
    let (status, _) = post(
        &http,
        format!("{base}/api/destinations/meta/pause"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("meta"));
    p.sql("INSERT INTO orders (id, customer_id, status, total, session_id) VALUES (3, 1, 'paid', 10, 'a1')").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !p.delivered_ids().contains("purchase-3"),
        "paused by the operator"
    );
    let (status, _) = post(
        &http,
        format!("{base}/api/destinations/meta/resume"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    p.wait_for_events(3, WAIT).await;
    // A test event, through the same request building as `run`.
    let (status, body) = post(&http, format!("{base}/api/test-event"), Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["results"][0]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("accepted"),
        "{body}"
    );
    assert!(p
        .sandbox
        .meta_report()
        .received
        .iter()
        .any(|e| e.test_event_code.as_deref() == Some("TEST77")));
    let (status, body) = post(
        &http,
        format!("{base}/api/dead-letters/retry"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["retried"], 0);
    running.stop().await;

    // Without a configured token the endpoints are off: 403 with the remedy.
    p.admin_token = None;
    let base = p.admin_on_free_port();
    let running = p.start();
    let deadline = Instant::now() + WAIT;
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for path in MUTATING {
        let (status, body) = post(&http, format!("{base}{path}"), Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 403, "{path}");
        assert!(
            body["error"].as_str().unwrap().contains("admin.token"),
            "{body}"
        );
    }
    running.stop().await;
}
