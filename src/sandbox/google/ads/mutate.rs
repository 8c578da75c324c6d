//! `ConversionActionService.MutateConversionActions`: create (and remove) conversion actions.
//!
//! Input: `MutateConversionActionsRequest` REST JSON (`operations[]` with
//! `create` | `update` | `remove`, `partialFailure`, `validateOnly`,
//! `responseContentType`). Output: `{"results":[{"resourceName"}]}` (plus
//! `conversionAction` for `MUTABLE_RESOURCE`, plus `partialFailureError` when
//! partial failure is on), or a 400 whose `GoogleAdsFailure.errors[]` carry
//! `errorCode` and `location.fieldPathElements` (`operations[i].create.name`).
//!
//! Protos: `google/ads/googleads/v22/services/conversion_action_service.proto`,
//! `resources/conversion_action.proto`, `errors/conversion_action_error.proto`
//! (`DUPLICATE_NAME`, `CREATION_NOT_SUPPORTED`,
//! `CANNOT_SET_RULE_BASED_ATTRIBUTION_MODELS`), `errors/field_error.proto`,
//! `errors/request_error.proto`, `errors/range_error.proto`,
//! `errors/mutate_error.proto`.
//!
//! Invariants: without `partialFailure` one bad operation fails all and
//! nothing changes; `validateOnly` never changes anything; every created
//! action records its creation time (the 6-hour hold before uploads).
//! Sandbox choices: names are unique among non-removed actions of the
//! customer (exact match); output-only fields (`id`, `origin`, ...) are
//! ignored on create; `update` operations answer 501 (not served); lookback
//! windows are checked to 1–90 (click-through) and 1–30 (view-through) days.

use std::collections::HashSet;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::super::error::{ads_failure, AdsErrorItem, ApiError};
use super::super::failure::Failure;
use super::super::schema::{Checker, Path};
use super::super::GoogleSandbox;
use super::create::{build, create, Draft, ACTION_FIELDS};
use super::fields;
use super::{first_parse_error, parse_body, ENUM_PREFIX};

/// Google Ads allows at most 10,000 operations per mutate request (quotas page).
const MAX_OPERATIONS: usize = 10_000;

const REQUEST_FIELDS: &[&str] = &[
    "customerId",
    "operations",
    "partialFailure",
    "validateOnly",
    "responseContentType",
];
const OPERATION_FIELDS: &[&str] = &["updateMask", "create", "update", "remove"];
const RESPONSE_CONTENT_TYPES: &[&str] = &["UNSPECIFIED", "RESOURCE_NAME_ONLY", "MUTABLE_RESOURCE"];
#[derive(Debug)]
enum Operation {
    Create(Draft),
    Remove(u64, Path),
    Update,
    Invalid,
}

/// Answers one mutate request for `customer_id` (already authorised).
pub(super) fn mutate(
    sandbox: &GoogleSandbox,
    version: &str,
    customer_id: &str,
    now: i64,
    body: &[u8],
) -> Result<Response, Failure> {
    let value = parse_body(body)?;
    let mut c = Checker::default();
    let root = Path::root();
    let Some(req) = c.object(&value, &root, REQUEST_FIELDS) else {
        return Err(first_parse_error(&c).into());
    };
    c.string(&req, "customerId");
    let partial_failure = c.boolean(&req, "partialFailure").unwrap_or(false);
    let validate_only = c.boolean(&req, "validateOnly").unwrap_or(false);
    let content_type = format!("{ENUM_PREFIX}ResponseContentTypeEnum.ResponseContentType");
    let mutable_resource = c.enumeration(
        &req,
        "responseContentType",
        &content_type,
        RESPONSE_CONTENT_TYPES,
    ) == Some("MUTABLE_RESOURCE");
    let mut errors: Vec<Vec<AdsErrorItem>> = Vec::new();
    let mut ops = Vec::new();
    let ops_path = root.field("operations");
    match c.list(&req, "operations") {
        None | Some([]) => {
            let e = located(
                "fieldError",
                "REQUIRED_NONEMPTY_LIST",
                "The field must contain at least one operation.",
                &ops_path,
            );
            return Err(ApiError::ads(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                version,
                vec![e],
            )
            .into());
        }
        Some(list) if list.len() > MAX_OPERATIONS => {
            let e = located(
                "requestError",
                "TOO_MANY_MUTATE_OPERATIONS",
                "Too many mutate operations in the request.",
                &ops_path,
            );
            return Err(ApiError::ads(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                version,
                vec![e],
            )
            .into());
        }
        Some(list) => {
            for (i, v) in list.iter().enumerate() {
                let mut op_errors = Vec::new();
                ops.push(operation(
                    &mut c,
                    v,
                    &ops_path.index(i),
                    customer_id,
                    &mut op_errors,
                ));
                errors.push(op_errors);
            }
        }
    }
    if c.has_parse_errors() {
        return Err(first_parse_error(&c).into());
    }
    if ops.iter().any(|o| matches!(o, Operation::Update)) {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "UNIMPLEMENTED",
            "The sandbox serves create and remove operations only.",
        )
        .into());
    }

    let mut store = sandbox.store();
    let mut names: HashSet<String> = store
        .actions()
        .filter(|a| a.customer_id == customer_id && a.status != "REMOVED")
        .map(|a| a.name.clone())
        .collect();
    for (op, op_errors) in ops.iter().zip(errors.iter_mut()) {
        if !op_errors.is_empty() {
            continue;
        }
        match op {
            Operation::Create(d) if !names.insert(d.name.clone()) => op_errors.push(located(
                "conversionActionError",
                "DUPLICATE_NAME",
                "The specified conversion action name already exists.",
                &d.name_path,
            )),
            Operation::Remove(id, path) => {
                let live = store
                    .actions()
                    .any(|a| a.id == *id && a.customer_id == customer_id && a.status != "REMOVED");
                if !live {
                    op_errors.push(located(
                        "mutateError",
                        "RESOURCE_NOT_FOUND",
                        "The requested resource was not found.",
                        path,
                    ));
                }
            }
            _ => {}
        }
    }
    let all_errors: Vec<AdsErrorItem> = errors.iter().flatten().cloned().collect();
    if !all_errors.is_empty() && !partial_failure {
        return Err(ApiError::ads(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            version,
            all_errors,
        )
        .into());
    }
    let mut body = json!({});
    if !all_errors.is_empty() {
        body["partialFailureError"] = partial_failure_error(version, &all_errors);
    }
    if validate_only {
        return Ok(Json(body).into_response());
    }
    let mut results = Vec::new();
    for (op, op_errors) in ops.into_iter().zip(&errors) {
        if !op_errors.is_empty() {
            results.push(json!({}));
            continue;
        }
        let action = match op {
            Operation::Create(d) => {
                let id = store.next_action_id();
                let action = build(d, id, customer_id, now);
                store.insert_action(action.clone());
                action
            }
            Operation::Remove(id, _) => match store.action_mut(id) {
                Some(a) => {
                    a.status = "REMOVED".into();
                    a.clone()
                }
                None => continue,
            },
            Operation::Update | Operation::Invalid => continue,
        };
        let mut result = json!({ "resourceName": action.resource_name() });
        if mutable_resource {
            result["conversionAction"] = fields::render_all(&action);
        }
        results.push(result);
    }
    tracing::info!(
        customer = customer_id,
        operations = results.len(),
        failed = all_errors.len(),
        "google sandbox mutated conversion actions"
    );
    body["results"] = Value::Array(results);
    Ok(Json(body).into_response())
}

fn operation(
    c: &mut Checker,
    v: &Value,
    path: &Path,
    customer_id: &str,
    errors: &mut Vec<AdsErrorItem>,
) -> Operation {
    let Some(op) = c.object(v, path, OPERATION_FIELDS) else {
        return Operation::Invalid;
    };
    c.string(&op, "updateMask");
    let set: Vec<&str> = ["create", "update", "remove"]
        .into_iter()
        .filter(|n| op.has(n))
        .collect();
    match set.as_slice() {
        [] => {
            errors.push(located(
                "requestError",
                "OPERATION_REQUIRED",
                "Mutate operations must have 'create', 'update', or 'remove' specified.",
                path,
            ));
            Operation::Invalid
        }
        ["create"] => match c.message(&op, "create", ACTION_FIELDS) {
            Some(f) => create(c, &f, errors).map_or(Operation::Invalid, Operation::Create),
            None => Operation::Invalid,
        },
        ["update"] => Operation::Update,
        ["remove"] => {
            let rpath = path.field("remove");
            let Some(name) = c.string(&op, "remove") else {
                errors.push(located(
                    "requestError",
                    "RESOURCE_NAME_MISSING",
                    "Resource name is missing.",
                    &rpath,
                ));
                return Operation::Invalid;
            };
            let prefix = format!("customers/{customer_id}/conversionActions/");
            match name
                .strip_prefix(&prefix)
                .and_then(|id| id.parse::<u64>().ok())
            {
                Some(id) => Operation::Remove(id, rpath),
                None => {
                    errors.push(located(
                        "requestError",
                        "RESOURCE_NAME_MALFORMED",
                        "Resource name is malformed.",
                        &rpath,
                    ));
                    Operation::Invalid
                }
            }
        }
        _ => {
            c.parse_error(path, format!("Invalid JSON payload received. Oneof field 'operation' at '{}' is set more than once.", path.camel()));
            Operation::Invalid
        }
    }
}

pub(super) fn located(
    kind: &'static str,
    code: &'static str,
    message: &str,
    path: &Path,
) -> AdsErrorItem {
    let mut item = AdsErrorItem::new(kind, code, message);
    item.location = path.elements();
    item
}

/// `partialFailureError`: a `google.rpc.Status` (code 3) wrapping a `GoogleAdsFailure`.
fn partial_failure_error(version: &str, errors: &[AdsErrorItem]) -> Value {
    let render = |e: &AdsErrorItem| {
        let at: Vec<String> = e
            .location
            .iter()
            .map(|(n, i)| i.map_or_else(|| n.clone(), |i| format!("{n}[{i}]")))
            .collect();
        format!("{}, at {}", e.message, at.join("."))
    };
    let message = match errors {
        [one] => render(one),
        [first, ..] => format!(
            "Multiple errors in 'details'. First error: {}",
            render(first)
        ),
        [] => String::new(),
    };
    let detail = ApiError::ads(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        version,
        errors.to_vec(),
    )
    .details
    .into_iter()
    .next()
    .unwrap_or_else(|| ads_failure(version, Vec::new()));
    json!({ "code": 3, "message": message, "details": [detail] })
}
