//! `append_dedup` compaction: settle a stream to the latest row per primary key.
//!
//! Commits only append; `compact` runs once the stream was read completely. It scans the
//! committed files reading only the key and cursor columns, finds the winning row of every key
//! (highest cursor; on equal cursors, or without a cursor, the row that arrived last, in commit
//! order then row order), rewrites only the files that hold losing rows, and publishes the new
//! file list with one atomic manifest swap before deleting the replaced files.
//!
//! Memory is bounded by the key set, not by the table: one entry per distinct key (its encoded
//! key, its cursor, a file index and a row number), plus one batch at a time while scanning and
//! rewriting. A table with 100M distinct 16-byte keys needs a few GB; the data columns are never
//! held whole.
//!
//! Keys are compared in Arrow's row format, so multi-column keys of any type work, and a null
//! key is a key like any other (all rows with a null key collapse into one).

use std::collections::HashMap;
use std::fs::File;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::row::{RowConverter, Rows, SortField};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use weft_core::{ConnectorError, Result};

use crate::encoder::PartWriter;
use crate::layout;
use crate::manifest::{write_manifest, DataFile};
use crate::table::Table;

/// Rows per batch while scanning and rewriting.
const BATCH_ROWS: usize = 64 * 1024;

/// Where the winning row of a key is.
struct Winner {
    file: u32,
    row: u64,
    cursor: Option<Box<[u8]>>,
}

/// What a compaction did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Compaction {
    pub rows_before: u64,
    pub rows_after: u64,
    pub files_rewritten: usize,
}

pub(crate) fn compact(table: &mut Table) -> Result<Option<Compaction>> {
    if table.manifest.files.iter().all(|f| f.compacted) {
        return Ok(None);
    }
    let label = table.label.clone();
    let files = table.manifest.files.clone();
    let err = |path: &std::path::Path, e: &dyn std::fmt::Display| {
        ConnectorError::Other(format!("{label}: compacting {}: {e}", path.display()))
    };

    let key_cols = table.primary_key.clone();
    let cursor_col = table.cursor.clone();
    let field_of = |name: &str| {
        table
            .schema
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

    // Pass 1: the winner of every key, reading only key and cursor columns.
    let mut winners: HashMap<Box<[u8]>, Winner> = HashMap::new();
    let mut file_rows = Vec::with_capacity(files.len());
    for (index, file) in files.iter().enumerate() {
        let path = table.dir.join(&file.path);
        let reader = File::open(&path).map_err(|e| ConnectorError::io("opening", &path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(reader).map_err(|e| err(&path, &e))?;
        file_rows.push(builder.metadata().file_metadata().num_rows().max(0) as u64);
        let mut roots = Vec::new();
        for name in key_cols.iter().chain(cursor_col.iter()) {
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
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| err(&path, &e))?;
        let mut base = 0u64;
        for batch in reader {
            let batch = batch.map_err(|e| err(&path, &e))?;
            let keys = convert(&key_conv, &batch, &key_cols).map_err(|e| err(&path, &e))?;
            let cursors = match (&cursor_conv, &cursor_col) {
                (Some(conv), Some(c)) => Some(
                    convert(conv, &batch, std::slice::from_ref(c)).map_err(|e| err(&path, &e))?,
                ),
                _ => None,
            };
            for i in 0..batch.num_rows() {
                let key = keys.row(i);
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
                            w.file = index as u32;
                            w.row = row;
                            if let Some(c) = cursor {
                                w.cursor = Some(c.as_ref().into());
                            }
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

    let mut keep: Vec<Vec<u64>> = vec![Vec::new(); files.len()];
    for (_, w) in winners.drain() {
        keep[w.file as usize].push(w.row);
    }
    drop(winners);

    // Pass 2: rewrite the files holding losers; files without losers stay as they are.
    let mut writer = PartWriter::new(
        label.clone(),
        layout::staging_dir(&table.dir),
        table.schema.clone(),
        table.props.clone(),
        table.file_bytes,
        table.manifest.max_seq() + 1,
    );
    let mut kept = Vec::new();
    let mut replaced = Vec::new();
    let mut stats = Compaction::default();
    for ((file, rows), mut winners) in files.iter().zip(&file_rows).zip(keep) {
        stats.rows_before += rows;
        stats.rows_after += winners.len() as u64;
        if winners.len() as u64 == *rows {
            kept.push(DataFile {
                compacted: true,
                ..file.clone()
            });
            continue;
        }
        replaced.push(file.path.clone());
        if winners.is_empty() {
            continue;
        }
        stats.files_rewritten += 1;
        winners.sort_unstable();
        let path = table.dir.join(&file.path);
        let reader = File::open(&path).map_err(|e| ConnectorError::io("opening", &path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(reader)
            .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
            .map_err(|e| err(&path, &e))?;
        let mut base = 0u64;
        let mut next = winners.iter().peekable();
        for batch in reader {
            let batch = batch.map_err(|e| err(&path, &e))?;
            let n = batch.num_rows() as u64;
            let mask: BooleanArray = (base..base + n)
                .map(|row| Some(next.next_if_eq(&&row).is_some()))
                .collect();
            let batch = filter_record_batch(&batch, &mask).map_err(|e| err(&path, &e))?;
            writer.write(&batch)?;
            base += n;
        }
    }

    let staged = match writer.seal() {
        Ok(staged) => staged,
        Err(e) => {
            let _ = writer.discard();
            return Err(e);
        }
    };
    for f in &staged {
        layout::rename(&f.path, &table.dir.join(&f.name))?;
    }
    if !staged.is_empty() {
        layout::fsync_dir(&table.dir)?;
    }
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
    write_manifest(&table.dir, &next)?;
    table.manifest = next;
    for name in &replaced {
        layout::remove_file(&table.dir.join(name))?;
    }
    Ok(Some(stats))
}

fn convert(
    conv: &RowConverter,
    batch: &RecordBatch,
    names: &[String],
) -> std::result::Result<Rows, String> {
    let columns = names
        .iter()
        .map(|n| {
            batch
                .column_by_name(n)
                .cloned()
                .ok_or_else(|| format!("column `{n}` is missing"))
        })
        .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
    conv.convert_columns(&columns).map_err(|e| e.to_string())
}
