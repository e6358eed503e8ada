//! Arrow → PostgreSQL column types, and which changes of an existing column weft applies.
//!
//! | Arrow | PostgreSQL |
//! | --- | --- |
//! | Int8, Int16, UInt8 | smallint |
//! | Int32, UInt16 | integer |
//! | Int64, UInt32 | bigint |
//! | UInt64 | numeric(20,0) |
//! | Float32 / Float64 | real / double precision |
//! | Decimal128(p, s) | numeric(p,s) (s ≥ 0) |
//! | Utf8, LargeUtf8, Utf8View | text |
//! | Binary, LargeBinary, BinaryView, FixedSizeBinary(n ≠ 16) | bytea |
//! | FixedSizeBinary(16) | uuid (16 bytes are taken as a UUID) |
//! | Boolean | boolean |
//! | Date32 | date (`i32::MAX` / `-i32::MAX` days: `±infinity`) |
//! | Timestamp(unit, tz) | timestamp with time zone (nanoseconds truncated to µs; `i64::MAX` / `-i64::MAX`: `±infinity`) |
//! | Timestamp(unit, none) | timestamp without time zone |
//! | Time32, Time64 | time without time zone |
//! | Interval (any), Duration | interval |
//! | List / LargeList of any of the above | that type's array (`bigint[]`); lists of lists are its multi-dimensional values (rectangular, lower bounds 1) |
//!
//! A field carrying a PostgreSQL source's type (`weft.pg_type`) may get that type instead (see
//! `crate::source_types`). Anything else is refused with an error naming the column and
//! its type. Existing columns
//! are widened (smallint → integer → bigint, real → double precision, numeric to more digits,
//! varchar → text) but never narrowed or changed to another kind.

use weft_core::arrow_schema::{DataType, Field};

/// A PostgreSQL column type weft writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `numeric(precision, scale)`, or unconstrained `numeric` (only found in existing tables).
    Numeric(Option<(u32, u32)>),
    Text,
    Bytea,
    Bool,
    Date,
    Timestamp,
    Timestamptz,
    Time,
    Interval,
    Uuid,
    Array(Box<PgType>),
    /// `character varying(n)`: a PostgreSQL source's type, or an existing table's.
    Varchar(Option<u32>),
    /// Types kept from a PostgreSQL source (see `crate::source_types`), written from the
    /// source's text form.
    Jsonb,
    Inet,
    Cidr,
    Macaddr,
    /// A type whose binary input is its text (`json`, `xml`, `character(n)`, an enum of the
    /// product store), with its OID (array elements carry it).
    Named {
        sql: String,
        oid: u32,
    },
    /// Any other type of an existing column, as `format_type` prints it.
    Other(String),
}

impl PgType {
    /// The type as PostgreSQL's `format_type` prints it (and as DDL accepts it).
    pub fn sql(&self) -> String {
        match self {
            Self::Int2 => "smallint".into(),
            Self::Int4 => "integer".into(),
            Self::Int8 => "bigint".into(),
            Self::Float4 => "real".into(),
            Self::Float8 => "double precision".into(),
            Self::Numeric(Some((p, s))) => format!("numeric({p},{s})"),
            Self::Numeric(None) => "numeric".into(),
            Self::Text => "text".into(),
            Self::Bytea => "bytea".into(),
            Self::Bool => "boolean".into(),
            Self::Date => "date".into(),
            Self::Timestamp => "timestamp without time zone".into(),
            Self::Timestamptz => "timestamp with time zone".into(),
            Self::Time => "time without time zone".into(),
            Self::Interval => "interval".into(),
            Self::Uuid => "uuid".into(),
            Self::Array(element) => format!("{}[]", element.sql()),
            Self::Varchar(None) => "character varying".into(),
            Self::Varchar(Some(n)) => format!("character varying({n})"),
            Self::Jsonb => "jsonb".into(),
            Self::Inet => "inet".into(),
            Self::Cidr => "cidr".into(),
            Self::Macaddr => "macaddr".into(),
            Self::Named { sql, .. } => sql.clone(),
            Self::Other(name) => name.clone(),
        }
    }

    /// The type's OID (array elements carry it in the binary format).
    pub fn oid(&self) -> u32 {
        match self {
            Self::Int2 => 21,
            Self::Int4 => 23,
            Self::Int8 => 20,
            Self::Float4 => 700,
            Self::Float8 => 701,
            Self::Numeric(_) => 1700,
            Self::Text => 25,
            Self::Bytea => 17,
            Self::Bool => 16,
            Self::Date => 1082,
            Self::Timestamp => 1114,
            Self::Timestamptz => 1184,
            Self::Time => 1083,
            Self::Interval => 1186,
            Self::Uuid => 2950,
            Self::Varchar(_) => 1043,
            Self::Jsonb => 3802,
            Self::Inet => 869,
            Self::Cidr => 650,
            Self::Macaddr => 829,
            Self::Named { oid, .. } => *oid,
            Self::Array(_) | Self::Other(_) => 0,
        }
    }

    /// Parses `format_type` output of an existing column.
    pub fn parse(sql: &str) -> Self {
        if let Some(element) = sql.strip_suffix("[]") {
            return Self::Array(Box::new(Self::parse(element)));
        }
        match sql {
            "smallint" => Self::Int2,
            "integer" => Self::Int4,
            "bigint" => Self::Int8,
            "real" => Self::Float4,
            "double precision" => Self::Float8,
            "numeric" => Self::Numeric(None),
            "text" => Self::Text,
            "bytea" => Self::Bytea,
            "boolean" => Self::Bool,
            "date" => Self::Date,
            "timestamp without time zone" => Self::Timestamp,
            "timestamp with time zone" => Self::Timestamptz,
            "time without time zone" => Self::Time,
            "interval" => Self::Interval,
            "uuid" => Self::Uuid,
            "jsonb" => Self::Jsonb,
            "inet" => Self::Inet,
            "cidr" => Self::Cidr,
            "macaddr" => Self::Macaddr,
            "character varying" => Self::Varchar(None),
            _ if sql.starts_with("character varying(") => sql
                .strip_prefix("character varying(")
                .and_then(|n| n.strip_suffix(')'))
                .and_then(|n| n.parse().ok())
                .map_or_else(|| Self::Other(sql.to_string()), |n| Self::Varchar(Some(n))),
            _ => parse_numeric(sql).unwrap_or_else(|| Self::Other(sql.to_string())),
        }
    }
}

fn parse_numeric(sql: &str) -> Option<PgType> {
    let inner = sql.strip_prefix("numeric(")?.strip_suffix(')')?;
    let (p, s) = inner.split_once(',')?;
    Some(PgType::Numeric(Some((
        p.trim().parse().ok()?,
        s.trim().parse().ok()?,
    ))))
}

/// The column type for an Arrow field, or why there is none (naming the column and type).
pub fn pg_type_of(field: &Field) -> Result<PgType, String> {
    pg_type(field.data_type(), false).map_err(|why| {
        format!(
            "column {:?} has Arrow type {} which PostgreSQL cannot store: {why}; cast or drop \
             the column with a mapper",
            field.name(),
            field.data_type()
        )
    })
}

fn pg_type(data_type: &DataType, in_list: bool) -> Result<PgType, String> {
    use DataType as D;
    Ok(match data_type {
        D::Int8 | D::Int16 | D::UInt8 => PgType::Int2,
        D::Int32 | D::UInt16 => PgType::Int4,
        D::Int64 | D::UInt32 => PgType::Int8,
        D::UInt64 => PgType::Numeric(Some((20, 0))),
        D::Float32 => PgType::Float4,
        D::Float64 => PgType::Float8,
        D::Decimal128(p, s) => {
            if *s < 0 {
                return Err("negative decimal scales are not supported".into());
            }
            PgType::Numeric(Some((u32::from(*p), *s as u32)))
        }
        D::Utf8 | D::LargeUtf8 | D::Utf8View => PgType::Text,
        D::Binary | D::LargeBinary | D::BinaryView => PgType::Bytea,
        D::FixedSizeBinary(16) => PgType::Uuid,
        D::FixedSizeBinary(_) => PgType::Bytea,
        D::Boolean => PgType::Bool,
        D::Date32 => PgType::Date,
        D::Timestamp(_, Some(_)) => PgType::Timestamptz,
        D::Timestamp(_, None) => PgType::Timestamp,
        D::Time32(_) | D::Time64(_) => PgType::Time,
        D::Interval(_) | D::Duration(_) => PgType::Interval,
        D::List(element) | D::LargeList(element) => {
            // A PostgreSQL array type has any number of dimensions: a list of lists is an
            // array of its innermost element (`integer[]`), written as a 2-D value.
            let element = pg_type(element.data_type(), true)?;
            if in_list {
                return Ok(element);
            }
            PgType::Array(Box::new(element))
        }
        _ => return Err("no PostgreSQL type is mapped for it".into()),
    })
}

/// What to do with an existing column of type `existing` when the stream sends `wanted`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Write as is.
    Keep,
    /// `ALTER COLUMN … TYPE` this, then write.
    Widen(PgType),
    /// Refuse: a narrowing or a change of kind.
    Refuse,
}

/// Decides how an existing column takes a stream's type (see the module docs).
pub fn change_for(existing: &PgType, wanted: &PgType) -> Change {
    use PgType as T;
    // `Named` types print as `format_type` does, so an existing column of that type is it.
    if existing == wanted || existing.sql() == wanted.sql() {
        return Change::Keep;
    }
    let rank = |t: &PgType| match t {
        T::Int2 => Some(0),
        T::Int4 => Some(1),
        T::Int8 => Some(2),
        _ => None,
    };
    match (existing, wanted) {
        (a, b) if rank(a).is_some() && rank(b).is_some() => {
            if rank(a) < rank(b) {
                Change::Widen(wanted.clone())
            } else {
                Change::Refuse
            }
        }
        (T::Float4, T::Float8) => Change::Widen(T::Float8),
        (T::Varchar(_), T::Text) => Change::Widen(T::Text),
        (T::Varchar(None), T::Varchar(_)) => Change::Keep,
        (T::Varchar(Some(_)), T::Varchar(None)) => Change::Widen(wanted.clone()),
        (T::Varchar(Some(a)), T::Varchar(Some(b))) => {
            if b > a {
                Change::Widen(wanted.clone())
            } else {
                Change::Keep
            }
        }
        // Unconstrained numeric holds any numeric.
        (T::Numeric(None), T::Numeric(_)) => Change::Keep,
        (T::Numeric(Some((p1, s1))), T::Numeric(Some((p2, s2)))) => {
            // Widen to hold both: the most integer digits and the most fraction digits.
            let int_digits = (p1 - s1).max(p2 - s2);
            let scale = (*s1).max(*s2);
            let both = T::Numeric(Some((int_digits + scale, scale)));
            if &both == existing {
                Change::Refuse
            } else {
                Change::Widen(both)
            }
        }
        (T::Array(a), T::Array(b)) => match change_for(a, b) {
            Change::Keep => Change::Keep,
            Change::Widen(t) => Change::Widen(T::Array(Box::new(t))),
            Change::Refuse => Change::Refuse,
        },
        _ => Change::Refuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use weft_core::arrow_schema::TimeUnit;

    #[test]
    fn maps_every_supported_type() {
        let cases = [
            (DataType::Int8, "smallint"),
            (DataType::UInt16, "integer"),
            (DataType::UInt64, "numeric(20,0)"),
            (DataType::Decimal128(12, 2), "numeric(12,2)"),
            (DataType::LargeUtf8, "text"),
            (DataType::FixedSizeBinary(16), "uuid"),
            (DataType::FixedSizeBinary(4), "bytea"),
            (
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
                "timestamp with time zone",
            ),
            (
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                "timestamp without time zone",
            ),
            (
                DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                "bigint[]",
            ),
        ];
        for (dt, sql) in cases {
            let t = pg_type_of(&Field::new("c", dt.clone(), true)).unwrap();
            assert_eq!(t.sql(), sql, "{dt}");
            assert_eq!(PgType::parse(sql), t, "{sql}");
        }
    }

    #[test]
    fn unsupported_types_name_the_column_and_type() {
        let field = Field::new("payload", DataType::Float16, true);
        assert_eq!(
            pg_type_of(&field).unwrap_err(),
            "column \"payload\" has Arrow type Float16 which PostgreSQL cannot store: no \
             PostgreSQL type is mapped for it; cast or drop the column with a mapper"
        );
        let nested = DataType::List(Arc::new(Field::new(
            "item",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            true,
        )));
        assert_eq!(
            pg_type_of(&Field::new("m", nested, true)).unwrap(),
            PgType::Array(Box::new(PgType::Int4))
        );
    }

    #[test]
    fn widens_but_never_narrows() {
        use PgType as T;
        assert_eq!(change_for(&T::Int4, &T::Int8), Change::Widen(T::Int8));
        assert_eq!(change_for(&T::Int8, &T::Int4), Change::Refuse);
        assert_eq!(change_for(&T::Float4, &T::Float8), Change::Widen(T::Float8));
        assert_eq!(
            change_for(&T::Varchar(Some(5)), &T::Text),
            Change::Widen(T::Text)
        );
        assert_eq!(
            change_for(&T::Varchar(Some(5)), &T::Varchar(Some(9))),
            Change::Widen(T::Varchar(Some(9)))
        );
        assert_eq!(
            change_for(&T::Varchar(Some(9)), &T::Varchar(Some(5))),
            Change::Keep
        );
        let json = T::Named {
            sql: "json".into(),
            oid: 114,
        };
        assert_eq!(change_for(&T::parse("json"), &json), Change::Keep);
        assert_eq!(change_for(&T::parse("jsonb"), &T::Jsonb), Change::Keep);
        assert_eq!(change_for(&T::Text, &T::Jsonb), Change::Refuse);
        assert_eq!(change_for(&T::Text, &T::Int8), Change::Refuse);
        let n = |p, s| T::Numeric(Some((p, s)));
        assert_eq!(change_for(&n(10, 2), &n(12, 2)), Change::Widen(n(12, 2)));
        assert_eq!(change_for(&n(12, 2), &n(10, 2)), Change::Refuse);
        assert_eq!(change_for(&n(10, 2), &n(10, 4)), Change::Widen(n(12, 4)));
        assert_eq!(change_for(&T::Numeric(None), &n(10, 4)), Change::Keep);
        assert_eq!(
            change_for(&T::Array(Box::new(T::Int4)), &T::Array(Box::new(T::Int8))),
            Change::Widen(T::Array(Box::new(T::Int8)))
        );
    }
}
