//! The polling transport: changes arrive through plain SQL, one bounded window per call of
//! `pg_logical_slot_peek_binary_changes`. Peeking never consumes: every call decodes again
//! from the slot's confirmed position, which only moves when the engine acks a checkpoint
//! (`pg_replication_slot_advance` in [`super::ack`]). The consuming `pg_logical_slot_get_*`
//! functions are never used: they would move the slot before the destination committed.
//!
//! The window is `upto_nchanges` output rows (the server stops at the first transaction
//! boundary after reaching it) and never past `upto_lsn`. Rows are streamed to the decoder as
//! they arrive instead of being collected.

use std::pin::Pin;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, RowStream};

use super::lsn::Lsn;

const PEEK: &str = "SELECT data FROM pg_logical_slot_peek_binary_changes(\
    $1::text::name, $2::text::pg_lsn, $3::int4, \
    'proto_version', '1', 'publication_names', $4::text, 'binary', 'true')";

/// Starts one window: the rows (`data bytea`, one pgoutput message each) of transactions
/// committed before `upto`, from the slot's confirmed position on.
pub async fn peek(
    client: &Client,
    slot: &str,
    publication: &str,
    upto: Lsn,
    nchanges: i32,
) -> Result<Pin<Box<RowStream>>, tokio_postgres::Error> {
    let upto = upto.to_string();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&slot, &upto, &nchanges, &publication];
    let rows = client.query_raw(PEEK, params).await?;
    Ok(Box::pin(rows))
}

/// Whether `e` means another session holds the slot for a moment (an ack advancing it while
/// a window decodes, or the reverse): worth a retry.
pub fn slot_busy(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::OBJECT_IN_USE)
}

/// How long to wait before retrying a busy slot, and how often.
pub const BUSY_RETRY: Duration = Duration::from_millis(100);
pub const BUSY_ATTEMPTS: u32 = 300;
