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
//!   arrival), never replacing a row by one with an older cursor.
//!
//! Existing tables evolve when the stream's columns change: new columns are added and types
//! widened; narrowing or incompatible changes stop the stream with a message naming the
//! table, the column and both types. Connections are plain TCP (TLS is not supported yet).

mod config;
mod connect;
mod destination;
pub mod encode;
pub mod naming;
mod table;
pub mod types;
mod writer;

pub use config::{Password, PgConfig};
pub use destination::{PostgresDestination, PostgresDestinationFactory};
pub use writer::PgWriter;
