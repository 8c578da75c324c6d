//! `[destinations.*]`: Meta, Google, and the delivery settings every
//! destination shares (rate, batching, lanes, retries).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, string_like, ConfigError, Secret};
use crate::event::{Kind, LaneKind};

/// Meta accepts at most 1,000 events in one request (spec/meta-capi.md §1.3).
pub const META_MAX_BATCH: usize = 1000;
/// Data Manager accepts at most 2,000 events in one request (spec/google.md §2.1).
pub const GOOGLE_MAX_BATCH: usize = 2000;
/// DESIGN.md §5: a batched lane waits at most an hour.
const MAX_BATCH_AGE: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestinations {
    pub(super) meta: Option<RawMeta>,
    pub(super) google: Option<RawGoogle>,
}

/// Keys every destination has; copied out of each destination's table
/// (serde's `flatten` would lose `deny_unknown_fields`).
#[derive(Debug, Default)]
struct RawDelivery {
    requests_per_second: Option<u32>,
    max_batch_events: Option<usize>,
    timeout_ms: Option<u64>,
    batch_max_age_s: Option<u64>,
    lanes: BTreeMap<String, String>,
    retry_initial_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    max_retry_hours: Option<u64>,
    auth_retry_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMeta {
    enabled: Option<bool>,
    base_url: Option<String>,
    api_version: Option<String>,
    #[serde(default, deserialize_with = "string_like")]
    pixel_id: Option<String>,
    #[serde(default, deserialize_with = "string_like")]
    access_token: Option<String>,
    #[serde(default, deserialize_with = "string_like")]
    test_event_code: Option<String>,
    #[serde(default)]
    event_names: BTreeMap<String, String>,
    consent_policy: Option<String>,
    limited_data_use: Option<bool>,
    data_processing_options_country: Option<u32>,
    data_processing_options_state: Option<u32>,
    requests_per_second: Option<u32>,
    max_batch_events: Option<usize>,
    timeout_ms: Option<u64>,
    batch_max_age_s: Option<u64>,
    #[serde(default)]
    lanes: BTreeMap<String, String>,
    retry_initial_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    max_retry_hours: Option<u64>,
    auth_retry_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGoogle {
    enabled: Option<bool>,
    oauth_token_url: Option<String>,
    data_manager_url: Option<String>,
    ads_api_url: Option<String>,
    ads_api_version: Option<String>,
    #[serde(default, deserialize_with = "string_like")]
    client_id: Option<String>,
    #[serde(default, deserialize_with = "string_like")]
    client_secret: Option<String>,
    #[serde(default, deserialize_with = "string_like")]
    refresh_token: Option<String>,
    #[serde(default, deserialize_with = "string_like")]
    developer_token: Option<String>,
    #[serde(default, deserialize_with = "string_like")]
    operating_account_id: Option<String>,
    #[serde(default, deserialize_with = "string_like")]
    login_account_id: Option<String>,
    #[serde(default)]
    conversion_actions: BTreeMap<String, StringLike>,
    validate_only: Option<bool>,
    lookback_days: Option<u32>,
    requests_per_second: Option<u32>,
    max_batch_events: Option<usize>,
    timeout_ms: Option<u64>,
    batch_max_age_s: Option<u64>,
    #[serde(default)]
    lanes: BTreeMap<String, String>,
    retry_initial_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    max_retry_hours: Option<u64>,
    auth_retry_s: Option<u64>,
}

/// A table value that is an ID: text, or a bare number taken as text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum StringLike {
    S(String),
    U(u64),
}

impl StringLike {
    fn text(&self) -> String {
        match self {
            StringLike::S(s) => s.clone(),
            StringLike::U(n) => n.to_string(),
        }
    }
}

/// Delivery settings of one destination.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Requests per second to this account (one token per attempt).
    pub requests_per_second: NonZeroU32,
    /// Events per request, at most the platform's cap.
    pub max_batch_events: usize,
    /// Client timeout per request.
    pub timeout: Duration,
    /// The batched lane sends when full or when its oldest event is this old.
    pub batch_max_age: Duration,
    /// Kind → lane, over the rule's and DESIGN.md §3's defaults.
    pub lanes: BTreeMap<String, LaneKind>,
    /// First retry delay after a transient failure (doubling, with jitter).
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Give up on a transient failure after this long even inside the
    /// platform's window (`None`: the window alone decides).
    pub max_retry_age: Option<Duration>,
    /// How often a paused destination (bad credentials) tries again.
    pub auth_retry: Duration,
}

impl DeliveryConfig {
    /// The lane of `kind` for this destination: configured, else `default`
    /// (the rule's lane).
    pub fn lane(&self, kind: &Kind, default: LaneKind) -> LaneKind {
        self.lanes.get(kind.as_str()).copied().unwrap_or(default)
    }
}

fn delivery(
    prefix: &str,
    raw: RawDelivery,
    cap: usize,
    default_timeout_ms: u64,
) -> Result<DeliveryConfig, ConfigError> {
    let key = |k: &str| format!("destinations.{prefix}.{k}");
    let requests_per_second = NonZeroU32::new(raw.requests_per_second.unwrap_or(10))
        .ok_or_else(|| invalid(key("requests_per_second"), "must be at least 1"))?;
    let max_batch_events = raw.max_batch_events.unwrap_or(cap);
    if !(1..=cap).contains(&max_batch_events) {
        return Err(invalid(
            key("max_batch_events"),
            format!("must be between 1 and {cap} (the platform's per-request cap)"),
        ));
    }
    let timeout = Duration::from_millis(raw.timeout_ms.unwrap_or(default_timeout_ms).max(100));
    let batch_max_age = Duration::from_secs(raw.batch_max_age_s.unwrap_or(300));
    if batch_max_age > MAX_BATCH_AGE || batch_max_age.is_zero() {
        return Err(invalid(
            key("batch_max_age_s"),
            "must be between 1 and 3600 (a batched event waits at most an hour)",
        ));
    }
    let mut lanes = BTreeMap::new();
    for (kind, lane) in raw.lanes {
        Kind::new(&kind).map_err(|e| invalid(key("lanes"), e.to_string()))?;
        let lane = match lane.as_str() {
            "real_time" => LaneKind::RealTime,
            "batched" => LaneKind::Batched,
            other => {
                return Err(invalid(
                    key("lanes"),
                    format!("{kind} = {other:?}: use \"real_time\" or \"batched\""),
                ))
            }
        };
        lanes.insert(kind, lane);
    }
    let retry_initial = Duration::from_millis(raw.retry_initial_ms.unwrap_or(1000).max(10));
    let retry_max = Duration::from_millis(raw.retry_max_ms.unwrap_or(300_000));
    if retry_max < retry_initial {
        return Err(invalid(
            key("retry_max_ms"),
            "must be at least retry_initial_ms",
        ));
    }
    let max_retry_age = match raw.max_retry_hours {
        None => None,
        Some(0) => {
            return Err(invalid(
                key("max_retry_hours"),
                "must be at least 1 (leave it out to retry for the platform's whole window)",
            ))
        }
        Some(h) => Some(Duration::from_secs(h * 3600)),
    };
    let auth_retry = Duration::from_secs(raw.auth_retry_s.unwrap_or(60).max(1));
    Ok(DeliveryConfig {
        requests_per_second,
        max_batch_events,
        timeout,
        batch_max_age,
        lanes,
        retry_initial,
        retry_max,
        max_retry_age,
        auth_retry,
    })
}

/// `[destinations.meta]`.
#[derive(Debug, Clone)]
pub struct MetaConfig {
    /// `https://graph.facebook.com`, or the sandbox in tests.
    pub base_url: reqwest::Url,
    /// Graph version segment, e.g. `v25.0`.
    pub api_version: String,
    /// Pixel (dataset) ID.
    pub pixel_id: String,
    /// System-user access token.
    pub access_token: Secret,
    /// Routes events to Events Manager's Test Events tab.
    pub test_event_code: Option<String>,
    /// Kind → Meta `event_name`, over DESIGN.md §3's defaults (custom kinds
    /// need an entry here to reach Meta).
    pub event_names: BTreeMap<String, String>,
    /// What to do with an event whose `ad_user_data` consent is denied.
    pub consent_policy: ConsentPolicy,
    /// Limited Data Use: `data_processing_options = ["LDU"]` with this
    /// country and state (0 = let Meta geolocate; 1 = USA; 1000 = California).
    pub limited_data_use: Option<(u32, u32)>,
    /// Rate, batching, lanes, retries.
    pub delivery: DeliveryConfig,
}

/// Meta has no consent field: what to send when `ad_user_data` is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentPolicy {
    /// Send the event without hashed identifiers or click cookies; only
    /// what any HTTP request reveals (IP, user agent) stays.
    SendLimited,
    /// Do not send it; the ledger records it as skipped with the reason.
    Drop,
}

fn url(
    key: &'static str,
    text: Option<String>,
    default: &str,
) -> Result<reqwest::Url, ConfigError> {
    let text = text.unwrap_or_else(|| default.into());
    reqwest::Url::parse(&text).map_err(|e| invalid(key, format!("{text:?} is not a URL ({e})")))
}

pub(super) fn meta(m: RawMeta) -> Result<Option<MetaConfig>, ConfigError> {
    if m.enabled == Some(false) {
        return Ok(None);
    }
    let base_url = url(
        "destinations.meta.base_url",
        m.base_url,
        "https://graph.facebook.com",
    )?;
    let api_version = m.api_version.unwrap_or_else(|| "v25.0".into());
    let well_formed = api_version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
    if !well_formed {
        return Err(invalid(
            "destinations.meta.api_version",
            format!("{api_version:?} is not a Graph version like \"v25.0\""),
        ));
    }
    let pixel_id = m.pixel_id.ok_or_else(|| {
        invalid(
            "destinations.meta.pixel_id",
            "missing: copy the Pixel (dataset) ID from Events Manager",
        )
    })?;
    if pixel_id.is_empty() || !pixel_id.bytes().all(|c| c.is_ascii_digit()) {
        return Err(invalid(
            "destinations.meta.pixel_id",
            "must be the numeric Pixel (dataset) ID",
        ));
    }
    let access_token = m.access_token.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        invalid(
            "destinations.meta.access_token",
            "missing: generate one in Events Manager → Settings → Conversions API and pass it as CAPI_CDC_DESTINATIONS__META__ACCESS_TOKEN",
        )
    })?;
    let consent_policy = match m.consent_policy.as_deref() {
        None | Some("send_limited") => ConsentPolicy::SendLimited,
        Some("drop") => ConsentPolicy::Drop,
        Some(other) => {
            return Err(invalid(
                "destinations.meta.consent_policy",
                format!(
                    "{other:?}: use \"send_limited\" (the event without identifiers) or \"drop\""
                ),
            ))
        }
    };
    for (kind, name) in &m.event_names {
        Kind::new(kind).map_err(|e| invalid("destinations.meta.event_names", e.to_string()))?;
        if name.trim().is_empty() || name.len() > 50 {
            return Err(invalid(
                "destinations.meta.event_names",
                format!("the event_name for {kind} must be 1-50 characters (a standard name like \"Lead\" or your custom event's name)"),
            ));
        }
    }
    let delivery = delivery(
        "meta",
        RawDelivery {
            requests_per_second: m.requests_per_second,
            max_batch_events: m.max_batch_events,
            timeout_ms: m.timeout_ms,
            batch_max_age_s: m.batch_max_age_s,
            lanes: m.lanes,
            retry_initial_ms: m.retry_initial_ms,
            retry_max_ms: m.retry_max_ms,
            max_retry_hours: m.max_retry_hours,
            auth_retry_s: m.auth_retry_s,
        },
        META_MAX_BATCH,
        1500,
    )?;
    let limited_data_use = match m.limited_data_use {
        Some(true) => {
            let country = m.data_processing_options_country.unwrap_or(0);
            let state = m.data_processing_options_state.unwrap_or(0);
            if country > 1 {
                return Err(invalid(
                    "destinations.meta.data_processing_options_country",
                    "use 0 (let Meta geolocate) or 1 (USA)",
                ));
            }
            if state != 0 && !(1000..=1013).contains(&state) {
                return Err(invalid(
                    "destinations.meta.data_processing_options_state",
                    "use 0 (let Meta geolocate) or a state code 1000-1013 (1000 = California)",
                ));
            }
            Some((country, state))
        }
        _ if m.data_processing_options_country.is_some()
            || m.data_processing_options_state.is_some() =>
        {
            return Err(invalid(
                "destinations.meta.limited_data_use",
                "data_processing_options_country/state apply only with limited_data_use = true",
            ))
        }
        _ => None,
    };
    Ok(Some(MetaConfig {
        limited_data_use,
        base_url,
        api_version,
        pixel_id,
        access_token: Secret::new(access_token),
        test_event_code: m.test_event_code.filter(|c| !c.is_empty()),
        event_names: m.event_names,
        consent_policy,
        delivery,
    }))
}

/// `[destinations.google]`: Google Ads through the Data Manager API.
#[derive(Debug, Clone)]
pub struct GoogleConfig {
    /// OAuth token endpoint.
    pub oauth_token_url: reqwest::Url,
    /// Data Manager API base.
    pub data_manager_url: reqwest::Url,
    /// Google Ads API base (conversion actions).
    pub ads_api_url: reqwest::Url,
    /// Google Ads API version segment, e.g. `v22`.
    pub ads_api_version: String,
    /// OAuth client.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: Secret,
    /// OAuth refresh token.
    pub refresh_token: Secret,
    /// Google Ads developer token (the Ads API only; `provision` needs it).
    pub developer_token: Option<Secret>,
    /// The Google Ads customer that owns the conversion actions (digits).
    pub operating_account_id: String,
    /// The manager account the login goes through (digits).
    pub login_account_id: Option<String>,
    /// Kind → conversion action ID; configured IDs win over provisioned ones.
    pub conversion_actions: BTreeMap<String, String>,
    /// Ask Data Manager to validate only.
    pub validate_only: bool,
    /// The actions' click-through lookback window: how long Google accepts an event.
    pub lookback: Duration,
    /// Rate, batching, lanes, retries.
    pub delivery: DeliveryConfig,
}

fn digits(key: &'static str, value: &str) -> Result<String, ConfigError> {
    // Google shows customer IDs as 123-456-7890; the APIs want digits.
    let d: String = value.chars().filter(|c| *c != '-').collect();
    if d.is_empty() || !d.bytes().all(|c| c.is_ascii_digit()) {
        return Err(invalid(
            key,
            format!("{value:?} is not a Google Ads customer ID (digits, e.g. 1234567890)"),
        ));
    }
    Ok(d)
}

pub(super) fn google(g: RawGoogle) -> Result<Option<GoogleConfig>, ConfigError> {
    if g.enabled == Some(false) {
        return Ok(None);
    }
    let required = |key: &'static str, v: Option<String>, what: &str| {
        v.filter(|s| !s.trim().is_empty())
            .ok_or_else(|| invalid(key, format!("missing: {what}")))
    };
    let client_id = required(
        "destinations.google.client_id",
        g.client_id,
        "the OAuth client ID of your Google Cloud project",
    )?;
    let client_secret = required(
        "destinations.google.client_secret",
        g.client_secret,
        "the OAuth client secret; pass it as CAPI_CDC_DESTINATIONS__GOOGLE__CLIENT_SECRET",
    )?;
    let refresh_token = required(
        "destinations.google.refresh_token",
        g.refresh_token,
        "an OAuth refresh token with the datamanager scope; pass it as CAPI_CDC_DESTINATIONS__GOOGLE__REFRESH_TOKEN",
    )?;
    let operating = required(
        "destinations.google.operating_account_id",
        g.operating_account_id,
        "the Google Ads customer ID that owns the conversion actions",
    )?;
    let operating_account_id = digits("destinations.google.operating_account_id", &operating)?;
    let login_account_id = g
        .login_account_id
        .filter(|s| !s.is_empty())
        .map(|s| digits("destinations.google.login_account_id", &s))
        .transpose()?;
    let ads_api_version = g.ads_api_version.unwrap_or_else(|| "v26".into());
    if !(ads_api_version.starts_with('v')
        && ads_api_version.len() > 1
        && ads_api_version[1..].bytes().all(|c| c.is_ascii_digit()))
    {
        return Err(invalid(
            "destinations.google.ads_api_version",
            format!("{ads_api_version:?} is not a version like \"v22\""),
        ));
    }
    let mut conversion_actions = BTreeMap::new();
    for (kind, id) in &g.conversion_actions {
        Kind::new(kind)
            .map_err(|e| invalid("destinations.google.conversion_actions", e.to_string()))?;
        let id = id.text();
        if id.is_empty() || !id.bytes().all(|c| c.is_ascii_digit()) {
            return Err(invalid("destinations.google.conversion_actions", format!("{kind} = {id:?}: a conversion action ID is digits (Google Ads → Goals → Conversions)")));
        }
        conversion_actions.insert(kind.clone(), id);
    }
    let lookback_days = g.lookback_days.unwrap_or(90);
    if !(1..=90).contains(&lookback_days) {
        return Err(invalid(
            "destinations.google.lookback_days",
            "must be between 1 and 90 (Google's click-through window)",
        ));
    }
    let delivery = delivery(
        "google",
        RawDelivery {
            requests_per_second: g.requests_per_second,
            max_batch_events: g.max_batch_events,
            timeout_ms: g.timeout_ms,
            batch_max_age_s: g.batch_max_age_s,
            lanes: g.lanes,
            retry_initial_ms: g.retry_initial_ms,
            retry_max_ms: g.retry_max_ms,
            max_retry_hours: g.max_retry_hours,
            auth_retry_s: g.auth_retry_s,
        },
        GOOGLE_MAX_BATCH,
        5000,
    )?;
    Ok(Some(GoogleConfig {
        oauth_token_url: url(
            "destinations.google.oauth_token_url",
            g.oauth_token_url,
            "https://oauth2.googleapis.com/token",
        )?,
        data_manager_url: url(
            "destinations.google.data_manager_url",
            g.data_manager_url,
            "https://datamanager.googleapis.com",
        )?,
        ads_api_url: url(
            "destinations.google.ads_api_url",
            g.ads_api_url,
            "https://googleads.googleapis.com",
        )?,
        ads_api_version,
        client_id,
        client_secret: Secret::new(client_secret),
        refresh_token: Secret::new(refresh_token),
        developer_token: g.developer_token.filter(|t| !t.is_empty()).map(Secret::new),
        operating_account_id,
        login_account_id,
        conversion_actions,
        validate_only: g.validate_only.unwrap_or(false),
        lookback: Duration::from_secs(u64::from(lookback_days) * 86_400),
        delivery,
    }))
}
