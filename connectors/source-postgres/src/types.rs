//! How each PostgreSQL column becomes an Arrow column: decoded from the binary COPY format
//! ([`Kind`]), or selected as `col::text` when weft has no binary decoder for its type.
//!
//! Every field carries the column's PostgreSQL type (`format_type`, domains resolved) in its
//! metadata under `weft_core::values::PG_TYPE`, so a PostgreSQL product store can keep it.
//!
//! | PostgreSQL | Arrow |
//! | --- | --- |
//! | bool | Boolean |
//! | int2 / int4 / int8 / oid | Int16 / Int32 / Int64 / UInt32 |
//! | float4 / float8 | Float32 / Float64 |
//! | numeric(p,s), 0 ≤ s ≤ p ≤ 38 | Decimal128(p,s); a `NaN` value is an error naming the column |
//! | numeric (no precision, or p > 38) | Utf8, the exact text (`NaN`, `Infinity`, `-Infinity` as PostgreSQL writes them) |
//! | text / varchar / char(n) / name / enums | Utf8 |
//! | json / jsonb | Utf8 holding the JSON text |
//! | uuid | Utf8, lower-case hyphenated (readable by any Parquet consumer) |
//! | bytea | Binary |
//! | date | Date32; `±infinity` as the extreme values `weft_core::values` documents (`i32::MAX`, `-i32::MAX`) |
//! | time | Time64(µs) |
//! | timestamp | Timestamp(µs); `±infinity` as `i64::MAX`, `-i64::MAX`; a value after 294247-01-10 (beyond Arrow's µs range) is an error naming the column |
//! | timestamptz | Timestamp(µs, "UTC"); as timestamp |
//! | interval | Interval(MonthDayNano) |
//! | arrays of the above | List of the element type, nested once per declared dimension (`int[]` → `List<Int32>`, `int[][]` → `List<List<Int32>>`); see below |
//! | money | Utf8, its exact `numeric` text (selected as `col::numeric`, never the locale's `$1,234.56`); CDC refuses it |
//! | domains | as their base type |
//! | everything else (timetz, inet, cidr, macaddr, bit, varbit, xml, tsvector, ranges, composites, "char", extension types…) | Utf8, selected as `col::text` (a warning names the column) |
//!
//! **Arrays.** A column's Arrow type is fixed when it is discovered, but PostgreSQL does not fix
//! an array column's number of dimensions: `int[]`, `int[][]` and `int[3]` are one type whose
//! values may have any number of dimensions, and the declared count (`attndims`, a domain's
//! `typndims`) is only documentation. weft does what DuckDB's PostgreSQL scanner does: the
//! declared dimensions give the nesting (none declared, as in views and `CREATE TABLE AS`,
//! counts as one), values with that many dimensions are read as nested lists in row-major
//! order (`{{1,2},{3,NULL}}` → `[[1,2],[3,null]]`), an empty array is an empty list at any
//! depth, and a value with another number of dimensions is an error naming the column, the
//! value's and the declared dimensions and the fix: declare them (`ALTER TABLE … ALTER COLUMN
//! … TYPE integer[][]`, a catalog change that rewrites nothing) or leave the column out. The
//! alternatives were worse: flattening loses the shape; typing the column from its values needs a
//! scan of the table at every discovery and can still change with the next insert; a text form
//! for every array column loses the element types for the common one-dimensional case. What
//! is dropped: lower bounds (`'[0:2]={1,2,3}'` reads as `[1,2,3]`, and a PostgreSQL product
//! store writes it back starting at 1), as Arrow lists have none.

use arrow_schema::{DataType, Field, TimeUnit};

/// Built-in type OIDs (stable across PostgreSQL versions).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
    pub const MONEY: u32 = 790;
}

/// How a value in the binary COPY format is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    /// numeric with a declared precision ≤ 38 and 0 ≤ scale ≤ precision.
    Decimal(u8, i8),
    /// numeric without a usable precision: its exact text.
    NumericText,
    /// text-like types whose binary form is the UTF-8 text (also `col::text` casts, enums, json).
    Text,
    Jsonb,
    Uuid,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    /// An array dimension: a list of the element kind (itself a `List` for each further
    /// declared dimension).
    List(Box<Kind>),
}

impl Kind {
    pub fn data_type(&self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int2 => DataType::Int16,
            Kind::Int4 => DataType::Int32,
            Kind::Int8 => DataType::Int64,
            Kind::Oid => DataType::UInt32,
            Kind::Float4 => DataType::Float32,
            Kind::Float8 => DataType::Float64,
            Kind::Decimal(p, s) => DataType::Decimal128(*p, *s),
            Kind::NumericText | Kind::Text | Kind::Jsonb | Kind::Uuid => DataType::Utf8,
            Kind::Bytea => DataType::Binary,
            Kind::Date => DataType::Date32,
            Kind::Time => DataType::Time64(TimeUnit::Microsecond),
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Interval => DataType::Interval(arrow_schema::IntervalUnit::MonthDayNano),
            Kind::List(elem) => DataType::List(Field::new("item", elem.data_type(), true).into()),
        }
    }

    /// The kind of a (non-array) base type, if weft decodes it in binary.
    fn scalar(type_oid: u32, typmod: i32, is_enum: bool) -> Option<Kind> {
        if is_enum {
            return Some(Kind::Text);
        }
        Some(match type_oid {
            oid::BOOL => Kind::Bool,
            oid::INT2 => Kind::Int2,
            oid::INT4 => Kind::Int4,
            oid::INT8 => Kind::Int8,
            oid::OID => Kind::Oid,
            oid::FLOAT4 => Kind::Float4,
            oid::FLOAT8 => Kind::Float8,
            oid::NUMERIC => numeric_kind(typmod),
            oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::JSON => Kind::Text,
            oid::JSONB => Kind::Jsonb,
            oid::UUID => Kind::Uuid,
            oid::BYTEA => Kind::Bytea,
            oid::DATE => Kind::Date,
            oid::TIME => Kind::Time,
            oid::TIMESTAMP => Kind::Timestamp,
            oid::TIMESTAMPTZ => Kind::TimestampTz,
            oid::INTERVAL => Kind::Interval,
            _ => return None,
        })
    }
}

/// numeric(p,s) → Decimal128 when it fits, else exact text. The typmod is `((p << 16) | s) + 4`,
/// with `s` an 11-bit signed number since PostgreSQL 15.
fn numeric_kind(typmod: i32) -> Kind {
    if typmod < 4 {
        return Kind::NumericText;
    }
    let t = typmod - 4;
    let precision = (t >> 16) & 0xffff;
    let scale = ((t & 0x7ff) ^ 0x400) - 0x400;
    if (1..=38).contains(&precision) && (0..=precision).contains(&scale) {
        Kind::Decimal(precision as u8, scale as i8)
    } else {
        Kind::NumericText
    }
}

/// What discovery knows of a column's type (domains resolved one level to their base type).
#[derive(Debug, Clone)]
pub struct PgType {
    pub base_oid: u32,
    pub base_typmod: i32,
    pub base_is_enum: bool,
    /// For arrays: the element type and whether it is an enum / a domain.
    pub elem_oid: Option<u32>,
    pub elem_is_enum: bool,
    /// For arrays: the declared number of dimensions (`attndims`; 0 when not declared).
    pub ndims: i32,
}

/// The kind a column is decoded with, or `None` when it is read as `col::text`.
pub fn kind_of(t: &PgType) -> Option<Kind> {
    match t.elem_oid {
        // Element typmods are the column's typmod (numeric(10,2)[] keeps its precision).
        Some(elem) => {
            let mut kind = Kind::scalar(elem, t.base_typmod, t.elem_is_enum)?;
            for _ in 0..t.ndims.max(1) {
                kind = Kind::List(Box::new(kind));
            }
            Some(kind)
        }
        None => Kind::scalar(t.base_oid, t.base_typmod, t.base_is_enum),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_dimensions_nest_lists() {
        let array = |ndims| PgType {
            base_oid: 1007,
            base_typmod: -1,
            base_is_enum: false,
            elem_oid: Some(oid::INT4),
            elem_is_enum: false,
            ndims,
        };
        let list = |k: Kind| Kind::List(Box::new(k));
        assert_eq!(kind_of(&array(0)), Some(list(Kind::Int4)));
        assert_eq!(kind_of(&array(1)), Some(list(Kind::Int4)));
        assert_eq!(kind_of(&array(2)), Some(list(list(Kind::Int4))));
    }

    #[test]
    fn numeric_typmods() {
        let tm = |p: i32, s: i32| ((p << 16) | (s & 0x7ff)) + 4;
        assert_eq!(numeric_kind(-1), Kind::NumericText);
        assert_eq!(numeric_kind(tm(12, 2)), Kind::Decimal(12, 2));
        assert_eq!(numeric_kind(tm(38, 0)), Kind::Decimal(38, 0));
        assert_eq!(numeric_kind(tm(39, 2)), Kind::NumericText);
        assert_eq!(numeric_kind(tm(5, -2)), Kind::NumericText);
    }
}
