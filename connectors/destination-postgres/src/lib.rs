//! weft's PostgreSQL product store (`postgres` destination).
//!
//! Each domain gets a schema (its name, or `schema` from the config); each stream a table
//! `"<schema>"."<product>__<stream>"` (see [`naming`] for quoting and long names), created
//! from the Arrow schema with matching types (see [`types`]), plus `_weft_synced_at` and
//! `_weft_run_id` when `metadata_columns` is on. `"<schema>"."_weft_checkpoints"` holds each
//! stream's checkpoint, written in the same transaction as the data it covers.
//!
//! How writes become visible (see the `writer` module):
//! - rows stream into a binary `COPY … FROM STDIN` encoded straight from Arrow ([`encode`]),
//!   inside the commit's transaction; `commit` records the checkpoint and commits;
//! - `overwrite` fills `"<table>__weft_next"` across the run's commits, each recording its
//!   checkpoint as pending; `finish` drops the old table and renames the next one in the
//!   transaction that records the final checkpoint, so readers see the old table or the new
//!   one, never half; a crashed run resumes into the next table from the pending checkpoint;
//! - `append` copies into the table;
//! - `append_dedup` copies into a temporary staging table, then merges by primary key (a
//!   unique index created with the table), keeping the latest cursor (ties: the later
//!   arrival), never replacing a row by one with an older cursor. A first load (no product
//!   table yet: a new stream, or after a reset) copies into `"<table>__weft_next"` like an
//!   overwrite instead, and `finish` settles it by key (deleting older duplicates only when
//!   some key arrived twice), builds the unique index and swaps it in with the final
//!   checkpoint: COPY speed, the same crash guarantees as an overwrite.
//!
//! CDC streams (`sync_mode: cdc`) receive change batches (see the `changes` module):
//! - `append_dedup` keeps the current state: each batch is copied into a staging table and
//!   settled by key in SQL (the last change per key wins: deletes delete, inserts and updates
//!   upsert; unchanged TOASTed values keep the stored value), truncates delete every row, all
//!   inside the commit's transaction; the table gets `_weft_position` (the last change applied
//!   to each row);
//! - `append` keeps a changelog: every change row with `_weft_op`, `_weft_position`,
//!   `_weft_ordinal` and `_weft_commit_ts`. Values PostgreSQL did not resend because they did
//!   not change (unchanged TOASTed values) are null in the changelog.
//!
//! Existing tables evolve when the stream's columns change: new columns are added and types
//! widened; narrowing or incompatible changes stop the stream with a message naming the
//! table, the column and both types.
//!
//! The store is read back as a source for products reading a product kept here (the
//! `reader` module): keyset scans in key order, incrementally by `_weft_synced_at`. Connections are plain TCP (TLS is not supported yet).

mod changes;
mod comments;
mod config;
mod connect;
mod destination;
pub mod encode;
pub mod naming;
mod reader;
mod source_types;
mod table;
mod text_input;
pub mod types;
mod writer;

pub use config::{Password, PgConfig};
pub use destination::{PostgresDestination, PostgresDestinationFactory};
pub use writer::PgWriter;
