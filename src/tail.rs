//! `capi-cdc tail`: decoded changes as JSON lines, from a temporary slot.
//!
//! A DBA's window into what the connector sees. It creates a TEMPORARY
//! logical slot (dropped by the server when the session ends) and never
//! touches the connector's slot or spool.

use std::io::Write;

use pgwire_replication::{ReplicationClient, ReplicationEvent};
use tokio::sync::watch;

use crate::config::Config;
use crate::decode::{Decoder, Message};
use crate::lsn::Lsn;
use crate::source::{describe_target, replication_config, SourceError, StreamOptions};

/// Flags of `capi-cdc tail`.
#[derive(Debug, Clone, Default)]
pub struct TailOptions {
    /// Stop after this many row changes.
    pub max_changes: Option<u64>,
}

/// Streams until shutdown (or `max_changes`), writing one JSON object per
/// line to `out`.
pub async fn tail(
    config: &Config,
    opts: &TailOptions,
    out: &mut (dyn Write + Send),
    mut shutdown: watch::Receiver<bool>,
) -> Result<u64, SourceError> {
    let src = &config.source;
    let target = describe_target(&src.pg);
    let slot = format!("capi_cdc_tail_{}", std::process::id());
    let repl_err = |source| SourceError::Replication {
        target: target.clone(),
        slot: slot.clone(),
        source,
    };
    // Binary values where the server can send them (PostgreSQL 14+).
    let control = crate::source::control_client(src).await?;
    let version = crate::source::server_version_num(&control, &target).await?;
    drop(control);
    let stream_opts = StreamOptions {
        slot: slot.clone(),
        publication: src.publication.clone(),
        start: Lsn::ZERO,
        binary: version >= 140000,
        status_interval: src.status_interval,
    };
    let mut client = ReplicationClient::connect_gated(replication_config(src, &stream_opts)?)
        .await
        .map_err(repl_err)?;
    let rows = client
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT {slot} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT"
        ))
        .await
        .map_err(repl_err)?;
    let consistent: Lsn = rows
        .first()
        .and_then(|r| r.get(1).cloned().flatten())
        .and_then(|b| String::from_utf8_lossy(&b).parse().ok())
        .unwrap_or_default();
    // START_REPLICATION at 0/0 begins at the new slot's consistent point.
    tracing::info!(slot = %slot, start = %consistent, "tailing from a temporary slot");
    client.start().await.map_err(repl_err)?;
    client.wait_started().await.map_err(repl_err)?;

    let mut decoder = Decoder::new();
    let mut changes = 0u64;
    loop {
        let event = tokio::select! {
            ev = client.recv() => ev.map_err(repl_err)?,
            _ = shutdown.changed() => break,
        };
        let Some(event) = event else { break };
        let line = match &event {
            ReplicationEvent::Begin {
                final_lsn,
                xid,
                commit_time_micros,
            } => Some(serde_json::json!({
                "op": "begin", "final_lsn": Lsn(final_lsn.as_u64()).to_string(), "xid": xid,
                "commit_time_us": commit_time_micros + 946_684_800_000_000i64,
            })),
            ReplicationEvent::Commit { end_lsn, lsn, .. } => Some(serde_json::json!({
                "op": "commit", "commit_lsn": Lsn(lsn.as_u64()).to_string(), "end_lsn": Lsn(end_lsn.as_u64()).to_string(),
            })),
            ReplicationEvent::XLogData {
                data, wal_start, ..
            } => {
                let message = decoder.decode(data).map_err(|e| {
                    SourceError::NotReady(format!(
                        "cannot decode the change at {}: {e}",
                        Lsn(wal_start.as_u64())
                    ))
                })?;
                if matches!(
                    message,
                    Message::Insert { .. }
                        | Message::Update { .. }
                        | Message::Delete { .. }
                        | Message::Truncate { .. }
                ) {
                    changes += 1;
                }
                Some(message.to_json())
            }
            ReplicationEvent::Message {
                transactional,
                prefix,
                content,
                lsn,
            } => Some(serde_json::json!({
                "op": "message", "transactional": transactional, "prefix": prefix,
                "lsn": Lsn(lsn.as_u64()).to_string(), "content_bytes": content.len(),
            })),
            ReplicationEvent::KeepAlive { .. } | ReplicationEvent::StoppedAt { .. } => None,
        };
        if let Some(line) = line {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        if let ReplicationEvent::Commit { end_lsn, .. } = event {
            // Acknowledge what was printed so the temporary slot does not pin WAL.
            client.update_applied_lsn(end_lsn);
            if opts.max_changes.is_some_and(|m| changes >= m) {
                break;
            }
        }
    }
    client.stop();
    let _ = client.shutdown().await;
    Ok(changes)
}
