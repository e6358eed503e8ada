//! [`PgWriter`]: the [`StreamWriter`] of one stream, on its own connection.
//!
//! A commit's data flows into an open binary COPY as batches arrive, inside the commit's
//! transaction (opened by the first write after a commit); `commit` ends the COPY, merges
//! (append_dedup), records the checkpoint in the control table and commits, all in that one
//! transaction. Nothing is held in memory beyond the batch being encoded.
//!
//! An `append_dedup` first load (the product table does not exist yet, see
//! [`Layout::first_load`]) copies like an overwrite, into the `__weft_next` table with the
//! commits' checkpoints pending; `finish` settles it by key in the same transaction as the
//! swap and the final checkpoint (`settle_generation`): the key's unique index is built, and only if that finds
//! duplicate keys (rows that arrived twice, e.g. re-read after a crash, or updated during the
//! load) are the older rows deleted first, with the merge's rule (the latest cursor wins,
//! ties: the later arrival). Readers see no table until then, and a crash resumes into the
//! next table from the pending checkpoint, as an overwrite does.
//!
//! CDC streams: a changelog (`append`) streams change rows into the same kind of COPY, with
//! the change columns; the current state (`append_dedup`) applies each change batch as it
//! arrives (COPY into the staging table, one settling statement, see [`crate::changes`]),
//! still inside the commit's transaction, so `commit` only records the checkpoint.
//!
//! A truncate change deletes every row with `DELETE FROM`, not `TRUNCATE`: both are
//! transactional, but `TRUNCATE` holds an ACCESS EXCLUSIVE lock until the commit (readers of
//! the product table would wait for the rest of the commit interval) and is not MVCC-safe
//! (transactions with an older snapshot would see the table empty). `DELETE` keeps readers
//! reading the last committed state; the cost is proportional to the rows deleted, and
//! truncates are rare.
//!
//! A schema change mid-stream evolves the table (`ALTER TABLE … ADD COLUMN`, widenings) inside
//! the commit's transaction: the writer's connection already holds locks on the table there,
//! so another transaction could not alter it, and the change commits or rolls back with the
//! rows written in the new shape. The ALTER's lock is held until that commit.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures::SinkExt;
use tokio_postgres::{Client, CopyInSink};
use weft_core::arrow_array::{Array, ArrayRef, RecordBatch};
use weft_core::arrow_schema::SchemaRef;
use weft_core::{
    ChangeBatch, ChangeOp, Checkpoint, ConnectorError, Result, StreamTarget, StreamWriter,
    WriteMode,
};

use crate::changes::{apply_sql, changelog_arrays, stage_arrays};
use crate::connect::db_message;
use crate::encode::{encode_batch, encode_columns, Metadata, HEADER, TRAILER};
use crate::naming::quote;
use crate::table::{
    create_staging, evolve, quoted_list, stage_flag, unique_index_sql, Layout, ARRIVAL_ORD,
    CHANGELOG_COLUMNS, RUN_ID, STAGE_OP, STAGE_ORD, STAGE_POSITION, STAGING_TABLE, SYNCED_AT,
};
use crate::types::PgType;

/// Encoded bytes are handed to the connection in chunks of about this size.
const FLUSH_BYTES: usize = 1 << 20;

/// Writes one stream into PostgreSQL. See the module docs.
pub struct PgWriter {
    client: Client,
    layout: Layout,
    schema: SchemaRef,
    target: StreamTarget,
    copy_sql: String,
    /// Whether COPY rows carry the metadata columns (append, overwrite) or the merge adds them.
    copy_metadata: bool,
    /// Set while a transaction is open: the values of the commit's metadata columns.
    transaction: Option<Metadata>,
    copy: Option<Pin<Box<CopyInSink<Bytes>>>>,
    buf: BytesMut,
    /// COPY data sent in the open transaction, and in committed ones (`bytes_written`).
    copy_sent: u64,
    bytes_written: u64,
    committed: Option<Checkpoint>,
    /// A statement failed inside the open transaction: it is aborted on the server, so the
    /// writer refuses to go on until `abort`.
    poisoned: bool,
    finished: bool,
    /// The layout and schema before a schema change made in the open transaction, restored
    /// by `abort` (the transaction's ALTERs roll back).
    before_schema_change: Option<(Layout, SchemaRef)>,
}

/// The COPY statement of a layout's batches, and whether its rows carry the metadata columns
/// (append, overwrite, changelog) or the merge adds them (append_dedup).
fn copy_target(layout: &Layout) -> (String, bool) {
    let names = &layout.names;
    let (into, copy_metadata) = match layout.mode {
        WriteMode::Overwrite => (names.qualified_next(), layout.metadata),
        WriteMode::Append => (names.qualified(), layout.metadata),
        WriteMode::AppendDedup if layout.first_load => (names.qualified_next(), layout.metadata),
        WriteMode::AppendDedup => (format!("pg_temp.{}", quote(STAGING_TABLE)), false),
    };
    let mut columns: Vec<String> = layout.columns.iter().map(|(n, _)| n.clone()).collect();
    if layout.changelog() {
        columns.extend(CHANGELOG_COLUMNS.iter().map(|(n, _)| n.to_string()));
    }
    if copy_metadata {
        columns.extend([SYNCED_AT.to_string(), RUN_ID.to_string()]);
    }
    let sql = format!(
        "COPY {into} ({}) FROM STDIN (FORMAT binary)",
        quoted_list(&columns)
    );
    (sql, copy_metadata)
}

impl PgWriter {
    pub(crate) fn new(
        client: Client,
        layout: Layout,
        schema: SchemaRef,
        target: StreamTarget,
        committed: Option<Checkpoint>,
    ) -> Self {
        let (copy_sql, copy_metadata) = copy_target(&layout);
        Self {
            client,
            layout,
            schema,
            target,
            copy_sql,
            copy_metadata,
            transaction: None,
            copy: None,
            buf: BytesMut::with_capacity(FLUSH_BYTES * 2),
            copy_sent: 0,
            bytes_written: 0,
            committed,
            poisoned: false,
            finished: false,
            before_schema_change: None,
        }
    }

    fn label(&self) -> &str {
        &self.layout.label
    }

    fn usable(&self) -> Result<()> {
        if self.finished {
            return Err(ConnectorError::Other(format!(
                "{}: the writer already finished; open the stream again to write more",
                self.label()
            )));
        }
        if self.poisoned {
            return Err(ConnectorError::Other(format!(
                "{}: an earlier statement failed; abort and resume from the last committed \
                 checkpoint",
                self.label()
            )));
        }
        Ok(())
    }

    fn sql_error(&self, what: &str, e: tokio_postgres::Error) -> ConnectorError {
        ConnectorError::Other(format!("{}: {what}: {}", self.label(), db_message(&e)))
    }

    /// Opens the commit's transaction if none is open.
    async fn begin(&mut self) -> Result<()> {
        if self.transaction.is_none() {
            self.client
                .batch_execute("BEGIN")
                .await
                .map_err(|e| self.sql_error("starting a transaction", e))?;
            self.transaction = Some(Metadata::now(&self.target.run_id));
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let chunk = self.buf.split().freeze();
        let Some(copy) = self.copy.as_mut() else {
            return Ok(());
        };
        let len = chunk.len() as u64;
        if let Err(e) = copy.send(chunk).await {
            return Err(self.sql_error("copying rows", e));
        }
        self.copy_sent += len;
        Ok(())
    }

    /// Opens the transaction and starts `sql`'s COPY (the header in the buffer) unless a COPY
    /// is open.
    async fn start_copy(&mut self, sql: &str) -> Result<()> {
        self.begin().await?;
        if self.copy.is_none() {
            let sink = self
                .client
                .copy_in::<_, Bytes>(sql)
                .await
                .map_err(|e| self.sql_error("starting COPY", e))?;
            self.copy = Some(Box::pin(sink));
            self.buf.put_slice(HEADER);
        }
        Ok(())
    }

    async fn write_inner(&mut self, batch: RecordBatch) -> Result<()> {
        let sql = self.copy_sql.clone();
        self.start_copy(&sql).await?;
        let metadata = if self.copy_metadata {
            self.transaction.as_ref()
        } else {
            None
        };
        let types: Vec<PgType> = self.layout.columns.iter().map(|(_, t)| t.clone()).collect();
        encode_batch(&batch, &types, metadata, &mut self.buf)
            .map_err(|why| ConnectorError::Schema(format!("{}: {why}", self.layout.label)))?;
        if self.buf.len() >= FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Ends the open COPY, if any: the rows are in the transaction, not yet committed.
    async fn end_copy(&mut self) -> Result<()> {
        if self.copy.is_none() {
            return Ok(());
        }
        self.buf.put_slice(TRAILER);
        self.flush().await?;
        let mut copy = self.copy.take().expect("checked above");
        copy.as_mut()
            .finish()
            .await
            .map_err(|e| self.sql_error("finishing COPY", e))?;
        Ok(())
    }

    /// Settles the staged rows into the table: the latest row per key wins (by cursor, then
    /// by arrival), and never replaces a row with a newer cursor.
    async fn merge(&mut self) -> Result<()> {
        let layout = &self.layout;
        let table = layout.names.qualified();
        let key = quoted_list(&layout.key);
        let mut columns: Vec<String> = layout.columns.iter().map(|(n, _)| quote(n)).collect();
        let mut values = columns.clone();
        if layout.metadata {
            columns.extend([quote(SYNCED_AT), quote(RUN_ID)]);
            values.extend(["$1::text::timestamptz".into(), "$2::text".into()]);
        }
        let mut order = key.clone();
        if let Some(cursor) = &layout.cursor {
            order.push_str(&format!(", {} DESC NULLS LAST", quote(cursor)));
        }
        order.push_str(&format!(", {ARRIVAL_ORD} DESC"));
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| !layout.key.iter().any(|k| &quote(k) == *c))
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let on_conflict = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            let guard = match &layout.cursor {
                Some(cursor) => {
                    let c = quote(cursor);
                    format!(" WHERE t.{c} IS NULL OR excluded.{c} >= t.{c}")
                }
                None => String::new(),
            };
            format!("DO UPDATE SET {}{guard}", updates.join(", "))
        };
        let sql = format!(
            "INSERT INTO {table} AS t ({}) SELECT DISTINCT ON ({key}) {} FROM pg_temp.{} ORDER \
             BY {order} ON CONFLICT ({key}) {on_conflict}",
            columns.join(", "),
            values.join(", "),
            quote(STAGING_TABLE),
        );
        let result = match (&self.transaction, layout.metadata) {
            (Some(meta), true) => {
                let synced_at = meta.synced_at_text();
                self.client
                    .execute(sql.as_str(), &[&synced_at, &meta.run_id])
                    .await
            }
            _ => self.client.execute(sql.as_str(), &[]).await,
        };
        result.map_err(|e| self.sql_error("merging the staged rows by key", e))?;
        Ok(())
    }

    /// Refuses a batch whose columns are not the ones the stream was opened with (or changed
    /// to by the last schema change).
    fn check_schema(&self, batch_schema: &SchemaRef) -> Result<()> {
        if Arc::ptr_eq(batch_schema, &self.schema) || batch_schema.fields() == self.schema.fields()
        {
            return Ok(());
        }
        let names = |schema: &SchemaRef| -> Vec<String> {
            schema.fields().iter().map(|f| f.name().clone()).collect()
        };
        Err(ConnectorError::Schema(format!(
            "{}: a batch does not match the schema the stream was opened with (opened with \
             {:?}, got {:?})",
            self.label(),
            names(&self.schema),
            names(batch_schema)
        )))
    }

    /// Changelog: every change row goes into the table's COPY with its change columns.
    async fn append_changes(&mut self, changes: &ChangeBatch) -> Result<()> {
        let sql = self.copy_sql.clone();
        self.start_copy(&sql).await?;
        let extra = changelog_arrays(changes);
        let schema = changes.rows.schema();
        let mut columns: Vec<(&str, &dyn Array)> = changes
            .rows
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(a, f)| (f.name().as_str(), a.as_ref()))
            .collect();
        for ((name, _), array) in CHANGELOG_COLUMNS.iter().zip(&extra) {
            columns.push((name, array.as_ref()));
        }
        let metadata = if self.copy_metadata {
            self.transaction.as_ref()
        } else {
            None
        };
        let types: Vec<PgType> = self.layout.columns.iter().map(|(_, t)| t.clone()).collect();
        encode_columns(&columns, &types, changes.len(), metadata, &mut self.buf)
            .map_err(|why| ConnectorError::Schema(format!("{}: {why}", self.layout.label)))?;
        if self.buf.len() >= FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Current state: applies the runs of changes between truncates, in order.
    async fn apply_changes(&mut self, changes: &ChangeBatch) -> Result<()> {
        self.begin().await?;
        let mut start = 0;
        for i in 0..changes.len() {
            if changes.op(i) == ChangeOp::Truncate {
                if i > start {
                    self.apply_run(changes, start, i).await?;
                }
                let sql = format!("DELETE FROM {}", self.layout.names.qualified());
                self.client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| self.sql_error("applying a truncate (deleting every row)", e))?;
                start = i + 1;
            }
        }
        if start < changes.len() {
            self.apply_run(changes, start, changes.len()).await?;
        }
        Ok(())
    }

    /// Copies the changes `lo..hi` (no truncate among them) into the staging table and settles
    /// them into the table by key (see [`crate::changes`]).
    async fn apply_run(&mut self, changes: &ChangeBatch, lo: usize, hi: usize) -> Result<()> {
        let len = hi - lo;
        let rows = changes.rows.slice(lo, len);
        let helpers = stage_arrays(changes, lo, hi);
        let mut names: Vec<String> = self.layout.columns.iter().map(|(n, _)| n.clone()).collect();
        names.extend([STAGE_OP, STAGE_ORD, STAGE_POSITION].map(String::from));
        let mut arrays: Vec<ArrayRef> = rows.columns().to_vec();
        arrays.extend(helpers);
        // Unchanged flags of the non-key columns that have some in this run.
        let mut unchanged = Vec::new();
        for (i, (name, _)) in self.layout.columns.iter().enumerate() {
            if self.layout.key.contains(name) {
                continue;
            }
            if let Some(mask) = changes.unchanged.get(name) {
                let mask = mask.slice(lo, len);
                if mask.true_count() > 0 {
                    unchanged.push(i);
                    names.push(stage_flag(i));
                    arrays.push(Arc::new(mask));
                }
            }
        }
        let columns: Vec<(&str, &dyn Array)> = names
            .iter()
            .zip(&arrays)
            .map(|(n, a)| (n.as_str(), a.as_ref()))
            .collect();
        let copy = format!(
            "COPY pg_temp.{} ({}) FROM STDIN (FORMAT binary)",
            quote(STAGING_TABLE),
            quoted_list(&names)
        );
        self.start_copy(&copy).await?;
        let types: Vec<PgType> = self.layout.columns.iter().map(|(_, t)| t.clone()).collect();
        encode_columns(&columns, &types, len, None, &mut self.buf)
            .map_err(|why| ConnectorError::Schema(format!("{}: {why}", self.layout.label)))?;
        self.end_copy().await?;
        let sql = format!(
            "{}; TRUNCATE pg_temp.{}",
            apply_sql(&self.layout, &unchanged, self.transaction.as_ref()),
            quote(STAGING_TABLE)
        );
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|e| self.sql_error("applying changes by key", e))
    }

    /// Evolves the table to `schema` inside the open transaction (see the module docs).
    async fn evolve_to(&mut self, schema: SchemaRef) -> Result<()> {
        let mut next = self.layout.with_schema(&schema)?;
        self.begin().await?;
        let fields: Vec<&weft_core::arrow_schema::Field> =
            schema.fields().iter().map(|f| f.as_ref()).collect();
        crate::source_types::resolve(&self.client, &mut next, &fields).await?;
        // Rows already sent in the old shape go in first.
        self.end_copy().await?;
        // A first load's rows stay in the next table until `finish` settles them.
        let staged = self.layout.mode == WriteMode::AppendDedup && !self.layout.first_load;
        if staged && !self.layout.cdc {
            self.merge().await?;
        }
        let (table, columns) = if next.first_load {
            (next.names.next.clone(), next.first_load_columns())
        } else if next.mode == WriteMode::Overwrite {
            (next.names.next.clone(), next.table_columns())
        } else {
            (next.names.table.clone(), next.table_columns())
        };
        let effective = evolve(&self.client, &next, &table, &columns).await?;
        next.set_effective(effective);
        if staged {
            // Recreated in the new shape; the rows merged above are gone with the old one.
            create_staging(&self.client, &next).await?;
        }
        if self.before_schema_change.is_none() {
            self.before_schema_change = Some((self.layout.clone(), self.schema.clone()));
        }
        self.set_layout(next, schema);
        Ok(())
    }

    fn set_layout(&mut self, layout: Layout, schema: SchemaRef) {
        let (copy_sql, copy_metadata) = copy_target(&layout);
        self.layout = layout;
        self.schema = schema;
        self.copy_sql = copy_sql;
        self.copy_metadata = copy_metadata;
    }

    /// Records `checkpoint` in the control table: as the published checkpoint, or as the
    /// pending one of an overwrite generation.
    async fn record(&mut self, checkpoint: &Checkpoint, pending: bool) -> Result<()> {
        let (published, pending_cp) = if pending {
            ("NULL", "$5::text::jsonb")
        } else {
            ("$5::text::jsonb", "NULL")
        };
        let update = if pending {
            "pending_checkpoint = excluded.pending_checkpoint"
        } else {
            "checkpoint = excluded.checkpoint, pending_checkpoint = NULL"
        };
        let sql = format!(
            "INSERT INTO {} AS c (table_name, domain, product, stream, write_mode, checkpoint, \
             pending_checkpoint, run_id, committed_at) VALUES ($1, $7, $2, $3, $4, {published}, \
             {pending_cp}, $6, now()) ON CONFLICT (table_name) DO UPDATE SET domain = \
             excluded.domain, product = excluded.product, stream = excluded.stream, write_mode \
             = excluded.write_mode, {update}, run_id = excluded.run_id, committed_at = \
             excluded.committed_at",
            self.layout.names.control()
        );
        let position = checkpoint.position().to_string();
        let mode = self.layout.mode.to_string();
        self.client
            .execute(
                sql.as_str(),
                &[
                    &self.layout.names.table,
                    &self.target.product.as_str(),
                    &self.target.stream.as_str(),
                    &mode,
                    &position,
                    &self.target.run_id,
                    &self.target.domain.as_str(),
                ],
            )
            .await
            .map_err(|e| self.sql_error("recording the checkpoint", e))?;
        Ok(())
    }

    /// An aborted overwrite's next table is kept only when a commit recorded a pending
    /// checkpoint in it (the next run resumes there); otherwise it holds nothing durable and
    /// is dropped, so a failed run leaves no `__weft_next` table behind.
    async fn drop_unresumable_next(&mut self) -> Result<()> {
        let names = &self.layout.names;
        let pending = self
            .client
            .query_opt(
                &format!(
                    "SELECT 1 FROM {} WHERE table_name = $1 AND pending_checkpoint IS NOT NULL",
                    names.control()
                ),
                &[&names.table],
            )
            .await
            .map_err(|e| self.sql_error("reading the control table", e))?;
        if pending.is_some() {
            return Ok(());
        }
        let sql = format!("DROP TABLE IF EXISTS {}", names.qualified_next());
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|e| self.sql_error("dropping the aborted overwrite's next table", e))
    }

    /// Records the product's metadata as table and column comments (inside the open
    /// transaction, so they change with the data they describe).
    async fn comment(&mut self) -> Result<()> {
        let columns: Vec<String> = self
            .layout
            .table_columns()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let sql = crate::comments::comment_sql(
            &self.layout.names.qualified(),
            &columns,
            &self.target.metadata,
        );
        if sql.is_empty() {
            return Ok(());
        }
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|e| self.sql_error("recording the product's comments", e))
    }

    /// Settles a generation before it is published (inside the finishing transaction): the
    /// `__weft_next` table an overwrite or an `append_dedup` first load filled. Guarantees:
    /// the table then holds exactly one row per primary key, the latest by
    /// [`Self::latest_first`], so a key that arrived twice (a full refresh restarted without
    /// saying so, rows read again after a crash or updated during the load) is never
    /// published twice; rows are deleted only when a key repeats (see [`Self::key_repeats`]);
    /// a first load ends with the key's unique index, which its merges need, and without its
    /// arrival order. A stream without a key is published as it is.
    async fn settle_generation(&mut self) -> Result<()> {
        if self.layout.key.is_empty() {
            return Ok(());
        }
        let first_load = self.layout.first_load;
        let next = self.layout.names.qualified_next();
        if self.key_repeats(&next).await? {
            let key = quoted_list(&self.layout.key);
            let latest_first = self.latest_first();
            let deleted = self
                .client
                .execute(
                    &format!(
                        "DELETE FROM {next} t USING (SELECT ctid AS c FROM (SELECT ctid, \
                         row_number() OVER (PARTITION BY {key} ORDER BY {latest_first}) AS n \
                         FROM {next}) r WHERE n > 1) d WHERE t.ctid = d.c"
                    ),
                    &[],
                )
                .await
                .map_err(|e| self.sql_error("keeping the latest row per primary key", e))?;
            let (label, key) = (self.label(), self.layout.key.join(", "));
            if first_load {
                // Expected: rows updated during the load, or read again after a crash.
                tracing::info!(stream = %label, "{label}: {deleted} row(s) of the first load shared their primary key ({key}) with a later one; kept the latest of each");
                let index = unique_index_sql(&self.layout, &next);
                self.client
                    .batch_execute(&index)
                    .await
                    .map_err(|e| self.sql_error("building the key's unique index", e))?;
            } else {
                // A surprise from the source: one full refresh sent a key twice.
                tracing::warn!(stream = %label, "{label}: the source sent {deleted} row(s) whose primary key ({key}) a later row of the same full refresh also had; published the last row per key");
            }
        }
        if first_load {
            self.client
                .batch_execute(&format!("ALTER TABLE {next} DROP COLUMN {ARRIVAL_ORD}"))
                .await
                .map_err(|e| self.sql_error("settling the first load", e))?;
        }
        Ok(())
    }

    /// Whether a primary key repeats in the next table. A first load tries to build the key's
    /// unique index, which it needs anyway, under a savepoint: only a unique violation means a
    /// repeat, and rolling back to the savepoint undoes the failed build. An overwrite's table
    /// has no index: one hash aggregate over the key columns.
    async fn key_repeats(&mut self, next: &str) -> Result<bool> {
        if !self.layout.first_load {
            let key = quoted_list(&self.layout.key);
            let repeats = self
                .client
                .query_one(
                    &format!(
                        "SELECT EXISTS (SELECT 1 FROM {next} GROUP BY {key} HAVING count(*) > 1)"
                    ),
                    &[],
                )
                .await
                .map_err(|e| self.sql_error("looking for repeated primary keys", e))?;
            return Ok(repeats.get(0));
        }
        let index = unique_index_sql(&self.layout, next);
        self.client
            .batch_execute("SAVEPOINT weft_settle")
            .await
            .map_err(|e| self.sql_error("settling the first load", e))?;
        let repeats = match self.client.batch_execute(&index).await {
            Ok(()) => false,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                self.client
                    .batch_execute("ROLLBACK TO SAVEPOINT weft_settle")
                    .await
                    .map_err(|e| self.sql_error("settling the first load", e))?;
                true
            }
            Err(e) => return Err(self.sql_error("building the key's unique index", e)),
        };
        self.client
            .batch_execute("RELEASE SAVEPOINT weft_settle")
            .await
            .map_err(|e| self.sql_error("settling the first load", e))?;
        Ok(repeats)
    }

    /// The order that puts a key's latest row first. A first load follows the merge's rule:
    /// the latest cursor wins, ties go to the later arrival. An overwrite's rows are all one
    /// full refresh: the later arrival wins, by commit (`_weft_synced_at`) and then by the
    /// row's place in the heap, which for rows only ever COPYed in is the order they came in.
    fn latest_first(&self) -> String {
        let layout = &self.layout;
        let mut order = Vec::new();
        if layout.first_load {
            if let Some(cursor) = &layout.cursor {
                order.push(format!("{} DESC NULLS LAST", quote(cursor)));
            }
            order.push(format!("{ARRIVAL_ORD} DESC"));
        } else {
            if layout.metadata {
                order.push(format!("{} DESC", quote(SYNCED_AT)));
            }
            order.push("ctid DESC".to_string());
        }
        order.join(", ")
    }

    /// Replaces the product table with the next one (inside the open transaction).
    async fn swap(&mut self) -> Result<()> {
        let names = &self.layout.names;
        let sql = format!(
            "DROP TABLE IF EXISTS {}; ALTER TABLE {} RENAME TO {}",
            names.qualified(),
            names.qualified_next(),
            quote(&names.table)
        );
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|e| self.sql_error("swapping in the new table", e))
    }

    /// One transaction: the rest of the COPY, the merge or swap, the checkpoint.
    async fn commit_with(&mut self, checkpoint: &Checkpoint, finish: bool) -> Result<()> {
        self.usable()?;
        let result = async {
            self.begin().await?;
            self.end_copy().await?;
            let at_finish = self.layout.publishes_at_finish();
            if self.layout.mode == WriteMode::AppendDedup
                && !self.layout.cdc
                && !self.layout.first_load
            {
                self.merge().await?;
            }
            if at_finish && finish {
                self.settle_generation().await?;
                self.swap().await?;
            }
            // The product table exists now (an unfinished overwrite or first load fills the
            // next one).
            if !at_finish || finish {
                self.comment().await?;
            }
            self.record(checkpoint, at_finish && !finish).await?;
            self.client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| self.sql_error("committing", e))?;
            self.transaction = None;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                self.before_schema_change = None;
                self.bytes_written += std::mem::take(&mut self.copy_sent);
                self.committed = Some(checkpoint.clone());
                self.finished = finish;
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }
}

#[async_trait]
impl StreamWriter for PgWriter {
    fn committed_checkpoint(&self) -> Option<Checkpoint> {
        self.committed.clone()
    }

    fn stores_checkpoints(&self) -> bool {
        true
    }

    fn bytes_written(&self) -> Option<u64> {
        Some(self.bytes_written)
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.usable()?;
        if self.layout.cdc {
            return Err(ConnectorError::Other(format!(
                "{}: a CDC stream takes change batches (its snapshot arrives as inserts), not \
                 plain record batches; this is a bug of the source",
                self.label()
            )));
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.check_schema(&batch.schema())?;
        let result = self.write_inner(batch).await;
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    async fn write_changes(&mut self, changes: ChangeBatch) -> Result<()> {
        self.usable()?;
        if !self.layout.cdc {
            return Err(ConnectorError::Unsupported(format!(
                "{}: change batches need a CDC stream (sync_mode `cdc`); this stream was \
                 opened for plain batches",
                self.label()
            )));
        }
        changes
            .validate()
            .map_err(|why| ConnectorError::Schema(format!("{}: {why}", self.label())))?;
        if changes.is_empty() {
            return Ok(());
        }
        self.check_schema(&changes.rows.schema())?;
        let result = if self.layout.changelog() {
            self.append_changes(&changes).await
        } else {
            self.apply_changes(&changes).await
        };
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    async fn schema_change(&mut self, schema: SchemaRef) -> Result<()> {
        self.usable()?;
        if schema.fields() == self.schema.fields() {
            return Ok(());
        }
        let result = self.evolve_to(schema).await;
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.commit_with(checkpoint, false).await
    }

    async fn finish(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.commit_with(checkpoint, true).await
    }

    async fn abort(&mut self) -> Result<()> {
        // Dropping the sink without finishing it makes the server abort the COPY.
        self.copy = None;
        self.buf.clear();
        self.copy_sent = 0;
        if self.transaction.take().is_some() {
            self.client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| self.sql_error("rolling back", e))?;
        }
        if let Some((layout, schema)) = self.before_schema_change.take() {
            self.set_layout(layout, schema);
        }
        if self.layout.publishes_at_finish() {
            self.drop_unresumable_next().await?;
        }
        self.poisoned = false;
        Ok(())
    }
}
