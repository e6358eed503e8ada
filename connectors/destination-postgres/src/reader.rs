//! The PostgreSQL product store read back as a [`Source`]: the streams of one product, for
//! products that read another product (`source: { product: finance/revenue }`).
//!
//! Streams are found in the domain schema's control table (`_weft_checkpoints`, which names
//! each table's domain, product and stream); weft's own columns (`_weft_*`) are left out.
//!
//! Reads are keyset scans that checkpoint only at their end: a reader killed mid-read starts
//! over from the last complete position (resuming after the last row yielded lost rows in the
//! crash test, cause not found yet; the saved position still names the last row read):
//! - **full refresh** reads the table in key order (the primary key of an `append_dedup`
//!   table, else `ctid`, stable in tables weft only appends to). The checkpoint names the
//!   table's OID: an overwrite swapping the table in while a full read was interrupted is an
//!   error (the consumer's staged rows came from the old table), like the lake's version check.
//! - **incremental** reads rows by `_weft_synced_at` (the time the upstream run that wrote or
//!   last updated each row started), then key. One upstream run commits many times with one
//!   `_weft_synced_at`, so the next read starts *at* the newest `_weft_synced_at` read, not
//!   after it: the rows of the upstream's latest run are read again, which is why the consumer
//!   must be `append_dedup` (settled by key) to read incrementally. It needs the upstream's
//!   `metadata_columns` (the default).
//!
//! Values come over the binary protocol as native integers, floats, booleans and bytes; dates
//! and timestamps as integer days and microseconds computed by the server (±infinity as
//! [`weft_core::values`] says); `numeric(p,s)` as text parsed into Decimal128; `uuid` as its
//! 16 bytes; anything else as its text, with the column's PostgreSQL type in the field's
//! metadata so a PostgreSQL consumer recreates it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};
use weft_core::arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeBinaryBuilder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use weft_core::arrow_array::{ArrayRef, RecordBatch};
use weft_core::arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use weft_core::values::{DATE_INFINITY, PG_TYPE, TIMESTAMP_INFINITY};
use weft_core::{
    Catalog, Checkpoint, ConfiguredStream, ConnectorError, DomainName, MessageStream, ProductName,
    Result, Source, SourceMessage, StreamDescriptor, StreamName, SyncMode, WriteMode,
};

use crate::config::PgConfig;
use crate::connect::{connect, db_message};
use crate::naming::{quote, CONTROL_TABLE};
use crate::table::SYNCED_AT;

/// Rows per batch read back.
const BATCH_ROWS: usize = 8 * 1024;

/// The streams of one product held in one domain schema, as a source.
#[derive(Debug, Clone)]
pub struct PgProductReader {
    config: PgConfig,
    schema: String,
    domain: DomainName,
    product: ProductName,
}

/// How a column's values travel and which Arrow type they become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    Bytea,
    Uuid,
    Date,
    /// Microseconds since the epoch; with a zone (`timestamptz`) or without.
    Timestamp {
        zoned: bool,
    },
    Time,
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// Anything else: its text.
    Text,
}

/// A column of a product table.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    /// `format_type`: `numeric(12,2)`, `timestamp with time zone`, …
    sql_type: String,
    not_null: bool,
    kind: Kind,
}

impl Column {
    fn data_type(&self) -> DataType {
        match self.kind {
            Kind::Int2 => DataType::Int16,
            Kind::Int4 => DataType::Int32,
            Kind::Int8 => DataType::Int64,
            Kind::Float4 => DataType::Float32,
            Kind::Float8 => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Bytea => DataType::Binary,
            Kind::Uuid => DataType::FixedSizeBinary(16),
            Kind::Date => DataType::Date32,
            Kind::Timestamp { zoned } => {
                DataType::Timestamp(TimeUnit::Microsecond, zoned.then(|| Arc::from("UTC")))
            }
            Kind::Time => DataType::Time64(TimeUnit::Microsecond),
            Kind::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
            Kind::Text => DataType::Utf8,
        }
    }

    fn field(&self) -> Field {
        let mut field = Field::new(&self.name, self.data_type(), !self.not_null);
        if self.kind == Kind::Text {
            // Text of another type (jsonb, inet, varchar(n), numeric, arrays …): a PostgreSQL
            // consumer recreates the type from it.
            field.set_metadata(HashMap::from([(
                PG_TYPE.to_string(),
                self.sql_type.clone(),
            )]));
        }
        field
    }

    /// The select-list expression delivering the column's values as `kind` travels.
    fn select(&self) -> String {
        let c = quote(&self.name);
        match self.kind {
            Kind::Uuid => format!("uuid_send({c})"),
            Kind::Date => format!(
                "CASE WHEN isfinite({c}) THEN ({c} - DATE '1970-01-01') WHEN {c} > DATE '1970-01-01' THEN {DATE_INFINITY} ELSE -{DATE_INFINITY} END"
            ),
            // Whole seconds and the microseconds of the second separately: exact on every
            // server version (extract gives a float before PostgreSQL 14).
            Kind::Timestamp { .. } => format!(
                "CASE WHEN isfinite({c}) THEN extract(epoch FROM date_trunc('second', {c}))::int8 * 1000000 + (extract(microseconds FROM {c})::int8 % 1000000) WHEN {c} > 'epoch' THEN {TIMESTAMP_INFINITY} ELSE -{TIMESTAMP_INFINITY} END"
            ),
            Kind::Time => format!("(extract(epoch FROM {c}) * 1000000)::int8"),
            Kind::Text | Kind::Decimal { .. } => format!("{c}::text"),
            _ => c,
        }
    }
}

/// How PostgreSQL's type (`typname`, `format_type`) travels.
fn kind_of(typname: &str, sql_type: &str) -> Kind {
    match typname {
        "int2" => Kind::Int2,
        "int4" => Kind::Int4,
        "int8" => Kind::Int8,
        "float4" => Kind::Float4,
        "float8" => Kind::Float8,
        "bool" => Kind::Bool,
        "bytea" => Kind::Bytea,
        "uuid" => Kind::Uuid,
        "date" => Kind::Date,
        "timestamp" => Kind::Timestamp { zoned: false },
        "timestamptz" => Kind::Timestamp { zoned: true },
        "time" => Kind::Time,
        "numeric" => decimal_of(sql_type).unwrap_or(Kind::Text),
        _ => Kind::Text,
    }
}

/// `numeric(p,s)` within Decimal128 (p ≤ 38, 0 ≤ s ≤ p).
fn decimal_of(sql_type: &str) -> Option<Kind> {
    let inner = sql_type.strip_prefix("numeric(")?.strip_suffix(')')?;
    let (p, s) = inner.split_once(',')?;
    let (precision, scale): (u8, i8) = (p.trim().parse().ok()?, s.trim().parse().ok()?);
    (precision <= 38 && scale >= 0 && scale as u8 <= precision)
        .then_some(Kind::Decimal { precision, scale })
}

/// `numeric` text (`-12.5`) as an integer of `scale` decimals; `None` if it does not fit.
fn parse_decimal(text: &str, scale: i8) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = scale as usize;
    if fraction.len() > scale
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut value: i128 = 0;
    for b in whole
        .bytes()
        .chain(fraction.bytes())
        .chain(std::iter::repeat_n(b'0', scale - fraction.len()))
    {
        value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    Some(if negative { -value } else { value })
}

/// A stream's table as found in the store.
#[derive(Debug, Clone)]
struct Table {
    stream: StreamName,
    /// `"schema"."table"`.
    qualified: String,
    oid: u32,
    write_mode: WriteMode,
    columns: Vec<Column>,
    /// The columns of its primary key (the unique index of an `append_dedup` table), if any.
    key: Vec<Column>,
    synced_at: bool,
}

/// A read's position. Names the upstream stream, so it is also the record of what a
/// consumer's run read (its lineage).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ReadState {
    /// `domain/product/stream` read.
    upstream: String,
    /// The table read (an overwrite's swap gives the stream a new one).
    table_oid: u32,
    /// Incremental: rows with `_weft_synced_at` at or after this (its text) are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    /// The newest `_weft_synced_at` read so far: the next read's `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newest: Option<String>,
    /// The order values (text) of the last row yielded: the read resumes after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<Vec<String>>,
    /// Ordered by `_weft_synced_at` (an incremental read).
    #[serde(default)]
    incremental: bool,
    /// The read reached the end of the table.
    complete: bool,
}

impl PgProductReader {
    pub fn new(config: PgConfig, schema: String, domain: DomainName, product: ProductName) -> Self {
        Self {
            config,
            schema,
            domain,
            product,
        }
    }

    fn label(&self, stream: &str) -> String {
        format!("{}/{}/{stream}", self.domain, self.product)
    }

    fn sql_error(&self, what: &str) -> impl Fn(tokio_postgres::Error) -> ConnectorError + '_ {
        let what = what.to_string();
        move |e| {
            ConnectorError::Other(format!(
                "reading product `{}/{}` from {}: {what}: {}",
                self.domain,
                self.product,
                self.config.location(),
                db_message(&e)
            ))
        }
    }

    /// The product's tables, by stream name.
    async fn tables(&self, client: &Client) -> Result<Vec<Table>> {
        let control = format!("{}.{}", quote(&self.schema), quote(CONTROL_TABLE));
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&control])
            .await
            .map_err(self.sql_error("looking for the control table"))?
            .get(0);
        if !exists {
            return Ok(Vec::new());
        }
        let rows = client
            .query(
                &format!(
                    "SELECT table_name, stream, write_mode FROM {control} \
                     WHERE domain = $1 AND product = $2 ORDER BY stream"
                ),
                &[&self.domain.as_str(), &self.product.as_str()],
            )
            .await
            .map_err(self.sql_error("listing the product's tables"))?;
        let mut tables = Vec::new();
        for row in rows {
            let (table, stream, mode): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            let Ok(stream) = StreamName::new(stream.as_str()) else {
                continue;
            };
            let qualified = format!("{}.{}", quote(&self.schema), quote(&table));
            if let Some(t) = self.table(client, stream, qualified, &mode).await? {
                tables.push(t);
            }
        }
        Ok(tables)
    }

    /// One table's columns and key; `None` before its first publish (an overwrite that has
    /// not swapped its first table in yet).
    async fn table(
        &self,
        client: &Client,
        stream: StreamName,
        qualified: String,
        mode: &str,
    ) -> Result<Option<Table>> {
        let oid: Option<u32> = client
            .query_one("SELECT to_regclass($1)::oid", &[&qualified])
            .await
            .map_err(self.sql_error("looking up a product table"))?
            .get(0);
        let Some(oid) = oid else { return Ok(None) };
        // Each column's place in the key (1-based, 0 if none). `indkey` is an `int2vector`,
        // whose subscripts start at 0: read through its text so the first key column is 1,
        // not 0 (taken for "not a key", which ordered keyed tables by ctid and a composite
        // key by its later columns only, so a resumed read skipped rows).
        let rows = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text, \
                 a.attnotnull, \
                 coalesce(array_position(( \
                   SELECT string_to_array(i.indkey::text, ' ')::int2[] FROM pg_index i \
                   WHERE i.indrelid = a.attrelid AND i.indisunique AND i.indpred IS NULL \
                   ORDER BY i.indisprimary DESC, i.indexrelid LIMIT 1), \
                   a.attnum), 0) \
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&oid],
            )
            .await
            .map_err(self.sql_error("reading a product table's columns"))?;
        let mut columns = Vec::new();
        let mut key: Vec<(i32, Column)> = Vec::new();
        let mut synced_at = false;
        for row in rows {
            let name: String = row.get(0);
            let sql_type: String = row.get(1);
            let typname: String = row.get(2);
            let column = Column {
                kind: kind_of(&typname, &sql_type),
                name,
                sql_type,
                not_null: row.get(3),
            };
            let key_position: i32 = row.get(4);
            if column.name == SYNCED_AT {
                synced_at = true;
            }
            if key_position > 0 {
                key.push((key_position, column.clone()));
            }
            if !column.name.starts_with("_weft_") {
                columns.push(column);
            }
        }
        key.sort_by_key(|(p, _)| *p);
        let write_mode = match mode {
            "append" => WriteMode::Append,
            "append_dedup" => WriteMode::AppendDedup,
            _ => WriteMode::Overwrite,
        };
        Ok(Some(Table {
            stream,
            qualified,
            oid,
            write_mode,
            columns,
            key: key.into_iter().map(|(_, c)| c).collect(),
            synced_at,
        }))
    }
}

#[async_trait]
impl Source for PgProductReader {
    async fn check(&self) -> Result<()> {
        let client = connect(&self.config).await?;
        if self.tables(&client).await?.is_empty() {
            return Err(ConnectorError::Other(format!(
                "product `{}/{}` has nothing in schema `{}` of {} yet; sync it first",
                self.domain,
                self.product,
                self.schema,
                self.config.location()
            )));
        }
        Ok(())
    }

    async fn discover(&self) -> Result<Catalog> {
        let client = connect(&self.config).await?;
        let streams = self
            .tables(&client)
            .await?
            .into_iter()
            .map(|t| {
                let mut modes = vec![SyncMode::FullRefresh];
                if t.synced_at && t.write_mode != WriteMode::Overwrite {
                    modes.push(SyncMode::Incremental);
                }
                StreamDescriptor {
                    schema: Arc::new(Schema::new(
                        t.columns.iter().map(Column::field).collect::<Vec<_>>(),
                    )),
                    primary_key: Vec::new(),
                    cursor_candidates: Vec::new(),
                    source_defined_cursor: None,
                    supported_sync_modes: modes,
                    row_estimate: None,
                    name: t.stream,
                }
            })
            .collect();
        Ok(Catalog { streams })
    }

    async fn read(
        &self,
        stream: &ConfiguredStream,
        state: Option<&Checkpoint>,
    ) -> Result<MessageStream> {
        let label = self.label(stream.name().as_str());
        let state: Option<ReadState> = state.map(|c| c.decode()).transpose().map_err(|e| {
            ConnectorError::Other(format!(
                "{label}: the saved state is not a product-read checkpoint ({e}); reset the stream (`weft sync reset`) to read the product again"
            ))
        })?;
        let client = connect(&self.config).await?;
        let table = self
            .tables(&client)
            .await?
            .into_iter()
            .find(|t| &t.stream == stream.name())
            .ok_or_else(|| {
                ConnectorError::Other(format!("{label} has no published data yet; sync it first"))
            })?;
        let plan = plan_read(&label, &table, stream, state)?;
        let schema = stream.descriptor.schema.clone();
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                table
                    .columns
                    .iter()
                    .find(|c| c.name == *f.name())
                    .cloned()
                    .ok_or_else(|| {
                        ConnectorError::Schema(format!(
                            "{label}: column `{}` is no longer in {}; run `weft product diff` against the upstream",
                            f.name(),
                            table.qualified
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<SourceMessage>>(2);
        let reader = self.clone();
        tokio::spawn(async move {
            if let Err(e) = reader
                .scan(&client, &table, &columns, plan, schema, &tx)
                .await
            {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }
}

/// Where a read starts.
fn plan_read(
    label: &str,
    table: &Table,
    stream: &ConfiguredStream,
    state: Option<ReadState>,
) -> Result<ReadState> {
    let fresh = ReadState {
        upstream: label.to_string(),
        table_oid: table.oid,
        ..Default::default()
    };
    match stream.sync_mode {
        SyncMode::Cdc => Err(ConnectorError::Unsupported(format!(
            "{label}: a product is read in full_refresh or incremental mode, not cdc"
        ))),
        SyncMode::FullRefresh => match state {
            Some(s) if !s.complete && !s.incremental && s.after.is_some() => {
                if s.table_oid != table.oid {
                    return Err(ConnectorError::Other(format!(
                        "{label} was replaced by an overwrite while this stream's interrupted full read of the previous table was staged; reset the stream (`weft sync reset`) to read the new table from the start"
                    )));
                }
                Ok(ReadState { from: None, ..s })
            }
            _ => Ok(fresh),
        },
        SyncMode::Incremental => {
            if !table.synced_at {
                return Err(ConnectorError::Unsupported(format!(
                    "{label} is kept without `{SYNCED_AT}` (its store has `metadata_columns: false`), which an incremental read follows; read it in full_refresh mode or turn the upstream's metadata columns on"
                )));
            }
            if stream.write_mode != WriteMode::AppendDedup {
                return Err(ConnectorError::Unsupported(format!(
                    "{label} is read incrementally from PostgreSQL by `{SYNCED_AT}`, which reads the rows of the upstream's latest run again; write this stream as `append_dedup` to settle them by key (or read it in full_refresh mode)"
                )));
            }
            let fresh = ReadState {
                incremental: true,
                ..fresh
            };
            Ok(match state {
                Some(s) if s.complete && s.incremental => ReadState {
                    from: s.newest.clone().or(s.from),
                    newest: s.newest,
                    ..fresh
                },
                Some(s) if s.incremental => ReadState {
                    table_oid: table.oid,
                    upstream: label.to_string(),
                    ..s
                },
                _ => fresh,
            })
        }
    }
}

impl PgProductReader {
    /// Streams the rows after `state`'s position, a batch and a checkpoint at a time.
    async fn scan(
        &self,
        client: &Client,
        table: &Table,
        columns: &[Column],
        mut state: ReadState,
        schema: SchemaRef,
        tx: &tokio::sync::mpsc::Sender<Result<SourceMessage>>,
    ) -> Result<()> {
        // The order: `_weft_synced_at` first when reading incrementally, then the key (or
        // ctid); each as (expression, type for parameters). Qualified by the table's alias:
        // a bare name in ORDER BY means an output column first, and the select list's text
        // form of a column (`numeric` keys travel as text) would order by text.
        let mut order: Vec<(String, String)> = Vec::new();
        if state.incremental {
            order.push((format!("t.{}", quote(SYNCED_AT)), "timestamptz".into()));
        }
        if table.key.is_empty() {
            order.push(("t.ctid".into(), "tid".into()));
        } else {
            for k in &table.key {
                order.push((format!("t.{}", quote(&k.name)), k.sql_type.clone()));
            }
        }
        let mut params: Vec<String> = Vec::new();
        let mut conditions: Vec<String> = Vec::new();
        if let Some(from) = &state.from {
            params.push(from.clone());
            conditions.push(format!("t.{} >= $1::text::timestamptz", quote(SYNCED_AT)));
        }
        if let Some(after) = &state.after {
            if after.len() != order.len() {
                return Err(ConnectorError::Other(format!(
                    "{}: the saved position has {} value(s) but the table is ordered by {}; reset the stream (`weft sync reset`)",
                    state.upstream,
                    after.len(),
                    order.len()
                )));
            }
            let mut lhs = Vec::new();
            let mut rhs = Vec::new();
            for ((expr, ty), value) in order.iter().zip(after) {
                params.push(value.clone());
                lhs.push(expr.clone());
                rhs.push(format!("${}::text::{ty}", params.len()));
            }
            conditions.push(format!("ROW({}) > ROW({})", lhs.join(", "), rhs.join(", ")));
        }
        let mut select: Vec<String> = columns.iter().map(Column::select).collect();
        select.extend(
            order
                .iter()
                .enumerate()
                .map(|(i, (e, _))| format!("{e}::text AS \"_weft_order_{i}\"")),
        );
        let sql = format!(
            "SELECT {} FROM {} AS t{} ORDER BY {}",
            select.join(", "),
            table.qualified,
            if conditions.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conditions.join(" AND "))
            },
            order
                .iter()
                .map(|(e, _)| e.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = client
            .query_raw(sql.as_str(), params)
            .await
            .map_err(self.sql_error("reading a product table"))?;
        futures::pin_mut!(rows);
        let timed = state.incremental;
        let mut batch: Vec<Row> = Vec::with_capacity(BATCH_ROWS);
        loop {
            let next = rows.next().await;
            let end = next.is_none();
            if let Some(row) = next {
                batch.push(row.map_err(self.sql_error("reading a product table"))?);
            }
            if batch.len() == BATCH_ROWS || (end && !batch.is_empty()) {
                let records = to_batch(&state.upstream, &batch, columns, &schema)?;
                let last = batch.last().expect("not empty");
                let after: Vec<String> = (0..order.len())
                    .map(|i| last.get::<_, String>(columns.len() + i))
                    .collect();
                if timed {
                    state.newest = Some(after[0].clone());
                }
                state.after = Some(after);
                batch.clear();
                // The checkpoint follows the batch it covers: a consumer that commits it has
                // the batch's rows, and a resume starts after the batch's last row.
                if tx.send(Ok(SourceMessage::Records(records))).await.is_err()
                    || tx
                        .send(Ok(SourceMessage::Checkpoint(Checkpoint::encode(&state))))
                        .await
                        .is_err()
                {
                    return Ok(());
                }
            }
            if end {
                break;
            }
        }
        state.complete = true;
        state.after = None;
        let _ = tx
            .send(Ok(SourceMessage::Checkpoint(Checkpoint::encode(&state))))
            .await;
        Ok(())
    }
}

/// Rows into a record batch of `schema` (whose fields are `columns`, in order).
fn to_batch(
    label: &str,
    rows: &[Row],
    columns: &[Column],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        let bad = |e: &dyn std::fmt::Display| {
            ConnectorError::Other(format!("{label}: column `{}`: {e}", column.name))
        };
        macro_rules! native {
            ($builder:ty, $t:ty) => {{
                let mut b = <$builder>::with_capacity(rows.len());
                for row in rows {
                    b.append_option(row.try_get::<_, Option<$t>>(i).map_err(|e| bad(&e))?);
                }
                Arc::new(b.finish()) as ArrayRef
            }};
        }
        let array: ArrayRef = match column.kind {
            Kind::Int2 => native!(Int16Builder, i16),
            Kind::Int4 => native!(Int32Builder, i32),
            Kind::Int8 => native!(Int64Builder, i64),
            Kind::Float4 => native!(Float32Builder, f32),
            Kind::Float8 => native!(Float64Builder, f64),
            Kind::Bool => native!(BooleanBuilder, bool),
            Kind::Date => native!(Date32Builder, i32),
            Kind::Time => native!(Time64MicrosecondBuilder, i64),
            Kind::Timestamp { zoned } => {
                let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len());
                for row in rows {
                    b.append_option(row.try_get::<_, Option<i64>>(i).map_err(|e| bad(&e))?);
                }
                Arc::new(b.finish().with_timezone_opt(zoned.then_some("UTC"))) as ArrayRef
            }
            Kind::Bytea => {
                let mut b = BinaryBuilder::with_capacity(rows.len(), 0);
                for row in rows {
                    b.append_option(row.try_get::<_, Option<&[u8]>>(i).map_err(|e| bad(&e))?);
                }
                Arc::new(b.finish())
            }
            Kind::Uuid => {
                let mut b = FixedSizeBinaryBuilder::with_capacity(rows.len(), 16);
                for row in rows {
                    match row.try_get::<_, Option<&[u8]>>(i).map_err(|e| bad(&e))? {
                        Some(v) => b.append_value(v).map_err(|e| bad(&e))?,
                        None => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Decimal { precision, scale } => {
                let mut b = Decimal128Builder::with_capacity(rows.len());
                for row in rows {
                    match row.try_get::<_, Option<&str>>(i).map_err(|e| bad(&e))? {
                        Some(text) => {
                            b.append_value(parse_decimal(text, scale).ok_or_else(|| {
                                bad(&format!(
                                    "`{text}` does not fit numeric({precision},{scale})"
                                ))
                            })?)
                        }
                        None => b.append_null(),
                    }
                }
                Arc::new(
                    b.finish()
                        .with_precision_and_scale(precision, scale)
                        .map_err(|e| bad(&e))?,
                )
            }
            Kind::Text => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
                for row in rows {
                    b.append_option(row.try_get::<_, Option<&str>>(i).map_err(|e| bad(&e))?);
                }
                Arc::new(b.finish())
            }
        };
        arrays.push(array);
    }
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| {
        ConnectorError::Schema(format!(
            "{label}: the rows read do not match the stream's schema ({e})"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_to_their_scale_and_refuse_what_does_not_fit() {
        assert_eq!(parse_decimal("12.5", 2), Some(1250));
        assert_eq!(parse_decimal("-0.07", 2), Some(-7));
        assert_eq!(parse_decimal("3", 0), Some(3));
        assert_eq!(parse_decimal("1.234", 2), None);
        assert_eq!(parse_decimal("NaN", 2), None);
    }

    #[test]
    fn numeric_types_within_decimal128_become_decimals_others_text() {
        assert_eq!(
            kind_of("numeric", "numeric(12,2)"),
            Kind::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(kind_of("numeric", "numeric"), Kind::Text);
        assert_eq!(kind_of("numeric", "numeric(50,5)"), Kind::Text);
        assert_eq!(kind_of("jsonb", "jsonb"), Kind::Text);
    }
}
