//! The lake's typed config and the Parquet writer properties derived from it.

use std::path::PathBuf;

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use schemars::JsonSchema;
use serde::Deserialize;
use weft_core::{ConnectorError, Result};

const MIB: u64 = 1024 * 1024;

/// Config of the `parquet` destination (a domain's local Parquet lake).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// Root folder of the lake; relative paths are relative to the project folder. Streams land
    /// in `<path>/<domain>/<product>/<stream>/`.
    pub path: PathBuf,
    /// Cap of one row group, in encoded (compressed) bytes (default 64 MiB). The writer holds
    /// the row group being written in memory, so this bounds its memory per stream.
    #[serde(default = "default_row_group_bytes")]
    pub row_group_bytes: u64,
    /// Cap of one row group, in rows (default 1,048,576): whichever of the two caps comes
    /// first closes the group. An `append_dedup` merge re-encodes only the row groups holding
    /// a changed key and copies the others as bytes, so bounded groups keep a merge of a few
    /// clustered keys (recent rows) from re-encoding a whole large file; a table of narrow
    /// rows would otherwise be a single group of millions of rows under the byte cap.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: u64,
    /// A data file is closed and a new one started past this size, in bytes (default 512 MiB).
    #[serde(default = "default_file_bytes")]
    pub file_bytes: u64,
    /// zstd compression level (default 3; 1 to 22, negative levels are faster still).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// `append_dedup`: new rows a compaction settles at a time (default 500,000). It holds
    /// about 50 bytes per row of one such part in memory (integer key, timestamp cursor);
    /// more new rows than this (a first load) are settled in parts by key hash, each part
    /// reading the key columns again.
    #[serde(default = "default_merge_keys")]
    pub merge_keys: u64,
    /// Bytes of row groups every lake writer of the process may buffer together (default
    /// 268435456, 256 MiB): past it the largest buffers are written out as (smaller) row
    /// groups, so memory does not grow with the number of streams written at once. When
    /// several lakes set it, the smallest applies.
    #[serde(default = "default_memory_budget")]
    pub memory_budget_bytes: u64,
}

fn default_memory_budget() -> u64 {
    crate::budget::DEFAULT_BUDGET
}

fn default_merge_keys() -> u64 {
    500_000
}

fn default_row_group_bytes() -> u64 {
    // Large enough for readers to scan efficiently, small enough that a stream's writer stays
    // well inside a 256 MB budget next to the batches in flight.
    64 * MIB
}

fn default_row_group_rows() -> u64 {
    // Parquet's own default, and what readers scan well (DuckDB splits larger groups).
    1024 * 1024
}

fn default_file_bytes() -> u64 {
    512 * MIB
}

fn default_zstd_level() -> i32 {
    3
}

impl LakeConfig {
    /// Checks the values serde cannot: sizes above zero, a zstd level zstd accepts.
    pub fn validate(&self) -> Result<()> {
        if self.row_group_bytes == 0 {
            return Err(ConnectorError::config(
                "row_group_bytes",
                "must be above 0 (the default is 67108864, 64 MiB)",
            ));
        }
        if self.row_group_rows == 0 {
            return Err(ConnectorError::config(
                "row_group_rows",
                "must be above 0 (the default is 1048576)",
            ));
        }
        if self.merge_keys == 0 {
            return Err(ConnectorError::config(
                "merge_keys",
                "must be above 0 (the default is 500000)",
            ));
        }
        if self.memory_budget_bytes < MIB {
            return Err(ConnectorError::config(
                "memory_budget_bytes",
                "must be at least 1048576 (1 MiB; the default is 268435456, 256 MiB)",
            ));
        }
        if self.file_bytes == 0 {
            return Err(ConnectorError::config(
                "file_bytes",
                "must be above 0 (the default is 536870912, 512 MiB)",
            ));
        }
        self.zstd()?;
        Ok(())
    }

    fn zstd(&self) -> Result<ZstdLevel> {
        ZstdLevel::try_new(self.zstd_level).map_err(|_| {
            ConnectorError::config(
                "zstd_level",
                format!(
                    "{} is not a zstd level; use 1 (fast) to 22 (small), default 3",
                    self.zstd_level
                ),
            )
        })
    }

    /// Writer properties: zstd, page statistics, row groups capped by bytes as well as rows
    /// (rows alone can hold gigabytes in memory for wide rows).
    pub(crate) fn writer_properties(&self) -> Result<WriterProperties> {
        Ok(WriterProperties::builder()
            .set_compression(Compression::ZSTD(self.zstd()?))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(
                usize::try_from(self.row_group_rows).unwrap_or(usize::MAX),
            ))
            .set_max_row_group_bytes(Some(
                usize::try_from(self.row_group_bytes).unwrap_or(usize::MAX),
            ))
            .build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_apply() {
        let cfg: LakeConfig = weft_core::parse_config(&json!({"path": "lake"})).unwrap();
        assert_eq!(cfg.row_group_bytes, 64 * MIB);
        assert_eq!(cfg.row_group_rows, 1024 * 1024);
        assert_eq!(cfg.file_bytes, 512 * MIB);
        assert_eq!(cfg.zstd_level, 3);
        assert_eq!(cfg.merge_keys, 500_000);
        assert_eq!(cfg.memory_budget_bytes, 256 * MIB);
        cfg.validate().unwrap();
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let err = weft_core::parse_config::<LakeConfig>(&json!({"path": "x", "rowgroup": 1}))
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `rowgroup`"),
            "{err}"
        );

        let cfg: LakeConfig =
            weft_core::parse_config(&json!({"path": "x", "zstd_level": 99})).unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("`zstd_level`") && err.contains("99"), "{err}");

        let cfg: LakeConfig =
            weft_core::parse_config(&json!({"path": "x", "file_bytes": 0})).unwrap();
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`file_bytes`"));
    }
}
