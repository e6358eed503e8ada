//! Conventions for values and column types Arrow has no native form for, shared by every
//! connector so that a value one source writes means the same to every destination.
//!
//! * **±infinity dates and timestamps** are the Arrow type's extreme values: a `Date32` of
//!   [`DATE_INFINITY`] / [`DATE_NEG_INFINITY`] days, a `Timestamp` (any unit, with or without a
//!   zone) of [`TIMESTAMP_INFINITY`] / [`TIMESTAMP_NEG_INFINITY`]. This is DuckDB's own encoding
//!   (a Parquet file holding them reads back as `infinity` / `-infinity` there), and no finite
//!   PostgreSQL value maps to them. The PostgreSQL destination writes them back as `infinity`.
//! * **The source's column type** travels in field metadata under [`PG_TYPE`] when the source
//!   is PostgreSQL (`format_type`, e.g. `numeric(50,5)`, `uuid`, `jsonb`, `character(3)`):
//!   a PostgreSQL product store then creates the column with that type where it can. Mappers
//!   that change a column's values (hash, mask) drop the metadata with the old field.
//! * **JSON text**: a Utf8 column holding JSON (nested objects from any source) is marked
//!   with [`JSON_TEXT`]; a PostgreSQL product store stores it as `jsonb`.
//! * **Existing rows of a column added mid-stream** (CDC): [`FILL`] holds the value those rows
//!   read, as PostgreSQL's text form, when it is not NULL (a column added with a constant
//!   `DEFAULT`). A destination applies it to the rows it already holds for the stream.

/// `Date32` days standing for `infinity`.
pub const DATE_INFINITY: i32 = i32::MAX;
/// `Date32` days standing for `-infinity`.
pub const DATE_NEG_INFINITY: i32 = -i32::MAX;
/// `Timestamp` value (in its unit) standing for `infinity`.
pub const TIMESTAMP_INFINITY: i64 = i64::MAX;
/// `Timestamp` value (in its unit) standing for `-infinity`.
pub const TIMESTAMP_NEG_INFINITY: i64 = -i64::MAX;

/// Field metadata key: the column's type in a PostgreSQL source, as `format_type` prints it.
pub const PG_TYPE: &str = "weft.pg_type";

/// Field metadata key marking a Utf8 column of JSON text (nested objects, arrays, values of
/// mixed type) with the value `"true"`; the airbyte source sets it. A PostgreSQL store makes
/// such a column `jsonb`.
pub const JSON_TEXT: &str = "weft.airbyte.json";

/// Field metadata key: the value (PostgreSQL text form) rows that existed before a column was
/// added read for it.
pub const FILL: &str = "weft.fill";
