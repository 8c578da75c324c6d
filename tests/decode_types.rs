//! Every column type the decoder must handle, as the real server sends it
//! in binary format, read back through `tail`'s JSON.

mod support;

use std::time::Duration;

use capi_cdc::tail::{tail, TailOptions};
use support::harness::Pipeline;
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_listed_types_decode_exactly_from_the_binary_stream() {
    let p = Pipeline::new("types").await;
    p.sql(&format!(
        "CREATE TABLE kinds (
            id int PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, n numeric(20, 4), money_like numeric,
            t text, vc varchar(10), c char(5), u uuid, tz timestamptz, ts timestamp, d date,
            j json, jb jsonb, by bytea, ta text[], ia int[], nul text);
         CREATE PUBLICATION \"{}\" FOR TABLE kinds;",
        p.publication
    ))
    .await;
    let config = p.config();
    let (_stop, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut out: Vec<u8> = Vec::new();
        let opts = TailOptions {
            max_changes: Some(1),
        };
        tail(&config, &opts, &mut out, rx).await.map(|_| out)
    });
    // Wait for tail's temporary slot.
    let client = p.db.client().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'capi_cdc_tail_%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "tail did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.sql(
        "SET TIME ZONE 'UTC';
         INSERT INTO kinds VALUES (
            1, true, -32768, 2147483647, -9223372036854775808, 12345678.9000, 0.1,
            'héllo', 'varchar', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
            '2026-11-26 09:31:42.123456+00', '2026-11-26 09:31:42', '2026-11-26',
            '{\"a\": 1.10}', '{\"b\": [1, 2]}', '\\x00ff10', ARRAY['x', NULL, 'y z'], ARRAY[1, NULL, -3], NULL)",
    )
    .await;
    let out = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("tail did not finish")
        .unwrap()
        .expect("tail failed");
    let text = String::from_utf8(out).unwrap();
    let insert: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["op"] == "insert")
        .unwrap_or_else(|| panic!("no insert in:\n{text}"));
    let row = &insert["new"];
    let expect = serde_json::json!({
        "id": 1, "b": true, "i2": -32768, "i4": 2147483647, "i8": -9223372036854775808i64,
        "n": "12345678.9000", "money_like": "0.1",
        "t": "héllo", "vc": "varchar", "c": "ab   ", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "tz": "2026-11-26T09:31:42.123456Z", "ts": "2026-11-26T09:31:42", "d": "2026-11-26",
        "by": "\\x00ff10", "ta": ["x", null, "y z"], "ia": [1, null, -3], "nul": null,
    });
    for (column, want) in expect.as_object().unwrap() {
        assert_eq!(&row[column], want, "column {column} in {row}");
    }
    // json keeps its text exactly; jsonb is normalized by the server.
    assert_eq!(row["j"], "{\"a\": 1.10}");
    let jb: serde_json::Value = serde_json::from_str(row["jb"].as_str().unwrap()).unwrap();
    assert_eq!(jb, serde_json::json!({"b": [1, 2]}));
    assert_eq!(insert["table"], "public.kinds");
}
