//! `capi-cdc demo` as a person runs it: one command, then the health page
//! shows storefront traffic reaching Meta and Google; Ctrl-C stops it all
//! and leaves nothing behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_gives_a_working_pipeline_and_ctrl_c_cleans_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_capi-cdc"))
        .args(["demo", "--admin", &admin, "--rate", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let health = loop {
        if let Ok(r) = http.get(format!("http://{admin}/api/health")).send().await {
            if let Ok(h) = r.json::<serde_json::Value>().await {
                let delivered = |d: usize| {
                    h["destinations"][d]["kinds"].as_array().map_or(0, |k| {
                        k.iter()
                            .map(|r| r["delivered"].as_u64().unwrap_or(0))
                            .sum::<u64>()
                    })
                };
                if delivered(0) > 5 && delivered(1) > 5 {
                    break h;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the demo never delivered to both platforms"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let page = http
        .get(format!("http://{admin}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("capi-cdc health"));
    let kinds: Vec<&str> = health["destinations"][0]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"transaction.purchase") && kinds.contains(&"user.signed_up"),
        "{kinds:?}"
    );
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(status.success(), "{stdout}");
    assert!(
        stdout.contains("health page: http://") && stdout.contains("stopped"),
        "{stdout}"
    );
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("capi-cdc demo: PostgreSQL in "))
        .and_then(|l| l.split(", sandbox").next())
        .unwrap()
        .to_owned();
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
}
