//! Backfill from history against a real PostgreSQL and the sandbox: orders
//! that existed before the slot, delivered once, with what the stream or an
//! earlier backfill spooled never sent again; the platform window clipping
//! old events; an interrupted backfill resumed to the same result.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use capi_cdc::spool::Spool;
use support::harness::Pipeline;

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_from_before_the_slot_are_backfilled_once_and_a_second_backfill_sends_nothing_new() {
    let p = Pipeline::new("backfill").await;
    p.sql(
        "INSERT INTO customers (id, email, country) VALUES (1, 'history@example.com', 'US');
         INSERT INTO sessions (id, customer_id, gclid, client_ip, user_agent) VALUES ('h1', 1, 'Gclid-History', '192.0.2.8', 'Mozilla/5.0');
         INSERT INTO orders (id, customer_id, status, total, session_id, paid_at)
           SELECT g, 1, 'paid', 10, 'h1', now() - interval '1 day' FROM generate_series(1, 5) g;
         INSERT INTO orders (id, customer_id, status, total, paid_at) VALUES (6, 1, 'pending', 10, NULL);
         INSERT INTO orders (id, customer_id, status, total, paid_at) VALUES (7, 1, 'paid', 10, now() - interval '10 days');
         INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES (1, 'SKU-H', 2, 5);",
    )
    .await;
    p.setup().await;
    let running = p.start();
    // The stream spools one order paid after the slot; backfill must not resend it.
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (8, 1, 'paid', 10)")
        .await;
    p.wait_for_events(1, WAIT).await;
    let (code, dry, err) = p.binary(&["backfill", "--since", "30d", "--dry-run"]);
    assert_eq!(code, 0, "{dry}{err}");
    assert!(
        dry.contains("transaction.purchase")
            && dry.contains("would spool 6 new, 1 already spooled"),
        "{dry}"
    );
    assert!(
        dry.contains("user.signed_up") && dry.contains("would spool 1 new"),
        "the customer's sign-up too: {dry}"
    );
    let (code, out, err) = p.binary(&["backfill", "--since", "30d"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("spooled 6 new, 1 already spooled"), "{out}");
    assert!(
        out.contains("meta    transaction.purchase   1 outside meta's window"),
        "{out}"
    );
    let events = p.spooled_events();
    assert_eq!(
        events["purchase-1"]["items"][0]["id"], "SKU-H",
        "items as the snapshot holds them"
    );
    assert_eq!(
        events["purchase-1"]["click_ids"]["google"]["gclid"],
        "Gclid-History"
    );
    assert!(events["purchase-1"]["user"]["meta"]["em"].is_string());
    assert!(!events.contains_key("purchase-6"), "not paid");
    // Meta: purchase-1..5 and 8 delivered once each; 7 is too old for it.
    let deadline = Instant::now() + WAIT;
    let ledger = Spool::open(&p.spool_file()).unwrap().ledger().unwrap();
    loop {
        let c = ledger.counts("meta").unwrap();
        if c.pending == 0 {
            assert_eq!(
                (c.delivered, c.skipped),
                (7, 1),
                "6 purchases and the sign-up; 1 too old: {c:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{c:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, again, _) = p.binary(&["backfill", "--since", "30d"]);
    assert_eq!(code, 0);
    assert!(
        again.contains("spooled 0 new, 7 already spooled"),
        "{again}"
    );
    assert!(
        again.contains("spooled 0 new, 1 already spooled"),
        "{again}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    running.stop().await;
    let report = p.sandbox.meta_report();
    assert_eq!(report.received.len(), 7, "each sent once");
    assert!(p.spool_checkpoint().is_some());
    // Refusals.
    let (code, _, err) = p.binary(&["backfill", "--since", "1d", "--until", "2d"]);
    assert_ne!(code, 0);
    assert!(err.contains("not after --since"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_backfill_resumes_to_the_same_result_as_one_uninterrupted_run() {
    let mut p = Pipeline::new("backfill_resume").await;
    // Nothing to deliver to: this is about what is spooled.
    p.meta_extra = "enabled = false\n".into();
    p.sql(
        "INSERT INTO customers (id, email, country) VALUES (1, 'resume@example.com', 'US');
         INSERT INTO orders (id, customer_id, status, total, paid_at)
           SELECT g, 1, 'paid', 1, now() - interval '1 hour' FROM generate_series(1, 60000) g;",
    )
    .await;
    p.setup().await;
    let config = p.config_file();
    let child = Command::new(env!("CARGO_BIN_EXE_capi-cdc"))
        .arg("--config")
        .arg(&config)
        .args([
            "backfill",
            "--since",
            "1d",
            "--kind",
            "transaction.purchase",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt once the first chunks are in the spool.
    let deadline = Instant::now() + WAIT;
    loop {
        let n = rusqlite::Connection::open(p.spool_file())
            .ok()
            .and_then(|c| {
                c.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
                    .ok()
            })
            .unwrap_or(0);
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing spooled");
        std::thread::sleep(Duration::from_millis(10));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let first = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{first}");
    assert!(
        first.contains("interrupted"),
        "the SIGINT landed mid-flight: {first}"
    );
    let spooled_at_stop: i64 = rusqlite::Connection::open(p.spool_file())
        .unwrap()
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(
        spooled_at_stop > 0 && spooled_at_stop < 60_000,
        "{spooled_at_stop}"
    );
    let (code, second, _) = p.binary(&[
        "backfill",
        "--since",
        "1d",
        "--kind",
        "transaction.purchase",
    ]);
    assert_eq!(code, 0, "{second}");
    assert!(!second.contains("interrupted"));
    // The resumed run read only what was left: what it calls new plus what
    // the first run spooled is everything, and nothing is there twice.
    let total: i64 = rusqlite::Connection::open(p.spool_file())
        .unwrap()
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(total, 60_000);
    let (_, third, _) = p.binary(&[
        "backfill",
        "--since",
        "1d",
        "--kind",
        "transaction.purchase",
    ]);
    assert!(
        third.contains("spooled 0 new, 60000 already spooled"),
        "{third}"
    );
}
