//! Incremental reads by cursor: `WHERE (cursor, key…) > (…) ORDER BY cursor, key…` with one
//! binary COPY, a checkpoint holding the last row's (cursor, key) after every batch.
//!
//! Rows whose cursor is NULL are never read incrementally, and rows committed late with a cursor
//! older than the last checkpoint are missed (a long transaction stamping `now()` at its start
//! commits after newer rows were read): use CDC where that matters.

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, Decimal128Array, RecordBatch};
use weft_core::{
    values, Checkpoint, ConfiguredStream, ConnectorError, MessageStream, Result, SourceMessage,
};

use crate::connect::connect;
use crate::decode::Position;
use crate::read::{channel, ReadCtx};
use crate::sql::{quote_ident, quote_literal};
use crate::state::PgState;
use crate::types::Kind;

/// Starts an incremental read after `state`'s position.
pub async fn start(
    ctx: ReadCtx,
    stream: &ConfiguredStream,
    state: Option<PgState>,
) -> Result<MessageStream> {
    let name = ctx.stream.clone();
    let candidates = stream.descriptor.cursor_candidates.join(", ");
    let cursor = stream.cursor_field.clone().ok_or_else(|| {
        ConnectorError::config(
            "cursor_field",
            format!("stream `{name}` is read incrementally but has no cursor; set `cursor:` to one of: {candidates}"),
        )
    })?;
    let cursor_ok = ctx.table.column(&cursor).is_some_and(|c| {
        matches!(
            c.kind,
            Some(
                Kind::Timestamp
                    | Kind::TimestampTz
                    | Kind::Date
                    | Kind::Int2
                    | Kind::Int4
                    | Kind::Int8
            )
        )
    });
    if !cursor_ok {
        return Err(ConnectorError::config(
            "cursor_field",
            format!("stream `{name}`: `{cursor}` cannot be a cursor (it must be a timestamp, timestamptz, date or integer column); use one of: {candidates}"),
        ));
    }
    let key = if stream.primary_key.is_empty() {
        ctx.table.primary_key.clone()
    } else {
        stream.primary_key.clone()
    };
    if key.is_empty() {
        return Err(ConnectorError::config(
            "primary_key",
            format!("stream `{name}` has no primary key, which incremental reads need to tell rows sharing a cursor value apart; set `primary_key:`"),
        ));
    }
    for k in &key {
        let ok = ctx.table.column(k).is_some_and(|c| {
            matches!(
                c.kind,
                Some(
                    Kind::Int2
                        | Kind::Int4
                        | Kind::Int8
                        | Kind::Text
                        | Kind::Uuid
                        | Kind::Date
                        | Kind::Timestamp
                        | Kind::TimestampTz
                        | Kind::Decimal(..)
                        | Kind::NumericText
                )
            )
        });
        if !ok {
            return Err(ConnectorError::config(
                "primary_key",
                format!("stream `{name}`: key column `{k}` is missing or of a type weft cannot resume by (use integer, text, uuid, numeric, date or timestamp columns)"),
            ));
        }
    }
    let (position, from) = match state {
        None => (None, None),
        Some(PgState::Incremental {
            cursor_field,
            key: saved_key,
            position,
            from,
        }) => {
            if cursor_field != cursor || saved_key != key {
                return Err(ConnectorError::Other(format!(
                    "stream `{name}`: the saved checkpoint was read by cursor `{cursor_field}` and key {saved_key:?}, now it is `{cursor}` and {key:?}; reset the stream's state to read it from the start"
                )));
            }
            (position, from)
        }
        // A finished or interrupted full refresh or CDC read: an incremental read starts from
        // scratch.
        Some(PgState::FullRefresh { .. } | PgState::Cdc(_)) => (None, None),
    };
    let order: Vec<String> = std::iter::once(cursor.clone())
        .chain(key.iter().cloned())
        .collect();
    let query = query(&ctx, &order, position.as_deref(), from.as_deref());
    let indices: Vec<usize> = order
        .iter()
        .map(|c| {
            ctx.table
                .columns
                .iter()
                .position(|col| &col.name == c)
                .unwrap()
        })
        .collect();
    let client = connect(&ctx.config).await?;
    ctx.warn_text_casts();
    let (tx, out) = channel();
    tokio::spawn(async move {
        let last = std::sync::Mutex::new(position);
        let (tx, last_ref, order_ref) = (&tx, &last, &order);
        let result = ctx
            .copy(&client, &query, Position::None, |d| {
                let row = position_of(&ctx, &d.batch, &indices);
                async move {
                    let row = match row {
                        Ok(row) => row,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return false;
                        }
                    };
                    if tx.send(Ok(SourceMessage::Records(d.batch))).await.is_err() {
                        return false;
                    }
                    let cp = {
                        let mut last = last_ref.lock().expect("position lock");
                        *last = row;
                        checkpoint(&order_state(order_ref), &last, None)
                    };
                    tx.send(Ok(SourceMessage::Checkpoint(cp))).await.is_ok()
                }
            })
            .await;
        match result {
            Ok(true) => {
                let last = last.lock().expect("position lock").clone();
                // A read that found no row keeps the position it started from.
                let cp = checkpoint(&order_state(&order), &last, from);
                let _ = tx.send(Ok(SourceMessage::Checkpoint(cp))).await;
            }
            Ok(false) => {}
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
    });
    Ok(out)
}

fn order_state(order: &[String]) -> (String, Vec<String>) {
    (order[0].clone(), order[1..].to_vec())
}

fn checkpoint(
    (cursor_field, key): &(String, Vec<String>),
    position: &Option<Vec<String>>,
    from: Option<String>,
) -> Checkpoint {
    Checkpoint::encode(&PgState::Incremental {
        cursor_field: cursor_field.clone(),
        key: key.clone(),
        position: position.clone(),
        from: from.filter(|_| position.is_none()),
    })
}

/// The checkpoint from which the next read takes every row whose cursor is ≥ `value`
/// (`weft state set --cursor`), `value` checked against the cursor column's type.
pub fn checkpoint_from_cursor(stream: &ConfiguredStream, value: &str) -> Result<Checkpoint> {
    let name = stream.name();
    let cursor = stream.cursor_field.clone().ok_or_else(|| {
        ConnectorError::config(
            "cursor",
            format!("stream `{name}` is not read incrementally by a cursor; only incremental streams have one to set"),
        )
    })?;
    let value = weft_core::CursorValue::parse(stream, value)?.to_text();
    let key = if stream.primary_key.is_empty() {
        stream.descriptor.primary_key.clone()
    } else {
        stream.primary_key.clone()
    };
    Ok(checkpoint(&(cursor, key), &None, Some(value)))
}

/// The position of an incremental checkpoint, for `weft state show`.
pub fn describe(
    cursor_field: &str,
    key: &[String],
    position: Option<&[String]>,
    from: Option<&str>,
) -> weft_core::Position {
    let (value, key) = match (position, from) {
        (Some(values), _) => (
            values.first().cloned(),
            key.iter()
                .zip(values.iter().skip(1))
                .map(|(column, value)| weft_core::KeyValue {
                    column: column.clone(),
                    value: value.clone(),
                })
                .collect(),
        ),
        (None, from) => (from.map(str::to_string), vec![]),
    };
    weft_core::Position::Cursor {
        field: cursor_field.to_string(),
        value,
        key,
        from_value: position.is_none() && from.is_some(),
    }
}

fn query(
    ctx: &ReadCtx,
    order: &[String],
    position: Option<&[String]>,
    from: Option<&str>,
) -> String {
    let cols: Vec<String> = order.iter().map(|c| quote_ident(c)).collect();
    let mut sql = format!(
        "SELECT {} FROM {} WHERE {} IS NOT NULL",
        ctx.select_list(),
        ctx.table_sql(),
        cols[0]
    );
    if let Some(values) = position {
        let literals: Vec<String> = order
            .iter()
            .zip(values)
            .map(|(c, v)| {
                let ty = &ctx.table.column(c).expect("checked").sql_type;
                format!("{}::{ty}", quote_literal(v))
            })
            .collect();
        sql.push_str(&format!(
            " AND ({}) > ({})",
            cols.join(", "),
            literals.join(", ")
        ));
    } else if let Some(from) = from {
        let ty = &ctx.table.column(&order[0]).expect("checked").sql_type;
        sql.push_str(&format!(
            " AND {} >= {}::{ty}",
            cols[0],
            quote_literal(from)
        ));
    }
    sql.push_str(&format!(" ORDER BY {}", cols.join(", ")));
    sql
}

/// The (cursor, key…) of a batch's last row, as PostgreSQL text.
fn position_of(
    ctx: &ReadCtx,
    batch: &RecordBatch,
    indices: &[usize],
) -> Result<Option<Vec<String>>> {
    let Some(row) = batch.num_rows().checked_sub(1) else {
        return Ok(None);
    };
    indices
        .iter()
        .map(|&i| {
            let column = &ctx.table.columns[i];
            text_of(batch.column(i).as_ref(), row, &column.read_kind()).ok_or_else(|| {
                ConnectorError::Schema(format!(
                    "stream `{}`: column `{}` holds a value weft cannot resume after (a year before 1) in its last row read; exclude such rows (a view) or pick another cursor",
                    ctx.stream, column.name
                ))
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn text_of(array: &dyn Array, row: usize, kind: &Kind) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    Some(match kind {
        Kind::Int2 => array.as_primitive::<Int16Type>().value(row).to_string(),
        Kind::Int4 => array.as_primitive::<Int32Type>().value(row).to_string(),
        Kind::Int8 => array.as_primitive::<Int64Type>().value(row).to_string(),
        Kind::Text | Kind::Uuid | Kind::NumericText => {
            array.as_string::<i32>().value(row).to_string()
        }
        Kind::Decimal(..) => array
            .as_any()
            .downcast_ref::<Decimal128Array>()?
            .value_as_string(row),
        Kind::Date => {
            let days = array.as_primitive::<Date32Type>().value(row);
            match days {
                values::DATE_INFINITY => return Some("infinity".into()),
                values::DATE_NEG_INFINITY => return Some("-infinity".into()),
                _ => {}
            }
            let date = chrono::DateTime::from_timestamp(days as i64 * 86_400, 0)?.date_naive();
            if chrono::Datelike::year(&date) < 1 {
                return None;
            }
            date.format("%Y-%m-%d").to_string()
        }
        Kind::Timestamp | Kind::TimestampTz => {
            let us = array.as_primitive::<TimestampMicrosecondType>().value(row);
            match us {
                values::TIMESTAMP_INFINITY => return Some("infinity".into()),
                values::TIMESTAMP_NEG_INFINITY => return Some("-infinity".into()),
                _ => {}
            }
            let t = chrono::DateTime::from_timestamp_micros(us)?.naive_utc();
            if chrono::Datelike::year(&t) < 1 {
                return None;
            }
            let mut s = t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            if *kind == Kind::TimestampTz {
                s.push_str("+00");
            }
            s
        }
        _ => return None,
    })
}
