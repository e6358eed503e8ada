//! Decoding one file straight into Arrow batches, with the metadata columns appended, and
//! turning decode failures into errors naming the file, the data line and the column.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{ArrowError, SchemaRef};
use weft_core::{ConnectorError, Result};

use crate::config::{FileFormat, FileStreamConfig};
use crate::listing::FileEntry;

/// "No end" for CSV bounds: the reader adds the header line to it, so not `usize::MAX`.
const NO_END: usize = usize::MAX / 2;

/// Reads `file` after its first `skip` data rows, handing each batch (with metadata columns)
/// and the count of data rows consumed so far to `emit`; stops early when `emit` returns false.
/// Returns whether the file was read to its end.
pub(crate) fn read_file(
    config: &FileStreamConfig,
    data_schema: &SchemaRef,
    full_schema: &SchemaRef,
    file: &FileEntry,
    skip: u64,
    mut emit: impl FnMut(RecordBatch, u64) -> bool,
) -> Result<bool> {
    let open = || File::open(&file.abs).map_err(|e| ConnectorError::io("reading", &file.abs, e));
    // A CSV file is read by its own header's columns, then laid out as the stream's.
    let file_schema = match config.format {
        FileFormat::Csv if config.has_header => csv_file_schema(config, data_schema, file)?,
        _ => data_schema.clone(),
    };
    let data_schema_full = data_schema;
    let data_schema = &file_schema;
    let mut batches: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>>> = match config.format
    {
        FileFormat::Csv => Box::new(
            csv_builder(config, data_schema)
                .with_bounds(skip as usize, NO_END)
                .build(open()?)
                .map_err(|e| decode_error(config, file, skip + 1, None, &e))?,
        ),
        FileFormat::Jsonl => {
            let mut reader = BufReader::new(open()?);
            skip_json_lines(&mut reader, skip)
                .map_err(|e| ConnectorError::io("reading", &file.abs, e))?;
            Box::new(
                json_builder(config, data_schema)
                    .build(reader)
                    .map_err(|e| decode_error(config, file, skip + 1, None, &e))?,
            )
        }
    };
    let mut done = skip;
    loop {
        let batch = match batches.next() {
            None => return Ok(true),
            Some(Ok(batch)) => batch,
            Some(Err(err)) => return Err(diagnose(config, data_schema, file, done, err)),
        };
        let rows = batch.num_rows() as u64;
        let batch = if Arc::ptr_eq(data_schema, data_schema_full) {
            batch
        } else {
            by_name(batch, data_schema_full)?
        };
        let batch = add_metadata(full_schema, batch, file, done)?;
        done += rows;
        if !emit(batch, done) {
            return Ok(false);
        }
    }
}

/// The columns of a CSV file, by its header, typed as the stream's columns of those names.
fn csv_file_schema(
    config: &FileStreamConfig,
    data_schema: &SchemaRef,
    file: &FileEntry,
) -> Result<SchemaRef> {
    let reader = File::open(&file.abs).map_err(|e| ConnectorError::io("reading", &file.abs, e))?;
    let (header, _) = arrow_csv::reader::Format::default()
        .with_header(true)
        .with_delimiter(config.delimiter as u8)
        .infer_schema(reader, Some(0))
        .map_err(|e| decode_error(config, file, 0, None, &e))?;
    let names: Vec<&str> = header.fields().iter().map(|f| f.name().as_str()).collect();
    let same = names.len() == data_schema.fields().len()
        && names
            .iter()
            .zip(data_schema.fields())
            .all(|(n, f)| *n == f.name());
    if same {
        return Ok(data_schema.clone());
    }
    let fields = names
        .iter()
        .map(|name| {
            data_schema.field_with_name(name).cloned().map_err(|_| {
                ConnectorError::Schema(format!(
                    "stream `{}`: {} has column `{name}`, which the stream's schema (inferred \
                         from its first files) does not have; run the sync again to pick it up, \
                         or raise `infer_rows`",
                    config.name, file.rel
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(arrow_schema::Schema::new(fields)))
}

/// A batch decoded with a file's own columns, laid out as the stream's: columns by name, null
/// where the file lacks one.
fn by_name(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => arrow_array::new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn csv_builder(config: &FileStreamConfig, schema: &SchemaRef) -> arrow_csv::ReaderBuilder {
    arrow_csv::ReaderBuilder::new(schema.clone())
        .with_header(config.has_header)
        .with_header_validation(config.has_header)
        .with_delimiter(config.delimiter as u8)
        .with_batch_size(config.batch_size)
}

fn json_builder(config: &FileStreamConfig, schema: &SchemaRef) -> arrow_json::ReaderBuilder {
    // Strict: a field the schema does not know is an error, never silently dropped.
    arrow_json::ReaderBuilder::new(schema.clone())
        .with_strict_mode(true)
        .with_batch_size(config.batch_size)
}

/// Skips `n` non-blank lines (the JSON reader skips blank ones too).
fn skip_json_lines(reader: &mut impl BufRead, n: u64) -> std::io::Result<()> {
    let mut line = Vec::new();
    let mut skipped = 0;
    while skipped < n {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            skipped += 1;
        }
    }
    Ok(())
}

fn add_metadata(
    schema: &SchemaRef,
    batch: RecordBatch,
    file: &FileEntry,
    done: u64,
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.push(Arc::new(StringArray::from_iter_values(
        std::iter::repeat_n(file.rel.as_str(), n),
    )));
    columns.push(Arc::new(Int64Array::from_iter_values(
        (done as i64 + 1)..(done as i64 + 1 + n as i64),
    )));
    columns.push(Arc::new(
        TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(file.modified_us, n))
            .with_timezone("UTC"),
    ));
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A batch starting after data row `done` failed: find the first bad row and column by
/// decoding that stretch again row by row (only on this error path).
fn diagnose(
    config: &FileStreamConfig,
    schema: &SchemaRef,
    file: &FileEntry,
    done: u64,
    err: ArrowError,
) -> ConnectorError {
    let end = done + config.batch_size as u64;
    let single = FileStreamConfig {
        batch_size: 1,
        ..config.clone()
    };
    let columns: Vec<usize> = (0..schema.fields().len()).collect();
    let mut first: Option<(u64, Option<usize>, ArrowError)> = None;
    // Which row fails with all columns, then which column alone fails on that row.
    let row_err = first_failing_row(&single, schema, file, done, end, None);
    if let Some((row, row_error)) = row_err {
        let column = columns.iter().copied().find(|&c| {
            matches!(first_failing_row(&single, schema, file, row - 1, row, Some(c)), Some((r, _)) if r == row)
        });
        first = Some((row, column, row_error));
    }
    match first {
        Some((row, column, e)) => decode_error(
            config,
            file,
            row,
            column.map(|c| schema.field(c).name().as_str()),
            &e,
        ),
        None => decode_error(config, file, done + 1, None, &err),
    }
}

/// The first data row (1-based) in `(from, to]` that fails to decode, with its error.
fn first_failing_row(
    config: &FileStreamConfig,
    schema: &SchemaRef,
    file: &FileEntry,
    from: u64,
    to: u64,
    column: Option<usize>,
) -> Option<(u64, ArrowError)> {
    let reader = File::open(&file.abs).ok()?;
    let mut row = from;
    let mut next =
        |batch: Option<Result<RecordBatch, ArrowError>>| -> Option<Option<(u64, ArrowError)>> {
            match batch {
                None => Some(None),
                Some(Err(e)) => Some(Some((row + 1, e))),
                Some(Ok(b)) => {
                    row += b.num_rows() as u64;
                    if row >= to {
                        Some(None)
                    } else {
                        None
                    }
                }
            }
        };
    match config.format {
        FileFormat::Csv => {
            let mut builder = csv_builder(config, schema).with_bounds(from as usize, to as usize);
            if let Some(c) = column {
                builder = builder.with_projection(vec![c]);
            }
            let mut reader = builder.build(reader).ok()?;
            loop {
                if let Some(result) = next(reader.next()) {
                    return result;
                }
            }
        }
        FileFormat::Jsonl => {
            let mut buffered = BufReader::new(reader);
            skip_json_lines(&mut buffered, from).ok()?;
            let schema = match column {
                // One field, not strict: only that field's value is checked.
                Some(c) => Arc::new(arrow_schema::Schema::new(vec![schema.field(c).clone()])),
                None => schema.clone(),
            };
            let mut reader = json_builder(config, &schema)
                .with_strict_mode(column.is_none())
                .build(buffered)
                .ok()?;
            loop {
                if let Some(result) = next(reader.next()) {
                    return result;
                }
            }
        }
    }
}

fn decode_error(
    config: &FileStreamConfig,
    file: &FileEntry,
    line: u64,
    column: Option<&str>,
    err: &ArrowError,
) -> ConnectorError {
    let column = match column {
        Some(c) => format!(", column `{c}`"),
        None => String::new(),
    };
    ConnectorError::Schema(format!(
        "stream `{}`: {} data line {line}{column}: {err}; if the column's type is wrong, add a \
         `schema_overrides` entry for it (e.g. `utf8`) to the stream's config",
        config.name, file.rel
    ))
}
