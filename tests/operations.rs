//! What a DBA runs: `setup` (idempotent, `--print-sql`), `check` (fails
//! clearly), `tail` (never moves the connector's slot), and the start-position
//! check (a slot ahead of the spool is refused).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use capi_cdc::run::{RunError, RunOptions};
use capi_cdc::source::preflight::{self, Level};
use capi_cdc::source::slot::StartError;
use support::harness::Pipeline;
use support::pg::start_cluster;

async fn count(p: &Pipeline, sql: &str) -> i64 {
    p.db.client()
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_prints_sql_for_review_then_is_idempotent() {
    let p = Pipeline::new("setup").await;
    let printed = capi_cdc::source::setup::setup(&p.config(), true)
        .await
        .unwrap()
        .lines
        .join("\n");
    assert!(
        printed.contains(&format!(
            "CREATE PUBLICATION \"{}\" FOR TABLE public.cart_items, public.checkout_payments, public.checkouts, public.consents, public.customers, public.leads, public.order_items, public.orders, public.product_views, public.sessions WITH",
            p.publication
        )),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "pg_create_logical_replication_slot('{}', 'pgoutput')",
            p.slot
        )),
        "{printed}"
    );
    // --print-sql changed nothing.
    assert_eq!(
        count(
            &p,
            "SELECT count(*) FROM pg_publication WHERE pubname LIKE 'p_setup%'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &p,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 's_setup%'"
        )
        .await,
        0
    );

    let first = p.setup().await.join("\n");
    assert!(first.contains("ran: CREATE PUBLICATION"), "{first}");
    assert!(first.contains("created replication slot"), "{first}");
    // The test cluster keeps WAL without limit: setup advises a cap.
    assert!(
        first.contains("WARNING: max_slot_wal_keep_size = -1"),
        "{first}"
    );
    let second = p.setup().await.join("\n");
    assert!(
        second.contains("is up to date") && second.contains("exists"),
        "{second}"
    );
    assert!(!second.contains("ran:"), "{second}");
    assert_eq!(
        count(
            &p,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 's_setup%'"
        )
        .await,
        1
    );
    let tables = count(
        &p,
        &format!(
            "SELECT count(*) FROM pg_publication_tables WHERE pubname = '{}'",
            p.publication
        ),
    )
    .await;
    assert_eq!(tables, 10);
    // A table dropped from the publication is added back.
    p.sql(&format!(
        "ALTER PUBLICATION \"{}\" DROP TABLE public.orders",
        p.publication
    ))
    .await;
    let third = p.setup().await.join("\n");
    assert!(
        third.contains("ALTER PUBLICATION") && third.contains("ADD TABLE public.orders"),
        "{third}"
    );
    let again = capi_cdc::source::setup::setup(&p.config(), true)
        .await
        .unwrap()
        .lines
        .join("\n");
    assert!(again.contains("nothing to do"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_clearly_on_a_missing_slot_and_passes_after_setup() {
    let p = Pipeline::new("check").await;
    let report = preflight::check(&p.config()).await;
    assert!(!report.can_run());
    let fail = report
        .findings
        .iter()
        .find(|f| f.level == Level::Fail && f.what.contains("replication slot"))
        .unwrap_or_else(|| panic!("no slot failure in:\n{report}"));
    assert!(fail.remedy.contains("capi-cdc setup"), "{report}");
    let (code, stdout, _) = p.binary(&["check"]);
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("does not exist"),
        "{stdout}"
    );

    p.setup().await;
    let report = preflight::check(&p.config()).await;
    assert!(report.can_run(), "{report}");
    let (code, stdout, _) = p.binary(&["check"]);
    assert_eq!(code, 0, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_setup_fail_clearly_on_wal_level_replica() {
    let cluster = start_cluster(&[("wal_level", "replica")]);
    let p = Pipeline::new_on(&cluster, "replica").await;
    let report = preflight::check(&p.config()).await;
    assert!(!report.can_run());
    let fail = report
        .findings
        .iter()
        .find(|f| f.level == Level::Fail && f.what.contains("wal_level = replica"))
        .unwrap_or_else(|| panic!("no wal_level failure in:\n{report}"));
    assert!(
        fail.remedy.contains("wal_level = logical") && fail.remedy.contains("restart"),
        "{report}"
    );
    let (code, stdout, _) = p.binary(&["check"]);
    assert_ne!(code, 0);
    assert!(stdout.contains("wal_level = replica"), "{stdout}");
    let err = capi_cdc::source::setup::setup(&p.config(), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wal_level") && err.contains("restart"),
        "{err}"
    );
    let (code, _, stderr) = p.binary(&["run"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("wal_level"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_a_missing_slot_and_a_slot_ahead_of_the_spool() {
    let p = Pipeline::new("ahead").await;
    let err = p
        .run_expecting_error(RunOptions::default(), Duration::from_secs(20))
        .await;
    assert!(
        err.to_string().contains("does not exist") && err.to_string().contains("capi-cdc setup"),
        "{err}"
    );

    p.setup().await;
    // synchronous_commit is off on the test cluster, and a slot can only be
    // advanced over flushed WAL.
    p.sql("SET synchronous_commit = on; INSERT INTO customers (id, email) VALUES (1, 'a@example.com')")
        .await;
    // Someone advances the slot past what the spool holds.
    p.sql(&format!(
        "SELECT pg_replication_slot_advance('{}', pg_current_wal_flush_lsn())",
        p.slot
    ))
    .await;
    let err = p
        .run_expecting_error(RunOptions::default(), Duration::from_secs(20))
        .await;
    match &err {
        RunError::Start(StartError::Ahead { gap_bytes, .. }) => assert!(*gap_bytes > 0),
        other => panic!("expected the slot-ahead refusal, got {other}"),
    }
    assert!(err.to_string().contains("--accept-gap"), "{err}");
    // The operator accepts the gap: it starts, and moves on from the slot.
    let running = p.start_with(RunOptions { accept_gap: true });
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (1, 1, 'paid', 5.00)")
        .await;
    p.wait_for_events(1, Duration::from_secs(30)).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_json_lines_from_a_temporary_slot() {
    let p = Pipeline::new("tail").await;
    p.setup().await;
    let before = p.confirmed_flush().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_capi-cdc"))
        .arg("--config")
        .arg(p.config_file())
        .args(["tail", "--max-changes", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for its temporary slot before writing.
    let slots = || async {
        count(&p, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'capi_cdc_tail_%' AND temporary").await
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while slots().await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "tail created no temporary slot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.sql("ALTER TABLE customers ALTER COLUMN notes SET STORAGE EXTERNAL")
        .await;
    p.sql(
        "INSERT INTO customers (id, email, notes) VALUES (7, 'x@example.com', repeat('n', 5000))",
    )
    .await;
    p.sql("UPDATE customers SET email = 'y@example.com' WHERE id = 7")
        .await;
    p.sql("INSERT INTO orders (id, customer_id, total) VALUES (1, 7, 123.45)")
        .await;
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<serde_json::Value> = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect()
    })
    .await
    .unwrap();
    assert!(child.wait().unwrap().success());
    let ops: Vec<&str> = lines.iter().map(|l| l["op"].as_str().unwrap()).collect();
    assert_eq!(ops.iter().filter(|o| **o == "begin").count(), 3, "{ops:?}");
    let update = lines.iter().find(|l| l["op"] == "update").unwrap();
    assert_eq!(update["table"], "public.customers");
    assert_eq!(
        update["new"]["notes"],
        serde_json::json!({"unchanged_toast": true}),
        "{update}"
    );
    let insert = lines.iter().rev().find(|l| l["op"] == "insert").unwrap();
    assert_eq!(
        insert["new"]["total"], "123.45",
        "numeric stays exact: {insert}"
    );
    // The connector's slot did not move; the temporary slot is gone.
    assert_eq!(p.confirmed_flush().await, before);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while slots().await != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "temporary slot left behind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stops_at_once_on_a_missing_database() {
    let p = Pipeline::new("nodb").await;
    let mut config = p.config();
    config.source.pg.dbname("no_such_database");
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        capi_cdc::run::run(config, RunOptions::default(), rx),
    )
    .await
    .expect("run kept retrying a database that does not exist");
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("no_such_database") && err.contains("source.url"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_run_cleanly_with_exit_code_zero() {
    let p = Pipeline::new("sigterm").await;
    p.setup().await;
    let log = p.dir.path().join("run.log");
    let mut child = p.spawn_binary(&["run"], &log);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while count(
        &p,
        &format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}' AND active",
            p.slot
        ),
    )
    .await
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "run never streamed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_stream_threads_keep_priority(child.id());
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run did not stop within 15 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("shutting down"));
}

/// Thread name → nice values of the running process `pid` (/proc).
fn thread_nices(pid: u32) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        // Fields after the parenthesised name: state is field 3, nice 19.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let nice = rest.split(' ').nth(16).unwrap().parse().unwrap();
        out.push((comm.trim().to_owned(), nice));
    }
    out
}

/// `run` gives the replication stream threads of its own at the process's
/// priority and lowers every other thread (delivery, admin, housekeeping)
/// by `run::DELIVERY_NICE`, so a backlog drains first.
fn assert_stream_threads_keep_priority(pid: u32) {
    let threads = thread_nices(pid);
    let base = threads
        .iter()
        .find(|(name, _)| name == "capi-cdc")
        .map(|(_, n)| *n)
        .unwrap_or_else(|| panic!("no main thread in {threads:?}"));
    let lowered = capi_cdc::run::lowered_nice(base);
    let stream: Vec<_> = threads
        .iter()
        .filter(|(n, _)| n == "capi-receive")
        .collect();
    let workers: Vec<_> = threads
        .iter()
        .filter(|(n, _)| n.starts_with("tokio-r"))
        .collect();
    // The socket task's worker and the apply loop's thread at least.
    assert!(stream.len() >= 2, "stream threads: {threads:?}");
    assert!(!workers.is_empty(), "main runtime threads: {threads:?}");
    assert!(stream.iter().all(|(_, n)| *n == base), "{threads:?}");
    assert!(workers.iter().all(|(_, n)| *n == lowered), "{threads:?}");
}

/// A slot the server invalidated (`max_slot_wal_keep_size` exceeded) stops
/// `run` and fails `check`, with the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_slot_is_refused_with_the_remedy() {
    let cluster = start_cluster(&[
        ("max_slot_wal_keep_size", "1MB"),
        ("max_wal_size", "32MB"),
        ("min_wal_size", "32MB"),
    ]);
    let p = Pipeline::new_on(&cluster, "lost").await;
    p.setup().await;
    // Write and switch past several segments while nothing reads the slot.
    for _ in 0..4 {
        p.sql("INSERT INTO customers (email) SELECT 'x' || g || '@example.com' FROM generate_series(1, 20000) g;
               SELECT pg_switch_wal();")
            .await;
    }
    p.sql("CHECKPOINT").await;
    let status: Option<String> =
        p.db.client()
            .await
            .query_one(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1",
                &[&p.slot],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(
        status.as_deref(),
        Some("lost"),
        "the server did not invalidate the slot"
    );

    let err = p
        .run_expecting_error(RunOptions::default(), Duration::from_secs(20))
        .await;
    assert!(
        matches!(err, RunError::Start(StartError::Lost { .. })),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("pg_drop_replication_slot") && text.contains("capi-cdc setup"),
        "{text}"
    );
    let report = preflight::check(&p.config()).await;
    assert!(!report.can_run());
    assert!(report.to_string().contains("is lost"), "{report}");
}
