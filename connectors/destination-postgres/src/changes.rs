//! Applying CDC change batches: the SQL of the current-state apply, and the arrays a change
//! batch adds to its rows when it is copied (into the staging table, or into a changelog).
//!
//! **Current state** (`append_dedup` + CDC). A change batch is cut at its truncate rows; each
//! run of changes between them is binary-COPYed into the session's staging table (the stream's
//! columns, then [`STAGE_OP`], [`STAGE_ORD`] = the row's index in the run, [`STAGE_POSITION`],
//! and an unchanged flag per non-key column, see [`Layout::stage_columns`]), then one
//! statement ([`apply_sql`]) settles it into the table:
//!
//! ```sql
//! WITH l AS MATERIALIZED (              -- the last change of each key
//!   SELECT DISTINCT ON (k) * FROM stage ORDER BY k, _weft_stage_ord DESC),
//! f3 AS MATERIALIZED (                  -- per column with unchanged cells: the last change
//!   SELECT DISTINCT ON (k) k, c3, true  -- of each key that carried its value
//!   FROM stage WHERE _weft_stage_op IN (0, 1) AND _weft_stage_u3 IS NOT TRUE
//!   ORDER BY k, _weft_stage_ord DESC),
//! gone AS (DELETE FROM t USING l WHERE l._weft_stage_op = 2 AND t.k = l.k)
//! INSERT INTO t (k, c3, …, _weft_position, _weft_synced_at, _weft_run_id)
//! SELECT l.k, CASE WHEN l._weft_stage_u3 IS NOT TRUE THEN l.c3   -- sent
//!                  WHEN f3.found THEN f3.c3                      -- carried earlier in the run
//!                  ELSE o.c3 END,                                -- kept from the table
//!        …, l._weft_stage_position, '<synced at>', '<run id>'
//! FROM l LEFT JOIN f3 ON f3.k = l.k LEFT JOIN t AS o ON l._weft_stage_u3 AND o.k = l.k
//! WHERE l._weft_stage_op <> 2
//! ON CONFLICT (k) DO UPDATE SET c3 = excluded.c3, …
//! ```
//!
//! then `TRUNCATE` empties the staging table. The final state of a key after a run depends
//! only on its last change (a full image, or a delete), except for unchanged cells, which
//! take the value of the latest earlier change of the run that carried one, else the stored
//! value. The delete and the upsert touch disjoint keys, so one statement (one snapshot) does
//! both. Deleting a missing key is a no-op and inserting an existing key updates it, so
//! replaying a batch gives the same table. A truncate row becomes `DELETE FROM t` (see the
//! writer for why not `TRUNCATE`). The `f`/`o` joins only appear for columns that have
//! unchanged cells in the run.
//!
//! **Changelog** (`append` + CDC): every change row is copied into the table followed by
//! `_weft_op`, `_weft_position`, `_weft_ordinal` and `_weft_commit_ts` ([`changelog_arrays`]).

use std::sync::Arc;

use weft_core::arrow_array::{
    Array, ArrayRef, Int16Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use weft_core::{ChangeBatch, ChangeOp};

use crate::encode::Metadata;
use crate::naming::quote;
use crate::table::{
    quoted_list, stage_flag, Layout, RUN_ID, STAGE_OP, STAGE_ORD, STAGE_POSITION, STAGE_PREFIX,
    STAGING_TABLE, SYNCED_AT,
};

/// The stage's column marking that a carrier of an unchanged column's value was found.
fn found_column() -> String {
    quote(&format!("{STAGE_PREFIX}found"))
}

/// The statement settling the staged run of changes into the table (see the module docs).
/// `unchanged` lists the indices of the stream's columns with unchanged cells in the run.
pub fn apply_sql(layout: &Layout, unchanged: &[usize], metadata: Option<&Metadata>) -> String {
    let stage = format!("pg_temp.{}", quote(STAGING_TABLE));
    let table = layout.names.qualified();
    let keys = quoted_list(&layout.key);
    let op = quote(STAGE_OP);
    let ord = quote(STAGE_ORD);
    let found = found_column();
    let keys_eq = |a: &str, b: &str| {
        layout
            .key
            .iter()
            .map(|k| format!("{a}.{k} = {b}.{k}", k = quote(k)))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let mut ctes = vec![format!(
        "l AS MATERIALIZED (SELECT DISTINCT ON ({keys}) * FROM {stage} ORDER BY {keys}, {ord} \
         DESC)"
    )];
    for &i in unchanged {
        let column = quote(&layout.columns[i].0);
        ctes.push(format!(
            "f{i} AS MATERIALIZED (SELECT DISTINCT ON ({keys}) {keys}, {column}, true AS {found} \
             FROM {stage} WHERE {op} IN ({insert}, {update}) AND {flag} IS NOT TRUE ORDER BY \
             {keys}, {ord} DESC)",
            insert = ChangeOp::Insert as u8,
            update = ChangeOp::Update as u8,
            flag = quote(&stage_flag(i)),
        ));
    }
    ctes.push(format!(
        "gone AS (DELETE FROM {table} AS t USING l WHERE l.{op} = {delete} AND {})",
        keys_eq("t", "l"),
        delete = ChangeOp::Delete as u8,
    ));

    let mut columns = Vec::new();
    let mut values = Vec::new();
    for (i, (name, _)) in layout.columns.iter().enumerate() {
        let c = quote(name);
        columns.push(c.clone());
        if unchanged.contains(&i) {
            values.push(format!(
                "CASE WHEN l.{flag} IS NOT TRUE THEN l.{c} WHEN f{i}.{found} THEN f{i}.{c} ELSE \
                 o.{c} END",
                flag = quote(&stage_flag(i))
            ));
        } else {
            values.push(format!("l.{c}"));
        }
    }
    columns.push(quote(weft_core::change_columns::POSITION));
    values.push(format!("l.{}", quote(STAGE_POSITION)));
    if let Some(meta) = metadata.filter(|_| layout.metadata) {
        columns.extend([quote(SYNCED_AT), quote(RUN_ID)]);
        values.extend([
            format!("{}::timestamptz", literal(&meta.synced_at_text())),
            literal(&meta.run_id),
        ]);
    }

    let mut from = "l".to_string();
    for &i in unchanged {
        from.push_str(&format!(
            " LEFT JOIN f{i} ON {}",
            keys_eq(&format!("f{i}"), "l")
        ));
    }
    if !unchanged.is_empty() {
        let any_flag = unchanged
            .iter()
            .map(|&i| format!("l.{} IS TRUE", quote(&stage_flag(i))))
            .collect::<Vec<_>>()
            .join(" OR ");
        from.push_str(&format!(
            " LEFT JOIN {table} AS o ON ({any_flag}) AND {}",
            keys_eq("o", "l")
        ));
    }
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !layout.key.iter().any(|k| &quote(k) == *c))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let on_conflict = if updates.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    format!(
        "WITH {} INSERT INTO {table} AS t ({}) SELECT {} FROM {from} WHERE l.{op} <> {delete} ON \
         CONFLICT ({keys}) {on_conflict}",
        ctes.join(", "),
        columns.join(", "),
        values.join(", "),
        delete = ChangeOp::Delete as u8,
    )
}

/// A SQL string literal, right whatever `standard_conforming_strings` says.
pub fn literal(text: &str) -> String {
    if text.contains('\\') {
        format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", text.replace('\'', "''"))
    }
}

/// The helper arrays of a run `lo..hi` of `changes` in the staging table: operation, index in
/// the run, position (see [`Layout::stage_columns`]).
pub fn stage_arrays(changes: &ChangeBatch, lo: usize, hi: usize) -> [ArrayRef; 3] {
    let ops: Int16Array = changes.ops.values()[lo..hi]
        .iter()
        .map(|op| i16::from(*op))
        .collect();
    let ord = Int64Array::from_iter_values(0..(hi - lo) as i64);
    [
        Arc::new(ops),
        Arc::new(ord),
        Arc::new(positions(changes, lo, hi)),
    ]
}

/// Positions as `bigint` (PostgreSQL LSNs stay below 2^63).
fn positions(changes: &ChangeBatch, lo: usize, hi: usize) -> Int64Array {
    changes.positions.values()[lo..hi]
        .iter()
        .map(|p| *p as i64)
        .collect()
}

/// The changelog's change columns of every row of `changes`: `_weft_op`, `_weft_position`,
/// `_weft_ordinal`, `_weft_commit_ts` (UTC).
pub fn changelog_arrays(changes: &ChangeBatch) -> [ArrayRef; 4] {
    let n = changes.len();
    let ops: StringArray = (0..n).map(|i| Some(changes.op(i).as_str())).collect();
    let ordinals: Int64Array = changes
        .ordinals
        .values()
        .iter()
        .map(|o| *o as i64)
        .collect();
    let commit = TimestampMicrosecondArray::new(
        changes.commit_micros.values().clone(),
        changes.commit_micros.nulls().cloned(),
    )
    .with_timezone("UTC");
    [
        Arc::new(ops),
        Arc::new(positions(changes, 0, n)),
        Arc::new(ordinals),
        Arc::new(commit),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("run-1"), "'run-1'");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b'c"), "E'a\\\\b''c'");
    }
}
