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
//! log is longer than [`RESTART_AT_PAGES`], it is made to start over with a
//! `RESTART` copy: one that takes the write lock, copies what is left, and
//! waits (in the spool's 0.5 ms lock steps) for the readers of the log to
//! finish; the next commit then writes the log from its beginning and gives
//! the file's space past `journal_size_limit` (64 MB) back.
//!
//! **The writer restarts, not this task.** During a backlog the apply loop
//! holds the write lock almost all the time. A `RESTART` from this task
//! polled for the lock (2,233 sleeps in A0's 3.5 s drain), and once it had
//! it, the apply loop's next batch polled in turn while it copied and
//! fsynced: the off-CPU profile of A0 (no lane at all) put 261 ms of the
//! apply thread's drain there (bench/RESULTS.md, eighth session). So this
//! task only asks ([`Spool::want_restart`]), and the writer restarts before
//! its next batch, between two of its own (when it holds no lock, and has
//! only the frames of its last commits left to copy). A writer that opens
//! no batch within [`HAND_OFF_FOR`] (the stream is idle, the lanes write)
//! leaves it to this task again.

use std::time::{Duration, Instant};

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

/// How long a restart asked of the writer may wait before this task does it.
pub const HAND_OFF_FOR: Duration = Duration::from_millis(500);

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

/// Whether a log calls for a restart, after a passive copy: longer than
/// [`RESTART_AT_PAGES`] and copied whole, or longer than
/// [`FORCE_RESTART_AT_PAGES`] whatever was left (a reader on an old
/// snapshot keeps frames from the copy).
///
/// After a complete passive copy a restart only copies what was committed
/// since and waits for readers to move on; with frames left it copies them
/// and fsyncs the spool file under the write lock, which every writer then
/// waits for.
fn restart_due(c: &Copied) -> bool {
    c.log >= RESTART_AT_PAGES && (c.copied == c.log || c.log >= FORCE_RESTART_AT_PAGES)
}

fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(bool, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((
            r.get::<_, i64>(0)? == 0,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })
}

/// A passive copy: it never waits for or blocks a writer or reader.
pub fn copy_passive(conn: &Connection) -> rusqlite::Result<Copied> {
    let (_, log, copied) = checkpoint(conn, "PASSIVE")?;
    Ok(Copied {
        log,
        copied,
        restarted: false,
    })
}

/// A restart: copies what is left and makes the next commit write the log
/// from its beginning, waiting (with `conn`'s busy handler) for the write
/// lock and for readers of the log; `restarted` says whether it got there.
pub fn restart(conn: &Connection) -> rusqlite::Result<Copied> {
    let (done, log, copied) = checkpoint(conn, "RESTART")?;
    Ok(Copied {
        log,
        copied,
        restarted: done,
    })
}

/// One copy on this connection: passive, then a restart here if one is
/// due (for a caller with nobody to hand it to).
pub fn copy_once(conn: &Connection) -> rusqlite::Result<Copied> {
    let passive = copy_passive(conn)?;
    if !restart_due(&passive) {
        return Ok(passive);
    }
    Ok(Copied {
        log: passive.log,
        ..restart(conn)?
    })
}

/// One round of [`run`]: a passive copy; a restart it calls for is asked of
/// the writer, and done here only once the writer left it for `patience`.
/// `asked` is when this task asked, while the request is open.
pub fn copy_round(
    spool: &Spool,
    conn: &Connection,
    asked: &mut Option<Instant>,
    patience: Duration,
) -> rusqlite::Result<Copied> {
    if asked.is_some() && !spool.restart_pending() {
        *asked = None; // the writer did it
    }
    let passive = copy_passive(conn)?;
    if !restart_due(&passive) {
        return Ok(passive);
    }
    match *asked {
        None => {
            spool.want_restart();
            *asked = Some(Instant::now());
            Ok(passive)
        }
        Some(t) if t.elapsed() >= patience && spool.take_restart() => {
            *asked = None;
            Ok(Copied {
                log: passive.log,
                ..restart(conn)?
            })
        }
        Some(_) => Ok(passive),
    }
}

/// Copies the WAL back every [`EVERY`] until `shutdown`.
pub async fn run(spool: Spool, mut shutdown: watch::Receiver<bool>) {
    let mut conn: Option<Connection> = None;
    let mut asked: Option<Instant> = None;
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
            copy_round(&s, &c, &mut asked, HAND_OFF_FOR).map_err(|e| s.err(e))?;
            Ok::<_, super::SpoolError>((c, asked))
        })
        .await;
        match done {
            Ok(Ok((c, a))) => {
                conn = Some(c);
                asked = a;
            }
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
    /// pages a batch) through `w`.
    fn write_batches(w: &mut crate::spool::SpoolWriter, batches: u64) {
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
    }

    /// [`write_batches`] through a new writer, then one copy on a fresh
    /// connection.
    fn write_then_copy(spool: &Spool, batches: u64, leave_to_others: bool) -> Copied {
        let mut w = spool.writer().unwrap();
        if leave_to_others {
            w.leave_wal_copy_to_others().unwrap();
        }
        write_batches(&mut w, batches);
        copy_once(&spool.connect().unwrap()).unwrap()
    }

    /// A spool whose log is past RESTART_AT_PAGES, its writer (which
    /// leaves the copy to others) and a connection for the copier.
    fn long_log() -> (
        tempfile::TempDir,
        Spool,
        crate::spool::SpoolWriter,
        Connection,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s.sqlite3")).unwrap();
        let mut w = spool.writer().unwrap();
        w.leave_wal_copy_to_others().unwrap();
        write_batches(&mut w, 40);
        let copier = spool.connect().unwrap();
        (dir, spool, w, copier)
    }

    /// The copier asks; the writer restarts the log before its next batch.
    #[test]
    fn the_copier_asks_the_writer_to_restart_the_log_before_its_next_batch() {
        let (_dir, spool, mut w, copier) = long_log();
        let mut asked = None;
        let patience = Duration::from_secs(600);
        let long = copy_round(&spool, &copier, &mut asked, patience).unwrap();
        assert!(long.log > RESTART_AT_PAGES, "{long:?}");
        assert_eq!(long.copied, long.log, "{long:?}");
        assert!(!long.restarted, "asked, not done: {long:?}");
        assert!(spool.restart_pending() && asked.is_some());
        // Within its patience the copier does not restart it itself.
        let again = copy_round(&spool, &copier, &mut asked, patience).unwrap();
        assert!(!again.restarted && spool.restart_pending(), "{again:?}");
        // The writer's next batch restarts the log first...
        assert_eq!(w.take_waits().restarts, 0);
        write_batches(&mut w, 1);
        let waits = w.take_waits();
        assert_eq!(waits.restarts, 1, "{waits:?}");
        assert!(waits.restart > Duration::ZERO, "{waits:?}");
        assert!(!spool.restart_pending());
        // ...so that batch was written at the log's beginning.
        let short = copy_round(&spool, &copier, &mut asked, patience).unwrap();
        assert!(short.log < 500, "the log started over: {short:?}");
        assert!(asked.is_none() && !spool.restart_pending());
    }

    /// A writer that opens no batch (an idle stream) leaves the restart to
    /// the copier once its patience is over.
    #[test]
    fn a_restart_the_writer_does_not_take_is_done_by_the_copier() {
        let (_dir, spool, mut w, copier) = long_log();
        let mut asked = None;
        let first = copy_round(&spool, &copier, &mut asked, Duration::ZERO).unwrap();
        assert!(!first.restarted && spool.restart_pending(), "{first:?}");
        let second = copy_round(&spool, &copier, &mut asked, Duration::ZERO).unwrap();
        assert!(second.restarted, "{second:?}");
        assert!(!spool.restart_pending() && asked.is_none());
        write_batches(&mut w, 1);
        assert_eq!(w.take_waits().restarts, 0, "nothing left to ask");
    }

    /// The writer's restart waits for a reader at most RESTART_PATIENCE,
    /// and its batch then goes on (the copier asks again while the log is
    /// long).
    #[test]
    fn the_writers_restart_does_not_wait_long_for_a_reader() {
        let (_dir, spool, mut w, copier) = long_log();
        let mut asked = None;
        copy_round(&spool, &copier, &mut asked, Duration::from_secs(600)).unwrap();
        assert!(spool.restart_pending());
        // Another commit, so that a reader then reads from the log (one
        // that began on a log copied whole would read the file only).
        let other = spool.connect().unwrap();
        other
            .execute_batch(
                "PRAGMA wal_autocheckpoint = 0; INSERT INTO meta (key, value) VALUES ('t', 'x')",
            )
            .unwrap();
        let reader = spool.connect().unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM lookup_rows", [], |r| r.get(0))
            .unwrap();
        write_batches(&mut w, 1);
        let waits = w.take_waits();
        assert_eq!(waits.restarts, 0, "the reader holds the log: {waits:?}");
        assert!(
            waits.restart >= super::super::RESTART_PATIENCE,
            "it waited for the reader: {waits:?}"
        );
        assert!(waits.restart < Duration::from_secs(2), "{waits:?}");
        reader.execute_batch("COMMIT").unwrap();
        assert!(!spool.restart_pending(), "the request was taken");
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
