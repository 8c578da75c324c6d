//! Logs and metrics.
//!
//! Logs are for operators (STYLE.md habit 9): key-value fields with LSNs,
//! table names, counts, status codes and destination names — never row
//! values, PII, hashes, tokens or request bodies. Every metric name lives in
//! this module, in [`Metrics::render_prometheus`].

use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Starts logging to stderr; `RUST_LOG` overrides the default `info` level.
/// Colours only on a terminal (not in `docker logs` or a journal file), and
/// never with `NO_COLOR` set.
pub fn init(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Counters and gauges shared by the stages.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Row changes decoded (published tables only).
    pub changes: AtomicU64,
    /// Source transactions spooled.
    pub transactions: AtomicU64,
    /// Source transactions skipped because the spool already had them.
    pub transactions_skipped: AtomicU64,
    /// New events stored in the spool.
    pub events_spooled: AtomicU64,
    /// Row changes that could not become events.
    pub derive_failures: AtomicU64,
    /// Fields left out of events or values clamped, with a counted reason.
    pub derive_notes: AtomicU64,
    /// The spool checkpoint (= flush LSN reported to PostgreSQL).
    pub checkpoint_lsn: AtomicU64,
    /// The furthest WAL position received from the server.
    pub received_lsn: AtomicU64,
    /// The server's current WAL position, as last read by the slot watcher.
    pub server_lsn: AtomicU64,
    /// Bytes of WAL the slot holds back (`pg_current_wal_lsn() - restart_lsn`).
    pub slot_retained_bytes: AtomicU64,
    /// `safe_wal_size` of the slot (bytes before it is at risk); `u64::MAX` = unlimited.
    pub slot_safe_wal_bytes: AtomicU64,
    /// Unix ms of the commit of the newest spooled transaction (for lag in seconds).
    pub last_commit_ms: AtomicU64,
    /// The platforms' own grades: (destination, platform event name) → score out of 10.
    pub grades: std::sync::Mutex<std::collections::BTreeMap<(String, String), f64>>,
    /// Spool file size in bytes (the watcher reads it).
    pub spool_bytes: AtomicU64,
    /// Lookup rows per lookup (the watcher counts them).
    pub lookup_rows: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Data Manager's processing status of recent requests: status → count.
    pub google_request_status: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Spool commits.
    pub spool_commits: AtomicU64,
    /// Time the apply loop waited to open batches (lanes' turns and the
    /// spool's write lock), µs.
    pub spool_lock_wait_us: AtomicU64,
    /// The part of it spent letting waiting lanes in first, µs.
    pub spool_turn_wait_us: AtomicU64,
    /// Time the apply loop spent making the spool's WAL start over, µs.
    pub wal_restart_us: AtomicU64,
    /// Times the apply loop made the spool's WAL start over.
    pub wal_restarts: AtomicU64,
    /// Write transactions of the delivery lanes (outcomes, retries, cursors).
    pub ledger_commits: AtomicU64,
    /// Replication (re)connections.
    pub connects: AtomicU64,
    /// 1 while a replication session is streaming, else 0.
    pub streaming: AtomicU64,
    /// Our own heartbeat messages seen coming back through the stream.
    pub heartbeats: AtomicU64,
    /// Delivery, by destination and by destination × kind.
    pub delivery: DeliveryMetrics,
}

/// Upper bounds (seconds) of the delivery latency histogram: real-time
/// deliveries should sit in the first buckets, batched ones near their
/// `batch_max_age_s`, and an outage shows in the tail.
pub const LATENCY_BUCKETS_S: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];

/// Counters of one destination (both lanes).
#[derive(Debug, Default)]
pub struct DestinationMetrics {
    /// HTTP attempts.
    pub requests: AtomicU64,
    /// Time spent waiting for the rate limiter, ms.
    pub rate_limit_wait_ms: AtomicU64,
    /// Answers that said "slow down" (429, quota), each a wait without an attempt.
    pub throttled: AtomicU64,
    /// 1 while the destination is paused for the operator (bad credentials).
    pub paused: AtomicU64,
    /// 1 while an operator paused it (`POST /api/destinations/{name}/pause`).
    pub operator_paused: AtomicU64,
    /// Why it is paused (the platform's answer and the remedy).
    pub paused_reason: std::sync::Mutex<Option<String>>,
    /// Sum of spool-commit-to-acceptance latency, ms.
    pub latency_ms_sum: AtomicU64,
    /// Events in that sum.
    pub latency_count: AtomicU64,
    /// Commit → acceptance latency histogram: counts per [`LATENCY_BUCKETS_S`]
    /// upper bound (the last slot is +Inf), and the sum in ms.
    pub commit_latency: [AtomicU64; LATENCY_BUCKETS_S.len() + 1],
    /// Sum of commit → acceptance latency, ms.
    pub commit_latency_ms_sum: AtomicU64,
}

/// Counters of one destination × event kind.
#[derive(Debug, Default)]
pub struct KindMetrics {
    /// Events accepted by the platform.
    pub delivered: AtomicU64,
    /// Events dead-lettered.
    pub dead: AtomicU64,
    /// Events skipped by policy.
    pub skipped: AtomicU64,
    /// Transient failures that were retried or gave up.
    pub retries: AtomicU64,
}

/// Delivery metrics, labelled by destination and kind.
#[derive(Debug, Default)]
pub struct DeliveryMetrics {
    destinations:
        std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<DestinationMetrics>>>,
    kinds:
        std::sync::Mutex<std::collections::BTreeMap<(String, String), std::sync::Arc<KindMetrics>>>,
}

impl DeliveryMetrics {
    /// Records one event's commit → acceptance latency.
    pub fn observe_latency(&self, destination: &str, ms: u64) {
        self.destination(destination, |d| {
            let s = ms as f64 / 1000.0;
            let i = LATENCY_BUCKETS_S
                .iter()
                .position(|b| s <= *b)
                .unwrap_or(LATENCY_BUCKETS_S.len());
            d.commit_latency[i].fetch_add(1, Ordering::Relaxed);
            d.commit_latency_ms_sum.fetch_add(ms, Ordering::Relaxed);
        });
    }

    /// Makes a destination known (so it renders before its first request).
    pub fn register(&self, destination: &str) {
        self.destination(destination, |_| {});
    }

    /// Runs `f` on a destination's counters.
    pub fn destination(&self, destination: &str, f: impl FnOnce(&DestinationMetrics)) {
        let d = {
            let mut map = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(destination.to_owned()).or_default().clone()
        };
        f(&d);
    }

    /// Adds `n` to one destination × kind counter.
    pub fn count(
        &self,
        destination: &str,
        kind: &str,
        field: impl Fn(&KindMetrics) -> &AtomicU64,
        n: u64,
    ) {
        let k = {
            let mut map = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
            map.entry((destination.to_owned(), kind.to_owned()))
                .or_default()
                .clone()
        };
        field(&k).fetch_add(n, Ordering::Relaxed);
    }

    /// Destinations paused (credentials, or by an operator).
    pub fn paused(&self) -> Vec<String> {
        let map = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|(_, d)| {
                d.paused.load(Ordering::Relaxed) == 1
                    || d.operator_paused.load(Ordering::Relaxed) == 1
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Why a destination is paused, if it is.
    pub fn paused_reason(&self, destination: &str) -> Option<String> {
        let d = {
            let map = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
            map.get(destination)?.clone()
        };
        if d.operator_paused.load(Ordering::Relaxed) == 1 {
            return Some(
                "paused by an operator (POST /api/destinations/{name}/resume resumes it)"
                    .replace("{name}", destination),
            );
        }
        let reason = d
            .paused_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        reason
    }

    /// Whether `destination` is known (has lanes in this process).
    pub fn knows(&self, destination: &str) -> bool {
        self.destinations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(destination)
    }

    fn render(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let dests: Vec<(String, std::sync::Arc<DestinationMetrics>)> = {
            let map = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let kinds: Vec<((String, String), std::sync::Arc<KindMetrics>)> = {
            let map = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        type DestField = fn(&DestinationMetrics) -> &AtomicU64;
        let per_dest: [(&str, &str, &str, DestField); 6] = [
            (
                "capi_cdc_requests_total",
                "counter",
                "HTTP attempts.",
                |d| &d.requests,
            ),
            (
                "capi_cdc_rate_limit_wait_ms_total",
                "counter",
                "Time spent waiting for the destination's rate limiter, ms.",
                |d| &d.rate_limit_wait_ms,
            ),
            (
                "capi_cdc_throttled_total",
                "counter",
                "Answers that asked to slow down (429, quota); waits without an attempt.",
                |d| &d.throttled,
            ),
            (
                "capi_cdc_destination_paused",
                "gauge",
                "1 while the destination is paused for the operator (credentials).",
                |d| &d.paused,
            ),
            (
                "capi_cdc_delivery_latency_ms_sum",
                "counter",
                "Sum of spool commit to acceptance latency, ms.",
                |d| &d.latency_ms_sum,
            ),
            (
                "capi_cdc_delivery_latency_ms_count",
                "counter",
                "Events in capi_cdc_delivery_latency_ms_sum.",
                |d| &d.latency_count,
            ),
        ];
        for (name, kind, help, field) in per_dest {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (dest, d) in &dests {
                out.push_str(&format!(
                    "{name}{{destination=\"{dest}\"}} {}\n",
                    get(field(d))
                ));
            }
        }
        let name = "capi_cdc_delivery_latency_seconds";
        out.push_str(&format!("# HELP {name} Commit (in PostgreSQL) to acceptance by the platform.\n# TYPE {name} histogram\n"));
        for (dest, d) in &dests {
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS_S.iter().enumerate() {
                cumulative += get(&d.commit_latency[i]);
                out.push_str(&format!(
                    "{name}_bucket{{destination=\"{dest}\",le=\"{bound}\"}} {cumulative}\n"
                ));
            }
            cumulative += get(&d.commit_latency[LATENCY_BUCKETS_S.len()]);
            out.push_str(&format!(
                "{name}_bucket{{destination=\"{dest}\",le=\"+Inf\"}} {cumulative}\n"
            ));
            out.push_str(&format!(
                "{name}_sum{{destination=\"{dest}\"}} {}\n",
                get(&d.commit_latency_ms_sum) as f64 / 1000.0
            ));
            out.push_str(&format!(
                "{name}_count{{destination=\"{dest}\"}} {cumulative}\n"
            ));
        }
        type KindField = fn(&KindMetrics) -> &AtomicU64;
        let per_kind: [(&str, &str, KindField); 4] = [
            (
                "capi_cdc_delivered_total",
                "Events accepted by the destination.",
                |k| &k.delivered,
            ),
            (
                "capi_cdc_dead_lettered_total",
                "Events dead-lettered, with the platform's reason in the ledger.",
                |k| &k.dead,
            ),
            (
                "capi_cdc_skipped_total",
                "Events not sent by policy, with the reason in the ledger.",
                |k| &k.skipped,
            ),
            (
                "capi_cdc_retries_total",
                "Transient failures retried (or given up on).",
                |k| &k.retries,
            ),
        ];
        for (name, help, field) in per_kind {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for ((dest, kind), k) in &kinds {
                out.push_str(&format!(
                    "{name}{{destination=\"{dest}\",kind=\"{kind}\"}} {}\n",
                    get(field(k))
                ));
            }
        }
    }
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render_prometheus(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        };
        line(
            "capi_cdc_changes_total",
            "counter",
            "Row changes decoded.",
            get(&self.changes),
        );
        line(
            "capi_cdc_transactions_total",
            "counter",
            "Source transactions spooled.",
            get(&self.transactions),
        );
        line(
            "capi_cdc_transactions_skipped_total",
            "counter",
            "Transactions already in the spool.",
            get(&self.transactions_skipped),
        );
        line(
            "capi_cdc_events_spooled_total",
            "counter",
            "Business events stored.",
            get(&self.events_spooled),
        );
        line(
            "capi_cdc_derive_failures_total",
            "counter",
            "Row changes that could not become events.",
            get(&self.derive_failures),
        );
        line(
            "capi_cdc_derive_notes_total",
            "counter",
            "Fields left out of events or values clamped (reasons in the spool's derive_notes).",
            get(&self.derive_notes),
        );
        line(
            "capi_cdc_checkpoint_lsn",
            "gauge",
            "Spool checkpoint (flush LSN reported to PostgreSQL) as a byte position.",
            get(&self.checkpoint_lsn),
        );
        line(
            "capi_cdc_spool_commits_total",
            "counter",
            "Spool commits.",
            get(&self.spool_commits),
        );
        line(
            "capi_cdc_spool_lock_wait_ms_total",
            "counter",
            "Time the apply loop waited to open a spool batch while delivery lanes recorded outcomes (their turn, then the write lock), ms. It grows when delivery competes with the slot's drain.",
            get(&self.spool_lock_wait_us) / 1000,
        );
        line(
            "capi_cdc_spool_lane_turn_wait_ms_total",
            "counter",
            "The part of capi_cdc_spool_lock_wait_ms_total spent letting waiting delivery lanes record first (at most 5 ms every 50 ms), ms.",
            get(&self.spool_turn_wait_us) / 1000,
        );
        line(
            "capi_cdc_spool_wal_restart_ms_total",
            "counter",
            "Time the apply loop spent, between batches, copying the spool's write-ahead log back and making it start over (asked once it is past 16 MB), ms.",
            get(&self.wal_restart_us) / 1000,
        );
        line(
            "capi_cdc_spool_wal_restarts_total",
            "counter",
            "Times the apply loop made the spool's write-ahead log start over.",
            get(&self.wal_restarts),
        );
        line(
            "capi_cdc_ledger_commits_total",
            "counter",
            "Write transactions of the delivery lanes (outcomes, retries, cursors): each is a turn at the spool's write lock and an fsync.",
            get(&self.ledger_commits),
        );
        line(
            "capi_cdc_replication_connects_total",
            "counter",
            "Replication connections opened.",
            get(&self.connects),
        );
        line(
            "capi_cdc_streaming",
            "gauge",
            "1 while a replication session is streaming.",
            get(&self.streaming),
        );
        line(
            "capi_cdc_heartbeats_received_total",
            "counter",
            "Heartbeat messages seen back in the stream.",
            get(&self.heartbeats),
        );
        let lag = get(&self.server_lsn).saturating_sub(get(&self.checkpoint_lsn));
        let lag_s = match get(&self.last_commit_ms) {
            0 => 0,
            t => {
                (std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64)
                    .saturating_sub(t))
                    / 1000
            }
        };
        for (name, kind, help, value) in [
            (
                "capi_cdc_received_lsn",
                "gauge",
                "Furthest WAL position received, as a byte position.",
                get(&self.received_lsn),
            ),
            (
                "capi_cdc_server_lsn",
                "gauge",
                "The server's current WAL position (slot watcher), as a byte position.",
                get(&self.server_lsn),
            ),
            (
                "capi_cdc_lag_bytes",
                "gauge",
                "WAL between the server's position and the spool checkpoint.",
                if get(&self.server_lsn) == 0 { 0 } else { lag },
            ),
            (
                "capi_cdc_lag_seconds",
                "gauge",
                "Seconds since the commit of the newest spooled transaction (0 before the first).",
                lag_s,
            ),
            (
                "capi_cdc_slot_retained_wal_bytes",
                "gauge",
                "WAL the slot holds back on the server.",
                get(&self.slot_retained_bytes),
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP capi_cdc_spool_bytes Size of the spool file.\n# TYPE capi_cdc_spool_bytes gauge\ncapi_cdc_spool_bytes {}\n",
            get(&self.spool_bytes)
        ));
        out.push_str("# HELP capi_cdc_lookup_rows Rows of as-of lookup state in the spool, per lookup.\n# TYPE capi_cdc_lookup_rows gauge\n");
        for (lookup, n) in self
            .lookup_rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            out.push_str(&format!(
                "capi_cdc_lookup_rows{{lookup=\"{lookup}\"}} {n}\n"
            ));
        }
        // -1 when max_slot_wal_keep_size = -1 (no limit) or not read yet.
        let safe = match get(&self.slot_safe_wal_bytes) {
            0 | u64::MAX => -1,
            s => s as i64,
        };
        out.push_str(&format!("# HELP capi_cdc_slot_safe_wal_size_bytes WAL the server may still write before the slot is at risk (max_slot_wal_keep_size); -1 = no limit.\n# TYPE capi_cdc_slot_safe_wal_size_bytes gauge\ncapi_cdc_slot_safe_wal_size_bytes {safe}\n"));
        self.delivery.render(&mut out);
        out
    }
}
