//! The files source's config.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weft_core::{ConnectorError, Result, StreamName};

use crate::types::parse_type;

/// Config of the `files` source: CSV and JSON Lines files matched by glob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// The streams, one per set of files.
    pub streams: Vec<FileStreamConfig>,
}

/// One stream: the files matching `glob` under `path`, all of one format and schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileStreamConfig {
    /// The stream's name.
    #[schemars(with = "String")]
    pub name: StreamName,
    /// The folder holding the files, relative to the project folder. Files outside it are
    /// never read, whatever the glob says; symbolic links are not followed.
    pub path: PathBuf,
    /// Which files to read, relative to `path` (e.g. `orders/*.csv`, `**/*.jsonl`).
    pub glob: String,
    /// The files' format.
    pub format: FileFormat,
    /// CSV only: the field delimiter, one ASCII character.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// CSV only: whether the first line holds the column names.
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// Column types to use instead of the inferred ones: `int32`, `int64`, `float64`, `utf8`,
    /// `bool`, `date32`, `timestamp` (µs, UTC) or `decimal(p,s)`.
    #[serde(default)]
    pub schema_overrides: BTreeMap<String, String>,
    /// How many rows (across the first files) schema inference looks at.
    #[serde(default = "default_infer_rows")]
    pub infer_rows: usize,
    /// Rows per record batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Comma- (or `delimiter`-) separated values.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

fn default_delimiter() -> char {
    ','
}
fn default_true() -> bool {
    true
}
fn default_infer_rows() -> usize {
    1_000
}
fn default_batch_size() -> usize {
    8_192
}

impl FilesConfig {
    /// Checks what serde cannot: unique names, globs, delimiters, override types.
    pub fn validate(&self) -> Result<()> {
        for (i, s) in self.streams.iter().enumerate() {
            let at = |field: &str| format!("streams[{i}].{field}");
            if self.streams[..i].iter().any(|o| o.name == s.name) {
                return Err(ConnectorError::config(
                    at("name"),
                    format!("stream `{}` is configured twice", s.name),
                ));
            }
            crate::listing::build_glob(&s.glob)
                .map_err(|e| ConnectorError::config(at("glob"), e))?;
            if !s.delimiter.is_ascii() {
                return Err(ConnectorError::config(
                    at("delimiter"),
                    "must be one ASCII character, such as `,`, `;` or a tab",
                ));
            }
            if s.batch_size == 0 {
                return Err(ConnectorError::config(
                    at("batch_size"),
                    "must be at least 1",
                ));
            }
            if s.infer_rows == 0 {
                return Err(ConnectorError::config(
                    at("infer_rows"),
                    "must be at least 1",
                ));
            }
            for (column, ty) in &s.schema_overrides {
                parse_type(ty).map_err(|e| {
                    ConnectorError::config(at(&format!("schema_overrides.{column}")), e)
                })?;
            }
        }
        Ok(())
    }
}
