//! In-process tests: a real server on 127.0.0.1:0, driven over HTTP.

use std::time::{Duration, Instant};

use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::derive::identity::sha256_hex;
use crate::sandbox::{serve, serve_sandbox, Sandbox, SandboxConfig};

const TOKEN: &str = "sandbox-meta-token";
const PIXEL: &str = "1234567890";

struct Harness {
    base: String,
    client: reqwest::Client,
    sandbox: Sandbox,
    _stop: oneshot::Sender<()>,
}

async fn start() -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = Sandbox::new(SandboxConfig::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = serve_sandbox(listener, sandbox.clone(), async {
        let _ = stopped.await;
    });
    tokio::spawn(server);
    Harness {
        base,
        client: reqwest::Client::new(),
        sandbox,
        _stop: stop,
    }
}

impl Harness {
    fn events_url(&self) -> String {
        format!("{}/v25.0/{PIXEL}/events?access_token={TOKEN}", self.base)
    }

    async fn post(&self, url: &str, body: &Value) -> (StatusCode, Value) {
        let res = self.client.post(url).json(body).send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap())
    }

    async fn send(&self, events: Vec<Value>) -> (StatusCode, Value) {
        self.post(&self.events_url(), &json!({ "data": events }))
            .await
    }

    async fn read_back(&self) -> Value {
        let url = format!("{}/_sandbox/meta/events", self.base);
        self.client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn fault(&self, spec: Value) -> StatusCode {
        let url = format!("{}/_sandbox/meta/faults", self.base);
        self.client
            .post(url)
            .json(&spec)
            .send()
            .await
            .unwrap()
            .status()
    }
}

fn now_s() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn hash(v: &str) -> String {
    sha256_hex(v).to_hex().to_owned()
}

/// A complete, valid website Purchase.
fn purchase(order: &str) -> Value {
    json!({
        "event_name": "Purchase",
        "event_time": now_s() - 60,
        "action_source": "website",
        "event_id": order,
        "event_source_url": "https://shop.example/checkout/thanks",
        "user_data": {
            "em": [hash("john_smith@gmail.com")],
            "ph": hash("16505551212"),
            "country": hash("us"),
            "external_id": hash("cust-42"),
            "client_ip_address": "2001:db8::1",
            "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "fbc": "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk",
            "fbp": "fb.1.1596403881668.1116446470"
        },
        "custom_data": {
            "value": 42.5, "currency": "EUR", "content_ids": ["sku-1"],
            "contents": [{"id": "sku-1", "quantity": 1, "item_price": 42.5}], "order_id": order
        }
    })
}

/// A valid non-website event with minimal user data.
fn lead() -> Value {
    json!({"event_name": "Lead", "event_time": now_s() - 3600, "action_source": "email", "user_data": {"em": hash("a@b.co")}})
}

fn with(mut ev: Value, f: impl FnOnce(&mut Value)) -> Value {
    f(&mut ev);
    ev
}

fn without(ev: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    with(ev, |ev| {
        ev.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap()
            .remove(key)
            .unwrap();
    })
}

fn assert_graph_error(body: &Value, code: u64, subcode: Option<u64>, case: &str) {
    let err = &body["error"];
    assert_eq!(err["code"], code, "{case}: {body}");
    assert_eq!(err["error_subcode"].as_u64(), subcode, "{case}: {body}");
    assert_eq!(err["type"], "OAuthException", "{case}");
    assert_eq!(err["is_transient"], false, "{case}");
    assert!(
        err["fbtrace_id"].as_str().is_some_and(|t| t.len() > 10),
        "{case}"
    );
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}"
    );
}

#[tokio::test]
async fn valid_batch_is_accepted_and_stored() {
    let h = start().await;
    let before_ms = u64::try_from(now_s()).unwrap() * 1000;
    let body = json!({ "data": [purchase("1042"), lead()], "test_event_code": "TEST123" });
    let (status, res) = h.post(&h.events_url(), &body).await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["events_received"], 2);
    assert_eq!(res["messages"], json!([]));
    assert!(res["fbtrace_id"]
        .as_str()
        .is_some_and(|t| t.starts_with('A')));

    let back = h.read_back().await;
    assert_eq!(back["requests"], 1);
    assert_eq!(back["rejected"], 0);
    let received = back["received"].as_array().unwrap();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0]["event_id"], "1042");
    assert_eq!(
        received[0]["user_data"]["em"][0],
        hash("john_smith@gmail.com")
    );
    assert_eq!(received[1]["event_name"], "Lead");
    assert!(received.iter().all(|e| e["test_event_code"] == "TEST123"));
    assert!(received[0]["received_at_ms"].as_u64().unwrap() >= before_ms);
    // The in-process handle sees the same store.
    assert_eq!(h.sandbox.meta_report().received.len(), 2);

    let del = h
        .client
        .delete(format!("{}/_sandbox/meta/events", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    assert_eq!(h.read_back().await["received"], json!([]));
}

#[tokio::test]
async fn each_event_rule_rejects_with_meta_codes_and_stores_nothing() {
    let h = start().await;
    let p = purchase("1042");
    let old = now_s() - 8 * 86_400;
    let cases: Vec<(&str, Value, u64, Option<u64>)> = vec![
        (
            "event_name missing",
            without(p.clone(), "/event_name"),
            100,
            None,
        ),
        (
            "event_name empty",
            with(p.clone(), |e| e["event_name"] = json!("")),
            100,
            None,
        ),
        (
            "event_time float",
            with(p.clone(), |e| e["event_time"] = json!(1.7e9)),
            100,
            None,
        ),
        (
            "event_time string",
            with(p.clone(), |e| e["event_time"] = json!(now_s().to_string())),
            100,
            None,
        ),
        (
            "event_time 8 days old",
            with(p.clone(), |e| e["event_time"] = json!(old)),
            100,
            Some(2_804_003),
        ),
        (
            "event_time in ms",
            with(p.clone(), |e| e["event_time"] = json!(now_s() * 1000)),
            100,
            None,
        ),
        (
            "event_time 2 min ahead",
            with(p.clone(), |e| e["event_time"] = json!(now_s() + 120)),
            100,
            None,
        ),
        (
            "action_source missing",
            without(p.clone(), "/action_source"),
            100,
            None,
        ),
        (
            "action_source unknown",
            with(p.clone(), |e| e["action_source"] = json!("web")),
            100,
            None,
        ),
        (
            "website without url",
            without(p.clone(), "/event_source_url"),
            100,
            None,
        ),
        (
            "website without UA",
            without(p.clone(), "/user_data/client_user_agent"),
            100,
            None,
        ),
        (
            "user_data missing",
            without(p.clone(), "/user_data"),
            100,
            None,
        ),
        (
            "user_data empty",
            with(lead(), |e| e["user_data"] = json!({})),
            100,
            None,
        ),
        (
            "raw email",
            with(p.clone(), |e| {
                e["user_data"]["em"] = json!("john@example.com")
            }),
            100,
            Some(2_804_016),
        ),
        (
            "raw phone in array",
            with(p.clone(), |e| {
                e["user_data"]["ph"] = json!([hash("1"), "16505551212"])
            }),
            100,
            Some(2_804_016),
        ),
        (
            "uppercase hash",
            with(p.clone(), |e| {
                e["user_data"]["ct"] = json!(hash("x").to_uppercase())
            }),
            100,
            Some(2_804_016),
        ),
        (
            "numeric zip",
            with(p.clone(), |e| e["user_data"]["zp"] = json!(94035)),
            100,
            Some(2_804_016),
        ),
        (
            "raw db",
            with(p.clone(), |e| e["user_data"]["db"] = json!("19970216")),
            100,
            Some(2_804_016),
        ),
        (
            "external_id number",
            with(p.clone(), |e| e["user_data"]["external_id"] = json!(42)),
            100,
            None,
        ),
        (
            "fbc seconds",
            with(p.clone(), |e| {
                e["user_data"]["fbc"] = json!("fb.1.1554763741.IwAR2")
            }),
            100,
            Some(2_804_001),
        ),
        (
            "fbc bare fbclid",
            with(p.clone(), |e| {
                e["user_data"]["fbc"] = json!("IwAR2F4-dbP0l7Mn1")
            }),
            100,
            Some(2_804_001),
        ),
        (
            "fbp not digits",
            with(p.clone(), |e| {
                e["user_data"]["fbp"] = json!("fb.1.1596403881668.abc")
            }),
            100,
            None,
        ),
        (
            "bad ip",
            with(p.clone(), |e| {
                e["user_data"]["client_ip_address"] = json!("999.1.1.1")
            }),
            100,
            None,
        ),
        (
            "unknown user_data key",
            with(p.clone(), |e| e["user_data"]["click_id"] = json!("x")),
            100,
            None,
        ),
        (
            "unknown event key",
            with(p.clone(), |e| e["foo"] = json!(1)),
            100,
            None,
        ),
        (
            "value as string",
            with(p.clone(), |e| e["custom_data"]["value"] = json!("42.50")),
            100,
            None,
        ),
        (
            "currency 2 letters",
            with(p.clone(), |e| e["custom_data"]["currency"] = json!("EU")),
            100,
            None,
        ),
        (
            "purchase without currency",
            without(p.clone(), "/custom_data/currency"),
            100,
            None,
        ),
        (
            "purchase without value",
            without(p.clone(), "/custom_data/value"),
            100,
            None,
        ),
        (
            "purchase without custom_data",
            without(p.clone(), "/custom_data"),
            100,
            None,
        ),
        (
            "event_id empty",
            with(p.clone(), |e| e["event_id"] = json!("")),
            100,
            None,
        ),
        (
            "event_id number",
            with(p.clone(), |e| e["event_id"] = json!(1042)),
            100,
            None,
        ),
        (
            "fn+ge only",
            with(lead(), |e| {
                e["user_data"] = json!({"fn": hash("mary"), "ge": hash("f")})
            }),
            100,
            Some(2_804_050),
        ),
    ];
    for (case, bad, code, subcode) in &cases {
        // The bad event travels with a good one: the whole batch must fail.
        let (status, body) = h.send(vec![lead(), bad.clone()]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {body}");
        assert_graph_error(&body, *code, *subcode, case);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("data[1]")
                || body["error"]["error_user_msg"]
                    .as_str()
                    .is_some_and(|m| m.contains("data[1]")),
            "{case}: error names the failing event: {body}"
        );
    }
    let back = h.read_back().await;
    assert_eq!(back["received"], json!([]), "nothing stored");
    assert_eq!(back["requests"], 0);
    assert_eq!(back["rejected"], cases.len());
    // No rejection message echoes the raw values that were sent.
    assert!(!back.to_string().contains("john@example.com"));
}

#[tokio::test]
async fn request_level_rules() {
    let h = start().await;
    let ok = json!({ "data": [lead()] });
    let base = &h.base;
    let cases: Vec<(&str, String, Value, u64, Option<u64>)> = vec![
        (
            "no token",
            format!("{base}/v25.0/{PIXEL}/events"),
            ok.clone(),
            190,
            None,
        ),
        (
            "wrong token",
            format!("{base}/v25.0/{PIXEL}/events?access_token=nope"),
            ok.clone(),
            190,
            None,
        ),
        (
            "wrong body token",
            format!("{base}/v25.0/{PIXEL}/events"),
            json!({"data": [lead()], "access_token": "nope"}),
            190,
            None,
        ),
        (
            "unknown pixel",
            format!("{base}/v25.0/999/events?access_token={TOKEN}"),
            ok.clone(),
            100,
            Some(33),
        ),
        (
            "unknown version",
            format!("{base}/v99.0/{PIXEL}/events?access_token={TOKEN}"),
            ok.clone(),
            100,
            None,
        ),
        ("data missing", h.events_url(), json!({}), 100, None),
        ("data empty", h.events_url(), json!({"data": []}), 100, None),
        (
            "data object",
            h.events_url(),
            json!({"data": lead()}),
            100,
            None,
        ),
        (
            "event not object",
            h.events_url(),
            json!({"data": ["x"]}),
            100,
            None,
        ),
        (
            "too many events",
            h.events_url(),
            json!({"data": vec![lead(); 1001]}),
            100,
            None,
        ),
        (
            "unknown body key",
            h.events_url(),
            json!({"data": [lead()], "datas": []}),
            100,
            None,
        ),
        (
            "test code not string",
            h.events_url(),
            json!({"data": [lead()], "test_event_code": 5}),
            100,
            None,
        ),
    ];
    for (case, url, body, code, subcode) in &cases {
        let (status, res) = h.post(url, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {res}");
        assert_graph_error(&res, *code, *subcode, case);
    }
    // Wrong content type.
    let res = h
        .client
        .post(h.events_url())
        .header("content-type", "text/plain")
        .body("data=[]")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_graph_error(&res.json().await.unwrap(), 100, None, "text/plain");

    let back = h.read_back().await;
    assert_eq!(back["received"], json!([]));
    assert_eq!(back["rejected"], cases.len() + 1);

    // Boundaries that must pass: exactly 1,000 events; token in the body.
    let (status, res) = h.send(vec![lead(); 1000]).await;
    assert_eq!(
        (status, &res["events_received"]),
        (StatusCode::OK, &json!(1000))
    );
    let url = format!("{base}/v20.0/{PIXEL}/events");
    let (status, res) = h
        .post(&url, &json!({"data": [lead()], "access_token": TOKEN}))
        .await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(h.sandbox.meta_report().received.len(), 1001);
}

#[tokio::test]
async fn age_limits_follow_action_source() {
    let h = start().await;
    let six_days = with(lead(), |e| e["event_time"] = json!(now_s() - 6 * 86_400));
    let store_30_days = with(lead(), |e| {
        e["action_source"] = json!("physical_store");
        e["event_time"] = json!(now_s() - 30 * 86_400);
    });
    let (status, res) = h.send(vec![six_days, store_30_days.clone()]).await;
    assert_eq!(status, StatusCode::OK, "{res}");
    let email_30_days = with(store_30_days, |e| e["action_source"] = json!("email"));
    let (status, res) = h.send(vec![email_30_days]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_graph_error(&res, 100, Some(2_804_003), "30 days by email");
}

#[tokio::test]
async fn form_encoded_body_is_accepted() {
    let h = start().await;
    let data = serde_json::to_string(&vec![purchase("77")]).unwrap();
    let body = format!(
        "data={}&access_token={TOKEN}&test_event_code=TEST9",
        urlencode(&data)
    );
    let res = h
        .client
        .post(format!("{}/v25.0/{PIXEL}/events", h.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["events_received"], 1);
    let report = h.sandbox.meta_report();
    assert_eq!(report.received.len(), 1);
    assert_eq!(report.received[0].event_id(), Some("77"));
    assert_eq!(report.received[0].test_event_code.as_deref(), Some("TEST9"));
    assert_eq!(
        report.received[0].event["user_data"]["fbc"],
        purchase("77")["user_data"]["fbc"]
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn injected_throttling_and_server_errors() {
    let h = start().await;
    assert_eq!(
        h.fault(json!({"status": 429, "count": 1, "retry_after_s": 7}))
            .await,
        StatusCode::OK
    );
    assert_eq!(
        h.fault(json!({"status": 503, "count": 2})).await,
        StatusCode::OK
    );

    let res = h
        .client
        .post(h.events_url())
        .json(&json!({"data": [lead()]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()[RETRY_AFTER], "7");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], 4);
    assert_eq!(body["error"]["is_transient"], true);

    for _ in 0..2 {
        let (status, body) = h.send(vec![lead()]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], 2);
        assert_eq!(body["error"]["is_transient"], true);
    }
    let (status, _) = h.send(vec![lead()]).await;
    assert_eq!(status, StatusCode::OK, "faults are used up");

    let report = h.sandbox.meta_report();
    assert_eq!(
        (report.faulted, report.requests, report.received.len()),
        (3, 1, 1)
    );

    // Malformed fault specs are refused.
    assert_eq!(
        h.fault(json!({"status": 404})).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(h.fault(json!({"count": 2})).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        h.fault(json!({"status": 500, "retry_after_s": 3})).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.fault(json!({"status": 500, "count": 0})).await,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn delay_makes_client_time_out_but_event_is_stored_and_deduplicated() {
    let h = start().await;
    assert_eq!(
        h.fault(json!({"delay_ms": 400, "count": 1})).await,
        StatusCode::OK
    );
    let started = Instant::now();
    let err = h
        .client
        .post(h.events_url())
        .timeout(Duration::from_millis(100))
        .json(&json!({"data": [purchase("5001")]}))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_millis(400));

    // The client retries the same event: Meta-side it is a duplicate.
    let (status, _) = h.send(vec![purchase("5001")]).await;
    assert_eq!(status, StatusCode::OK);
    let report = h.sandbox.meta_report();
    assert_eq!(report.received.len(), 2, "both copies were received");
    assert_eq!(report.deduplicated.len(), 1, "Meta counts the order once");
    let back = h.read_back().await;
    assert_eq!(back["deduplicated"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn serve_answers_healthz_and_stops_on_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, SandboxConfig::default(), async {
        let _ = stopped.await;
    }));
    let res = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops");
    assert!(result.unwrap().is_ok());
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err(),
        "listener closed"
    );
}

#[test]
fn config_debug_hides_token() {
    let shown = format!("{:?}", SandboxConfig::default());
    assert!(!shown.contains(TOKEN));
    assert!(shown.contains(PIXEL));
}
