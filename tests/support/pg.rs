//! Throwaway PostgreSQL clusters for integration tests.
//!
//! The connector needs a real server with `wal_level=logical` (DESIGN.md §7),
//! so this module runs `initdb` and `postgres` from the installed binaries in a
//! fresh temp dir, on a free TCP port and a private unix-socket dir. Tests
//! normally share one lazily started cluster per test binary ([`cluster`]) and
//! isolate themselves with their own database ([`Cluster::create_database`]);
//! a test needing different server settings starts its own ([`start_cluster`]).
//!
//! `initdb` and `postgres` refuse to run as root, and our test machines run
//! tests as root; there both run as the `postgres` user, which owns the dir.
//!
//! Cleanup: statics are never dropped, and a test binary may die by panic or
//! SIGKILL, so stopping the server cannot rely on Rust code running at exit.
//! Each cluster therefore has a watchdog `sh` whose stdin is a pipe held only
//! by the test process. The pipe closes when the [`Cluster`] is dropped or the
//! process ends for any reason; the watchdog then sends the postmaster SIGQUIT
//! (immediate shutdown, fine for throwaway data) and removes the temp dir.

use std::fs::{self, File};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// Server settings for every cluster; a caller's extra settings come after
/// them on the command line, and for postgres the last `-c` for a name wins.
const BASE_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    ("wal_level", "logical"),
    // Each test creates its own slot, and tests run in parallel.
    ("max_replication_slots", "40"),
    ("max_wal_senders", "40"),
    // Durability is pointless for throwaway data; skipping it saves time.
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("shared_buffers", "128MB"),
    // Parallel tests each hold a few connections.
    ("max_connections", "200"),
    // Generous, so a test paused in a debugger keeps its walsender.
    ("wal_sender_timeout", "60s"),
];

/// How long a started server may take to report "ready" in `postmaster.pid`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Attempts to start a cluster; a retry covers another process taking the
/// free port between our probe and the server binding it.
const START_ATTEMPTS: u32 = 3;

/// Lines of server log shown by [`Cluster::log_tail`].
const LOG_TAIL_LINES: usize = 40;

/// Watchdog for the temp dir `$1`. It reads the postmaster's pid (a line
/// sent once the server is spawned), waits for EOF, stops the server and
/// removes the dir, retrying for a while: the postmaster (until its pid file
/// is gone) or an orphaned `initdb` may still be writing there. It ignores
/// SIGINT so that Ctrl-C still ends in cleanup.
const WATCHDOG_SCRIPT: &str = r#"
trap '' INT
read pid
read _
[ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null
i=0
while [ "$i" -lt 100 ]; do
  [ -e "$1/data/postmaster.pid" ] || rm -rf "$1" 2>/dev/null
  [ -e "$1" ] || exit 0
  sleep 0.1; i=$((i+1))
done
"#;

/// A running throwaway cluster; dropping it stops the server and removes its files.
#[derive(Debug)]
pub struct Cluster {
    port: u16,
    /// Temp dir: the socket dir, holding `data/` and `postgres.log`.
    dir: PathBuf,
    postgres: Child,
    /// Runs `WATCHDOG_SCRIPT`; its stdin is our end of the cleanup pipe.
    watchdog: Child,
}

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

/// The (uid, gid) the server runs as when the test process is root.
type Owner = (u32, u32);

/// The cluster shared by all tests of this binary, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    // Starting is synchronous (std::process), so any thread or runtime may
    // call this; concurrent callers block until the one start finishes.
    CLUSTER.get_or_init(|| start_cluster(&[]))
}

/// Starts a cluster of its own with `extra_settings` on top of the base ones.
pub fn start_cluster(extra_settings: &[(&str, &str)]) -> Cluster {
    let owner = server_owner();
    let mut failures = String::new();
    for attempt in 1..=START_ATTEMPTS {
        let mut cluster = Cluster::spawn(owner, extra_settings);
        if cluster.wait_ready() {
            return cluster;
        }
        let tail = cluster.log_tail();
        failures += &format!("--- attempt {attempt}, port {}:\n{tail}\n", cluster.port);
    }
    panic!("postgres exited during startup {START_ATTEMPTS} times; server logs:\n{failures}");
}

impl Cluster {
    /// TCP port the server listens on (127.0.0.1 and the unix socket).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// TCP URL of database `db` as the `postgres` superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// libpq-style URL of database `db` through the unix socket.
    pub fn socket_url(&self, db: &str) -> String {
        let (dir, port) = (self.dir.display(), self.port);
        format!("postgresql:///{db}?host={dir}&port={port}&user=postgres")
    }

    /// Creates a database named `{prefix}_{counter}_{pid}`; keep `prefix` to
    /// lowercase letters, digits and `_` so the name needs no URL escaping.
    pub async fn create_database(&self, prefix: &str) -> TestDb {
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

    /// Last lines of the server log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read(self.dir.join("postgres.log")).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Makes a fresh temp dir, runs `initdb` and starts `postgres` plus its
    /// watchdog; the server may not be ready yet.
    fn spawn(owner: Option<Owner>, extra_settings: &[(&str, &str)]) -> Cluster {
        let dir = unique_temp_path();
        // Spawned before the dir exists, so the dir goes away whenever we die.
        let mut watchdog = Command::new("sh")
            .args(["-c", WATCHDOG_SCRIPT, "pg-watchdog"])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn watchdog sh");

        create_owned_dir(&dir, owner);
        let data = dir.join("data");
        run_initdb(&data, owner);

        let port = free_port();
        let log = File::create(dir.join("postgres.log")).expect("create postgres.log");
        let mut cmd = as_owner(Command::new("postgres"), owner);
        cmd.arg("-D").arg(&data);
        cmd.arg("-p").arg(port.to_string());
        cmd.arg("-k").arg(&dir);
        for (name, value) in BASE_SETTINGS.iter().chain(extra_settings) {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log);
        let postgres = cmd.spawn().expect("spawn postgres (is it on PATH?)");
        let pipe = watchdog.stdin.as_mut().expect("watchdog stdin");
        writeln!(pipe, "{}", postgres.id()).expect("send pid to watchdog");

        Cluster {
            port,
            dir,
            postgres,
            watchdog,
        }
    }

    /// Waits until the postmaster reports "ready" in `postmaster.pid` (what
    /// `pg_ctl -w` waits for); false if the server exited first.
    fn wait_ready(&mut self) -> bool {
        let pid_file = self.dir.join("data/postmaster.pid");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(_)) = self.postgres.try_wait() {
                return false;
            }
            // Line 8 is the postmaster status; see pidfile.h in the server.
            let contents = fs::read_to_string(&pid_file).unwrap_or_default();
            if contents.lines().nth(7).map(str::trim) == Some("ready") {
                return true;
            }
            if Instant::now() > deadline {
                let tail = self.log_tail();
                panic!("postgres not ready after {READY_TIMEOUT:?}; log tail:\n{tail}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Closing the pipe makes the watchdog stop the server and remove the
        // dir; waiting on both makes that finish before drop returns.
        drop(self.watchdog.stdin.take());
        let _ = self.postgres.wait();
        let _ = self.watchdog.wait();
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

/// `Some(postgres user)` when we are root, since `initdb` refuses root.
fn server_owner() -> Option<Owner> {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    // "Uid:\treal\teffective\tsaved\tfs"
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .expect("Uid line in /proc/self/status");
    if euid != "0" {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, "postgres"]).output();
        let out = out.expect("run id");
        assert!(out.status.success(), "no `postgres` user to run as");
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().expect("numeric id from `id`")
    };
    Some((id("-u"), id("-g")))
}

/// Makes `cmd` run as `owner` (if any), from a directory it can read.
fn as_owner(mut cmd: Command, owner: Option<Owner>) -> Command {
    if let Some((uid, gid)) = owner {
        // std also drops supplementary groups when root changes uid.
        cmd.uid(uid).gid(gid).current_dir("/");
    }
    cmd
}

/// A fresh path under the system temp dir, unique within this process.
fn unique_temp_path() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // Short on purpose: a unix socket path must fit in 107 bytes.
    let dir = std::env::temp_dir().join(format!("capi-pg-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir); // left over by an earlier process with our pid
    dir
}

/// Creates `dir`, owned by `owner` (if any) so the server can write there.
fn create_owned_dir(dir: &Path, owner: Option<Owner>) {
    fs::create_dir(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    if let Some((uid, gid)) = owner {
        // The dir is new and empty, so no -R is needed.
        let ids = format!("{uid}:{gid}");
        let status = Command::new("chown").arg(ids).arg(dir).status();
        assert!(status.expect("run chown").success(), "chown {dir:?} failed");
    }
}

/// Creates the cluster's data dir: trust auth, superuser `postgres`.
fn run_initdb(data: &Path, owner: Option<Owner>) {
    let mut cmd = as_owner(Command::new("initdb"), owner);
    cmd.arg("-D")
        .arg(data)
        .args(["-A", "trust", "-U", "postgres"]);
    cmd.args(["--no-sync", "-E", "UTF8", "--locale=C"]);
    let out = cmd.output().expect("spawn initdb (is it on PATH?)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "initdb failed:\n{stderr}");
}

/// A port that was free a moment ago; `start_cluster` retries if it is taken.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}
