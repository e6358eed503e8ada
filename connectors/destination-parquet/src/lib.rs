//! weft's local Parquet lake (`parquet` destination): the embedded default product store.
//!
//! Each stream is a folder `<root>/<domain>/<product>/<stream>/` of zstd-compressed Parquet
//! files (`part-<seq>-<uuid>.parquet`), and `_weft/manifest.json`, the commit record listing
//! exactly the files readers should read, with the stream's schema and the source checkpoint
//! the data covers. The folder is a symlink to the published version, replaced in one step by
//! every publish, so a reader listing it always sees one committed version (see [`versions`]).
//! See [`layout`] for the folders, [`manifest`] for the record, [`lock`] for the one writer.
//!
//! How writes become visible:
//! - batches are encoded on a dedicated thread into files in the stream's staging folder,
//!   rolled past `file_bytes`, row groups capped by `row_group_bytes`, and flushed early when
//!   the row groups buffered by every writer of the process pass `memory_budget_bytes`
//!   (see [`budget`]);
//! - `commit` closes and fsyncs the files and publishes a new version holding them, the
//!   manifest and its checkpoint included; it returns once all of it is durable;
//! - `overwrite` keeps the new generation in `_weft/staging/<generation>/` and records it in
//!   the manifest as `pending` at each commit, so readers keep the old table and a
//!   crashed run resumes; `finish` swaps it in with one manifest write;
//! - `append_dedup` stages its commits the same way and publishes in `finish`, compacted with
//!   the published files to the latest row per key in the same publish (see [`dedup`]),
//!   so readers never see two rows for one key;
//! - opening a stream removes whatever no manifest lists: the leftovers of a crash.
//!
//! CDC streams (sync mode `cdc`) are written from change batches, with change columns
//! (`_weft_op`, `_weft_position`, `_weft_ordinal`, `_weft_commit_ts`, `_weft_unchanged`):
//! `append` keeps the changelog, every change as a row, visible at each commit; `append_dedup`
//! keeps the current state per primary key, settled by a compaction at `finish` (at every
//! commit for streams that follow the log). Added columns are accepted mid-stream. See
//! [`changes`].

mod budget;
pub mod changes;
mod config;
pub mod dedup;
mod destination;
mod encoder;
mod evolution;
pub mod layout;
pub mod lock;
pub mod manifest;
mod product_meta;
pub mod reader;
mod recovery;
mod rewrite;
mod storable;
mod table;
pub mod versions;
mod writer;

pub use config::LakeConfig;
pub use destination::{ParquetLake, ParquetLakeFactory};
pub use layout::stream_dir;
pub use manifest::{
    committed_files, read_manifest, ColumnSpec, DataFile, Manifest, PendingGeneration,
};
pub use reader::LakeReader;
pub use writer::LakeWriter;
