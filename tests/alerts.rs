//! The shipped alerting rules (`deploy/prometheus-alerts.yml`) name only
//! metrics the connector exports: every `capi_cdc_*` name in an `expr` is
//! present on a running pipeline's `/metrics`. And the least-privilege role
//! of `sql/roles.sql` is enough for `capi-cdc check` to find replication
//! allowed.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::harness::{self, Pipeline};

const RULES: &str = include_str!("../deploy/prometheus-alerts.yml");

fn metric_names_in_rules() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in RULES
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
    {
        let mut rest = line;
        while let Some(i) = rest.find("capi_cdc_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_names_metrics_the_connector_exports() {
    let names = metric_names_in_rules();
    assert!(names.len() >= 10, "{names:?}");
    let mut p = Pipeline::new("alerts").await;
    let base = p.admin_on_free_port();
    p.sql("INSERT INTO customers (id, email, country) VALUES (1, 'alerts@example.com', 'US')")
        .await;
    p.setup().await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (1, 1, 'paid', 5)")
        .await;
    p.wait_for_events(1, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let exported: BTreeSet<String> = loop {
        let text = harness::get_text(&format!("{base}/metrics")).await;
        let exported: BTreeSet<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split(['{', ' ']).next().unwrap_or("").to_owned())
            .collect();
        if names.iter().all(|n| exported.contains(n)) || Instant::now() > deadline {
            break exported;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    running.stop().await;
    let missing: Vec<&String> = names.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "alert rules name metrics /metrics does not export: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_privilege_role_may_replicate_and_read_the_rules_tables() {
    let mut p = Pipeline::new("roles").await;
    p.sql(include_str!("../sql/roles.sql")).await;
    // The same server, as that role (the test cluster trusts local logins).
    p.source_url = p.source_url.replace("postgres@", "capi_cdc@").replacen(
        "user=postgres",
        "user=capi_cdc",
        1,
    );
    let (code, stdout, _) = p.binary(&["check"]);
    assert!(stdout.contains("role capi_cdc may replicate"), "{stdout}");
    assert!(!stdout.contains("permission denied"), "{stdout}");
    let _ = code;
}
