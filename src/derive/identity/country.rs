//! Country names and codes → ISO 3166-1 alpha-2.
//!
//! Inputs: a country as written in a shop's address (ISO alpha-2 or alpha-3
//! code, common English or native name, any case and punctuation).
//! Outputs: the lowercase ISO alpha-2 code, used as Meta's `country`, as
//! Google's `regionCode` (upper-cased there) and as the phone's country.
//!
//! Invariant: an unknown name gives `None`, never a guess.

use super::text::letters_only;

/// Lowercase ISO 3166-1 alpha-2 code of a country code or name.
pub(super) fn alpha2(raw: &str) -> Option<String> {
    let key = letters_only(raw);
    if key.len() == 2 && ISO_ALPHA2.split(' ').any(|c| c == key) {
        return Some(key);
    }
    COUNTRY_NAMES
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, code)| (*code).to_owned())
}

/// Number of ISO codes known (a test checks all 249 are there).
#[cfg(test)]
pub(super) fn iso_count() -> usize {
    ISO_ALPHA2.split(' ').count()
}

/// All 249 officially assigned ISO 3166-1 alpha-2 codes.
const ISO_ALPHA2: &str = "ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bl bm bn bo bq br bs bt bv bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz ec ee eg eh er es et fi fj fk fm fo fr ga gb gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg kh ki km kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mf mg mh mk ml mm mn mo mp mq mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm pn pr ps pt pw py qa re ro rs ru rw sa sb sc sd se sg sh si sj sk sl sm sn so sr ss st sv sx sy sz tc td tf tg th tj tk tl tm tn to tr tt tv tw tz ua ug um us uy uz va vc ve vg vi vn vu wf ws ye yt za zm zw";

/// Common English (and a few native) country names and alpha-3 codes,
/// keyed by their lowercase letters-only form.
#[rustfmt::skip]
static COUNTRY_NAMES: &[(&str, &str)] = &[
    ("unitedstates", "us"), ("unitedstatesofamerica", "us"), ("usa", "us"), ("america", "us"),
    ("unitedkingdom", "gb"), ("greatbritain", "gb"), ("uk", "gb"), ("gbr", "gb"),
    ("england", "gb"), ("scotland", "gb"), ("wales", "gb"), ("northernireland", "gb"),
    ("germany", "de"), ("deutschland", "de"), ("deu", "de"), ("france", "fr"), ("fra", "fr"),
    ("netherlands", "nl"), ("thenetherlands", "nl"), ("holland", "nl"), ("nld", "nl"),
    ("spain", "es"), ("españa", "es"), ("esp", "es"), ("italy", "it"), ("italia", "it"), ("ita", "it"),
    ("portugal", "pt"), ("prt", "pt"), ("ireland", "ie"), ("irl", "ie"), ("belgium", "be"), ("bel", "be"),
    ("luxembourg", "lu"), ("switzerland", "ch"), ("schweiz", "ch"), ("suisse", "ch"), ("che", "ch"),
    ("austria", "at"), ("österreich", "at"), ("aut", "at"), ("sweden", "se"), ("swe", "se"),
    ("norway", "no"), ("nor", "no"), ("denmark", "dk"), ("dnk", "dk"), ("finland", "fi"), ("fin", "fi"),
    ("iceland", "is"), ("poland", "pl"), ("polska", "pl"), ("pol", "pl"), ("czechia", "cz"),
    ("czechrepublic", "cz"), ("slovakia", "sk"), ("hungary", "hu"), ("romania", "ro"),
    ("bulgaria", "bg"), ("greece", "gr"), ("croatia", "hr"), ("slovenia", "si"), ("serbia", "rs"),
    ("estonia", "ee"), ("latvia", "lv"), ("lithuania", "lt"), ("ukraine", "ua"), ("russia", "ru"),
    ("russianfederation", "ru"), ("turkey", "tr"), ("türkiye", "tr"), ("turkiye", "tr"),
    ("israel", "il"), ("unitedarabemirates", "ae"), ("uae", "ae"), ("saudiarabia", "sa"),
    ("qatar", "qa"), ("egypt", "eg"), ("southafrica", "za"), ("nigeria", "ng"), ("kenya", "ke"),
    ("morocco", "ma"), ("india", "in"), ("ind", "in"), ("pakistan", "pk"), ("bangladesh", "bd"),
    ("china", "cn"), ("chn", "cn"), ("hongkong", "hk"), ("taiwan", "tw"), ("japan", "jp"), ("jpn", "jp"),
    ("southkorea", "kr"), ("korea", "kr"), ("republicofkorea", "kr"), ("singapore", "sg"),
    ("malaysia", "my"), ("thailand", "th"), ("vietnam", "vn"), ("indonesia", "id"),
    ("philippines", "ph"), ("australia", "au"), ("aus", "au"), ("newzealand", "nz"), ("nzl", "nz"),
    ("canada", "ca"), ("can", "ca"), ("mexico", "mx"), ("méxico", "mx"), ("mex", "mx"),
    ("brazil", "br"), ("brasil", "br"), ("bra", "br"), ("argentina", "ar"), ("chile", "cl"),
    ("colombia", "co"), ("peru", "pe"), ("venezuela", "ve"), ("uruguay", "uy"), ("ecuador", "ec"),
    ("costarica", "cr"), ("puertorico", "pr"), ("cyprus", "cy"), ("malta", "mt"),
];
