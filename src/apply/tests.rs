//! The apply loop on hand-built replication events: an undecodable row is
//! recorded and skipped, the transaction's other rows and its checkpoint
//! still land.

use super::*;
use pgwire_replication::Lsn as WireLsn;

fn relation_msg(oid: u32) -> Vec<u8> {
    let mut m = vec![b'R'];
    m.extend(oid.to_be_bytes());
    m.extend(b"public\0product_views\0");
    m.push(b'd');
    m.extend(2i16.to_be_bytes());
    for (flags, name, type_oid) in [(1u8, "id", 20u32), (0, "product_id", 25)] {
        m.push(flags);
        m.extend(name.as_bytes());
        m.push(0);
        m.extend(type_oid.to_be_bytes());
        m.extend((-1i32).to_be_bytes());
    }
    m
}

fn insert_msg(oid: u32, id: &str, sku: &str) -> Vec<u8> {
    let mut m = vec![b'I'];
    m.extend(oid.to_be_bytes());
    m.push(b'N');
    m.extend(2i16.to_be_bytes());
    for v in [id, sku] {
        m.push(b't');
        m.extend((v.len() as i32).to_be_bytes());
        m.extend(v.as_bytes());
    }
    m
}

fn xlog(lsn: u64, data: Vec<u8>) -> ReplicationEvent {
    ReplicationEvent::XLogData {
        wal_start: WireLsn(lsn),
        wal_end: WireLsn(lsn),
        server_time_micros: 0,
        data: data.into(),
    }
}

#[test]
fn an_undecodable_row_is_recorded_with_table_and_lsn_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let spool = crate::spool::Spool::open(&dir.path().join("s.sqlite3")).unwrap();
    let mut applier = Applier::new(
        spool.writer().unwrap(),
        Deriver::reference(),
        Arc::new(Metrics::default()),
        Vec::new(),
    );
    let events = [
        ReplicationEvent::Begin {
            final_lsn: WireLsn(0x500),
            xid: 1,
            commit_time_micros: 1_000_000,
        },
        xlog(0x100, relation_msg(16_400)),
        // "x-secret-7" is not an int8: the row cannot be decoded.
        xlog(0x200, insert_msg(16_400, "x-secret-7", "SKU-1")),
        xlog(0x300, insert_msg(16_400, "5", "SKU-2")),
        ReplicationEvent::Commit {
            lsn: WireLsn(0x500),
            end_lsn: WireLsn(0x510),
            commit_time_micros: 1_000_000,
        },
    ];
    for e in &events {
        applier.on_event(e).unwrap();
    }
    assert_eq!(
        applier.flush().unwrap(),
        Some(Lsn(0x510)),
        "the checkpoint moves past the bad row"
    );
    let conn = rusqlite::Connection::open(spool.path()).unwrap();
    let ids: Vec<String> = conn
        .prepare("SELECT event_id FROM events")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids, ["view-5"]);
    let (relation, reason): (String, String) = conn
        .query_row("SELECT relation, reason FROM derive_failures", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(relation, "public.product_views");
    assert!(
        reason.contains("0/200") && reason.contains("product_views.id"),
        "{reason}"
    );
    assert!(
        !reason.contains("secret"),
        "the value is never recorded: {reason}"
    );
    // A Relation message that cannot be read stays fatal.
    let mut bad = relation_msg(16_401);
    bad.truncate(12);
    applier
        .on_event(&ReplicationEvent::Begin {
            final_lsn: WireLsn(0x900),
            xid: 2,
            commit_time_micros: 2_000_000,
        })
        .unwrap();
    assert!(matches!(
        applier.on_event(&xlog(0x800, bad)),
        Err(ApplyError::Decode { .. })
    ));
}
