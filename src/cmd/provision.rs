//! `capi-cdc provision`: make sure every kind the rules derive has a Google
//! conversion action (see `deliver::google::provision`), record the IDs and
//! creation times in the spool (where `run` finds them; configured IDs win),
//! and print them as TOML for the configuration file.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::CmdError;
use crate::config::Config;
use crate::deliver::google::provision::provision as ensure;
use crate::deliver::google::Action;
use crate::event::Kind;
use crate::spool::{Ledger, Spool};

/// Spool `meta` keys of provisioned actions: `<prefix><kind>`.
const ACTION_KEY: &str = "google.action.";
/// Spool `meta` keys of their creation times (ms).
const CREATED_KEY: &str = "google.action_created_ms.";

/// The actions `provision` recorded, for `run`.
pub fn recorded_actions(spool: &Spool) -> Result<BTreeMap<String, Action>, CmdError> {
    let created: BTreeMap<String, i64> = spool
        .meta_prefixed(CREATED_KEY)?
        .into_iter()
        .filter_map(|(k, v)| v.parse().ok().map(|t| (k, t)))
        .collect();
    Ok(spool
        .meta_prefixed(ACTION_KEY)?
        .into_iter()
        .map(|(kind, id)| {
            let created_ms = created.get(&kind).copied();
            (kind, Action { id, created_ms })
        })
        .collect())
}

/// Runs the command; returns what to print.
pub async fn run(config: &Config) -> Result<String, CmdError> {
    let google = config.google.as_ref().ok_or_else(|| {
        CmdError::Usage("destinations.google is not configured: add [destinations.google] (see config/capi-cdc.example.toml)".into())
    })?;
    let mut kinds: Vec<Kind> = config.rules.rules.iter().map(|r| r.kind.clone()).collect();
    kinds.sort();
    kinds.dedup();
    let actions = ensure(google, &kinds).await?;
    let spool = Spool::open(&config.spool.file)?;
    let now = Ledger::now_ms();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# capi-cdc provision: Google Ads account {}",
        google.operating_account_id
    );
    for a in &actions {
        let how = if a.configured {
            "configured"
        } else if a.created {
            "created now: uploads wait 6 hours, as Google requires"
        } else {
            "found"
        };
        let _ = writeln!(out, "# {}: {:?} ({how})", a.kind, a.name);
        if !a.configured {
            spool.set_meta(&format!("{ACTION_KEY}{}", a.kind), &a.id)?;
            if a.created {
                spool.set_meta(&format!("{CREATED_KEY}{}", a.kind), &now.to_string())?;
            }
        }
    }
    let _ = writeln!(out, "[destinations.google.conversion_actions]");
    for a in &actions {
        let _ = writeln!(out, "\"{}\" = \"{}\"", a.kind, a.id);
    }
    tracing::info!(
        actions = actions.len(),
        created = actions.iter().filter(|a| a.created).count(),
        "google conversion actions provisioned"
    );
    Ok(out)
}
