//! `capi-cdc setup`: the publication and the slot, idempotently.
//!
//! Creates what is missing and nothing else, taking the customers lookup
//! snapshot at the slot's consistent point so the stream continues exactly
//! where the snapshot ends (DESIGN.md §3). `--print-sql` prints what it would
//! run for a DBA to review, and changes nothing.

use pgwire_replication::ReplicationClient;
use tokio_postgres::Client;

use super::catalog::{self, Catalog};
use super::preflight::{
    publication_exists, server_facts, server_findings, table_facts, Level, Report,
};
use super::slot;
use super::snapshot;
use super::{control_client, describe_target, replication_config, SourceError, StreamOptions};
use crate::config::Config;
use crate::derive::Deriver;
use crate::lsn::Lsn;
use crate::spool::Spool;

/// Customers fetched per round trip while reading the lookup snapshot.
const SNAPSHOT_CHUNK: usize = 5_000;

/// The statements `setup` runs, for `--print-sql` and for execution.
#[derive(Debug)]
pub struct SetupPlan {
    /// SQL to run on the control connection.
    pub sql: Vec<String>,
    /// Whether the slot must be created.
    pub create_slot: bool,
    /// The rules' tables, for the snapshot.
    pub catalog: Catalog,
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Builds the plan from the catalog (read-only).
async fn plan(client: &Client, config: &Config, target: &str) -> Result<SetupPlan, SourceError> {
    let src = &config.source;
    let tables: Vec<String> = config
        .rules
        .tables()
        .iter()
        .map(ToString::to_string)
        .collect();
    // The rules must fit the schema before anything is created.
    let catalog = catalog::read(client, target, &config.rules, &src.publication).await?;
    let problems = catalog::check(&config.rules, &catalog, &src.publication, false);
    if !problems.is_empty() {
        return Err(SourceError::Rules(problems));
    }
    let mut sql = Vec::new();
    let exists = publication_exists(client, target, &src.publication).await?;
    let mut missing = Vec::new();
    for table in &tables {
        let facts = table_facts(client, target, table, &src.publication).await?;
        if !facts.exists {
            return Err(SourceError::NotReady(format!(
                "table {table} does not exist: create it (see sql/schema.sql) before running setup"
            )));
        }
        if !facts.has_identity {
            return Err(SourceError::NotReady(format!(
                "table {table} has no primary key or replica identity; publishing it would make UPDATE and DELETE fail on the primary. Add a primary key or run ALTER TABLE {table} REPLICA IDENTITY FULL first"
            )));
        }
        if !facts.in_publication {
            missing.push(table.clone());
        }
    }
    if !exists {
        sql.push(format!(
            "CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert, update, delete, truncate');",
            quote_ident(&src.publication),
            tables.join(", ")
        ));
    } else if !missing.is_empty() {
        sql.push(format!(
            "ALTER PUBLICATION {} ADD TABLE {};",
            quote_ident(&src.publication),
            missing.join(", ")
        ));
    }
    let create_slot = slot::slot_info(client, target, &src.slot).await?.is_none();
    Ok(SetupPlan {
        sql,
        create_slot,
        catalog,
    })
}

/// What `setup` did.
#[derive(Debug, Default)]
pub struct SetupOutcome {
    /// Lines for the operator.
    pub lines: Vec<String>,
}

/// `capi-cdc setup`: publication, slot and lookup snapshot, idempotently.
/// With `print_sql`, only returns what would be run.
pub async fn setup(config: &Config, print_sql: bool) -> Result<SetupOutcome, SourceError> {
    let src = &config.source;
    let target = describe_target(&src.pg);
    let client = control_client(src).await?;
    let server = server_facts(&client, &target).await?;
    let mut plan = plan(&client, config, &target).await?;
    // A slot whose snapshot never reached the spool (setup interrupted after
    // creating it) is unused: recreate it so the snapshot is taken again.
    let spool_has_checkpoint =
        config.spool.file.exists() && Spool::open(&config.spool.file)?.checkpoint()?.is_some();
    let mut recreate = false;
    if !plan.create_slot && !spool_has_checkpoint {
        recreate = true;
        plan.create_slot = true;
    }
    let mut out = SetupOutcome::default();
    // The same server checks as `check`, as advice for the DBA.
    let mut advice = Report::default();
    server_findings(&server, &mut advice);
    for finding in advice.findings.iter().filter(|f| f.level != Level::Ok) {
        let prefix = if print_sql { "-- " } else { "" };
        out.lines.push(
            format!(
                "{prefix}{:?}: {} (remedy: {})",
                finding.level, finding.what, finding.remedy
            )
            .replace("Warn:", "WARNING:")
            .replace("Fail:", "PROBLEM:"),
        );
    }
    if plan.create_slot && server.used_slots >= server.max_slots && !print_sql {
        return Err(SourceError::NotReady(format!(
            "no free replication slot on {target}: {} of max_replication_slots = {} are in use. Remedy: drop an unused slot or raise max_replication_slots (restart needed)",
            server.used_slots, server.max_slots
        )));
    }
    if print_sql {
        out.lines.push(
            "-- capi-cdc setup: statements for review (run as the table owner or a superuser)"
                .into(),
        );
        out.lines.push(format!(
            "-- server: wal_level = {} (must be logical)",
            server.wal_level
        ));
        if !server.can_replicate {
            out.lines.push(format!(
                "ALTER ROLE {} WITH REPLICATION;",
                quote_ident(&server.user)
            ));
        }
        out.lines.extend(plan.sql.iter().cloned());
        if recreate {
            out.lines.push(format!(
                "-- slot {} exists but the spool has no snapshot from it: setup recreates it",
                src.slot
            ));
            out.lines
                .push(format!("SELECT pg_drop_replication_slot('{}');", src.slot));
        }
        if plan.create_slot {
            out.lines.push(format!(
                "SELECT pg_create_logical_replication_slot('{}', 'pgoutput');",
                src.slot
            ));
            out.lines.push("-- capi-cdc itself creates the slot over the replication protocol (CREATE_REPLICATION_SLOT ... SNAPSHOT 'use') so that it can read the lookup tables at the slot's consistent point; the SQL function above exports no snapshot.".into());
        }
        if plan.sql.is_empty() && !plan.create_slot {
            out.lines
                .push("-- nothing to do: publication and slot exist".into());
        }
        return Ok(out);
    }
    if server.wal_level != "logical" {
        return Err(SourceError::NotReady(format!(
            "wal_level is {} on {target}; logical decoding needs wal_level = logical. Remedy: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL",
            server.wal_level
        )));
    }
    for stmt in &plan.sql {
        client
            .batch_execute(stmt)
            .await
            .map_err(|source| SourceError::Query {
                what: "creating the publication",
                target: target.clone(),
                source,
            })?;
        out.lines.push(format!("ran: {stmt}"));
    }
    if plan.sql.is_empty() {
        out.lines
            .push(format!("publication {} is up to date", src.publication));
    }
    if recreate {
        client
            .execute("SELECT pg_drop_replication_slot($1)", &[&src.slot])
            .await
            .map_err(|source| SourceError::Query {
                what: "dropping the slot whose snapshot never reached the spool (stop whatever uses it)",
                target: target.clone(),
                source,
            })?;
        out.lines.push(format!(
            "replication slot {} existed but its snapshot never reached the spool (interrupted setup?): dropped it to take the snapshot again",
            src.slot
        ));
    }
    if plan.create_slot {
        let lines = create_slot_with_snapshot(config, server.version_num, &plan.catalog).await?;
        out.lines.extend(lines);
    } else {
        out.lines
            .push(format!("replication slot {} exists", src.slot));
    }
    Ok(out)
}

/// Creates the slot on a replication connection, reads the customers lookup
/// at its consistent point inside the same snapshot, and stores both in the
/// spool with the consistent point as checkpoint.
async fn create_slot_with_snapshot(
    config: &Config,
    version_num: i32,
    catalog: &Catalog,
) -> Result<Vec<String>, SourceError> {
    let src = &config.source;
    let target = describe_target(&src.pg);
    let repl_err = |source| SourceError::Replication {
        target: target.clone(),
        slot: src.slot.clone(),
        source,
    };
    let opts = StreamOptions {
        slot: src.slot.clone(),
        publication: src.publication.clone(),
        start: Lsn::ZERO,
        binary: false,
        status_interval: src.status_interval,
    };
    let mut client = ReplicationClient::connect_gated(replication_config(src, &opts)?)
        .await
        .map_err(repl_err)?;
    let create = if version_num >= 150000 {
        format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'use')",
            src.slot
        )
    } else {
        format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput USE_SNAPSHOT",
            src.slot
        )
    };
    client
        .simple_query("BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(repl_err)?;
    let rows = client.simple_query(&create).await.map_err(repl_err)?;
    let consistent_point: Lsn = rows
        .first()
        .and_then(|r| r.get(1).cloned().flatten())
        .and_then(|b| String::from_utf8_lossy(&b).parse().ok())
        .ok_or_else(|| {
            SourceError::NotReady("CREATE_REPLICATION_SLOT returned no consistent point".into())
        })?;
    // Decide about the spool before reading the snapshot: an existing
    // checkpoint means the new slot leaves a gap we must not paper over.
    let mut lines = vec![format!(
        "created replication slot {} (pgoutput) at consistent point {consistent_point}",
        src.slot
    )];
    let spool = Spool::open(&config.spool.file)?;
    if let Some(cp) = spool.checkpoint()? {
        client.abort();
        lines.push(format!(
            "WARNING: the spool already has checkpoint {cp}; the new slot starts at {consistent_point}. Changes in between were not captured: `capi-cdc run` will refuse to start until you accept the gap (--accept-gap) and backfill it"
        ));
        return Ok(lines);
    }

    // Read every lookup table (and the state of `became_true` rules)
    // through a cursor in the slot's snapshot, a chunk at a time, so memory
    // does not grow with the tables.
    let deriver = Deriver::new(config.rules.clone());
    let snapshot_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let mut writer = spool.writer()?;
    let mut counts = Vec::new();
    for table in config.rules.tables() {
        let Some((sql, relation)) =
            snapshot::query(catalog, &table, &deriver.snapshot_columns(&table), None)
        else {
            continue;
        };
        client
            .simple_query(&format!(
                "DECLARE capi_cdc_snapshot NO SCROLL CURSOR FOR {sql}"
            ))
            .await
            .map_err(repl_err)?;
        let mut count = 0u64;
        loop {
            let rows = client
                .simple_query(&format!("FETCH {SNAPSHOT_CHUNK} FROM capi_cdc_snapshot"))
                .await
                .map_err(repl_err)?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                let texts = (0..relation.columns.len()).map(|i| {
                    r.get(i)
                        .cloned()
                        .flatten()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                });
                let row = snapshot::row(&relation, texts);
                for effect in deriver.snapshot_row(snapshot_us, &relation, &row) {
                    writer.apply_state(&effect)?;
                }
                count += 1;
            }
        }
        client
            .simple_query("CLOSE capi_cdc_snapshot")
            .await
            .map_err(repl_err)?;
        counts.push(format!("{table}: {count}"));
    }
    client.simple_query("COMMIT").await.map_err(repl_err)?;
    // A gated session that never started replication waits for more gate
    // commands rather than watching the stop signal: end it by dropping its
    // task, which closes the connection.
    client.abort();
    writer.set_meta("slot", &src.slot)?;
    // Which database this spool belongs to: replay and backfill refuse
    // another one.
    writer.set_meta("database", src.pg.get_dbname().unwrap_or_default())?;
    writer.commit(consistent_point)?;
    lines.push(format!(
        "spooled the lookup snapshot ({} rows; identities hashed) with checkpoint {consistent_point}",
        counts.join(", ")
    ));
    Ok(lines)
}
