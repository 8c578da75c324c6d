//! Checks the throwaway-PostgreSQL support code that other integration tests rely on.

mod support;

use support::pg;
use support::pg::ClusterExt as _;

/// Creates a database on the shared cluster and a logical slot in it.
async fn logical_slot_in_own_database(prefix: &str) {
    let db = pg::cluster().create_database(prefix).await;
    let client = db.client().await;

    let wal_level: String = client
        .query_one("SHOW wal_level", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(wal_level, "logical");

    client
        .execute(
            "SELECT pg_create_logical_replication_slot('s_' || current_database(), 'pgoutput')",
            &[],
        )
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT database, plugin FROM pg_replication_slots
             WHERE slot_name = 's_' || current_database()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>("database"), db.name);
    assert_eq!(row.get::<_, String>("plugin"), "pgoutput");

    // Slots pin WAL and count against max_replication_slots; drop when done.
    db.execute_batch("SELECT pg_drop_replication_slot('s_' || current_database())")
        .await;
}

// The two tests below run in parallel and race to start the shared cluster.

#[tokio::test]
async fn first_test_gets_own_database_and_slot() {
    logical_slot_in_own_database("pg_support_a").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn second_test_gets_own_database_and_slot() {
    logical_slot_in_own_database("pg_support_b").await;
}

#[tokio::test]
async fn special_cluster_takes_extra_settings_and_cleans_up() {
    let cluster = pg::start_cluster(&[("wal_level", "replica")]);
    let db = cluster.create_database("pg_support_replica").await;
    let wal_level: String = db
        .client()
        .await
        .query_one("SHOW wal_level", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(wal_level, "replica");

    let dir = cluster.socket_dir().to_owned();
    drop(cluster);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[tokio::test]
async fn socket_url_connects_through_unix_socket() {
    let db = pg::cluster().create_database("pg_support_socket").await;
    let (client, connection) = tokio_postgres::connect(&db.socket_url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", db.socket_url));
    tokio::spawn(connection);
    // A unix-socket session has no client address.
    let row = client
        .query_one("SELECT current_database(), inet_client_addr() IS NULL", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), db.name);
    assert!(row.get::<_, bool>(1));
}

/// A server error quoting the failing row (its DETAIL) is shown without it:
/// the row is a shopper's data.
#[tokio::test]
async fn server_errors_are_shown_without_the_row_values_they_quote() {
    let db = pg::cluster().create_database("pg_support_detail").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE t (email text CHECK (email LIKE '%@%'))")
        .await
        .unwrap();
    let e = client
        .batch_execute("INSERT INTO t VALUES ('jane.doe.example.com')")
        .await
        .unwrap_err();
    // The server's error, as the driver renders it, carries the row.
    let server = e.as_db_error().unwrap().to_string();
    assert!(server.contains("jane.doe.example.com"), "{server}");
    let shown = capi_cdc::source::pg_error_text(&e);
    assert!(!shown.contains("jane.doe"), "{shown}");
    assert!(shown.contains("23514"), "{shown}"); // check_violation
    assert!(shown.contains("violates check constraint"), "{shown}");
}
