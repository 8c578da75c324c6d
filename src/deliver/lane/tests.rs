//! Lane tests with a fake destination over a real spool: bisection, skips,
//! holds, the auth pause, window-bounded retries, throttling that costs no
//! attempt, the batched lane's age limit, and an outcome the ledger could
//! not record that is never sent again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::config::DeliveryConfig;
use crate::event::{EventId, Kind, Money};
use crate::lsn::Lsn;
use crate::spool::{LedgerTarget, Spool};

/// Rejects any batch holding the poison event, else answers `answer`.
struct Fake {
    poison: &'static str,
    answer: Mutex<Attempt>,
    batches: Mutex<Vec<usize>>,
    delivery: DeliveryConfig,
    window: Duration,
    /// How long each answer takes.
    delay: Duration,
    /// Requests open now, and the most ever open at once.
    open: AtomicUsize,
    max_open: AtomicUsize,
    /// Event IDs in the order they were sent.
    sent: Mutex<Vec<String>>,
}

impl Destination for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn delivery(&self) -> &DeliveryConfig {
        &self.delivery
    }
    fn window(&self, _event: &BusinessEvent) -> Duration {
        self.window
    }
    fn skip_reason(&self, event: &BusinessEvent, _now_s: i64) -> Option<String> {
        (event.event_id.as_str() == "purchase-policy")
            .then(|| "not for this destination".to_owned())
    }
    fn delivered_note(&self, event: &BusinessEvent) -> Option<&'static str> {
        event
            .event_id
            .as_str()
            .contains("limited")
            .then_some("sent limited (test)")
    }
    fn hold_until_ms(&self, event: &BusinessEvent) -> Option<i64> {
        (event.event_id.as_str() == "purchase-held").then(|| Ledger::now_ms() + 3_600_000)
    }
    async fn send(&self, events: &[&BusinessEvent]) -> Attempt {
        self.batches.lock().unwrap().push(events.len());
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_open.fetch_max(open, Ordering::SeqCst);
        self.sent
            .lock()
            .unwrap()
            .extend(events.iter().map(|e| e.event_id.as_str().to_owned()));
        tokio::time::sleep(self.delay).await;
        self.open.fetch_sub(1, Ordering::SeqCst);
        if events.iter().any(|e| e.event_id.as_str() == self.poison) {
            Attempt::Rejected {
                reason: "meta error 100/2804016: not hashed".into(),
            }
        } else {
            self.answer.lock().unwrap().clone()
        }
    }
}

fn delivery(max_batch: usize) -> DeliveryConfig {
    DeliveryConfig {
        requests_per_second: NonZeroU32::new(1000).unwrap(),
        max_batch_events: max_batch,
        timeout: Duration::from_secs(1),
        batch_max_age: Duration::from_secs(300),
        lanes: BTreeMap::new(),
        retry_initial: Duration::from_secs(10),
        retry_max: Duration::from_secs(300),
        max_retry_age: None,
        auth_retry: Duration::from_millis(1),
    }
}

fn event(id: &str, kind: &str, age_s: i64) -> BusinessEvent {
    BusinessEvent {
        event_id: EventId::new(id).unwrap(),
        kind: Kind::new(kind).unwrap(),
        rule: "r".into(),
        lane: Kind::new(kind)
            .unwrap()
            .canonical()
            .map_or(LaneKind::Batched, |c| c.lane),
        event_time_s: Ledger::now_ms() / 1000 - age_s,
        commit_lsn: Lsn(1),
        // Committed just now: a lane that keeps up (see `committed_long_ago`).
        commit_time_us: Ledger::now_ms() * 1000,
        value: Some(Money::new("1.00", "USD").unwrap()),
        order_id: None,
        items: Vec::new(),
        user: Default::default(),
        consent: Default::default(),
        click_ids: Default::default(),
        session: Default::default(),
    }
}

struct Setup {
    lane: Lane<Fake>,
    spool: Spool,
    _dir: tempfile::TempDir,
}

fn setup(answer: Attempt, lane: LaneKind, max_batch: usize, events: &[BusinessEvent]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("s.sqlite3")).unwrap();
    spool_more(&spool, events, 10);
    let lane = Lane {
        dest: Arc::new(Fake {
            poison: "purchase-5",
            answer: Mutex::new(answer),
            batches: Mutex::new(Vec::new()),
            delivery: delivery(max_batch),
            window: Duration::from_secs(7 * 86_400),
            delay: Duration::ZERO,
            open: AtomicUsize::new(0),
            max_open: AtomicUsize::new(0),
            sent: Mutex::default(),
        }),
        lane,
        ledger: LedgerThread::start(spool.ledger().unwrap(), "test-ledger".into()).unwrap(),
        limiter: Arc::new(Limiter::new(NonZeroU32::new(1000).unwrap())),
        metrics: Arc::new(Metrics::default()),
        unrecorded: Mutex::default(),
        in_flight: Mutex::default(),
        last_send: Mutex::default(),
        behind: Default::default(),
    };
    Setup {
        lane,
        spool,
        _dir: dir,
    }
}

fn purchases(ids: &[&str]) -> Vec<BusinessEvent> {
    ids.iter()
        .map(|id| event(id, "transaction.purchase", 60))
        .collect()
}

async fn drain(lane: &Lane<Fake>) -> Next {
    loop {
        match lane.drain_once().await.unwrap() {
            Next::More => continue,
            other => return other,
        }
    }
}

#[test]
fn backoff_doubles_caps_and_jitters_within_a_quarter() {
    let (i, m) = (Duration::from_secs(1), Duration::from_secs(300));
    assert_eq!(backoff(i, m, 0), Duration::from_secs(1));
    assert_eq!(backoff(i, m, 3), Duration::from_secs(8));
    assert_eq!(backoff(i, m, 30), m);
    for seed in 0..100 {
        let j = jitter(Duration::from_secs(8), seed);
        assert!(
            j >= Duration::from_secs(6) && j <= Duration::from_secs(10),
            "{j:?}"
        );
    }
    assert_ne!(
        jitter(Duration::from_secs(8), 1),
        jitter(Duration::from_secs(8), 2)
    );
}

#[tokio::test]
async fn a_rejected_batch_is_bisected_to_the_bad_event() {
    let ids: Vec<String> = (1..=8).map(|i| format!("purchase-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let s = setup(
        Attempt::DELIVERED,
        LaneKind::RealTime,
        100,
        &purchases(&ids),
    );
    assert_eq!(drain(&s.lane).await, Next::Wait);
    let counts = s.spool.ledger().unwrap().counts("fake").unwrap();
    assert_eq!((counts.delivered, counts.dead, counts.pending), (7, 1, 0));
    let dead = s.spool.ledger().unwrap().outcomes("fake", 10).unwrap();
    assert_eq!(dead[0].event_id, "purchase-5");
    assert!(dead[0].reason.as_deref().unwrap().contains("2804016"));
    // 8 → 4 ok + 4 rejected → 2 rejected + 2 ok → 1 dead + 1 ok.
    assert_eq!(
        *s.lane.dest.batches.lock().unwrap(),
        vec![8, 4, 4, 2, 1, 1, 2]
    );
}

#[tokio::test]
async fn stale_and_policy_events_are_skipped_and_held_ones_wait_before_batching() {
    let mut events = purchases(&["purchase-1", "purchase-policy", "purchase-held"]);
    events.push(event("purchase-old", "transaction.purchase", 8 * 86_400));
    let s = setup(Attempt::DELIVERED, LaneKind::RealTime, 100, &events);
    drain(&s.lane).await;
    let counts = s.spool.ledger().unwrap().counts("fake").unwrap();
    assert_eq!(
        (counts.delivered, counts.skipped, counts.pending),
        (1, 2, 1)
    );
    assert_eq!(*s.lane.dest.batches.lock().unwrap(), vec![1]);
    let outcomes = s.spool.ledger().unwrap().outcomes("fake", 10).unwrap();
    let reasons: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| o.reason.as_deref())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("outside fake's window")),
        "{reasons:?}"
    );
    assert!(reasons.contains(&"not for this destination"), "{reasons:?}");
    // The held one is pending, not due for an hour, with no attempt spent.
    let ledger = s.spool.ledger().unwrap();
    assert!(ledger
        .pending("fake", LaneKind::RealTime, Ledger::now_ms(), 10)
        .unwrap()
        .is_empty());
    let later = ledger
        .pending("fake", LaneKind::RealTime, Ledger::now_ms() + 3_700_000, 10)
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].attempts, 0);
}

#[tokio::test]
async fn an_auth_failure_pauses_without_dead_lettering_and_raises_the_alarm() {
    let paused = Attempt::Paused {
        reason: "meta error 190: token expired".into(),
    };
    let s = setup(
        paused,
        LaneKind::RealTime,
        100,
        &purchases(&["purchase-1", "purchase-2"]),
    );
    assert_eq!(drain(&s.lane).await, Next::Pause);
    assert_eq!(s.lane.metrics.delivery.paused(), vec!["fake".to_owned()]);
    let ledger = s.spool.ledger().unwrap();
    let counts = ledger.counts("fake").unwrap();
    assert_eq!((counts.pending, counts.dead), (2, 0));
    // No attempt counted and still due now: fixed credentials send at once.
    let due = ledger
        .pending("fake", LaneKind::RealTime, Ledger::now_ms(), 10)
        .unwrap();
    assert_eq!(due.len(), 2);
    assert!(due.iter().all(|p| p.attempts == 0));
    *s.lane.dest.answer.lock().unwrap() = Attempt::DELIVERED;
    drain(&s.lane).await;
    assert!(
        s.lane.metrics.delivery.paused().is_empty(),
        "the alarm clears once it works"
    );
    assert_eq!(ledger.counts("fake").unwrap().delivered, 2);
}

#[tokio::test]
async fn transient_failures_retry_inside_the_window_and_dead_letter_outside_it() {
    let flaky = Attempt::Transient {
        reason: "HTTP 503".into(),
    };
    // One event with days of window left, one whose window (less the 5 min
    // margin) ends in 5 s: sendable now, but its first backoff (10 s ± 25 %)
    // would land outside it.
    let mut events = purchases(&["purchase-1"]);
    events.push(event(
        "purchase-2",
        "transaction.purchase",
        7 * 86_400 - 300 - 5,
    ));
    let s = setup(flaky, LaneKind::RealTime, 100, &events);
    assert_eq!(drain(&s.lane).await, Next::Wait);
    let ledger = s.spool.ledger().unwrap();
    let counts = ledger.counts("fake").unwrap();
    assert_eq!((counts.pending, counts.dead), (1, 1));
    let dead = ledger.outcomes("fake", 10).unwrap();
    assert!(
        dead[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("outside fake's window")
            && dead[0].reason.as_deref().unwrap().contains("HTTP 503")
    );
    assert!(
        ledger
            .pending("fake", LaneKind::RealTime, Ledger::now_ms(), 10)
            .unwrap()
            .is_empty(),
        "backed off"
    );
    // Many attempts later, still retried: the window decides, not a count.
    for _ in 0..20 {
        let later = ledger
            .pending(
                "fake",
                LaneKind::RealTime,
                Ledger::now_ms() + 86_400_000,
                10,
            )
            .unwrap();
        assert_eq!(later.len(), 1);
        ledger_retry_now(&s.spool);
        drain(&s.lane).await;
    }
    let counts = ledger.counts("fake").unwrap();
    assert_eq!(
        (counts.pending, counts.dead),
        (1, 1),
        "21 attempts and still pending"
    );
}

/// Makes every pending row due now (a test's stand-in for waiting).
fn ledger_retry_now(spool: &Spool) {
    let conn = rusqlite::Connection::open(spool.path()).unwrap();
    conn.execute(
        "UPDATE deliveries SET not_before_ms = 0 WHERE state = 'pending'",
        [],
    )
    .unwrap();
}

#[tokio::test]
async fn throttling_waits_without_using_up_attempts() {
    let throttled = Attempt::RetryAfter {
        delay: Duration::from_secs(30),
        reason: "429 RESOURCE_EXHAUSTED".into(),
    };
    let s = setup(
        throttled,
        LaneKind::RealTime,
        100,
        &purchases(&["purchase-1"]),
    );
    for _ in 0..5 {
        assert_eq!(drain(&s.lane).await, Next::Wait);
        ledger_retry_now(&s.spool);
    }
    let due = s
        .spool
        .ledger()
        .unwrap()
        .pending("fake", LaneKind::RealTime, Ledger::now_ms(), 10)
        .unwrap();
    assert_eq!(due[0].attempts, 0);
}

#[tokio::test]
async fn the_batched_lane_waits_for_a_full_batch_or_its_age_limit() {
    let views: Vec<BusinessEvent> = (1..=3)
        .map(|i| event(&format!("view-{i}"), "product.viewed", 5))
        .collect();
    let s = setup(Attempt::DELIVERED, LaneKind::Batched, 10, &views);
    match drain(&s.lane).await {
        Next::Until(at) => assert!(
            at > Ledger::now_ms() + 290_000,
            "waits for the 300 s age limit"
        ),
        other => panic!("{other:?}"),
    }
    assert!(s.lane.dest.batches.lock().unwrap().is_empty());
    // The real-time lane does not see batched events.
    let rt = setup(Attempt::DELIVERED, LaneKind::RealTime, 10, &views);
    assert_eq!(drain(&rt.lane).await, Next::Wait);
    assert!(rt.lane.dest.batches.lock().unwrap().is_empty());
    // Old enough: sent in one request.
    let conn = rusqlite::Connection::open(s.spool.path()).unwrap();
    conn.execute(
        "UPDATE events SET spooled_at_ms = spooled_at_ms - 301000",
        [],
    )
    .unwrap();
    assert_eq!(drain(&s.lane).await, Next::Wait);
    assert_eq!(*s.lane.dest.batches.lock().unwrap(), vec![3]);
    // A full batch goes without waiting.
    let full: Vec<BusinessEvent> = (1..=3)
        .map(|i| event(&format!("view-{i}"), "product.viewed", 5))
        .collect();
    let f = setup(Attempt::DELIVERED, LaneKind::Batched, 3, &full);
    assert_eq!(drain(&f.lane).await, Next::Wait);
    assert_eq!(*f.lane.dest.batches.lock().unwrap(), vec![3]);
}

#[tokio::test]
async fn an_outcome_the_ledger_cannot_record_is_kept_and_never_resent() {
    let s = setup(
        Attempt::DELIVERED,
        LaneKind::RealTime,
        100,
        &purchases(&["purchase-1", "purchase-2"]),
    );
    let conn = rusqlite::Connection::open(s.spool.path()).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER no_delivered BEFORE INSERT ON deliveries WHEN NEW.state = 'delivered'
         BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END;
         CREATE TRIGGER no_delivered_update BEFORE UPDATE ON deliveries WHEN NEW.state = 'delivered'
         BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END;",
    )
    .unwrap();
    for _ in 0..5 {
        assert!(s.lane.drain_once().await.is_err(), "the ledger write fails");
    }
    assert_eq!(
        *s.lane.dest.batches.lock().unwrap(),
        vec![2],
        "sent once, not once per retry"
    );
    conn.execute_batch("DROP TRIGGER no_delivered; DROP TRIGGER no_delivered_update")
        .unwrap();
    assert_eq!(drain(&s.lane).await, Next::Wait);
    assert_eq!(
        s.spool.ledger().unwrap().counts("fake").unwrap().delivered,
        2
    );
    assert_eq!(*s.lane.dest.batches.lock().unwrap(), vec![2]);
}

/// A batched lane that is still filling counts its batch instead of reading
/// it: the summary says what the full read would, without the payloads.
#[tokio::test]
async fn the_batched_lane_counts_a_filling_batch_without_reading_it() {
    let views: Vec<BusinessEvent> = (1..=4)
        .map(|i| event(&format!("view-{i}"), "product.viewed", 5))
        .collect();
    let s = setup(Attempt::DELIVERED, LaneKind::Batched, 3, &views);
    let ledger = s.spool.ledger().unwrap();
    let now = Ledger::now_ms();
    let read = ledger.pending("fake", LaneKind::Batched, now, 10).unwrap();
    let (n, oldest) = ledger
        .pending_summary("fake", LaneKind::Batched, now, 10)
        .unwrap();
    assert_eq!(n, read.len());
    assert_eq!(oldest, read.iter().map(|p| p.spooled_at_ms).min());
    // Counting stops at the limit, and the other lane's rows are not counted.
    assert_eq!(
        ledger
            .pending_summary("fake", LaneKind::Batched, now, 3)
            .unwrap()
            .0,
        3
    );
    assert_eq!(
        ledger
            .pending_summary("fake", LaneKind::RealTime, now, 10)
            .unwrap(),
        (0, None)
    );
    // Four due with batches of three: one full batch goes at once, the
    // fourth waits for its age limit.
    assert!(matches!(drain(&s.lane).await, Next::Until(_)));
    assert_eq!(*s.lane.dest.batches.lock().unwrap(), vec![3]);
}

/// Runs a lane's pipeline until it has nothing more to do at once.
async fn pipeline(lane: &Arc<Lane<Fake>>) -> Next {
    let mut flights = Flights::new();
    loop {
        match lane.pipeline(&mut flights).await.unwrap() {
            Next::More => continue,
            other => {
                assert!(flights.is_empty(), "every request landed");
                return other;
            }
        }
    }
}

fn slow_lane(answer: Attempt, n: usize) -> (Arc<Lane<Fake>>, Spool, tempfile::TempDir) {
    let ids: Vec<String> = (1..=n).map(|i| format!("purchase-ok-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut s = setup(answer, LaneKind::RealTime, 1, &purchases(&ids));
    Arc::get_mut(&mut s.lane.dest).unwrap().delay = Duration::from_millis(20);
    (Arc::new(s.lane), s.spool, s._dir)
}

#[tokio::test]
async fn requests_overlap_and_no_event_is_in_two() {
    let (lane, spool, _dir) = slow_lane(Attempt::DELIVERED, 7);
    assert_eq!(pipeline(&lane).await, Next::Wait);
    // Two requests were open at once, never more, and each event went once.
    assert_eq!(lane.dest.max_open.load(Ordering::SeqCst), IN_FLIGHT);
    let mut sent = lane.dest.sent.lock().unwrap().clone();
    sent.sort();
    let want: Vec<String> = (1..=7).map(|i| format!("purchase-ok-{i}")).collect();
    assert_eq!(sent, want);
    let counts = spool.ledger().unwrap().counts("fake").unwrap();
    assert_eq!((counts.delivered, counts.pending), (7, 0));
    assert!(lane.in_flight.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_request_stops_the_pipeline_after_those_in_flight() {
    let answer = Attempt::Transient {
        reason: "HTTP 503".into(),
    };
    let (lane, spool, _dir) = slow_lane(answer, 6);
    assert_eq!(pipeline(&lane).await, Next::Wait);
    // The two requests already open landed; no third was started.
    let sent = lane.dest.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), IN_FLIGHT, "{sent:?}");
    assert_ne!(sent[0], sent[1]);
    let ledger = spool.ledger().unwrap();
    assert_eq!(ledger.counts("fake").unwrap().pending, 6);
    // Those two wait for their retry; the other four are due now.
    let due = ledger
        .pending("fake", LaneKind::RealTime, Ledger::now_ms(), 10)
        .unwrap();
    assert_eq!(due.len(), 4);
    assert!(due
        .iter()
        .all(|p| !sent.contains(&p.event.event_id.as_str().to_owned())));
}

/// A version 3 spool (a pending row written with each event) keeps its
/// rows after the upgrade: the pending one is sent once, the delivered one
/// never again, and events spooled after the upgrade are read without rows.
#[tokio::test]
async fn a_version_3_spool_delivers_its_pending_rows_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.sqlite3");
    {
        let spool = Spool::open(&file).unwrap();
        let mut writer = spool.writer().unwrap();
        let events = purchases(&["purchase-1", "purchase-2"]);
        for e in &events {
            writer.insert_event(e).unwrap();
        }
        writer.commit(Lsn(10)).unwrap();
        // What version 3 had: no routes, a ledger row per event at once,
        // and (until version 5) payloads as JSON text.
        let conn = rusqlite::Connection::open(&file).unwrap();
        for e in &events {
            conn.execute(
                "UPDATE events SET payload = ?1 WHERE event_id = ?2",
                [serde_json::to_string(e).unwrap(), e.event_id.to_string()],
            )
            .unwrap();
        }
        conn.execute_batch(
            "ALTER TABLE events DROP COLUMN routes;
             INSERT INTO deliveries (destination, seq, state, lane, updated_at_ms)
                 VALUES ('fake', 1, 'pending', 'real_time', 1), ('fake', 2, 'delivered', 'real_time', 1);
             UPDATE meta SET value = '3' WHERE key = 'schema_version';",
        )
        .unwrap();
    }
    let spool = Spool::open(&file).unwrap();
    assert_eq!(
        spool.meta_value("schema_version").unwrap().as_deref(),
        Some("5")
    );
    assert_eq!(
        spool.meta_value("rowless_from_seq").unwrap().as_deref(),
        Some("2")
    );
    let mut writer = spool.writer().unwrap();
    writer
        .set_destinations(vec![LedgerTarget {
            name: "fake",
            lanes: BTreeMap::new(),
        }])
        .unwrap();
    writer.insert_event(&purchases(&["purchase-3"])[0]).unwrap();
    writer.commit(Lsn(20)).unwrap();
    let ledger = spool.delivery_ledger().unwrap();
    let due: Vec<i64> = ledger
        .pending("fake", LaneKind::RealTime, Ledger::now_ms(), 10)
        .unwrap()
        .iter()
        .map(|p| p.seq)
        .collect();
    assert_eq!(due, vec![1, 3], "the old pending row and the new event");
    let counts = spool.ledger().unwrap().counts("fake").unwrap();
    assert_eq!((counts.pending, counts.delivered), (2, 1), "{counts:?}");
}

fn ledger_rows(spool: &Spool) -> i64 {
    rusqlite::Connection::open(spool.path())
        .unwrap()
        .query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))
        .unwrap()
}

fn stored_cursor(spool: &Spool, lane: LaneKind) -> Option<i64> {
    rusqlite::Connection::open(spool.path())
        .unwrap()
        .query_row(
            "SELECT seq FROM lane_cursors WHERE destination = 'fake' AND lane = ?1",
            [lane.as_str()],
            |r| r.get(0),
        )
        .ok()
}

/// Spooling writes no ledger row: the lane writes each event's row with its
/// outcome. A lane that read events and died before recording them loses
/// nothing; a lane started after they were delivered reads none again.
#[tokio::test]
async fn the_lane_writes_each_events_row_with_its_outcome() {
    let s = setup(
        Attempt::DELIVERED,
        LaneKind::RealTime,
        2,
        &purchases(&["purchase-1", "purchase-2", "purchase-3"]),
    );
    assert_eq!(ledger_rows(&s.spool), 0, "spooled without ledger rows");
    assert_eq!(s.spool.ledger().unwrap().counts("fake").unwrap().pending, 3);
    let now = Ledger::now_ms();
    let crashed = s.spool.delivery_ledger().unwrap();
    assert_eq!(
        crashed
            .pending("fake", LaneKind::RealTime, now, 10)
            .unwrap()
            .len(),
        3
    );
    drop(crashed);
    assert_eq!(drain(&s.lane).await, Next::Wait);
    assert_eq!(*s.lane.dest.batches.lock().unwrap(), vec![2, 1]);
    assert_eq!(ledger_rows(&s.spool), 3, "one row per event");
    let counts = s.spool.ledger().unwrap().counts("fake").unwrap();
    assert_eq!((counts.pending, counts.delivered), (0, 3));
    // Recording stored the cursor as far as the last read had found rows.
    assert_eq!(stored_cursor(&s.spool, LaneKind::RealTime), Some(2));
    s.lane
        .with_ledger(|l| l.save_moved_cursors())
        .await
        .unwrap();
    assert_eq!(stored_cursor(&s.spool, LaneKind::RealTime), Some(3));
    let restarted = s.spool.delivery_ledger().unwrap();
    assert!(restarted
        .pending("fake", LaneKind::RealTime, Ledger::now_ms(), 10)
        .unwrap()
        .is_empty());
}

/// A request's outcome is one write transaction even when its events carry
/// different notes (Meta's "sent limited" ones), and each row keeps its own
/// note. Before, every noted event was a commit (and an fsync) of its own.
#[tokio::test]
async fn one_request_is_one_ledger_commit_whatever_its_notes() {
    let s = setup(
        Attempt::Delivered {
            receipt: Some("fbtrace_id test".into()),
        },
        LaneKind::RealTime,
        100,
        &purchases(&[
            "purchase-1",
            "purchase-limited-2",
            "purchase-3",
            "purchase-limited-4",
        ]),
    );
    assert_eq!(drain(&s.lane).await, Next::Wait);
    assert_eq!(*s.lane.dest.batches.lock().unwrap(), vec![4]);
    assert_eq!(
        s.lane.metrics.ledger_commits.load(Ordering::Relaxed),
        1,
        "one commit for the request"
    );
    let conn = rusqlite::Connection::open(s.spool.path()).unwrap();
    let rows: Vec<(String, String, Option<String>)> = conn
        .prepare("SELECT e.event_id, d.state, d.reason FROM deliveries d JOIN events e USING (seq) ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let receipt = Some("fbtrace_id test".to_owned());
    let limited = Some("sent limited (test); fbtrace_id test".to_owned());
    let want = vec![
        (
            "purchase-1".to_owned(),
            "delivered".to_owned(),
            receipt.clone(),
        ),
        (
            "purchase-limited-2".to_owned(),
            "delivered".to_owned(),
            limited.clone(),
        ),
        ("purchase-3".to_owned(), "delivered".to_owned(), receipt),
        (
            "purchase-limited-4".to_owned(),
            "delivered".to_owned(),
            limited,
        ),
    ];
    assert_eq!(rows, want);
}

/// Spools `events` (routed to the fake destination's lanes) and commits
/// the checkpoint `lsn`.
fn spool_more(spool: &Spool, events: &[BusinessEvent], lsn: u64) {
    let mut writer = spool.writer().unwrap();
    writer
        .set_destinations(vec![LedgerTarget {
            name: "fake",
            lanes: BTreeMap::new(),
        }])
        .unwrap();
    for e in events {
        writer.insert_event(e).unwrap();
    }
    writer.commit(Lsn(lsn)).unwrap();
}

/// `events` as if committed long ago: read by a lane behind a backlog.
fn committed_long_ago(mut events: Vec<BusinessEvent>) -> Vec<BusinessEvent> {
    for e in &mut events {
        e.commit_time_us = 1_000_000;
    }
    events
}

/// Behind a backlog (events committed long ago) the real-time lane sends a
/// partial batch at most every BEHIND_PACE, and a full one at once.
#[tokio::test]
async fn a_real_time_lane_behind_a_backlog_paces_its_partial_batches() {
    let s = setup(
        Attempt::DELIVERED,
        LaneKind::RealTime,
        3,
        &committed_long_ago(purchases(&["purchase-1", "purchase-2"])),
    );
    assert_eq!(s.lane.drain_once().await.unwrap(), Next::More);
    spool_more(
        &s.spool,
        &committed_long_ago(purchases(&["purchase-3"])),
        11,
    );
    let paced = s.lane.drain_once().await.unwrap();
    assert!(matches!(paced, Next::Until(_)), "{paced:?}");
    assert_eq!(*s.lane.dest.batches.lock().unwrap(), vec![2], "held back");
    // A full batch is not held back.
    spool_more(
        &s.spool,
        &committed_long_ago(purchases(&["purchase-4", "purchase-6"])),
        12,
    );
    assert_eq!(s.lane.drain_once().await.unwrap(), Next::More);
    assert_eq!(*s.lane.dest.batches.lock().unwrap(), vec![2, 3]);
    // Past the pace, the partial batch goes.
    spool_more(
        &s.spool,
        &committed_long_ago(purchases(&["purchase-7"])),
        13,
    );
    assert!(matches!(s.lane.drain_once().await.unwrap(), Next::Until(_)));
    tokio::time::sleep(BEHIND_PACE).await;
    assert_eq!(s.lane.drain_once().await.unwrap(), Next::More);
    assert_eq!(*s.lane.dest.batches.lock().unwrap(), vec![2, 3, 1]);
}

/// Fresh events (live traffic) are sent as soon as they are due.
#[tokio::test]
async fn a_real_time_lane_that_keeps_up_is_not_paced() {
    let s = setup(
        Attempt::DELIVERED,
        LaneKind::RealTime,
        3,
        &purchases(&["purchase-1", "purchase-2"]),
    );
    assert_eq!(s.lane.drain_once().await.unwrap(), Next::More);
    spool_more(&s.spool, &purchases(&["purchase-3"]), 11);
    assert_eq!(s.lane.drain_once().await.unwrap(), Next::More);
    assert_eq!(*s.lane.dest.batches.lock().unwrap(), vec![2, 1]);
}

/// A lane none of whose kinds are spooled (purchases go real-time) reads
/// but never records: its cursor still moves to the end and is stored, so
/// its reads, `status` and a restart do not walk the whole spool.
#[tokio::test]
async fn a_lane_with_nothing_routed_to_it_moves_its_cursor_to_the_end() {
    let s = setup(
        Attempt::DELIVERED,
        LaneKind::Batched,
        10,
        &purchases(&["purchase-1", "purchase-2"]),
    );
    assert_eq!(drain(&s.lane).await, Next::Wait);
    assert!(s.lane.dest.batches.lock().unwrap().is_empty());
    assert_eq!(stored_cursor(&s.spool, LaneKind::Batched), None);
    s.lane
        .with_ledger(|l| l.save_moved_cursors())
        .await
        .unwrap();
    assert_eq!(stored_cursor(&s.spool, LaneKind::Batched), Some(2));
    assert_eq!(ledger_rows(&s.spool), 0);
}

/// The lane an event goes to is fixed when it is spooled: changing a
/// destination's `lanes` later moves only events spooled after the change.
#[tokio::test]
async fn an_event_keeps_the_lane_it_was_spooled_for() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("s.sqlite3")).unwrap();
    for (id, lanes) in [
        (
            "purchase-1",
            BTreeMap::from([("transaction.purchase".to_owned(), LaneKind::Batched)]),
        ),
        ("purchase-2", BTreeMap::new()),
    ] {
        let mut writer = spool.writer().unwrap();
        writer
            .set_destinations(vec![LedgerTarget {
                name: "fake",
                lanes,
            }])
            .unwrap();
        writer.insert_event(&purchases(&[id])[0]).unwrap();
        writer.commit(Lsn(10)).unwrap();
    }
    let ledger = spool.delivery_ledger().unwrap();
    let ids = |lane| -> Vec<String> {
        ledger
            .pending("fake", lane, Ledger::now_ms(), 10)
            .unwrap()
            .iter()
            .map(|p| p.event.event_id.as_str().to_owned())
            .collect()
    };
    assert_eq!(ids(LaneKind::Batched), vec!["purchase-1"]);
    assert_eq!(ids(LaneKind::RealTime), vec!["purchase-2"]);
}

/// Pruning never takes an event no lane has recorded yet.
#[tokio::test]
async fn pruning_keeps_events_without_rows() {
    let s = setup(
        Attempt::DELIVERED,
        LaneKind::RealTime,
        10,
        &purchases(&["purchase-1", "purchase-2"]),
    );
    let mut ledger = s.spool.ledger().unwrap();
    assert_eq!(ledger.prune_events(i64::MAX, 100).unwrap(), 0);
    assert_eq!(drain(&s.lane).await, Next::Wait);
    assert_eq!(ledger.prune_events(i64::MAX, 100).unwrap(), 2);
}

/// Replaying an event no lane has read yet gives it a pending row: it is
/// read once (as that row), not twice.
#[tokio::test]
async fn a_replayed_event_without_a_row_is_sent_once() {
    let s = setup(
        Attempt::DELIVERED,
        LaneKind::RealTime,
        10,
        &purchases(&["purchase-1", "purchase-2"]),
    );
    s.spool
        .ledger()
        .unwrap()
        .replay("fake", &[(1, LaneKind::RealTime)])
        .unwrap();
    assert_eq!(drain(&s.lane).await, Next::Wait);
    assert_eq!(
        *s.lane.dest.sent.lock().unwrap(),
        vec!["purchase-1", "purchase-2"]
    );
}

/// A stored payload that does not parse stops the read with an error that
/// names the event; nothing is recorded for it or skipped past it.
#[tokio::test]
async fn an_unreadable_payload_is_named_and_not_skipped() {
    let s = setup(
        Attempt::DELIVERED,
        LaneKind::RealTime,
        10,
        &purchases(&["purchase-1", "purchase-2"]),
    );
    rusqlite::Connection::open(s.spool.path())
        .unwrap()
        .execute(
            "UPDATE events SET payload = '{not json' WHERE event_id = 'purchase-2'",
            [],
        )
        .unwrap();
    let err = s
        .spool
        .ledger()
        .unwrap()
        .pending("fake", LaneKind::RealTime, Ledger::now_ms(), 10)
        .unwrap_err();
    assert!(err.to_string().contains("event purchase-2"), "{err}");
    assert!(s.lane.drain_once().await.is_err());
    assert!(s.lane.dest.sent.lock().unwrap().is_empty());
    assert_eq!(ledger_rows(&s.spool), 0);
}
