//! Meta normalization vectors (Meta's published examples first), and what
//! `hash_user` and `keep_unchanged` do for both platforms.

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
/// `447911123456`: a valid UK mobile. (The old vector, 07700 900123, is in
/// Ofcom's drama range, which libphonenumber holds invalid.)
const UK_PHONE: &str = "40b5c38342a9c584ec707e8679b003f8c779c6aaa138c976ef94e049cc05208f";
/// `+447911123456`: the same number in Google's form.
const UK_PHONE_PLUS: &str = "20b18ac9de7b3aad174961827d8e451c410af9aedfd1d699927f4b29b81aa1fa";

fn h(normalized: Option<String>) -> String {
    meta::hash(&normalized.expect("value should normalize"))
        .to_hex()
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
        meta::phone("07911 123456", Some("GB")).as_deref(),
        Some("447911123456")
    );
    assert_eq!(
        meta::phone("+44 7911 123456", None).as_deref(),
        Some("447911123456")
    );
    assert_eq!(
        meta::phone("+44 (0)7911 123456", Some("de")).as_deref(),
        Some("447911123456")
    );
    assert_eq!(
        meta::phone("0044 7911 123456", Some("us")).as_deref(),
        Some("447911123456")
    );
    assert_eq!(
        meta::phone("447911123456", Some("gb")).as_deref(),
        Some("447911123456")
    );
    assert_eq!(h(meta::phone("07911 123456", Some("gb"))), UK_PHONE);
    assert_eq!(
        meta::phone("1 (650) 555-1212", Some("us")).as_deref(),
        Some("16505551212")
    );
    assert_eq!(
        meta::phone("650-555-1212 ext. 42", Some("US")).as_deref(),
        Some("16505551212")
    );
    assert_eq!(
        meta::phone("011 44 7911 123456", Some("us")).as_deref(),
        Some("447911123456")
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
        meta::phone("07911 123456", None),
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
    // New with libphonenumber: validity per country, other IDDs, tel: URIs.
    assert_eq!(
        meta::phone("07700 900123", Some("gb")),
        None,
        "Ofcom drama range: never assigned, libphonenumber holds it invalid"
    );
    assert_eq!(
        meta::phone("0011 44 7911 123456", Some("au")).as_deref(),
        Some("447911123456"),
        "Australia's international prefix"
    );
    assert_eq!(
        meta::phone("tel:+44-7911-123456;ext=2", None).as_deref(),
        Some("447911123456")
    );
    assert_eq!(
        meta::phone("650-555-1212 x12", Some("us")).as_deref(),
        Some("16505551212")
    );
    assert_eq!(
        meta::phone("6505551212", None),
        None,
        "national digits without a country are not guessed"
    );
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
        meta::hash(JOHN_EMAIL).to_hex(),
        JOHN_EMAIL,
        "not hashed twice"
    );
    let user = RawUser {
        email: Some(Pii::new(&upper)),
        phone: Some(Pii::new(&upper)),
        zip: Some(Pii::new(&upper)),
        ..RawUser::default()
    };
    let (ids, dropped) = hash_user(&user, None);
    assert_eq!(dropped, []);
    for digest in [&ids.meta.em, &ids.meta.ph, &ids.meta.zp] {
        assert_eq!(digest.as_ref().unwrap().to_hex(), JOHN_EMAIL);
    }
    for digest in [&ids.google.email, &ids.google.phone] {
        assert_eq!(digest.as_ref().unwrap().to_hex(), JOHN_EMAIL);
    }
    assert_eq!(
        ids.google.postal_code, None,
        "a digest is never sent in clear"
    );
}

#[test]
fn hash_user_uses_country_as_phone_hint_and_meta_keys() {
    let user = RawUser {
        email: Some(Pii::new("John_Smith@gmail.com")),
        phone: Some(Pii::new("07911 123456")),
        first_name: Some(Pii::new("Mary")),
        last_name: None,
        city: Some(Pii::new("New York")),
        state: Some(Pii::new("California")),
        zip: Some(Pii::new("94035-1234")),
        country: Some(Pii::new("United Kingdom")),
        external_id: Some(Pii::new("   ")),
    };
    let (ids, dropped) = hash_user(&user, None);
    assert_eq!(dropped, [], "blank external_id is absent, not dropped");
    assert_eq!(ids.meta.ph.as_ref().unwrap().to_hex(), UK_PHONE);
    assert_eq!(ids.google.phone.as_ref().unwrap().to_hex(), UK_PHONE_PLUS);
    let json = serde_json::to_value(&ids.meta).unwrap();
    let obj = json.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["country", "ct", "em", "fn", "ph", "st", "zp"]);
    assert_eq!(obj["em"], JOHN_EMAIL);
    assert_eq!(obj["fn"], MARY);
    assert_eq!(obj["ct"], NEWYORK);
    assert_eq!(obj["st"], CA);
    assert_eq!(obj["zp"], ZIP_94035);
    let (empty, none) = hash_user(&RawUser::default(), None);
    assert!(empty.is_empty() && none.is_empty());

    // An explicit hint (billing country) wins over the user's country.
    let uk_mobile = RawUser {
        phone: Some(Pii::new("07911 123456")),
        ..RawUser::default()
    };
    let (ids, dropped) = hash_user(&uk_mobile, None);
    assert_eq!(ids.meta.ph, None, "no country: trunk zero is unusable");
    assert_eq!(
        dropped,
        [Dropped {
            field: Field::Phone,
            reason: "national number without a country"
        }]
    );
    let (with_hint, dropped) = hash_user(&uk_mobile, Some("United Kingdom"));
    assert!(dropped.is_empty());
    assert_eq!(with_hint.meta.ph.unwrap().to_hex(), UK_PHONE);
    assert_eq!(
        with_hint.meta.country, None,
        "the hint is not sent as country"
    );
    assert_eq!(with_hint.google.region_code, None);
    // A hint that names no country falls back to the user's own.
    let with_country = RawUser {
        country: Some(Pii::new("GB")),
        ..uk_mobile
    };
    let (ids, _) = hash_user(&with_country, Some("Atlantis"));
    assert_eq!(ids.meta.ph.unwrap().to_hex(), UK_PHONE);
}

#[test]
fn unusable_values_are_reported_by_field_without_the_value() {
    let user = RawUser {
        email: Some(Pii::new("jane.doe@localhost")),
        phone: Some(Pii::new("555-1212")),
        first_name: Some(Pii::new(" .,- ")),
        city: Some(Pii::new("123")),
        zip: Some(Pii::new("1")),
        country: Some(Pii::new("Atlantis")),
        external_id: Some(Pii::new("cust-42")),
        ..RawUser::default()
    };
    let (ids, dropped) = hash_user(&user, Some("us"));
    let fields: Vec<&str> = dropped.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        ["email", "phone", "first_name", "city", "zip", "country"]
    );
    assert_eq!(dropped[1].reason, "not a valid number for its country");
    let text = format!("{dropped:?}");
    for raw in ["jane", "1212", "Atlantis", "123"] {
        assert!(!text.contains(raw), "{raw} leaked into {text}");
    }
    let only_external_id = UserIds {
        meta: MetaUserHashes {
            external_id: ids.meta.external_id.clone(),
            ..MetaUserHashes::default()
        },
        ..UserIds::default()
    };
    assert_eq!(ids, only_external_id, "nothing else is sent");
}

#[test]
fn keep_unchanged_copies_every_output_of_a_field() {
    let full = RawUser {
        email: Some(Pii::new("a@b.co")),
        phone: Some(Pii::new("+18005550100")),
        first_name: Some(Pii::new("Mary")),
        last_name: Some(Pii::new("Smith")),
        city: Some(Pii::new("New York")),
        state: Some(Pii::new("NY")),
        zip: Some(Pii::new("10001")),
        country: Some(Pii::new("US")),
        external_id: Some(Pii::new("c-1")),
    };
    let (previous, _) = hash_user(&full, None);
    let fields = [
        Field::Email,
        Field::Phone,
        Field::FirstName,
        Field::LastName,
        Field::City,
        Field::State,
        Field::Zip,
        Field::Country,
        Field::ExternalId,
    ];
    let mut ids = UserIds::default();
    for field in fields {
        keep_unchanged(&mut ids, field, &previous);
    }
    assert_eq!(ids, previous, "all fields together restore everything");

    let mut ids = UserIds::default();
    keep_unchanged(&mut ids, Field::Country, &previous);
    assert_eq!(ids.meta.country, previous.meta.country);
    assert_eq!(ids.google.region_code.as_deref(), Some("US"));
    assert!(ids.meta.em.is_none() && ids.google.email.is_none());
    let mut ids = UserIds::default();
    keep_unchanged(&mut ids, Field::Zip, &previous);
    assert_eq!(ids.meta.zp, previous.meta.zp);
    assert_eq!(ids.google.postal_code.as_deref(), Some("10001"));
    let mut ids = UserIds::default();
    keep_unchanged(&mut ids, Field::ExternalId, &previous);
    assert!(ids.meta.external_id.is_some() && ids.google.is_empty());
}

#[test]
fn pii_is_redacted_and_sha_validates() {
    let p = Pii::new("john@example.com");
    assert_eq!(format!("{p:?} {p}"), "[redacted] [redacted]");
    let user = RawUser {
        email: Some(p),
        phone: Some(Pii::new("+18005550100")),
        ..RawUser::default()
    };
    let debug = format!("{user:?} {user:#?}");
    assert!(!debug.contains("john") && !debug.contains("555"), "{debug}");

    let ok: Sha256Hex = serde_json::from_value(serde_json::json!(US)).unwrap();
    assert_eq!(serde_json::to_string(&ok).unwrap(), format!("\"{US}\""));
    assert!(serde_json::from_value::<Sha256Hex>(serde_json::json!(US.to_uppercase())).is_err());
    assert!(serde_json::from_value::<Sha256Hex>(serde_json::json!("abc")).is_err());
    assert_eq!(sha256_hex("us").to_hex(), US);
}

#[test]
fn field_names_and_tables() {
    assert_eq!(Field::Email.as_str(), "email");
    assert_eq!(Field::FirstName.as_str(), "first_name");
    assert_eq!(Field::ExternalId.as_str(), "external_id");
    assert_eq!(country::iso_count(), 249);
    assert_eq!(
        meta::us_state_count(),
        52,
        "50 states + DC + the 'washington dc' alias"
    );
}
