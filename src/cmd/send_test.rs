//! `capi-cdc send-test`: one clearly marked test purchase to each enabled
//! destination, through the same request building and classification as
//! `run`: Meta with a `test_event_code` (Events Manager → Test events),
//! Google with `validateOnly` (checked, not recorded). Prints each answer.
//! Nothing is written to the spool or the ledger.

use std::fmt::Write;

use super::CmdError;
use crate::config::Config;
use crate::deliver::{Attempt, Destination};
use crate::event::{
    BusinessEvent, Consent, EventId, Item, Kind, LaneKind, Money, SessionContext, Signal,
};
use crate::lsn::Lsn;
use crate::spool::{Ledger, Spool};

/// The test event: a purchase of 1.00 USD, ID `capi-cdc-test-<ms>`.
pub fn test_event(now_ms: i64) -> BusinessEvent {
    BusinessEvent {
        event_id: EventId::new(format!("capi-cdc-test-{now_ms}")).expect("a prefixed ID"),
        kind: Kind::new("transaction.purchase").expect("a canonical kind"),
        rule: "send-test".into(),
        lane: LaneKind::RealTime,
        event_time_s: now_ms / 1000,
        commit_lsn: Lsn::ZERO,
        commit_time_us: now_ms * 1000,
        value: Some(Money::new("1.00", "USD").expect("valid money")),
        order_id: Some(format!("capi-cdc-test-{now_ms}")),
        items: vec![Item {
            id: "capi-cdc-test-item".into(),
            quantity: 1,
            unit_price: Some(crate::event::Decimal::parse("1.00").expect("a decimal")),
        }],
        // A reserved address (RFC 2606 `.invalid`), hashed like any other:
        // both platforms need an identifier to accept an event.
        user: crate::derive::identity::hash_user(
            &crate::derive::identity::RawUser {
                email: Some(crate::derive::identity::Pii::new(
                    "send-test@capi-cdc.invalid",
                )),
                ..Default::default()
            },
            None,
        )
        .0,
        consent: Consent {
            ad_user_data: Signal::Granted,
            ad_personalization: Signal::Denied,
            ..Consent::default()
        },
        click_ids: Default::default(),
        session: SessionContext {
            ip: Some("192.0.2.1".into()),
            user_agent: Some(concat!("capi-cdc/", env!("CARGO_PKG_VERSION"), " send-test").into()),
            page_url: None,
        },
    }
}

fn describe(a: &Attempt) -> String {
    match a {
        Attempt::Delivered { receipt } => format!(
            "accepted{}",
            receipt
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        Attempt::Rejected { reason } => format!("rejected: {reason}"),
        Attempt::RetryAfter { delay, reason } => {
            format!("throttled (retry in {} s): {reason}", delay.as_secs())
        }
        Attempt::Transient { reason } => format!("failed (transient): {reason}"),
        Attempt::Paused { reason } => format!("refused (needs the operator): {reason}"),
    }
}

/// Sends the test event to every enabled destination: its ID and each
/// destination's answer. `test_event_code` overrides Meta's configured one.
pub async fn send(
    config: &Config,
    test_event_code: Option<String>,
) -> Result<(String, Vec<(&'static str, Attempt)>), CmdError> {
    let now = Ledger::now_ms();
    let event = test_event(now);
    let mut answers = Vec::new();
    if let Some(meta) = &config.meta {
        let mut meta = meta.clone();
        meta.test_event_code = test_event_code.or(meta.test_event_code);
        if meta.test_event_code.is_none() {
            return Err(CmdError::Usage(
                "Meta needs a test event code so the test stays out of your data: pass --test-event-code (Events Manager → Test events) or set destinations.meta.test_event_code".into(),
            ));
        }
        let dest = crate::deliver::meta::MetaDestination::new(meta);
        answers.push(("meta", dest.send(&[&event]).await));
    }
    if let Some(google) = &config.google {
        let mut google = google.clone();
        google.validate_only = true;
        let actions = if config.spool.file.exists() {
            super::provision::recorded_actions(&Spool::open(&config.spool.file)?)?
        } else {
            Default::default()
        };
        let dest = crate::deliver::google::GoogleDestination::new(google, actions);
        let answer = match dest.skip_reason(&event, now / 1000) {
            Some(reason) => Attempt::Rejected { reason },
            None => dest.send(&[&event]).await,
        };
        answers.push(("google", answer));
    }
    if answers.is_empty() {
        return Err(CmdError::Usage(
            "no destination is enabled: configure [destinations.meta] or [destinations.google]"
                .into(),
        ));
    }
    Ok((event.event_id.to_string(), answers))
}

/// Each destination's answer in words (the admin API's test button).
pub async fn answers(
    config: &Config,
    test_event_code: Option<String>,
) -> Result<Vec<(&'static str, String)>, CmdError> {
    let (_, answers) = send(config, test_event_code).await?;
    Ok(answers
        .iter()
        .map(|(d, a)| {
            let mut text = describe(a);
            if *d == "google" && matches!(a, Attempt::Delivered { .. }) {
                text.push_str(" (validateOnly)");
            }
            (*d, text)
        })
        .collect())
}

/// Runs the command: what to print and whether every destination accepted.
pub async fn run(
    config: &Config,
    test_event_code: Option<String>,
) -> Result<(String, bool), CmdError> {
    let (id, answers) = send(config, test_event_code).await?;
    let mut out = String::new();
    let _ = writeln!(out, "test event {id} (transaction.purchase, 1.00 USD)");
    for (d, a) in &answers {
        let note = if *d == "google" {
            " (validateOnly: nothing recorded)"
        } else {
            ""
        };
        let _ = writeln!(out, "{:<7} {}{note}", format!("{d}:"), describe(a));
    }
    let all_ok = answers
        .iter()
        .all(|(_, a)| matches!(a, Attempt::Delivered { .. }));
    Ok((out, all_ok))
}
