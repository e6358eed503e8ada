//! Planning: matching a product's configured streams against what its source offers, before
//! any row moves.

use std::sync::Arc;

use arrow::datatypes::Schema;
use weft_core::{Catalog, ConfiguredStream, SyncMode, WriteMode};
use weft_mesh::StreamConfig;

use crate::mappers::MapperChain;

/// A stream ready to run: how the source reads it, how the destination writes it, and the
/// mappers in between.
pub(crate) struct StreamPlan {
    pub source_stream: ConfiguredStream,
    pub destination_stream: ConfiguredStream,
    pub mappers: MapperChain,
}

/// Where a planned stream's reads come from and how long they go on.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlanScope {
    /// `domain.product.stream@<project id>`: names server-side resources (replication slots).
    pub pipeline_id: String,
    /// CDC streams keep reading until stopped.
    pub follow: bool,
}

/// Plans one configured stream; the error is worded for the product file's author.
pub(crate) fn plan_stream(
    config: &StreamConfig,
    catalog: &Catalog,
    scope: &PlanScope,
    keys: &weft_governance::Keys,
) -> Result<StreamPlan, String> {
    let Some(descriptor) = catalog.stream(config.name.as_str()) else {
        return Err(format!(
            "the source has no stream `{}`; it offers: {}",
            config.name,
            catalog
                .streams
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    if !descriptor.supported_sync_modes.is_empty()
        && !descriptor.supported_sync_modes.contains(&config.mode)
    {
        return Err(format!(
            "the source cannot read it in `{}` mode; supported: {}",
            config.mode,
            descriptor
                .supported_sync_modes
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let schema = &descriptor.schema;
    let has = |c: &str| schema.field_with_name(c).is_ok();
    if let Some(missing) = config.fields.keys().find(|c| !has(c)) {
        return Err(format!(
            "`fields` describes column `{missing}`, which the source does not have; it offers: {}",
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    if config.mode == SyncMode::Cdc {
        if config.write == WriteMode::Overwrite {
            return Err("cdc streams are written as `append` (a changelog of every change) or `append_dedup` (the current state per primary key), not `overwrite`".into());
        }
        if config.mappers.iter().any(|m| {
            matches!(
                m,
                weft_mesh::Mapper::Filter { .. } | weft_mesh::Mapper::AnyOf(_)
            )
        }) {
            return Err("row filters are not supported on cdc streams (a row leaving the filter would need a delete); filter in a view over the product instead".into());
        }
    }

    // A cursor the source decides wins when the product names none.
    let configured = config
        .cursor
        .clone()
        .or_else(|| descriptor.source_defined_cursor.clone());
    let cursor = match (config.mode, &configured) {
        (SyncMode::Incremental, None) => {
            return Err(format!(
                "incremental mode needs a `cursor`; the source offers: {}",
                if descriptor.cursor_candidates.is_empty() {
                    "none".to_string()
                } else {
                    descriptor.cursor_candidates.join(", ")
                }
            ))
        }
        (_, Some(c)) if !has(c) => {
            return Err(format!("cursor column `{c}` does not exist in the source"))
        }
        (_, c) => c.clone(),
    };
    let primary_key = match &config.primary_key {
        Some(pk) => pk.clone(),
        None => descriptor.primary_key.clone(),
    };
    if let Some(missing) = primary_key.iter().find(|c| !has(c)) {
        return Err(format!(
            "primary key column `{missing}` does not exist in the source"
        ));
    }
    if config.write == WriteMode::AppendDedup && primary_key.is_empty() {
        return Err(
            "append_dedup needs a primary key and the source defines none; set `primary_key`"
                .into(),
        );
    }

    // Change rows are the stream's schema with every column nullable (a delete carries only
    // the key, a truncate nothing), and so is what the destination is opened with.
    let mapped_input = if config.mode == SyncMode::Cdc {
        Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ))
    } else {
        schema.clone()
    };
    let mut mappers = MapperChain::compile_with_keys(
        &mapped_input,
        config.columns.as_deref(),
        &config.mappers,
        keys,
    )
    .map_err(|e| e.to_string())?;

    // The destination sees the mapped names; keys and cursor must survive the mappers.
    let rename = |c: &String, role: &str| {
        mappers.output_name(c).map(str::to_string).ok_or_else(|| {
            format!(
                "the {role} column `{c}` is removed by `columns` or the mappers; {} needs it",
                config.write
            )
        })
    };
    let needs_keys = config.write == WriteMode::AppendDedup;
    let destination_pk = if needs_keys {
        primary_key
            .iter()
            .map(|c| rename(c, "primary key"))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        primary_key
            .iter()
            .filter_map(|c| mappers.output_name(c).map(str::to_string))
            .collect()
    };
    let destination_cursor = match &cursor {
        Some(c) => mappers.output_name(c).map(str::to_string),
        None => None,
    };

    // Columns left out by `columns`, or dropped before any mapper reads them, are not read at
    // all: the source is asked for the rest (a source that sends everything still works).
    // CDC reads whole rows (the change log carries them).
    let mut source_descriptor = descriptor.clone();
    if config.mode != SyncMode::Cdc {
        let mut keep = primary_key.clone();
        keep.extend(cursor.clone());
        let needed = mappers.needed_columns(&keep);
        if needed.len() < schema.fields().len() {
            source_descriptor.schema = Arc::new(Schema::new_with_metadata(
                needed
                    .iter()
                    .map(|&i| schema.field(i).clone())
                    .collect::<Vec<_>>(),
                schema.metadata().clone(),
            ));
            mappers.read_only(needed);
        }
    }
    let source_stream = ConfiguredStream {
        descriptor: source_descriptor,
        sync_mode: config.mode,
        write_mode: config.write,
        cursor_field: cursor,
        primary_key,
        pipeline_id: scope.pipeline_id.clone(),
        follow: scope.follow,
    };
    let mut destination_descriptor = descriptor.clone();
    destination_descriptor.schema = mappers.output_schema().clone();
    let destination_stream = ConfiguredStream {
        descriptor: destination_descriptor,
        sync_mode: config.mode,
        write_mode: config.write,
        cursor_field: destination_cursor,
        primary_key: destination_pk,
        pipeline_id: scope.pipeline_id.clone(),
        follow: scope.follow,
    };
    Ok(StreamPlan {
        source_stream,
        destination_stream,
        mappers,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use weft_core::{StreamDescriptor, StreamName};
    use weft_mesh::Mapper;

    use super::*;

    fn catalog(primary_key: &[&str]) -> Catalog {
        Catalog {
            streams: vec![StreamDescriptor {
                name: StreamName::new("events").unwrap(),
                schema: Arc::new(Schema::new(vec![
                    Field::new("id", DataType::Int64, false),
                    Field::new("at", DataType::Int64, false),
                ])),
                primary_key: primary_key.iter().map(|s| s.to_string()).collect(),
                cursor_candidates: vec!["at".into()],
                source_defined_cursor: None,
                supported_sync_modes: vec![SyncMode::FullRefresh, SyncMode::Incremental],
                row_estimate: None,
            }],
        }
    }

    fn config(write: WriteMode, cursor: Option<&str>, mappers: Vec<Mapper>) -> StreamConfig {
        StreamConfig {
            name: StreamName::new("events").unwrap(),
            mode: SyncMode::Incremental,
            write,
            cursor: cursor.map(str::to_string),
            primary_key: None,
            columns: None,
            mappers,
            description: None,
            fields: Default::default(),
        }
    }

    #[test]
    fn the_source_key_is_used_and_followed_through_renames() {
        let plan = plan_stream(
            &config(
                WriteMode::AppendDedup,
                Some("at"),
                vec![Mapper::Rename {
                    from: "id".into(),
                    to: "event_id".into(),
                }],
            ),
            &catalog(&["id"]),
            &PlanScope::default(),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(plan.source_stream.primary_key, ["id"]);
        assert_eq!(plan.destination_stream.primary_key, ["event_id"]);
        assert_eq!(plan.destination_stream.cursor_field.as_deref(), Some("at"));
    }

    #[test]
    fn dedup_without_any_key_is_refused() {
        let err = plan_stream(
            &config(WriteMode::AppendDedup, Some("at"), vec![]),
            &catalog(&[]),
            &PlanScope::default(),
            &Default::default(),
        )
        .err()
        .unwrap();
        assert_eq!(
            err,
            "append_dedup needs a primary key and the source defines none; set `primary_key`"
        );
    }

    #[test]
    fn a_key_dropped_by_mappers_is_refused() {
        let err = plan_stream(
            &config(
                WriteMode::AppendDedup,
                Some("at"),
                vec![Mapper::Drop(vec!["id".into()])],
            ),
            &catalog(&["id"]),
            &PlanScope::default(),
            &Default::default(),
        )
        .err()
        .unwrap();
        assert_eq!(
            err,
            "the primary key column `id` is removed by `columns` or the mappers; append_dedup needs it"
        );
    }

    #[test]
    fn a_source_defined_cursor_serves_when_none_is_named() {
        let mut cat = catalog(&["id"]);
        let err = plan_stream(
            &config(WriteMode::Append, None, vec![]),
            &cat,
            &PlanScope::default(),
            &Default::default(),
        )
        .err()
        .unwrap();
        assert_eq!(
            err,
            "incremental mode needs a `cursor`; the source offers: at"
        );
        cat.streams[0].source_defined_cursor = Some("at".into());
        let plan = plan_stream(
            &config(WriteMode::Append, None, vec![]),
            &cat,
            &PlanScope::default(),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(plan.source_stream.cursor_field.as_deref(), Some("at"));
    }

    #[test]
    fn unknown_stream_and_cursor_are_named() {
        let mut c = config(WriteMode::Append, Some("nope"), vec![]);
        let err = plan_stream(
            &c,
            &catalog(&["id"]),
            &PlanScope::default(),
            &Default::default(),
        )
        .err()
        .unwrap();
        assert_eq!(err, "cursor column `nope` does not exist in the source");
        c.name = StreamName::new("other").unwrap();
        let err = plan_stream(
            &c,
            &catalog(&["id"]),
            &PlanScope::default(),
            &Default::default(),
        )
        .err()
        .unwrap();
        assert_eq!(err, "the source has no stream `other`; it offers: events");
    }
}
