//! The `create` half of conversion-action mutates: field checks and defaults.
//!
//! Input: one `operations[i].create` object (a `ConversionAction` in REST
//! JSON). Output: a checked [`Draft`] and the `GoogleAdsError`s found, each
//! located at its field (`operations[i].create.type`), then the stored
//! [`Action`] built from the draft.
//!
//! Proto: `google/ads/googleads/v22/resources/conversion_action.proto`; codes
//! from `errors/field_error.proto` (`REQUIRED`, `INVALID_VALUE`),
//! `errors/request_error.proto` (`INVALID_ENUM_VALUE`), `errors/range_error.proto`
//! (`TOO_LOW`, `TOO_HIGH`) and `errors/conversion_action_error.proto`
//! (`CREATION_NOT_SUPPORTED`, `CANNOT_SET_RULE_BASED_ATTRIBUTION_MODELS`).
//! Defaults when unset (sandbox choice, the proto gives none): category
//! `DEFAULT`, status `ENABLED`, counting `MANY_PER_CLICK`, click-through
//! lookback 90 days, view-through 1 day, `primaryForGoal` true. Output-only
//! fields are accepted and ignored.

use super::super::error::AdsErrorItem;
use super::super::schema::{Checker, Fields, Path};
use super::super::store::{Action, DEFAULT_CLICK_LOOKBACK_DAYS};
use super::fields::MODEL_STATUSES;
use super::mutate::located;
use super::{ATTRIBUTION_MODELS, CATEGORIES, COUNTING_TYPES, ENUM_PREFIX, STATUSES, TYPES};

/// JSON names of `ConversionAction` fields (output-only ones included, then ignored).
pub(super) const ACTION_FIELDS: &[&str] = &[
    "resourceName",
    "id",
    "name",
    "status",
    "type",
    "origin",
    "primaryForGoal",
    "category",
    "ownerCustomer",
    "includeInConversionsMetric",
    "clickThroughLookbackWindowDays",
    "viewThroughLookbackWindowDays",
    "valueSettings",
    "countingType",
    "attributionModelSettings",
    "tagSnippets",
    "phoneCallDurationSeconds",
    "appId",
    "mobileAppVendor",
    "firebaseSettings",
    "thirdPartyAppAnalyticsSettings",
    "googleAnalytics4Settings",
];
const VALUE_SETTINGS_FIELDS: &[&str] = &[
    "defaultValue",
    "defaultCurrencyCode",
    "alwaysUseDefaultValue",
];
const ATTRIBUTION_FIELDS: &[&str] = &["attributionModel", "dataDrivenModelStatus"];
/// Types the API lets clients create (others are created by Google or linked products).
const CREATABLE_TYPES: &[&str] = &[
    "AD_CALL",
    "CLICK_TO_CALL",
    "UPLOAD_CALLS",
    "UPLOAD_CLICKS",
    "WEBPAGE",
    "WEBSITE_CALL",
    "STORE_SALES_DIRECT_UPLOAD",
];
/// Rule-based models were retired; only these may be set.
const SETTABLE_MODELS: &[&str] = &[
    "GOOGLE_ADS_LAST_CLICK",
    "GOOGLE_SEARCH_ATTRIBUTION_DATA_DRIVEN",
];

/// A create operation's values, checked.
#[derive(Debug)]
pub(super) struct Draft {
    pub(super) name: String,
    action_type: String,
    category: String,
    status: String,
    counting_type: String,
    primary_for_goal: bool,
    include_in_conversions_metric: bool,
    click_through_days: i64,
    view_through_days: i64,
    default_value: Option<f64>,
    default_currency_code: Option<String>,
    always_use_default_value: Option<bool>,
    attribution_model: Option<String>,
    pub(super) name_path: Path,
}

/// Checks a `create` body; `None` when a required value is missing or invalid.
pub(super) fn create(
    c: &mut Checker,
    f: &Fields<'_>,
    errors: &mut Vec<AdsErrorItem>,
) -> Option<Draft> {
    let before = errors.len();
    let name_path = f.path.field("name");
    let name = c.string(f, "name").map(str::trim).filter(|n| !n.is_empty());
    if name.is_none() {
        errors.push(located(
            "fieldError",
            "REQUIRED",
            "The required field was not present.",
            &name_path,
        ));
    }
    let mut enumerated = |c: &mut Checker,
                          field: &'static str,
                          type_name: &str,
                          values: &[&'static str],
                          default: Option<&'static str>|
     -> Option<String> {
        let url = format!("{ENUM_PREFIX}{type_name}");
        let got = c.enumeration(f, field, &url, values);
        match got {
            Some("UNSPECIFIED" | "UNKNOWN") => {
                errors.push(located(
                    "requestError",
                    "INVALID_ENUM_VALUE",
                    "Enum value cannot be used.",
                    &f.path.field(field),
                ));
                None
            }
            Some(v) => Some(v.to_owned()),
            None if f.has(field) => None,
            None => match default {
                Some(d) => Some(d.to_owned()),
                None => {
                    errors.push(located(
                        "fieldError",
                        "REQUIRED",
                        "The required field was not present.",
                        &f.path.field(field),
                    ));
                    None
                }
            },
        }
    };
    let action_type = enumerated(
        c,
        "type",
        "ConversionActionTypeEnum.ConversionActionType",
        TYPES,
        None,
    );
    let category = enumerated(
        c,
        "category",
        "ConversionActionCategoryEnum.ConversionActionCategory",
        CATEGORIES,
        Some("DEFAULT"),
    );
    let status = enumerated(
        c,
        "status",
        "ConversionActionStatusEnum.ConversionActionStatus",
        STATUSES,
        Some("ENABLED"),
    );
    let counting_type = enumerated(
        c,
        "countingType",
        "ConversionActionCountingTypeEnum.ConversionActionCountingType",
        COUNTING_TYPES,
        Some("MANY_PER_CLICK"),
    );
    if action_type
        .as_deref()
        .is_some_and(|t| !CREATABLE_TYPES.contains(&t))
    {
        errors.push(located(
            "conversionActionError",
            "CREATION_NOT_SUPPORTED",
            "Creating this conversion action type is not supported.",
            &f.path.field("type"),
        ));
    }
    if status.as_deref() == Some("REMOVED") {
        errors.push(located(
            "requestError",
            "INVALID_ENUM_VALUE",
            "Enum value cannot be used.",
            &f.path.field("status"),
        ));
    }
    let click_through_days = lookback(c, f, "clickThroughLookbackWindowDays", 90, errors)
        .unwrap_or(DEFAULT_CLICK_LOOKBACK_DAYS);
    let view_through_days =
        lookback(c, f, "viewThroughLookbackWindowDays", 30, errors).unwrap_or(1);
    let (default_value, default_currency_code, always_use_default_value) =
        value_settings(c, f, errors);
    let attribution_model = attribution(c, f, errors);
    let primary_for_goal = c.boolean(f, "primaryForGoal").unwrap_or(true);
    let include_in_conversions_metric = c.boolean(f, "includeInConversionsMetric").unwrap_or(true);
    c.int64(f, "phoneCallDurationSeconds");
    c.string(f, "appId");
    if errors.len() > before {
        return None;
    }
    Some(Draft {
        name: name?.to_owned(),
        action_type: action_type?,
        category: category?,
        status: status?,
        counting_type: counting_type?,
        primary_for_goal,
        include_in_conversions_metric,
        click_through_days,
        view_through_days,
        default_value,
        default_currency_code,
        always_use_default_value,
        attribution_model,
        name_path,
    })
}

fn lookback(
    c: &mut Checker,
    f: &Fields<'_>,
    field: &'static str,
    max: i64,
    errors: &mut Vec<AdsErrorItem>,
) -> Option<i64> {
    let days = c.int64(f, field)?;
    let path = f.path.field(field);
    if days < 1 {
        errors.push(located("rangeError", "TOO_LOW", "Too low.", &path));
    } else if days > max {
        errors.push(located("rangeError", "TOO_HIGH", "Too high.", &path));
    }
    Some(days)
}

fn value_settings(
    c: &mut Checker,
    f: &Fields<'_>,
    errors: &mut Vec<AdsErrorItem>,
) -> (Option<f64>, Option<String>, Option<bool>) {
    let Some(vs) = c.message(f, "valueSettings", VALUE_SETTINGS_FIELDS) else {
        return (None, None, None);
    };
    let value = c.double(&vs, "defaultValue");
    if value.is_some_and(|v| v < 0.0) {
        errors.push(located(
            "rangeError",
            "TOO_LOW",
            "Too low.",
            &vs.path.field("defaultValue"),
        ));
    }
    let currency = c.string(&vs, "defaultCurrencyCode");
    if currency.is_some_and(|cur| !(cur.len() == 3 && cur.bytes().all(|b| b.is_ascii_uppercase())))
    {
        errors.push(located(
            "fieldError",
            "INVALID_VALUE",
            "The field's value is invalid: use a three-letter ISO 4217 code.",
            &vs.path.field("defaultCurrencyCode"),
        ));
    }
    (
        value,
        currency.map(str::to_owned),
        c.boolean(&vs, "alwaysUseDefaultValue"),
    )
}

fn attribution(c: &mut Checker, f: &Fields<'_>, errors: &mut Vec<AdsErrorItem>) -> Option<String> {
    let settings = c.message(f, "attributionModelSettings", ATTRIBUTION_FIELDS)?;
    let status_url = format!("{ENUM_PREFIX}DataDrivenModelStatusEnum.DataDrivenModelStatus");
    c.enumeration(
        &settings,
        "dataDrivenModelStatus",
        &status_url,
        MODEL_STATUSES,
    );
    let url = format!("{ENUM_PREFIX}AttributionModelEnum.AttributionModel");
    let model = c.enumeration(&settings, "attributionModel", &url, ATTRIBUTION_MODELS)?;
    if !SETTABLE_MODELS.contains(&model) {
        errors.push(located(
            "conversionActionError",
            "CANNOT_SET_RULE_BASED_ATTRIBUTION_MODELS",
            "Rule-based attribution models are deprecated and can't be set.",
            &settings.path.field("attributionModel"),
        ));
    }
    Some(model.to_owned())
}

pub(super) fn build(d: Draft, id: u64, customer_id: &str, now: i64) -> Action {
    Action {
        id,
        customer_id: customer_id.to_owned(),
        name: d.name,
        category: d.category,
        action_type: d.action_type,
        status: d.status,
        counting_type: d.counting_type,
        primary_for_goal: d.primary_for_goal,
        include_in_conversions_metric: d.include_in_conversions_metric,
        click_through_days: d.click_through_days,
        view_through_days: d.view_through_days,
        default_value: d.default_value,
        default_currency_code: d.default_currency_code,
        always_use_default_value: d.always_use_default_value,
        attribution_model: d.attribution_model,
        created_at_ms: now,
    }
}
