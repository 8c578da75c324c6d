//! A whole pipeline for one test: its own database with the reference schema,
//! an in-process Meta sandbox, a spool in a temp dir, and a config naming
//! them. `run` can go in-process (fast) or as the real binary (kill tests,
//! log checks).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capi_cdc::config::Config;
use capi_cdc::lsn::Lsn;
use capi_cdc::sandbox::{Sandbox, SandboxConfig};
use figment::providers::{Format, Toml};
use figment::Figment;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::pg::{cluster, Cluster, ClusterExt as _, TestDb};

/// The reference schema, as shipped.
pub const SCHEMA: &str = include_str!("../../sql/schema.sql");
/// Token the sandbox accepts.
pub const TOKEN: &str = "test-meta-token-0123456789";
/// Pixel the sandbox accepts.
pub const PIXEL: &str = "4242424242";

pub struct Pipeline {
    pub db: TestDb,
    pub sandbox: Sandbox,
    pub sandbox_url: String,
    pub dir: tempfile::TempDir,
    pub slot: String,
    pub publication: String,
    /// The token the connector sends (the sandbox accepts [`TOKEN`]).
    pub token: String,
    /// `admin.listen`; port 0 (any free port) unless a test picks one.
    pub admin_listen: String,
    /// `source.url`; the Unix socket unless a test picks another.
    pub source_url: String,
    /// Extra lines for the `[source]` table.
    pub source_extra: String,
    /// Extra tables at the end of the config (e.g. `[derive]`).
    pub extra_toml: String,
    /// `admin.token`, when a test needs the mutating endpoints.
    pub admin_token: Option<String>,
    /// Extra keys of `[admin]`.
    pub admin_extra: String,
    /// `[destinations.google]` pointing at the sandbox when `Some`, with
    /// these extra lines (e.g. a `conversion_actions` table).
    pub google_extra: Option<String>,
    /// Extra keys of `[destinations.meta]`; by default 200 requests/s and
    /// a batched lane that flushes after 1 s, so tests need not wait its
    /// production age.
    pub meta_extra: String,
    _sandbox_stop: watch::Sender<bool>,
}

/// An in-process `run`.
pub struct Running {
    stop: watch::Sender<bool>,
    join: JoinHandle<Result<(), capi_cdc::run::RunError>>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let result = tokio::time::timeout(Duration::from_secs(30), self.join)
            .await
            .expect("run did not stop within 30 s");
        result.expect("run panicked").expect("run failed");
    }
}

impl Pipeline {
    /// A fresh database with the schema and a sandbox.
    pub async fn new(prefix: &str) -> Pipeline {
        Self::new_on(cluster(), prefix).await
    }

    /// Like [`Pipeline::new`], on a cluster of the test's own.
    pub async fn new_on(cluster: &Cluster, prefix: &str) -> Pipeline {
        Self::with_schema(cluster, prefix, SCHEMA).await
    }

    /// A fresh database with another schema (its own rules go in `extra_toml`).
    pub async fn with_schema(cluster: &Cluster, prefix: &str, schema: &str) -> Pipeline {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let db = cluster.create_database(prefix).await;
        db.execute_batch(schema).await;
        let sandbox = Sandbox::new(SandboxConfig {
            meta_pixel_id: PIXEL.into(),
            meta_access_token: TOKEN.into(),
            ..SandboxConfig::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sandbox_url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, mut rx) = watch::channel(false);
        tokio::spawn(capi_cdc::sandbox::serve_sandbox(
            listener,
            sandbox.clone(),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ));
        let source_url = db.socket_url.clone();
        let slot = format!("s_{}", db.name);
        let publication = format!("p_{}", db.name);
        Pipeline {
            db,
            sandbox,
            sandbox_url,
            dir: tempfile::tempdir().unwrap(),
            slot,
            publication,
            token: TOKEN.into(),
            admin_listen: "127.0.0.1:0".into(),
            source_url,
            source_extra: String::new(),
            extra_toml: String::new(),
            google_extra: None,
            admin_token: None,
            admin_extra: String::new(),
            meta_extra: "requests_per_second = 200\nbatch_max_age_s = 1\n".into(),
            _sandbox_stop: tx,
        }
    }

    /// Pins `admin.listen` to a free port and returns its base URL.
    pub fn admin_on_free_port(&mut self) -> String {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        self.admin_listen = format!("127.0.0.1:{port}");
        format!("http://{}", self.admin_listen)
    }

    pub fn spool_file(&self) -> PathBuf {
        self.dir.path().join("spool.sqlite3")
    }

    /// The config file's text (over the Unix socket).
    pub fn toml(&self) -> String {
        format!(
            r#"
[source]
url = "{url}"
slot = "{slot}"
publication = "{publication}"
status_interval_ms = 500
{source_extra}

[spool]
path = "{spool}"

[admin]
listen = "{admin}"
{admin_token}
{admin_extra}

[destinations.meta]
base_url = "{sandbox}"
api_version = "v25.0"
pixel_id = "{PIXEL}"
access_token = "{token}"
timeout_ms = 3000
{meta_extra}
{google}
{extra}
"#,
            google = self.google_toml(),
            admin_extra = self.admin_extra,
            admin_token = self
                .admin_token
                .as_ref()
                .map(|t| format!("token = \"{t}\""))
                .unwrap_or_default(),
            meta_extra = self.meta_extra,
            extra = self.extra_toml,
            url = self.source_url,
            source_extra = self.source_extra,
            slot = self.slot,
            publication = self.publication,
            spool = self.spool_file().display(),
            sandbox = self.sandbox_url,
            token = self.token,
            admin = self.admin_listen,
        )
    }

    /// The Google destination's table, against the sandbox's defaults.
    fn google_toml(&self) -> String {
        let Some(extra) = &self.google_extra else {
            return String::new();
        };
        let g = capi_cdc::sandbox::google::GoogleSandboxConfig::default();
        format!(
            r#"
[destinations.google]
oauth_token_url = "{sandbox}/token"
data_manager_url = "{sandbox}"
ads_api_url = "{sandbox}"
client_id = "{client_id}"
client_secret = "{client_secret}"
refresh_token = "{refresh_token}"
developer_token = "sandbox-developer-token"
operating_account_id = "{account}"
requests_per_second = 100
batch_max_age_s = 1
auth_retry_s = 1
{extra}
"#,
            sandbox = self.sandbox_url,
            client_id = g.client_id,
            client_secret = g.client_secret,
            refresh_token = g.refresh_token,
            account = g.operating_account_id,
        )
    }

    pub fn config(&self) -> Config {
        Config::from_figment(Figment::new().merge(Toml::string(&self.toml()))).expect("test config")
    }

    pub fn config_file(&self) -> PathBuf {
        let path = self.dir.path().join("capi-cdc.toml");
        std::fs::write(&path, self.toml()).unwrap();
        path
    }

    pub async fn setup(&self) -> Vec<String> {
        capi_cdc::source::setup::setup(&self.config(), false)
            .await
            .expect("setup")
            .lines
    }

    /// Starts `run` in this process.
    pub fn start(&self) -> Running {
        self.start_with(Default::default())
    }

    /// Starts `run` in this process with `opts`.
    pub fn start_with(&self, opts: capi_cdc::run::RunOptions) -> Running {
        let (stop, rx) = watch::channel(false);
        let config = self.config();
        let join = tokio::spawn(capi_cdc::run::run(config, opts, rx));
        Running { stop, join }
    }

    /// Runs `run` until it returns by itself (an error) or `within` passes.
    pub async fn run_expecting_error(
        &self,
        opts: capi_cdc::run::RunOptions,
        within: Duration,
    ) -> capi_cdc::run::RunError {
        let (_stop, rx) = watch::channel(false);
        match tokio::time::timeout(within, capi_cdc::run::run(self.config(), opts, rx)).await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => panic!("run stopped without an error"),
            Err(_) => panic!("run kept running for {within:?}; expected it to refuse"),
        }
    }

    /// Runs the binary to completion with `args`; returns (exit code, stdout, stderr).
    pub fn binary(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_capi-cdc"))
            .arg("--config")
            .arg(self.config_file())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run capi-cdc");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts the real binary with `args` (after `--config FILE`).
    pub fn spawn_binary(&self, args: &[&str], log: &std::path::Path) -> Child {
        let log = std::fs::File::create(log).unwrap();
        Command::new(env!("CARGO_BIN_EXE_capi-cdc"))
            .arg("--config")
            .arg(self.config_file())
            .args(args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn capi-cdc")
    }

    pub async fn sql(&self, sql: &str) {
        self.db.execute_batch(sql).await;
    }

    /// Queues a fault on the Meta sandbox (`{"status": 503, "count": 2}`, ...).
    pub async fn meta_fault(&self, body: serde_json::Value) {
        reqwest::Client::new()
            .post(format!("{}/_sandbox/meta/faults", self.sandbox_url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    /// Every event in the spool (its payload, as JSON), by event ID.
    pub fn spooled_events(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        let conn = rusqlite::Connection::open(self.spool_file()).unwrap();
        let mut stmt = conn
            .prepare("SELECT event_id, payload FROM events")
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, rusqlite::types::Value>(1)?,
                ))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .map(|(id, p)| {
                let event = capi_cdc::spool::payload::decode((&p).into()).unwrap();
                (id, serde_json::to_value(event).unwrap())
            })
            .collect();
        rows
    }

    /// Waits until the spool holds every one of `ids`.
    pub async fn wait_spooled(
        &self,
        ids: &[&str],
        within: Duration,
    ) -> std::collections::BTreeMap<String, serde_json::Value> {
        let start = Instant::now();
        loop {
            if self.spool_file().exists() {
                let events = self.spooled_events();
                if ids.iter().all(|id| events.contains_key(*id)) {
                    return events;
                }
                if start.elapsed() > within {
                    panic!(
                        "spooled {:?}, wanted {ids:?}",
                        events.keys().collect::<Vec<_>>()
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Distinct event IDs the sandbox accepted.
    pub fn delivered_ids(&self) -> std::collections::BTreeSet<String> {
        self.sandbox
            .meta_report()
            .received
            .iter()
            .filter_map(|e| e.event_id().map(str::to_owned))
            .collect()
    }

    /// Waits until the sandbox holds `n` distinct event IDs.
    pub async fn wait_for_events(&self, n: usize, within: Duration) {
        let start = Instant::now();
        loop {
            let got = self.delivered_ids().len();
            if got >= n {
                return;
            }
            if start.elapsed() > within {
                let report = self.sandbox.meta_report();
                panic!(
                    "only {got} of {n} events reached the sandbox within {within:?} (requests {}, rejected {}: {:?})",
                    report.requests, report.rejected, report.rejections
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The slot's `confirmed_flush_lsn`.
    pub async fn confirmed_flush(&self) -> Lsn {
        let client = self.db.client().await;
        let row = client
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await
            .unwrap();
        row.get::<_, String>(0).parse().unwrap()
    }

    /// The current WAL insert position.
    pub async fn wal_lsn(&self) -> Lsn {
        let client = self.db.client().await;
        let row = client
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .unwrap();
        row.get::<_, String>(0).parse().unwrap()
    }

    /// Waits until the slot confirms at least `lsn`.
    pub async fn wait_confirmed(&self, lsn: Lsn, within: Duration) {
        let start = Instant::now();
        while self.confirmed_flush().await < lsn {
            assert!(
                start.elapsed() < within,
                "slot {} did not confirm {lsn} within {within:?} (at {})",
                self.slot,
                self.confirmed_flush().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The spool's checkpoint.
    pub fn spool_checkpoint(&self) -> Option<Lsn> {
        capi_cdc::spool::Spool::open(&self.spool_file())
            .unwrap()
            .checkpoint()
            .unwrap()
    }
}

/// GET `url`'s body as text, panicking with the URL on failure.
pub async fn get_text(url: &str) -> String {
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    r.text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body: {e}"))
}

/// GET `url`'s body as JSON, panicking with the URL and body on failure.
pub async fn get_json(url: &str) -> serde_json::Value {
    let text = get_text(url).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"))
}
