//! A schema that is not the reference one, with the rules file taken
//! verbatim from docs/configuration.md §5.2: other table and column names,
//! a status enum, money in integer cents, text primary keys, consent per
//! visit as booleans, and a custom kind. No Rust knows these names.

mod support;

use std::time::Duration;

use support::harness::Pipeline;
use support::pg::cluster;

const WAIT: Duration = Duration::from_secs(60);
const DOC: &str = include_str!("../docs/configuration.md");

/// The fenced blocks of the doc's §5.2, in order.
fn example_blocks() -> Vec<String> {
    let section = DOC
        .split("### 5.2")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/configuration.md has a §5.2");
    section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|b| b.split_once('\n').map_or("", |(_, body)| body).to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_example_schema_gets_the_right_events() {
    let blocks = example_blocks();
    let [schema, rules, main] = blocks.as_slice() else {
        panic!("§5.2 should hold the SQL, the rules file and the main config: {blocks:?}")
    };
    let mut p = Pipeline::with_schema(cluster(), "shop", schema).await;
    let file = p.dir.path().join("rules.toml");
    std::fs::write(&file, rules).unwrap();
    p.extra_toml = main.replace("/etc/capi-cdc/rules.toml", &file.display().to_string());
    p.sql(
        "INSERT INTO shop.visits (visit_token, gclid, ip, user_agent, landing_url, ads_ok, analytics_ok, userdata_ok, personalization_ok)
           VALUES ('vis-1', 'Gclid-Shop', '192.0.2.10', 'Mozilla/5.0', 'https://shop.example/', true, true, true, false),
                  ('vis-2', NULL, '192.0.2.11', 'Mozilla/5.0', 'https://shop.example/', true, true, false, false);",
    )
    .await;
    let lines = p.setup().await.join("\n");
    assert!(lines.contains("shop.visits: 2"), "{lines}");
    let running = p.start();
    p.sql(
        "INSERT INTO shop.accounts (account_ref, visit_token, email, mobile, country_code)
           VALUES ('ACC-9', 'vis-1', 'Shop.User@Example.com', '030 1234567', 'DE');
         INSERT INTO shop.sales (sale_no, account_ref, visit_token, amount_cents, currency_code)
           VALUES ('S-1', 'ACC-9', 'vis-1', 1234, NULL);
         INSERT INTO shop.sale_lines (sale_no, sku, qty, price_cents) VALUES ('S-1', 'SKU-X', 1, 1000), ('S-1', 'SKU-Y', 2, 117);
         INSERT INTO shop.quote_requests (visit_token, email, country_code) VALUES ('vis-2', 'quote@example.com', 'US');",
    )
    .await;
    p.sql("UPDATE shop.sales SET status = 'settled', settled_at = now() WHERE sale_no = 'S-1'")
        .await;
    // Settled → void → settled: the same ID again (the spool keeps one).
    p.sql("UPDATE shop.sales SET status = 'void' WHERE sale_no = 'S-1'")
        .await;
    p.sql("UPDATE shop.sales SET status = 'settled' WHERE sale_no = 'S-1'")
        .await;
    let events = p
        .wait_spooled(&["sale-S-1", "signup-ACC-9", "quote-1"], WAIT)
        .await;
    let sale = &events["sale-S-1"];
    assert_eq!(sale["kind"], "transaction.purchase");
    assert_eq!(sale["value"]["amount"], "12.34", "integer cents: {sale}");
    assert_eq!(
        sale["value"]["currency"], "EUR",
        "currency_default for a NULL code"
    );
    assert_eq!(
        sale["items"][0],
        serde_json::json!({"id": "SKU-X", "quantity": 1, "unit_price": "10.00"})
    );
    assert_eq!(sale["items"][1]["unit_price"], "1.17");
    assert_eq!(sale["click_ids"]["google"]["gclid"], "Gclid-Shop");
    assert_eq!(sale["consent"]["ad_user_data"], "granted");
    assert_eq!(
        sale["consent"]["ad_personalization"], "denied",
        "booleans read as consent"
    );
    assert!(
        sale["user"]["meta"]["em"].is_string() && sale["user"]["meta"]["ph"].is_string(),
        "{sale}"
    );
    let quote = &events["quote-1"];
    assert_eq!(quote["kind"], "quote.requested");
    assert_eq!(quote["consent"]["ad_user_data"], "denied");
    assert!(
        events["signup-ACC-9"]["user"]["google"]["phone"].is_string(),
        "German number normalized with the row's country"
    );
    assert_eq!(events.keys().filter(|k| k.starts_with("sale-")).count(), 1);
    // Meta receives the custom kind under its mapped name.
    p.wait_for_events(3, WAIT).await;
    let names: Vec<String> = p
        .sandbox
        .meta_report()
        .received
        .iter()
        .filter_map(|e| e.event_name().map(str::to_owned))
        .collect();
    assert!(names.contains(&"QuoteRequested".to_owned()), "{names:?}");
    assert!(names.contains(&"Purchase".to_owned()), "{names:?}");
    running.stop().await;
}
