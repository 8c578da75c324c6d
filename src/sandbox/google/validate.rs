//! Data Manager `IngestEventsRequest` checks: a pure function of the body, the
//! clock and the known conversion actions.
//!
//! Input: the parsed JSON body and a [`Context`]. Output: the routed events
//! ([`Ingest`]), or every violation found ([`Rejected`]). The caller answers
//! the first JSON-mapping violation alone (Google's front end stops at the
//! first parse error), otherwise all semantic violations in one
//! `BadRequest`; either way nothing is stored (fast-fail model,
//! devguides/concepts/understand-errors).
//!
//! Protos followed (googleapis/googleapis f8291d2b):
//! `google/ads/datamanager/v1/ingestion_service.proto` (request, `Encoding`,
//! 2,000-event cap), `destination.proto` (`Destination`, `ProductAccount`,
//! `AccountType`, deprecated `Product`), `consent.proto`,
//! `encryption_info.proto`, `error.proto` (`ErrorReason` names used as
//! `fieldViolations[].reason`); events and user data in `validate/`.
//!
//! Sandbox choices where Google documents nothing:
//! - only `GOOGLE_ADS` operating accounts are served (`INVALID_DESTINATION` otherwise);
//! - an action younger than 6 hours is refused with `INVALID_CONVERSION_ACTION_ID`
//!   on `destinations[i].product_destination_id`, the description naming the Ads
//!   API's `TOO_RECENT_CONVERSION_ACTION` (Data Manager has no dedicated reason);
//! - the hold applies to `validateOnly` requests too.

mod event;
mod nested;
mod user_data;

pub use self::event::MAX_FUTURE_SKEW_MS;
pub use self::user_data::MAX_USER_IDENTIFIERS;

use std::collections::HashMap;

use serde_json::Value;

use super::schema::{Checker, Fields, Path, Violation};
use super::store::{Action, ACTION_HOLD_MS};

/// `IngestEventsRequest.destinations`: at most 10 (Data Manager limits page).
pub const MAX_DESTINATIONS: usize = 10;
/// `IngestEventsRequest.events`: at most 2,000 (ingestion_service.proto).
pub const MAX_EVENTS: usize = 2000;

const REQUEST_FIELDS: &[&str] = &[
    "destinations",
    "events",
    "consent",
    "validateOnly",
    "encoding",
    "encryptionInfo",
];
const DESTINATION_FIELDS: &[&str] = &[
    "reference",
    "loginAccount",
    "linkedAccount",
    "operatingAccount",
    "productDestinationId",
];
const PRODUCT_ACCOUNT_FIELDS: &[&str] = &["product", "accountId", "accountType"];
const ACCOUNT_TYPE: &str =
    "type.googleapis.com/google.ads.datamanager.v1.ProductAccount.AccountType";
const ACCOUNT_TYPES: &[&str] = &[
    "ACCOUNT_TYPE_UNSPECIFIED",
    "GOOGLE_ADS",
    "DISPLAY_VIDEO_PARTNER",
    "DISPLAY_VIDEO_ADVERTISER",
    "DATA_PARTNER",
    "GOOGLE_ANALYTICS_PROPERTY",
    "GOOGLE_AD_MANAGER_AUDIENCE_LINK",
    "FLOODLIGHT_CONFIG",
];
const PRODUCT_TYPE: &str = "type.googleapis.com/google.ads.datamanager.v1.Product";
const PRODUCTS: &[&str] = &[
    "PRODUCT_UNSPECIFIED",
    "GOOGLE_ADS",
    "DISPLAY_VIDEO_PARTNER",
    "DISPLAY_VIDEO_ADVERTISER",
    "DATA_PARTNER",
];
const ENCODING_TYPE: &str = "type.googleapis.com/google.ads.datamanager.v1.Encoding";
const ENCODINGS: &[&str] = &["ENCODING_UNSPECIFIED", "HEX", "BASE64"];
const CONSENT_FIELDS: &[&str] = &["adUserData", "adPersonalization"];
const CONSENT_TYPE: &str = "type.googleapis.com/google.ads.datamanager.v1.ConsentStatus";
/// `ConsentStatus` value names.
pub(super) const CONSENT_VALUES: &[&str] = &[
    "CONSENT_STATUS_UNSPECIFIED",
    "CONSENT_GRANTED",
    "CONSENT_DENIED",
];
const ENCRYPTION_INFO_FIELDS: &[&str] = &[
    "gcpWrappedKeyInfo",
    "awsWrappedKeyInfo",
    "coordinatorKeyInfo",
];
const GCP_KEY_FIELDS: &[&str] = &["keyType", "wipProvider", "kekUri", "encryptedDek"];
const AWS_KEY_FIELDS: &[&str] = &["keyType", "roleArn", "kekUri", "encryptedDek"];
const COORDINATOR_KEY_FIELDS: &[&str] = &["keyId"];
const KEY_TYPES: &[&str] = &["KEY_TYPE_UNSPECIFIED", "XCHACHA20_POLY1305"];
/// Conversion action types Data Manager ingests into (send-events guide).
const INGESTIBLE_TYPES: &[&str] = &["UPLOAD_CLICKS", "WEBPAGE"];

/// What the checks need besides the body.
#[derive(Debug)]
pub(super) struct Context<'a> {
    /// Sandbox "now", Unix ms.
    pub now_ms: i64,
    /// The operating account the OAuth user may write to.
    pub operating_account_id: &'a str,
    /// The manager the OAuth user logs in through, if any.
    pub login_account_id: Option<&'a str>,
    /// Known conversion actions by id.
    pub actions: &'a HashMap<String, Action>,
    /// An injected fault: reject this event index.
    pub reject_event: Option<usize>,
}

/// A request that passed every check.
#[derive(Debug)]
pub(super) struct Ingest<'a> {
    /// `validateOnly`: check, store nothing.
    pub validate_only: bool,
    /// Destinations in request order.
    pub destinations: Vec<Destination<'a>>,
    /// Events in request order.
    pub events: Vec<event::Event<'a>>,
}

/// A resolved destination.
#[derive(Debug)]
pub(super) struct Destination<'a> {
    /// The destination object as received.
    pub raw: &'a Value,
    /// Its conversion action id.
    pub action_id: &'a str,
}

/// Why a request is refused.
#[derive(Debug)]
pub(super) enum Rejected {
    /// 400: the violations found, in body order.
    Invalid(Vec<Violation>),
    /// 403: a destination's operating or login account is not the caller's.
    PermissionDenied,
}

/// Checks a whole `IngestEventsRequest`.
pub(super) fn validate_ingest<'a>(
    body: &'a Value,
    ctx: &Context<'_>,
) -> Result<Ingest<'a>, Rejected> {
    let mut c = Checker::default();
    let root = Path::root();
    let Some(req) = c.object(body, &root, REQUEST_FIELDS) else {
        return Err(Rejected::Invalid(c.violations));
    };
    let validate_only = c.boolean(&req, "validateOnly").unwrap_or(false);
    let encoding = c
        .enumeration(&req, "encoding", ENCODING_TYPE, ENCODINGS)
        .filter(|e| *e != "ENCODING_UNSPECIFIED");
    let request_consent = consent(&mut c, &req);
    let encrypted = encryption_info(&mut c, &req);

    let mut permission_denied = false;
    let destinations = destinations(&mut c, &req, ctx, &mut permission_denied);
    if c.has_parse_errors() {
        return Err(Rejected::Invalid(c.violations));
    }
    if permission_denied {
        return Err(Rejected::PermissionDenied);
    }

    let events_path = root.field("events");
    let mut events = Vec::new();
    match c.list(&req, "events") {
        None | Some([]) => c.invalid(
            &events_path,
            "REQUIRED_FIELD_MISSING",
            "At least one event is required.",
        ),
        Some(list) if list.len() > MAX_EVENTS => c.invalid(
            &events_path,
            "TOO_MANY_EVENTS",
            format!(
                "At most {MAX_EVENTS} events can be sent in one request; got {}.",
                list.len()
            ),
        ),
        Some(list) => {
            let ectx = event::EventContext {
                now_ms: ctx.now_ms,
                encoding,
                encrypted,
                references: destinations.iter().map(|d| d.reference).collect(),
                lookback_days: destinations.iter().map(|d| d.lookback_days).collect(),
                request_consent,
                validate_only,
            };
            let mut user_data_seen = false;
            for (i, value) in list.iter().enumerate() {
                let checked = event::check(&mut c, value, &events_path.index(i), &ectx);
                if let Some(ev) = checked {
                    user_data_seen |= ev.has_user_data;
                    events.push(ev);
                }
            }
            if user_data_seen && encoding.is_none() {
                c.invalid(
                    &root.field("encoding"),
                    "REQUIRED_FIELD_MISSING",
                    "encoding (HEX or BASE64) is required when events carry user data.",
                );
            }
            if let Some(i) = ctx.reject_event.filter(|i| *i < list.len()) {
                c.invalid(
                    &events_path.index(i),
                    "INVALID_EVENT",
                    "This event is not valid (injected fault).",
                );
            }
        }
    }
    let resolved: Option<Vec<Destination<'a>>> = destinations
        .iter()
        .map(|d| {
            Some(Destination {
                raw: d.raw,
                action_id: d.action_id?,
            })
        })
        .collect();
    match resolved {
        Some(destinations) if c.violations.is_empty() => Ok(Ingest {
            validate_only,
            destinations,
            events,
        }),
        Some(_) => Err(Rejected::Invalid(c.violations)),
        None => {
            // Every unresolved destination has a violation already; this keeps the invariant local.
            if c.violations.is_empty() {
                c.invalid(
                    &root.field("destinations"),
                    "INVALID_DESTINATION",
                    "This Destination is not valid.",
                );
            }
            Err(Rejected::Invalid(c.violations))
        }
    }
}

/// A destination as far as it could be read.
struct Dest<'a> {
    raw: &'a Value,
    reference: Option<&'a str>,
    action_id: Option<&'a str>,
    lookback_days: Option<i64>,
}

fn destinations<'a>(
    c: &mut Checker,
    req: &Fields<'a>,
    ctx: &Context<'_>,
    permission_denied: &mut bool,
) -> Vec<Dest<'a>> {
    let path = Path::root().field("destinations");
    let list = match c.list(req, "destinations") {
        None | Some([]) => {
            c.invalid(
                &path,
                "REQUIRED_FIELD_MISSING",
                "At least one destination is required.",
            );
            return Vec::new();
        }
        Some(list) if list.len() > MAX_DESTINATIONS => {
            c.invalid(
                &path,
                "TOO_MANY_DESTINATIONS",
                format!("At most {MAX_DESTINATIONS} destinations are allowed per request."),
            );
            return Vec::new();
        }
        Some(list) => list,
    };
    let mut out: Vec<Dest<'a>> = Vec::new();
    for (i, raw) in list.iter().enumerate() {
        let dpath = path.index(i);
        let Some(d) = c.object(raw, &dpath, DESTINATION_FIELDS) else {
            // Keep indices aligned with the request for event routing messages.
            out.push(Dest {
                raw,
                reference: None,
                action_id: None,
                lookback_days: None,
            });
            continue;
        };
        let reference = c.string(&d, "reference");
        if reference.is_some() && out.iter().any(|o| o.reference == reference) {
            c.invalid(
                &dpath.field("reference"),
                "DUPLICATE_DESTINATION_REFERENCE",
                "Two or more destinations in the request have the same reference.",
            );
        }
        let operating = account(c, &d, "operatingAccount", true);
        if let Some(id) = operating {
            if id != ctx.operating_account_id {
                *permission_denied = true;
            }
        }
        let login = account(c, &d, "loginAccount", false);
        let expected_login = ctx.login_account_id.unwrap_or(ctx.operating_account_id);
        match login {
            Some(id) if id != expected_login => *permission_denied = true,
            None if ctx.login_account_id.is_some() && !d.has("loginAccount") => {
                *permission_denied = true
            }
            _ => {}
        }
        if d.has("linkedAccount") {
            account(c, &d, "linkedAccount", false);
            c.invalid(
                &dpath.field("linkedAccount"),
                "LINKED_ACCOUNT_ONLY_ALLOWED_WITH_DATA_PARTNER_LOGIN_ACCOUNT",
                "Linked account is only supported when the login account is a DATA_PARTNER account.",
            );
        }
        let (action_id, lookback_days) = product_destination(c, &d, operating, ctx);
        out.push(Dest {
            raw,
            reference,
            action_id,
            lookback_days,
        });
    }
    out
}

/// Reads a `ProductAccount`; returns its id when it is a well-formed Google Ads account.
fn account<'a>(
    c: &mut Checker,
    d: &Fields<'a>,
    name: &'static str,
    required: bool,
) -> Option<&'a str> {
    let path = d.path.field(name);
    if !d.has(name) {
        if required {
            c.invalid(
                &path,
                "REQUIRED_FIELD_MISSING",
                format!("{name} is required."),
            );
        }
        return None;
    }
    let a = c.message(d, name, PRODUCT_ACCOUNT_FIELDS)?;
    let account_type = c
        .enumeration(&a, "accountType", ACCOUNT_TYPE, ACCOUNT_TYPES)
        .filter(|t| *t != "ACCOUNT_TYPE_UNSPECIFIED");
    let product = c
        .enumeration(&a, "product", PRODUCT_TYPE, PRODUCTS)
        .filter(|t| *t != "PRODUCT_UNSPECIFIED");
    let kind = match (account_type, product) {
        (Some(t), Some(p)) if t != p => {
            c.invalid(
                &path.field("accountType"),
                "INVALID_ARGUMENT",
                "accountType and the deprecated product must match.",
            );
            None
        }
        (Some(t), _) | (None, Some(t)) => Some(t),
        (None, None) => {
            c.invalid(
                &path.field("accountType"),
                "REQUIRED_FIELD_MISSING",
                "accountType is required.",
            );
            None
        }
    };
    let id_path = path.field("accountId");
    let id = match c.required_string(&a, "accountId") {
        None => None,
        Some(id) if !id.bytes().all(|b| b.is_ascii_digit()) => {
            c.invalid(
                &id_path,
                "INVALID_NUMBER_FORMAT",
                "String is not a valid number.",
            );
            None
        }
        Some(id) => Some(id),
    };
    match kind {
        Some("GOOGLE_ADS") => id,
        Some(_) => {
            c.invalid(
                &path.field("accountType"),
                "INVALID_DESTINATION",
                "The sandbox serves GOOGLE_ADS accounts only.",
            );
            None
        }
        None => None,
    }
}

/// Resolves `productDestinationId` to a usable conversion action: `(id, lookback days)`.
fn product_destination<'a>(
    c: &mut Checker,
    d: &Fields<'a>,
    operating: Option<&str>,
    ctx: &Context<'_>,
) -> (Option<&'a str>, Option<i64>) {
    let path = d.path.field("productDestinationId");
    let Some(id) = c.required_string(d, "productDestinationId") else {
        return (None, None);
    };
    let action = ctx
        .actions
        .get(id)
        .filter(|a| Some(a.customer_id.as_str()) == operating && a.status != "REMOVED");
    let Some(action) = action else {
        if operating.is_some() {
            c.invalid(
                &path,
                "INVALID_CONVERSION_ACTION_ID",
                "Conversion action ID is not valid.",
            );
        }
        return (None, None);
    };
    if !INGESTIBLE_TYPES.contains(&action.action_type.as_str()) {
        c.invalid(
            &path,
            "INVALID_CONVERSION_ACTION_TYPE",
            "The conversion action type is not valid.",
        );
        return (None, None);
    }
    if ctx.now_ms - action.created_at_ms < ACTION_HOLD_MS {
        c.invalid(
            &path,
            "INVALID_CONVERSION_ACTION_ID",
            "The conversion action was created less than 6 hours ago; wait 6 hours after \
             creating it before uploading (Google Ads: TOO_RECENT_CONVERSION_ACTION).",
        );
        return (None, None);
    }
    (Some(id), Some(action.click_through_days))
}

/// Request-level consent: `(adUserData, adPersonalization)`, unspecified when unset.
fn consent<'a>(c: &mut Checker, f: &Fields<'a>) -> (&'a str, &'a str) {
    read_consent(c, f).unwrap_or((CONSENT_VALUES[0], CONSENT_VALUES[0]))
}

/// Reads a `consent` field of `f`, if set.
pub(super) fn read_consent<'a>(c: &mut Checker, f: &Fields<'a>) -> Option<(&'a str, &'a str)> {
    let consent = c.message(f, "consent", CONSENT_FIELDS)?;
    let user_data = c
        .enumeration(&consent, "adUserData", CONSENT_TYPE, CONSENT_VALUES)
        .unwrap_or(CONSENT_VALUES[0]);
    let personalization = c
        .enumeration(&consent, "adPersonalization", CONSENT_TYPE, CONSENT_VALUES)
        .unwrap_or(CONSENT_VALUES[0]);
    Some((user_data, personalization))
}

/// Reads `encryptionInfo`; true when identifiers are declared encrypted.
fn encryption_info(c: &mut Checker, req: &Fields<'_>) -> bool {
    let Some(info) = c.message(req, "encryptionInfo", ENCRYPTION_INFO_FIELDS) else {
        return false;
    };
    let mut set = 0;
    for (name, schema) in [
        ("gcpWrappedKeyInfo", GCP_KEY_FIELDS),
        ("awsWrappedKeyInfo", AWS_KEY_FIELDS),
        ("coordinatorKeyInfo", COORDINATOR_KEY_FIELDS),
    ] {
        let Some(key) = c.message(&info, name, schema) else {
            continue;
        };
        set += 1;
        for &field in schema {
            let present = if field == "keyType" {
                c.enumeration(
                    &key,
                    field,
                    "type.googleapis.com/google.ads.datamanager.v1.GcpWrappedKeyInfo.KeyType",
                    KEY_TYPES,
                )
                .filter(|t| *t != "KEY_TYPE_UNSPECIFIED")
                .is_some()
            } else {
                c.string(&key, field).is_some()
            };
            if !present {
                c.invalid(
                    &key.path.field(field),
                    "REQUIRED_FIELD_MISSING",
                    format!("{field} is required."),
                );
            }
        }
    }
    if set != 1 {
        c.invalid(
            &info.path,
            "INVALID_ARGUMENT",
            "Exactly one of gcpWrappedKeyInfo, awsWrappedKeyInfo or coordinatorKeyInfo must be set.",
        );
    }
    true
}
