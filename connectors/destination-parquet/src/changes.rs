//! CDC streams (sync mode `cdc`): change batches in the lake.
//!
//! # Files
//!
//! Every file of a CDC stream holds the stream's columns, all stored nullable (a delete only
//! carries its key, a truncate no value at all), followed by the change columns:
//!
//! | column            | type                         | meaning                                   |
//! |-------------------|------------------------------|-------------------------------------------|
//! | `_weft_op`        | Utf8, not null               | `insert`, `update`, `delete`, `truncate`  |
//! | `_weft_position`  | Int64, not null              | the source's commit position (PostgreSQL: the commit LSN as an integer) |
//! | `_weft_ordinal`   | Int64, not null              | orders changes sharing a position         |
//! | `_weft_commit_ts` | Timestamp(µs, "UTC")         | when the source committed the change      |
//! | `_weft_unchanged` | `List<Utf8>`, null when empty | columns whose value the source did not resend |
//!
//! Positions and ordinals are stored as signed 64-bit integers: every Parquet reader (DuckDB,
//! pyarrow, Spark, Trino) reads INT64, while unsigned UINT_64 is not supported everywhere. A
//! position or ordinal above `i64::MAX` (no PostgreSQL LSN comes close) is refused with an error
//! rather than stored wrapped, so ordering by the column is always the source's order.
//!
//! A cell the source flagged unchanged (PostgreSQL's unchanged TOASTed values) is null in the
//! file and its column is named in `_weft_unchanged`, so a null there is never mistaken for a
//! value set to null.
//!
//! # Changelog (`append`)
//!
//! Every change row is stored as it came, one file per commit (or more past `file_bytes`),
//! made visible by the commit exactly like plain appends. Unchanged cells stay null (and
//! listed in `_weft_unchanged`): the changelog records what the source sent.
//!
//! # Current state (`append_dedup`)
//!
//! Commits store the change rows in the run's pending generation (durable, not visible); the
//! published files keep showing the state of the last finished run. At `finish`,
//! `compact_current` settles published state plus changes into the new state with one
//! manifest swap: compaction at finish rather than merge-on-read, because readers of the lake
//! are plain Parquet readers that cannot apply deletes themselves. The published files hold
//! one row per live key, with the change columns of the key's latest change (`_weft_op` is
//! `insert` or `update`); `_weft_unchanged` is null unless a previous value could not be found
//! (an update of a key the lake never held), in which case the cell stays null and is named.
//!
//! Rules, applied in (position, ordinal) order (published rows are older than every change):
//! the latest change of a key wins; a key whose latest change is a delete is absent; a
//! truncate at (P, o) removes every row whose latest change is before it, published rows
//! included; a change older than the key's latest (a replay) is ignored; an unchanged cell
//! takes the key's previous value (an earlier change of the run, or the published row).
//!
//! Memory: one entry per key changed in the run (its encoded key, where its latest change is,
//! and for keys whose latest change left cells unchanged, where each previous value is), plus
//! one batch at a time while scanning and rewriting, plus the previous values of unchanged
//! cells between the row they are read from and the row they fill (both in file order, so a
//! value is held only until its key's winning row is written). Published files without a
//! changed key are kept as they are; the others are rewritten.
//!
//! # Follow mode
//!
//! A stream that never finishes (`follow`) never reaches `finish`, so its current state is
//! published at every commit instead: the commit settles and swaps in the new state exactly as
//! `finish` does, then starts a new pending generation. Readers see the state as of the last
//! commit (at most the engine's `commit_interval` old). The price is one compaction per commit:
//! it reads the key columns of the published files and rewrites the published files holding a
//! key changed since the last commit, so with a large table and changes spread over all of it
//! each commit rewrites most of the table. For large tables followed with frequent commits,
//! raise `commit_interval`, or follow into the changelog (`append`), which is visible at
//! every commit at no extra cost, and settle the current state with bounded (non-follow) runs.
//!
//! # Schema changes
//!
//! Only added columns are accepted (mid-stream through `schema_change`, or between runs when
//! the stream is opened with more columns); a dropped or retyped column is an error naming the
//! stream and the column. The current state is rewritten at `finish` with the new columns
//! null-filled, so all its files share one schema; a column added with a constant default
//! (`weft_core::values::FILL`) is filled with it instead in every row written before it
//! appeared (published rows and earlier changes of the run), as the source reads them. Changelog files are never rewritten: files
//! written before the change lack the new column, so read them by column name
//! (DuckDB `read_parquet(files, union_by_name = true)`, pyarrow
//! `dataset(files, schema=<the newest file's schema>)`); the manifest's `fields` is the latest
//! schema, a superset of every file's.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder, TimestampMicrosecondArray, UInt32Array,
};
use arrow::compute::{cast, filter_record_batch, interleave, nullif, take};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use arrow::row::{RowConverter, SortField};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use weft_core::change_columns::{COMMIT_TS, OP, ORDINAL, POSITION};
use weft_core::{ChangeBatch, ChangeOp, ConnectorError, Result};

use crate::dedup::Compaction;
use crate::encoder::{PartWriter, StagedFile};
use crate::layout;
use crate::manifest::{columns_of, ColumnSpec, DataFile};
use crate::table::Table;

/// The columns whose value the source did not resend (see the module docs).
pub const UNCHANGED: &str = "_weft_unchanged";

/// The change columns every CDC file ends with, in order.
pub const CHANGE_COLUMNS: [&str; 5] = [OP, POSITION, ORDINAL, COMMIT_TS, UNCHANGED];

/// Rows per batch while scanning and rewriting.
const BATCH_ROWS: usize = 64 * 1024;

fn unchanged_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

fn commit_ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The schema of a CDC stream's files: the stream's (storage) columns, nullable, then the
/// change columns. A stream column named like a change column is refused.
pub(crate) fn file_schema(label: &str, data: &Schema) -> Result<SchemaRef> {
    if let Some(clash) = data
        .fields()
        .iter()
        .find(|f| CHANGE_COLUMNS.contains(&f.name().as_str()))
    {
        return Err(ConnectorError::Schema(format!(
            "{label}: column `{}` has the name of a change column the lake adds to CDC streams \
             ({}); rename it with a mapper",
            clash.name(),
            CHANGE_COLUMNS.join(", ")
        )));
    }
    let mut fields: Vec<Field> = data
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.extend([
        Field::new(OP, DataType::Utf8, false),
        Field::new(POSITION, DataType::Int64, false),
        Field::new(ORDINAL, DataType::Int64, false),
        Field::new(COMMIT_TS, commit_ts_type(), true),
        Field::new(UNCHANGED, unchanged_type(), true),
    ]);
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        data.metadata().clone(),
    )))
}

/// Checks that a CDC stream's columns `new` only add columns to `old`.
pub(crate) fn check_evolution(label: &str, old: &[ColumnSpec], new: &[ColumnSpec]) -> Result<()> {
    if !old.is_empty() && !old.iter().any(|c| c.name == OP) {
        return Err(ConnectorError::Schema(format!(
            "{label}: the lake holds this stream without change columns (it was not written in \
             sync mode `cdc`); write the CDC stream to a new stream, or remove the stream folder"
        )));
    }
    for o in old {
        match new.iter().find(|n| n.name == o.name) {
            None => {
                return Err(ConnectorError::Schema(format!(
                    "{label}: column `{}` was dropped, but the lake already holds it; a CDC \
                     stream only accepts added columns: keep the column (a mapper can fill it \
                     with nulls) or write to a new stream",
                    o.name
                )))
            }
            Some(n) if !crate::evolution::widens(&o.data_type, &n.data_type) => {
                return Err(ConnectorError::Schema(format!(
                    "{label}: column `{}` changed type from {} to {}, but the lake already holds \
                     it as {}; a CDC stream only accepts added columns and widened types (Int32 \
                     to Int64, Float32 to Float64): cast it back with a mapper or write to a new \
                     stream",
                    o.name, o.data_type, n.data_type, o.data_type
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The rows of a CDC file for `changes`: the stream columns converted to `data` (the storage
/// schema of the stream columns), unchanged cells nulled, then the change columns.
pub(crate) fn file_batch(
    label: &str,
    changes: &ChangeBatch,
    data: &Schema,
    file: &SchemaRef,
) -> Result<RecordBatch> {
    changes
        .validate()
        .map_err(|e| ConnectorError::Other(format!("{label}: {e} (a connector bug)")))?;
    let rows = &changes.rows;
    let have = rows.schema();
    let mismatch = || {
        let diff = crate::manifest::column_differences(&columns_of(data), &columns_of(&have));
        ConnectorError::Schema(format!(
            "{label}: a change batch does not match the stream's schema: {}",
            diff.join("; ")
        ))
    };
    if have.fields().len() != data.fields().len() {
        return Err(mismatch());
    }
    let n = rows.num_rows();
    let mut columns = Vec::with_capacity(file.fields().len());
    for ((column, got), want) in rows.columns().iter().zip(have.fields()).zip(data.fields()) {
        if got.name() != want.name() {
            return Err(mismatch());
        }
        let mut column = if column.data_type() == want.data_type() {
            column.clone()
        } else if crate::storable::replacement(column.data_type()).as_ref()
            == Some(want.data_type())
        {
            cast(column, want.data_type())?
        } else {
            return Err(mismatch());
        };
        if let Some(mask) = changes.unchanged.get(want.name()) {
            if mask.true_count() > 0 {
                column = nullif(&column, mask)?;
            }
        }
        columns.push(column);
    }

    let ops: StringArray = (0..n).map(|i| Some(changes.op(i).as_str())).collect();
    let signed = |what: &str, values: &arrow::array::UInt64Array| -> Result<Int64Array> {
        if values.null_count() > 0 {
            return Err(ConnectorError::Other(format!(
                "{label}: a change batch has rows without a {what} (a connector bug)"
            )));
        }
        values
            .values()
            .iter()
            .map(|v| {
                i64::try_from(*v).map_err(|_| {
                    ConnectorError::Other(format!(
                        "{label}: change {what} {v} is above {}, the largest the lake stores \
                         (as a signed 64-bit integer)",
                        i64::MAX
                    ))
                })
            })
            .collect()
    };
    let positions = signed("position", &changes.positions)?;
    let ordinals = signed("ordinal", &changes.ordinals)?;
    let commit_ts = TimestampMicrosecondArray::new(
        changes.commit_micros.values().clone(),
        changes.commit_micros.nulls().cloned(),
    )
    .with_timezone("UTC");

    let unchanged: ArrayRef = if changes.unchanged.values().all(|m| m.true_count() == 0) {
        new_null_array(&unchanged_type(), n)
    } else {
        let mut list = ListBuilder::new(StringBuilder::new());
        for i in 0..n {
            let mut any = false;
            for name in changes.unchanged.keys() {
                if changes.is_unchanged(name, i) {
                    list.values().append_value(name);
                    any = true;
                }
            }
            list.append(any);
        }
        Arc::new(list.finish())
    };
    columns.extend([
        Arc::new(ops) as ArrayRef,
        Arc::new(positions),
        Arc::new(ordinals),
        Arc::new(commit_ts),
        unchanged,
    ]);
    RecordBatch::try_new(file.clone(), columns).map_err(ConnectorError::from)
}

fn parse_op(op: &str) -> Option<ChangeOp> {
    [
        ChangeOp::Insert,
        ChangeOp::Update,
        ChangeOp::Delete,
        ChangeOp::Truncate,
    ]
    .into_iter()
    .find(|o| o.as_str() == op)
}

/// Where the previous value of an unchanged cell is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    /// Nowhere (the key was deleted or truncated before, or is new): the cell stays null.
    None,
    /// The key's published row, if there is one.
    Published,
    /// A row of a change file.
    Change { file: u32, row: u64 },
}

/// A key's latest change.
struct Version {
    file: u32,
    row: u64,
    at: (i64, i64),
    deleted: bool,
    /// For each unchanged column (index in the output schema), where its value is.
    fills: Option<Box<[(u16, Src)]>>,
}

/// A cell read for a winning row: (output column, compact array, index in it).
type Captured = (u16, ArrayRef, usize);

/// A winning row of a change file: (file index, row).
type Target = (u32, u64);

/// Per file: the rows holding previous values of unchanged cells, and for each the (output
/// column, winning row) they fill.
type Sources = HashMap<u64, Vec<(u16, Target)>>;

/// append_dedup of a CDC stream: settles the published state files (`compacted`) and the
/// change files of the run (not `compacted`, in commit order) into the new state and publishes
/// it with one manifest swap. See the module docs for the rules.
pub(crate) fn compact_current(table: &mut Table) -> Result<Compaction> {
    let label = table.label.clone();
    let files = table.manifest.files.clone();
    let out_schema = table.schema.clone();
    // Rows of files written before a column added with a constant default read that value
    // upstream (PostgreSQL logged none of them): they are written with it (see `evolution`).
    // Published files without the column are rewritten anyway (their schema differs).
    let fills = crate::evolution::Fills::of(&label, &out_schema);
    let err = |path: &std::path::Path, e: &dyn std::fmt::Display| {
        ConnectorError::Other(format!("{label}: compacting {}: {e}", path.display()))
    };
    let open = |path: &std::path::Path| {
        let file = File::open(path).map_err(|e| ConnectorError::io("opening", path, e))?;
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(path, &e))
    };

    let key_cols = table.primary_key.clone();
    let key_fields = key_cols
        .iter()
        .map(|k| {
            out_schema
                .field_with_name(k)
                .map(|f| SortField::new(f.data_type().clone()))
                .map_err(|_| {
                    ConnectorError::Schema(format!(
                        "{label}: key column `{k}` is not in the stream"
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let key_conv = RowConverter::new(key_fields).map_err(|e| {
        ConnectorError::Schema(format!(
            "{label}: the primary key ({}) cannot be used to de-duplicate: {e}",
            key_cols.join(", ")
        ))
    })?;
    let col_ids: HashMap<&str, u16> = out_schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name().as_str(), i as u16))
        .collect();
    let keys_of = |batch: &RecordBatch, path: &std::path::Path| {
        let columns = key_cols
            .iter()
            .map(|k| {
                let column = batch.column_by_name(k).cloned().ok_or_else(|| {
                    ConnectorError::Schema(format!(
                        "{label}: key column `{k}` is missing from {}",
                        path.display()
                    ))
                })?;
                // A file from before a widening of the key: compare in the stream's type.
                let want = out_schema.field_with_name(k)?.data_type();
                if column.data_type() == want {
                    Ok(column)
                } else {
                    Ok(cast(&column, want)?)
                }
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        key_conv
            .convert_columns(&columns)
            .map_err(|e| err(path, &e))
    };
    let projected =
        |builder: ParquetRecordBatchReaderBuilder<File>, names: &[&str], path: &std::path::Path| {
            let mut roots = Vec::new();
            for name in names {
                match builder.schema().index_of(name) {
                    Ok(i) => roots.push(i),
                    Err(_) if *name == UNCHANGED => {}
                    Err(_) => {
                        return Err(ConnectorError::Schema(format!(
                            "{label}: column `{name}` is missing from {}",
                            path.display()
                        )))
                    }
                }
            }
            roots.sort_unstable();
            roots.dedup();
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            builder
                .with_projection(mask)
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| err(path, &e))
        };

    // Pass 1: the latest change of every key changed in the run, reading only keys and change
    // columns of the change files, in commit order.
    let mut latest: HashMap<Box<[u8]>, Version> = HashMap::new();
    let mut truncated: Option<(i64, i64)> = None;
    let mut change_names: Vec<&str> = key_cols.iter().map(String::as_str).collect();
    change_names.extend([OP, POSITION, ORDINAL, UNCHANGED]);
    for (index, file) in files.iter().enumerate() {
        if file.compacted {
            continue;
        }
        let path = table.file_path(&file.path);
        let reader = projected(open(&path)?, &change_names, &path)?;
        let mut base = 0u64;
        for batch in reader {
            let batch = batch.map_err(|e| err(&path, &e))?;
            let keys = keys_of(&batch, &path)?;
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .cloned()
                    .ok_or_else(|| err(&path, &format!("column `{name}` is missing")))
            };
            let ops = column(OP)?;
            let ops = ops.as_string::<i32>();
            let positions = column(POSITION)?;
            let positions = positions.as_primitive::<Int64Type>();
            let ordinals = column(ORDINAL)?;
            let ordinals = ordinals.as_primitive::<Int64Type>();
            let unchanged = batch.column_by_name(UNCHANGED).cloned();
            let unchanged = unchanged.as_ref().map(|u| u.as_list::<i32>());
            for i in 0..batch.num_rows() {
                let at = (positions.value(i), ordinals.value(i));
                let op = parse_op(ops.value(i))
                    .ok_or_else(|| err(&path, &format!("unknown operation {:?}", ops.value(i))))?;
                if op == ChangeOp::Truncate {
                    truncated = truncated.max(Some(at));
                    continue;
                }
                let key = keys.row(i);
                let prev = latest.get(key.as_ref());
                if prev.is_some_and(|p| at < p.at) {
                    // A replay of a change older than the key's latest.
                    continue;
                }
                let deleted = op == ChangeOp::Delete;
                let mut fills = Vec::new();
                if let Some(list) = unchanged.filter(|l| !deleted && l.is_valid(i)) {
                    let names = list.value(i);
                    for name in names.as_string::<i32>().iter().flatten() {
                        let Some(&c) = col_ids.get(name) else {
                            continue;
                        };
                        let src = match prev {
                            Some(p) if p.deleted || truncated.is_some_and(|t| p.at < t) => {
                                Src::None
                            }
                            Some(p) => p
                                .fills
                                .iter()
                                .flat_map(|f| f.iter())
                                .find(|(pc, _)| *pc == c)
                                .map(|(_, s)| *s)
                                .unwrap_or(Src::Change {
                                    file: p.file,
                                    row: p.row,
                                }),
                            None if truncated.is_some() => Src::None,
                            None => Src::Published,
                        };
                        fills.push((c, src));
                    }
                }
                let version = Version {
                    file: index as u32,
                    row: base + i as u64,
                    at,
                    deleted,
                    fills: (!fills.is_empty()).then(|| fills.into_boxed_slice()),
                };
                match latest.get_mut(key.as_ref()) {
                    Some(slot) => *slot = version,
                    None => {
                        latest.insert(key.as_ref().into(), version);
                    }
                }
            }
            base += batch.num_rows() as u64;
        }
    }
    let dead = |v: &Version| v.deleted || truncated.is_some_and(|t| v.at < t);

    // Which rows of the change files win, and which rows hold values for unchanged cells.
    let mut keep: Vec<Vec<u64>> = vec![Vec::new(); files.len()];
    let mut sources: Vec<Sources> = vec![HashMap::new(); files.len()];
    for v in latest.values().filter(|v| !dead(v)) {
        keep[v.file as usize].push(v.row);
        for (c, src) in v.fills.iter().flat_map(|f| f.iter()) {
            if let Src::Change { file, row } = *src {
                sources[file as usize]
                    .entry(row)
                    .or_default()
                    .push((*c, (v.file, v.row)));
            }
        }
    }

    // Pass 1b: published rows whose key changed in the run are replaced (all of them after a
    // truncate); they also hold the previous values of unchanged cells.
    let mut losers: Vec<Vec<u64>> = vec![Vec::new(); files.len()];
    if truncated.is_none() && !latest.is_empty() {
        for (index, file) in files.iter().enumerate() {
            if !file.compacted {
                continue;
            }
            let path = table.file_path(&file.path);
            let names: Vec<&str> = key_cols.iter().map(String::as_str).collect();
            let reader = projected(open(&path)?, &names, &path)?;
            let mut base = 0u64;
            for batch in reader {
                let batch = batch.map_err(|e| err(&path, &e))?;
                let keys = keys_of(&batch, &path)?;
                for i in 0..batch.num_rows() {
                    let Some(v) = latest.get(keys.row(i).as_ref()) else {
                        continue;
                    };
                    let row = base + i as u64;
                    losers[index].push(row);
                    if dead(v) {
                        continue;
                    }
                    for (c, src) in v.fills.iter().flat_map(|f| f.iter()) {
                        if *src == Src::Published {
                            sources[index]
                                .entry(row)
                                .or_default()
                                .push((*c, (v.file, v.row)));
                        }
                    }
                }
                base += batch.num_rows() as u64;
            }
        }
    }
    drop(latest);
    for rows in keep.iter_mut().chain(losers.iter_mut()) {
        rows.sort_unstable();
    }

    // Pass 2: write the new state, in file order: values of unchanged cells are read before
    // the winning rows they fill.
    let mut writer = PartWriter::new(
        label.clone(),
        layout::staging_dir(&table.dir),
        out_schema.clone(),
        table.props.clone(),
        table.file_bytes,
        table.manifest.max_seq() + 1,
    );
    let mut captured: HashMap<Target, Vec<Captured>> = HashMap::new();
    let mut kept = Vec::new();
    let mut stats = Compaction::default();
    // Spliced files take sequence numbers after the writer's (names are unique by uuid; the
    // numbers only order files).
    let mut spliced_seq = table.manifest.max_seq() + 1 + files.len() as u64;
    let mut spliced: Vec<StagedFile> = Vec::new();
    let result = (|| -> Result<()> {
        for (index, file) in files.iter().enumerate() {
            stats.rows_before += file.rows;
            let path = table.file_path(&file.path);
            let mut builder = open(&path)?;
            if file.compacted {
                if truncated.is_some() {
                    continue;
                }
                let same_schema = builder.schema().fields() == out_schema.fields();
                if same_schema && losers[index].is_empty() && sources[index].is_empty() {
                    stats.rows_after += file.rows;
                    kept.push(file.clone());
                    continue;
                }
                if same_schema
                    && sources[index].is_empty()
                    && losers[index].len() as u64 >= file.rows
                {
                    // Every row replaced: nothing of the file stays.
                    stats.files_rewritten += 1;
                    continue;
                }
                if same_schema && sources[index].is_empty() {
                    // Only rows to drop: the row groups without one are copied as they are
                    // encoded (see `rewrite`).
                    drop(builder);
                    let done = crate::rewrite::splice(
                        &label,
                        &path,
                        &layout::staging_dir(&table.dir),
                        spliced_seq,
                        &out_schema,
                        &table.props,
                        &losers[index],
                    )?;
                    if let Some((staged, cost)) = done {
                        spliced_seq += 1;
                        stats.files_rewritten += 1;
                        stats.rows_after += staged.rows;
                        stats.row_groups_copied += cost.copied;
                        stats.row_groups_encoded += cost.encoded;
                        spliced.push(staged);
                        continue;
                    }
                    builder = open(&path)?;
                }
            }
            let rows = if file.compacted {
                &losers[index]
            } else {
                &keep[index]
            };
            if !file.compacted && rows.is_empty() && sources[index].is_empty() {
                continue;
            }
            if file.compacted || !rows.is_empty() {
                stats.files_rewritten += 1;
            }
            let mut source_rows: Vec<u64> = sources[index].keys().copied().collect();
            source_rows.sort_unstable();
            let mut next_source = source_rows.iter().peekable();
            let mut next_row = rows.iter().peekable();
            let reader = builder
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| err(&path, &e))?;
            let mut base = 0u64;
            for batch in reader {
                let batch = batch.map_err(|e| err(&path, &e))?;
                let n = batch.num_rows() as u64;

                // Values of unchanged cells held by this batch, copied out compactly.
                let mut wanted: HashMap<u16, (Vec<u32>, Vec<Target>)> = HashMap::new();
                while let Some(row) = next_source.next_if(|r| **r < base + n) {
                    for (c, target) in &sources[index][row] {
                        let (rows, targets) = wanted.entry(*c).or_default();
                        rows.push((row - base) as u32);
                        targets.push(*target);
                    }
                }
                for (c, (rows, targets)) in wanted {
                    let name = out_schema.field(c as usize).name();
                    let values = match batch.column_by_name(name) {
                        Some(column) => take(column, &UInt32Array::from(rows), None)?,
                        // The value was sent before the column existed: the row read the
                        // column's fill upstream, if it has one.
                        None => match fills.column(name, rows.len())? {
                            Some(filled) => filled,
                            None => {
                                new_null_array(out_schema.field(c as usize).data_type(), rows.len())
                            }
                        },
                    };
                    for (i, target) in targets.into_iter().enumerate() {
                        captured
                            .entry(target)
                            .or_default()
                            .push((c, values.clone(), i));
                    }
                }

                // The rows this file contributes to the new state.
                let mut selected = Vec::new();
                let mask: BooleanArray = (base..base + n)
                    .map(|row| {
                        let listed = next_row.next_if_eq(&&row).is_some();
                        // State files list their losers, change files their winners.
                        let take = listed != file.compacted;
                        if take {
                            selected.push(row);
                        }
                        Some(take)
                    })
                    .collect();
                base += n;
                if selected.is_empty() {
                    continue;
                }
                let batch = filter_record_batch(&batch, &mask).map_err(|e| err(&path, &e))?;
                let mut columns = crate::evolution::conform(&batch, &out_schema, &fills)?;
                if !file.compacted {
                    let fills: Vec<Vec<Captured>> = selected
                        .iter()
                        .map(|row| captured.remove(&(index as u32, *row)).unwrap_or_default())
                        .collect();
                    if fills.iter().any(|f| !f.is_empty()) {
                        apply_fills(&mut columns, &out_schema, &fills)?;
                    }
                }
                let batch = RecordBatch::try_new(out_schema.clone(), columns)?;
                stats.rows_after += batch.num_rows() as u64;
                writer.write(&batch)?;
            }
        }
        Ok(())
    })();
    let staged = match result.and_then(|()| writer.seal()) {
        Ok(staged) => staged,
        Err(e) => {
            let _ = writer.discard();
            for f in &spliced {
                let _ = std::fs::remove_file(&f.path);
            }
            return Err(e);
        }
    };
    if !spliced.is_empty() {
        layout::fsync_dir(&layout::staging_dir(&table.dir))?;
    }
    let mut staged = staged;
    staged.append(&mut spliced);
    stats.bytes_written = staged.iter().map(|f| f.bytes).sum();
    let mut next = table.manifest.clone();
    next.version += 1;
    next.committed_at = chrono::Utc::now();
    next.fields = columns_of(&out_schema);
    next.files = kept;
    next.files.extend(staged.iter().map(|f| DataFile {
        path: f.name.clone(),
        rows: f.rows,
        bytes: f.bytes,
        compacted: true,
    }));
    // The replaced files are not in the new version: they go with the old one.
    table.replace(next, &staged)?;
    Ok(stats)
}

/// Puts the previous values of unchanged cells into the winning rows, and drops the filled
/// columns from `_weft_unchanged` (what is left there could not be found).
fn apply_fills(columns: &mut [ArrayRef], schema: &Schema, fills: &[Vec<Captured>]) -> Result<()> {
    let mut by_column: HashMap<u16, Vec<(usize, &ArrayRef, usize)>> = HashMap::new();
    for (row, cells) in fills.iter().enumerate() {
        for (c, values, i) in cells {
            by_column.entry(*c).or_default().push((row, values, *i));
        }
    }
    for (c, cells) in by_column {
        let current = columns[c as usize].clone();
        let mut arrays: Vec<&dyn Array> = vec![current.as_ref()];
        let mut indices: Vec<(usize, usize)> = (0..current.len()).map(|r| (0, r)).collect();
        for (row, values, i) in cells {
            arrays.push(values.as_ref());
            indices[row] = (arrays.len() - 1, i);
        }
        columns[c as usize] = interleave(&arrays, &indices)?;
    }

    let u = schema.index_of(UNCHANGED)?;
    let old = columns[u].clone();
    let old = old.as_list::<i32>();
    let mut list = ListBuilder::new(StringBuilder::new());
    for (row, cells) in fills.iter().enumerate() {
        let mut any = false;
        if old.is_valid(row) {
            let names = old.value(row);
            for name in names.as_string::<i32>().iter().flatten() {
                let filled = cells
                    .iter()
                    .any(|(c, _, _)| schema.field(*c as usize).name() == name);
                if !filled {
                    list.values().append_value(name);
                    any = true;
                }
            }
        }
        list.append(any);
    }
    columns[u] = Arc::new(list.finish());
    Ok(())
}
