//! `append_dedup` compaction: settle a stream to the latest row per primary key.
//!
//! Commits only append; `compact` runs once the stream was read completely. The published
//! files are already settled (`compacted`: one row per key, no key of another compacted file),
//! so only the keys of the run's new rows can have two rows:
//!
//! 1. scan the new files (not `compacted`) reading only key and cursor columns, and find the
//!    winning new row of every key (highest cursor; on equal cursors, or without a cursor, the
//!    row that arrived last, in commit order then row order);
//! 2. scan the published files' key and cursor columns for those keys, skipping every row
//!    group whose key statistics (min/max) hold none of them: a published row of a changed key
//!    loses to the new winner, unless its cursor is higher (then the new rows lose);
//! 3. rewrite only the files holding losing rows, and publish the new file list as one new
//!    version (see [`crate::versions`]), which leaves the replaced files out.
//!
//! Memory is bounded by the keys changed in the run, not by the table: one entry per changed
//! key (its encoded key, its cursor, a file index and a row number), plus one batch at a time
//! while scanning and rewriting. A run changing 2,000 keys of 10M holds 2,000 entries. (Files a
//! stream holds from before it was `append_dedup`, not `compacted`, are scanned like new ones.)
//!
//! Keys are compared in Arrow's row format, so multi-column keys of any type work, and a null
//! key is a key like any other (all rows with a null key collapse into one). The row format
//! orders like the values, which is what lets step 2 compare keys with row group statistics
//! (single-column keys; multi-column keys scan every row group of the published files).

use std::collections::HashMap;
use std::fs::File;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::Schema;
use arrow::row::{RowConverter, Rows, SortField};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use weft_core::{ConnectorError, Result};

use crate::encoder::PartWriter;
use crate::layout;
use crate::manifest::DataFile;
use crate::table::Table;

/// Rows per batch while scanning and rewriting.
const BATCH_ROWS: usize = 64 * 1024;

/// Where the winning new row of a key is.
struct Winner {
    file: u32,
    row: u64,
    cursor: Option<Box<[u8]>>,
}

/// FNV-1a: a fast, stable hash to spread keys over partitions.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What a compaction did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Compaction {
    pub rows_before: u64,
    pub rows_after: u64,
    pub files_rewritten: usize,
    /// Row groups of published files whose key columns were read (the others were skipped
    /// by their statistics).
    pub row_groups_scanned: usize,
    pub row_groups_skipped: usize,
    /// Bytes of the Parquet files the compaction wrote (the rewritten files).
    pub bytes_written: u64,
}

pub(crate) fn compact(table: &mut Table) -> Result<Option<Compaction>> {
    let label = table.label.clone();
    let files = table.manifest.files.clone();
    let schema = table.schema.clone();
    let err = |path: &std::path::Path, e: &dyn std::fmt::Display| {
        ConnectorError::Other(format!("{label}: compacting {}: {e}", path.display()))
    };
    let open = |path: &std::path::Path| {
        let reader = File::open(path).map_err(|e| ConnectorError::io("opening", path, e))?;
        ParquetRecordBatchReaderBuilder::try_new(reader).map_err(|e| err(path, &e))
    };
    // Files without a column added with a constant default hold rows that read that value
    // upstream: they are rewritten filled (see `evolution`), whether or not a key changed.
    // Only their footers are read to tell.
    let fills = crate::evolution::Fills::of(&label, &schema);
    let mut lacking = vec![false; files.len()];
    if !fills.is_empty() {
        for (index, file) in files.iter().enumerate() {
            let path = table.file_path(&file.path);
            lacking[index] = fills.lacked_by(open(&path)?.schema());
        }
    }
    if table.manifest.files.iter().all(|f| f.compacted) && !lacking.contains(&true) {
        return Ok(None);
    }

    let key_cols = table.primary_key.clone();
    let cursor_col = table.cursor.clone();
    let field_of = |name: &str| {
        schema
            .field_with_name(name)
            .map(|f| SortField::new(f.data_type().clone()))
            .map_err(|_| {
                ConnectorError::Schema(format!("{label}: column `{name}` is not in the stream"))
            })
    };
    let key_fields = key_cols
        .iter()
        .map(|k| field_of(k))
        .collect::<Result<Vec<_>>>()?;
    let key_conv = RowConverter::new(key_fields).map_err(|e| {
        ConnectorError::Schema(format!(
            "{label}: the primary key ({}) cannot be used to de-duplicate: {e}",
            key_cols.join(", ")
        ))
    })?;
    let cursor_conv = match &cursor_col {
        Some(c) => Some(RowConverter::new(vec![field_of(c)?]).map_err(|e| {
            ConnectorError::Schema(format!("{label}: cursor `{c}` cannot be compared: {e}"))
        })?),
        None => None,
    };
    let scan_columns: Vec<&String> = key_cols.iter().chain(cursor_col.iter()).collect();
    let projection = |builder: &ParquetRecordBatchReaderBuilder<File>, path: &std::path::Path| {
        let mut roots = Vec::new();
        for name in &scan_columns {
            let i = builder.schema().index_of(name).map_err(|_| {
                ConnectorError::Schema(format!(
                    "{label}: column `{name}` is missing from {}",
                    path.display()
                ))
            })?;
            roots.push(i);
        }
        roots.sort_unstable();
        roots.dedup();
        Ok::<_, ConnectorError>(ProjectionMask::roots(builder.parquet_schema(), roots))
    };
    // Keys and cursors of one batch, in the stream's types.
    let encode = |batch: &RecordBatch, path: &std::path::Path| {
        let keys = convert(&key_conv, batch, &key_cols, &schema).map_err(|e| err(path, &e))?;
        let cursors = match (&cursor_conv, &cursor_col) {
            (Some(conv), Some(c)) => Some(
                convert(conv, batch, std::slice::from_ref(c), &schema)
                    .map_err(|e| err(path, &e))?,
            ),
            _ => None,
        };
        Ok::<_, ConnectorError>((keys, cursors))
    };

    // The new rows are taken in partitions by key hash, each settled on its own, so the map
    // of winners never holds more than about `merge_keys` keys (by default, a first load of
    // 10M rows is 20 partitions; an incremental run of a few thousand changes is one).
    let new_rows: u64 = files.iter().filter(|f| !f.compacted).map(|f| f.rows).sum();
    let partitions = new_rows.div_ceil(table.merge_keys.max(1)).max(1);
    let mut stats = Compaction::default();
    // Per file, the rows that lose (superseded by a later row of their key).
    let mut losers: Vec<Vec<u64>> = vec![Vec::new(); files.len()];
    for partition in 0..partitions {
        let mine = |key: &[u8]| partitions == 1 || fnv1a(key) % partitions == partition;

        // Pass 1: the winning new row of every key of the partition the run changed.
        let mut winners: HashMap<Box<[u8]>, Winner> = HashMap::new();
        for (index, file) in files.iter().enumerate() {
            if file.compacted {
                continue;
            }
            let path = table.file_path(&file.path);
            let builder = open(&path)?;
            let mask = projection(&builder, &path)?;
            let reader = builder
                .with_projection(mask)
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| err(&path, &e))?;
            let mut base = 0u64;
            for batch in reader {
                let batch = batch.map_err(|e| err(&path, &e))?;
                let (keys, cursors) = encode(&batch, &path)?;
                for i in 0..batch.num_rows() {
                    let key = keys.row(i);
                    if !mine(key.as_ref()) {
                        continue;
                    }
                    let cursor = cursors.as_ref().map(|c| c.row(i));
                    let row = base + i as u64;
                    match winners.get_mut(key.as_ref()) {
                        Some(w) => {
                            // Later arrival wins unless its cursor is lower.
                            let wins = match (&cursor, &w.cursor) {
                                (Some(new), Some(old)) => new.as_ref() >= old.as_ref(),
                                _ => true,
                            };
                            if wins {
                                losers[w.file as usize].push(w.row);
                                w.file = index as u32;
                                w.row = row;
                                if let Some(c) = cursor {
                                    w.cursor = Some(c.as_ref().into());
                                }
                            } else {
                                losers[index].push(row);
                            }
                        }
                        None => {
                            winners.insert(
                                key.as_ref().into(),
                                Winner {
                                    file: index as u32,
                                    row,
                                    cursor: cursor.map(|c| c.as_ref().into()),
                                },
                            );
                        }
                    }
                }
                base += batch.num_rows() as u64;
            }
        }
        if winners.is_empty() {
            continue;
        }

        // Pass 2: the published rows of those keys, row groups without one skipped.
        let mut sorted_keys: Vec<Box<[u8]>> = winners.keys().cloned().collect();
        sorted_keys.sort_unstable();
        for (index, file) in files.iter().enumerate() {
            if !file.compacted {
                continue;
            }
            let path = table.file_path(&file.path);
            let builder = open(&path)?;
            let candidates =
                row_groups_with_keys(&builder, &key_cols, &schema, &key_conv, &sorted_keys);
            let groups = builder.metadata().row_groups();
            let mut offsets = Vec::with_capacity(groups.len());
            let mut offset = 0u64;
            for group in groups {
                offsets.push(offset);
                offset += group.num_rows().max(0) as u64;
            }
            stats.row_groups_skipped += groups.len() - candidates.len();
            stats.row_groups_scanned += candidates.len();
            let mask = projection(&builder, &path)?;
            for group in candidates {
                let reader = open(&path)?
                    .with_projection(mask.clone())
                    .with_row_groups(vec![group])
                    .with_batch_size(BATCH_ROWS)
                    .build()
                    .map_err(|e| err(&path, &e))?;
                let mut base = offsets[group];
                for batch in reader {
                    let batch = batch.map_err(|e| err(&path, &e))?;
                    let (keys, cursors) = encode(&batch, &path)?;
                    for i in 0..batch.num_rows() {
                        let Some(w) = winners.get(keys.row(i).as_ref()) else {
                            continue;
                        };
                        let published = cursors.as_ref().map(|c| c.row(i));
                        // The published row arrived first: it stays only with a higher cursor,
                        // and then every new row of its key loses.
                        let stays = match (&published, &w.cursor) {
                            (Some(old), Some(new)) => old.as_ref() > new.as_ref(),
                            _ => false,
                        };
                        if stays {
                            losers[w.file as usize].push(w.row);
                        } else {
                            losers[index].push(base + i as u64);
                        }
                    }
                    base += batch.num_rows() as u64;
                }
            }
        }
    }

    // Pass 3: rewrite the files holding losers; files without losers stay as they are.
    let mut writer = PartWriter::new(
        label.clone(),
        layout::staging_dir(&table.dir),
        table.schema.clone(),
        table.props.clone(),
        table.file_bytes,
        table.manifest.max_seq() + 1,
    );
    let mut kept = Vec::new();
    let result = (|| -> Result<()> {
        for (index, file) in files.iter().enumerate() {
            let rows = file.rows;
            let listed = &mut losers[index];
            listed.sort_unstable();
            listed.dedup();
            let dropping = listed.len() as u64;
            stats.rows_before += rows;
            stats.rows_after += rows.saturating_sub(dropping);
            if dropping == 0 && !lacking[index] {
                kept.push(DataFile {
                    compacted: true,
                    ..file.clone()
                });
                continue;
            }
            if dropping >= rows {
                continue;
            }
            stats.files_rewritten += 1;
            let path = table.file_path(&file.path);
            let reader = open(&path)?
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| err(&path, &e))?;
            let mut base = 0u64;
            let mut next = listed.iter().peekable();
            for batch in reader {
                let batch = batch.map_err(|e| err(&path, &e))?;
                let n = batch.num_rows() as u64;
                // Every row but the losers.
                let mask: BooleanArray = (base..base + n)
                    .map(|row| Some(next.next_if_eq(&&row).is_none()))
                    .collect();
                let batch = filter_record_batch(&batch, &mask).map_err(|e| err(&path, &e))?;
                // Files from before a schema evolution are rewritten in the latest schema.
                let batch = if batch.schema().fields() == table.schema.fields() {
                    batch
                } else {
                    let columns = crate::evolution::conform(&batch, &table.schema, &fills)?;
                    RecordBatch::try_new(table.schema.clone(), columns)?
                };
                writer.write(&batch)?;
                base += n;
            }
        }
        Ok(())
    })();
    let staged = match result.and_then(|()| writer.seal()) {
        Ok(staged) => staged,
        Err(e) => {
            let _ = writer.discard();
            return Err(e);
        }
    };
    stats.bytes_written = staged.iter().map(|f| f.bytes).sum();
    let mut next = table.manifest.clone();
    next.version += 1;
    next.committed_at = chrono::Utc::now();
    next.files = kept;
    next.files.extend(staged.iter().map(|f| DataFile {
        path: f.name.clone(),
        rows: f.rows,
        bytes: f.bytes,
        compacted: true,
    }));
    // The replaced files are not in the new version: they go with the old one.
    table.replace(next, &staged)?;
    Ok(Some(stats))
}

/// The row groups of a published file that can hold one of `keys` (sorted, in row format), by
/// the statistics of a single-column key; every row group when that cannot be told.
fn row_groups_with_keys(
    builder: &ParquetRecordBatchReaderBuilder<File>,
    key_cols: &[String],
    schema: &Schema,
    conv: &RowConverter,
    keys: &[Box<[u8]>],
) -> Vec<usize> {
    let groups = builder.metadata().row_groups();
    let all = (0..groups.len()).collect();
    let [key] = key_cols else {
        return all;
    };
    let Ok(field) = schema.field_with_name(key).map(|f| f.data_type().clone()) else {
        return all;
    };
    let bounds = || -> Option<(Rows, Rows, Vec<bool>)> {
        let stats =
            StatisticsConverter::try_new(key, builder.schema(), builder.parquet_schema()).ok()?;
        let as_key = |a: ArrayRef| -> Option<ArrayRef> {
            if a.data_type() == &field {
                Some(a)
            } else {
                cast(&a, &field).ok()
            }
        };
        let mins = as_key(stats.row_group_mins(groups).ok()?)?;
        let maxes = as_key(stats.row_group_maxes(groups).ok()?)?;
        let nulls = stats.row_group_null_counts(groups).ok()?;
        let has_nulls = (0..groups.len())
            .map(|g| !nulls.is_valid(g) || nulls.value(g) > 0)
            .collect();
        let (mins_null, maxes_null) = (mins.logical_nulls(), maxes.logical_nulls());
        if mins_null.is_some_and(|n| n.null_count() > 0)
            || maxes_null.is_some_and(|n| n.null_count() > 0)
        {
            // Some row group has no statistics: read them all.
            return None;
        }
        Some((
            conv.convert_columns(&[mins]).ok()?,
            conv.convert_columns(&[maxes]).ok()?,
            has_nulls,
        ))
    };
    let Some((mins, maxes, has_nulls)) = bounds() else {
        return all;
    };
    // A null key sorts first in the row format; null statistics say nothing about it.
    let null_key = conv
        .convert_columns(&[arrow::array::new_null_array(&field, 1)])
        .ok();
    let wants_null = null_key.is_some_and(|n| {
        keys.binary_search_by(|k| k.as_ref().cmp(n.row(0).as_ref()))
            .is_ok()
    });
    (0..groups.len())
        .filter(|&g| {
            let (lo, hi) = (mins.row(g), maxes.row(g));
            let at = keys.partition_point(|k| k.as_ref() < lo.as_ref());
            (at < keys.len() && keys[at].as_ref() <= hi.as_ref()) || (wants_null && has_nulls[g])
        })
        .collect()
}

/// The row-format values of columns `names` of `batch`, in the types of `schema` (a file from
/// before a type widening is compared in the widened type).
fn convert(
    conv: &RowConverter,
    batch: &RecordBatch,
    names: &[String],
    schema: &Schema,
) -> std::result::Result<Rows, String> {
    let columns = names
        .iter()
        .map(|n| {
            let column = batch
                .column_by_name(n)
                .cloned()
                .ok_or_else(|| format!("column `{n}` is missing"))?;
            let want = schema.field_with_name(n).map_err(|e| e.to_string())?;
            if column.data_type() == want.data_type() {
                Ok(column)
            } else {
                cast(&column, want.data_type()).map_err(|e| e.to_string())
            }
        })
        .collect::<std::result::Result<Vec<ArrayRef>, String>>()?;
    conv.convert_columns(&columns).map_err(|e| e.to_string())
}
