//! Replay by LSN range and spool retention, against a real PostgreSQL and
//! the sandbox: the same event ID and payload again (deduplicated by the
//! platform), window skips per platform, dry runs, refusals, and pruning
//! that keeps what retention promises while SQLite reuses the space.

mod support;

use std::time::Duration;

use capi_cdc::spool::prune::{prune_once, Retention};
use capi_cdc::spool::Spool;
use support::harness::Pipeline;

const WAIT: Duration = Duration::from_secs(60);

async fn purchased(prefix: &str) -> Pipeline {
    let p = Pipeline::new(prefix).await;
    p.sql("INSERT INTO customers (id, email, country) VALUES (1, 'replay@example.com', 'US')")
        .await;
    p.setup().await;
    p
}

fn commit_lsn(p: &Pipeline, event_id: &str) -> String {
    let events = p.spooled_events();
    events[event_id]["commit_lsn"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_range_sends_the_same_ids_and_payloads_which_the_platform_deduplicates() {
    let p = purchased("replay").await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (1, 1, 'paid', 10)")
        .await;
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (2, 1, 'paid', 20)")
        .await;
    p.wait_for_events(2, WAIT).await;
    running.stop().await;
    let first = commit_lsn(&p, "purchase-1");
    let second = commit_lsn(&p, "purchase-2");
    // Dry run: says what it would do, sends nothing.
    let (code, dry, err) = p.binary(&[
        "replay",
        "--from-lsn",
        &first,
        "--to-lsn",
        &first,
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{dry}{err}");
    assert!(
        dry.contains("would replay 1 events") && dry.contains("send 1, skip 0"),
        "{dry}"
    );
    assert_eq!(p.sandbox.meta_report().received.len(), 2);
    // Replay of the first purchase only, with no `run` holding the spool.
    let (code, out, err) = p.binary(&["replay", "--from-lsn", &first, "--to-lsn", &first]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("meta    transaction.purchase   1 delivered"),
        "{out}"
    );
    let report = p.sandbox.meta_report();
    assert_eq!(report.received.len(), 3, "sent again");
    assert_eq!(report.deduplicated.len(), 2, "the platform counts it once");
    let copies: Vec<_> = report
        .received
        .iter()
        .filter(|e| e.event_id() == Some("purchase-1"))
        .collect();
    assert_eq!(copies.len(), 2);
    let strip = |e: &capi_cdc::sandbox::meta::StoredEvent| {
        let mut v = e.event.clone();
        v.remove("received_at_ms");
        v
    };
    assert_eq!(
        strip(copies[0]),
        strip(copies[1]),
        "the same payload and event time"
    );
    // Twice: the same IDs again.
    let (code, _, _) = p.binary(&["replay", "--from-lsn", &first, "--to-lsn", &second]);
    assert_eq!(code, 0);
    let report = p.sandbox.meta_report();
    assert_eq!(report.received.len(), 5);
    assert_eq!(report.deduplicated.len(), 2);
    // Refusals: a range backwards, beyond the server.
    let (code, _, err) = p.binary(&["replay", "--from-lsn", &second, "--to-lsn", &first]);
    assert_ne!(code, 0);
    assert!(err.contains("is before --from-lsn"), "{err}");
    let (code, _, err) = p.binary(&["replay", "--from-lsn", "FF/0", "--to-lsn", "FF/10"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("beyond the server's current WAL position"),
        "{err}"
    );
    // A spool of another database is refused.
    let conn = rusqlite::Connection::open(p.spool_file()).unwrap();
    conn.execute(
        "UPDATE meta SET value = 'other_db' WHERE key = 'database'",
        [],
    )
    .unwrap();
    let (code, _, err) = p.binary(&["replay", "--from-lsn", &first]);
    assert_ne!(code, 0);
    assert!(err.contains("belongs to database other_db"), "{err}");
    // The slot and the checkpoint did not move back.
    let cp = p.spool_checkpoint().unwrap();
    assert!(cp >= second.parse().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_skips_what_a_platform_window_no_longer_accepts_and_works_while_run_streams() {
    let mut p = purchased("replay_window").await;
    let action = p
        .sandbox
        .google()
        .seed_conversion_action("Purchases", "PURCHASE");
    p.google_extra = Some(format!(
        "[destinations.google.conversion_actions]\n\"transaction.purchase\" = \"{action}\"\n"
    ));
    p.sql("INSERT INTO sessions (id, customer_id, gclid) VALUES ('w1', 1, 'Gclid-Window')")
        .await;
    let running = p.start();
    // Paid 10 days ago: outside Meta's 7 days, inside Google's 90.
    p.sql("INSERT INTO orders (id, customer_id, status, total, session_id, paid_at) VALUES (1, 1, 'paid', 10, 'w1', now() - interval '10 days')").await;
    let events = p.wait_spooled(&["purchase-1"], WAIT).await;
    let lsn = events["purchase-1"]["commit_lsn"]
        .as_str()
        .unwrap()
        .to_owned();
    let google_count = || {
        p.sandbox
            .google()
            .report()
            .accepted
            .get(&action)
            .map_or(0, Vec::len)
    };
    let deadline = std::time::Instant::now() + WAIT;
    while google_count() == 0 {
        assert!(std::time::Instant::now() < deadline, "google never got it");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // `run` keeps streaming while replay marks the range again.
    let (code, out, err) = p.binary(&["replay", "--from-lsn", &lsn, "--to-lsn", &lsn]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("meta    transaction.purchase   replaying: send 0, skip 1"),
        "{out}"
    );
    assert!(
        out.contains("google  transaction.purchase   replaying: send 1, skip 0"),
        "{out}"
    );
    assert!(out.contains("capi-cdc run holds this spool"), "{out}");
    let deadline = std::time::Instant::now() + WAIT;
    let report = loop {
        let r = p.sandbox.google().report();
        if r.deduplicated >= 1 {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replay never reached google"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    running.stop().await;
    assert_eq!(
        report.accepted[&action].len(),
        1,
        "stored once; the copy was deduplicated"
    );
    assert!(
        p.sandbox.meta_report().received.is_empty(),
        "never sent to Meta"
    );
    let ledger = Spool::open(&p.spool_file()).unwrap().ledger().unwrap();
    let meta = ledger.counts("meta").unwrap();
    assert_eq!((meta.skipped, meta.delivered), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_what_retention_promises_drops_the_rest_and_reuses_the_space() {
    let p = purchased("prune").await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total, note) SELECT g, 1, 'paid', 1, repeat('x', 200) FROM generate_series(1, 3000) g").await;
    p.wait_for_events(3000, WAIT).await;
    running.stop().await;
    let spool = Spool::open(&p.spool_file()).unwrap();
    let size = || std::fs::metadata(p.spool_file()).unwrap().len();
    let keep_all = Retention {
        events: Duration::from_secs(7 * 86_400),
        lookups: vec![("customers".into(), Duration::from_secs(86_400))],
        every: Duration::from_secs(60),
    };
    let kept = prune_once(&spool, &keep_all).unwrap();
    assert_eq!(kept.events, 0, "nothing is older than 7 days");
    assert_eq!(
        kept.lookup_rows, 0,
        "the customer changed less than a day before the newest change"
    );
    assert_eq!(spool.ledger().unwrap().event_count().unwrap(), 3000);
    // Age half of them past the retention; one of those still pending.
    let conn = rusqlite::Connection::open(p.spool_file()).unwrap();
    conn.execute("UPDATE events SET spooled_at_ms = spooled_at_ms - 8 * 86400000 WHERE seq <= (SELECT MIN(seq) + 1499 FROM events)", []).unwrap();
    conn.execute(
        "UPDATE deliveries SET state = 'pending' WHERE seq = (SELECT MIN(seq) FROM events)",
        [],
    )
    .unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let before = size();
    let pruned = prune_once(&spool, &keep_all).unwrap();
    assert_eq!(
        pruned.events, 1499,
        "1,500 past retention, one still pending"
    );
    assert_eq!(spool.ledger().unwrap().event_count().unwrap(), 1501);
    // New events take the freed pages: the file does not grow.
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total, note) SELECT g, 1, 'paid', 1, repeat('x', 200) FROM generate_series(3001, 4400) g").await;
    p.wait_spooled(&["purchase-4400"], WAIT).await;
    running.stop().await;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let after = size();
    assert!(
        after <= before + before / 10,
        "the spool grew from {before} to {after} bytes though the pruned space was free"
    );
}
