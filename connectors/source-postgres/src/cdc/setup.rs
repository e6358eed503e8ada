//! What CDC needs on the server, checked before a read and set up on the first one: the
//! server version and `wal_level`, the role's REPLICATION attribute, the table's replica
//! identity and column types, the stream's publication and its replication slot. Slot and
//! publication are named after the pipeline id ([`resource_name`]), so two products reading
//! the same table never share them.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use weft_core::catalog::pipeline_name;
use weft_core::{ConnectorError, Result};

use super::lsn::Lsn;
use crate::connect::query_error;
use crate::read::ReadCtx;
use crate::sql::{qualified, quote_ident, quote_literal};

/// The slot and publication name of a pipeline: `weft_<sanitized domain.product.stream>_<8
/// hex of the whole id's hash>`, at most 63 characters of `[a-z0-9_]` (what slot names
/// allow). The hash covers the project id (`…@<project id>`), so two projects with the same
/// names get different slots, and keeps ids that sanitize alike (`a.b` and `a_b`) apart.
/// Before weft named slots per project the id had no project part: `legacy_name`.
pub fn resource_name(pipeline_id: &str) -> String {
    let mut clean = String::new();
    for c in pipeline_name(pipeline_id).chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '_'
        };
        if !(c == '_' && clean.ends_with('_')) {
            clean.push(c);
        }
    }
    let clean = clean.trim_matches('_');
    // 63 - "weft_" - "_" - 8 hex.
    let clean: String = clean.chars().take(49).collect();
    let clean = clean.trim_end_matches('_');
    // FNV-1a: stable across Rust versions and platforms, unlike std's hasher.
    let mut hash: u32 = 0x811c_9dc5;
    for b in pipeline_id.bytes() {
        hash ^= b as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    if clean.is_empty() {
        format!("weft_{hash:08x}")
    } else {
        format!("weft_{clean}_{hash:08x}")
    }
}

/// The name the pipeline's slot and publication had before weft named them per project (the
/// same as [`resource_name`] for an id without a project part). A checkpoint naming it keeps
/// reading it; the first read claims its publication for the pipeline ([`claim`]).
pub fn legacy_name(pipeline_id: &str) -> String {
    resource_name(pipeline_name(pipeline_id))
}

/// The pipeline a publication is marked as read by (its comment `weft:<pipeline id>`).
pub async fn owner(client: &Client, publication: &str) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| query_error("reading the publication's owner", &e))?;
    Ok(row
        .and_then(|r| r.get::<_, Option<String>>(0))
        .and_then(|c| c.strip_prefix(OWNER_PREFIX).map(str::to_string)))
}

const OWNER_PREFIX: &str = "weft:";

/// Marks the publication as read by `pipeline_id`.
pub async fn claim(client: &Client, publication: &str, pipeline_id: &str) -> Result<()> {
    client
        .batch_execute(&format!(
            "COMMENT ON PUBLICATION {} IS {}",
            quote_ident(publication),
            quote_literal(&format!("{OWNER_PREFIX}{pipeline_id}"))
        ))
        .await
        .map_err(|e| query_error(&format!("marking publication {publication}"), &e))
}

/// Refuses a slot and publication another pipeline (another weft project) reads: two readers
/// of one slot each miss the changes the other consumed.
pub async fn check_owner(
    client: &Client,
    stream: &str,
    publication: &str,
    pipeline_id: &str,
    reset: &str,
) -> Result<()> {
    match owner(client, publication).await? {
        Some(other) if other != pipeline_id => Err(ConnectorError::Other(format!(
            "stream `{stream}`: replication slot and publication {publication} are read by \
             another weft project (pipeline `{other}`; this one is `{pipeline_id}`), and a \
             slot read by two projects loses changes for both. This project's checkpoint \
             names them from before weft named slots per project: run `{reset}` here to take \
             a new snapshot with a slot of its own"
        ))),
        _ => Ok(()),
    }
}

/// The server can decode changes for this role and table; errors say what to run.
pub async fn check(client: &Client, ctx: &ReadCtx) -> Result<()> {
    let stream = &ctx.stream;
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4, current_setting('wal_level'),
                    r.rolreplication, r.rolsuper, current_user::text
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| query_error("checking the server for CDC", &e))?;
    let (version, wal_level, replication, superuser, user): (i32, String, bool, bool, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    if version < 140000 {
        return Err(ConnectorError::Unsupported(format!(
            "stream `{stream}`: CDC needs PostgreSQL 14 or later (binary logical replication); \
             this server is version {}.{}",
            version / 10000,
            version % 10000 / 100
        )));
    }
    if wal_level != "logical" {
        return Err(ConnectorError::Other(format!(
            "CDC needs wal_level=logical (it is `{wal_level}`): set it in postgresql.conf \
             (ALTER SYSTEM SET wal_level = logical) and restart the server"
        )));
    }
    if !replication && !superuser {
        return Err(ConnectorError::Other(format!(
            "stream `{stream}`: CDC reads a replication slot, which needs the REPLICATION \
             attribute: run `ALTER ROLE {} REPLICATION;` as a superuser",
            quote_ident(&user)
        )));
    }
    if ctx.table.relkind != 'r' && ctx.table.relkind != 'p' {
        return Err(ConnectorError::Unsupported(format!(
            "stream `{stream}`: CDC reads tables only (this is not a table); use full_refresh \
             or incremental"
        )));
    }
    if let Some(c) = ctx
        .table
        .columns
        .iter()
        .find(|c| c.kind.is_none() || c.cast.is_some())
    {
        return Err(ConnectorError::Unsupported(format!(
            "stream `{stream}`: column `{}` has type {}, which weft reads through a cast; \
             CDC decodes binary values only and cannot read it (exclude the table from CDC, \
             or change the column's type)",
            c.name, c.sql_type
        )));
    }
    let identity: String = client
        .query_one(
            "SELECT relreplident::text FROM pg_class WHERE oid = $1::text::regclass",
            &[&ctx.table_sql()],
        )
        .await
        .map_err(|e| ctx.read_error(&e))?
        .get(0);
    let fix = format!("ALTER TABLE {} REPLICA IDENTITY FULL", ctx.table_sql());
    match identity.as_str() {
        "n" => {
            return Err(ConnectorError::Other(format!(
                "stream `{stream}`: table {} has REPLICA IDENTITY NOTHING, so PostgreSQL logs \
                 no key for updates and deletes; run `{fix};` (or set a primary key and \
                 REPLICA IDENTITY DEFAULT)",
                ctx.table_sql()
            )))
        }
        "d" if ctx.table.primary_key.is_empty() => {
            return Err(ConnectorError::Other(format!(
                "stream `{stream}`: table {} has no primary key, so PostgreSQL logs no key for \
                 updates and deletes; add a primary key or run `{fix};`",
                ctx.table_sql()
            )))
        }
        "d" => {
            // Varlena columns that may be stored out of line (storage other than PLAIN).
            let toastable: Vec<String> = client
                .query(
                    "SELECT attname::text FROM pg_attribute
                     WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
                       AND attlen = -1 AND attstorage <> 'p'
                     ORDER BY attnum",
                    &[&ctx.table_sql()],
                )
                .await
                .map_err(|e| ctx.read_error(&e))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if !toastable.is_empty() {
                tracing::warn!(
                    "stream `{stream}`: table {} has REPLICA IDENTITY DEFAULT and TOASTable \
                     columns ({}): an update that changes a row's primary key and leaves such a \
                     value untouched would stop the stream (PostgreSQL does not log the value, \
                     so it cannot be carried to the new key); `{fix};` avoids it",
                    ctx.table_sql(),
                    toastable.join(", ")
                );
            }
        }
        _ => {}
    }
    Ok(())
}

/// Creates the publication for the table (when `create`: the first read), or adopts it if it
/// already publishes exactly that table.
pub async fn ensure_publication(
    client: &Client,
    ctx: &ReadCtx,
    name: &str,
    create: bool,
    reset: &str,
) -> Result<()> {
    let stream = &ctx.stream;
    let row = client
        .query_opt(
            "SELECT pubinsert, pubupdate, pubdelete, pubtruncate, puballtables
             FROM pg_publication WHERE pubname = $1",
            &[&name],
        )
        .await
        .map_err(|e| query_error("looking up the publication", &e))?;
    let Some(row) = row else {
        if !create {
            // The slot decodes with the publication as of each change: one created now does
            // not cover the changes already in the slot.
            return Err(ConnectorError::Other(format!(
                "stream `{stream}`: publication {name} no longer exists (dropped by hand?); \
                 run `{reset}` to take a new snapshot"
            )));
        }
        let via_root = if ctx.table.relkind == 'p' {
            ", publish_via_partition_root = true"
        } else {
            ""
        };
        let sql = format!(
            "CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert, update, delete, truncate'{via_root})",
            quote_ident(name),
            ctx.table_sql()
        );
        return match client.batch_execute(&sql).await {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                Err(ConnectorError::Other(format!(
                    "stream `{stream}`: creating the publication needs ownership of the table \
                     ({}); run as its owner or a superuser: `{sql};`",
                    e.as_db_error()
                        .map(|d| d.message())
                        .unwrap_or("permission denied")
                )))
            }
            Err(e) => Err(query_error(
                &format!("stream `{stream}`: creating publication {name}"),
                &e,
            )),
        };
    };
    let fix = format!(
        "run `{reset}` to recreate it (and take a new snapshot), or fix it with `ALTER PUBLICATION {} SET TABLE {}`",
        quote_ident(name),
        ctx.table_sql()
    );
    if row.get::<_, bool>(4) {
        return Err(ConnectorError::Other(format!(
            "stream `{stream}`: publication {name} publishes all tables instead of only {}; {fix}",
            ctx.table_sql()
        )));
    }
    let tables: Vec<(String, String)> = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables
             WHERE pubname = $1 ORDER BY 1, 2",
            &[&name],
        )
        .await
        .map_err(|e| query_error("listing the publication's tables", &e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if tables != [(ctx.table.schema.clone(), ctx.table.name.clone())] {
        let listed: Vec<String> = tables.iter().map(|(s, t)| qualified(s, t)).collect();
        return Err(ConnectorError::Other(format!(
            "stream `{stream}`: publication {name} publishes {} instead of {} (it was edited by \
             hand?); {fix}",
            if listed.is_empty() {
                "no table".to_string()
            } else {
                listed.join(", ")
            },
            ctx.table_sql()
        )));
    }
    let actions = ["insert", "update", "delete", "truncate"];
    let missing: Vec<&str> = (0..4)
        .filter(|&i| !row.get::<_, bool>(i))
        .map(|i| actions[i])
        .collect();
    if !missing.is_empty() {
        return Err(ConnectorError::Other(format!(
            "stream `{stream}`: publication {name} does not publish {}; run `ALTER PUBLICATION \
             {} SET (publish = 'insert, update, delete, truncate')` or `{reset}`",
            missing.join(", "),
            quote_ident(name)
        )));
    }
    Ok(())
}

/// A replication slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone)]
pub struct SlotInfo {
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub active: bool,
    pub confirmed_flush: Option<Lsn>,
    pub wal_status: Option<String>,
}

fn lsn_of(text: Option<String>) -> Result<Option<Lsn>> {
    text.map(|t| t.parse().map_err(ConnectorError::Other))
        .transpose()
}

pub async fn slot(client: &Client, name: &str) -> Result<Option<SlotInfo>> {
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text, active, confirmed_flush_lsn::text, wal_status
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await
        .map_err(|e| query_error("looking up the replication slot", &e))?;
    row.map(|r| {
        Ok(SlotInfo {
            plugin: r.get(0),
            database: r.get(1),
            active: r.get(2),
            confirmed_flush: lsn_of(r.get(3))?,
            wal_status: r.get(4),
        })
    })
    .transpose()
}

/// Waits until no session holds slot `name`. A weft session holding it is the server side of
/// a killed run (`weft` holds the project's lock, so no live run of this pipeline can): it ends
/// once the server notices its client is gone, or is terminated after a grace period. A slot
/// held by anything else is an error.
pub async fn release_slot(client: &Client, stream: &str, name: &str) -> Result<()> {
    let in_use = || {
        ConnectorError::Other(format!(
            "stream `{stream}`: replication slot {name} is in use by another session (a sync \
             of this pipeline still running?); stop it first"
        ))
    };
    let started = std::time::Instant::now();
    loop {
        let row = client
            .query_opt(
                "SELECT s.active_pid, a.application_name
                 FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid
                 WHERE s.slot_name = $1 AND s.active",
                &[&name],
            )
            .await
            .map_err(|e| query_error("looking up the replication slot", &e))?;
        let Some(row) = row else { return Ok(()) };
        let pid: Option<i32> = row.get(0);
        let app: Option<String> = row.get(1);
        if app.as_deref() != Some("weft") {
            return Err(in_use());
        }
        let waited = started.elapsed();
        if waited > std::time::Duration::from_secs(10) {
            return Err(in_use());
        }
        if waited > std::time::Duration::from_secs(3) {
            if let Some(pid) = pid {
                tracing::warn!(
                    stream,
                    slot = name,
                    pid,
                    "an earlier weft session still holds the replication slot; terminating it"
                );
                let _ = client
                    .execute("SELECT pg_terminate_backend($1)", &[&pid])
                    .await;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Drops the slot if it exists; a slot another session holds is an error.
pub async fn drop_slot(client: &Client, stream: &str, name: &str) -> Result<()> {
    if slot(client, name).await?.is_none() {
        return Ok(());
    }
    release_slot(client, stream, name).await?;
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await
        .map_err(|e| query_error(&format!("dropping replication slot {name}"), &e))?;
    Ok(())
}

/// Creates the slot (after dropping a leftover one): its consistent point.
pub async fn create_slot(client: &Client, stream: &str, name: &str) -> Result<Lsn> {
    drop_slot(client, stream, name).await?;
    let text: String = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&name],
        )
        .await
        .map_err(|e| {
            query_error(
                &format!("stream `{stream}`: creating replication slot {name}"),
                &e,
            )
        })?
        .get(0);
    text.parse().map_err(ConnectorError::Other)
}

/// Drops the publication if it exists.
pub async fn drop_publication(client: &Client, name: &str) -> Result<()> {
    client
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name)))
        .await
        .map_err(|e| query_error(&format!("dropping publication {name}"), &e))
}

/// Where a read without `follow` stops: the WAL flush position once everything committed
/// before now is flushed.
///
/// With `synchronous_commit=off` (server, role or session setting) a commit returns, and is
/// visible, before its WAL is flushed, and logical decoding only reads flushed WAL: stopping at
/// the flush position alone made a run started right after such commits yield none of them
/// (they came one run late; the walwriter flushes them within a few `wal_writer_delay`s). So a
/// tiny transaction first writes a logical message (prefix `weft`, which pgoutput does not
/// publish) and commits with `synchronous_commit = local`: its commit flushes the WAL up to
/// itself, which covers every commit made before it. (Transactional: a transaction that wrote
/// no WAL commits without a flush, and a non-transactional message is not flushed before
/// PostgreSQL 17.) If the server refuses, the read stops at the flush position as before.
pub async fn catch_up_lsn(client: &Client, stream: &str) -> Result<Lsn> {
    let flushed = client
        .batch_execute(
            "BEGIN; SET LOCAL synchronous_commit = local;
             SELECT pg_logical_emit_message(true, 'weft', 'catch-up'); COMMIT",
        )
        .await;
    if let Err(e) = flushed {
        let _ = client.batch_execute("ROLLBACK").await;
        tracing::warn!(
            "stream `{stream}`: could not flush the WAL before catching up ({e}); commits made \
             with synchronous_commit=off right before this run may only be read by the next one"
        );
    }
    current_lsn(client).await
}

/// The server's WAL flush position: the end of what logical decoding can read. (Not the write
/// position `pg_current_wal_lsn()`: WAL written but not yet flushed is not decoded yet, and
/// claiming a position past it would skip the transactions committed there.)
pub async fn current_lsn(client: &Client) -> Result<Lsn> {
    let text: String = client
        .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
        .await
        .map_err(|e| query_error("reading the current WAL position", &e))?
        .get(0);
    text.parse().map_err(ConnectorError::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_slot_names() {
        let a = resource_name("sales.Orders.order-lines");
        assert!(a.starts_with("weft_sales_orders_order_lines_"), "{a}");
        assert_eq!(a.len(), "weft_sales_orders_order_lines_".len() + 8);
        assert_ne!(resource_name("a.b"), resource_name("a_b"));
        assert_eq!(resource_name("a.b"), resource_name("a.b"));
        // Per project: the readable part is the stream's, the hash tells projects apart; the
        // legacy name is the one from before (no project part).
        let (p1, p2) = (
            resource_name("s.o.t@0123456789ab"),
            resource_name("s.o.t@ba9876543210"),
        );
        assert_ne!(p1, p2);
        assert!(
            p1.starts_with("weft_s_o_t_") && p2.starts_with("weft_s_o_t_"),
            "{p1} {p2}"
        );
        assert_eq!(legacy_name("s.o.t@0123456789ab"), resource_name("s.o.t"));
        let long = resource_name(&"x".repeat(300));
        assert!(long.len() <= 63, "{long}");
        let odd = resource_name("ÄÖ..__");
        assert!(odd.starts_with("weft_"), "{odd}");
        for n in [a, long, odd, resource_name("")] {
            assert!(n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
            assert!(n.len() <= 63);
        }
    }
}
