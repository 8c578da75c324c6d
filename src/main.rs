//! The `capi-cdc` binary: parse the command line, load configuration, start
//! logging, call the library, and map the outcome to an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::sync::watch;

use capi_cdc::config::{Config, DEFAULT_CONFIG_PATH};
use capi_cdc::error::ExitCode as Exit;
use capi_cdc::telemetry::{self, LogFormat};

/// jemalloc rather than glibc's malloc (settings in `.cargo/config.toml`),
/// and as the process's `malloc` too (the crate's
/// `unprefixed_malloc_on_supported_platforms`), so SQLite's page caches use
/// it. With an arena per thread, glibc kept the backlog drain's high-water
/// mark for good: workload C ended its live phase at 147 MiB RSS, against
/// 86 MiB with jemalloc for Rust alone and a 44 MiB median with jemalloc
/// for everything, in 2 arenas (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Tails PostgreSQL logical replication and forwards conversions to Meta.
#[derive(Debug, Parser)]
#[command(name = "capi-cdc", version, about)]
struct Cli {
    /// Configuration file (TOML); CAPI_CDC_* environment variables override it.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH, env = "CAPI_CDC_CONFIG")]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stream, derive, spool and deliver until stopped (SIGTERM / Ctrl-C).
    Run {
        /// Start even if the slot is ahead of the spool; the gap is logged and must be backfilled.
        #[arg(long)]
        accept_gap: bool,
    },
    /// Create the publication and the replication slot (idempotent).
    Setup {
        /// Print the SQL for review instead of running it.
        #[arg(long)]
        print_sql: bool,
    },
    /// Check the server, slot and configuration; exit non-zero if capi-cdc could not run.
    Check,
    /// Show the spool checkpoint, delivery counts, and the slot's position and retained WAL.
    Status {
        /// One business event's whole story (rule, commit, consent, identifiers as sent, each destination's answer), as JSON.
        #[arg(long)]
        event: Option<String>,
        /// The per destination x kind picture (as /api/health) as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Dead letters per destination with the platform's reason: list, retry or drop them.
    DeadLetters {
        #[command(subcommand)]
        action: Option<DeadAction>,
    },
    /// Create the Google conversion actions the rules need (idempotent) and print their IDs as TOML.
    Provision,
    /// Derive events from rows already in the database, in one snapshot, and spool them for delivery.
    Backfill {
        /// Business time at or after: 2026-12-01, 2026-12-01T08:00:00Z, or an age like 30d.
        #[arg(long)]
        since: String,
        /// Business time before (same forms; default now).
        #[arg(long)]
        until: Option<String>,
        /// Only this event kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only this destination.
        #[arg(long)]
        destination: Option<String>,
        /// Count what would be spooled; spool nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-deliver spooled events by commit LSN range, with their original IDs (never moves the slot).
    Replay {
        /// First commit LSN, e.g. 0/16B3748.
        #[arg(long)]
        from_lsn: capi_cdc::lsn::Lsn,
        /// Last commit LSN (default: the spool checkpoint).
        #[arg(long)]
        to_lsn: Option<capi_cdc::lsn::Lsn>,
        /// Only this destination (meta, google).
        #[arg(long)]
        destination: Option<String>,
        /// Only this event kind.
        #[arg(long)]
        kind: Option<String>,
        /// Print what would be sent per destination and kind; send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Send one clearly marked test purchase to each enabled destination and print the answers.
    SendTest {
        /// Meta's test event code (Events Manager → Test events); overrides destinations.meta.test_event_code.
        #[arg(long)]
        test_event_code: Option<String>,
    },
    /// Print decoded changes as JSON lines from a temporary slot.
    Tail {
        /// Stop after this many row changes.
        #[arg(long)]
        max_changes: Option<u64>,
    },
    /// Everything on embedded defaults: a throwaway PostgreSQL, the sandbox, setup, run and storefront traffic.
    Demo {
        /// Where the health page and admin API listen.
        #[arg(long, default_value = "127.0.0.1:9187")]
        admin: std::net::SocketAddr,
        /// Shopper journeys per second.
        #[arg(long, default_value_t = 2)]
        rate: u32,
    },
    /// Serve local Meta look-alike endpoints for tests and demos.
    Sandbox {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9188")]
        listen: String,
        /// Pixel ID the sandbox accepts.
        #[arg(long, default_value = "1234567890")]
        meta_pixel_id: String,
        /// Access token the sandbox accepts.
        #[arg(
            long,
            env = "CAPI_CDC_SANDBOX_META_TOKEN",
            default_value = "sandbox-meta-token"
        )]
        meta_access_token: String,
        /// Create a Google conversion action named `capi-cdc <kind>` for every
        /// built-in kind at start, as if they had been made long ago (so
        /// `capi-cdc provision` finds them and uploads need not wait 6 hours).
        #[arg(long)]
        seed_google_actions: bool,
    },
    /// Write a synthetic storefront's traffic (the demo's mix) into a database with the reference schema.
    Storefront {
        /// The shop database, e.g. postgresql://user:password@host:5432/shop.
        #[arg(long)]
        url: String,
        /// Shopper journeys per second; 0 plays them as fast as the database takes them.
        #[arg(long, default_value_t = 2)]
        rate: u32,
        /// Stop after this many journeys (default: until SIGTERM or Ctrl-C).
        #[arg(long)]
        journeys: Option<u64>,
        /// First journey number (default: one past the highest customer ID);
        /// give parallel storefronts disjoint ranges.
        #[arg(long)]
        first: Option<u64>,
        /// Rewrite this (empty) file after each committed journey, for health checks.
        #[arg(long)]
        heartbeat_file: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum DeadAction {
    /// List dead letters (newest first) and row changes that could not become events.
    List(DeadArgs),
    /// Put dead letters back to pending with a fresh retry budget (same event IDs).
    Retry(DeadArgs),
    /// Drop dead letters (kept as skipped, with the reason).
    Drop(DeadArgs),
}

#[derive(Debug, clap::Args)]
struct DeadArgs {
    /// Only this destination (meta, google).
    #[arg(long)]
    destination: Option<String>,
    /// Only this event kind (e.g. transaction.purchase).
    #[arg(long)]
    kind: Option<String>,
    /// Dead-lettered at or after: 2026-12-01, 2026-12-01T08:00:00Z, or an age like 6h.
    #[arg(long)]
    since: Option<String>,
    /// Dead-lettered before (same forms).
    #[arg(long)]
    until: Option<String>,
    /// List at most this many.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if matches!(cli.command, Command::Run { .. }) {
        // Delivery, the admin server and housekeeping yield the cores to the
        // slot's drain, which `run` gives a runtime of its own.
        builder.on_thread_start(capi_cdc::run::lower_priority);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Failure.into();
        }
    };
    runtime.block_on(dispatch(cli))
}

/// Turns SIGTERM / SIGINT into the shutdown signal every stage watches.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

async fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Sandbox {
            listen,
            meta_pixel_id,
            meta_access_token,
            seed_google_actions,
        } => {
            let listener = match tokio::net::TcpListener::bind(&listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: sandbox --listen {listen}: {e}");
                    return Exit::Failure.into();
                }
            };
            let config = capi_cdc::sandbox::SandboxConfig {
                meta_pixel_id,
                meta_access_token,
                ..Default::default()
            };
            let sandbox = capi_cdc::sandbox::Sandbox::new(config);
            if seed_google_actions {
                for c in capi_cdc::event::CANONICAL {
                    let name = format!("capi-cdc {}", c.kind);
                    let id = sandbox
                        .google()
                        .seed_conversion_action(&name, c.ads_category);
                    tracing::info!(action = %name, id = %id, "sandbox seeded a Google conversion action");
                }
            }
            let mut stop = shutdown_signal();
            tracing::info!(listen = %listen, "sandbox serving Meta and Google look-alike endpoints");
            let result = capi_cdc::sandbox::serve_sandbox(listener, sandbox, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: sandbox: {e}");
                    Exit::Failure.into()
                }
            }
        }
        Command::Storefront {
            url,
            rate,
            journeys,
            first,
            heartbeat_file,
        } => done(storefront(&url, rate, journeys, first, heartbeat_file.as_deref()).await),
        Command::Demo { admin, rate } => {
            let args = capi_cdc::cmd::demo::DemoArgs { admin, rate };
            done(capi_cdc::cmd::demo::run(&args, shutdown_signal()).await)
        }
        command => {
            let config = match Config::load(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Exit::Config.into();
                }
            };
            with_config(command, config).await
        }
    }
}

/// `capi-cdc storefront`: plays journeys into `url` until done or stopped.
async fn storefront(
    url: &str,
    rate: u32,
    journeys: Option<u64>,
    first: Option<u64>,
    heartbeat: Option<&std::path::Path>,
) -> Result<(), capi_cdc::cmd::CmdError> {
    let usage = |e: String| capi_cdc::cmd::CmdError::Usage(e);
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| usage(format!("storefront --url: cannot connect: {e}")))?;
    tokio::spawn(conn);
    let next = match first {
        Some(n) => Ok(n),
        None => capi_cdc::storefront::next_journey(&client).await,
    };
    let first = next.map_err(|e| {
        usage(format!(
            "storefront --url: the database lacks the reference schema (apply sql/schema.sql): {}",
            capi_cdc::source::pg_error_text(&e)
        ))
    })?;
    tracing::info!(first, rate, "storefront playing shopper journeys");
    let played =
        capi_cdc::storefront::play(&client, first, rate, journeys, heartbeat, shutdown_signal())
            .await;
    println!("storefront: {played} shopper journeys played");
    Ok(())
}

/// The commands that need configuration.
async fn with_config(command: Command, config: Config) -> ExitCode {
    match command {
        Command::Sandbox { .. } | Command::Demo { .. } | Command::Storefront { .. } => {
            unreachable!("runs without configuration")
        }
        Command::Run { accept_gap } => {
            let opts = capi_cdc::run::RunOptions { accept_gap };
            let result = capi_cdc::run::run(config, opts, shutdown_signal()).await;
            if let Err(e) = &result {
                tracing::error!(error = %e, "capi-cdc stopped");
            }
            done(result)
        }
        Command::Setup { print_sql } => done(
            capi_cdc::source::setup::setup(&config, print_sql)
                .await
                .map(|outcome| outcome.lines.iter().for_each(|l| println!("{l}"))),
        ),
        Command::Check => {
            let report = capi_cdc::source::preflight::check(&config).await;
            print!("{report}");
            if report.can_run() {
                ExitCode::SUCCESS
            } else {
                Exit::CheckFailed.into()
            }
        }
        Command::Status {
            event: Some(id), ..
        } => done(
            capi_cdc::status::event_story(&config, &id)
                .await
                .map(|v| println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default())),
        ),
        Command::Status { json: true, .. } => {
            done(capi_cdc::status::json(&config).map(|v| println!("{v}")))
        }
        Command::Status { .. } => done(
            capi_cdc::status::status(&config)
                .await
                .map(|t| print!("{t}")),
        ),
        Command::DeadLetters { action } => {
            use capi_cdc::cmd::dead_letters::{self, Action};
            let (action, args) = match action {
                None => (
                    Action::List,
                    DeadArgs {
                        destination: None,
                        kind: None,
                        since: None,
                        until: None,
                        limit: 100,
                    },
                ),
                Some(DeadAction::List(a)) => (Action::List, a),
                Some(DeadAction::Retry(a)) => (Action::Retry, a),
                Some(DeadAction::Drop(a)) => (Action::Drop, a),
            };
            let now = capi_cdc::spool::Ledger::now_ms();
            let time =
                |t: Option<String>| t.map(|t| capi_cdc::cmd::parse_time_ms(&t, now)).transpose();
            let filter = match (time(args.since), time(args.until)) {
                (Ok(since_ms), Ok(until_ms)) => capi_cdc::spool::DeadFilter {
                    destination: args.destination,
                    kind: args.kind,
                    since_ms,
                    until_ms,
                },
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("error: {e}");
                    return Exit::Config.into();
                }
            };
            done(dead_letters::run(&config, action, &filter, args.limit).map(|t| print!("{t}")))
        }
        Command::Replay {
            from_lsn,
            to_lsn,
            destination,
            kind,
            dry_run,
        } => {
            let args = capi_cdc::cmd::replay::ReplayArgs {
                from: from_lsn,
                to: to_lsn,
                destination,
                kind,
                dry_run,
            };
            done(
                capi_cdc::cmd::replay::run(&config, &args, shutdown_signal())
                    .await
                    .map(|t| print!("{t}")),
            )
        }
        Command::Backfill {
            since,
            until,
            kind,
            destination,
            dry_run,
        } => {
            let now = capi_cdc::spool::Ledger::now_ms();
            let since_ms = match capi_cdc::cmd::parse_time_ms(&since, now) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: --since: {e}");
                    return Exit::Config.into();
                }
            };
            let until_ms = match until
                .map(|u| capi_cdc::cmd::parse_time_ms(&u, now))
                .transpose()
            {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: --until: {e}");
                    return Exit::Config.into();
                }
            };
            let args = capi_cdc::cmd::backfill::BackfillArgs {
                since_ms,
                until_ms,
                kind,
                destination,
                dry_run,
            };
            done(
                capi_cdc::cmd::backfill::run(&config, &args, shutdown_signal())
                    .await
                    .map(|t| print!("{t}")),
            )
        }
        Command::Provision => done(
            capi_cdc::cmd::provision::run(&config)
                .await
                .map(|t| print!("{t}")),
        ),
        Command::SendTest { test_event_code } => {
            match capi_cdc::cmd::send_test::run(&config, test_event_code).await {
                Ok((text, ok)) => {
                    print!("{text}");
                    if ok {
                        ExitCode::SUCCESS
                    } else {
                        Exit::Failure.into()
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Exit::NotReady.into()
                }
            }
        }
        Command::Tail { max_changes } => {
            let opts = capi_cdc::tail::TailOptions { max_changes };
            let mut stdout = std::io::stdout();
            done(capi_cdc::tail::tail(&config, &opts, &mut stdout, shutdown_signal()).await)
        }
    }
}

/// Success, or the error on stderr and the "not ready" exit code.
fn done<T, E: std::fmt::Display>(result: Result<T, E>) -> ExitCode {
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            Exit::NotReady.into()
        }
    }
}
