//! The `postgres` source: tables, views and materialized views of a PostgreSQL database, read
//! with binary `COPY … TO STDOUT (FORMAT binary)` decoded straight into Arrow.
//!
//! * Streams are `schema.table` for the configured schemas ([`discover`]).
//! * Full refresh splits large tables into key or ctid ranges read in parallel inside one
//!   exported snapshot, with per-range checkpoints so a crash resumes mid-table
//!   ([`full_refresh`], the resume rules in [`state`]).
//! * Incremental reads order by (cursor, primary key) and checkpoint after every batch
//!   ([`incremental`]). Rows committed late with a cursor older than the last checkpoint are
//!   missed, and rows with a NULL cursor are never read: use CDC where that matters.
//! * Type mapping (and what happens to NaN, ±infinity, multi-dimensional arrays and types
//!   without a binary decoder) is in [`types`].
//! * CDC reads changes from a logical replication slot after an initial snapshot handed over
//!   with no gap and no overlap ([`cdc`]; the checkpoint is [`state::CdcState`]).
//! * Connections are plain TCP: TLS is not supported yet.
//!
//! Modules: [`config`], `connect` (sessions and error wording), [`discover`], [`types`],
//! `numeric`, `decode` (the binary COPY decoder), `read` (shared read plumbing),
//! [`full_refresh`], [`incremental`], [`state`], `sql` (quoting).

use std::sync::Arc;

use async_trait::async_trait;
use weft_core::{
    parse_config, spec_of, Catalog, Checkpoint, ConfiguredStream, ConnectorContext, ConnectorError,
    MessageStream, Position, Result, Source, SourceFactory, SyncMode,
};

pub mod cdc;
pub mod config;
mod connect;
mod decode;
pub mod discover;
pub mod full_refresh;
pub mod incremental;
mod numeric;
mod read;
mod sql;
pub mod state;
pub mod types;

pub use config::{PostgresConfig, Secret, Transport};
pub use state::PgState;

use crate::connect::{connect, grant_select, query_error};
use crate::discover::PgTable;
use crate::read::ReadCtx;
use crate::sql::quote_ident;

/// Builds [`PostgresSource`]s; registered as `postgres`.
#[derive(Debug, Default, Clone, Copy)]
pub struct PostgresSourceFactory;

impl SourceFactory for PostgresSourceFactory {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn description(&self) -> &'static str {
        "PostgreSQL tables, views and materialized views: full refresh by parallel COPY ranges, incremental, and CDC (logical replication) for tables"
    }
    fn spec(&self) -> serde_json::Value {
        spec_of::<PostgresConfig>()
    }
    fn build(
        &self,
        config: &serde_json::Value,
        _ctx: &ConnectorContext,
    ) -> Result<Box<dyn Source>> {
        let config: PostgresConfig = parse_config(config)?;
        Ok(Box::new(PostgresSource::new(config)?))
    }
}

/// The PostgreSQL source.
#[derive(Debug, Clone)]
pub struct PostgresSource {
    config: Arc<PostgresConfig>,
    /// Acked CDC positions per pipeline, shared by `ack` and the pipeline's read.
    acks: cdc::AckMap,
}

impl PostgresSource {
    pub fn new(config: PostgresConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config: Arc::new(config),
            acks: Default::default(),
        })
    }

    /// The table behind `stream` (`schema.table` of a configured schema).
    async fn table(&self, client: &tokio_postgres::Client, stream: &str) -> Result<PgTable> {
        for schema in &self.config.schemas {
            let Some(table) = stream
                .strip_prefix(schema.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
            else {
                continue;
            };
            let found =
                discover::tables(client, &self.config.schemas, Some((schema, table))).await?;
            if let Some(t) = found.into_iter().next() {
                return Ok(t);
            }
        }
        Err(ConnectorError::StreamNotFound(stream.to_string()))
    }
}

#[async_trait]
impl Source for PostgresSource {
    async fn check(&self) -> Result<()> {
        let client = connect(&self.config).await?;
        let rows = client
            .query(
                "SELECT s, n.oid IS NOT NULL, coalesce(has_schema_privilege(n.oid, 'USAGE'), false)
                 FROM unnest($1::text[]) s LEFT JOIN pg_namespace n ON n.nspname = s",
                &[&self.config.schemas],
            )
            .await
            .map_err(|e| query_error("checking schemas", &e))?;
        for r in &rows {
            let schema: String = r.get(0);
            if !r.get::<_, bool>(1) {
                return Err(ConnectorError::config(
                    "schemas",
                    format!(
                        "schema `{schema}` does not exist in database `{}`",
                        self.config.database
                    ),
                ));
            }
            if !r.get::<_, bool>(2) {
                return Err(ConnectorError::Other(format!(
                    "user `{}` may not use schema `{schema}`; run `GRANT USAGE ON SCHEMA {} TO {};`",
                    self.config.user,
                    quote_ident(&schema),
                    quote_ident(&self.config.user)
                )));
            }
        }
        let denied: Vec<PgTable> = discover::tables(&client, &self.config.schemas, None)
            .await?
            .into_iter()
            .filter(|t| !t.can_select)
            .collect();
        if !denied.is_empty() {
            let names: Vec<String> = denied
                .iter()
                .map(|t| format!("`{}`", t.stream_name()))
                .collect();
            let grants: Vec<String> = denied
                .iter()
                .map(|t| grant_select(&t.schema, &t.name, &self.config.user))
                .collect();
            return Err(ConnectorError::Other(format!(
                "user `{}` may not read {}; run: {}",
                self.config.user,
                names.join(", "),
                grants.join(" ")
            )));
        }
        Ok(())
    }

    async fn discover(&self) -> Result<Catalog> {
        let client = connect(&self.config).await?;
        let tables = discover::tables(&client, &self.config.schemas, None).await?;
        Ok(Catalog {
            streams: tables.iter().filter_map(PgTable::descriptor).collect(),
        })
    }

    async fn read(
        &self,
        stream: &ConfiguredStream,
        state: Option<&Checkpoint>,
    ) -> Result<MessageStream> {
        let name = stream.name().as_str();
        let state: Option<PgState> = state
            .map(|cp| {
                cp.decode().map_err(|e| {
                    ConnectorError::Other(format!(
                        "stream `{name}`: the saved state is not a postgres-source checkpoint \
                         ({e}); reset the stream's state to read it from the start"
                    ))
                })
            })
            .transpose()?;
        let client = connect(&self.config).await?;
        let table = self.table(&client, name).await?;
        drop(client);
        if !table.can_select {
            return Err(ConnectorError::Other(format!(
                "stream `{name}`: user `{}` may not read it; run `{}`",
                self.config.user,
                grant_select(&table.schema, &table.name, &self.config.user)
            )));
        }
        // The engine may ask for some of the columns (the others are not selected): only
        // those are read, so a column weft cannot decode stays out of the way.
        let wanted = &stream.descriptor.schema;
        let mut table = table;
        if stream.sync_mode != SyncMode::Cdc && wanted.fields().len() < table.columns.len() {
            table
                .columns
                .retain(|c| wanted.field_with_name(&c.name).is_ok());
        }
        let ctx = ReadCtx::new(self.config.clone(), table);
        if ctx.schema.fields() != wanted.fields() {
            return Err(ConnectorError::Schema(format!(
                "stream `{name}`: the table's columns changed since it was discovered; rerun the sync (or `weft connector discover`)"
            )));
        }
        match stream.sync_mode {
            SyncMode::FullRefresh => full_refresh::start(ctx, state).await,
            SyncMode::Incremental => incremental::start(ctx, stream, state).await,
            SyncMode::Cdc => {
                let state = match state {
                    None => None,
                    Some(PgState::Cdc(s)) => Some(s),
                    Some(_) => {
                        return Err(ConnectorError::Other(format!(
                            "stream `{name}`: the saved state is not a CDC checkpoint (the \
                             stream's sync mode changed?); run `weft sync reset` for it to \
                             start over"
                        )))
                    }
                };
                cdc::start(ctx, stream, state, &self.acks).await
            }
        }
    }

    async fn ack(&self, stream: &ConfiguredStream, checkpoint: &Checkpoint) -> Result<()> {
        cdc::ack(&self.config, &self.acks, stream, checkpoint).await
    }

    async fn lag_bytes(&self, stream: &ConfiguredStream) -> Result<Option<u64>> {
        cdc::lag_bytes(&self.config, stream).await
    }

    async fn reset(&self, stream: &ConfiguredStream) -> Result<()> {
        cdc::reset(&self.config, stream).await
    }

    fn describe_position(&self, checkpoint: &Checkpoint) -> Position {
        match checkpoint.decode::<PgState>() {
            Ok(PgState::Incremental {
                cursor_field,
                key,
                position,
                from,
            }) => incremental::describe(&cursor_field, &key, position.as_deref(), from.as_deref()),
            Ok(PgState::FullRefresh {
                ranges, complete, ..
            }) => Position::Ranges {
                done: ranges.iter().filter(|r| r.done).count(),
                total: ranges.len(),
                complete,
            },
            Ok(PgState::Cdc(cdc)) => Position::Log {
                lsn: cdc.lsn.to_string(),
                phase: match cdc.phase {
                    state::CdcPhase::Snapshot => "snapshot".into(),
                    state::CdcPhase::Stream => "stream".into(),
                },
            },
            Err(_) => Position::Opaque {
                checkpoint: checkpoint.position().clone(),
            },
        }
    }

    fn position_from_cursor(&self, stream: &ConfiguredStream, value: &str) -> Result<Checkpoint> {
        if stream.sync_mode != SyncMode::Incremental {
            return Err(ConnectorError::Unsupported(format!(
                "stream `{}` is read in `{}` mode: only incremental streams have a cursor to set",
                stream.name(),
                stream.sync_mode
            )));
        }
        incremental::checkpoint_from_cursor(stream, value)
    }
}
