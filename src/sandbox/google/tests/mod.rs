//! In-process tests: the Google routes served on 127.0.0.1:0, driven over HTTP.
//!
//! Shared harness: a fresh sandbox per test, a token helper, request builders
//! in the shape of Google's Data Manager quickstart, and hashed-looking values.

mod ads;
mod faults;
mod ingest;
mod ingest_rules;
mod oauth;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::{routes, time, GoogleEndpoint, GoogleFault, GoogleSandbox, GoogleSandboxConfig};

/// The default operating account.
const ACCOUNT: &str = "1234567890";

struct Harness {
    base: String,
    client: reqwest::Client,
    sandbox: GoogleSandbox,
    _stop: oneshot::Sender<()>,
}

/// A parsed answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn start() -> Harness {
    start_with(GoogleSandboxConfig::default()).await
}

async fn start_with(config: GoogleSandboxConfig) -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = GoogleSandbox::new(config);
    let (stop, stopped) = oneshot::channel::<()>();
    let app = routes(sandbox.clone());
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Harness {
        base,
        client: reqwest::Client::new(),
        sandbox,
        _stop: stop,
    }
}

impl Harness {
    async fn answer(res: reqwest::Response) -> Answer {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            headers,
            body,
        }
    }

    /// POST /token with a form body.
    async fn token_request(&self, form: &[(&str, &str)]) -> Answer {
        let res = self
            .client
            .post(format!("{}/token", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        Self::answer(res).await
    }

    /// A fresh access token from the default credentials.
    async fn token(&self) -> String {
        let c = self.sandbox.config().clone();
        let a = self
            .token_request(&[
                ("grant_type", "refresh_token"),
                ("client_id", &c.client_id),
                ("client_secret", &c.client_secret),
                ("refresh_token", &c.refresh_token),
            ])
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["access_token"].as_str().unwrap().to_owned()
    }

    /// POST `path` with a JSON body and optional bearer token and extra headers.
    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Answer {
        let mut req = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::answer(req.send().await.unwrap()).await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Self::answer(req.send().await.unwrap()).await
    }

    async fn ingest(&self, token: &str, body: &Value) -> Answer {
        self.post("/v1/events:ingest", Some(token), &[], body).await
    }

    /// POST to an Ads endpoint of the default account with a developer token.
    async fn ads(&self, token: &str, method: &str, body: &Value) -> Answer {
        let path = format!("/v22/customers/{ACCOUNT}/{method}");
        self.post(
            &path,
            Some(token),
            &[("developer-token", "sandbox-dev-token")],
            body,
        )
        .await
    }

    /// An `UPLOAD_CLICKS` action old enough to take uploads.
    fn seeded_action(&self) -> String {
        self.sandbox
            .seed_conversion_action("capi-cdc purchase", "PURCHASE")
    }
}

/// 64 lowercase hex characters (the shape of a SHA-256 digest).
fn hex64(seed: u8) -> String {
    format!("{seed:02x}").repeat(32)
}

/// RFC 3339 for `hours` ago on the wall clock, with a `-05:00` offset like Google's example.
fn hours_ago(hours: i64) -> String {
    let ms = time::wall_ms() - hours * 3_600_000 - 5 * 3_600_000;
    let z = time::format_rfc3339(ms);
    format!("{}-05:00", &z[..19])
}

/// One event shaped like the Data Manager quickstart's event #1.
fn quickstart_event(transaction_id: &str) -> Value {
    json!({
        "transactionId": transaction_id,
        "eventTimestamp": hours_ago(2),
        "conversionValue": 1.99,
        "currency": "USD",
        "eventSource": "WEB",
        "adIdentifiers": { "gclid": "GCLID_1" },
        "consent": { "adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED" },
        "userData": { "userIdentifiers": [
            { "emailAddress": hex64(0xa1) },
            { "phoneNumber": hex64(0xb2) },
            { "address": {
                "givenName": hex64(0xc3),
                "familyName": hex64(0xd4),
                "regionCode": "US",
                "postalCode": "94045"
            }}
        ]},
        "cartData": { "merchantId": "123456", "items": [
            { "merchantProductId": "sku-1", "quantity": "2", "unitPrice": 0.5 },
            { "merchantProductId": "sku-2", "quantity": 1, "unitPrice": 0.99 }
        ]}
    })
}

/// A request to one Google Ads conversion action with the given events.
fn request(action_id: &str, events: Vec<Value>) -> Value {
    json!({
        "destinations": [{
            "operatingAccount": { "accountType": "GOOGLE_ADS", "accountId": ACCOUNT },
            "productDestinationId": action_id
        }],
        "encoding": "HEX",
        "events": events
    })
}

/// The first `fieldViolations[].field` of a Data Manager 400.
fn violation_field(body: &Value) -> String {
    body["error"]["details"]
        .as_array()
        .and_then(|d| {
            d.iter()
                .find(|x| x["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        })
        .map(|b| {
            b["fieldViolations"][0]["field"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default()
}

/// The first `fieldViolations[].reason` of a Data Manager 400.
fn violation_reason(body: &Value) -> String {
    body["error"]["details"]
        .as_array()
        .and_then(|d| {
            d.iter()
                .find(|x| x["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        })
        .map(|b| {
            b["fieldViolations"][0]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn routes_merge_into_a_stateful_sandbox_router() {
    // capi-cdc's sandbox router has its own state and a Meta route with two
    // path parameters; the Google routes must merge without conflicts.
    #[derive(Clone)]
    struct Other;
    let meta: axum::Router<Other> = axum::Router::new().route(
        "/{version}/{pixel_id}/events",
        axum::routing::post(|| async { "meta" }),
    );
    let merged: axum::Router = meta
        .merge(routes(GoogleSandbox::new(GoogleSandboxConfig::default())).with_state(()))
        .with_state(Other);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, merged).await.unwrap() });
    let client = reqwest::Client::new();
    let meta = client
        .post(format!("{base}/v25.0/123/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(meta.text().await.unwrap(), "meta");
    let google = client
        .post(format!("{base}/v1/events:ingest"))
        .send()
        .await
        .unwrap();
    assert_eq!(google.status(), StatusCode::UNAUTHORIZED);
}
