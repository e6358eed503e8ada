//! Change rows → Arrow [`ChangeBatch`]es. [`ChangeBuilder`] appends tuple values straight to
//! the same typed builders as the binary COPY decoder, cuts a batch every `batch_size` rows or
//! `batch_bytes` bytes, and holds batches back until the transaction they end in has
//! committed: a row's position is its transaction's commit *end* LSN, which pgoutput only
//! sends in the Commit message, and a checkpoint may only follow a whole transaction. So a
//! transaction larger than a batch is held in memory (as Arrow batches) until its commit.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt64Array, UInt8Array};
use arrow_schema::SchemaRef;
use weft_core::{ChangeBatch, ChangeOp};

use super::pgoutput::Datum;
use crate::decode::Column;
use crate::types::Kind;

/// What the builder hands on, in order.
#[derive(Debug)]
pub enum Out {
    Changes(Box<ChangeBatch>),
    /// Batches after this one have this schema (columns were added).
    Schema(SchemaRef),
}

/// A cut batch waiting for its transaction's commit.
struct Part {
    rows: RecordBatch,
    ops: Vec<u8>,
    ordinals: Vec<u64>,
    positions: Vec<u64>,
    micros: Vec<i64>,
    unchanged: BTreeMap<String, Vec<bool>>,
    /// Rows from here on belong to the open transaction (their position is not known yet).
    open_from: Option<usize>,
}

enum Sealed {
    Part(Part),
    Schema(SchemaRef),
}

pub struct ChangeBuilder {
    schema: SchemaRef,
    kinds: Vec<Kind>,
    columns: Vec<Column>,
    ops: Vec<u8>,
    ordinals: Vec<u64>,
    positions: Vec<u64>,
    micros: Vec<i64>,
    unchanged: Vec<Option<Vec<bool>>>,
    bytes: usize,
    open_from: Option<usize>,
    sealed: VecDeque<Sealed>,
    batch_size: usize,
    batch_bytes: usize,
}

impl ChangeBuilder {
    pub fn new(schema: SchemaRef, kinds: Vec<Kind>, batch_size: usize, batch_bytes: usize) -> Self {
        let cap = batch_size.min(1024);
        Self {
            columns: kinds.iter().map(|k| Column::new(k, cap, 0)).collect(),
            unchanged: vec![None; kinds.len()],
            schema,
            kinds,
            ops: Vec::new(),
            ordinals: Vec::new(),
            positions: Vec::new(),
            micros: Vec::new(),
            bytes: 0,
            open_from: None,
            sealed: VecDeque::new(),
            batch_size: batch_size.max(1),
            batch_bytes: batch_bytes.max(1),
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    fn rows(&self) -> usize {
        self.ops.len()
    }

    /// A transaction starts.
    pub fn begin(&mut self) {
        self.open_from = Some(self.rows());
    }

    /// Appends one change row. `values[i]` is column `i` (columns past the end of `values`,
    /// added after the change was made, are NULL; an empty `values` is an all-NULL row).
    pub fn push(
        &mut self,
        op: ChangeOp,
        values: &[Datum<'_>],
        ordinal: u64,
        commit_micros: i64,
    ) -> Result<(), String> {
        if values.len() > self.columns.len() {
            return Err(format!(
                "a change row has {} columns, the stream has {}",
                values.len(),
                self.columns.len()
            ));
        }
        // Check every value first, so a bad one never leaves a half-appended row.
        for (i, v) in values.iter().enumerate() {
            if let Datum::Text(_) = v {
                if self.kinds[i] != Kind::Text {
                    return Err(format!(
                        "column `{}`: the server sent the value as text, which weft cannot \
                         decode for this type",
                        self.schema.field(i).name()
                    ));
                }
            }
        }
        let rows = self.rows();
        for i in 0..self.columns.len() {
            let datum = values.get(i).copied().unwrap_or(Datum::Null);
            let flag = datum == Datum::Unchanged;
            let result = match datum {
                Datum::Null | Datum::Unchanged => {
                    self.columns[i].append_null();
                    Ok(())
                }
                Datum::Text(v) | Datum::Binary(v) => {
                    self.bytes += v.len();
                    self.columns[i].append(Some(v))
                }
            };
            if let Err(e) = result {
                // The row is half appended: the builders are unusable from here on. The
                // caller fails the read, so nothing of them is emitted.
                return Err(format!("column `{}`: {e}", self.schema.field(i).name()));
            }
            match &mut self.unchanged[i] {
                Some(mask) => mask.push(flag),
                None if flag => {
                    let mut mask = vec![false; rows];
                    mask.push(true);
                    self.unchanged[i] = Some(mask);
                }
                None => {}
            }
        }
        self.ops.push(op as u8);
        self.ordinals.push(ordinal);
        self.positions.push(0); // set at commit
        self.micros.push(commit_micros);
        self.bytes += 16;
        if self.rows() >= self.batch_size || self.bytes >= self.batch_bytes {
            self.seal()?;
        }
        Ok(())
    }

    /// The open transaction committed: its rows get position `end_lsn`.
    pub fn commit(&mut self, end_lsn: u64) {
        for sealed in self.sealed.iter_mut() {
            if let Sealed::Part(part) = sealed {
                if let Some(from) = part.open_from.take() {
                    part.positions[from..].fill(end_lsn);
                }
            }
        }
        if let Some(from) = self.open_from.take() {
            self.positions[from..].fill(end_lsn);
        }
    }

    /// Columns were added: rows after this have `schema`. Called between changes; rows before
    /// are cut into their own batch.
    pub fn schema_change(&mut self, schema: SchemaRef, kinds: Vec<Kind>) -> Result<(), String> {
        self.seal()?;
        let cap = self.batch_size.min(1024);
        self.columns = kinds.iter().map(|k| Column::new(k, cap, 0)).collect();
        self.unchanged = vec![None; kinds.len()];
        self.kinds = kinds;
        self.schema = schema.clone();
        self.sealed.push_back(Sealed::Schema(schema));
        Ok(())
    }

    /// Cuts the rows so far into a part.
    fn seal(&mut self) -> Result<(), String> {
        let rows = self.rows();
        if rows == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| e.to_string())?;
        let unchanged = self
            .schema
            .fields()
            .iter()
            .zip(self.unchanged.iter_mut())
            .filter_map(|(f, m)| m.take().map(|m| (f.name().clone(), m)))
            .collect();
        self.sealed.push_back(Sealed::Part(Part {
            rows: batch,
            ops: std::mem::take(&mut self.ops),
            ordinals: std::mem::take(&mut self.ordinals),
            positions: std::mem::take(&mut self.positions),
            micros: std::mem::take(&mut self.micros),
            unchanged,
            open_from: self.open_from,
        }));
        // The open transaction's later rows start the next part.
        if self.open_from.is_some() {
            self.open_from = Some(0);
        }
        self.bytes = 0;
        Ok(())
    }

    /// Everything ready to emit: only between transactions. With `all`, the rows not yet cut
    /// are cut too (the end of a window); else only batches that were full.
    pub fn take(&mut self, all: bool) -> Result<Vec<Out>, String> {
        if self.open_from.is_some() {
            return Err("a transaction is still open".into());
        }
        if all {
            self.seal()?;
        }
        Ok(self
            .sealed
            .drain(..)
            .map(|s| match s {
                Sealed::Schema(schema) => Out::Schema(schema),
                Sealed::Part(p) => Out::Changes(Box::new(ChangeBatch {
                    rows: p.rows,
                    ops: UInt8Array::from(p.ops),
                    positions: UInt64Array::from(p.positions),
                    ordinals: UInt64Array::from(p.ordinals),
                    commit_micros: Int64Array::from(p.micros),
                    unchanged: p
                        .unchanged
                        .into_iter()
                        .map(|(k, v)| (k, BooleanArray::from(v)))
                        .collect(),
                })),
            })
            .collect())
    }

    /// Whether rows or batches are waiting.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.rows() == 0 && self.sealed.is_empty()
    }
}

/// Snapshot rows as a change batch: all inserts at the slot's consistent point, ordinals
/// continuing from `first_ordinal`.
pub fn snapshot_batch(
    rows: RecordBatch,
    position: u64,
    first_ordinal: u64,
    micros: i64,
) -> ChangeBatch {
    let n = rows.num_rows();
    ChangeBatch {
        rows,
        ops: UInt8Array::from(vec![ChangeOp::Insert as u8; n]),
        positions: UInt64Array::from(vec![position; n]),
        ordinals: UInt64Array::from_iter_values(first_ordinal..first_ordinal + n as u64),
        commit_micros: Int64Array::from(vec![micros; n]),
        unchanged: BTreeMap::new(),
    }
}

/// The schema with `fields` appended (for added columns).
pub fn extend_schema(schema: &SchemaRef, fields: Vec<arrow_schema::Field>) -> SchemaRef {
    let mut all: Vec<arrow_schema::Field> =
        schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    all.extend(fields);
    Arc::new(arrow_schema::Schema::new(all))
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::Array;
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn builder(batch_size: usize) -> ChangeBuilder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        ChangeBuilder::new(schema, vec![Kind::Int8, Kind::Text], batch_size, 1 << 20)
    }

    fn batches(out: Vec<Out>) -> Vec<ChangeBatch> {
        out.into_iter()
            .map(|o| match o {
                Out::Changes(c) => *c,
                Out::Schema(_) => panic!("unexpected schema change"),
            })
            .collect()
    }

    #[test]
    fn a_transaction_split_across_batches_gets_its_commit_position() {
        let mut b = builder(2);
        let id = |i: i64| i.to_be_bytes();
        b.begin();
        for i in 0..3i64 {
            let v = id(i);
            b.push(
                ChangeOp::Insert,
                &[Datum::Binary(&v), Datum::Text(b"x")],
                i as u64,
                7,
            )
            .unwrap();
        }
        assert!(b.take(false).is_err(), "open transaction");
        b.commit(100);
        b.begin();
        let v = id(9);
        b.push(
            ChangeOp::Update,
            &[Datum::Binary(&v), Datum::Unchanged],
            0,
            8,
        )
        .unwrap();
        b.commit(200);
        let out = batches(b.take(true).unwrap());
        assert_eq!(out.iter().map(|c| c.len()).collect::<Vec<_>>(), vec![2, 2]);
        for c in &out {
            c.validate().unwrap();
        }
        assert_eq!(out[0].positions.values(), &[100, 100]);
        assert_eq!(out[1].positions.values(), &[100, 200]);
        assert_eq!(out[1].ordinals.values(), &[2, 0]);
        assert_eq!(out[1].op(1), ChangeOp::Update);
        assert!(out[1].is_unchanged("note", 1));
        assert!(!out[1].is_unchanged("note", 0));
        assert!(out[1].rows.column(1).is_null(1));
        assert_eq!(
            out[1].rows.column(0).as_primitive::<Int64Type>().value(1),
            9
        );
        assert!(b.is_empty());
    }

    #[test]
    fn bad_values_and_text_for_binary_types_are_errors() {
        let mut b = builder(10);
        b.begin();
        let err = b
            .push(ChangeOp::Insert, &[Datum::Text(b"1"), Datum::Null], 0, 0)
            .unwrap_err();
        assert!(err.contains("column `id`"), "{err}");
        let err = b
            .push(
                ChangeOp::Insert,
                &[Datum::Binary(b"123"), Datum::Null],
                0,
                0,
            )
            .unwrap_err();
        assert!(err.contains("column `id`"), "{err}");
    }

    #[test]
    fn short_rows_are_padded_and_truncate_rows_are_null() {
        let mut b = builder(10);
        b.begin();
        let v = 1i64.to_be_bytes();
        b.push(ChangeOp::Delete, &[Datum::Binary(&v)], 0, 0)
            .unwrap();
        b.push(ChangeOp::Truncate, &[], 1, 0).unwrap();
        b.commit(5);
        let out = batches(b.take(true).unwrap());
        assert_eq!(out[0].len(), 2);
        assert!(out[0].rows.column(1).is_null(0));
        assert!(out[0].rows.column(0).is_null(1));
        assert_eq!(out[0].op(1), ChangeOp::Truncate);
    }
}
