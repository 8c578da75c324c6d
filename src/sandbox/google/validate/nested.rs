//! Checks of the messages nested in an `Event`: device info, cart data and
//! items, custom variables, key/value lists, user properties, event location.
//!
//! Input: the already-read parent [`Fields`]. Output: violations.
//! Protos (`google/ads/datamanager/v1/`): `device_info.proto` (`ip_address`
//! is IPv4 or IPv6), `cart_data.proto` (`merchant_id` digits per
//! `ErrorReason.INVALID_MERCHANT_ID`, `quantity` int64, ISO 639-1 feed
//! language), `item_parameter.proto`, `experimental_field.proto`,
//! `user_properties.proto`, `event.proto` (`CustomVariable`,
//! `EventParameter`, `EventLocation`).

use std::net::IpAddr;

use super::super::schema::{Checker, Fields};
use super::event::{references, EventContext};
use super::user_data;

const TYPE_PREFIX: &str = "type.googleapis.com/google.ads.datamanager.v1.";

pub(super) const DEVICE_INFO_FIELDS: &[&str] = &[
    "userAgent",
    "ipAddress",
    "category",
    "languageCode",
    "screenHeight",
    "screenWidth",
    "operatingSystem",
    "operatingSystemVersion",
    "model",
    "brand",
    "browser",
    "browserVersion",
];
pub(super) const CART_FIELDS: &[&str] = &[
    "merchantId",
    "merchantFeedLabel",
    "merchantFeedLanguageCode",
    "transactionDiscount",
    "items",
    "couponCodes",
];
const ITEM_FIELDS: &[&str] = &[
    "merchantProductId",
    "quantity",
    "unitPrice",
    "itemId",
    "additionalItemParameters",
    "merchantId",
    "merchantFeedLabel",
    "merchantFeedLanguageCode",
    "conversionValue",
    "customVariables",
];
const CUSTOM_VARIABLE_FIELDS: &[&str] = &["variable", "value", "destinationReferences"];
pub(super) const PARAMETER_FIELDS: &[&str] = &["parameterName", "value"];
pub(super) const EXPERIMENTAL_FIELDS: &[&str] = &["field", "value"];
const USER_PROPERTIES_FIELDS: &[&str] = &[
    "customerType",
    "customerValueBucket",
    "additionalUserProperties",
];
const USER_PROPERTY_FIELDS: &[&str] = &["propertyName", "value"];
const LOCATION_FIELDS: &[&str] = &[
    "storeId",
    "city",
    "subdivisionCode",
    "regionCode",
    "subcontinentCode",
    "continentCode",
];
const CUSTOMER_TYPES: &[&str] = &["CUSTOMER_TYPE_UNSPECIFIED", "NEW", "RETURNING", "REENGAGED"];
const VALUE_BUCKETS: &[&str] = &["CUSTOMER_VALUE_BUCKET_UNSPECIFIED", "LOW", "MEDIUM", "HIGH"];

pub(super) fn device_info(c: &mut Checker, d: &Fields<'_>) {
    for name in [
        "userAgent",
        "category",
        "languageCode",
        "operatingSystem",
        "operatingSystemVersion",
        "model",
        "brand",
        "browser",
        "browserVersion",
    ] {
        c.string(d, name);
    }
    c.int32(d, "screenHeight");
    c.int32(d, "screenWidth");
    if let Some(ip) = c.string(d, "ipAddress") {
        if ip.parse::<IpAddr>().is_err() {
            c.invalid(
                &d.path.field("ipAddress"),
                "INVALID_FORMAT",
                "ipAddress must be an IPv4 or IPv6 address.",
            );
        }
    }
}

pub(super) fn cart_data(c: &mut Checker, cart: &Fields<'_>, ctx: &EventContext<'_>) {
    merchant_fields(c, cart);
    c.double(cart, "transactionDiscount");
    if let Some(codes) = c.list(cart, "couponCodes") {
        for (i, v) in codes.iter().enumerate() {
            c.string_item(v, &cart.path.field("couponCodes").index(i));
        }
    }
    let Some(items) = c.list(cart, "items") else {
        return;
    };
    for (i, v) in items.iter().enumerate() {
        let path = cart.path.field("items").index(i);
        let Some(item) = c.object(v, &path, ITEM_FIELDS) else {
            continue;
        };
        merchant_fields(c, &item);
        c.string(&item, "merchantProductId");
        c.string(&item, "itemId");
        if let Some(q) = c.int64(&item, "quantity") {
            if q < 0 {
                c.invalid(
                    &path.field("quantity"),
                    "INVALID_ARGUMENT",
                    "quantity must not be negative.",
                );
            }
        }
        c.double(&item, "unitPrice");
        c.double(&item, "conversionValue");
        key_values(c, &item, "additionalItemParameters", PARAMETER_FIELDS, true);
        custom_variables(c, &item, ctx);
    }
}

/// `merchantId` (digits), `merchantFeedLabel`, `merchantFeedLanguageCode` (ISO 639-1).
fn merchant_fields(c: &mut Checker, f: &Fields<'_>) {
    if let Some(id) = c.string(f, "merchantId") {
        if !id.bytes().all(|b| b.is_ascii_digit()) {
            c.invalid(
                &f.path.field("merchantId"),
                "INVALID_MERCHANT_ID",
                "The merchant_id field is not valid: it must contain digits only.",
            );
        }
    }
    c.string(f, "merchantFeedLabel");
    if let Some(lang) = c.string(f, "merchantFeedLanguageCode") {
        if !(lang.len() == 2 && lang.bytes().all(|b| b.is_ascii_lowercase())) {
            c.invalid(
                &f.path.field("merchantFeedLanguageCode"),
                "INVALID_MERCHANT_FEED_LANGUAGE_CODE",
                "The merchant feed language code is not valid (ISO 639-1, e.g. en).",
            );
        }
    }
}

pub(super) fn custom_variables(c: &mut Checker, f: &Fields<'_>, ctx: &EventContext<'_>) {
    let Some(list) = c.list(f, "customVariables") else {
        return;
    };
    for (i, v) in list.iter().enumerate() {
        let path = f.path.field("customVariables").index(i);
        if let Some(var) = c.object(v, &path, CUSTOM_VARIABLE_FIELDS) {
            c.string(&var, "variable");
            c.string(&var, "value");
            references(c, &var, "destinationReferences", ctx);
        }
    }
}

/// A repeated `{name, value}` message; `required` marks both fields REQUIRED.
pub(super) fn key_values(
    c: &mut Checker,
    f: &Fields<'_>,
    name: &'static str,
    schema: &'static [&'static str],
    required: bool,
) {
    let Some(list) = c.list(f, name) else {
        return;
    };
    for (i, v) in list.iter().enumerate() {
        let Some(kv) = c.object(v, &f.path.field(name).index(i), schema) else {
            continue;
        };
        for &field in schema {
            if required {
                c.required_string(&kv, field);
            } else {
                c.string(&kv, field);
            }
        }
    }
}

pub(super) fn user_properties(c: &mut Checker, e: &Fields<'_>) {
    let Some(p) = c.message(e, "userProperties", USER_PROPERTIES_FIELDS) else {
        return;
    };
    c.enumeration(
        &p,
        "customerType",
        &format!("{TYPE_PREFIX}CustomerType"),
        CUSTOMER_TYPES,
    );
    let bucket = format!("{TYPE_PREFIX}CustomerValueBucket");
    c.enumeration(&p, "customerValueBucket", &bucket, VALUE_BUCKETS);
    key_values(
        c,
        &p,
        "additionalUserProperties",
        USER_PROPERTY_FIELDS,
        true,
    );
}

pub(super) fn event_location(c: &mut Checker, e: &Fields<'_>) {
    let Some(loc) = c.message(e, "eventLocation", LOCATION_FIELDS) else {
        return;
    };
    for name in [
        "storeId",
        "city",
        "subdivisionCode",
        "subcontinentCode",
        "continentCode",
    ] {
        c.string(&loc, name);
    }
    if let Some(region) = c.string(&loc, "regionCode") {
        if !user_data::is_region_code(region) {
            c.invalid(
                &loc.path.field("regionCode"),
                "INVALID_REGION_CODE",
                "The region code is not valid (two capital letters, e.g. US).",
            );
        }
    }
}
