//! A stream's schema: inferred from its first files, overridden by config, plus the metadata
//! columns every row gets.
//!
//! CSV files are matched by their header's column names, not by position: a file with a
//! column the earlier ones lack adds it (nullable; rows of files without it read as null), so
//! a new drop with one more column flows in. Headers of files past the `infer_rows` budget are
//! still read, so their new columns are known (typed from the rows they bring when inferred
//! later, as text until then).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use weft_core::{ConnectorError, Result};

use crate::config::{FileFormat, FileStreamConfig};
use crate::listing::FileEntry;
use crate::types::{normalise, parse_type, timestamp_type};

/// The file a row came from, relative to the stream's folder.
pub const FILE_COLUMN: &str = "_file";
/// The row's 1-based data line in its file (a CSV header is not counted).
pub const LINE_COLUMN: &str = "_line";
/// When the file was last modified, as found when the read started.
pub const MODIFIED_COLUMN: &str = "_file_modified_at";

/// The metadata columns appended to every batch.
pub(crate) fn metadata_fields() -> [Field; 3] {
    [
        Field::new(FILE_COLUMN, DataType::Utf8, false),
        Field::new(LINE_COLUMN, DataType::Int64, false),
        Field::new(MODIFIED_COLUMN, timestamp_type(), false),
    ]
}

/// The data columns plus the metadata columns.
pub(crate) fn with_metadata(data: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = data.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(metadata_fields());
    Arc::new(Schema::new(fields))
}

/// The data columns of a stream schema (metadata columns removed).
pub(crate) fn data_part(schema: &Schema) -> SchemaRef {
    let meta = [FILE_COLUMN, LINE_COLUMN, MODIFIED_COLUMN];
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| !meta.contains(&f.name().as_str()))
            .cloned()
            .collect::<Vec<_>>(),
    ))
}

/// Infers the data schema from the first files (up to `infer_rows` rows), then applies the
/// overrides. With no files, the schema is the overridden columns alone.
pub(crate) fn infer(config: &FileStreamConfig, files: &[FileEntry]) -> Result<Schema> {
    let mut fields: Vec<Field> = Vec::new();
    let mut remaining = config.infer_rows;
    for file in files {
        let headers_only = config.format == FileFormat::Csv && config.has_header;
        if remaining == 0 && !headers_only {
            break;
        }
        let open =
            File::open(&file.abs).map_err(|e| ConnectorError::io("reading", &file.abs, e))?;
        let (schema, read) = match config.format {
            FileFormat::Csv => arrow_csv::reader::Format::default()
                .with_header(config.has_header)
                .with_delimiter(config.delimiter as u8)
                .infer_schema(open, Some(remaining)),
            FileFormat::Jsonl => {
                arrow_json::reader::infer_json_schema(BufReader::new(open), Some(remaining))
            }
        }
        .map_err(|e| {
            ConnectorError::Schema(format!(
                "stream `{}`: cannot infer the schema of {}: {e}",
                config.name, file.rel
            ))
        })?;
        remaining = remaining.saturating_sub(read.max(1));
        if config.format == FileFormat::Csv && !config.has_header && !fields.is_empty() {
            // Without a header, columns are matched by position: they must be the same.
            let count = schema.fields().len();
            if count != fields.len() {
                return Err(ConnectorError::Schema(format!(
                    "stream `{}`: {} has {count} columns but earlier files have {}; CSV files \
                     without a header are matched by position and must share their columns \
                     (add a header line, or split them into two streams)",
                    config.name,
                    file.rel,
                    fields.len()
                )));
            }
        }
        merge_into(&mut fields, &schema);
    }
    apply_overrides(config, fields, files.is_empty())
}

/// Adds `schema`'s fields, widening types that disagree (ints and floats to float64, anything
/// else to utf8).
fn merge_into(fields: &mut Vec<Field>, schema: &Schema) {
    for field in schema.fields() {
        let ty = normalise(field.data_type());
        match fields.iter_mut().find(|f| f.name() == field.name()) {
            Some(existing) if existing.data_type() != &ty => {
                let widened = match (existing.data_type(), &ty) {
                    (DataType::Null, other) | (other, DataType::Null) => other.clone(),
                    (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64) => {
                        DataType::Float64
                    }
                    _ => DataType::Utf8,
                };
                *existing = Field::new(field.name(), widened, true);
            }
            Some(_) => {}
            None => fields.push(Field::new(field.name(), ty, true)),
        }
    }
}

fn apply_overrides(
    config: &FileStreamConfig,
    mut fields: Vec<Field>,
    no_files: bool,
) -> Result<Schema> {
    let overrides: BTreeMap<&str, DataType> = config
        .schema_overrides
        .iter()
        .map(|(col, ty)| {
            parse_type(ty)
                .map(|t| (col.as_str(), t))
                .map_err(|e| ConnectorError::config(format!("schema_overrides.{col}"), e))
        })
        .collect::<Result<_>>()?;
    for (col, ty) in overrides {
        match fields.iter_mut().find(|f| f.name() == col) {
            Some(field) => *field = Field::new(col, ty, true),
            None if no_files => fields.push(Field::new(col, ty, true)),
            None => {
                return Err(ConnectorError::config(
                    format!("schema_overrides.{col}"),
                    format!(
                        "stream `{}` has no column `{col}`; its columns are: {}",
                        config.name,
                        fields
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        }
    }
    // Null-typed columns (always empty so far) cannot be decoded into; read them as text.
    for field in &mut fields {
        if field.data_type() == &DataType::Null {
            *field = Field::new(field.name(), DataType::Utf8, true);
        }
    }
    Ok(Schema::new(fields))
}
