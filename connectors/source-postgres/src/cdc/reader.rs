//! The change semantics: pgoutput messages of one table → change rows, in commit order.
//!
//! * Transactions are skipped when they end at or before the applied-through position
//!   (their commit record starts before it: every position weft checkpoints is a record
//!   boundary or past a commit record straddling it, so "starts before P" and "ends at or
//!   before P" are the same test, made at Begin), or when the initial copy's snapshot saw
//!   them committed (their rows are in the copy).
//! * One row per change; `ordinal` counts the changes of a transaction. An update whose key
//!   changed is a delete of the old key then an insert of the new row. Deletes carry the
//!   replica identity (the key, or the whole row with REPLICA IDENTITY FULL). A truncate is
//!   one all-NULL row.
//! * Relation messages are checked against the stream's columns when the first change after
//!   them is applied (a re-decoded, skipped transaction may carry an older shape): columns
//!   added at the end widen the schema; dropped, renamed or retyped columns stop the read.

use std::sync::Arc;

use arrow_schema::{Field, SchemaRef};
use weft_core::ChangeOp;

use super::changes::{extend_schema, ChangeBuilder};
use super::pgoutput::{decode, Datum, Message, OldKind, Relation, Tuple};
use crate::state::SnapshotXids;
use crate::types::{oid, Kind};

/// A column of the stream as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

/// What a message asks of the caller.
#[derive(Debug, PartialEq)]
pub enum Event {
    None,
    /// A transaction ended (applied or skipped).
    Committed,
    /// The relation gained these columns at its end: look up their types, then call
    /// [`Reader::add_columns`] and handle the same message again.
    NeedColumns(Vec<String>),
}

struct Txn {
    skip: bool,
    micros: i64,
    ordinal: u64,
}

pub struct Reader {
    pub stream: String,
    /// The pipeline id, for the `weft sync reset` hint.
    pub pipeline: String,
    /// Schema, namespace and name of the table.
    table: (String, String),
    pub builder: ChangeBuilder,
    columns: Vec<ColumnType>,
    /// Indexes of the primary key columns (empty: use the relation's identity columns).
    key: Vec<usize>,
    /// The last Relation message, checked when a change first uses it.
    relation: Option<Relation>,
    checked: bool,
    /// Columns the last checked relation had (an older shape may lack trailing ones).
    shape: Option<usize>,
    snapshot: Option<SnapshotXids>,
    /// Applied through: transactions ending at or before it are skipped.
    pub position: u64,
    txn: Option<Txn>,
}

impl Reader {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stream: String,
        pipeline: String,
        table: (String, String),
        builder: ChangeBuilder,
        columns: Vec<ColumnType>,
        key: Vec<usize>,
        snapshot: Option<SnapshotXids>,
        position: u64,
    ) -> Self {
        Self {
            stream,
            pipeline,
            table,
            builder,
            columns,
            key,
            relation: None,
            checked: false,
            shape: None,
            snapshot,
            position,
            txn: None,
        }
    }

    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    fn err(&self, what: impl std::fmt::Display) -> String {
        format!("stream `{}`: {what}", self.stream)
    }

    /// Handles one pgoutput message.
    pub fn handle(&mut self, data: &[u8]) -> Result<Event, String> {
        let msg = decode(data).map_err(|e| self.err(format!("malformed change data: {e}")))?;
        match msg {
            Message::Begin {
                final_lsn,
                commit_micros,
                xid,
            } => {
                if self.txn.is_some() {
                    return Err(
                        self.err("malformed change data: a transaction began inside another")
                    );
                }
                let skip = final_lsn < self.position
                    || self.snapshot.as_ref().is_some_and(|s| s.sees(xid));
                if !skip {
                    self.builder.begin();
                }
                self.txn = Some(Txn {
                    skip,
                    micros: commit_micros,
                    ordinal: 0,
                });
                Ok(Event::None)
            }
            Message::Commit { end_lsn, .. } => {
                let txn = self.txn.take().ok_or_else(|| {
                    self.err("malformed change data: a commit outside a transaction")
                })?;
                if !txn.skip {
                    self.builder.commit(end_lsn);
                }
                self.position = self.position.max(end_lsn);
                Ok(Event::Committed)
            }
            Message::Relation(rel) => {
                if (rel.namespace.as_str(), rel.name.as_str())
                    != (self.table.0.as_str(), self.table.1.as_str())
                {
                    return Err(self.err(format!(
                        "the publication sent changes of {}.{}, which this stream does not read \
                         (was the publication edited by hand?)",
                        rel.namespace, rel.name
                    )));
                }
                self.relation = Some(rel);
                self.checked = false;
                Ok(Event::None)
            }
            Message::Origin | Message::Type | Message::Logical => Ok(Event::None),
            Message::Insert { relation, new } => {
                let Some(ordinal) = self.change(relation)? else {
                    return Ok(Event::None);
                };
                match self.check_relation()? {
                    Event::None => {}
                    need => return Ok(need),
                }
                self.push(ChangeOp::Insert, &new, ordinal)?;
                self.bump();
                Ok(Event::None)
            }
            Message::Update { relation, old, new } => {
                let Some(ordinal) = self.change(relation)? else {
                    return Ok(Event::None);
                };
                match self.check_relation()? {
                    Event::None => {}
                    need => return Ok(need),
                }
                match old {
                    Some((kind, old)) if self.key_changed(kind, &old, &new) => {
                        let new = fill_unchanged(kind, &old, new);
                        self.check_carried(&new)?;
                        self.push(ChangeOp::Delete, &old, ordinal)?;
                        self.push(ChangeOp::Insert, &new, ordinal + 1)?;
                        self.bump();
                    }
                    Some((OldKind::Full, old)) => {
                        let new = fill_unchanged(OldKind::Full, &old, new);
                        self.push(ChangeOp::Update, &new, ordinal)?;
                    }
                    _ => self.push(ChangeOp::Update, &new, ordinal)?,
                }
                self.bump();
                Ok(Event::None)
            }
            Message::Delete { relation, old, .. } => {
                let Some(ordinal) = self.change(relation)? else {
                    return Ok(Event::None);
                };
                match self.check_relation()? {
                    Event::None => {}
                    need => return Ok(need),
                }
                self.push(ChangeOp::Delete, &old, ordinal)?;
                self.bump();
                Ok(Event::None)
            }
            Message::Truncate { relations } => {
                let txn = self.txn.as_ref().ok_or_else(|| {
                    self.err("malformed change data: a change outside a transaction")
                })?;
                if txn.skip {
                    return Ok(Event::None);
                }
                // pgoutput describes a published relation before truncating it.
                let ours = self.relation.as_ref().map(|r| r.id).ok_or_else(|| {
                    self.err("malformed change data: a truncate of an undescribed relation")
                })?;
                if !relations.contains(&ours) {
                    return Ok(Event::None);
                }
                let Some(ordinal) = self.change(ours)? else {
                    return Ok(Event::None);
                };
                self.push(ChangeOp::Truncate, &[], ordinal)?;
                self.bump();
                Ok(Event::None)
            }
        }
    }

    /// The ordinal of a change in the open transaction, or `None` when it is skipped.
    fn change(&self, relation: u32) -> Result<Option<u64>, String> {
        let txn = self
            .txn
            .as_ref()
            .ok_or_else(|| self.err("malformed change data: a change outside a transaction"))?;
        if txn.skip {
            return Ok(None);
        }
        match &self.relation {
            Some(r) if r.id == relation => Ok(Some(txn.ordinal)),
            _ => Err(self.err(format!(
                "malformed change data: a change of relation {relation} without its description"
            ))),
        }
    }

    fn bump(&mut self) {
        if let Some(t) = &mut self.txn {
            t.ordinal += 1;
        }
    }

    fn push(&mut self, op: ChangeOp, values: &[Datum<'_>], ordinal: u64) -> Result<(), String> {
        let width = self.relation.as_ref().map_or(0, |r| r.columns.len());
        if !values.is_empty() && values.len() != width {
            return Err(self.err(format!(
                "malformed change data: a row of {} columns for a relation of {width}",
                values.len()
            )));
        }
        let micros = self.txn.as_ref().map_or(0, |t| t.micros);
        self.builder
            .push(op, values, ordinal, micros)
            .map_err(|e| self.err(e))
    }

    /// The insert half of a key change must carry every value: a TOASTed value PostgreSQL
    /// did not resend (`Unchanged`) cannot be carried from the old key's row when the old
    /// tuple holds only the key (REPLICA IDENTITY DEFAULT). Flagging it unchanged would
    /// leave the new key's row without it (a destination would hold NULL): fail instead.
    fn check_carried(&self, new: &Tuple<'_>) -> Result<(), String> {
        let Some(i) = new.iter().position(|v| *v == Datum::Unchanged) else {
            return Ok(());
        };
        let column = self
            .relation
            .as_ref()
            .and_then(|r| r.columns.get(i))
            .map(|c| c.name.clone())
            .or_else(|| self.columns.get(i).map(|c| c.name.clone()))
            .unwrap_or_else(|| format!("#{}", i + 1));
        let table = crate::sql::qualified(&self.table.0, &self.table.1);
        Err(self.err(format!(
            "an update changed the primary key of a row of {table} and left its TOASTed column \
             `{column}` untouched; with REPLICA IDENTITY DEFAULT PostgreSQL logs neither that \
             value nor the old row, so weft cannot carry it to the new key (the destination \
             would lose it). Run `ALTER TABLE {table} REPLICA IDENTITY FULL;`, then `{}` and \
             sync again to take a new snapshot",
            super::reset_command(&self.pipeline)
        )))
    }

    fn key_changed(&self, kind: OldKind, old: &Tuple<'_>, new: &Tuple<'_>) -> bool {
        let identity: Vec<usize>;
        let key: &[usize] = if self.key.is_empty() {
            match kind {
                // Without a primary key and with REPLICA IDENTITY FULL there is no key to
                // change: it is an update.
                OldKind::Full => return false,
                OldKind::Key => {
                    identity = self
                        .relation
                        .as_ref()
                        .map(|r| {
                            r.columns
                                .iter()
                                .enumerate()
                                .filter(|(_, c)| c.key)
                                .map(|(i, _)| i)
                                .collect()
                        })
                        .unwrap_or_default();
                    &identity
                }
            }
        } else {
            &self.key
        };
        key.iter().any(|&i| match (old.get(i), new.get(i)) {
            (_, Some(Datum::Unchanged)) | (Some(Datum::Unchanged), _) => false,
            (a, b) => a != b,
        })
    }

    /// Checks the relation the first time a change uses it.
    fn check_relation(&mut self) -> Result<Event, String> {
        if self.checked {
            return Ok(Event::None);
        }
        let rel = self
            .relation
            .as_ref()
            .ok_or_else(|| self.err("malformed change data: a change without a relation"))?;
        let way_out = format!(
            "run `{}`, then sync again to take a new snapshot",
            super::reset_command(&self.pipeline)
        );
        for (i, known) in self.columns.iter().enumerate() {
            let Some(now) = rel.columns.get(i) else {
                // Fewer columns: an older shape of the table (before columns were added), or a
                // column dropped since the last shape this read saw.
                if self.shape.is_some_and(|s| rel.columns.len() < s) {
                    return Err(self.err(format!(
                        "column `{}` was dropped from the table; weft cannot follow a dropped \
                         column: {way_out}",
                        self.columns[rel.columns.len()].name
                    )));
                }
                break;
            };
            if now.name != known.name {
                let change = if rel.columns.iter().all(|c| c.name != known.name) {
                    if rel.columns.len() < self.columns.len() {
                        format!("column `{}` was dropped", known.name)
                    } else {
                        format!("column `{}` was renamed to `{}`", known.name, now.name)
                    }
                } else {
                    format!(
                        "column `{}` moved (columns were dropped and re-added)",
                        known.name
                    )
                };
                return Err(self.err(format!(
                    "{change}; weft cannot follow it mid-stream: {way_out}"
                )));
            }
            let numeric_typmod = now.type_oid == oid::NUMERIC && now.typmod != known.typmod;
            if now.type_oid != known.type_oid || numeric_typmod {
                return Err(self.err(format!(
                    "column `{}` changed type (type oid {} typmod {} → {} typmod {}); weft \
                     cannot follow a retyped column mid-stream: {way_out}",
                    known.name, known.type_oid, known.typmod, now.type_oid, now.typmod
                )));
            }
        }
        if rel.columns.len() > self.columns.len() {
            return Ok(Event::NeedColumns(
                rel.columns[self.columns.len()..]
                    .iter()
                    .map(|c| c.name.clone())
                    .collect(),
            ));
        }
        self.shape = Some(rel.columns.len());
        self.checked = true;
        Ok(Event::None)
    }

    /// The table's columns as the stream delivers them now.
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// The columns [`Event::NeedColumns`] asked for, with their Arrow fields and kinds (from
    /// the catalog): the schema widens and a schema change is queued.
    pub fn add_columns(&mut self, added: Vec<(Field, Kind)>) -> Result<SchemaRef, String> {
        let rel = self
            .relation
            .as_ref()
            .expect("a relation asked for columns");
        let start = self.columns.len();
        for (i, (field, _)) in added.iter().enumerate() {
            let c = &rel.columns[start + i];
            self.columns.push(ColumnType {
                name: field.name().clone(),
                type_oid: c.type_oid,
                typmod: c.typmod,
            });
        }
        let schema = extend_schema(
            self.builder.schema(),
            added
                .iter()
                .map(|(f, _)| f.clone().with_nullable(true))
                .collect(),
        );
        let mut kinds = self.builder.kinds().to_vec();
        kinds.extend(added.into_iter().map(|(_, k)| k));
        self.builder
            .schema_change(schema.clone(), kinds)
            .map_err(|e| self.err(e))?;
        Ok(Arc::clone(&schema))
    }
}

/// With the whole old row at hand, unchanged TOASTed values of the new row are taken from it.
fn fill_unchanged<'a>(kind: OldKind, old: &Tuple<'a>, mut new: Tuple<'a>) -> Tuple<'a> {
    if kind == OldKind::Full {
        for (i, v) in new.iter_mut().enumerate() {
            if *v == Datum::Unchanged {
                if let Some(o @ (Datum::Binary(_) | Datum::Text(_))) = old.get(i) {
                    *v = *o;
                }
            }
        }
    }
    new
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_schema::{DataType, Schema};

    use arrow_array::Array;

    use super::super::changes::Out;
    use super::super::pgoutput::tests::Bytes;
    use super::*;

    fn reader(position: u64, snapshot: Option<SnapshotXids>) -> Reader {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let builder = ChangeBuilder::new(schema, vec![Kind::Int8, Kind::Text], 100, 1 << 20);
        let cols = vec![
            ColumnType {
                name: "id".into(),
                type_oid: oid::INT8,
                typmod: -1,
            },
            ColumnType {
                name: "note".into(),
                type_oid: oid::TEXT,
                typmod: -1,
            },
        ];
        Reader::new(
            "public.t".into(),
            "d.p.s".into(),
            ("public".into(), "t".into()),
            builder,
            cols,
            vec![0],
            snapshot,
            position,
        )
    }

    fn relation(cols: &[(&str, u32)]) -> Vec<u8> {
        let mut b = Bytes::new(b'R')
            .u32(1)
            .cstr("public")
            .cstr("t")
            .u8(b'd')
            .u16(cols.len() as u16);
        for (i, (name, oid)) in cols.iter().enumerate() {
            b = b.u8((i == 0) as u8).cstr(name).u32(*oid).i32(-1);
        }
        b.0
    }

    fn begin(final_lsn: u64, xid: u32) -> Vec<u8> {
        Bytes::new(b'B').u64(final_lsn).u64(0).u32(xid).0
    }
    fn commit(lsn: u64, end: u64) -> Vec<u8> {
        Bytes::new(b'C').u8(0).u64(lsn).u64(end).u64(0).0
    }
    fn insert(id: i64, note: &str) -> Vec<u8> {
        Bytes::new(b'I')
            .u32(1)
            .u8(b'N')
            .tuple(&[(b'b', &id.to_be_bytes()), (b'b', note.as_bytes())])
            .0
    }

    fn run(r: &mut Reader, msgs: &[Vec<u8>]) -> Vec<(u8, Option<i64>, u64, u64)> {
        for m in msgs {
            r.handle(m).unwrap_or_else(|e| panic!("{e}"));
        }
        let mut rows = Vec::new();
        for o in r.builder.take(true).unwrap() {
            let Out::Changes(c) = o else { continue };
            let ids = c.rows.column(0).as_primitive::<Int64Type>();
            for i in 0..c.len() {
                rows.push((
                    c.ops.value(i),
                    (!ids.is_null(i)).then(|| ids.value(i)),
                    c.positions.value(i),
                    c.ordinals.value(i),
                ));
            }
        }
        rows
    }

    #[test]
    fn key_change_is_delete_then_insert_and_positions_are_commit_ends() {
        let mut r = reader(0, None);
        let upd = Bytes::new(b'U')
            .u32(1)
            .u8(b'K')
            .tuple(&[(b'b', &1i64.to_be_bytes()), (b'n', b"")])
            .u8(b'N')
            .tuple(&[(b'b', &2i64.to_be_bytes()), (b'b', b"x")])
            .0;
        let same_key = Bytes::new(b'U')
            .u32(1)
            .u8(b'N')
            .tuple(&[(b'b', &2i64.to_be_bytes()), (b'u', b"")])
            .0;
        let del = Bytes::new(b'D')
            .u32(1)
            .u8(b'K')
            .tuple(&[(b'b', &2i64.to_be_bytes()), (b'n', b"")])
            .0;
        let trunc = Bytes::new(b'T').u32(1).u8(0).u32(1).0;
        let rows = run(
            &mut r,
            &[
                begin(10, 5),
                relation(&[("id", oid::INT8), ("note", oid::TEXT)]),
                insert(1, "a"),
                upd,
                same_key,
                del,
                trunc,
                commit(10, 40),
            ],
        );
        assert_eq!(
            rows,
            vec![
                (0, Some(1), 40, 0),
                (2, Some(1), 40, 1),
                (0, Some(2), 40, 2),
                (1, Some(2), 40, 3),
                (2, Some(2), 40, 4),
                (3, None, 40, 5),
            ]
        );
        assert_eq!(r.position, 40);
    }

    #[test]
    fn a_key_change_that_cannot_carry_a_toasted_value_fails() {
        let upd = |old: u8| {
            let mut b = Bytes::new(b'U').u32(1).u8(old);
            b = if old == b'K' {
                b.tuple(&[(b'b', &1i64.to_be_bytes()), (b'n', b"")])
            } else {
                b.tuple(&[(b'b', &1i64.to_be_bytes()), (b'b', b"big")])
            };
            b.u8(b'N')
                .tuple(&[(b'b', &2i64.to_be_bytes()), (b'u', b"")])
                .0
        };
        let rel = relation(&[("id", oid::INT8), ("note", oid::TEXT)]);
        let mut r = reader(0, None);
        r.handle(&begin(10, 5)).unwrap();
        r.handle(&rel).unwrap();
        let err = r.handle(&upd(b'K')).unwrap_err();
        assert!(
            err.contains(r#"ALTER TABLE "public"."t" REPLICA IDENTITY FULL"#)
                && err.contains("`note`")
                && err.contains("weft sync reset d/p/s"),
            "{err}"
        );
        // With the whole old row, the value is carried to the new key.
        let mut r = reader(0, None);
        let rows = run(&mut r, &[begin(10, 5), rel, upd(b'O'), commit(10, 40)]);
        assert_eq!(rows, vec![(2, Some(1), 40, 0), (0, Some(2), 40, 1)]);
    }

    #[test]
    fn applied_and_snapshot_visible_transactions_are_skipped() {
        let snap = SnapshotXids {
            xmin: 100,
            xmax: 105,
            xip: vec![102],
        };
        let mut r = reader(50, Some(snap));
        let rel = relation(&[("id", oid::INT8), ("note", oid::TEXT)]);
        let rows = run(
            &mut r,
            &[
                // Ends before the applied position.
                begin(20, 200),
                rel.clone(),
                insert(1, "old"),
                commit(20, 50),
                // Seen by the snapshot (committed before it).
                begin(60, 101),
                insert(2, "copied"),
                commit(60, 70),
                // Running at the snapshot: streamed.
                begin(80, 102),
                insert(3, "new"),
                commit(80, 90),
                // Started after the snapshot.
                begin(100, 106),
                insert(4, "newer"),
                commit(100, 110),
            ],
        );
        let ids: Vec<_> = rows.iter().map(|r| (r.1, r.2)).collect();
        assert_eq!(ids, vec![(Some(3), 90), (Some(4), 110)]);
        assert_eq!(r.position, 110);
    }

    #[test]
    fn added_columns_widen_and_dropped_or_renamed_columns_fail() {
        let mut r = reader(0, None);
        r.handle(&begin(1, 1)).unwrap();
        r.handle(&relation(&[
            ("id", oid::INT8),
            ("note", oid::TEXT),
            ("extra", oid::INT4),
        ]))
        .unwrap();
        let ins = Bytes::new(b'I')
            .u32(1)
            .u8(b'N')
            .tuple(&[
                (b'b', &1i64.to_be_bytes()),
                (b'n', b""),
                (b'b', &7i32.to_be_bytes()),
            ])
            .0;
        assert_eq!(
            r.handle(&ins).unwrap(),
            Event::NeedColumns(vec!["extra".into()])
        );
        r.add_columns(vec![(
            Field::new("extra", DataType::Int32, true),
            Kind::Int4,
        )])
        .unwrap();
        assert_eq!(r.handle(&ins).unwrap(), Event::None);
        r.handle(&commit(1, 2)).unwrap();
        let out = r.builder.take(true).unwrap();
        assert!(matches!(out[0], Out::Schema(ref s) if s.fields().len() == 3));

        r.handle(&begin(3, 2)).unwrap();
        r.handle(&relation(&[("id", oid::INT8), ("extra", oid::INT4)]))
            .unwrap();
        let err = r.handle(&insert(1, "x")).unwrap_err();
        assert!(
            err.contains("`note` was dropped") && err.contains("weft sync reset d/p/s"),
            "{err}"
        );

        let mut r = reader(0, None);
        r.handle(&begin(1, 1)).unwrap();
        r.handle(&relation(&[("id", oid::INT8), ("memo", oid::TEXT)]))
            .unwrap();
        let err = r.handle(&insert(1, "x")).unwrap_err();
        assert!(err.contains("renamed to `memo`"), "{err}");

        let mut r = reader(0, None);
        r.handle(&begin(1, 1)).unwrap();
        r.handle(&relation(&[("id", oid::INT8), ("note", oid::INT4)]))
            .unwrap();
        let err = r.handle(&insert(1, "x")).unwrap_err();
        assert!(err.contains("changed type"), "{err}");
    }

    #[test]
    fn malformed_streams_are_errors() {
        let mut r = reader(0, None);
        assert!(r
            .handle(&insert(1, "x"))
            .unwrap_err()
            .contains("outside a transaction"));
        assert!(r.handle(&commit(1, 2)).unwrap_err().contains("outside"));
        r.handle(&begin(1, 1)).unwrap();
        assert!(r
            .handle(&begin(1, 1))
            .unwrap_err()
            .contains("inside another"));
        assert!(r
            .handle(&insert(1, "x"))
            .unwrap_err()
            .contains("without its description"));
        assert!(r
            .handle(b"B")
            .unwrap_err()
            .contains("stream `public.t`: malformed"));
    }
}
