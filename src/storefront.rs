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

/// One shopper's journey, `n` numbering its rows: its steps in order, each
/// one transaction (a shopper's separate actions commit separately).
pub fn journey(n: u64) -> Vec<String> {
    let pick = |k: u64| (n.wrapping_mul(2_654_435_761) >> 7) % k;
    let session = format!("demo-s{n}");
    let click = match pick(4) {
        0 => format!("gclid = 'Cj0KCQ-demo-{n}'"),
        1 => format!("fbclid = 'IwAR-demo-{n}', fbclid_seen_at = now()"),
        2 => format!("wbraid = 'WbR-demo-{n}'"),
        _ => "fbp = 'fb.1.1596403881668.1116446470'".to_owned(),
    };
    let consent = if pick(10) == 0 { "denied" } else { "granted" };
    let (ip, p, ph) = (n % 250 + 1, pick(20), n % 10_000);
    let mut steps = vec![
        format!("INSERT INTO sessions (id, client_ip, user_agent, landing_url) VALUES ('{session}', '192.0.2.{ip}', 'Mozilla/5.0 (demo)', 'https://shop.example/p/{p}')"),
        format!("UPDATE sessions SET {click} WHERE id = '{session}'"),
        format!("INSERT INTO consents (session_id, ad_storage, analytics_storage, ad_user_data, ad_personalization) VALUES ('{session}', 'granted', 'granted', '{consent}', '{consent}')"),
        format!("INSERT INTO customers (id, email, phone, first_name, last_name, country, session_id) VALUES ({n}, 'shopper{n}@example.com', '(650) 555-{ph:04}', 'Demo', 'Shopper', 'US', '{session}')"),
        format!("INSERT INTO product_views (session_id, customer_id, product_id, page_url)
           SELECT '{session}', {n}, 'SKU-' || g, 'https://shop.example/p/' || g FROM generate_series({p}, {p} + 3) g"),
    ];
    if pick(3) > 0 {
        steps.extend([
            format!("INSERT INTO carts (id, session_id, customer_id) VALUES ({n}, '{session}', {n})"),
            format!("INSERT INTO cart_items (cart_id, session_id, product_id, quantity, unit_price) VALUES ({n}, '{session}', 'SKU-{p}', 2, 12.50)"),
            format!("INSERT INTO checkouts (id, cart_id, session_id, customer_id, total) VALUES ({n}, {n}, '{session}', {n}, 25.00)"),
            format!("INSERT INTO checkout_payments (checkout_id, session_id, customer_id, method) VALUES ({n}, '{session}', {n}, 'card')"),
            // The order and its items commit together, as a shop's checkout does.
            format!("BEGIN;
             INSERT INTO orders (id, customer_id, status, total, session_id, checkout_id) VALUES ({n}, {n}, 'pending', 25.00, '{session}', {n});
             INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES ({n}, 'SKU-{p}', 2, 12.50);
             COMMIT"),
            format!("UPDATE orders SET status = 'paid', paid_at = now() WHERE id = {n}"),
        ]);
    }
    // Now and then a bad row: a phone no country can make sense of and an
    // unknown currency; derivation leaves those fields out with a counted
    // note instead of stopping (the health page's notes show them).
    if pick(25) == 0 {
        steps.extend([
            format!("INSERT INTO leads (session_id, form, email, phone) VALUES ('{session}', 'contact', 'not-an-email', '12')"),
            format!("INSERT INTO orders (id, customer_id, status, total, currency, session_id) VALUES ({}, {n}, 'paid', 3.00, 'XXX', '{session}')", n + 1_000_000_000),
        ]);
    }
    if pick(5) == 0 {
        steps.push(format!("INSERT INTO leads (session_id, form, email) VALUES ('{session}', 'newsletter', 'lead{n}@example.com')"));
    }
    steps
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
        let mut failed = None;
        for step in journey(first + played) {
            if let Err(e) = client.batch_execute(&step).await {
                failed = Some(e);
                break;
            }
        }
        match failed {
            None => {
                if let Some(path) = heartbeat {
                    if let Err(e) = std::fs::write(path, b"") {
                        tracing::warn!(error = %e, path = %path.display(), "storefront heartbeat file");
                    }
                }
            }
            Some(e) => {
                let error = crate::source::pg_error_text(&e);
                tracing::warn!(%error, journey = first + played, "storefront journey failed; going on");
            }
        }
        played += 1;
    }
    played
}

#[cfg(test)]
mod tests {
    use super::journey;

    #[test]
    fn journeys_are_repeatable_and_play_the_documented_mix() {
        assert_eq!(journey(7), journey(7));
        let all: Vec<Vec<String>> = (1..=3000).map(journey).collect();
        let share = |needle: &str| {
            all.iter()
                .filter(|j| j.iter().any(|s| s.contains(needle)))
                .count() as f64
                / all.len() as f64
        };
        assert_eq!(share("INSERT INTO consents"), 1.0);
        assert_eq!(share("INSERT INTO product_views"), 1.0);
        let paid = share("SET status = 'paid'");
        assert!(
            (0.6..0.73).contains(&paid),
            "paid orders on {paid} of journeys"
        );
        let denied = share("'denied', 'denied'");
        assert!((0.07..0.13).contains(&denied), "denied consent on {denied}");
        let bad = share("'XXX'");
        assert!((0.02..0.06).contains(&bad), "bad rows on {bad}");
        // Only the order and its items share a transaction.
        for steps in &all {
            for step in steps {
                assert_eq!(
                    step.contains("BEGIN"),
                    step.contains("INSERT INTO order_items"),
                    "{step}"
                );
            }
        }
    }
}
