//! The health page in a real headless Chromium (Debian's package, driven by
//! playwright-core through `tests/browser/check.mjs`), against a running
//! pipeline: the numbers a person would see, a destination paused by an
//! operator shown as such, and the send-test button working with the admin
//! token. `.ci/run` installs Chromium and the npm package.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::harness::{self, Pipeline};

const WAIT: Duration = Duration::from_secs(60);
const ADMIN_TOKEN: &str = "page-admin-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_page_shows_numbers_a_paused_destination_and_a_working_test_button() {
    let browser_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        std::path::Path::new(&format!("{browser_dir}/node_modules/playwright-core")).exists(),
        "run `npm ci` in tests/browser (as .ci/run does) and install Debian's chromium"
    );
    let mut p = Pipeline::new("page").await;
    let base = p.admin_on_free_port();
    p.admin_token = Some(ADMIN_TOKEN.into());
    p.admin_extra = "grades_interval_s = 1\n".into();
    p.meta_extra =
        "requests_per_second = 200\nbatch_max_age_s = 1\ntest_event_code = \"TEST99\"\n".into();
    let action = p
        .sandbox
        .google()
        .seed_conversion_action("Purchases", "PURCHASE");
    p.google_extra = Some(format!(
        "[destinations.google.conversion_actions]\n\"transaction.purchase\" = \"{action}\"\n"
    ));
    p.sql(
        "INSERT INTO customers (id, email, country) VALUES (1, 'page@example.com', 'US');
         INSERT INTO sessions (id, customer_id, gclid, fbp, client_ip, user_agent) VALUES ('p1', 1, 'Gclid-Page', 'fb.1.1596403881668.1116446470', '192.0.2.30', 'Mozilla/5.0');",
    )
    .await;
    p.setup().await;
    let running = p.start();
    p.sql("INSERT INTO orders (id, customer_id, status, total, session_id) VALUES (1, 1, 'paid', 10, 'p1'), (2, 1, 'paid', 20, 'p1')").await;
    p.wait_for_events(2, WAIT).await;
    // The platforms' own grades arrive beside ours: Meta's Event Match
    // Quality (Dataset Quality API) and Data Manager's request status.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let h: serde_json::Value = harness::get_json(&format!("{base}/api/health")).await;
        let meta_grade = h["destinations"][0]["kinds"][0]["platform_quality"].as_f64();
        let google_ok = h["destinations"][1]["platform_status"]["SUCCESS"]
            .as_u64()
            .unwrap_or(0);
        if let (Some(grade), true) = (meta_grade, google_ok > 0) {
            assert!(grade > 0.0 && grade <= 10.0, "{grade}");
            break;
        }
        assert!(Instant::now() < deadline, "no platform grades: {h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An operator pauses Google.
    let deadline = Instant::now() + WAIT;
    loop {
        let r = http
            .post(format!("{base}/api/destinations/google/pause"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "could not pause google");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shot = concat!(env!("CARGO_TARGET_TMPDIR"), "/health-page.png");
    let url = format!("{base}/");
    let args: Vec<String> = [
        "check.mjs",
        "--url",
        &url,
        "--token",
        ADMIN_TOKEN,
        "--expect-paused",
        "google",
        "--expect-delivered",
        "meta:transaction.purchase:2",
        "--click-test",
        "--screenshot",
        shot,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(args)
            .current_dir(browser_dir)
            .output()
            .expect("node")
    })
    .await
    .unwrap();
    running.stop().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the page check failed:\n{stdout}\n{stderr}"
    );
    let saw: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap();
    assert_eq!(saw["ok"], true, "{saw}");
    assert!(
        std::fs::metadata(shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "no screenshot"
    );
    assert!(
        p.sandbox
            .meta_report()
            .received
            .iter()
            .any(|e| e.test_event_code.as_deref() == Some("TEST99")),
        "the button sent a test event"
    );
}
