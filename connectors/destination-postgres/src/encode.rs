//! Arrow arrays → PostgreSQL's binary COPY format, written straight into a `BytesMut`.
//!
//! Each batch's columns are downcast once into `Col`s holding typed slices; rows are then
//! encoded field by field with no allocation per row or value. Types follow
//! [`crate::types`]. Formats: big-endian integers and floats; `date` as days and `timestamp`
//! as µs since 2000-01-01 (±infinity as the type's MAX / MIN); `numeric` as base-10000 digits; arrays as one dimension with the
//! element type's OID.

use arrow_buffer::{IntervalDayTime, IntervalMonthDayNano, NullBuffer};
use bytes::{BufMut, BytesMut};
use weft_core::arrow_array::cast::AsArray;
use weft_core::arrow_array::types::*;
use weft_core::arrow_array::{
    Array, BinaryArray, BinaryViewArray, BooleanArray, FixedSizeBinaryArray, LargeBinaryArray,
    LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use weft_core::arrow_schema::{DataType, IntervalUnit, TimeUnit};
use weft_core::values;

use crate::text_input::TextInput;
use crate::types::{pg_type_of, PgType};

/// The binary COPY signature, flags and header extension length.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The file trailer: a field count of -1.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// Days and µs between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Values appended to every row when metadata columns are on.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// `_weft_synced_at`, µs since 2000-01-01 UTC.
    pub synced_at_pg_us: i64,
    /// `_weft_run_id`.
    pub run_id: String,
}

impl Metadata {
    pub fn now(run_id: &str) -> Self {
        Self {
            synced_at_pg_us: chrono::Utc::now().timestamp_micros() - PG_EPOCH_US,
            run_id: run_id.to_string(),
        }
    }

    /// `_weft_synced_at` as RFC 3339 text, for SQL parameters.
    pub fn synced_at_text(&self) -> String {
        chrono::DateTime::from_timestamp_micros(self.synced_at_pg_us + PG_EPOCH_US)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }
}

/// Appends the rows of `batch` to `buf`; `types` are the table's types of its columns.
pub fn encode_batch(
    batch: &RecordBatch,
    types: &[PgType],
    metadata: Option<&Metadata>,
    buf: &mut BytesMut,
) -> Result<(), String> {
    let schema = batch.schema();
    let columns: Vec<(&str, &dyn Array)> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(array, field)| (field.name().as_str(), array.as_ref()))
        .collect();
    encode_columns(&columns, types, batch.num_rows(), metadata, buf)
}

/// Appends `rows` rows made of `columns` (name, array; every array at least `rows` long) to
/// `buf`, then the metadata columns when given. Change application encodes a batch's columns
/// followed by its change columns this way, without building a new `RecordBatch`. `types`
/// are the table's column types of the first columns (text arriving for a `uuid`, `jsonb`,
/// `inet`, `numeric` … column is converted to that type's binary form); the rest are written
/// by their Arrow type.
pub fn encode_columns(
    columns: &[(&str, &dyn Array)],
    types: &[PgType],
    rows: usize,
    metadata: Option<&Metadata>,
    buf: &mut BytesMut,
) -> Result<(), String> {
    let cols = columns
        .iter()
        .enumerate()
        .map(|(i, (name, array))| Col::new(*array, name, types.get(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let fields = cols.len() + if metadata.is_some() { 2 } else { 0 };
    let fields = i16::try_from(fields).map_err(|_| "too many columns for PostgreSQL")?;
    let memory: usize = columns
        .iter()
        .map(|(_, array)| array.get_array_memory_size())
        .sum();
    buf.reserve(memory + rows * (2 + 4 * fields as usize));
    for row in 0..rows {
        buf.put_i16(fields);
        for col in &cols {
            col.write(row, buf)?;
        }
        if let Some(meta) = metadata {
            buf.put_i32(8);
            buf.put_i64(meta.synced_at_pg_us);
            put_bytes(buf, meta.run_id.as_bytes());
        }
    }
    Ok(())
}

/// How a 64-bit time value becomes µs.
#[derive(Clone, Copy)]
enum Unit {
    Second,
    Milli,
    Micro,
    Nano,
}

impl Unit {
    fn of(unit: &TimeUnit) -> Self {
        match unit {
            TimeUnit::Second => Self::Second,
            TimeUnit::Millisecond => Self::Milli,
            TimeUnit::Microsecond => Self::Micro,
            TimeUnit::Nanosecond => Self::Nano,
        }
    }

    fn micros(self, v: i64) -> Option<i64> {
        match self {
            Self::Second => v.checked_mul(1_000_000),
            Self::Milli => v.checked_mul(1_000),
            Self::Micro => Some(v),
            // PostgreSQL keeps µs: nanoseconds are truncated (towards the past).
            Self::Nano => Some(v.div_euclid(1_000)),
        }
    }
}

enum Offsets<'a> {
    Small(&'a [i32]),
    Large(&'a [i64]),
}

impl Offsets<'_> {
    fn range(&self, row: usize) -> (usize, usize) {
        match self {
            Self::Small(o) => (o[row] as usize, o[row + 1] as usize),
            Self::Large(o) => (o[row] as usize, o[row + 1] as usize),
        }
    }
}

enum Val<'a> {
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    F32(&'a [f32]),
    F64(&'a [f64]),
    Decimal(&'a [i128], u32),
    Str(&'a StringArray),
    /// Text converted to the binary form of the column's type (see [`crate::text_input`]).
    Parsed(&'a StringArray, TextInput),
    LargeStr(&'a LargeStringArray),
    StrView(&'a StringViewArray),
    Bin(&'a BinaryArray),
    LargeBin(&'a LargeBinaryArray),
    BinView(&'a BinaryViewArray),
    Fixed(&'a FixedSizeBinaryArray),
    Bool(&'a BooleanArray),
    Date(&'a [i32]),
    /// timestamp: µs since 1970 → µs since 2000.
    Timestamp(&'a [i64], Unit),
    Time64(&'a [i64], Unit),
    Time32(&'a [i32], Unit),
    Duration(&'a [i64], Unit),
    YearMonth(&'a [i32]),
    DayTime(&'a [IntervalDayTime]),
    MonthDayNano(&'a [IntervalMonthDayNano]),
    List {
        offsets: Offsets<'a>,
        values: Box<Col<'a>>,
        oid: u32,
    },
}

/// One column of a batch, ready to encode.
struct Col<'a> {
    name: &'a str,
    nulls: Option<&'a NullBuffer>,
    val: Val<'a>,
}

impl<'a> Col<'a> {
    fn new(array: &'a dyn Array, name: &'a str, ty: Option<&PgType>) -> Result<Self, String> {
        use DataType as D;
        let val = match array.data_type() {
            D::Utf8 if ty.and_then(TextInput::for_type).is_some() => Val::Parsed(
                array.as_string::<i32>(),
                ty.and_then(TextInput::for_type).expect("checked"),
            ),
            D::Int8 => Val::I8(array.as_primitive::<Int8Type>().values()),
            D::Int16 => Val::I16(array.as_primitive::<Int16Type>().values()),
            D::Int32 => Val::I32(array.as_primitive::<Int32Type>().values()),
            D::Int64 => Val::I64(array.as_primitive::<Int64Type>().values()),
            D::UInt8 => Val::U8(array.as_primitive::<UInt8Type>().values()),
            D::UInt16 => Val::U16(array.as_primitive::<UInt16Type>().values()),
            D::UInt32 => Val::U32(array.as_primitive::<UInt32Type>().values()),
            D::UInt64 => Val::U64(array.as_primitive::<UInt64Type>().values()),
            D::Float32 => Val::F32(array.as_primitive::<Float32Type>().values()),
            D::Float64 => Val::F64(array.as_primitive::<Float64Type>().values()),
            D::Decimal128(_, s) if *s >= 0 => {
                Val::Decimal(array.as_primitive::<Decimal128Type>().values(), *s as u32)
            }
            D::Utf8 => Val::Str(array.as_string::<i32>()),
            D::LargeUtf8 => Val::LargeStr(array.as_string::<i64>()),
            D::Utf8View => Val::StrView(array.as_string_view()),
            D::Binary => Val::Bin(array.as_binary::<i32>()),
            D::LargeBinary => Val::LargeBin(array.as_binary::<i64>()),
            D::BinaryView => Val::BinView(array.as_binary_view()),
            D::FixedSizeBinary(_) => Val::Fixed(array.as_fixed_size_binary()),
            D::Boolean => Val::Bool(array.as_boolean()),
            D::Date32 => Val::Date(array.as_primitive::<Date32Type>().values()),
            D::Timestamp(unit, _) => {
                // Every timestamp unit is an i64 array; reading it as µs only borrows values.
                let values: &[i64] = match unit {
                    TimeUnit::Second => array.as_primitive::<TimestampSecondType>().values(),
                    TimeUnit::Millisecond => {
                        array.as_primitive::<TimestampMillisecondType>().values()
                    }
                    TimeUnit::Microsecond => {
                        array.as_primitive::<TimestampMicrosecondType>().values()
                    }
                    TimeUnit::Nanosecond => {
                        array.as_primitive::<TimestampNanosecondType>().values()
                    }
                };
                Val::Timestamp(values, Unit::of(unit))
            }
            D::Time64(TimeUnit::Nanosecond) => Val::Time64(
                array.as_primitive::<Time64NanosecondType>().values(),
                Unit::Nano,
            ),
            D::Time64(_) => Val::Time64(
                array.as_primitive::<Time64MicrosecondType>().values(),
                Unit::Micro,
            ),
            D::Time32(TimeUnit::Second) => Val::Time32(
                array.as_primitive::<Time32SecondType>().values(),
                Unit::Second,
            ),
            D::Time32(_) => Val::Time32(
                array.as_primitive::<Time32MillisecondType>().values(),
                Unit::Milli,
            ),
            D::Duration(unit) => {
                let values: &[i64] = match unit {
                    TimeUnit::Second => array.as_primitive::<DurationSecondType>().values(),
                    TimeUnit::Millisecond => {
                        array.as_primitive::<DurationMillisecondType>().values()
                    }
                    TimeUnit::Microsecond => {
                        array.as_primitive::<DurationMicrosecondType>().values()
                    }
                    TimeUnit::Nanosecond => array.as_primitive::<DurationNanosecondType>().values(),
                };
                Val::Duration(values, Unit::of(unit))
            }
            D::Interval(IntervalUnit::YearMonth) => {
                Val::YearMonth(array.as_primitive::<IntervalYearMonthType>().values())
            }
            D::Interval(IntervalUnit::DayTime) => {
                Val::DayTime(array.as_primitive::<IntervalDayTimeType>().values())
            }
            D::Interval(IntervalUnit::MonthDayNano) => {
                Val::MonthDayNano(array.as_primitive::<IntervalMonthDayNanoType>().values())
            }
            D::List(field) | D::LargeList(field) => {
                // The table's element type when known (a source's `uuid[]`), else the Arrow
                // one; for a list of lists, the innermost element's (arrays do not nest).
                let element = match ty {
                    Some(PgType::Array(element)) => element.as_ref().clone(),
                    _ => match pg_type_of(field).map_err(|why| format!("{name:?}: {why}"))? {
                        PgType::Array(element) => *element,
                        element => element,
                    },
                };
                // Inner lists are further dimensions of the same array.
                let values_type = match field.data_type() {
                    D::List(_) | D::LargeList(_) => PgType::Array(Box::new(element.clone())),
                    _ => element.clone(),
                };
                let (offsets, values) = match array.data_type() {
                    D::List(_) => {
                        let list = array.as_list::<i32>();
                        (Offsets::Small(list.value_offsets()), list.values())
                    }
                    _ => {
                        let list = array.as_list::<i64>();
                        (Offsets::Large(list.value_offsets()), list.values())
                    }
                };
                Val::List {
                    offsets,
                    values: Box::new(Col::new(values.as_ref(), name, Some(&values_type))?),
                    oid: element.oid(),
                }
            }
            other => {
                return Err(format!(
                    "column {name:?} has Arrow type {other} which PostgreSQL cannot store"
                ))
            }
        };
        Ok(Self {
            name,
            nulls: array.nulls(),
            val,
        })
    }

    fn is_null(&self, row: usize) -> bool {
        self.nulls.is_some_and(|n| n.is_null(row))
    }

    fn write(&self, row: usize, buf: &mut BytesMut) -> Result<(), String> {
        if self.is_null(row) {
            buf.put_i32(-1);
            return Ok(());
        }
        match &self.val {
            Val::I8(v) => put_i16(buf, i16::from(v[row])),
            Val::I16(v) => put_i16(buf, v[row]),
            Val::I32(v) => put_i32(buf, v[row]),
            Val::I64(v) => put_i64(buf, v[row]),
            Val::U8(v) => put_i16(buf, i16::from(v[row])),
            Val::U16(v) => put_i32(buf, i32::from(v[row])),
            Val::U32(v) => put_i64(buf, i64::from(v[row])),
            Val::U64(v) => put_numeric(buf, false, u128::from(v[row]), 0),
            Val::F32(v) => {
                buf.put_i32(4);
                buf.put_f32(v[row]);
            }
            Val::F64(v) => {
                buf.put_i32(8);
                buf.put_f64(v[row]);
            }
            Val::Decimal(v, scale) => put_numeric(buf, v[row] < 0, v[row].unsigned_abs(), *scale),
            Val::Str(a) => put_bytes(buf, a.value(row).as_bytes()),
            Val::Parsed(a, input) => input
                .write(a.value(row), buf)
                .map_err(|why| format!("column {:?}: {why}", self.name))?,
            Val::LargeStr(a) => put_bytes(buf, a.value(row).as_bytes()),
            Val::StrView(a) => put_bytes(buf, a.value(row).as_bytes()),
            Val::Bin(a) => put_bytes(buf, a.value(row)),
            Val::LargeBin(a) => put_bytes(buf, a.value(row)),
            Val::BinView(a) => put_bytes(buf, a.value(row)),
            Val::Fixed(a) => put_bytes(buf, a.value(row)),
            Val::Bool(a) => {
                buf.put_i32(1);
                buf.put_u8(u8::from(a.value(row)));
            }
            // ±infinity arrive as the Arrow type's extreme values (see `weft_core::values`);
            // PostgreSQL's binary infinity is its type's MAX / MIN.
            Val::Date(v) => put_i32(
                buf,
                match v[row] {
                    values::DATE_INFINITY => i32::MAX,
                    d if d <= values::DATE_NEG_INFINITY => i32::MIN,
                    d => d.wrapping_sub(PG_EPOCH_DAYS),
                },
            ),
            Val::Timestamp(v, unit) => {
                let us = match v[row] {
                    values::TIMESTAMP_INFINITY => i64::MAX,
                    t if t <= values::TIMESTAMP_NEG_INFINITY => i64::MIN,
                    t => unit
                        .micros(t)
                        .and_then(|us| us.checked_sub(PG_EPOCH_US))
                        .ok_or_else(|| self.out_of_range(row, "timestamp"))?,
                };
                put_i64(buf, us);
            }
            Val::Time64(v, unit) => put_i64(buf, unit.micros(v[row]).unwrap_or(i64::MAX)),
            Val::Time32(v, unit) => {
                put_i64(buf, unit.micros(i64::from(v[row])).unwrap_or(i64::MAX))
            }
            Val::Duration(v, unit) => {
                let us = unit
                    .micros(v[row])
                    .ok_or_else(|| self.out_of_range(row, "interval"))?;
                put_interval(buf, us, 0, 0);
            }
            Val::YearMonth(v) => put_interval(buf, 0, 0, v[row]),
            Val::DayTime(v) => {
                let IntervalDayTime { days, milliseconds } = v[row];
                put_interval(buf, i64::from(milliseconds) * 1_000, days, 0);
            }
            Val::MonthDayNano(v) => {
                let IntervalMonthDayNano {
                    months,
                    days,
                    nanoseconds,
                } = v[row];
                put_interval(buf, nanoseconds.div_euclid(1_000), days, months);
            }
            Val::List {
                offsets,
                values,
                oid,
            } => {
                let start = buf.len();
                buf.put_i32(0); // the length, patched below
                let (mut lo, mut hi) = offsets.range(row);
                // Nested lists are further dimensions: each level's lists must all be there
                // and of one length (PostgreSQL arrays are rectangular); the innermost
                // elements follow in row-major order.
                let mut dims = vec![hi - lo];
                let mut leaf: &Col = values;
                while let Val::List {
                    offsets: inner,
                    values: next,
                    ..
                } = &leaf.val
                {
                    let mut size = None;
                    for i in lo..hi {
                        if leaf.is_null(i) {
                            return Err(self.not_rectangular(row, "holds a NULL list"));
                        }
                        let (a, b) = inner.range(i);
                        if *size.get_or_insert(b - a) != b - a {
                            return Err(
                                self.not_rectangular(row, "holds lists of different lengths")
                            );
                        }
                    }
                    dims.push(size.unwrap_or(0));
                    if hi > lo {
                        (lo, hi) = (inner.range(lo).0, inner.range(hi - 1).1);
                    }
                    leaf = next;
                }
                let has_nulls = (lo..hi).any(|i| leaf.is_null(i));
                // An array without elements ([] or [[]]) has no dimensions at all.
                let ndim = if hi > lo { dims.len() } else { 0 };
                buf.put_i32(ndim as i32);
                buf.put_i32(i32::from(has_nulls));
                buf.put_u32(*oid);
                for size in &dims[..ndim] {
                    let len = i32::try_from(*size).map_err(|_| self.too_large(row))?;
                    buf.put_i32(len);
                    buf.put_i32(1); // lower bound
                }
                for i in lo..hi {
                    leaf.write(i, buf)?;
                }
                let len = i32::try_from(buf.len() - start - 4).map_err(|_| self.too_large(row))?;
                buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
            }
        }
        Ok(())
    }

    fn out_of_range(&self, row: usize, kind: &str) -> String {
        format!(
            "column {:?}: the value in row {row} of a batch is outside PostgreSQL's {kind} range",
            self.name
        )
    }

    fn not_rectangular(&self, row: usize, what: &str) -> String {
        format!(
            "column {:?}: the list in row {row} of a batch {what}; a PostgreSQL array is \
             rectangular (every inner list present and of one length): filter such rows or \
             turn the column into text with a mapper",
            self.name
        )
    }

    fn too_large(&self, row: usize) -> String {
        format!(
            "column {:?}: the value in row {row} of a batch is larger than PostgreSQL's 1 GB \
             field limit",
            self.name
        )
    }
}

fn put_i16(buf: &mut BytesMut, v: i16) {
    buf.put_i32(2);
    buf.put_i16(v);
}

fn put_i32(buf: &mut BytesMut, v: i32) {
    buf.put_i32(4);
    buf.put_i32(v);
}

fn put_i64(buf: &mut BytesMut, v: i64) {
    buf.put_i32(8);
    buf.put_i64(v);
}

fn put_bytes(buf: &mut BytesMut, v: &[u8]) {
    // Arrow offsets are i32/i64; PostgreSQL fields stop at 1 GB, which the server reports.
    buf.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
    buf.put_slice(v);
}

fn put_interval(buf: &mut BytesMut, micros: i64, days: i32, months: i32) {
    buf.put_i32(16);
    buf.put_i64(micros);
    buf.put_i32(days);
    buf.put_i32(months);
}

/// `numeric` in binary: digit count, weight (of the first base-10000 digit), sign, display
/// scale, then the base-10000 digits, most significant first.
fn put_numeric(buf: &mut BytesMut, negative: bool, abs: u128, scale: u32) {
    // At most 39 integer digits and 38 fraction digits: 10 + 10 groups (+1 for a partial one).
    let mut groups = [0i16; 24];
    let mut n = 0;
    let pow = 10u128.pow(scale.min(38));
    let (mut int, mut frac) = (abs / pow, abs % pow);
    // Fraction groups, least significant first; a partial last group is padded with zeros.
    let partial = scale % 4;
    if partial > 0 {
        let p = 10u128.pow(partial);
        groups[n] = ((frac % p) * 10u128.pow(4 - partial)) as i16;
        frac /= p;
        n += 1;
    }
    for _ in 0..scale / 4 {
        groups[n] = (frac % 10_000) as i16;
        frac /= 10_000;
        n += 1;
    }
    let frac_groups = n;
    while int > 0 {
        groups[n] = (int % 10_000) as i16;
        int /= 10_000;
        n += 1;
    }
    let int_groups = n - frac_groups;
    let digits = &mut groups[..n];
    digits.reverse();
    let mut weight = int_groups as i16 - 1;
    let mut first = 0;
    while first < n && digits[first] == 0 {
        first += 1;
        weight -= 1;
    }
    let mut last = n;
    while last > first && digits[last - 1] == 0 {
        last -= 1;
    }
    let digits = &digits[first..last];
    if digits.is_empty() {
        weight = 0;
    }
    buf.put_i32(8 + 2 * digits.len() as i32);
    buf.put_i16(digits.len() as i16);
    buf.put_i16(weight);
    buf.put_u16(if negative && !digits.is_empty() {
        0x4000
    } else {
        0
    });
    buf.put_i16(scale as i16);
    for d in digits {
        buf.put_i16(*d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(negative: bool, abs: u128, scale: u32) -> Vec<i16> {
        let mut buf = BytesMut::new();
        put_numeric(&mut buf, negative, abs, scale);
        buf[4..]
            .chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numerics_encode_as_base_10000_digits() {
        // 12345.67 → digits [1, 2345, 6700], weight 1, scale 2
        assert_eq!(
            numeric(false, 1_234_567, 2),
            vec![3, 1, 0, 2, 1, 2345, 6700]
        );
        // -0.0001 → [1], weight -1
        assert_eq!(numeric(true, 1, 4), vec![1, -1, 0x4000, 4, 1]);
        // 0.00001 (scale 5) → [0, 1000] → leading zero dropped: [1000], weight -2
        assert_eq!(numeric(false, 1, 5), vec![1, -2, 0, 5, 1000]);
        // zero keeps its scale, no digits, no sign
        assert_eq!(numeric(true, 0, 2), vec![0, 0, 0, 2]);
        // 10000 → [1], weight 1 (trailing zero group dropped)
        assert_eq!(numeric(false, 10_000, 0), vec![1, 1, 0, 0, 1]);
        // the largest Decimal128(38, 0) fits
        assert_eq!(numeric(false, 10u128.pow(38) - 1, 0)[0], 10);
        assert_eq!(numeric(false, 10u128.pow(38) - 1, 38)[0], 10);
    }
}
