//! Derivation against a real PostgreSQL: every default kind from the
//! reference schema, consent and click IDs joined as of each commit (even
//! when capi-cdc starts after everything committed), setup's snapshot of
//! every lookup, and an interrupted setup finished by running it again.

mod support;

use std::time::Duration;

use capi_cdc::run::RunOptions;
use support::harness::Pipeline;

const WAIT: Duration = Duration::from_secs(60);

fn str_at<'a>(v: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_and_click_ids_are_joined_as_of_each_commit_even_when_started_later() {
    let p = Pipeline::new("asof").await;
    // Before setup: a customer and a session with a consent, in the snapshot.
    p.sql(
        "INSERT INTO customers (id, email, country) VALUES (1, 'Asof.Shopper@Example.com', 'US');
         INSERT INTO sessions (id, customer_id, gclid, fbp, client_ip, user_agent, landing_url)
           VALUES ('s1', 1, 'Cj0KCQ-Gclid1', 'fb.1.1596403881668.1116446470', '203.0.113.7', 'Mozilla/5.0 (X11)', 'https://shop.example/p/1');
         INSERT INTO consents (session_id, customer_id, ad_storage, analytics_storage, ad_user_data, ad_personalization)
           VALUES ('s1', 1, 'granted', 'granted', 'granted', 'granted');",
    )
    .await;
    let lines = p.setup().await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("public.consents: 1") && l.contains("public.sessions: 1")),
        "{lines:?}"
    );

    // Everything below commits before capi-cdc runs.
    // Order 1: paid with its items in the same transaction (order first).
    p.sql(
        "BEGIN;
         INSERT INTO orders (id, customer_id, status, total, currency, session_id, paid_at)
           VALUES (1, 1, 'paid', 20.00, 'USD', 's1', now());
         INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES (1, 'SKU-A', 2, 5.00), (1, 'SKU-B', 1, 10.00);
         COMMIT;",
    )
    .await;
    // Consent withdrawn, then order 2 paid (items inserted earlier).
    p.sql(
        "INSERT INTO consents (session_id, customer_id, ad_storage, analytics_storage, ad_user_data, ad_personalization)
           VALUES ('s1', 1, 'granted', 'granted', 'denied', 'denied');",
    )
    .await;
    p.sql("INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES (2, 'SKU-A', 2, 5.00), (2, 'SKU-B', 1, 10.00)")
        .await;
    p.sql("INSERT INTO orders (id, customer_id, status, total, currency, session_id, paid_at) VALUES (2, 1, 'paid', 20.00, 'USD', 's1', now())")
        .await;
    // A wbraid captured after order 2, then a pending order paid later.
    p.sql("UPDATE sessions SET wbraid = 'WbRaId-Later' WHERE id = 's1'")
        .await;
    p.sql("INSERT INTO orders (id, customer_id, status, total, session_id) VALUES (3, 1, 'pending', 5, 's1')")
        .await;
    p.sql("UPDATE orders SET status = 'paid' WHERE id = 3")
        .await;
    // The customer is deleted: later events no longer carry their email.
    p.sql("UPDATE orders SET customer_id = NULL WHERE customer_id = 1; DELETE FROM customers WHERE id = 1")
        .await;
    p.sql("INSERT INTO orders (id, status, total, session_id) VALUES (4, 'paid', 1, 's1')")
        .await;

    let running = p.start();
    let events = p
        .wait_spooled(
            &["purchase-1", "purchase-2", "purchase-3", "purchase-4"],
            WAIT,
        )
        .await;
    let e1 = &events["purchase-1"];
    let e2 = &events["purchase-2"];
    let e3 = &events["purchase-3"];
    let e4 = &events["purchase-4"];
    assert_eq!(
        str_at(e1, &["consent", "ad_user_data"]),
        Some("granted"),
        "{e1}"
    );
    assert_eq!(
        str_at(e2, &["consent", "ad_user_data"]),
        Some("denied"),
        "withdrawn before the order: {e2}"
    );
    assert_eq!(
        str_at(e1, &["click_ids", "google", "gclid"]),
        Some("Cj0KCQ-Gclid1")
    );
    assert_eq!(
        str_at(e2, &["click_ids", "google", "gclid"]),
        Some("Cj0KCQ-Gclid1"),
        "the wbraid captured after order 2 is not attached: {e2}"
    );
    assert_eq!(
        str_at(e3, &["click_ids", "google", "wbraid"]),
        Some("WbRaId-Later"),
        "captured before order 3: {e3}"
    );
    assert_eq!(
        e1["items"], e2["items"],
        "items in the same transaction or earlier give the same contents"
    );
    assert_eq!(e1["items"].as_array().map(Vec::len), Some(2));
    assert!(e1["user"]["google"]["email"].is_string(), "{e1}");
    assert!(
        e2["user"].get("google").is_none(),
        "ad_user_data denied: no Google identifiers: {e2}"
    );
    assert!(
        e3["user"]["meta"]["em"].is_string(),
        "the customer as of order 3: {e3}"
    );
    assert!(
        e4["user"].get("meta").and_then(|m| m.get("em")).is_none(),
        "the customer was deleted before order 4: {e4}"
    );
    assert_eq!(str_at(e1, &["session", "ip"]), Some("203.0.113.7"));
    // Meta got them, the denied one limited (no hashed identifiers).
    p.wait_for_events(4, WAIT).await;
    let report = p.sandbox.meta_report();
    let sent2 = report
        .received
        .iter()
        .find(|e| e.event_id() == Some("purchase-2"))
        .unwrap();
    let sent2 = serde_json::to_value(sent2).unwrap();
    let text = sent2.to_string();
    assert!(
        !text.contains("\"em\""),
        "limited event carries no email hash: {text}"
    );
    running.stop().await;
    // The policy's choice is recorded per event.
    let conn = rusqlite::Connection::open(p.spool_file()).unwrap();
    let reason: Option<String> = conn
        .query_row(
            "SELECT d.reason FROM deliveries d JOIN events e ON e.seq = d.seq WHERE e.event_id = 'purchase-2' AND d.state = 'delivered'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("sent limited")),
        "{reason:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_default_kind_is_derived_from_the_reference_schema() {
    let p = Pipeline::new("kinds").await;
    p.setup().await;
    let running = p.start();
    p.sql(
        "INSERT INTO sessions (id, fbclid, fbclid_seen_at, user_agent, client_ip, landing_url)
           VALUES ('k1', 'IwAR-Kinds', now(), 'Mozilla/5.0', '198.51.100.4', 'https://shop.example/');
         INSERT INTO consents (session_id, ad_storage, analytics_storage, ad_user_data, ad_personalization)
           VALUES ('k1', 'granted', 'granted', 'granted', 'denied');
         INSERT INTO customers (id, email, phone, first_name, last_name, country, session_id)
           VALUES (10, 'k@example.com', '(650) 555-1212', 'Kim', 'Lee', 'US', 'k1');
         INSERT INTO products (id, name, price) VALUES ('SKU-K', 'Kettle', 30.00);
         INSERT INTO product_views (id, session_id, customer_id, product_id, page_url) VALUES (1, 'k1', 10, 'SKU-K', 'https://shop.example/p/kettle');
         INSERT INTO carts (id, session_id, customer_id) VALUES (1, 'k1', 10);
         INSERT INTO cart_items (id, cart_id, session_id, product_id, quantity, unit_price) VALUES (1, 1, 'k1', 'SKU-K', 1, 30.00);
         INSERT INTO checkouts (id, cart_id, session_id, customer_id, total) VALUES (1, 1, 'k1', 10, 30.00);
         INSERT INTO checkout_payments (id, checkout_id, session_id, customer_id, method) VALUES (1, 1, 'k1', 10, 'card');
         INSERT INTO orders (id, customer_id, status, total, session_id, checkout_id) VALUES (1, 10, 'paid', 30.00, 'k1', 1);
         INSERT INTO leads (id, session_id, form, email) VALUES (1, 'k1', 'newsletter', 'lead@example.com');",
    )
    .await;
    let ids = [
        "view-1",
        "cart-1",
        "checkout-1",
        "payment-1",
        "purchase-1",
        "signup-10",
        "lead-1",
    ];
    let events = p.wait_spooled(&ids, WAIT).await;
    let kinds: Vec<&str> = ids
        .iter()
        .map(|id| events[*id]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "product.viewed",
            "cart.added",
            "checkout.started",
            "payment_info.added",
            "transaction.purchase",
            "user.signed_up",
            "lead.submitted"
        ]
    );
    let checkout = &events["checkout-1"];
    assert_eq!(
        checkout["items"][0]["id"], "SKU-K",
        "checkout items from the cart: {checkout}"
    );
    let fbc = str_at(checkout, &["click_ids", "fbc"]).unwrap();
    assert!(
        fbc.starts_with("fb.1.") && fbc.ends_with(".IwAR-Kinds"),
        "{fbc}"
    );
    assert_eq!(
        str_at(checkout, &["consent", "ad_personalization"]),
        Some("denied")
    );
    assert_eq!(
        str_at(&events["view-1"], &["session", "page_url"]),
        Some("https://shop.example/p/kettle")
    );
    assert!(events["lead-1"]["user"]["meta"]["em"].is_string());
    // All seven reach Meta with their standard names.
    p.wait_for_events(7, WAIT).await;
    let names: std::collections::BTreeSet<String> = p
        .sandbox
        .meta_report()
        .received
        .iter()
        .filter_map(|e| {
            serde_json::to_value(e)
                .ok()?
                .get("event_name")?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    for n in [
        "ViewContent",
        "AddToCart",
        "InitiateCheckout",
        "AddPaymentInfo",
        "Purchase",
        "CompleteRegistration",
        "Lead",
    ] {
        assert!(names.contains(n), "{n} missing from {names:?}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_setup_is_finished_by_running_it_again() {
    let p = Pipeline::new("resetup").await;
    p.sql("INSERT INTO customers (id, email, country) VALUES (1, 'snap@example.com', 'US')")
        .await;
    // What an interrupted setup leaves: publication and slot, no spool.
    p.sql(&format!(
        "CREATE PUBLICATION \"{}\" FOR ALL TABLES",
        p.publication
    ))
    .await;
    p.sql(&format!(
        "SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
        p.slot
    ))
    .await;
    let err = p
        .run_expecting_error(RunOptions::default(), Duration::from_secs(20))
        .await
        .to_string();
    assert!(
        err.contains("no checkpoint") && err.contains("capi-cdc setup"),
        "{err}"
    );
    let lines = p.setup().await.join("\n");
    assert!(
        lines.contains("dropped it to take the snapshot again"),
        "{lines}"
    );
    assert!(lines.contains("public.customers: 1"), "{lines}");
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (1, 1, 'paid', 2)")
        .await;
    let events = p.wait_spooled(&["purchase-1"], WAIT).await;
    assert!(
        events["purchase-1"]["user"]["meta"]["em"].is_string(),
        "the snapshot's customer is joined"
    );
    assert!(
        !events.contains_key("signup-1"),
        "snapshot rows are state, not events"
    );
    running.stop().await;
    // A second setup leaves the slot (and the spool) alone.
    let again = p.setup().await.join("\n");
    assert!(
        again.contains("exists") && !again.contains("dropped"),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typo_in_the_rules_is_named_by_check_and_setup() {
    let mut p = Pipeline::new("typo").await;
    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules.default.toml"))
        .unwrap()
        .replace("value = \"total\"\ncurrency = \"currency\"\nidentity = { external_id = \"customer_id\" }\ncustomer", "value = \"totl\"\ncurrency = \"currency\"\nidentity = { external_id = \"customer_id\" }\ncustomer");
    assert!(rules.contains("\"totl\""));
    let file = p.dir.path().join("rules.toml");
    std::fs::write(&file, rules).unwrap();
    p.extra_toml = format!("[derive]\nrules_file = \"{}\"\n", file.display());
    let err = capi_cdc::source::setup::setup(&p.config(), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rules[purchase].value") && err.contains("public.orders.totl does not exist"),
        "{err}"
    );
    let (code, stdout, _) = p.binary(&["check"]);
    assert_eq!(code, 3, "{stdout}");
    assert!(stdout.contains("rules[purchase].value"), "{stdout}");
    // An enum label that does not exist can never fire.
    p.sql("CREATE TYPE pay_state AS ENUM ('open', 'settled'); ALTER TABLE orders ADD COLUMN pay pay_state").await;
    let rules = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"totl\"", "\"total\"")
        .replace(
            "when = [{ column = \"status\", equals = \"paid\" }]",
            "when = [{ column = \"pay\", equals = \"setled\" }]",
        );
    std::fs::write(&file, rules).unwrap();
    let err = capi_cdc::source::setup::setup(&p.config(), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rules[purchase].when[0]") && err.contains("can never fire"),
        "{err}"
    );
}

/// Identifiers on the rule's own row (lead forms, guest checkouts, sign-ups)
/// are hashed before anything is stored or logged, at debug level too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_pii_from_any_table_reaches_no_log_and_no_spool() {
    let p = Pipeline::new("pii").await;
    p.setup().await;
    let log = p.dir.path().join("run.log");
    let mut child = p.spawn_binary(&["run"], &log);
    p.sql(
        "INSERT INTO sessions (id, client_ip, user_agent) VALUES ('pii-s', '198.51.100.9', 'Mozilla/5.0');
         INSERT INTO customers (id, email, phone, first_name, last_name, country, session_id)
           VALUES (3, 'Signup.Person@Example.org', '(212) 555-0187', 'Philippa', 'Quartermaine', 'US', 'pii-s');
         INSERT INTO leads (id, session_id, form, email, phone, first_name, country)
           VALUES (4, 'pii-s', 'quote', 'Lead.Person@Example.net', '+44 7911 654321', 'Bartholomew', 'GB');
         INSERT INTO checkouts (id, session_id, email, total) VALUES (5, 'pii-s', 'Guest.Buyer@Example.com', 9.99);
         INSERT INTO leads (id, session_id, form, email, phone) VALUES (6, 'pii-s', 'quote', 'not-an-email', '12');",
    )
    .await;
    p.wait_spooled(&["signup-3", "lead-4", "checkout-5", "lead-6"], WAIT)
        .await;
    p.wait_for_events(4, WAIT).await;
    let _ = child.kill();
    let _ = child.wait();
    let mut bytes = std::fs::read(&log).unwrap();
    assert!(
        String::from_utf8_lossy(&bytes).contains("streaming"),
        "logging ran"
    );
    for suffix in ["", "-wal"] {
        if let Ok(b) = std::fs::read(format!("{}{suffix}", p.spool_file().display())) {
            bytes.extend(b);
        }
    }
    let text = String::from_utf8_lossy(&bytes).to_lowercase();
    for needle in [
        "signup.person",
        "lead.person",
        "guest.buyer",
        "not-an-email",
        "example.org",
        "example.net",
        "5550187",
        "555-0187",
        "7911654321",
        "7911 654321",
        "philippa",
        "quartermaine",
        "bartholomew",
    ] {
        assert!(
            !text.contains(needle),
            "{needle:?} found in the log or the spool"
        );
    }
    // The malformed ones were dropped with a counted reason, not sent wrong.
    let conn = rusqlite::Connection::open(p.spool_file()).unwrap();
    let notes: Vec<String> = conn
        .prepare("SELECT reason FROM derive_notes")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("rules[lead]") && n.contains("email")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("rules[lead]") && n.contains("phone")),
        "{notes:?}"
    );
}
