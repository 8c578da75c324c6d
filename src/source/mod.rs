//! Source: the PostgreSQL side — connections, the slot, the publication.
//!
//! Inputs: `[source]` configuration. Outputs: a control connection for SQL
//! (`tokio-postgres`), a replication stream (`pgwire-replication`, see
//! `docs/architecture.md` for why), and facts about the slot.
//!
//! Invariants:
//! - The replication stream starts at the spool checkpoint, and only after
//!   [`slot::start_position`] has compared it with the slot (DESIGN.md §2.3).
//! - Standby status updates are sent by the replication worker on its own
//!   task, independent of how fast the apply loop or delivery run; the only
//!   position ever reported is the spool checkpoint.

pub mod catalog;
pub mod preflight;
pub mod setup;
pub mod slot;
pub mod snapshot;
pub mod tls;

use std::time::Duration;

use pgwire_replication::{ReplicationConfig, SslMode, TlsConfig};
use tokio_postgres::config::{Host, SslMode as PgSslMode};

use crate::config::SourceConfig;
use crate::lsn::Lsn;

/// A source problem: what failed, against which server/slot, and the remedy.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Could not open a SQL connection.
    #[error("cannot connect to PostgreSQL at {target}: {}. Check source.url (and source.tls_ca_file for TLS), that the server runs and that pg_hba.conf admits this user", chain(source))]
    Connect {
        /// host:port/db as user (no password).
        target: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A control query failed.
    #[error("{what} failed on {target}: {}", chain(source))]
    Query {
        /// What was being done.
        what: &'static str,
        /// host:port/db.
        target: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The replication connection failed.
    #[error("replication connection to {target} (slot {slot}): {source}")]
    Replication {
        /// host:port/db.
        target: String,
        /// The slot.
        slot: String,
        /// The client's error.
        #[source]
        source: pgwire_replication::PgWireError,
    },
    /// `source.url` cannot be used for replication.
    #[error("configuration key `source.url`: {0}")]
    Url(String),
    /// The server or slot is not in a state the connector can run on.
    #[error("{0}")]
    NotReady(String),
    /// The rules do not fit the database (each problem names its place).
    #[error("the rules do not fit the database:\n  {}\nRemedy: correct the rules file (docs/configuration.md) or the schema, then start again", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Rules(Vec<catalog::Problem>),
    /// TLS could not be set up (the message names the key or file).
    #[error("{0}")]
    Tls(String),
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    /// A lookup identity could not be encoded.
    #[error("encoding a lookup identity: {0}")]
    Identity(#[source] serde_json::Error),
}

/// An error and its causes, `outer: inner: innermost`: the driver's own
/// message often hides the useful part (a TLS handshake's certificate error,
/// the server's message) one level down.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    if let Some(pg) = error.downcast_ref::<tokio_postgres::Error>() {
        if pg.as_db_error().is_some() {
            return pg_error_text(pg);
        }
    }
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        if let Some(pg) = cause.downcast_ref::<tokio_postgres::Error>() {
            if pg.as_db_error().is_some() {
                text.push_str(": ");
                text.push_str(&pg_error_text(pg));
                break;
            }
        }
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

/// A driver error for logs and messages. A server error is shown as its
/// severity, message, SQLSTATE and hint, never its DETAIL: that can quote
/// the row's values ("Failing row contains (…)", "Key (email)=(…)"), which
/// are the shopper's data.
pub fn pg_error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!(
                "db error: {}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(hint) = db.hint() {
                text.push_str("; hint: ");
                text.push_str(hint);
            }
            text
        }
        None => chain(error),
    }
}

impl SourceError {
    /// True for failures that retrying cannot fix: the server rejected the
    /// credentials or the database does not exist (decided on SQLSTATE).
    pub fn is_permanent(&self) -> bool {
        use tokio_postgres::error::SqlState;
        let code = match self {
            SourceError::Connect { source, .. } | SourceError::Query { source, .. } => {
                source.code()
            }
            _ => return true,
        };
        code.is_some_and(|c| {
            [
                SqlState::INVALID_PASSWORD,
                SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
                SqlState::INVALID_CATALOG_NAME,
                SqlState::INSUFFICIENT_PRIVILEGE,
            ]
            .contains(c)
        })
    }
}

/// `host:port/db as user` for messages; never the password.
pub fn describe_target(pg: &tokio_postgres::Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "(default host)".into(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{} as {}",
        pg.get_dbname().unwrap_or("?"),
        pg.get_user().unwrap_or("?")
    )
}

/// Opens a SQL (non-replication) connection and drives it on a task.
pub async fn control_client(src: &SourceConfig) -> Result<tokio_postgres::Client, SourceError> {
    let target = describe_target(&src.pg);
    let mut pg = src.pg.clone();
    if pg.get_application_name().is_none() {
        pg.application_name("capi-cdc");
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_secs(10));
    }
    let options = match pg.get_options() {
        Some(own) => format!("{own} {SESSION_OPTIONS}"),
        None => SESSION_OPTIONS.to_owned(),
    };
    pg.options(&options);
    let plain = matches!(pg.get_ssl_mode(), PgSslMode::Disable)
        || matches!(pg.get_hosts().first(), Some(Host::Unix(_)));
    if plain {
        connect_with(&pg, target, tokio_postgres::NoTls).await
    } else {
        let config = tls::client_config(src.tls_ca_file.as_deref())?;
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
        connect_with(&pg, target, tls).await
    }
}

async fn connect_with<T>(
    pg: &tokio_postgres::Config,
    target: String,
    tls: T,
) -> Result<tokio_postgres::Client, SourceError>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = pg
        .connect(tls)
        .await
        .map_err(|source| SourceError::Connect { target, source })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "control connection closed");
        }
    });
    Ok(client)
}

/// One server setting (`current_setting(name)`) as text.
pub async fn setting(
    client: &tokio_postgres::Client,
    target: &str,
    name: &'static str,
) -> Result<String, SourceError> {
    client
        .query_one("SELECT current_setting($1)", &[&name])
        .await
        .map(|row| row.get(0))
        .map_err(|source| SourceError::Query {
            what: name,
            target: target.to_owned(),
            source,
        })
}

/// `server_version_num`, e.g. 150018; binary values need 140000 or more.
pub async fn server_version_num(
    client: &tokio_postgres::Client,
    target: &str,
) -> Result<i32, SourceError> {
    let text = setting(client, target, "server_version_num").await?;
    text.parse().map_err(|_| {
        SourceError::NotReady(format!("{target} reported server_version_num {text:?}"))
    })
}

/// Options for one replication session.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Slot to stream from.
    pub slot: String,
    /// Publication names.
    pub publication: String,
    /// Where to start (the checkpoint).
    pub start: Lsn,
    /// Ask for binary column values (PostgreSQL ≥ 14).
    pub binary: bool,
    /// Standby status interval.
    pub status_interval: Duration,
}

/// Messages in the replication client's own channel, at most. The run
/// loop's relay empties it into a channel bounded by bytes
/// (`source.receive_buffer_mb`), so this is the only count bound left: its
/// memory is at most this many times the largest row change.
pub const RECEIVE_CHANNEL_MESSAGES: usize = 64;

/// Builds the replication client's configuration from `source.url`.
pub fn replication_config(
    src: &SourceConfig,
    opts: &StreamOptions,
) -> Result<ReplicationConfig, SourceError> {
    let pg = &src.pg;
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => return Err(SourceError::Url("names no host".into())),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let user = pg
        .get_user()
        .ok_or_else(|| SourceError::Url("names no user: add user@ before the host".into()))?;
    let password = pg
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let db = pg.get_dbname().unwrap_or(user);
    // The same sslmode meaning as the control connection (see `tls`).
    let tls = if host.starts_with('/') {
        TlsConfig::disabled()
    } else {
        match (pg.get_ssl_mode(), &src.tls_ca_file) {
            (PgSslMode::Disable, _) => TlsConfig::disabled(),
            // pgwire-replication checks host names only for DNS names; an IP
            // literal gets the chain check (the control connection also
            // checks the IP against the certificate).
            (_, Some(ca)) if host.parse::<std::net::IpAddr>().is_ok() => {
                TlsConfig::verify_ca(Some(ca.clone()))
            }
            (_, Some(ca)) => TlsConfig::verify_full(Some(ca.clone())),
            (PgSslMode::Require, None) => TlsConfig::require(),
            (_, None) => TlsConfig {
                mode: SslMode::Prefer,
                ..TlsConfig::disabled()
            },
        }
    };
    Ok(ReplicationConfig::new(
        host,
        user,
        password,
        db,
        opts.slot.clone(),
        opts.publication.as_str(),
    )
    .with_port(port)
    .with_tls(tls)
    .with_start_lsn(pgwire_replication::Lsn::from_u64(opts.start.0))
    .with_status_interval(opts.status_interval)
    .with_wakeup_interval(opts.status_interval)
    .with_buffer_size(RECEIVE_CHANNEL_MESSAGES)
    .with_binary(opts.binary)
    .with_application_name("capi-cdc")
    .with_options(match pg.get_options() {
        Some(own) => format!("{own} {SESSION_OPTIONS}"),
        None => SESSION_OPTIONS.to_owned(),
    }))
}

/// Session settings the decoder's text parsing and the snapshot's values
/// depend on, pinned whatever the server's or role's defaults: ISO dates,
/// UTC offsets, round-trip float digits. (Binary values on PostgreSQL 14+
/// do not depend on them; text values on 13 and in the snapshot do.)
pub const SESSION_OPTIONS: &str =
    "-c DateStyle=ISO,MDY -c IntervalStyle=postgres -c TimeZone=UTC -c extra_float_digits=3";

/// Prefix of the heartbeat messages capi-cdc writes into the WAL.
pub const HEARTBEAT_PREFIX: &str = "capi_cdc.heartbeat";

/// Writes a non-transactional logical message every `interval` until `stop`,
/// so the walsender has something of this database to send and acknowledge
/// even when only other databases write (DESIGN.md §2.4). Failures are
/// logged and retried on the next tick; they never stop the connector.
pub async fn heartbeat(
    src: SourceConfig,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut client: Option<tokio_postgres::Client> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            match control_client(&src).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat: cannot connect; will retry");
                    continue;
                }
            }
        }
        if let Some(c) = &client {
            let sql = format!("SELECT pg_logical_emit_message(false, '{HEARTBEAT_PREFIX}', '')");
            if let Err(e) = c.batch_execute(&sql).await {
                tracing::warn!(error = %chain(&e), "heartbeat: pg_logical_emit_message failed; will retry");
                client = None;
            }
        }
    }
}
