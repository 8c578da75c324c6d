//! Throwaway PostgreSQL clusters for integration tests: the library's
//! [`capi_cdc::pgcluster`] (the same launcher `capi-cdc demo` uses), plus one
//! lazily started cluster shared by all tests of a binary ([`cluster`]) and a
//! database of its own per test ([`ClusterExt::create_database`]).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub use capi_cdc::pgcluster::Cluster;
use tokio_postgres::{Client, NoTls};

/// A database of its own for one test, on some cluster.
#[derive(Debug)]
pub struct TestDb {
    /// Database name, unique within the test run.
    pub name: String,
    /// TCP URL, `postgresql://postgres@127.0.0.1:PORT/name`.
    pub url: String,
    /// Unix-socket URL, see [`Cluster::socket_url`].
    pub socket_url: String,
}

/// The cluster shared by all tests of this binary, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    // Starting is synchronous (std::process), so any thread or runtime may
    // call this; concurrent callers block until the one start finishes.
    CLUSTER.get_or_init(|| start_cluster(&[]))
}

/// Starts a cluster of its own with `extra_settings` on top of the base ones.
pub fn start_cluster(extra_settings: &[(&str, &str)]) -> Cluster {
    capi_cdc::pgcluster::start(extra_settings).unwrap_or_else(|e| panic!("{e}"))
}

/// Per-test databases on a cluster.
#[allow(async_fn_in_trait)]
pub trait ClusterExt {
    /// Creates a database named `{prefix}_{counter}_{pid}`; keep `prefix` to
    /// lowercase letters, digits and `_` so the name needs no URL escaping.
    async fn create_database(&self, prefix: &str) -> TestDb;
}

impl ClusterExt for Cluster {
    async fn create_database(&self, prefix: &str) -> TestDb {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}_{n}_{}", std::process::id());
        assert!(name.len() <= 63, "database name {name:?} exceeds 63 bytes");
        let admin = connect(&self.url("postgres")).await;
        let create = format!("CREATE DATABASE \"{name}\"");
        if let Err(e) = admin.batch_execute(&create).await {
            panic!("CREATE DATABASE {name}: {e:?}\n{}", self.log_tail());
        }
        TestDb {
            url: self.url(&name),
            socket_url: self.socket_url(&name),
            name,
        }
    }
}

impl TestDb {
    /// A new connection to this database; its connection task runs on the
    /// current tokio runtime and ends when the client is dropped.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// Runs `sql` (several statements allowed) on a fresh connection.
    pub async fn execute_batch(&self, sql: &str) {
        if let Err(e) = self.client().await.batch_execute(sql).await {
            panic!("batch on {} failed: {e:?}\nSQL:\n{sql}", self.name);
        }
    }
}

/// Connects and spawns the connection task, panicking with the URL on failure.
async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e:?}"));
    let url = url.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection to {url} ended with error: {e}");
        }
    });
    client
}
