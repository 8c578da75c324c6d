//! TLS to PostgreSQL: with `sslmode=require` and `source.tls_ca_file`, both
//! the control and the replication connection are encrypted and verified; a
//! certificate from another CA is refused.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::harness::Pipeline;
use support::pg::start_cluster;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA.
fn make_certs(dir: &Path) {
    let days = ["-days", "2"];
    openssl(
        dir,
        &[
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=capi-cdc test CA",
            ][..],
            &days[..],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "other.key",
                "-out",
                "other.pem",
                "-subj",
                "/CN=another CA",
            ][..],
            &days[..],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-extfile",
                "ext.cnf",
            ][..],
            &days[..],
        ]
        .concat(),
    );
    // The server reads its key as the postgres user, and insists on 0600.
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if root {
        let ok = Command::new("chown")
            .args(["postgres:postgres", "server.key", "server.crt"])
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let ok = Command::new("chmod")
        .args(["600", "server.key"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = Command::new("chmod").arg("755").arg(dir).status().unwrap();
    assert!(ok.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_tls_on_both_connections_and_a_foreign_ca_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let crt = certs.path().join("server.crt").display().to_string();
    let key = certs.path().join("server.key").display().to_string();
    let cluster = start_cluster(&[
        ("ssl", "on"),
        ("ssl_cert_file", &crt),
        ("ssl_key_file", &key),
    ]);

    let mut p = Pipeline::new_on(&cluster, "tls").await;
    // A host name, as DBAs use: both connections verify it against the certificate.
    p.source_url = format!(
        "{}?sslmode=require",
        p.db.url.replace("127.0.0.1", "localhost")
    );
    p.source_extra = format!(
        "tls_ca_file = \"{}\"",
        certs.path().join("ca.pem").display()
    );
    p.sql("INSERT INTO customers (id, email) VALUES (1, 'tls@example.com')")
        .await;
    p.setup().await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total) VALUES (1, 1, 'paid', 2.50)")
        .await;
    p.wait_for_events(1, Duration::from_secs(60)).await;
    let row = p
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.application_name = 'capi-cdc' AND a.backend_type = 'walsender'",
            &[],
        )
        .await
        .unwrap();
    let (encrypted, total): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        total >= 1 && encrypted == total,
        "walsender connections: {encrypted} of {total} use TLS"
    );
    running.stop().await;

    // A server certificate from another CA is refused, naming the problem.
    let mut q = Pipeline::new_on(&cluster, "tls_foreign").await;
    q.source_url = format!("{}?sslmode=require", q.db.url);
    q.source_extra = format!(
        "tls_ca_file = \"{}\"",
        certs.path().join("other.pem").display()
    );
    let err = capi_cdc::source::setup::setup(&q.config(), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );

    // A missing CA file is a configuration error naming the key.
    q.source_extra = "tls_ca_file = \"/nonexistent/ca.pem\"".into();
    let err = capi_cdc::config::Config::from_figment(
        figment::Figment::new()
            .merge(<figment::providers::Toml as figment::providers::Format>::string(&q.toml())),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("source.tls_ca_file"), "{err}");
}
