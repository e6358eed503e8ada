//! PostgreSQL → PostgreSQL: the source's column types, kept where weft can write them.
//!
//! A PostgreSQL source puts each column's type (`format_type`) in its Arrow field's metadata
//! (`weft_core::values::PG_TYPE`). Where the Arrow type alone would lose it (text for `uuid`,
//! `json`, `jsonb`, `xml`, `inet`, `cidr`, `macaddr`, `character(n)`, `character varying(n)`,
//! enums, `numeric` beyond Decimal128, and arrays of these), the product table gets the
//! source's type and the writer turns the source's text form into that type's binary form
//! ([`crate::text_input`]). Other types follow the Arrow mapping ([`crate::types`]) and each
//! column whose type then differs from the source's is logged with the reason when the stream
//! opens:
//! - `money` becomes `numeric` (money's text and binary forms depend on the server's
//!   `lc_monetary`; the value is exact);
//! - an enum is kept when the product store has a type of that name (the source's labels must
//!   exist in it), else it is text;
//! - types weft has no writer for (ranges, composites, bit strings, `timetz`, `tsvector`,
//!   geometric and extension types) are their text.
//!
//! Utf8 columns of JSON text from any source (`weft_core::values::JSON_TEXT`: nested objects
//! from an Airbyte connector) become `jsonb` the same way.
//!
//! **Decision:** a table created before weft kept source types keeps its columns (a `text`
//! column stays text and is written as text) rather than stopping the stream: see
//! [`crate::table::Layout::arrow_types`].

use tokio_postgres::Client;
use weft_core::arrow_schema::{DataType, Field};
use weft_core::values::{JSON_TEXT, PG_TYPE};
use weft_core::Result;

use crate::table::Layout;
use crate::types::PgType;

/// Sets `layout`'s column types from the source types its fields carry.
pub async fn resolve(client: &Client, layout: &mut Layout, fields: &[&Field]) -> Result<()> {
    for (i, field) in fields.iter().enumerate() {
        let Some(source) = field.metadata().get(PG_TYPE) else {
            // JSON text from any source (nested objects) is jsonb.
            if field.data_type() == &DataType::Utf8
                && field.metadata().get(JSON_TEXT).is_some_and(|v| v == "true")
            {
                layout.columns[i].1 = PgType::Jsonb;
            }
            continue;
        };
        let arrow = &layout.arrow_types[i];
        let chosen = kept(client, layout, field.data_type(), source)
            .await?
            .unwrap_or_else(|| arrow.clone());
        if !same(&chosen, source) {
            tracing::warn!(
                "{}: column `{}` ({source} in the source) is stored as {}: {}",
                layout.label,
                field.name(),
                chosen.sql(),
                reason(source, arrow)
            );
        }
        layout.columns[i].1 = chosen;
    }
    Ok(())
}

/// Whether `chosen` is the source's type (as `format_type` prints both).
fn same(chosen: &PgType, source: &str) -> bool {
    chosen.sql() == source || PgType::parse(source) == *chosen
}

fn reason(source: &str, arrow: &PgType) -> String {
    match source {
        "money" => "money's text depends on the server's lc_monetary; its exact value is kept as \
                    numeric"
            .into(),
        "oid" => "oid values are kept in a bigint".into(),
        "name" => "name values are kept as text".into(),
        _ if *arrow == PgType::Text => format!(
            "weft has no binary writer for {source}, so its text form is kept (an enum is kept \
             when the product store has a type of that name, with the same labels)"
        ),
        _ => format!("{} is the closest type weft writes", arrow.sql()),
    }
}

/// The source's type when the column can be written in it: Arrow text (or a list of text)
/// whose PostgreSQL type weft can write from text.
async fn kept(
    client: &Client,
    layout: &Layout,
    data_type: &DataType,
    source: &str,
) -> Result<Option<PgType>> {
    Ok(match data_type {
        DataType::Utf8 => scalar(client, layout, source).await?,
        // A list of lists is a multi-dimensional array of the same type (`uuid[]`).
        DataType::List(item) if innermost(item.data_type()) == &DataType::Utf8 => {
            match source.strip_suffix("[]") {
                Some(element) => scalar(client, layout, element)
                    .await?
                    .map(|t| PgType::Array(Box::new(t))),
                None => None,
            }
        }
        _ => None,
    })
}

/// The element type under any number of list levels.
fn innermost(data_type: &DataType) -> &DataType {
    match data_type {
        DataType::List(item) => innermost(item.data_type()),
        other => other,
    }
}

async fn scalar(client: &Client, layout: &Layout, source: &str) -> Result<Option<PgType>> {
    let named = |oid: u32| {
        Some(PgType::Named {
            sql: source.to_string(),
            oid,
        })
    };
    Ok(match source {
        "uuid" => Some(PgType::Uuid),
        "jsonb" => Some(PgType::Jsonb),
        "json" => named(114),
        "xml" => named(142),
        "inet" => Some(PgType::Inet),
        "cidr" => Some(PgType::Cidr),
        "macaddr" => Some(PgType::Macaddr),
        "text" | "name" => None,
        "money" => Some(PgType::Numeric(None)),
        _ if source.starts_with("character(") => named(1042),
        _ if source == "numeric" || source.starts_with("numeric(") => {
            Some(PgType::parse(source)).filter(|t| matches!(t, PgType::Numeric(_)))
        }
        _ if source.starts_with("character varying") => {
            Some(PgType::parse(source)).filter(|t| matches!(t, PgType::Varchar(_)))
        }
        _ => enum_type(client, layout, source).await?.and_then(named),
    })
}

/// The OID of the product store's enum type named `source`, if it has one.
async fn enum_type(client: &Client, layout: &Layout, source: &str) -> Result<Option<u32>> {
    let row = client
        .query_opt(
            "SELECT t.oid::int8 FROM pg_type t WHERE t.oid = to_regtype($1) AND t.typtype = 'e'",
            &[&source],
        )
        .await
        .map_err(|e| layout.sql_error("looking up an enum type", e))?;
    Ok(row.map(|r| r.get::<_, i64>(0) as u32))
}
