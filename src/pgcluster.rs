//! Throwaway PostgreSQL clusters, for `capi-cdc demo` and for the tests.
//!
//! The connector needs a real server with `wal_level=logical` (DESIGN.md §7),
//! so this runs `initdb` and `postgres` from the installed server binaries in
//! a fresh temp dir, on a free TCP port (127.0.0.1 only) and a private
//! unix-socket dir, with durability off (the data is thrown away).
//!
//! `initdb` and `postgres` refuse to run as root; as root both run as the
//! `postgres` user, which owns the dir.
//!
//! Cleanup cannot rely on Rust code running at exit: a test binary's statics
//! are never dropped, and any process may die by panic or SIGKILL. Each
//! cluster therefore has a watchdog `sh` whose stdin is a pipe held only by
//! this process. The pipe closes when the [`Cluster`] is dropped or the
//! process ends for any reason; the watchdog then sends the postmaster
//! SIGQUIT (immediate shutdown, fine for throwaway data) and removes the dir.

use std::fs::{self, File};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

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

/// What to tell someone whose machine has no server binaries.
const INSTALL_HINT: &str = "install PostgreSQL's server package (Debian/Ubuntu: \
    `apt-get install postgresql`) or put its bin directory (initdb, postgres) on PATH";

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

/// Why a cluster could not be started; each names the remedy where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No `initdb`/`postgres` on PATH nor under `/usr/lib/postgresql/*/bin`.
    #[error("no PostgreSQL server binaries found: {INSTALL_HINT}")]
    NoBinaries,
    /// Running as root, but there is no `postgres` user to run the server as.
    #[error("running as root, so the server must run as the `postgres` user, which does not exist: create it (`useradd --system postgres`)")]
    NoPostgresUser,
    /// A step failed; the message says which and includes the server's words.
    #[error("{0}")]
    Step(String),
}

fn step(what: impl std::fmt::Display, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Step(format!("{what}: {e}"))
}

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

/// The (uid, gid) the server runs as when this process is root.
type Owner = (u32, u32);

/// The directory holding `initdb` and `postgres`: PATH first, then where
/// Debian puts them (`/usr/lib/postgresql/<major>/bin`, newest major).
pub fn server_bin_dir() -> Result<PathBuf, ClusterError> {
    find_bin_dir(std::env::var_os("PATH"), Path::new("/usr/lib/postgresql"))
}

/// [`server_bin_dir`] over an explicit `PATH` and Debian root.
fn find_bin_dir(
    path: Option<std::ffi::OsString>,
    debian_root: &Path,
) -> Result<PathBuf, ClusterError> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = path {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_server(d)) {
            return Ok(dir);
        }
    }
    let mut dirs: Vec<(u32, PathBuf)> = fs::read_dir(debian_root)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    let major = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    has_server(&bin).then_some((major, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().map(|(_, d)| d).ok_or(ClusterError::NoBinaries)
}

/// Starts a cluster with `extra_settings` on top of the base ones and waits
/// until it accepts connections.
pub fn start(extra_settings: &[(&str, &str)]) -> Result<Cluster, ClusterError> {
    let bin = server_bin_dir()?;
    let owner = server_owner()?;
    let mut failures = String::new();
    for attempt in 1..=START_ATTEMPTS {
        let mut cluster = Cluster::spawn(&bin, owner, extra_settings)?;
        if cluster.wait_ready()? {
            return Ok(cluster);
        }
        let tail = cluster.log_tail();
        failures += &format!("--- attempt {attempt}, port {}:\n{tail}\n", cluster.port);
    }
    Err(ClusterError::Step(format!(
        "postgres exited during startup {START_ATTEMPTS} times; server logs:\n{failures}"
    )))
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

    /// Last lines of the server log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read(self.dir.join("postgres.log")).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Makes a fresh temp dir, runs `initdb` and starts `postgres` plus its
    /// watchdog; the server may not be ready yet.
    fn spawn(
        bin: &Path,
        owner: Option<Owner>,
        extra_settings: &[(&str, &str)],
    ) -> Result<Cluster, ClusterError> {
        let dir = unique_temp_path();
        // Spawned before the dir exists, so the dir goes away whenever we die.
        let mut watchdog = Command::new("sh")
            .args(["-c", WATCHDOG_SCRIPT, "pg-watchdog"])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| step("starting the cleanup watchdog (sh)", e))?;

        create_owned_dir(&dir, owner)?;
        let data = dir.join("data");
        run_initdb(bin, &data, owner)?;

        let port = free_port()?;
        let log = File::create(dir.join("postgres.log")).map_err(|e| step("postgres.log", e))?;
        let log2 = log.try_clone().map_err(|e| step("postgres.log", e))?;
        let mut cmd = as_owner(Command::new(bin.join("postgres")), owner);
        cmd.arg("-D").arg(&data);
        cmd.arg("-p").arg(port.to_string());
        cmd.arg("-k").arg(&dir);
        for (name, value) in BASE_SETTINGS.iter().chain(extra_settings) {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        cmd.stdin(Stdio::null()).stdout(log2).stderr(log);
        let postgres = cmd
            .spawn()
            .map_err(|e| step(format!("starting {}", bin.join("postgres").display()), e))?;
        if let Some(pipe) = watchdog.stdin.as_mut() {
            // If this fails the watchdog has died; the dir then stays behind,
            // which costs disk, not correctness.
            let _ = writeln!(pipe, "{}", postgres.id());
        }
        Ok(Cluster {
            port,
            dir,
            postgres,
            watchdog,
        })
    }

    /// Waits until the postmaster reports "ready" in `postmaster.pid` (what
    /// `pg_ctl -w` waits for); false if the server exited first.
    fn wait_ready(&mut self) -> Result<bool, ClusterError> {
        let pid_file = self.dir.join("data/postmaster.pid");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(_)) = self.postgres.try_wait() {
                return Ok(false);
            }
            // Line 8 is the postmaster status; see pidfile.h in the server.
            let contents = fs::read_to_string(&pid_file).unwrap_or_default();
            if contents.lines().nth(7).map(str::trim) == Some("ready") {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Step(format!(
                    "postgres not ready after {READY_TIMEOUT:?}; log tail:\n{}",
                    self.log_tail()
                )));
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

/// `Some(postgres user)` when we are root, since `initdb` refuses root.
fn server_owner() -> Result<Option<Owner>, ClusterError> {
    let status =
        fs::read_to_string("/proc/self/status").map_err(|e| step("/proc/self/status", e))?;
    // "Uid:\treal\teffective\tsaved\tfs"
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if euid != Some("0") {
        return Ok(None);
    }
    let id = |flag: &str| -> Result<u32, ClusterError> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| step("running id", e))?;
        if !out.status.success() {
            return Err(ClusterError::NoPostgresUser);
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| step("id's output", e))
    };
    Ok(Some((id("-u")?, id("-g")?)))
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
fn create_owned_dir(dir: &Path, owner: Option<Owner>) -> Result<(), ClusterError> {
    fs::create_dir(dir).map_err(|e| step(format!("creating {}", dir.display()), e))?;
    if let Some((uid, gid)) = owner {
        // The dir is new and empty, so no -R is needed.
        let ok = Command::new("chown")
            .arg(format!("{uid}:{gid}"))
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(ClusterError::Step(format!(
                "chown postgres {} failed",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Creates the cluster's data dir: trust auth, superuser `postgres`.
fn run_initdb(bin: &Path, data: &Path, owner: Option<Owner>) -> Result<(), ClusterError> {
    let initdb = bin.join("initdb");
    let mut cmd = as_owner(Command::new(&initdb), owner);
    cmd.arg("-D")
        .arg(data)
        .args(["-A", "trust", "-U", "postgres"]);
    cmd.args(["--no-sync", "-E", "UTF8", "--locale=C"]);
    let out = cmd
        .output()
        .map_err(|e| step(format!("running {}", initdb.display()), e))?;
    if !out.status.success() {
        return Err(ClusterError::Step(format!(
            "initdb failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// A port that was free a moment ago; [`start`] retries if it is taken.
fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| step("finding a free port on 127.0.0.1", e))
}

#[cfg(test)]
mod tests {
    use super::{find_bin_dir, ClusterError};
    use std::path::Path;

    fn touch(dir: &Path, names: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        for n in names {
            std::fs::write(dir.join(n), b"").unwrap();
        }
    }

    #[test]
    fn finds_the_server_on_path_then_debians_newest_major_and_says_how_to_install_it() {
        let root = tempfile::tempdir().unwrap();
        let (on_path, debian) = (root.path().join("bin"), root.path().join("lib"));
        touch(&on_path, &["initdb"]); // no postgres: not a server dir
        touch(&debian.join("13/bin"), &["initdb", "postgres"]);
        touch(&debian.join("15/bin"), &["initdb", "postgres"]);
        touch(&debian.join("9/bin"), &["initdb", "postgres"]);
        let path = Some(on_path.clone().into_os_string());
        assert_eq!(
            find_bin_dir(path.clone(), &debian).unwrap(),
            debian.join("15/bin")
        );
        touch(&on_path, &["postgres"]);
        assert_eq!(find_bin_dir(path, &debian).unwrap(), on_path);

        let none = find_bin_dir(None, &root.path().join("absent")).unwrap_err();
        assert!(matches!(none, ClusterError::NoBinaries));
        let text = none.to_string();
        assert!(text.contains("apt-get install postgresql"), "{text}");
        assert!(text.contains("PATH"), "{text}");
    }
}
