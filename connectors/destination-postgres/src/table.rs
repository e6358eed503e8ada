//! Preparing a stream's tables when it opens: the domain schema, the control table, the
//! product table (created from the Arrow schema, or evolved), the `__weft_next` table of an
//! overwrite run or of an `append_dedup` first load, and recovery of an interrupted one.
//!
//! Everything runs in one transaction under an advisory lock on the schema, so streams opening
//! side by side do not race to create the same schema or control table.

use tokio_postgres::Client;
use weft_core::arrow_schema::SchemaRef;
use weft_core::{
    change_columns, Checkpoint, ConfiguredStream, ConnectorError, Result, StreamTarget, SyncMode,
    WriteMode,
};

use crate::connect::db_message;
use crate::naming::{check_identifier, quote, TableNames};
use crate::types::{change_for, pg_type_of, Change, PgType};

/// The metadata columns and their types.
pub const SYNCED_AT: &str = "_weft_synced_at";
pub const RUN_ID: &str = "_weft_run_id";

/// The change columns of a CDC changelog (`append`), after the stream's columns.
pub const CHANGELOG_COLUMNS: [(&str, PgType); 4] = [
    (change_columns::OP, PgType::Text),
    (change_columns::POSITION, PgType::Int8),
    (change_columns::ORDINAL, PgType::Int8),
    (change_columns::COMMIT_TS, PgType::Timestamptz),
];

/// Prefix of the helper columns of the CDC staging table (operation, order, unchanged flags).
pub const STAGE_PREFIX: &str = "_weft_stage_";

/// What a writer needs to know about its tables.
#[derive(Debug, Clone)]
pub struct Layout {
    pub names: TableNames,
    pub mode: WriteMode,
    /// The stream's columns, in batch order, with their types in the table: the source's
    /// type where it is kept ([`crate::source_types`]), else the Arrow mapping.
    pub columns: Vec<(String, PgType)>,
    /// The Arrow mapping of each column's type ([`pg_type_of`]): what a table made before weft
    /// kept source types holds, and keeps (see [`evolve`]).
    pub arrow_types: Vec<PgType>,
    /// Columns added mid-stream whose existing rows read a value (`weft_core::values::FILL`:
    /// a constant default in the source), as (column, PostgreSQL text).
    pub fills: Vec<(String, String)>,
    pub metadata: bool,
    pub key: Vec<String>,
    pub cursor: Option<String>,
    /// A CDC stream: `write_changes` applies change batches (`append_dedup`: the current
    /// state by key; `append`: a changelog with the change columns).
    pub cdc: bool,
    /// An `append_dedup` load into a product table that does not exist yet (the first load,
    /// or the first after a reset): rows are copied into the `__weft_next` table like an
    /// overwrite and settled by key once, at `finish` (see [`FIRST_LOAD_ORD`]). Set by
    /// [`prepare`].
    pub first_load: bool,
    /// `stream "<stream>" → table "<schema>"."<table>"`, for messages.
    pub label: String,
    pub domain: String,
    pub product: String,
    pub stream: String,
}

impl Layout {
    /// Checks the stream's columns, keys and cursor against what PostgreSQL can hold.
    pub fn new(
        names: TableNames,
        target: &StreamTarget,
        stream: &ConfiguredStream,
        schema: &SchemaRef,
        metadata: bool,
    ) -> Result<Self> {
        let label = format!("stream `{}` (table {})", target.stream, names.qualified());
        let cdc = stream.sync_mode == SyncMode::Cdc;
        if cdc && stream.write_mode == WriteMode::Overwrite {
            return Err(ConnectorError::Schema(format!(
                "{label}: a CDC stream cannot be written in `overwrite` mode; use `append_dedup` \
                 (the current state by primary key) or `append` (a changelog)"
            )));
        }
        let mut layout = Self {
            names,
            mode: stream.write_mode,
            columns: Vec::new(),
            arrow_types: Vec::new(),
            fills: Vec::new(),
            metadata,
            key: stream.primary_key.clone(),
            cursor: stream.cursor_field.clone(),
            cdc,
            first_load: false,
            label,
            domain: target.domain.to_string(),
            product: target.product.to_string(),
            stream: target.stream.to_string(),
        };
        layout.set_columns(schema)?;
        Ok(layout)
    }

    /// The same stream with the columns of `schema` (a schema change mid-stream).
    /// The column types an existing table holds (see [`evolve`]).
    pub fn set_effective(&mut self, types: Vec<PgType>) {
        for ((_, ty), effective) in self.columns.iter_mut().zip(types) {
            *ty = effective;
        }
    }

    pub fn with_schema(&self, schema: &SchemaRef) -> Result<Self> {
        let mut layout = self.clone();
        layout.set_columns(schema)?;
        Ok(layout)
    }

    fn set_columns(&mut self, schema: &SchemaRef) -> Result<()> {
        let label = &self.label;
        let bad = |why: String| ConnectorError::Schema(format!("{label}: {why}"));
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let name = field.name();
            check_identifier(name)
                .map_err(|why| bad(format!("column {why}; rename it with a mapper")))?;
            if self.metadata && (name == SYNCED_AT || name == RUN_ID) {
                return Err(bad(format!(
                    "column {name:?} is weft's metadata column; rename it with a mapper or set \
                     `metadata_columns: false`"
                )));
            }
            if self.mode == WriteMode::AppendDedup && !self.cdc && name == ARRIVAL_ORD {
                return Err(bad(format!(
                    "column {name:?} is the name weft numbers rows in arrival order with in \
                     `append_dedup`; rename it with a mapper"
                )));
            }
            if self.cdc
                && (CHANGELOG_COLUMNS.iter().any(|(c, _)| c == name)
                    || name.starts_with(STAGE_PREFIX))
            {
                return Err(bad(format!(
                    "column {name:?} is a name weft uses for change metadata in CDC streams; \
                     rename it with a mapper"
                )));
            }
            columns.push((name.clone(), pg_type_of(field).map_err(bad)?));
        }
        let has = |c: &str| columns.iter().any(|(name, _)| name == c);
        if self.mode == WriteMode::AppendDedup {
            if self.key.is_empty() {
                return Err(bad(
                    "write mode `append_dedup` needs a `primary_key`; set one in the product \
                     file"
                        .into(),
                ));
            }
            for key in &self.key {
                if !has(key) {
                    return Err(bad(format!(
                        "primary key column {key:?} is not among the stream's columns"
                    )));
                }
            }
        }
        if let Some(cursor) = &self.cursor {
            if self.mode == WriteMode::AppendDedup && !self.cdc && !has(cursor) {
                return Err(bad(format!(
                    "cursor column {cursor:?} is not among the stream's columns"
                )));
            }
        }
        self.arrow_types = columns.iter().map(|(_, t)| t.clone()).collect();
        self.fills = schema
            .fields()
            .iter()
            .filter_map(|f| {
                let fill = f.metadata().get(weft_core::values::FILL)?;
                Some((f.name().clone(), fill.clone()))
            })
            .collect();
        self.columns = columns;
        Ok(())
    }

    /// Whether this is a CDC stream applied to the current state by key.
    pub fn current_state(&self) -> bool {
        self.cdc && self.mode == WriteMode::AppendDedup
    }

    /// Whether this is a CDC stream appended as a changelog.
    pub fn changelog(&self) -> bool {
        self.cdc && self.mode == WriteMode::Append
    }

    /// The columns of the product table: the stream's, then the metadata columns.
    ///
    /// A CDC changelog adds the change columns (`_weft_op`, `_weft_position`,
    /// `_weft_ordinal`, `_weft_commit_ts`) before the metadata columns; a CDC current-state
    /// table adds `_weft_position`, the position of the last change applied to each row.
    pub fn table_columns(&self) -> Vec<(String, PgType)> {
        let mut columns = self.columns.clone();
        if self.changelog() {
            columns.extend(
                CHANGELOG_COLUMNS
                    .iter()
                    .map(|(name, ty)| (name.to_string(), ty.clone())),
            );
        } else if self.current_state() {
            columns.push((change_columns::POSITION.into(), PgType::Int8));
        }
        if self.metadata {
            columns.push((SYNCED_AT.into(), PgType::Timestamptz));
            columns.push((RUN_ID.into(), PgType::Text));
        }
        columns
    }

    /// The helper columns of the CDC staging table, after the stream's columns: the
    /// operation ([`STAGE_OP`]), the row's index in the batch ([`STAGE_ORD`]), the change's
    /// position ([`STAGE_POSITION`]), then an unchanged flag per non-key column
    /// ([`stage_flag`], by the column's index).
    pub fn stage_columns(&self) -> Vec<(String, PgType)> {
        let mut columns = vec![
            (STAGE_OP.to_string(), PgType::Int2),
            (STAGE_ORD.to_string(), PgType::Int8),
            (STAGE_POSITION.to_string(), PgType::Int8),
        ];
        for (i, (name, _)) in self.columns.iter().enumerate() {
            if !self.key.contains(name) {
                columns.push((stage_flag(i), PgType::Bool));
            }
        }
        columns
    }

    /// The columns of a first load's `__weft_next` table: the product table's, then
    /// [`ARRIVAL_ORD`] (dropped when the table is settled and swapped in).
    pub fn first_load_columns(&self) -> Vec<(String, PgType)> {
        let mut columns = self.table_columns();
        columns.push((ARRIVAL_ORD.into(), PgType::Int8));
        columns
    }

    /// Whether the rows go to the `__weft_next` table and become visible at `finish`
    /// (overwrite, and an `append_dedup` first load).
    pub fn publishes_at_finish(&self) -> bool {
        self.mode == WriteMode::Overwrite || self.first_load
    }

    pub(crate) fn sql_error(&self, what: &str, e: tokio_postgres::Error) -> ConnectorError {
        ConnectorError::Other(format!("{}: {what}: {}", self.label, db_message(&e)))
    }
}

/// The CDC staging table's operation column ([`weft_core::ChangeOp`] as a number).
pub const STAGE_OP: &str = "_weft_stage_op";
/// The CDC staging table's order column: the row's index in its change batch.
pub const STAGE_ORD: &str = "_weft_stage_ord";
/// The CDC staging table's position column (the change's LSN as bigint).
pub const STAGE_POSITION: &str = "_weft_stage_position";

/// The CDC staging table's unchanged flag of the stream's column number `index`.
pub fn stage_flag(index: usize) -> String {
    format!("{STAGE_PREFIX}u{index}")
}

/// The control table's row of one stream.
struct ControlRow {
    domain: String,
    product: String,
    stream: String,
    checkpoint: Option<String>,
    pending: Option<String>,
    write_mode: String,
}

/// Prepares the tables of `layout` and returns the checkpoint the stream resumes from; sets
/// `layout`'s column types to what an existing table holds.
pub async fn prepare(client: &Client, layout: &mut Layout) -> Result<Option<Checkpoint>> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| layout.sql_error("starting a transaction", e))?;
    let result = async {
        let prepared = prepare_in_transaction(client, layout).await?;
        if let Some(effective) = prepared.effective {
            layout.set_effective(effective);
        }
        layout.first_load = prepared.first_load;
        if layout.mode == WriteMode::AppendDedup && !layout.first_load {
            create_staging(client, layout).await?;
        }
        Ok(prepared.checkpoint)
    }
    .await;
    match result {
        Ok(checkpoint) => {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| layout.sql_error("committing the table setup", e))?;
            Ok(checkpoint)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// What [`prepare_in_transaction`] found and made.
struct Prepared {
    /// The checkpoint to resume from.
    checkpoint: Option<Checkpoint>,
    /// The stream's column types in an existing table.
    effective: Option<Vec<PgType>>,
    /// An `append_dedup` first load into the next table (see [`Layout::first_load`]).
    first_load: bool,
}

impl Prepared {
    fn resume(checkpoint: Option<Checkpoint>, first_load: bool) -> Self {
        Self {
            checkpoint,
            effective: None,
            first_load,
        }
    }
}

async fn prepare_in_transaction(client: &Client, layout: &Layout) -> Result<Prepared> {
    let names = &layout.names;
    let err = |what: &'static str| move |e| layout.sql_error(what, e);
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&format!("weft:{}", names.schema)],
        )
        .await
        .map_err(err("locking the schema"))?;
    // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists.
    let schema_exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&names.schema],
        )
        .await
        .map_err(err("looking up the schema"))?
        .get(0);
    if !schema_exists {
        client
            .batch_execute(&format!("CREATE SCHEMA {}", quote(&names.schema)))
            .await
            .map_err(err("creating the schema"))?;
    }
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} (
               table_name text PRIMARY KEY,
               domain text NOT NULL,
               product text NOT NULL,
               stream text NOT NULL,
               write_mode text NOT NULL,
               checkpoint jsonb,
               pending_checkpoint jsonb,
               run_id text,
               committed_at timestamptz NOT NULL DEFAULT now()
             )",
            names.control()
        ))
        .await
        .map_err(err("creating the control table"))?;

    let control = client
        .query_opt(
            &format!(
                "SELECT checkpoint::text, pending_checkpoint::text, write_mode, domain, product, \
                 stream FROM {} WHERE table_name = $1",
                names.control()
            ),
            &[&names.table],
        )
        .await
        .map_err(err("reading the control table"))?
        .map(|row| ControlRow {
            checkpoint: row.get(0),
            pending: row.get(1),
            write_mode: row.get(2),
            domain: row.get(3),
            product: row.get(4),
            stream: row.get(5),
        });
    if let Some(row) = &control {
        // Two streams can meet in one table only when `schema` is shared across domains (or
        // long names were hashed): never let one overwrite the other.
        if (
            row.domain.as_str(),
            row.product.as_str(),
            row.stream.as_str(),
        ) != (
            layout.domain.as_str(),
            layout.product.as_str(),
            layout.stream.as_str(),
        ) {
            return Err(ConnectorError::Other(format!(
                "{}: the table already holds stream `{}` of product `{}` in domain `{}`; give \
                 each domain its own schema (leave `schema` unset) or rename the product",
                layout.label, row.stream, row.product, row.domain
            )));
        }
    }
    let table_exists = exists(client, layout, &names.table).await?;
    let next_exists = exists(client, layout, &names.next).await?;
    let decode = |text: &Option<String>| -> Result<Option<Checkpoint>> {
        text.as_deref()
            .map(|t| {
                serde_json::from_str(t).map(Checkpoint::new).map_err(|e| {
                    ConnectorError::Other(format!(
                        "{}: the checkpoint in {} is not valid JSON ({e}); delete its row to \
                         start over",
                        layout.label,
                        names.control()
                    ))
                })
            })
            .transpose()
    };
    let published = if table_exists {
        decode(&control.as_ref().and_then(|c| c.checkpoint.clone()))?
    } else {
        // The product table is gone (dropped by someone): start from scratch.
        None
    };
    let columns = layout.table_columns();

    // An `append_dedup` stream whose product table does not exist loads at COPY speed into
    // the next table; CDC current states apply changes by key from the first batch on.
    let first_load = layout.mode == WriteMode::AppendDedup && !layout.cdc && !table_exists;
    if layout.mode == WriteMode::Overwrite || first_load {
        let next_columns = if first_load {
            layout.first_load_columns()
        } else {
            columns
        };
        let pending = control
            .as_ref()
            .filter(|c| c.write_mode == layout.mode.to_string())
            .and_then(|c| c.pending.clone());
        if let (Some(pending), true) = (pending, next_exists) {
            // Resume the interrupted generation if its columns are still the stream's.
            let existing = table_columns(client, layout, &names.next).await?;
            let sql = |c: &[(String, PgType)]| -> Vec<(String, String)> {
                c.iter().map(|(n, t)| (n.clone(), t.sql())).collect()
            };
            if sql(&existing) == sql(&next_columns) {
                tracing::info!(table = %names.qualified_next(), "resuming an interrupted {}", what(first_load));
                return Ok(Prepared::resume(decode(&Some(pending))?, first_load));
            }
            tracing::info!(table = %names.qualified_next(), "the stream's columns changed: restarting the interrupted {}", what(first_load));
        }
        drop_leftover_next(client, layout).await?;
        if first_load {
            create_first_load_table(client, layout, &next_columns).await?;
        } else {
            create_table(client, layout, &names.next, &next_columns).await?;
        }
        return Ok(Prepared::resume(published, first_load));
    }
    if next_exists {
        // A leftover of an interrupted overwrite run, before the mode changed.
        drop_leftover_next(client, layout).await?;
    }
    let mut effective = None;
    if table_exists {
        effective = Some(evolve(client, layout, &names.table, &columns).await?);
        if layout.mode == WriteMode::AppendDedup {
            ensure_unique_key(client, layout).await?;
        }
    } else {
        create_table(client, layout, &names.table, &columns).await?;
    }
    Ok(Prepared {
        checkpoint: published,
        effective,
        first_load: false,
    })
}

fn what(first_load: bool) -> &'static str {
    if first_load {
        "first append_dedup load"
    } else {
        "overwrite"
    }
}

async fn exists(client: &Client, layout: &Layout, table: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = \
             c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))",
            &[&layout.names.schema, &table],
        )
        .await
        .map_err(|e| layout.sql_error("looking up a table", e))?
        .get(0))
}

/// The columns of an existing table, as `format_type` prints their types.
async fn table_columns(
    client: &Client,
    layout: &Layout,
    table: &str,
) -> Result<Vec<(String, PgType)>> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = \
             c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT \
             a.attisdropped ORDER BY a.attnum",
            &[&layout.names.schema, &table],
        )
        .await
        .map_err(|e| layout.sql_error("reading the table's columns", e))?;
    Ok(rows
        .iter()
        .map(|row| (row.get::<_, String>(0), PgType::parse(row.get(1))))
        .collect())
}

async fn create_table(
    client: &Client,
    layout: &Layout,
    table: &str,
    columns: &[(String, PgType)],
) -> Result<()> {
    let dedup = layout.mode == WriteMode::AppendDedup;
    let defs = column_defs(layout, columns, dedup);
    let qualified = format!("{}.{}", quote(&layout.names.schema), quote(table));
    let mut sql = format!("CREATE TABLE {qualified} ({})", defs.join(", "));
    if dedup {
        sql.push_str(&format!("; {}", unique_index_sql(layout, &qualified)));
    }
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| layout.sql_error("creating the table", e))
}

/// The number of a first load's rows in arrival order (see [`create_first_load_table`]).
pub const ARRIVAL_ORD: &str = "_weft_ord";

/// A first load's next table: the product table's columns (keys NOT NULL) and
/// [`ARRIVAL_ORD`], numbered by an identity column as COPY inserts (across commits and
/// resumed runs alike), without the key's unique index: rows are settled by key and the
/// index built once, when the load finishes (see the writer's `settle_generation`).
async fn create_first_load_table(
    client: &Client,
    layout: &Layout,
    columns: &[(String, PgType)],
) -> Result<()> {
    client
        .batch_execute(&format!(
            "CREATE TABLE {} ({})",
            layout.names.qualified_next(),
            column_defs(layout, columns, true).join(", ")
        ))
        .await
        .map_err(|e| layout.sql_error("creating the first load's table", e))
}

/// `"name" type` of each column: the key's columns `NOT NULL` where `keys_not_null` (a table
/// `append_dedup` merges into by key), [`ARRIVAL_ORD`] numbered by an identity column as rows
/// arrive.
fn column_defs(layout: &Layout, columns: &[(String, PgType)], keys_not_null: bool) -> Vec<String> {
    columns
        .iter()
        .map(|(name, ty)| {
            if name == ARRIVAL_ORD {
                return format!("{} bigint GENERATED ALWAYS AS IDENTITY", quote(name));
            }
            let not_null = if keys_not_null && layout.key.contains(name) {
                " NOT NULL"
            } else {
                ""
            };
            format!("{} {}{not_null}", quote(name), ty.sql())
        })
        .collect()
}

pub(crate) fn unique_index_sql(layout: &Layout, qualified_table: &str) -> String {
    // Index names share the schema's namespace: a random one never collides (and survives
    // the rename of an overwrite swap).
    let index = format!("weft_key_{}", uuid::Uuid::new_v4().simple());
    format!(
        "CREATE UNIQUE INDEX {} ON {qualified_table} ({})",
        quote(&index),
        quoted_list(&layout.key)
    )
}

/// `"a", "b"`.
pub fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| quote(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds missing columns and widens the ones the stream now sends wider; refuses the rest.
/// Returns the stream's column types as the table now holds them: a column of a table made
/// before weft kept source types keeps its Arrow-mapped type (`text` for a source's `uuid`).
pub(crate) async fn evolve(
    client: &Client,
    layout: &Layout,
    table: &str,
    columns: &[(String, PgType)],
) -> Result<Vec<PgType>> {
    let existing = table_columns(client, layout, table).await?;
    let qualified = format!("{}.{}", quote(&layout.names.schema), quote(table));
    let mut alters = Vec::new();
    let mut defaults_to_drop = Vec::new();
    let mut effective = Vec::with_capacity(layout.columns.len());
    for (i, (name, wanted)) in columns.iter().enumerate() {
        let stream_column = i < layout.columns.len();
        let mut chosen = wanted.clone();
        let fill = layout
            .fills
            .iter()
            .find(|(n, _)| n == name)
            .filter(|_| layout.mode == WriteMode::AppendDedup);
        match existing.iter().find(|(n, _)| n == name) {
            // A current state's (append_dedup) existing rows take the value they read in the
            // source, which PostgreSQL never logged: a constant default stored once (no
            // rewrite), dropped right after so later rows get exactly what the stream sends.
            // An append (changelog) keeps NULL: its rows are history from before the column.
            None => match fill {
                Some((_, value)) => {
                    alters.push(format!(
                        "ADD COLUMN {} {ty} DEFAULT {}::{ty}",
                        quote(name),
                        crate::changes::literal(value),
                        ty = wanted.sql()
                    ));
                    defaults_to_drop.push(format!("ALTER COLUMN {} DROP DEFAULT", quote(name)));
                }
                None => alters.push(format!("ADD COLUMN {} {}", quote(name), wanted.sql())),
            },
            Some((_, have)) => match change_for(have, wanted) {
                Change::Keep => {}
                Change::Widen(to) => {
                    alters.push(format!("ALTER COLUMN {} TYPE {}", quote(name), to.sql()));
                    chosen = to;
                }
                Change::Refuse
                    if stream_column
                        && change_for(have, &layout.arrow_types[i]) == Change::Keep =>
                {
                    chosen = layout.arrow_types[i].clone();
                }
                Change::Refuse => {
                    return Err(ConnectorError::Schema(format!(
                        "table {qualified}: column {name} is {} but the stream now sends {}; weft \
                         only adds columns and widens types (smallint → integer → bigint, real \
                         → double precision, more numeric digits, varchar → text). Cast the \
                         column with a mapper, alter the table yourself (ALTER TABLE \
                         {qualified} ALTER COLUMN {name} TYPE {ty} USING {name}::{ty}, if every \
                         value converts), or drop it so the next run recreates it",
                        have.sql(),
                        wanted.sql(),
                        name = quote(name),
                        ty = wanted.sql(),
                    )))
                }
            },
        }
        if stream_column {
            effective.push(chosen);
        }
    }
    // A column the table has but the stream no longer sends was renamed or dropped in the
    // source: appending without it would leave it NULL (append) or stale (append_dedup) for
    // every later row, so the stream stops before anything is written.
    let sent = |name: &str| columns.iter().any(|(n, _)| n == name);
    let missing: Vec<&str> = existing
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| {
            !sent(n)
                && *n != SYNCED_AT
                && *n != RUN_ID
                && !CHANGELOG_COLUMNS.iter().any(|(c, _)| c == n)
        })
        .collect();
    if let Some(gone) = missing.first() {
        let new: Vec<&str> = columns
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !existing.iter().any(|(e, _)| e == n))
            .collect();
        let fix = match new.as_slice() {
            [renamed] => format!(
                "the stream now sends column {} instead: if it was renamed, run ALTER TABLE \
                 {qualified} RENAME COLUMN {} TO {}; ",
                quote(renamed),
                quote(gone),
                quote(renamed)
            ),
            _ => String::new(),
        };
        return Err(ConnectorError::Schema(format!(
            "{}: the stream no longer sends column {} of the table (renamed or dropped in the \
             source?); weft never drops or renames columns. {fix}otherwise drop the column \
             (ALTER TABLE {qualified} DROP COLUMN {}), or drop the table so the next run \
             recreates it",
            layout.label,
            quote(gone),
            quote(gone)
        )));
    }
    if !alters.is_empty() {
        tracing::info!(table = %qualified, changes = %alters.join(", "), "evolving the table");
        let mut sql = format!("ALTER TABLE {qualified} {}", alters.join(", "));
        if !defaults_to_drop.is_empty() {
            sql.push_str(&format!(
                "; ALTER TABLE {qualified} {}",
                defaults_to_drop.join(", ")
            ));
        }
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| layout.sql_error("evolving the table", e))?;
    }
    Ok(effective)
}

/// `append_dedup` merges with `ON CONFLICT (key)`: the table needs a unique index on it.
async fn ensure_unique_key(client: &Client, layout: &Layout) -> Result<()> {
    let mut key = layout.key.clone();
    key.sort();
    let found: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = \
             $2 AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL AND (SELECT \
             array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a WHERE \
             a.attrelid = c.oid AND a.attnum = ANY (i.indkey)) = $3::text[])",
            &[&layout.names.schema, &layout.names.table, &key],
        )
        .await
        .map_err(|e| layout.sql_error("looking up the key's unique index", e))?
        .get(0);
    if !found {
        client
            .batch_execute(&unique_index_sql(layout, &layout.names.qualified()))
            .await
            .map_err(|e| {
                layout.sql_error(
                    "creating a unique index on the primary key (does the table hold duplicate \
                     keys from an earlier append? remove them or drop the table)",
                    e,
                )
            })?;
    }
    Ok(())
}

/// The session's staging table of `append_dedup`: each commit copies into it, merges, and
/// the commit empties it. `_weft_ord` numbers rows in arrival order, so the later of two rows
/// with the same key and cursor wins.
///
/// For a CDC stream the staging table holds one change batch at a time (see the writer's
/// `apply`): the stream's columns, then the operation, the row's index in the batch, its
/// position, and one unchanged flag per non-key column (see [`Layout::stage_columns`]).
pub(crate) async fn create_staging(client: &Client, layout: &Layout) -> Result<()> {
    let mut columns = layout.columns.clone();
    if layout.cdc {
        columns.extend(layout.stage_columns());
    } else {
        columns.push((ARRIVAL_ORD.into(), PgType::Int8));
    }
    let defs = column_defs(layout, &columns, false);
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS pg_temp.{stage}; CREATE TEMP TABLE {stage} ({}) ON COMMIT \
             DELETE ROWS",
            defs.join(", "),
            stage = quote(STAGING_TABLE)
        ))
        .await
        .map_err(|e| layout.sql_error("creating the staging table", e))
}

/// The temporary table `append_dedup` copies into.
pub const STAGING_TABLE: &str = "_weft_stage";

/// Drops the next table an interrupted run left and forgets the checkpoint pending in it.
async fn drop_leftover_next(client: &Client, layout: &Layout) -> Result<()> {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {}",
            layout.names.qualified_next()
        ))
        .await
        .map_err(|e| layout.sql_error("dropping the leftover next table", e))?;
    client
        .execute(
            &format!(
                "UPDATE {} SET pending_checkpoint = NULL WHERE table_name = $1",
                layout.names.control()
            ),
            &[&layout.names.table],
        )
        .await
        .map_err(|e| layout.sql_error("updating the control table", e))?;
    Ok(())
}
