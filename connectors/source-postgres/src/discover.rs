//! Discovery from `pg_catalog`: the tables, views and materialized views of the configured
//! schemas, their columns mapped to Arrow ([`crate::types`]), primary keys, cursor candidates
//! and row estimates.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_schema::{Field, Schema, SchemaRef};
use tokio_postgres::Client;
use weft_core::{values, Result, StreamDescriptor, StreamName, SyncMode};

use crate::connect::query_error;
use crate::sql::quote_ident;
use crate::types::{kind_of, oid, Kind, PgType};

/// One column as read.
#[derive(Debug, Clone)]
pub struct PgColumn {
    pub name: String,
    /// `format_type` of the base type, for typed literals (`'…'::timestamp with time zone`).
    pub sql_type: String,
    /// The binary decoder, or `None` when selected as `col::text`.
    pub kind: Option<Kind>,
    /// A cast the SELECT applies before decoding with `kind` (`money` is read as `numeric`,
    /// never as locale-formatted text). CDC cannot apply it (pgoutput sends the raw type).
    pub cast: Option<&'static str>,
    pub not_null: bool,
    /// The value rows not rewritten since the column was added read for it, as text, when
    /// it was added with a constant `DEFAULT` (`pg_attribute.attmissingval`). PostgreSQL never
    /// logs those rows: a destination that adds the column fills it with this.
    pub fill: Option<String>,
    /// The column has a default but no stored value for older rows. For a column added after
    /// the stream started: it was added with a volatile default (the table was rewritten,
    /// unlogged), got its default later, or the table was rewritten since, so a CDC stream
    /// cannot know what the older rows hold.
    pub default_rewrote_rows: bool,
}

impl PgColumn {
    /// The Arrow kind the column arrives as (text casts arrive as text).
    pub fn read_kind(&self) -> Kind {
        self.kind.clone().unwrap_or(Kind::Text)
    }

    /// The Arrow field, carrying the PostgreSQL type in its metadata
    /// ([`weft_core::values::PG_TYPE`]) so a PostgreSQL product store can keep it.
    pub fn field(&self) -> Field {
        let mut metadata: HashMap<String, String> =
            HashMap::from([(values::PG_TYPE.to_string(), self.sql_type.clone())]);
        if let Some(fill) = &self.fill {
            metadata.insert(values::FILL.to_string(), fill.clone());
        }
        Field::new(&self.name, self.read_kind().data_type(), !self.not_null).with_metadata(metadata)
    }

    /// The column in a SELECT list: as is, through its cast, or as text.
    pub fn select_expr(&self) -> String {
        match (&self.kind, self.cast) {
            (Some(_), None) => quote_ident(&self.name),
            (Some(_), Some(cast)) => format!("{}::{cast}", quote_ident(&self.name)),
            (None, _) => format!("{}::text", quote_ident(&self.name)),
        }
    }
}

/// A relation of a configured schema.
#[derive(Debug, Clone)]
pub struct PgTable {
    pub schema: String,
    pub name: String,
    /// `r` table, `p` partitioned table, `v` view, `m` materialized view, `f` foreign table.
    pub relkind: char,
    pub columns: Vec<PgColumn>,
    pub primary_key: Vec<String>,
    pub row_estimate: Option<u64>,
    pub can_select: bool,
}

impl PgTable {
    pub fn stream_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns.iter().map(PgColumn::field).collect::<Vec<_>>(),
        ))
    }

    pub fn column(&self, name: &str) -> Option<&PgColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn descriptor(&self) -> Option<StreamDescriptor> {
        // Names weft cannot use as folder names (say `_audit`) are skipped; discover lists them.
        let name = StreamName::new(self.stream_name()).ok()?;
        let mut candidates: Vec<(bool, String)> = self
            .columns
            .iter()
            .filter_map(|c| {
                let time = matches!(
                    c.kind,
                    Some(Kind::TimestampTz | Kind::Timestamp | Kind::Date)
                );
                let int = matches!(c.kind, Some(Kind::Int2 | Kind::Int4 | Kind::Int8));
                (time || int).then(|| (!time, c.name.clone()))
            })
            .collect();
        candidates.sort_by_key(|(later, _)| *later);
        Some(StreamDescriptor {
            name,
            schema: self.arrow_schema(),
            primary_key: self.primary_key.clone(),
            cursor_candidates: candidates.into_iter().map(|(_, n)| n).collect(),
            source_defined_cursor: None,
            supported_sync_modes: if matches!(self.relkind, 'r' | 'p') {
                vec![SyncMode::FullRefresh, SyncMode::Incremental, SyncMode::Cdc]
            } else {
                vec![SyncMode::FullRefresh, SyncMode::Incremental]
            },
            row_estimate: self.row_estimate,
        })
    }
}

const RELATIONS: &str = "
SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text,
       c.reltuples::float8, has_table_privilege(c.oid, 'SELECT')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
ORDER BY n.nspname, c.relname";

const COLUMNS: &str = "
SELECT a.attrelid::int8, a.attname::text, a.attnotnull,
       format_type(bt.oid, CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END),
       bt.oid::int8, (CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END)::int4,
       bt.typtype = 'e', et.oid::int8, coalesce(et.typtype = 'e', false),
       coalesce(et.typtype IN ('d', 'c', 'r', 'm') OR et.typcategory = 'A', false),
       a.atthasmissing, (a.attmissingval::text::text[])[1], d.oid IS NOT NULL,
       (CASE WHEN t.typtype = 'd' THEN t.typndims ELSE a.attndims END)::int4
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A' AND bt.typelem <> 0
WHERE a.attrelid::int8 = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum";

const PRIMARY_KEYS: &str = "
SELECT i.indrelid::int8, a.attname::text
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indisprimary AND i.indrelid::int8 = ANY($1)
ORDER BY i.indrelid, k.ord";

/// Lists the relations of `schemas` (all of them when `only` is `None`, else that one).
pub async fn tables(
    client: &Client,
    schemas: &[String],
    only: Option<(&str, &str)>,
) -> Result<Vec<PgTable>> {
    let schemas: Vec<String> = match only {
        Some((schema, _)) => vec![schema.to_string()],
        None => schemas.to_vec(),
    };
    let rows = client
        .query(RELATIONS, &[&schemas])
        .await
        .map_err(|e| query_error("listing tables", &e))?;
    let mut tables: Vec<(i64, PgTable)> = rows
        .iter()
        .filter(|r| match only {
            Some((_, table)) => r.get::<_, String>(2) == table,
            None => true,
        })
        .map(|r| {
            let estimate: f64 = r.get(4);
            let relkind: String = r.get(3);
            (
                r.get(0),
                PgTable {
                    schema: r.get(1),
                    name: r.get(2),
                    relkind: relkind.chars().next().unwrap_or('r'),
                    columns: Vec::new(),
                    primary_key: Vec::new(),
                    row_estimate: (estimate >= 0.0).then_some(estimate as u64),
                    can_select: r.get(5),
                },
            )
        })
        .collect();
    let oids: Vec<i64> = tables.iter().map(|(oid, _)| *oid).collect();
    let index: BTreeMap<i64, usize> = oids.iter().enumerate().map(|(i, o)| (*o, i)).collect();
    for r in client
        .query(COLUMNS, &[&oids])
        .await
        .map_err(|e| query_error("listing columns", &e))?
    {
        let table = &mut tables[index[&r.get::<_, i64>(0)]].1;
        let elem: Option<i64> = r.get(7);
        let elem_is_complex: bool = r.get(9);
        let t = PgType {
            base_oid: r.get::<_, i64>(4) as u32,
            base_typmod: r.get(5),
            base_is_enum: r.get(6),
            elem_oid: elem.map(|e| e as u32),
            elem_is_enum: r.get(8),
            ndims: r.get(13),
        };
        // Arrays of domains, composites or ranges have no list decoder: read as text.
        let (kind, cast) = if elem.is_some() && elem_is_complex {
            (None, None)
        } else if t.elem_oid.is_none() && t.base_oid == oid::MONEY {
            // money's text is locale-formatted (`$1,234.56`); its numeric value is exact.
            (Some(Kind::NumericText), Some("numeric"))
        } else {
            (kind_of(&t), None)
        };
        table.columns.push(PgColumn {
            name: r.get(1),
            sql_type: r.get(3),
            kind,
            cast,
            not_null: r.get(2),
            fill: r.get(11),
            default_rewrote_rows: r.get::<_, bool>(12) && !r.get::<_, bool>(10),
        });
    }
    for r in client
        .query(PRIMARY_KEYS, &[&oids])
        .await
        .map_err(|e| query_error("listing primary keys", &e))?
    {
        tables[index[&r.get::<_, i64>(0)]]
            .1
            .primary_key
            .push(r.get(1));
    }
    Ok(tables.into_iter().map(|(_, t)| t).collect())
}
