//! The replication slot as the server sees it, and where to start streaming.
//!
//! [`start_position`] is the start-position check of DESIGN.md §2.3: it is
//! pure so every branch is unit-tested.

use tokio_postgres::Client;

use super::SourceError;
use crate::lsn::Lsn;

/// A row of `pg_replication_slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Slot name.
    pub name: String,
    /// Output plugin (`pgoutput` expected).
    pub plugin: Option<String>,
    /// `logical` or `physical`.
    pub slot_type: String,
    /// Database the slot belongs to.
    pub database: Option<String>,
    /// PID of the walsender using it, if any.
    pub active_pid: Option<i32>,
    /// Oldest WAL the slot retains.
    pub restart_lsn: Option<Lsn>,
    /// Last position the consumer confirmed.
    pub confirmed_flush_lsn: Option<Lsn>,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// Bytes the server may write before the slot is at risk (NULL = unlimited).
    pub safe_wal_size: Option<i64>,
    /// Bytes of WAL the slot holds back (`pg_current_wal_lsn() - restart_lsn`).
    pub retained_bytes: Option<i64>,
}

fn lsn_col(row: &tokio_postgres::Row, idx: usize) -> Option<Lsn> {
    row.get::<_, Option<String>>(idx)
        .and_then(|s| s.parse().ok())
}

/// Reads the slot named `name`, `None` if it does not exist.
pub async fn slot_info(
    client: &Client,
    target: &str,
    name: &str,
) -> Result<Option<SlotInfo>, SourceError> {
    let row = client
        .query_opt(
            "SELECT slot_name::text, plugin::text, slot_type::text, database::text, active_pid,
                    restart_lsn::text, confirmed_flush_lsn::text, wal_status::text, safe_wal_size,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await
        .map_err(|source| SourceError::Query {
            what: "reading pg_replication_slots",
            target: target.to_owned(),
            source,
        })?;
    Ok(row.map(|row| SlotInfo {
        name: row.get(0),
        plugin: row.get(1),
        slot_type: row.get(2),
        database: row.get(3),
        active_pid: row.get(4),
        restart_lsn: lsn_col(&row, 5),
        confirmed_flush_lsn: lsn_col(&row, 6),
        wal_status: row.get(7),
        safe_wal_size: row.get(8),
        retained_bytes: row.get(9),
    }))
}

/// Why the stream must not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The slot's WAL was removed.
    #[error("replication slot {slot} is lost (wal_status = lost): the server removed WAL it still needed, so changes since {checkpoint} are gone. Remedy: drop the slot (SELECT pg_drop_replication_slot('{slot}')), run `capi-cdc setup` to recreate it, then `capi-cdc backfill` the gap; consider raising max_slot_wal_keep_size")]
    Lost {
        /// Slot.
        slot: String,
        /// Our checkpoint.
        checkpoint: Lsn,
    },
    /// The slot confirmed more than we ever spooled.
    #[error("replication slot {slot} is ahead of the spool: the slot's confirmed_flush_lsn is {slot_lsn} but the spool's checkpoint is {checkpoint}; {gap_bytes} bytes of WAL were never spooled and PostgreSQL will not send them again. Was the spool replaced or the slot advanced by hand? Remedy: restore the right spool, or accept the gap with `capi-cdc run --accept-gap` and backfill it")]
    Ahead {
        /// Slot.
        slot: String,
        /// The slot's position.
        slot_lsn: Lsn,
        /// Our checkpoint.
        checkpoint: Lsn,
        /// Size of the gap.
        gap_bytes: u64,
    },
    /// Not a pgoutput logical slot.
    #[error("replication slot {slot} is not a logical pgoutput slot (type {slot_type}, plugin {plugin}). Remedy: use another source.slot, or drop it and run `capi-cdc setup`")]
    WrongKind {
        /// Slot.
        slot: String,
        /// Its type.
        slot_type: String,
        /// Its plugin.
        plugin: String,
    },
    /// The slot exists but the spool never received its snapshot.
    #[error("replication slot {slot} exists but the spool has no checkpoint: the lookup snapshot taken when the slot was created never reached this spool (an interrupted `capi-cdc setup`, or a new spool.path). Starting now would derive events without the consent, sessions and customers that existed before. Remedy: run `capi-cdc setup` again (it recreates the unused slot and takes the snapshot), or start anyway with `capi-cdc run --accept-gap`")]
    NoSnapshot {
        /// Slot.
        slot: String,
    },
    /// The slot belongs to another database.
    #[error("replication slot {slot} belongs to database {found}, not {expected}. Remedy: fix source.url or source.slot")]
    WrongDatabase {
        /// Slot.
        slot: String,
        /// Its database.
        found: String,
        /// Ours.
        expected: String,
    },
}

/// Where streaming starts, given our checkpoint and the slot.
///
/// - No checkpoint (fresh spool): start at the slot's confirmed position.
/// - `wal_status = lost`: refuse.
/// - Slot ahead of the checkpoint: refuse unless `accept_gap`, then start at
///   the slot (the gap is logged by the caller).
/// - Otherwise start at the checkpoint; PostgreSQL resends whatever it has
///   not seen confirmed, and the apply loop skips what the spool has.
pub fn start_position(
    checkpoint: Option<Lsn>,
    slot: &SlotInfo,
    database: &str,
    accept_gap: bool,
) -> Result<Lsn, StartError> {
    if slot.slot_type != "logical" || slot.plugin.as_deref() != Some("pgoutput") {
        return Err(StartError::WrongKind {
            slot: slot.name.clone(),
            slot_type: slot.slot_type.clone(),
            plugin: slot.plugin.clone().unwrap_or_else(|| "none".into()),
        });
    }
    if let Some(found) = &slot.database {
        if found != database {
            return Err(StartError::WrongDatabase {
                slot: slot.name.clone(),
                found: found.clone(),
                expected: database.to_owned(),
            });
        }
    }
    if slot.wal_status.as_deref() == Some("lost") {
        return Err(StartError::Lost {
            slot: slot.name.clone(),
            checkpoint: checkpoint.unwrap_or_default(),
        });
    }
    let slot_lsn = slot.confirmed_flush_lsn.unwrap_or_default();
    match checkpoint {
        None if accept_gap => Ok(slot_lsn),
        None => Err(StartError::NoSnapshot {
            slot: slot.name.clone(),
        }),
        Some(cp) if slot_lsn > cp => {
            if accept_gap {
                Ok(slot_lsn)
            } else {
                Err(StartError::Ahead {
                    slot: slot.name.clone(),
                    slot_lsn,
                    checkpoint: cp,
                    gap_bytes: cp.bytes_until(slot_lsn),
                })
            }
        }
        Some(cp) => Ok(cp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(confirmed: u64, status: &str) -> SlotInfo {
        SlotInfo {
            name: "capi_cdc".into(),
            plugin: Some("pgoutput".into()),
            slot_type: "logical".into(),
            database: Some("shop".into()),
            active_pid: None,
            restart_lsn: Some(Lsn(confirmed)),
            confirmed_flush_lsn: Some(Lsn(confirmed)),
            wal_status: Some(status.into()),
            safe_wal_size: None,
            retained_bytes: Some(0),
        }
    }

    #[test]
    fn a_spool_without_the_snapshot_is_refused_unless_accepted() {
        let err = start_position(None, &slot(100, "reserved"), "shop", false).unwrap_err();
        assert!(matches!(err, StartError::NoSnapshot { .. }));
        assert!(err.to_string().contains("capi-cdc setup"), "{err}");
        assert_eq!(
            start_position(None, &slot(100, "reserved"), "shop", true),
            Ok(Lsn(100))
        );
    }

    #[test]
    fn behind_slot_resumes_from_checkpoint() {
        assert_eq!(
            start_position(Some(Lsn(200)), &slot(100, "reserved"), "shop", false),
            Ok(Lsn(200))
        );
        assert_eq!(
            start_position(Some(Lsn(100)), &slot(100, "extended"), "shop", false),
            Ok(Lsn(100))
        );
    }

    #[test]
    fn slot_ahead_is_refused_unless_accepted() {
        let err =
            start_position(Some(Lsn(100)), &slot(300, "reserved"), "shop", false).unwrap_err();
        assert!(matches!(err, StartError::Ahead { gap_bytes: 200, .. }));
        assert!(err.to_string().contains("--accept-gap"));
        assert_eq!(
            start_position(Some(Lsn(100)), &slot(300, "reserved"), "shop", true),
            Ok(Lsn(300))
        );
    }

    #[test]
    fn lost_slot_is_refused_even_with_accept_gap() {
        let err = start_position(Some(Lsn(100)), &slot(100, "lost"), "shop", true).unwrap_err();
        assert!(matches!(err, StartError::Lost { .. }));
        assert!(err.to_string().contains("pg_drop_replication_slot"));
    }

    #[test]
    fn wrong_plugin_or_database_is_refused() {
        let mut s = slot(1, "reserved");
        s.plugin = Some("wal2json".into());
        assert!(matches!(
            start_position(None, &s, "shop", false),
            Err(StartError::WrongKind { .. })
        ));
        assert!(matches!(
            start_position(None, &slot(1, "reserved"), "other", false),
            Err(StartError::WrongDatabase { .. })
        ));
    }
}
