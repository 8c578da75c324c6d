//! `capi-cdc provision`: the conversion actions capi-cdc uploads to, made
//! idempotently through the Google Ads API (spec/google.md §3).
//!
//! 1. List the account's `UPLOAD_CLICKS` actions with GAQL
//!    (`googleAds:searchStream`).
//! 2. For each kind without a configured ID, use the action named
//!    `capi-cdc <kind>` if it exists, else create it
//!    (`conversionActions:mutate`) with the kind's category (DESIGN.md §3),
//!    type `UPLOAD_CLICKS`, status `ENABLED`.
//!
//! A second run finds everything by name and creates nothing. The caller
//! records the IDs (and creation times, for the 6-hour hold) in the spool
//! and prints them as TOML; configured IDs always win.

use serde::Deserialize;
use serde_json::json;

use super::oauth::{Oauth, TokenError};
use crate::config::GoogleConfig;
use crate::deliver::http;
use crate::event::Kind;

/// What went wrong, with the remedy.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A configuration key the Ads API needs is missing.
    #[error("configuration key `{0}` is missing: the Google Ads API needs it for provisioning (Google Ads → Tools → API Center)")]
    Missing(&'static str),
    /// No access token.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The API refused or failed.
    #[error("google ads api {what}: {reason}")]
    Api {
        /// Which call.
        what: &'static str,
        /// Status and message.
        reason: String,
    },
}

/// One kind's action after provisioning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// The event kind.
    pub kind: String,
    /// The conversion action ID.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Created by this run (uploads wait 6 hours).
    pub created: bool,
    /// Taken from the configuration, not looked up.
    pub configured: bool,
}

/// The deterministic name of a kind's action.
pub fn action_name(kind: &Kind) -> String {
    format!("capi-cdc {kind}")
}

#[derive(Deserialize)]
struct Batch {
    #[serde(default)]
    results: Vec<Row>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    conversion_action: ActionRow,
}

#[derive(Deserialize)]
struct ActionRow {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mutated {
    results: Vec<MutateResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MutateResult {
    resource_name: String,
}

/// The query that lists the actions capi-cdc can upload to.
pub const LIST_QUERY: &str = "SELECT conversion_action.id, conversion_action.name, conversion_action.category, conversion_action.type, conversion_action.status FROM conversion_action WHERE conversion_action.type = 'UPLOAD_CLICKS'";

struct Client<'a> {
    config: &'a GoogleConfig,
    http: reqwest::Client,
    token: crate::config::Secret,
    developer_token: &'a crate::config::Secret,
}

impl Client<'_> {
    fn url(&self, method: &str) -> reqwest::Url {
        let mut url = self.config.ads_api_url.clone();
        let path = format!(
            "{}/{}/customers/{}/{method}",
            url.path().trim_end_matches('/'),
            self.config.ads_api_version,
            self.config.operating_account_id
        );
        url.set_path(&path);
        url
    }

    async fn call(
        &self,
        what: &'static str,
        method: &str,
        body: serde_json::Value,
    ) -> Result<Vec<u8>, ProvisionError> {
        let mut request = self
            .http
            .post(self.url(method))
            .bearer_auth(self.token.expose())
            .header("developer-token", self.developer_token.expose())
            .json(&body);
        if let Some(login) = &self.config.login_account_id {
            request = request.header("login-customer-id", login);
        }
        let answer = http::send(request, what)
            .await
            .map_err(|a| ProvisionError::Api {
                what,
                reason: format!("{a:?}"),
            })?;
        if !(200..300).contains(&answer.status) {
            let text = String::from_utf8_lossy(&answer.body);
            return Err(ProvisionError::Api {
                what,
                reason: format!("HTTP {}: {}", answer.status, http::short(&text)),
            });
        }
        Ok(answer.body)
    }
}

/// Makes sure every kind in `kinds` has a conversion action.
pub async fn provision(
    config: &GoogleConfig,
    kinds: &[Kind],
) -> Result<Vec<Provisioned>, ProvisionError> {
    let developer_token = config
        .developer_token
        .as_ref()
        .ok_or(ProvisionError::Missing(
            "destinations.google.developer_token",
        ))?;
    let token = Oauth::new(config).token().await?;
    let client = Client {
        config,
        http: http::client(
            config
                .delivery
                .timeout
                .max(std::time::Duration::from_secs(10)),
        ),
        token,
        developer_token,
    };
    let body = client
        .call(
            "googleAds:searchStream",
            "googleAds:searchStream",
            json!({ "query": LIST_QUERY }),
        )
        .await?;
    let batches: Vec<Batch> = serde_json::from_slice(&body).map_err(|e| ProvisionError::Api {
        what: "googleAds:searchStream",
        reason: format!("unreadable answer ({e})"),
    })?;
    let existing: Vec<ActionRow> = batches
        .into_iter()
        .flat_map(|b| b.results)
        .map(|r| r.conversion_action)
        .filter(|a| a.status != "REMOVED")
        .collect();
    let mut out = Vec::new();
    for kind in kinds {
        let name = action_name(kind);
        if let Some(id) = config.conversion_actions.get(kind.as_str()) {
            out.push(Provisioned {
                kind: kind.to_string(),
                id: id.clone(),
                name,
                created: false,
                configured: true,
            });
            continue;
        }
        if let Some(found) = existing.iter().find(|a| a.name == name) {
            out.push(Provisioned {
                kind: kind.to_string(),
                id: found.id.clone(),
                name,
                created: false,
                configured: false,
            });
            continue;
        }
        let category = kind.canonical().map_or("DEFAULT", |c| c.ads_category);
        let create = json!({
            "operations": [{ "create": {
                "name": name,
                "category": category,
                "type": "UPLOAD_CLICKS",
                "status": "ENABLED",
            }}]
        });
        let body = client
            .call(
                "conversionActions:mutate",
                "conversionActions:mutate",
                create,
            )
            .await?;
        let mutated: Mutated = serde_json::from_slice(&body).map_err(|e| ProvisionError::Api {
            what: "conversionActions:mutate",
            reason: format!("unreadable answer ({e})"),
        })?;
        let id = mutated
            .results
            .first()
            .and_then(|r| r.resource_name.rsplit('/').next())
            .filter(|id| !id.is_empty() && id.bytes().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| ProvisionError::Api {
                what: "conversionActions:mutate",
                reason: "the answer names no conversion action".into(),
            })?
            .to_owned();
        out.push(Provisioned {
            kind: kind.to_string(),
            id,
            name,
            created: true,
            configured: false,
        });
    }
    Ok(out)
}
