//! The binary COPY format decoded straight into Arrow builders: no text round trip, no per-row
//! allocation. [`CopyDecoder::feed`] takes the byte stream in whatever chunks it arrives,
//! parses complete tuples and cuts a [`RecordBatch`] every `batch_size` rows or `batch_bytes`
//! bytes, whichever comes first: rows alone would let a table of wide rows make batches of
//! hundreds of MiB, and every channel between here and the writer holds a few of them.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, IntervalMonthDayNanoBuilder,
    StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder, UInt32Builder,
};
use arrow_array::types::IntervalMonthDayNano;
use arrow_array::{ArrayRef, ListArray, RecordBatch};
use arrow_schema::{Field, SchemaRef};
use bytes::{Buf, BytesMut};

use weft_core::values;

use crate::numeric::Numeric;
use crate::types::Kind;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// µs between 1970-01-01 and PostgreSQL's epoch 2000-01-01.
pub(crate) const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// Where a row's resume position comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// No position (unsplit reads).
    None,
    /// An integer key column of the output (its index).
    Column(usize),
    /// A leading `ctid` field, not part of the output; as `block << 16 | offset`.
    LeadingCtid,
}

/// One finished batch and the position of its last row.
pub struct Decoded {
    pub batch: RecordBatch,
    pub last_position: Option<i64>,
}

/// Parses one COPY's bytes into batches.
pub struct CopyDecoder {
    schema: SchemaRef,
    columns: Vec<Column>,
    kinds: Vec<Kind>,
    names: Vec<String>,
    position: Position,
    batch_size: usize,
    batch_bytes: usize,
    rows: usize,
    /// Wire bytes of the rows since the last cut: a cheap, slightly high estimate of their
    /// size in Arrow buffers.
    bytes: usize,
    header_done: bool,
    finished: bool,
    buf: BytesMut,
    last_position: Option<i64>,
    pub ready: Vec<Decoded>,
}

impl CopyDecoder {
    pub fn new(
        schema: SchemaRef,
        kinds: &[Kind],
        position: Position,
        batch_size: usize,
        batch_bytes: usize,
    ) -> Self {
        let cap = batch_size.min(8192);
        Self {
            names: schema.fields().iter().map(|f| f.name().clone()).collect(),
            columns: kinds.iter().map(|k| Column::new(k, cap, 0)).collect(),
            kinds: kinds.to_vec(),
            schema,
            position,
            batch_size,
            batch_bytes: batch_bytes.max(1),
            rows: 0,
            bytes: 0,
            header_done: false,
            finished: false,
            buf: BytesMut::new(),
            last_position: None,
            ready: Vec::new(),
        }
    }

    /// Adds bytes of the COPY stream; complete batches land in [`CopyDecoder::ready`].
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.buf.extend_from_slice(chunk);
        if !self.header_done {
            if self.buf.len() < SIGNATURE.len() + 8 {
                return Ok(());
            }
            if &self.buf[..SIGNATURE.len()] != SIGNATURE {
                return Err("the server did not send a binary COPY header".into());
            }
            let ext = u32::from_be_bytes(self.buf[15..19].try_into().unwrap()) as usize;
            if self.buf.len() < 19 + ext {
                return Ok(());
            }
            self.buf.advance(19 + ext);
            self.header_done = true;
        }
        let mut pos = 0;
        let buf = std::mem::take(&mut self.buf);
        let result = loop {
            match self.tuple(&buf[pos..]) {
                Ok(Some(0)) => break Ok(()), // after the trailer
                Ok(Some(used)) => pos += used,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
            if self.rows == self.batch_size || self.bytes >= self.batch_bytes {
                if let Err(e) = self.cut() {
                    break Err(e);
                }
            }
        };
        self.buf = buf;
        self.buf.advance(pos);
        result
    }

    /// Decodes one tuple at the start of `data`: `Some(bytes used)`, `None` when incomplete,
    /// `Some(0)` at the trailer.
    fn tuple(&mut self, data: &[u8]) -> Result<Option<usize>, String> {
        if self.finished {
            return Ok(Some(0));
        }
        if data.len() < 2 {
            return Ok(None);
        }
        let nfields = i16::from_be_bytes([data[0], data[1]]);
        if nfields == -1 {
            self.finished = true;
            return Ok(Some(2));
        }
        let lead = usize::from(self.position == Position::LeadingCtid);
        if nfields as usize != self.columns.len() + lead {
            return Err(format!(
                "the server sent {nfields} fields per row, expected {}",
                self.columns.len() + lead
            ));
        }
        // First make sure the whole tuple is here, so a half tuple is never appended.
        let mut end = 2;
        for _ in 0..nfields {
            if data.len() < end + 4 {
                return Ok(None);
            }
            let len = i32::from_be_bytes(data[end..end + 4].try_into().unwrap());
            end += 4 + len.max(0) as usize;
        }
        if data.len() < end {
            return Ok(None);
        }
        let mut at = 2;
        let field = |at: &mut usize| -> Option<&[u8]> {
            let len = i32::from_be_bytes(data[*at..*at + 4].try_into().unwrap());
            *at += 4;
            if len < 0 {
                return None;
            }
            let v = &data[*at..*at + len as usize];
            *at += len as usize;
            Some(v)
        };
        if lead == 1 {
            let tid = field(&mut at).ok_or("a row without a ctid")?;
            if tid.len() != 6 {
                return Err("a malformed ctid".into());
            }
            let block = u32::from_be_bytes(tid[..4].try_into().unwrap()) as i64;
            let offset = u16::from_be_bytes(tid[4..6].try_into().unwrap()) as i64;
            self.advance_position(block << 16 | offset)?;
        }
        for i in 0..self.columns.len() {
            let value = field(&mut at);
            if let Position::Column(key) = self.position {
                if key == i {
                    let v = value.ok_or("a NULL key")?;
                    self.advance_position(be_int(v)?)?;
                }
            }
            if let Err(e) = self.columns[i].append(value) {
                return Err(format!("column `{}`: {e}", self.names[i]));
            }
        }
        self.rows += 1;
        self.bytes += end;
        Ok(Some(end))
    }

    /// Rows of a range arrive in position order; anything else would make resuming unsafe.
    fn advance_position(&mut self, p: i64) -> Result<(), String> {
        if let Some(last) = self.last_position {
            if p <= last {
                return Err(format!(
                    "rows arrived out of position order ({p} after {last}); resuming would be unsafe"
                ));
            }
        }
        self.last_position = Some(p);
        Ok(())
    }

    fn cut(&mut self) -> Result<(), String> {
        if self.rows == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        // Finished builders start over empty and grow by doubling, leaving batches with up to
        // twice the memory they use while they wait in channels. Batches cut by bytes are
        // alike, so the next one's builders are sized from this one, with a little headroom.
        let rows = (self.rows + self.rows / 16).min(self.batch_size);
        for ((column, kind), array) in self.columns.iter_mut().zip(&self.kinds).zip(&arrays) {
            let data = array.to_data();
            let bytes = match data.buffers() {
                [_offsets, values] => values.len() + values.len() / 16,
                _ => 0,
            };
            *column = Column::new(kind, rows, bytes);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| e.to_string())?;
        self.ready.push(Decoded {
            batch,
            last_position: self.last_position,
        });
        self.rows = 0;
        self.bytes = 0;
        Ok(())
    }

    /// The COPY ended: checks it was complete and cuts the last batch.
    pub fn finish(&mut self) -> Result<(), String> {
        if !self.finished || !self.buf.is_empty() {
            return Err("the COPY stream ended in the middle of a row".into());
        }
        self.cut()
    }
}

fn be_int(v: &[u8]) -> Result<i64, String> {
    Ok(match v.len() {
        2 => i16::from_be_bytes(v.try_into().unwrap()) as i64,
        4 => i32::from_be_bytes(v.try_into().unwrap()) as i64,
        8 => i64::from_be_bytes(v.try_into().unwrap()),
        n => return Err(format!("an integer of {n} bytes")),
    })
}

fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N], String> {
    v.try_into()
        .map_err(|_| format!("a value of {} bytes where {N} were expected", v.len()))
}

fn utf8(v: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(v).map_err(|_| "text that is not valid UTF-8".to_string())
}

/// A typed Arrow builder per column (also used by CDC to append pgoutput's binary values,
/// which use the same per-field send format as binary COPY).
pub(crate) enum Column {
    Bool(BooleanBuilder),
    Int2(Int16Builder),
    Int4(Int32Builder),
    Int8(Int64Builder),
    Oid(UInt32Builder),
    Float4(Float32Builder),
    Float8(Float64Builder),
    Decimal(Decimal128Builder, i8),
    NumericText(StringBuilder, String),
    Text(StringBuilder),
    Jsonb(StringBuilder),
    Uuid(StringBuilder, String),
    Bytea(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    List {
        field: Arc<Field>,
        child: Box<Column>,
        offsets: Vec<i32>,
        validity: arrow_buffer::NullBufferBuilder,
    },
}

impl Column {
    /// A builder for `cap` rows and, for text and binary columns, `bytes` bytes of values.
    pub(crate) fn new(kind: &Kind, cap: usize, bytes: usize) -> Self {
        match kind {
            Kind::Bool => Column::Bool(BooleanBuilder::with_capacity(cap)),
            Kind::Int2 => Column::Int2(Int16Builder::with_capacity(cap)),
            Kind::Int4 => Column::Int4(Int32Builder::with_capacity(cap)),
            Kind::Int8 => Column::Int8(Int64Builder::with_capacity(cap)),
            Kind::Oid => Column::Oid(UInt32Builder::with_capacity(cap)),
            Kind::Float4 => Column::Float4(Float32Builder::with_capacity(cap)),
            Kind::Float8 => Column::Float8(Float64Builder::with_capacity(cap)),
            Kind::Decimal(p, s) => Column::Decimal(
                Decimal128Builder::with_capacity(cap)
                    .with_precision_and_scale(*p, *s)
                    .expect("precision ≤ 38 and 0 ≤ scale ≤ precision, checked in types"),
                *s,
            ),
            Kind::NumericText => {
                Column::NumericText(StringBuilder::with_capacity(cap, bytes), String::new())
            }
            Kind::Text => Column::Text(StringBuilder::with_capacity(cap, bytes)),
            Kind::Jsonb => Column::Jsonb(StringBuilder::with_capacity(cap, bytes)),
            Kind::Uuid => Column::Uuid(
                StringBuilder::with_capacity(cap, bytes),
                String::with_capacity(36),
            ),
            Kind::Bytea => Column::Bytea(BinaryBuilder::with_capacity(cap, bytes)),
            Kind::Date => Column::Date(Date32Builder::with_capacity(cap)),
            Kind::Time => Column::Time(Time64MicrosecondBuilder::with_capacity(cap)),
            Kind::Timestamp => Column::Timestamp(TimestampMicrosecondBuilder::with_capacity(cap)),
            Kind::TimestampTz => Column::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(cap).with_timezone("UTC"),
            ),
            Kind::Interval => Column::Interval(IntervalMonthDayNanoBuilder::with_capacity(cap)),
            Kind::List(elem) => Column::List {
                field: Arc::new(Field::new("item", elem.data_type(), true)),
                child: Box::new(Column::new(elem, cap, 0)),
                offsets: vec![0],
                validity: arrow_buffer::NullBufferBuilder::new(cap),
            },
        }
    }

    /// Appends one value (`None` is NULL).
    pub(crate) fn append(&mut self, value: Option<&[u8]>) -> Result<(), String> {
        let Some(v) = value else {
            self.append_null();
            return Ok(());
        };
        match self {
            Column::Bool(b) => b.append_value(fixed::<1>(v)?[0] != 0),
            Column::Int2(b) => b.append_value(i16::from_be_bytes(fixed(v)?)),
            Column::Int4(b) => b.append_value(i32::from_be_bytes(fixed(v)?)),
            Column::Int8(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
            Column::Oid(b) => b.append_value(u32::from_be_bytes(fixed(v)?)),
            Column::Float4(b) => b.append_value(f32::from_be_bytes(fixed(v)?)),
            Column::Float8(b) => b.append_value(f64::from_be_bytes(fixed(v)?)),
            Column::Decimal(b, scale) => {
                let n = Numeric::parse(v)?;
                if let Some(special) = n.special() {
                    return Err(format!(
                        "the value {special} has no Decimal128 form; exclude it (a mapper \
                         `filter`), or alter the column to plain `numeric` to read it as text"
                    ));
                }
                b.append_value(
                    n.to_i128(*scale)
                        .ok_or("a numeric value too large for its declared precision")?,
                );
            }
            Column::NumericText(b, scratch) => {
                scratch.clear();
                Numeric::parse(v)?.write_text(scratch);
                b.append_value(scratch.as_str());
            }
            Column::Text(b) => b.append_value(utf8(v)?),
            Column::Jsonb(b) => match v.split_first() {
                Some((1, json)) => b.append_value(utf8(json)?),
                _ => return Err("a jsonb value of an unknown binary version".into()),
            },
            Column::Uuid(b, scratch) => {
                use std::fmt::Write;
                let bytes = fixed::<16>(v)?;
                scratch.clear();
                for (i, byte) in bytes.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        scratch.push('-');
                    }
                    let _ = write!(scratch, "{byte:02x}");
                }
                b.append_value(scratch.as_str());
            }
            Column::Bytea(b) => b.append_value(v),
            Column::Date(b) => {
                // ±infinity as the extreme values weft-core documents; every finite date
                // (up to 5874897 AD) is far from them.
                b.append_value(match i32::from_be_bytes(fixed(v)?) {
                    i32::MAX => values::DATE_INFINITY,
                    i32::MIN => values::DATE_NEG_INFINITY,
                    days => days + PG_EPOCH_DAYS,
                });
            }
            Column::Time(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
            Column::Timestamp(b) => {
                let us = i64::from_be_bytes(fixed(v)?);
                let unix = match us {
                    i64::MAX => values::TIMESTAMP_INFINITY,
                    i64::MIN => values::TIMESTAMP_NEG_INFINITY,
                    // PostgreSQL reaches 294276 AD; Arrow's µs since 1970 end in 294247 AD
                    // (and the last µs is infinity).
                    us => us
                        .checked_add(PG_EPOCH_US)
                        .filter(|u| *u != values::TIMESTAMP_INFINITY)
                        .ok_or(
                            "a timestamp after 294247-01-10 is beyond Arrow's microsecond range",
                        )?,
                };
                b.append_value(unix);
            }
            Column::Interval(b) => {
                let raw = fixed::<16>(v)?;
                let us = i64::from_be_bytes(raw[..8].try_into().unwrap());
                let days = i32::from_be_bytes(raw[8..12].try_into().unwrap());
                let months = i32::from_be_bytes(raw[12..].try_into().unwrap());
                let nanos = us
                    .checked_mul(1000)
                    .ok_or("an interval too long for nanoseconds")?;
                b.append_value(IntervalMonthDayNano::new(months, days, nanos));
            }
            Column::List { .. } => append_array(self, v)?,
        }
        Ok(())
    }

    pub(crate) fn append_null(&mut self) {
        match self {
            Column::Bool(b) => b.append_null(),
            Column::Int2(b) => b.append_null(),
            Column::Int4(b) => b.append_null(),
            Column::Int8(b) => b.append_null(),
            Column::Oid(b) => b.append_null(),
            Column::Float4(b) => b.append_null(),
            Column::Float8(b) => b.append_null(),
            Column::Decimal(b, _) => b.append_null(),
            Column::NumericText(b, _) | Column::Text(b) | Column::Jsonb(b) | Column::Uuid(b, _) => {
                b.append_null()
            }
            Column::Bytea(b) => b.append_null(),
            Column::Date(b) => b.append_null(),
            Column::Time(b) => b.append_null(),
            Column::Timestamp(b) => b.append_null(),
            Column::Interval(b) => b.append_null(),
            Column::List {
                offsets, validity, ..
            } => {
                let last = *offsets.last().unwrap();
                offsets.push(last);
                validity.append_null();
            }
        }
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Int2(b) => Arc::new(b.finish()),
            Column::Int4(b) => Arc::new(b.finish()),
            Column::Int8(b) => Arc::new(b.finish()),
            Column::Oid(b) => Arc::new(b.finish()),
            Column::Float4(b) => Arc::new(b.finish()),
            Column::Float8(b) => Arc::new(b.finish()),
            Column::Decimal(b, _) => Arc::new(b.finish()),
            Column::NumericText(b, _) | Column::Text(b) | Column::Jsonb(b) | Column::Uuid(b, _) => {
                Arc::new(b.finish())
            }
            Column::Bytea(b) => Arc::new(b.finish()),
            Column::Date(b) => Arc::new(b.finish()),
            Column::Time(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
            Column::Interval(b) => Arc::new(b.finish()),
            Column::List {
                field,
                child,
                offsets,
                validity,
            } => {
                let values = child.finish();
                let offsets = std::mem::replace(offsets, vec![0]);
                Arc::new(ListArray::new(
                    field.clone(),
                    arrow_buffer::OffsetBuffer::new(offsets.into()),
                    values,
                    validity.finish(),
                ))
            }
        }
    }
}

/// An array value in the binary send format: `ndim`, a has-NULLs flag, the element OID, then
/// `(size, lower bound)` per dimension and the elements in row-major order.
struct ArrayValue<'a> {
    dims: Vec<i32>,
    elements: &'a [u8],
}

impl<'a> ArrayValue<'a> {
    fn parse(v: &'a [u8]) -> Result<Self, String> {
        let word = |at: usize| -> Result<i32, String> {
            v.get(at..at + 4)
                .map(|b| i32::from_be_bytes(b.try_into().unwrap()))
                .ok_or_else(|| "a truncated array value".to_string())
        };
        let ndim = word(0)?;
        // PostgreSQL allows at most 6 dimensions (MAXDIM).
        if !(0..=6).contains(&ndim) {
            return Err(format!("an array value with {ndim} dimensions"));
        }
        // Lower bounds (at 16 + 8i) are not kept: Arrow lists have none (see crate::types).
        let dims = (0..ndim as usize)
            .map(|i| word(12 + 8 * i))
            .collect::<Result<Vec<_>, _>>()?;
        if dims.iter().any(|d| *d < 0) {
            return Err("an array value with a negative dimension".into());
        }
        let start = 12 + 8 * ndim as usize;
        Ok(Self {
            dims,
            elements: v.get(start..).ok_or("a truncated array value")?,
        })
    }

    /// Appends the next `count` elements to `leaf`, advancing past them.
    fn append_elements(&mut self, leaf: &mut Column, count: usize) -> Result<(), String> {
        for _ in 0..count {
            let len = self
                .elements
                .get(..4)
                .map(|b| i32::from_be_bytes(b.try_into().unwrap()))
                .ok_or("a truncated array element")?;
            let rest = &self.elements[4..];
            if len < 0 {
                leaf.append(None)?;
                self.elements = rest;
                continue;
            }
            let elem = rest
                .get(..len as usize)
                .ok_or("a truncated array element")?;
            leaf.append(Some(elem))?;
            self.elements = &rest[len as usize..];
        }
        Ok(())
    }
}

impl Column {
    /// The number of nested list levels (the declared array dimensions).
    fn depth(&self) -> usize {
        match self {
            Column::List { child, .. } => 1 + child.depth(),
            _ => 0,
        }
    }
}

/// Appends a binary array value to the list column `list`, nested as deep as the column is.
fn append_array(list: &mut Column, v: &[u8]) -> Result<(), String> {
    let mut value = ArrayValue::parse(v)?;
    let depth = list.depth();
    if value.dims.is_empty() {
        // An empty array has no dimensions at all: an empty list at any depth.
        return append_lists(list, 1, &[0], &mut value);
    }
    if value.dims.len() != depth {
        let shape = |n: usize| match n {
            1 => "one dimension".to_string(),
            n => format!("{n} dimensions"),
        };
        return Err(format!(
            "an array value with {} where the column declares {}; PostgreSQL does not enforce \
             declared dimensions, weft reads them as that many nested lists: declare the \
             values' dimensions (`ALTER TABLE … ALTER COLUMN … TYPE <element>{}`, which \
             rewrites no data), or leave the column out with `columns:`",
            shape(value.dims.len()),
            shape(depth),
            "[]".repeat(value.dims.len()),
        ));
    }
    let dims = value.dims.clone();
    append_lists(list, 1, &dims, &mut value)
}

/// Appends `count` lists of `dims[0]` items each to `column`, then their items level by level:
/// in row-major order every list of a level has the same length, so each level's values are
/// the next level's lists in sequence.
fn append_lists(
    column: &mut Column,
    count: usize,
    dims: &[i32],
    value: &mut ArrayValue<'_>,
) -> Result<(), String> {
    let Column::List {
        child,
        offsets,
        validity,
        ..
    } = column
    else {
        return value.append_elements(column, count);
    };
    let size = dims.first().copied().unwrap_or(0);
    for _ in 0..count {
        let last = *offsets.last().unwrap();
        offsets.push(
            last.checked_add(size)
                .ok_or("an array with more than 2^31 elements in one batch")?,
        );
        validity.append_non_null();
    }
    let items = count * size as usize;
    match dims.get(1..) {
        Some(rest) if !rest.is_empty() => append_lists(child, items, rest, value),
        _ => value.append_elements(child, items),
    }
}

#[cfg(test)]
mod tests {
    use arrow_schema::{DataType, Schema};

    use super::*;

    /// A binary COPY stream of `rows` rows `(i int8, note text)`, each note 100 bytes.
    fn copy_stream(rows: i64) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&[0; 8]); // flags, header extension length
        for i in 0..rows {
            out.extend_from_slice(&2i16.to_be_bytes());
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&i.to_be_bytes());
            out.extend_from_slice(&100i32.to_be_bytes());
            out.extend_from_slice(&[b'x'; 100]);
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn decode(rows: i64, batch_size: usize, batch_bytes: usize) -> Vec<usize> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let mut d = CopyDecoder::new(
            schema,
            &[Kind::Int8, Kind::Text],
            Position::Column(0),
            batch_size,
            batch_bytes,
        );
        for chunk in copy_stream(rows).chunks(4096) {
            d.feed(chunk).unwrap();
        }
        d.finish().unwrap();
        d.ready.iter().map(|b| b.batch.num_rows()).collect()
    }

    #[test]
    fn batches_end_at_the_row_or_the_byte_cap() {
        // 118 wire bytes a row: a batch reaches 10,000 bytes at its 85th row.
        assert_eq!(decode(200, 1000, 10_000), vec![85, 85, 30]);
        assert_eq!(decode(200, 50, 1 << 20), vec![50, 50, 50, 50]);
    }
}
