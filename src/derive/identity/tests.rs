//! Normalization and hashing vectors, Meta's published examples first.

use super::*;

/// Expected digests below were computed outside Rust with
/// `printf %s value | sha256sum`, not with `sha256_hex`.
const JOHN_EMAIL: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";
const US_PHONE: &str = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176";
const US: &str = "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621";
const MARY: &str = "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec";
const VALERY: &str = "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c";
const ZIP_94035: &str = "1794327a4d443904421f5ca1f3d72d0a62ba2f0770d80755ec2220fc0efb052e";
const CA: &str = "6959097001d10501ac7d54c0bdb8db61420f658f2922cc26e46d536119a31126";
const NEWYORK: &str = "350c754ba4d38897693aa077ef43072a859d23f613443133fecbbd90a3512ca5";
const UK_PHONE: &str = "033134b911b137918338415ee3d20a064b24773d36a3b02e8b99fdd3fcd6b4cd";

fn h(normalized: Option<String>) -> String {
    meta::hash(&normalized.expect("value should normalize"))
        .as_str()
        .to_owned()
}

#[test]
fn meta_published_examples() {
    assert_eq!(
        meta::email("John_Smith@gmail.com").as_deref(),
        Some("john_smith@gmail.com")
    );
    assert_eq!(h(meta::email("John_Smith@gmail.com")), JOHN_EMAIL);
    assert_eq!(
        meta::phone("(650)555-1212", Some("US")).as_deref(),
        Some("16505551212")
    );
    assert_eq!(h(meta::phone("(650)555-1212", Some("US"))), US_PHONE);
    assert_eq!(meta::country("United States").as_deref(), Some("us"));
    assert_eq!(h(meta::country("United States")), US);
}

#[test]
fn names_keep_letters_and_accents() {
    assert_eq!(h(meta::first_name("Mary")), MARY);
    assert_eq!(meta::first_name("  Valéry ").as_deref(), Some("valéry"));
    assert_eq!(h(meta::last_name("Valéry")), VALERY);
    assert_eq!(
        meta::last_name("O'Brien-Smith.").as_deref(),
        Some("obriensmith")
    );
    assert_eq!(meta::first_name("ÉLODIE").as_deref(), Some("élodie"));
    assert_eq!(meta::first_name("Mary  Ann").as_deref(), Some("mary ann"));
    assert_eq!(meta::first_name(" .,- "), None);
}

#[test]
fn address_parts() {
    assert_eq!(h(meta::zip("94035-1234", Some("us"))), ZIP_94035);
    assert_eq!(meta::zip("940351234", Some("us")).as_deref(), Some("94035"));
    assert_eq!(meta::zip("M1 1AE", Some("gb")).as_deref(), Some("m11ae"));
    assert_eq!(meta::zip("1", None), None);
    assert_eq!(h(meta::state("California")), CA);
    assert_eq!(meta::state("CA").as_deref(), Some("ca"));
    assert_eq!(meta::state("District of Columbia").as_deref(), Some("dc"));
    assert_eq!(meta::state("new   york").as_deref(), Some("ny"));
    assert_eq!(
        meta::state("Baden-Württemberg").as_deref(),
        Some("badenwürttemberg")
    );
    assert_eq!(h(meta::city("New York")), NEWYORK);
    assert_eq!(meta::city("St. Louis 2").as_deref(), Some("stlouis"));
    assert_eq!(meta::city("São Paulo").as_deref(), Some("sãopaulo"));
    assert_eq!(meta::city("123"), None);
}

#[test]
fn countries() {
    assert_eq!(meta::country("US").as_deref(), Some("us"));
    assert_eq!(meta::country("united kingdom").as_deref(), Some("gb"));
    assert_eq!(meta::country("UK").as_deref(), Some("gb"));
    assert_eq!(meta::country("Germany").as_deref(), Some("de"));
    assert_eq!(meta::country("DEU").as_deref(), Some("de"));
    assert_eq!(meta::country("Österreich").as_deref(), Some("at"));
    assert_eq!(meta::country("xx"), None);
    assert_eq!(meta::country("Atlantis"), None);
    assert_eq!(meta::country(""), None);
}

#[test]
fn phones() {
    assert_eq!(
        meta::phone("07700 900123", Some("GB")).as_deref(),
        Some("447700900123")
    );
    assert_eq!(
        meta::phone("+44 7700 900123", None).as_deref(),
        Some("447700900123")
    );
    assert_eq!(
        meta::phone("+44 (0)7700 900123", Some("de")).as_deref(),
        Some("447700900123")
    );
    assert_eq!(
        meta::phone("0044 7700 900123", Some("us")).as_deref(),
        Some("447700900123")
    );
    assert_eq!(
        meta::phone("447700900123", Some("gb")).as_deref(),
        Some("447700900123")
    );
    assert_eq!(h(meta::phone("07700 900123", Some("gb"))), UK_PHONE);
    assert_eq!(
        meta::phone("1 (650) 555-1212", Some("us")).as_deref(),
        Some("16505551212")
    );
    assert_eq!(
        meta::phone("650-555-1212 ext. 42", Some("US")).as_deref(),
        Some("16505551212")
    );
    assert_eq!(
        meta::phone("011 44 7700 900123", Some("us")).as_deref(),
        Some("447700900123")
    );
    assert_eq!(
        meta::phone("555-1212", Some("us")),
        None,
        "7-digit NANP lacks an area code"
    );
    assert_eq!(
        meta::phone("030 1234567", Some("DE")).as_deref(),
        Some("49301234567")
    );
    assert_eq!(
        meta::phone("06 12 34 56 78", Some("fr")).as_deref(),
        Some("33612345678")
    );
    assert_eq!(
        meta::phone("06 1234 5678", Some("it")).as_deref(),
        Some("390612345678")
    );
    assert_eq!(
        meta::phone("8 (912) 345-67-89", Some("ru")).as_deref(),
        Some("79123456789")
    );
    assert_eq!(
        meta::phone("0412 345 678", Some("AU")).as_deref(),
        Some("61412345678")
    );
    assert_eq!(
        meta::phone("07700 900123", None),
        None,
        "trunk zero without a country"
    );
    assert_eq!(
        meta::phone("16505551212", None).as_deref(),
        Some("16505551212")
    );
    assert_eq!(meta::phone("+1 23", None), None, "too short");
    assert_eq!(meta::phone("+1234567890123456", None), None, "too long");
    assert_eq!(meta::phone("", Some("us")), None);
}

#[test]
fn email_and_external_id() {
    assert_eq!(meta::email("  A@B.co ").as_deref(), Some("a@b.co"));
    assert_eq!(meta::email("not-an-email"), None);
    assert_eq!(meta::email("a@localhost"), None);
    assert_eq!(meta::email("a b@c.de"), None);
    assert_eq!(meta::external_id(" Cust-42 ").as_deref(), Some("cust-42"));
    assert_eq!(meta::external_id("   "), None);
}

#[test]
fn prehashed_values_pass_through_lowercased() {
    let upper = JOHN_EMAIL.to_ascii_uppercase();
    assert_eq!(meta::email(&upper).as_deref(), Some(JOHN_EMAIL));
    assert_eq!(meta::phone(&upper, Some("gb")).as_deref(), Some(JOHN_EMAIL));
    assert_eq!(meta::city(&upper).as_deref(), Some(JOHN_EMAIL));
    assert_eq!(
        meta::hash(JOHN_EMAIL).as_str(),
        JOHN_EMAIL,
        "not hashed twice"
    );
    let user = RawUser {
        email: Some(Pii::new(upper)),
        ..RawUser::default()
    };
    assert_eq!(hash_user(&user, None).em.unwrap().as_str(), JOHN_EMAIL);
}

#[test]
fn hash_user_uses_country_as_phone_hint_and_meta_keys() {
    let user = RawUser {
        email: Some(Pii::new("John_Smith@gmail.com")),
        phone: Some(Pii::new("07700 900123")),
        first_name: Some(Pii::new("Mary")),
        last_name: None,
        city: Some(Pii::new("New York")),
        state: Some(Pii::new("California")),
        zip: Some(Pii::new("94035-1234")),
        country: Some(Pii::new("United Kingdom")),
        external_id: Some(Pii::new("   ")),
    };
    let hashes = hash_user(&user, None);
    assert_eq!(hashes.ph.as_ref().unwrap().as_str(), UK_PHONE);
    let json = serde_json::to_value(&hashes).unwrap();
    let obj = json.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["country", "ct", "em", "fn", "ph", "st", "zp"]);
    assert_eq!(obj["em"], JOHN_EMAIL);
    assert_eq!(obj["fn"], MARY);
    assert_eq!(obj["ct"], NEWYORK);
    assert_eq!(obj["st"], CA);
    assert_eq!(obj["zp"], ZIP_94035);
    assert!(hash_user(&RawUser::default(), None).is_empty());

    // An explicit hint (billing country) wins over the user's country.
    let uk_mobile = RawUser {
        phone: Some(Pii::new("07700 900123")),
        ..RawUser::default()
    };
    assert_eq!(
        hash_user(&uk_mobile, None).ph,
        None,
        "no country: trunk zero is unusable"
    );
    let with_hint = hash_user(&uk_mobile, Some("United Kingdom"));
    assert_eq!(with_hint.ph.unwrap().as_str(), UK_PHONE);
    assert_eq!(with_hint.country, None, "the hint is not sent as country");
}

#[test]
fn pii_is_redacted_and_sha_validates() {
    let p = Pii::new("john@example.com");
    assert_eq!(format!("{p:?} {p}"), "[redacted] [redacted]");
    let user = RawUser {
        email: Some(p),
        ..RawUser::default()
    };
    assert!(!format!("{user:?}").contains("john"));

    let ok: Sha256Hex = serde_json::from_value(serde_json::json!(US)).unwrap();
    assert_eq!(serde_json::to_string(&ok).unwrap(), format!("\"{US}\""));
    assert!(serde_json::from_value::<Sha256Hex>(serde_json::json!(US.to_uppercase())).is_err());
    assert!(serde_json::from_value::<Sha256Hex>(serde_json::json!("abc")).is_err());
    assert_eq!(sha256_hex("us").as_str(), US);
}

#[test]
fn tables_are_complete() {
    let (iso, calling, states) = meta::table_sizes();
    assert_eq!(iso, 249);
    assert!(calling >= 60, "{calling} calling codes");
    assert_eq!(states, 52, "50 states + DC + the 'washington dc' alias");
}
