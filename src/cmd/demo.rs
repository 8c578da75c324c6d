//! `capi-cdc demo`: everything on embedded defaults, in one command.
//!
//! Starts a throwaway PostgreSQL (the installed server binaries, as the
//! `postgres` user when run as root, `wal_level=logical`, on a Unix socket
//! in a temp dir), loads the reference schema, starts the sandbox (Meta and
//! Google look-alikes, conversion actions seeded for every kind), runs
//! `setup` and `run` against them, and plays a small storefront's traffic
//! (sessions with click IDs, consent, views, carts, checkouts, payments,
//! paid orders with items, sign-ups, leads) until Ctrl-C; then it stops
//! everything and removes the temp dir. Nothing leaves the machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use figment::providers::Format as _;
use tokio::sync::watch;

use super::CmdError;
use crate::config::Config;

/// The reference schema, as shipped.
const SCHEMA: &str = include_str!("../../sql/schema.sql");

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoArgs {
    /// Where the health page and admin API listen.
    pub admin: SocketAddr,
    /// Shopper journeys per second.
    pub rate: u32,
}

fn usage(e: impl std::fmt::Display) -> CmdError {
    CmdError::Usage(e.to_string())
}

/// The directory holding `initdb` and `postgres`.
fn pg_bin() -> Result<PathBuf, CmdError> {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !p.is_empty() {
            return Ok(Path::new(&p)
                .parent()
                .unwrap_or(Path::new("/"))
                .to_path_buf());
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().ok_or_else(|| {
        usage("the demo needs the PostgreSQL server binaries (initdb, postgres): install them (Debian/Ubuntu: apt-get install postgresql) or put them on PATH; or run the stack with `docker compose up`")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` as the `postgres` user when we are root (initdb refuses root).
fn as_owner(bin: &Path, program: &str, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

struct Server {
    dir: PathBuf,
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_postgres() -> Result<Server, CmdError> {
    let bin = pg_bin()?;
    let root = is_root();
    let dir = std::env::temp_dir().join(format!("capi-cdc-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| usage(format!("creating {}: {e}", dir.display())))?;
    if root {
        let ok = Command::new("chown")
            .arg("postgres:")
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(usage("as root the demo runs PostgreSQL as the postgres user, which does not exist: create it (useradd --system postgres)"));
        }
    }
    let data = dir.join("data");
    let out = as_owner(&bin, "initdb", root)
        .args(["-D"])
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "--no-sync"])
        .output()
        .map_err(|e| usage(format!("initdb: {e}")))?;
    if !out.status.success() {
        return Err(usage(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54399);
    let log = std::fs::File::create(dir.join("postgres.log")).map_err(|e| usage(e.to_string()))?;
    let child = as_owner(&bin, "postgres", root)
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(&dir)
        .args([
            "-c",
            "listen_addresses=",
            "-c",
            "wal_level=logical",
            "-c",
            "max_replication_slots=4",
            "-c",
            "max_wal_senders=4",
            "-c",
            "fsync=off",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| usage(e.to_string()))?)
        .stderr(log)
        .spawn()
        .map_err(|e| usage(format!("postgres: {e}")))?;
    let mut server = Server { dir, child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pid =
            std::fs::read_to_string(server.dir.join("data/postmaster.pid")).unwrap_or_default();
        if pid.lines().nth(7).map(str::trim) == Some("ready") {
            return Ok(server);
        }
        if matches!(server.child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
            let log = std::fs::read_to_string(server.dir.join("postgres.log")).unwrap_or_default();
            return Err(usage(format!("postgres did not start:\n{log}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn connect(server: &Server, db: &str) -> Result<tokio_postgres::Client, CmdError> {
    let mut pg = tokio_postgres::Config::new();
    pg.host_path(&server.dir)
        .port(server.port)
        .user("postgres")
        .dbname(db);
    let (client, conn) = pg.connect(tokio_postgres::NoTls).await.map_err(usage)?;
    tokio::spawn(conn);
    Ok(client)
}

/// One shopper's journey, `n` numbering its rows.
fn journey(n: u64) -> String {
    let pick = |k: u64| (n.wrapping_mul(2_654_435_761) >> 7) % k;
    let session = format!("demo-s{n}");
    let click = match pick(4) {
        0 => format!("gclid = 'Cj0KCQ-demo-{n}'"),
        1 => format!("fbclid = 'IwAR-demo-{n}', fbclid_seen_at = now()"),
        2 => format!("wbraid = 'WbR-demo-{n}'"),
        _ => "fbp = 'fb.1.1596403881668.1116446470'".to_owned(),
    };
    let consent = if pick(10) == 0 { "denied" } else { "granted" };
    let mut sql = format!(
        "INSERT INTO sessions (id, client_ip, user_agent, landing_url) VALUES ('{session}', '192.0.2.{ip}', 'Mozilla/5.0 (demo)', 'https://shop.example/p/{p}');
         UPDATE sessions SET {click} WHERE id = '{session}';
         INSERT INTO consents (session_id, ad_storage, analytics_storage, ad_user_data, ad_personalization) VALUES ('{session}', 'granted', 'granted', '{consent}', '{consent}');
         INSERT INTO customers (id, email, phone, first_name, last_name, country, session_id) VALUES ({n}, 'shopper{n}@example.com', '(650) 555-{ph:04}', 'Demo', 'Shopper', 'US', '{session}');
         INSERT INTO product_views (session_id, customer_id, product_id, page_url)
           SELECT '{session}', {n}, 'SKU-' || g, 'https://shop.example/p/' || g FROM generate_series({p}, {p} + 3) g;",
        ip = n % 250 + 1,
        p = pick(20),
        ph = n % 10_000,
    );
    if pick(3) > 0 {
        sql.push_str(&format!(
            "INSERT INTO carts (id, session_id, customer_id) VALUES ({n}, '{session}', {n});
             INSERT INTO cart_items (cart_id, session_id, product_id, quantity, unit_price) VALUES ({n}, '{session}', 'SKU-{p}', 2, 12.50);
             INSERT INTO checkouts (id, cart_id, session_id, customer_id, total) VALUES ({n}, {n}, '{session}', {n}, 25.00);
             INSERT INTO checkout_payments (checkout_id, session_id, customer_id, method) VALUES ({n}, '{session}', {n}, 'card');
             BEGIN;
             INSERT INTO orders (id, customer_id, status, total, session_id, checkout_id) VALUES ({n}, {n}, 'pending', 25.00, '{session}', {n});
             INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES ({n}, 'SKU-{p}', 2, 12.50);
             COMMIT;
             UPDATE orders SET status = 'paid', paid_at = now() WHERE id = {n};",
            p = pick(20)
        ));
    }
    // Now and then a bad row: a phone no country can make sense of and an
    // unknown currency; derivation leaves those fields out with a counted
    // note instead of stopping (the health page's notes show them).
    if pick(25) == 0 {
        sql.push_str(&format!(
            "INSERT INTO leads (session_id, form, email, phone) VALUES ('{session}', 'contact', 'not-an-email', '12');
             INSERT INTO orders (id, customer_id, status, total, currency, session_id) VALUES ({}, {n}, 'paid', 3.00, 'XXX', '{session}');",
            n + 1_000_000_000
        ));
    }
    if pick(5) == 0 {
        sql.push_str(&format!("INSERT INTO leads (session_id, form, email) VALUES ('{session}', 'newsletter', 'lead{n}@example.com');"));
    }
    sql
}

/// Runs the demo until `shutdown`.
pub async fn run(args: &DemoArgs, shutdown: watch::Receiver<bool>) -> Result<(), CmdError> {
    let server = tokio::task::spawn_blocking(start_postgres)
        .await
        .map_err(usage)??;
    let admin = connect(&server, "postgres").await?;
    admin
        .batch_execute("CREATE DATABASE shop")
        .await
        .map_err(usage)?;
    let shop = connect(&server, "shop").await?;
    shop.batch_execute(SCHEMA).await.map_err(usage)?;

    let sandbox = crate::sandbox::Sandbox::new(crate::sandbox::SandboxConfig::default());
    let mut actions = String::new();
    for c in crate::event::CANONICAL {
        let id = sandbox
            .google()
            .seed_conversion_action(&format!("capi-cdc {}", c.kind), c.ads_category);
        actions.push_str(&format!("\"{}\" = \"{id}\"\n", c.kind));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(usage)?;
    let sandbox_url = format!("http://{}", listener.local_addr().map_err(usage)?);
    let (sandbox_stop, mut sandbox_rx) = watch::channel(false);
    tokio::spawn(crate::sandbox::serve_sandbox(
        listener,
        sandbox.clone(),
        async move {
            let _ = sandbox_rx.wait_for(|s| *s).await;
        },
    ));
    let g = crate::sandbox::google::GoogleSandboxConfig::default();
    let meta = crate::sandbox::SandboxConfig::default();
    let token = format!(
        "demo-admin-{:016x}",
        (u64::from(std::process::id()) * 0x9E37_79B9) ^ crate::spool::Ledger::now_ms() as u64
    );
    let toml = format!(
        r#"
[source]
url = "postgresql://postgres@/shop?host={dir}&port={port}"
[spool]
path = "{dir}/spool/"
[admin]
listen = "{admin}"
token = "{token}"
grades_interval_s = 30
[destinations.meta]
base_url = "{sandbox_url}"
pixel_id = "{pixel}"
access_token = "{meta_token}"
test_event_code = "DEMO1"
batch_max_age_s = 5
[destinations.google]
oauth_token_url = "{sandbox_url}/token"
data_manager_url = "{sandbox_url}"
ads_api_url = "{sandbox_url}"
client_id = "{client_id}"
client_secret = "{client_secret}"
refresh_token = "{refresh}"
operating_account_id = "{account}"
batch_max_age_s = 5
[destinations.google.conversion_actions]
{actions}"#,
        dir = server.dir.display(),
        port = server.port,
        admin = args.admin,
        pixel = meta.meta_pixel_id,
        meta_token = meta.meta_access_token,
        client_id = g.client_id,
        client_secret = g.client_secret,
        refresh = g.refresh_token,
        account = g.operating_account_id,
    );
    let config = Config::from_figment(
        figment::Figment::new().merge(figment::providers::Toml::string(&toml)),
    )
    .map_err(usage)?;
    for line in crate::source::setup::setup(&config, false)
        .await
        .map_err(usage)?
        .lines
    {
        tracing::info!(setup = %line);
    }
    println!(
        "capi-cdc demo: PostgreSQL in {}, sandbox at {sandbox_url}",
        server.dir.display()
    );
    println!(
        "health page: http://{}/   (admin token for the test button: {token})",
        args.admin
    );
    println!(
        "storefront traffic: {} shopper journeys per second; Ctrl-C stops everything",
        args.rate
    );
    let run = tokio::spawn(crate::run::run(
        config,
        Default::default(),
        shutdown.clone(),
    ));
    let every = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut n = 0u64;
    let mut stop = shutdown.clone();
    loop {
        n += 1;
        if let Err(e) = shop.batch_execute(&journey(n)).await {
            tracing::warn!(error = %e, "demo traffic failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let _ = run.await;
    let _ = sandbox_stop.send(true);
    drop(shop);
    drop(admin);
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .map_err(usage)?;
    println!("capi-cdc demo: stopped, {n} shopper journeys played");
    Ok(())
}
