//! A synthetic storefront: shoppers' journeys written as SQL against the
//! reference schema (`sql/schema.sql`). `capi-cdc demo`, the compose stack's
//! `storefront` service (`capi-cdc storefront`) and the benchmark's workload
//! C all play this same mix, so what the demo shows is what was measured.
//!
//! Per journey: a session (with a click ID on most: gclid, fbclid, wbraid or
//! a bare fbp), the consent banner's answer (one in ten denies ad user data
//! and personalization), a customer, four product views; on two in three a
//! cart, checkout, payment and an order with its item in one transaction,
//! later paid; one in five a newsletter lead; one in 25 a bad row (a phone
//! and email nobody can use, an unknown currency) that derivation must
//! survive. Journey `n` always writes the same rows, keyed by `n`.

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;

/// One shopper's journey, `n` numbering its rows.
pub fn journey(n: u64) -> String {
    let pick = |k: u64| (n.wrapping_mul(2_654_435_761) >> 7) % k;
    let session = format!("demo-s{n}");
    let click = match pick(4) {
        0 => format!("gclid = 'Cj0KCQ-demo-{n}'"),
        1 => format!("fbclid = 'IwAR-demo-{n}', fbclid_seen_at = now()"),
        2 => format!("wbraid = 'WbR-demo-{n}'"),
        _ => "fbp = 'fb.1.1596403881668.1116446470'".to_owned(),
    };
    let consent = if pick(10) == 0 { "denied" } else { "granted" };
    let mut sql = format!(
        "INSERT INTO sessions (id, client_ip, user_agent, landing_url) VALUES ('{session}', '192.0.2.{ip}', 'Mozilla/5.0 (demo)', 'https://shop.example/p/{p}');
         UPDATE sessions SET {click} WHERE id = '{session}';
         INSERT INTO consents (session_id, ad_storage, analytics_storage, ad_user_data, ad_personalization) VALUES ('{session}', 'granted', 'granted', '{consent}', '{consent}');
         INSERT INTO customers (id, email, phone, first_name, last_name, country, session_id) VALUES ({n}, 'shopper{n}@example.com', '(650) 555-{ph:04}', 'Demo', 'Shopper', 'US', '{session}');
         INSERT INTO product_views (session_id, customer_id, product_id, page_url)
           SELECT '{session}', {n}, 'SKU-' || g, 'https://shop.example/p/' || g FROM generate_series({p}, {p} + 3) g;",
        ip = n % 250 + 1,
        p = pick(20),
        ph = n % 10_000,
    );
    if pick(3) > 0 {
        sql.push_str(&format!(
            "INSERT INTO carts (id, session_id, customer_id) VALUES ({n}, '{session}', {n});
             INSERT INTO cart_items (cart_id, session_id, product_id, quantity, unit_price) VALUES ({n}, '{session}', 'SKU-{p}', 2, 12.50);
             INSERT INTO checkouts (id, cart_id, session_id, customer_id, total) VALUES ({n}, {n}, '{session}', {n}, 25.00);
             INSERT INTO checkout_payments (checkout_id, session_id, customer_id, method) VALUES ({n}, '{session}', {n}, 'card');
             BEGIN;
             INSERT INTO orders (id, customer_id, status, total, session_id, checkout_id) VALUES ({n}, {n}, 'pending', 25.00, '{session}', {n});
             INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES ({n}, 'SKU-{p}', 2, 12.50);
             COMMIT;
             UPDATE orders SET status = 'paid', paid_at = now() WHERE id = {n};",
            p = pick(20)
        ));
    }
    // Now and then a bad row: a phone no country can make sense of and an
    // unknown currency; derivation leaves those fields out with a counted
    // note instead of stopping (the health page's notes show them).
    if pick(25) == 0 {
        sql.push_str(&format!(
            "INSERT INTO leads (session_id, form, email, phone) VALUES ('{session}', 'contact', 'not-an-email', '12');
             INSERT INTO orders (id, customer_id, status, total, currency, session_id) VALUES ({}, {n}, 'paid', 3.00, 'XXX', '{session}');",
            n + 1_000_000_000
        ));
    }
    if pick(5) == 0 {
        sql.push_str(&format!("INSERT INTO leads (session_id, form, email) VALUES ('{session}', 'newsletter', 'lead{n}@example.com');"));
    }
    sql
}

/// The next free journey number in `client`'s database (one past the
/// highest customer ID), so a restarted storefront does not collide.
pub async fn next_journey(client: &tokio_postgres::Client) -> Result<u64, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT coalesce(max(id), 0)::bigint FROM customers", &[])
        .await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0) + 1)
}

/// Plays journeys `first..` at `rate` per second (0: as fast as the
/// database takes them) until `limit` were played or `shutdown`; returns how
/// many were played. A failed journey is logged and the next one played.
/// `heartbeat`, if given, is rewritten after each committed journey, so a
/// container health check can tell a storefront that still writes.
pub async fn play(
    client: &tokio_postgres::Client,
    first: u64,
    rate: u32,
    limit: Option<u64>,
    heartbeat: Option<&Path>,
    mut shutdown: watch::Receiver<bool>,
) -> u64 {
    let every = (rate > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(rate)));
    let mut ticker = every.map(|e| {
        let mut t = tokio::time::interval(e);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut played = 0u64;
    while limit.is_none_or(|l| played < l) && !*shutdown.borrow() {
        if let Some(t) = ticker.as_mut() {
            tokio::select! {
                _ = t.tick() => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        match client.batch_execute(&journey(first + played)).await {
            Ok(()) => {
                if let Some(path) = heartbeat {
                    if let Err(e) = std::fs::write(path, b"") {
                        tracing::warn!(error = %e, path = %path.display(), "storefront heartbeat file");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, journey = first + played, "storefront journey failed; going on");
            }
        }
        played += 1;
    }
    played
}
