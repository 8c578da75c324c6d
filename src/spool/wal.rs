//! Copying SQLite's write-ahead log back into the spool file, off the apply
//! loop, and keeping the log short.
//!
//! SQLite does this ("checkpointing" the WAL; nothing to do with our LSN
//! checkpoint) inside whichever commit first finds the WAL over 1,000 pages.
//! On the apply loop that commit then also copies pages into the main file:
//! 6 % of workload A's profile, on the thread that decides how fast the
//! slot drains. The apply loop's writer and the lanes therefore turn it off
//! ([`super::SpoolWriter::leave_wal_copy_to_others`]), and this task copies
//! every [`EVERY`] on its own connection.
//!
//! A copy alone does not shorten the log: SQLite starts writing it from the
//! beginning again only once every frame is copied and no reader still
//! reads from it, and with the lanes reading all the time that moment never
//! comes. The log then grew past 300 MB during workload A, and every page
//! read got slower with it (each read searches the log's index). So once the
//! log is longer than [`RESTART_AT_PAGES`], the copy is a `RESTART`: it waits
//! (in the spool's 0.5 ms lock steps) for the readers of the log to finish
//! and makes the next commit start the log over; that commit gives the
//! file's space past `journal_size_limit` (64 MB, every connection) back.

use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::watch;

use super::Spool;

/// How often the WAL is copied back.
pub const EVERY: Duration = Duration::from_millis(100);

/// A log longer than this (pages of 4 kB: 16 MB) is made to start over,
/// once a passive copy has copied all of it.
pub const RESTART_AT_PAGES: i64 = 4096;

/// A log longer than this (64 MB) is made to start over even if the
/// passive copy could not copy all of it (a reader on an old snapshot).
pub const FORCE_RESTART_AT_PAGES: i64 = 4 * RESTART_AT_PAGES;

/// What one copy found and did (in pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Frames in the log when the copy ran.
    pub log: i64,
    /// Frames copied into the spool file.
    pub copied: i64,
    /// Whether the log was made to start over.
    pub restarted: bool,
}

/// One copy: passive (it never waits for or blocks a writer or reader),
/// then a restart if the log is longer than [`RESTART_AT_PAGES`] and the
/// passive copy left nothing to copy, or longer than
/// [`FORCE_RESTART_AT_PAGES`].
///
/// A restart holds the write lock while it runs, so the apply loop's next
/// batch waits for it. With frames left to copy it copies them and fsyncs
/// the spool file under that lock: in workload A0 (no lanes at all) the
/// apply loop waited 418 ms of a 3.9 s drain for it (bench/RESULTS.md).
/// After a complete passive copy it only waits for readers to move on.
pub fn copy_once(conn: &Connection) -> rusqlite::Result<Copied> {
    let run = |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((
                r.get::<_, i64>(0)? == 0,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
    };
    let (_, log, copied) = run("PASSIVE")?;
    if log < RESTART_AT_PAGES || (copied < log && log < FORCE_RESTART_AT_PAGES) {
        return Ok(Copied {
            log,
            copied,
            restarted: false,
        });
    }
    let (done, _, copied) = run("RESTART")?;
    Ok(Copied {
        log,
        copied,
        restarted: done,
    })
}

/// Copies the WAL back every [`EVERY`] until `shutdown`.
pub async fn run(spool: Spool, mut shutdown: watch::Receiver<bool>) {
    let mut conn: Option<Connection> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
        let (s, c) = (spool.clone(), conn.take());
        let done = tokio::task::spawn_blocking(move || {
            let c = match c {
                Some(c) => c,
                None => s.connect()?,
            };
            copy_once(&c).map_err(|e| s.err(e))?;
            Ok::<_, super::SpoolError>(c)
        })
        .await;
        match done {
            Ok(Ok(c)) => conn = Some(c),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "copying the spool's WAL back failed; retrying at the next interval")
            }
            Err(e) => tracing::warn!(error = %e, "the WAL copy task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::{Effect, Entry};
    use crate::lsn::Lsn;

    /// Commits `batches` batches of 200 lookup rows (2 kB each, about 100
    /// pages a batch), then runs one copy on a fresh connection.
    fn write_then_copy(spool: &Spool, batches: u64, leave_to_others: bool) -> Copied {
        let mut w = spool.writer().unwrap();
        if leave_to_others {
            w.leave_wal_copy_to_others().unwrap();
        }
        let mut entry = Entry::default();
        entry.fields.insert("key".into(), "k".into());
        entry.fields.insert("pad".into(), "x".repeat(2000));
        let base = w.checkpoint().map_or(0, |c| c.0);
        for batch in 0..batches {
            for i in 0..200 {
                w.apply_state(&Effect::PutLookup {
                    lookup: "l".into(),
                    pk: format!("{}-{i}", base + batch),
                    key: "k".into(),
                    entry: entry.clone(),
                })
                .unwrap();
            }
            w.commit(Lsn(base + batch + 1)).unwrap();
        }
        copy_once(&spool.connect().unwrap()).unwrap()
    }

    #[test]
    fn the_apply_loop_leaves_the_copy_to_this_task_which_keeps_the_log_short() {
        let dir = tempfile::tempdir().unwrap();
        // SQLite's own copy inside the writer's commits keeps the log near
        // its 1,000-page threshold...
        let own = write_then_copy(
            &Spool::open(&dir.path().join("a.sqlite3")).unwrap(),
            40,
            false,
        );
        assert!(own.log < 1_500, "automatic copy: {own:?}");
        // ...without it the writer's commits copy nothing, and a log past
        // RESTART_AT_PAGES is copied whole and made to start over...
        let spool = Spool::open(&dir.path().join("b.sqlite3")).unwrap();
        let long = write_then_copy(&spool, 40, true);
        assert!(long.log > RESTART_AT_PAGES, "left to others: {long:?}");
        assert_eq!(long.copied, long.log, "{long:?}");
        assert!(long.restarted, "{long:?}");
        // ...so the next commits write it from the beginning; a short log
        // gets only the passive copy.
        let short = write_then_copy(&spool, 5, true);
        assert!(short.log < long.log / 2, "the log started over: {short:?}");
        assert!(!short.restarted, "{short:?}");
    }

    /// A reader on an old snapshot keeps the passive copy from copying the
    /// whole log: no restart then (it would copy and fsync under the write
    /// lock), until the log is past FORCE_RESTART_AT_PAGES.
    #[test]
    fn a_log_the_passive_copy_could_not_finish_is_restarted_only_when_far_too_long() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s.sqlite3")).unwrap();
        write_then_copy(&spool, 1, true);
        let reader = spool.connect().unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM lookup_rows", [], |r| r.get(0))
            .unwrap();
        let held = write_then_copy(&spool, 40, true);
        assert!(held.log > RESTART_AT_PAGES, "{held:?}");
        assert!(held.log < FORCE_RESTART_AT_PAGES, "{held:?}");
        assert!(held.copied < held.log, "the reader holds frames: {held:?}");
        assert!(!held.restarted, "{held:?}");
        reader.execute_batch("COMMIT").unwrap();
        // Past the hard limit the copy restarts anyway: it waits (in lock
        // steps) for a reader that lets go after 300 ms, then restarts.
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let path = spool.path().to_path_buf();
        let holder = std::thread::spawn(move || {
            let reader = Connection::open(path).unwrap();
            reader.execute_batch("BEGIN").unwrap();
            let _: i64 = reader
                .query_row("SELECT count(*) FROM lookup_rows", [], |r| r.get(0))
                .unwrap();
            ready_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            reader.execute_batch("COMMIT").unwrap();
        });
        ready.recv().unwrap();
        let far = write_then_copy(&spool, 130, true);
        holder.join().unwrap();
        assert!(far.log >= FORCE_RESTART_AT_PAGES, "{far:?}");
        assert!(far.restarted, "{far:?}");
    }
}
