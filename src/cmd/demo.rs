//! `capi-cdc demo`: everything on embedded defaults, in one command.
//!
//! Starts a throwaway PostgreSQL ([`crate::pgcluster`], the launcher the
//! tests use: the installed server binaries, as the `postgres` user when run
//! as root, `wal_level=logical`, in a temp dir), loads the reference schema, starts the sandbox (Meta and
//! Google look-alikes, conversion actions seeded for every kind), runs
//! `setup` and `run` against them, and plays [`crate::storefront`]'s traffic
//! until Ctrl-C; then it stops
//! everything and removes the temp dir. Nothing leaves the machine.

use std::net::SocketAddr;

use figment::providers::Format as _;
use tokio::sync::watch;

use super::CmdError;
use crate::config::Config;
use crate::pgcluster::Cluster;

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

async fn connect(cluster: &Cluster, db: &str) -> Result<tokio_postgres::Client, CmdError> {
    let (client, conn) = tokio_postgres::connect(&cluster.url(db), tokio_postgres::NoTls)
        .await
        .map_err(usage)?;
    tokio::spawn(conn);
    Ok(client)
}

/// Runs the demo until `shutdown`.
pub async fn run(args: &DemoArgs, shutdown: watch::Receiver<bool>) -> Result<(), CmdError> {
    let server = tokio::task::spawn_blocking(|| crate::pgcluster::start(&[]))
        .await
        .map_err(usage)?
        .map_err(|e| match e {
            crate::pgcluster::ClusterError::NoBinaries => usage(format!(
                "the demo needs PostgreSQL's server binaries. {e}; or run the stack with `docker compose up`"
            )),
            e => usage(e),
        })?;
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
url = "{url}"
[spool]
path = "{spool}"
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
        url = server.url("shop"),
        spool = server.socket_dir().join("spool/").display(),
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
        server.socket_dir().display()
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
    let n = crate::storefront::play(&shop, 1, args.rate.max(1), None, None, shutdown.clone()).await;
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
