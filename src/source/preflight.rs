//! `capi-cdc check`: what the server needs, each finding with its remedy.
//!
//! Only reads. The report says whether the connector could run. The catalog
//! and server reads here are shared with `setup` (see `setup.rs`).

use std::fmt;

use tokio_postgres::Client;

use super::slot::{self, SlotInfo};
use super::{control_client, describe_target, SourceError};
use crate::config::Config;
use crate::lsn::Lsn;
use crate::spool::Spool;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but a DBA should look.
    Warn,
    /// The connector cannot run until this is fixed.
    Fail,
}

/// One thing `check` looked at.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Severity.
    pub level: Level,
    /// What was checked and found.
    pub what: String,
    /// What to do (empty when fine).
    pub remedy: String,
}

/// Everything `check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// In the order checked.
    pub findings: Vec<Finding>,
}

impl Report {
    pub(super) fn push(
        &mut self,
        level: Level,
        what: impl Into<String>,
        remedy: impl Into<String>,
    ) {
        self.findings.push(Finding {
            level,
            what: what.into(),
            remedy: remedy.into(),
        });
    }

    /// False when any finding is a failure.
    pub fn can_run(&self) -> bool {
        !self.findings.iter().any(|f| f.level == Level::Fail)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.findings {
            let tag = match item.level {
                Level::Ok => "ok  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            writeln!(f, "[{tag}] {}", item.what)?;
            if !item.remedy.is_empty() {
                writeln!(f, "       remedy: {}", item.remedy)?;
            }
        }
        let verdict = if self.can_run() {
            "capi-cdc can run."
        } else {
            "capi-cdc cannot run until the FAIL lines are fixed."
        };
        writeln!(f, "{verdict}")
    }
}

/// Server facts that check and setup both need.
#[derive(Debug)]
pub(super) struct Server {
    pub(super) version_num: i32,
    pub(super) wal_level: String,
    pub(super) max_slots: i64,
    pub(super) used_slots: i64,
    max_senders: i64,
    used_senders: i64,
    max_slot_wal_keep_size: String,
    pub(super) can_replicate: bool,
    pub(super) user: String,
}

pub(super) async fn server_facts(client: &Client, target: &str) -> Result<Server, SourceError> {
    let q = |what| {
        move |source| SourceError::Query {
            what,
            target: target.to_owned(),
            source,
        }
    };
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int,
                    current_setting('wal_level'),
                    current_setting('max_replication_slots')::bigint,
                    (SELECT count(*) FROM pg_replication_slots),
                    current_setting('max_wal_senders')::bigint,
                    (SELECT count(*) FROM pg_stat_replication),
                    current_setting('max_slot_wal_keep_size'),
                    (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
                    current_user::text",
            &[],
        )
        .await
        .map_err(q("reading server settings"))?;
    Ok(Server {
        version_num: row.get(0),
        wal_level: row.get(1),
        max_slots: row.get(2),
        used_slots: row.get(3),
        max_senders: row.get(4),
        used_senders: row.get(5),
        max_slot_wal_keep_size: row.get(6),
        can_replicate: row.get::<_, Option<bool>>(7).unwrap_or(false),
        user: row.get(8),
    })
}

/// A table the rules read, as the catalog sees it.
#[derive(Debug)]
pub(super) struct TableFacts {
    pub(super) exists: bool,
    pub(super) has_identity: bool,
    pub(super) in_publication: bool,
}

pub(super) async fn table_facts(
    client: &Client,
    target: &str,
    table: &str,
    publication: &str,
) -> Result<TableFacts, SourceError> {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let row = client
        .query_opt(
            "SELECT c.relreplident::text,
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
                    EXISTS (SELECT 1 FROM pg_publication_tables p
                            WHERE p.pubname = $3 AND p.schemaname = $1 AND p.tablename = $2)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&schema, &name, &publication],
        )
        .await
        .map_err(|source| SourceError::Query {
            what: "reading the catalog",
            target: target.to_owned(),
            source,
        })?;
    Ok(match row {
        None => TableFacts {
            exists: false,
            has_identity: false,
            in_publication: false,
        },
        Some(row) => {
            let ident: String = row.get(0);
            let has_pk: bool = row.get(1);
            TableFacts {
                exists: true,
                has_identity: ident == "f" || ident == "i" || (ident == "d" && has_pk),
                in_publication: row.get(2),
            }
        }
    })
}

pub(super) async fn publication_exists(
    client: &Client,
    target: &str,
    name: &str,
) -> Result<bool, SourceError> {
    client
        .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name])
        .await
        .map(|r| r.is_some())
        .map_err(|source| SourceError::Query {
            what: "reading pg_publication",
            target: target.to_owned(),
            source,
        })
}

/// Runs every read-only check (`capi-cdc check`).
pub async fn check(config: &Config) -> Report {
    let mut report = Report::default();
    let src = &config.source;
    let target = describe_target(&src.pg);
    let client = match control_client(src).await {
        Ok(c) => c,
        Err(e) => {
            report.push(
                Level::Fail,
                e.to_string(),
                "fix source.url or start the server",
            );
            return report;
        }
    };
    report.push(Level::Ok, format!("connected to {target}"), "");
    if let Err(e) = check_with(&client, config, &target, &mut report).await {
        report.push(
            Level::Fail,
            e.to_string(),
            "see the error; check the role's privileges",
        );
    }
    report
}

async fn check_with(
    client: &Client,
    config: &Config,
    target: &str,
    report: &mut Report,
) -> Result<(), SourceError> {
    let src = &config.source;
    let server = server_facts(client, target).await?;
    server_findings(&server, report);

    for table in config.rules.tables() {
        let table = table.to_string();
        let facts = table_facts(client, target, &table, &src.publication).await?;
        table_findings(&table, &facts, &src.publication, report);
    }
    let catalog = super::catalog::read(client, target, &config.rules, &src.publication).await?;
    let problems = super::catalog::check(&config.rules, &catalog, &src.publication, false);
    if problems.is_empty() {
        report.push(
            Level::Ok,
            format!(
                "{} rules and {} lookups fit the database",
                config.rules.rules.len(),
                config.rules.lookups.len()
            ),
            "",
        );
    }
    for p in problems {
        report.push(
            Level::Fail,
            p.to_string(),
            "correct the rules file (docs/configuration.md) or the schema",
        );
    }
    if publication_exists(client, target, &src.publication).await? {
        report.push(
            Level::Ok,
            format!("publication {} exists", src.publication),
            "",
        );
    } else {
        report.push(
            Level::Fail,
            format!("publication {} does not exist", src.publication),
            "run `capi-cdc setup` (or review `capi-cdc setup --print-sql`)",
        );
    }

    let slot = slot::slot_info(client, target, &src.slot).await?;
    // Read-only: a spool that does not exist yet is not created here.
    let spool_checkpoint = if config.spool.file.exists() {
        Spool::open(&config.spool.file)?.checkpoint()?
    } else {
        None
    };
    match slot {
        None => report.push(
            Level::Fail,
            format!("replication slot {} does not exist", src.slot),
            "run `capi-cdc setup` to create it (it also takes the lookup snapshot)",
        ),
        Some(info) => slot_findings(
            &info,
            spool_checkpoint,
            src.pg.get_dbname().unwrap_or(""),
            report,
        ),
    }
    if config.meta.is_none() {
        report.push(
            Level::Warn,
            "no destination is enabled: events are spooled but not sent",
            "configure [destinations.meta]",
        );
    } else {
        report.push(Level::Ok, "destination meta is configured", "");
    }
    Ok(())
}

pub(super) fn server_findings(server: &Server, report: &mut Report) {
    if server.version_num < 130000 {
        report.push(
            Level::Fail,
            format!(
                "server version {} is older than PostgreSQL 13",
                server.version_num
            ),
            "upgrade PostgreSQL to 13 or newer (14+ for binary values)",
        );
    } else {
        report.push(
            Level::Ok,
            format!("server version {}", server.version_num),
            "",
        );
    }
    if server.wal_level == "logical" {
        report.push(Level::Ok, "wal_level = logical", "");
    } else {
        report.push(
            Level::Fail,
            format!("wal_level = {} (logical decoding needs logical)", server.wal_level),
            "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL (a reload is not enough)",
        );
    }
    if server.can_replicate {
        report.push(Level::Ok, format!("role {} may replicate", server.user), "");
    } else {
        report.push(
            Level::Fail,
            format!("role {} has neither REPLICATION nor SUPERUSER", server.user),
            format!("ALTER ROLE {} WITH REPLICATION;", server.user),
        );
    }
    let free_slots = server.max_slots - server.used_slots;
    let level = if free_slots > 0 {
        Level::Ok
    } else {
        Level::Warn
    };
    report.push(
        level,
        format!(
            "replication slots: {} of max_replication_slots = {} in use",
            server.used_slots, server.max_slots
        ),
        if free_slots > 0 {
            ""
        } else {
            "raise max_replication_slots (restart needed) if capi-cdc's slot is not among them"
        },
    );
    let free_senders = server.max_senders - server.used_senders;
    report.push(
        if free_senders > 0 {
            Level::Ok
        } else {
            Level::Fail
        },
        format!(
            "WAL senders: {} of max_wal_senders = {} in use",
            server.used_senders, server.max_senders
        ),
        if free_senders > 0 {
            ""
        } else {
            "raise max_wal_senders (restart needed)"
        },
    );
    if server.max_slot_wal_keep_size == "-1" {
        report.push(
            Level::Warn,
            "max_slot_wal_keep_size = -1: a stalled slot may retain WAL until the disk is full",
            "set max_slot_wal_keep_size (e.g. ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf();) — capi-cdc stops with a clear error if the slot is ever invalidated",
        );
    } else {
        report.push(
            Level::Ok,
            format!(
                "max_slot_wal_keep_size = {} caps WAL retained by slots",
                server.max_slot_wal_keep_size
            ),
            "",
        );
    }
}

fn table_findings(table: &str, facts: &TableFacts, publication: &str, report: &mut Report) {
    if !facts.exists {
        report.push(
            Level::Fail,
            format!("table {table} does not exist"),
            "create it (see sql/schema.sql) or point the rules at your schema",
        );
        return;
    }
    if !facts.has_identity {
        report.push(
            Level::Fail,
            format!("table {table} has no primary key or replica identity: publishing it would make UPDATE and DELETE fail on the primary"),
            format!("add a primary key, or ALTER TABLE {table} REPLICA IDENTITY FULL;"),
        );
    }
    if facts.in_publication {
        report.push(
            Level::Ok,
            format!("table {table} is in publication {publication}"),
            "",
        );
    } else {
        report.push(
            Level::Fail,
            format!("table {table} is not in publication {publication}"),
            "run `capi-cdc setup`",
        );
    }
}

fn slot_findings(info: &SlotInfo, checkpoint: Option<Lsn>, database: &str, report: &mut Report) {
    match slot::start_position(checkpoint, info, database, false) {
        Ok(start) => report.push(
            Level::Ok,
            format!(
                "replication slot {} ({}) would stream from {start}; it retains {} bytes of WAL",
                info.name,
                info.wal_status.as_deref().unwrap_or("unknown"),
                info.retained_bytes.unwrap_or(0)
            ),
            "",
        ),
        Err(e) => report.push(Level::Fail, e.to_string(), "see above"),
    }
    if let Some(pid) = info.active_pid {
        report.push(
            Level::Warn,
            format!("replication slot {} is in use by walsender PID {pid}", info.name),
            "another capi-cdc (or consumer) is reading it; a second instance waits until it is free",
        );
    }
}
