//! Google normalization vectors (Data Manager formatting page and spec
//! `google.md` §6), and national phone numbers read with a country.

use super::*;

/// Expected digests below were computed outside Rust with
/// `printf %s value | sha256sum`, not with `sha256_hex`.
const JANEDOE_GOOGLEMAIL: &str = "338abf9ef1c8793cadc7bcf51ed595338eb727ed9e06ce3d91d566d60b975937";
/// `jane.doe+shop@example.com`.
const JANE_EXAMPLE: &str = "bb55843f3da2af28071cd4be7ae1e05989dc6d3ea4833906f7d8fe4be35afad8";
/// `cloudysanfrancisco@gmail.com`.
const CLOUDY: &str = "223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4";
/// `user.name+nyc@example.com`.
const USER_NAME_NYC: &str = "f109a2a632fbcea5fc82049f50beed3d8621bf9034399f437fb622222acccdac";
/// `+18005550100`.
const US_TOLL_FREE: &str = "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30";
/// `+447911123456`.
const UK_MOBILE: &str = "20b18ac9de7b3aad174961827d8e451c410af9aedfd1d699927f4b29b81aa1fa";
/// `+49301234567`.
const DE_BERLIN: &str = "74bd805bcc47f8603082430ca056311389e38b74fcdfbc32bcb5c6a9269ff3bf";
/// `+33612345678`.
const FR_MOBILE: &str = "42d573cfc315801d4cd8eddd5416b416a0bf298b9b9e12d6b07442c91db42bd8";
/// `obriensmith`.
const OBRIENSMITH: &str = "16765783f9c8c8a3accf27f1abb877688cb5904c21a4a7afb5f125bcfcb246ba";
/// `mary`.
const MARY: &str = "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec";
/// `john_smith@gmail.com`: gmail, but no dot or `+` to remove.
const JOHN_EMAIL: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";

fn h(normalized: Option<String>) -> String {
    sha256_hex(&normalized.expect("value should normalize"))
        .to_hex()
        .to_owned()
}

fn phone_user(phone: &str) -> RawUser {
    RawUser {
        phone: Some(Pii::new(phone)),
        ..RawUser::default()
    }
}

#[test]
fn gmail_loses_dots_and_plus_tag_other_domains_keep_them() {
    let jane = google::email("  Jane.Doe+shop@GoogleMail.com ");
    assert_eq!(jane.as_deref(), Some("janedoe@googlemail.com"));
    assert_eq!(h(jane), JANEDOE_GOOGLEMAIL);
    // Google's published examples.
    let cloudy = google::email("cloudy.sanfrancisco+shopping@gmail.com");
    assert_eq!(h(cloudy), CLOUDY);
    let nyc = google::email("user.name+NYC@Example.com");
    assert_eq!(nyc.as_deref(), Some("user.name+nyc@example.com"));
    assert_eq!(h(nyc), USER_NAME_NYC);

    let other = google::email("Jane.Doe+shop@Example.com");
    assert_eq!(h(other), JANE_EXAMPLE);
    assert_eq!(
        meta::email("Jane.Doe+shop@GoogleMail.com").as_deref(),
        Some("jane.doe+shop@googlemail.com"),
        "Meta keeps dots and tags everywhere"
    );
    assert_eq!(h(google::email("John_Smith@gmail.com")), JOHN_EMAIL);
    assert_eq!(
        google::email("j.o.h.n@gmail.com.au").as_deref(),
        Some("j.o.h.n@gmail.com.au"),
        "only gmail.com and googlemail.com"
    );
    assert_eq!(google::email("+shop@gmail.com"), None, "nothing left");
    assert_eq!(google::email("a@localhost"), None);
}

#[test]
fn phones_are_e164_with_plus() {
    assert_eq!(
        google::phone("(800)555-0100", Some("US")).as_deref(),
        Some("+18005550100"),
        "Google's published example"
    );
    assert_eq!(h(google::phone("+1 800 555 0100", None)), US_TOLL_FREE);
    let (ids, dropped) = hash_user(&phone_user("1-800-555-0100"), Some("us"));
    assert!(dropped.is_empty());
    assert_eq!(ids.google.phone.unwrap().to_hex(), US_TOLL_FREE);
    assert_eq!(
        ids.meta.ph.unwrap(),
        sha256_hex("18005550100"),
        "same number, Meta's form"
    );
}

#[test]
fn national_numbers_take_the_hint_country() {
    for (number, hint, e164, digest) in [
        ("(800) 555-0100", "US", "+18005550100", US_TOLL_FREE),
        ("07911 123456", "GB", "+447911123456", UK_MOBILE),
        ("030 1234567", "DE", "+49301234567", DE_BERLIN),
        ("06 12 34 56 78", "FR", "+33612345678", FR_MOBILE),
    ] {
        assert_eq!(phone::e164(number, Some(hint)).as_deref(), Ok(e164));
        let (ids, dropped) = hash_user(&phone_user(number), Some(hint));
        assert!(dropped.is_empty(), "{hint}");
        assert_eq!(ids.google.phone.unwrap().to_hex(), digest, "{hint}");
    }
    // Country names work as hints; `+`/`00` numbers ignore the hint.
    let (ids, _) = hash_user(&phone_user("030 1234567"), Some("Germany"));
    assert_eq!(ids.google.phone.unwrap().to_hex(), DE_BERLIN);
    let (ids, _) = hash_user(&phone_user("0049 30 1234567"), Some("fr"));
    assert_eq!(ids.google.phone.unwrap().to_hex(), DE_BERLIN);
    let (ids, _) = hash_user(&phone_user("+33 (0)6 12 34 56 78"), Some("us"));
    assert_eq!(ids.google.phone.unwrap().to_hex(), FR_MOBILE);
}

#[test]
fn a_number_that_cannot_be_normalized_is_dropped_with_its_field() {
    for (number, hint, reason) in [
        ("555-1212", Some("US"), "not a valid number for its country"),
        (
            "07700 900123",
            Some("GB"),
            "not a valid number for its country",
        ),
        ("030 1234567", None, "national number without a country"),
        ("+1 23", None, "not a valid number for its country"),
        ("call me", Some("US"), "not a phone number"),
    ] {
        let (ids, dropped) = hash_user(&phone_user(number), hint);
        assert!(ids.is_empty(), "{number}");
        assert_eq!(
            dropped,
            [Dropped {
                field: Field::Phone,
                reason
            }],
            "{number}"
        );
    }
}

#[test]
fn names_lose_punctuation_and_are_hashed() {
    assert_eq!(
        google::family_name(" O'Brien-Smith. ").as_deref(),
        Some("obriensmith")
    );
    let user = RawUser {
        first_name: Some(Pii::new("MARY!")),
        last_name: Some(Pii::new("O'Brien-Smith.")),
        ..RawUser::default()
    };
    let (ids, _) = hash_user(&user, None);
    assert_eq!(ids.google.given_name.unwrap().to_hex(), MARY);
    assert_eq!(ids.google.family_name.unwrap().to_hex(), OBRIENSMITH);
    assert_eq!(ids.meta.ln.unwrap().to_hex(), OBRIENSMITH);
}

#[test]
fn region_and_postal_code_are_sent_in_clear() {
    let user = RawUser {
        zip: Some(Pii::new("  SW1A   1AA ")),
        country: Some(Pii::new("united kingdom")),
        ..RawUser::default()
    };
    let (ids, dropped) = hash_user(&user, None);
    assert!(dropped.is_empty());
    assert_eq!(ids.google.region_code.as_deref(), Some("GB"));
    assert_eq!(ids.google.postal_code.as_deref(), Some("SW1A 1AA"));
    assert_eq!(ids.meta.zp.unwrap(), sha256_hex("sw1a1aa"), "Meta hashes");
    assert_eq!(ids.meta.country.unwrap(), sha256_hex("gb"));

    assert_eq!(google::region_code("us").as_deref(), Some("US"));
    assert_eq!(google::region_code("DEU").as_deref(), Some("DE"));
    assert_eq!(google::region_code("Atlantis"), None);
    assert_eq!(
        google::postal_code("94035-1234").as_deref(),
        Some("94035-1234")
    );
    assert_eq!(google::postal_code("1"), None);
    assert_eq!(google::postal_code("#12"), None);
    let digest = "A".repeat(64);
    assert_eq!(
        google::region_code(&digest),
        None,
        "never a digest in clear"
    );
    assert_eq!(google::postal_code(&digest), None);

    let json = serde_json::to_value(&ids.google).unwrap();
    assert_eq!(json["region_code"], "GB");
}

#[test]
fn google_output_shows_no_raw_value_in_debug() {
    let user = RawUser {
        email: Some(Pii::new("Jane.Doe@gmail.com")),
        first_name: Some(Pii::new("Jane")),
        ..RawUser::default()
    };
    let (ids, _) = hash_user(&user, None);
    let debug = format!("{user:?} {ids:?}");
    assert!(!debug.to_lowercase().contains("jane"), "{debug}");
}
