//! Rewriting one data file without some of its rows (the `append_dedup` compaction's losers),
//! at the cost of the row groups that lose a row, not of the file.
//!
//! A row group that loses no row is copied as it is encoded: its column chunks' bytes are
//! spliced into the new file with their statistics and page indexes (offsets moved), nothing
//! decoded. A row group that loses rows is decoded, filtered and encoded again, its columns
//! on two threads. So a run whose changed keys sit in a few row groups (recent rows, keys
//! clustered by the order rows arrived) rewrites those row groups and copies the rest at disk
//! speed; only keys spread over every row group make every row group re-encoded.
//!
//! The new file has the same schema, writer properties and key-value metadata as any file the
//! lake writes (it is started by the same `ArrowWriter` set-up), so readers cannot tell a
//! spliced file from one written whole. Files whose schema is not the stream's latest one (from
//! before a schema evolution) cannot be spliced: [`splice`] says so and the compaction encodes
//! them whole, conformed to the new schema.

use std::fs::File;
use std::path::Path;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowLeafColumn};
use parquet::arrow::ArrowWriter;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::properties::WriterProperties;
use weft_core::{ConnectorError, Result};

use crate::encoder::StagedFile;
use crate::layout;

/// Rows per batch while decoding a row group that loses rows.
const BATCH_ROWS: usize = 64 * 1024;

/// What one spliced file cost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spliced {
    /// Row groups copied as encoded bytes.
    pub copied: usize,
    /// Row groups decoded and encoded again without their losing rows.
    pub encoded: usize,
}

/// Writes `source` without the rows `losers` (sorted, distinct row numbers) as a new file
/// `layout::part_name(seq)` in `dir`, fsynced. `Ok(None)` (and nothing left in `dir`) when the
/// file is not spliced (its schema is not `schema`, or it is a single row group); the caller
/// encodes it whole.
pub(crate) fn splice(
    label: &str,
    source: &Path,
    dir: &Path,
    seq: u64,
    schema: &SchemaRef,
    props: &WriterProperties,
    losers: &[u64],
) -> Result<Option<(StagedFile, Spliced)>> {
    let err = |path: &Path, e: &dyn std::fmt::Display| {
        ConnectorError::Other(format!("{label}: compacting {}: {e}", path.display()))
    };
    let input = File::open(source).map_err(|e| ConnectorError::io("opening", source, e))?;
    // The page indexes are read so that copied column chunks keep theirs.
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
        input
            .try_clone()
            .map_err(|e| ConnectorError::io("opening", source, e))?,
        options,
    )
    .map_err(|e| err(source, &e))?;
    if builder.schema().fields() != schema.fields() {
        return Ok(None);
    }
    let metadata = builder.metadata().clone();
    if metadata.num_row_groups() < 2 {
        // Nothing to copy around its only row group; encoded whole by the caller instead,
        // together with the other small files it rewrites, so the small files of many runs
        // are merged rather than kept one per run.
        return Ok(None);
    }
    let in_columns = builder.parquet_schema().columns().to_vec();
    drop(builder);

    let name = layout::part_name(seq);
    let path = dir.join(&name);
    let result = (|| -> Result<Option<(StagedFile, Spliced)>> {
        let out = File::create_new(&path).map_err(|e| ConnectorError::io("creating", &path, e))?;
        let (mut writer, factory) = ArrowWriter::try_new(
            out,
            crate::product_meta::file_schema(schema, props),
            Some(props.clone()),
        )
        .and_then(|w| w.into_serialized_writer())
        .map_err(|e| err(&path, &e))?;
        // Spliced chunks must have the column descriptors the new file declares.
        if writer.schema_descr().columns() != in_columns.as_slice() {
            return Ok(None);
        }
        let mut cost = Spliced::default();
        let mut rows = 0u64;
        let mut base = 0u64;
        let mut out_groups = 0usize;
        for (g, group) in metadata.row_groups().iter().enumerate() {
            let n = group.num_rows().max(0) as u64;
            let from = losers.partition_point(|&r| r < base);
            let to = losers.partition_point(|&r| r < base + n);
            let dropped = &losers[from..to];
            if dropped.is_empty() {
                let index = metadata.page_index_for_row_group(g);
                let mut out_group = writer.next_row_group().map_err(|e| err(&path, &e))?;
                for (c, chunk) in group.columns().iter().enumerate() {
                    let close = ColumnCloseResult {
                        bytes_written: chunk.compressed_size().max(0) as u64,
                        rows_written: n,
                        metadata: chunk.clone(),
                        bloom_filter: None,
                        column_index: index.column_index(c).cloned(),
                        offset_index: index.offset_index(c).cloned(),
                    };
                    out_group
                        .append_column(&input, close)
                        .map_err(|e| err(source, &e))?;
                }
                out_group.close().map_err(|e| err(&path, &e))?;
                cost.copied += 1;
                rows += n;
                out_groups += 1;
            } else if (dropped.len() as u64) < n {
                let mut writers = factory
                    .create_column_writers(out_groups)
                    .map_err(|e| err(&path, &e))?;
                let reader = ParquetRecordBatchReaderBuilder::try_new(
                    input
                        .try_clone()
                        .map_err(|e| ConnectorError::io("opening", source, e))?,
                )
                .and_then(|b| {
                    b.with_row_groups(vec![g])
                        .with_batch_size(BATCH_ROWS)
                        .build()
                })
                .map_err(|e| err(source, &e))?;
                let mut at = base;
                let mut next = dropped.iter().peekable();
                for batch in reader {
                    let batch = batch.map_err(|e| err(source, &e))?;
                    let len = batch.num_rows() as u64;
                    let keep: BooleanArray = (at..at + len)
                        .map(|row| Some(next.next_if_eq(&&row).is_none()))
                        .collect();
                    at += len;
                    let batch = filter_record_batch(&batch, &keep).map_err(|e| err(source, &e))?;
                    rows += batch.num_rows() as u64;
                    encode(&mut writers, &batch, schema).map_err(|e| err(&path, &e))?;
                }
                let mut out_group = writer.next_row_group().map_err(|e| err(&path, &e))?;
                for w in writers {
                    let chunk = w.close().map_err(|e| err(&path, &e))?;
                    chunk
                        .append_to_row_group(&mut out_group)
                        .map_err(|e| err(&path, &e))?;
                }
                out_group.close().map_err(|e| err(&path, &e))?;
                cost.encoded += 1;
                out_groups += 1;
            }
            base += n;
        }
        let file = writer.into_inner().map_err(|e| err(&path, &e))?;
        file.sync_all()
            .map_err(|e| ConnectorError::io("syncing", &path, e))?;
        let bytes = file
            .metadata()
            .map_err(|e| ConnectorError::io("reading", &path, e))?
            .len();
        Ok(Some((
            StagedFile {
                name: name.clone(),
                path: path.clone(),
                rows,
                bytes,
            },
            cost,
        )))
    })();
    match result {
        Ok(Some(done)) => Ok(Some(done)),
        other => {
            // Not spliced, or failed: nothing of it stays behind.
            if path.exists() {
                layout::remove_file(&path)?;
            }
            other
        }
    }
}

/// Encodes `batch` into the row group's column `writers`, the columns split over two threads
/// (encoding, not decoding, is the expensive half of a rewrite).
fn encode(
    writers: &mut [ArrowColumnWriter],
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> parquet::errors::Result<()> {
    let mut leaves: Vec<ArrowLeafColumn> = Vec::with_capacity(writers.len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        leaves.extend(compute_leaves(field, column)?);
    }
    let mut pairs: Vec<(&mut ArrowColumnWriter, ArrowLeafColumn)> =
        writers.iter_mut().zip(leaves).collect();
    let mid = pairs.len() / 2;
    let (first, second) = pairs.split_at_mut(mid);
    let write_all = |part: &mut [(&mut ArrowColumnWriter, ArrowLeafColumn)]| {
        part.iter_mut().try_for_each(|(w, leaf)| w.write(leaf))
    };
    if first.is_empty() {
        return write_all(second);
    }
    std::thread::scope(|scope| {
        let other = scope.spawn(move || write_all(first));
        let mine = write_all(second);
        let theirs = other.join().unwrap_or_else(|_| {
            Err(parquet::errors::ParquetError::General(
                "encoder thread panicked".into(),
            ))
        });
        mine.and(theirs)
    })
}
