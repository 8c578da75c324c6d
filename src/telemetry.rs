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
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
    /// Spool commits.
    pub spool_commits: AtomicU64,
    /// Replication (re)connections.
    pub connects: AtomicU64,
    /// 1 while a replication session is streaming, else 0.
    pub streaming: AtomicU64,
    /// Our own heartbeat messages seen coming back through the stream.
    pub heartbeats: AtomicU64,
    /// The Meta lane.
    pub meta: LaneMetrics,
}

/// Counters of one delivery lane.
#[derive(Debug, Default)]
pub struct LaneMetrics {
    /// Events accepted by the platform.
    pub delivered: AtomicU64,
    /// Events dead-lettered.
    pub dead: AtomicU64,
    /// Events skipped by policy.
    pub skipped: AtomicU64,
    /// HTTP attempts.
    pub requests: AtomicU64,
    /// Attempts that failed and will be retried.
    pub retries: AtomicU64,
    /// Sum of spool-commit-to-acceptance latency, ms.
    pub latency_ms_sum: AtomicU64,
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
        // Google's lanes join this list in a later issue.
        #[allow(clippy::single_element_loop)]
        for (dest, lane) in [("meta", &self.meta)] {
            let mut labeled = |name: &str, help: &str, value: u64| {
                out.push_str(&format!(
                    "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{destination=\"{dest}\"}} {value}\n"
                ));
            };
            labeled(
                "capi_cdc_delivered_total",
                "Events accepted by the destination.",
                get(&lane.delivered),
            );
            labeled(
                "capi_cdc_dead_lettered_total",
                "Events dead-lettered, with the platform's reason in the ledger.",
                get(&lane.dead),
            );
            labeled(
                "capi_cdc_skipped_total",
                "Events not sent by policy, with the reason in the ledger.",
                get(&lane.skipped),
            );
            labeled(
                "capi_cdc_requests_total",
                "HTTP attempts.",
                get(&lane.requests),
            );
            labeled(
                "capi_cdc_retries_total",
                "Attempts that failed and will be retried.",
                get(&lane.retries),
            );
        }
        out
    }
}
