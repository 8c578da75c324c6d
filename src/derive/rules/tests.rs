//! Rules-file validation: the built-in rules parse, and every mistake names its place.

use super::*;

#[test]
fn the_built_in_rules_cover_every_canonical_kind() {
    let rules = RuleSet::default_rules().unwrap();
    for c in crate::event::CANONICAL {
        assert!(
            rules.rules.iter().any(|r| r.kind.as_str() == c.kind),
            "no default rule for {}",
            c.kind
        );
    }
    let purchase = rules.rules.iter().find(|r| r.name == "purchase").unwrap();
    assert!(purchase.became_true);
    assert_eq!(purchase.lane, LaneKind::RealTime);
    let view = rules.rules.iter().find(|r| r.name == "view_item").unwrap();
    assert_eq!(view.lane, LaneKind::Batched);
}

fn err(text: &str) -> String {
    RuleSet::parse("test.toml", text).unwrap_err().to_string()
}

const LOOKUP: &str = r#"
[lookups.people]
table = "people"
identity = { email = "mail" }
"#;

#[test]
fn mistakes_name_the_rule_and_key() {
    let e = err(&format!("{LOOKUP}\n[[rules]]\nname = \"x\"\nkind = \"Bad Kind\"\ntable = \"t\"\nevent_id = \"x-{{id}}\""));
    assert!(e.contains("rules[x].kind"), "{e}");
    let e = err(&format!(
        "{LOOKUP}\n[[rules]]\nname = \"x\"\nkind = \"a.b\"\ntable = \"t\"\nevent_id = \"{{id}}\""
    ));
    assert!(
        e.contains("rules[x].event_id") && e.contains("prefix"),
        "{e}"
    );
    let e = err(&format!("{LOOKUP}\n[[rules]]\nname = \"x\"\nkind = \"a.b\"\ntable = \"t\"\nevent_id = \"x-{{id}}\"\ncustomer = {{ column = \"c\", lookup = \"nobody\" }}"));
    assert!(
        e.contains("rules[x].customer.lookup") && e.contains("people"),
        "{e}"
    );
    let e = err(&format!("{LOOKUP}\n[[rules]]\nname = \"x\"\nkind = \"a.b\"\ntable = \"t\"\nevent_id = \"x-{{id}}\"\nvalue = \"v\""));
    assert!(e.contains("rules[x].currency"), "{e}");
    let e = err(&format!("{LOOKUP}\n[[rules]]\nname = \"x\"\nkind = \"a.b\"\ntable = \"t\"\nevent_id = \"x-{{id}}\"\nwhen = [{{ column = \"s\" }}]"));
    assert!(
        e.contains("rules[x].when[0]") && e.contains("no test"),
        "{e}"
    );
    let e = err(&format!("{LOOKUP}\n[[rules]]\nname = \"x\"\nkind = \"a.b\"\ntable = \"t\"\nevent_id = \"x-{{id}}\"\nsesion = {{}}"));
    assert!(e.contains("sesion"), "unknown keys are named: {e}");
    let e = err(&format!("{LOOKUP}\n[[rules]]\nname = \"x\"\nkind = \"a.b\"\ntable = \"t\"\nevent_id = \"x-{{id}}\"\noperations = [\"delete\"]"));
    assert!(e.contains("rules[x].operations"), "{e}");
}

#[test]
fn templates_parse_into_text_and_columns() {
    assert_eq!(
        parse_template("t", "order-{shop}-{id}").unwrap(),
        vec![
            Piece::Text("order-".into()),
            Piece::Column("shop".into()),
            Piece::Text("-".into()),
            Piece::Column("id".into()),
        ]
    );
    assert!(parse_template("t", "x-{id").is_err());
    assert!(
        parse_template("t", "12{id}").is_err(),
        "digits only around the column"
    );
    assert!(parse_template("t", "static").is_err());
}
