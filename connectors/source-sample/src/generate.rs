//! Row values and batch building: every value is a pure function of (seed, stream, id, version
//! in which the row last changed).
//!
//! "Identity" columns (names, emails, SKUs, an order's customer) hash the version that created
//! the row, so they survive updates; the other columns hash the version of the last change.
//! Strings are written straight into the Arrow builders' buffers: no per-row allocation.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch,
    TimestampMicrosecondArray,
};
use arrow_schema::ArrowError;

use crate::config::SampleConfig;
use crate::model::{hash4, mix, updated_at_us, SampleStream, BASE_TIME_US, DAY_US};

const FIRST_NAMES: [&str; 16] = [
    "Ada", "Ben", "Chloé", "Daan", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jonas", "Kaia",
    "Luca", "Mara", "Noor", "Oskar", "Priya",
];
const LAST_NAMES: [&str; 16] = [
    "Adeyemi", "Bakker", "Castro", "Dubois", "Eriksen", "Fischer", "García", "Horvat", "Ito",
    "Jansen", "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Rossi",
];
// Lower-case ASCII forms for e-mail addresses, same order as above.
const FIRST_EMAIL: [&str; 16] = [
    "ada", "ben", "chloe", "daan", "elif", "femi", "greta", "hiro", "ines", "jonas", "kaia",
    "luca", "mara", "noor", "oskar", "priya",
];
const LAST_EMAIL: [&str; 16] = [
    "adeyemi", "bakker", "castro", "dubois", "eriksen", "fischer", "garcia", "horvat", "ito",
    "jansen", "kowalski", "larsen", "moreau", "novak", "okafor", "rossi",
];
const COUNTRIES: [&str; 8] = ["DE", "FR", "NL", "ES", "IT", "PL", "SE", "US"];
const STATUSES: [&str; 5] = ["pending", "paid", "shipped", "delivered", "cancelled"];
const NOTES: [&str; 4] = [
    "gift wrap, please",
    "leave at the door",
    "call before delivery",
    "fragile",
];
const CATEGORIES: [&str; 6] = ["books", "garden", "kitchen", "outdoor", "toys", "tools"];
const ADJECTIVES: [&str; 8] = [
    "Compact",
    "Classic",
    "Deluxe",
    "Eco",
    "Heavy-duty",
    "Mini",
    "Smart",
    "Vintage",
];
const NOUNS: [&str; 8] = [
    "Kettle", "Lamp", "Backpack", "Chair", "Drill", "Puzzle", "Planter", "Notebook",
];

/// 2020-01-01 as days since the epoch.
const ORDER_DAYS_START: i32 = 18_262;

/// Salts telling apart a row's identity hash from its change hash.
const IDENTITY: u64 = 0x6964;
const CHANGE: u64 = 0x6368;

/// Builds the batch of `ids` (sorted), each last changed in `versions[i]`.
pub(crate) fn build_batch(
    stream: SampleStream,
    config: &SampleConfig,
    ids: &[u64],
    versions: &[u64],
) -> Result<RecordBatch, ArrowError> {
    debug_assert_eq!(ids.len(), versions.len());
    let id_col: ArrayRef = Arc::new(Int64Array::from_iter_values(ids.iter().map(|&i| i as i64)));
    let updated_at: ArrayRef = Arc::new(
        TimestampMicrosecondArray::from_iter_values(
            ids.iter()
                .zip(versions)
                .map(|(&id, &v)| updated_at_us(id, v)),
        )
        .with_timezone("UTC"),
    );
    let identity = |id: u64| {
        hash4(
            config.seed,
            stream.tag() ^ IDENTITY,
            id,
            stream.created_version(config, id),
        )
    };
    let change = |id: u64, v: u64| hash4(config.seed, stream.tag() ^ CHANGE, id, v);
    let n = ids.len();

    let columns: Vec<ArrayRef> = match stream {
        SampleStream::Customers => {
            let mut name = StringBuilder::with_capacity(n, n * 14);
            let mut email = StringBuilder::with_capacity(n, n * 32);
            let mut country = StringBuilder::with_capacity(n, n * 2);
            let mut ltv = Vec::with_capacity(n);
            let mut created = Vec::with_capacity(n);
            for (&id, &v) in ids.iter().zip(versions) {
                let hi = identity(id);
                let (f, l) = ((hi & 15) as usize, ((hi >> 4) & 15) as usize);
                name_join(&mut name, FIRST_NAMES[f], LAST_NAMES[l]);
                let _ = write!(
                    email,
                    "{}.{}{}@example.com",
                    FIRST_EMAIL[f], LAST_EMAIL[l], id
                );
                email.append_value("");
                country.append_value(COUNTRIES[((hi >> 8) % 8) as usize]);
                ltv.push((change(id, v) % 5_000_000) as i128);
                let created_in = stream.created_version(config, id);
                created.push(if created_in == 0 {
                    BASE_TIME_US - ((hi >> 16) % 1_000) as i64 * DAY_US
                } else {
                    updated_at_us(id, created_in)
                });
            }
            vec![
                id_col,
                Arc::new(name.finish()),
                Arc::new(email.finish()),
                Arc::new(country.finish()),
                Arc::new(Decimal128Array::from(ltv).with_precision_and_scale(12, 2)?),
                Arc::new(TimestampMicrosecondArray::from(created).with_timezone("UTC")),
                updated_at,
            ]
        }
        SampleStream::Orders => {
            let customers = SampleStream::Customers.base_rows(config);
            let mut customer_id = Vec::with_capacity(n);
            let mut status = StringBuilder::with_capacity(n, n * 8);
            let mut amount = Vec::with_capacity(n);
            let mut quantity = Vec::with_capacity(n);
            let mut ordered_on = Vec::with_capacity(n);
            let mut note = StringBuilder::with_capacity(n, n * 4);
            for (&id, &v) in ids.iter().zip(versions) {
                let hi = identity(id);
                let hc = change(id, v);
                customer_id.push((hi % customers) as i64 + 1);
                ordered_on.push(ORDER_DAYS_START + ((hi >> 32) % 1_500) as i32);
                status.append_value(STATUSES[(hc % 5) as usize]);
                amount.push(((hc >> 8) % 1_000_000) as i128 + 100);
                quantity.push(((hc >> 32) % 20) as i32 + 1);
                // One order in five carries a note.
                if (hc >> 40) % 5 == 0 {
                    note.append_value(NOTES[((hc >> 48) % 4) as usize]);
                } else {
                    note.append_null();
                }
            }
            vec![
                id_col,
                Arc::new(Int64Array::from(customer_id)),
                Arc::new(status.finish()),
                Arc::new(Decimal128Array::from(amount).with_precision_and_scale(12, 2)?),
                Arc::new(Int32Array::from(quantity)),
                Arc::new(Date32Array::from(ordered_on)),
                Arc::new(note.finish()),
                updated_at,
            ]
        }
        SampleStream::Products => {
            let mut sku = StringBuilder::with_capacity(n, n * 12);
            let mut name = StringBuilder::with_capacity(n, n * 14);
            let mut category = StringBuilder::with_capacity(n, n * 6);
            let mut price = Vec::with_capacity(n);
            let mut in_stock = BooleanBuilder::with_capacity(n);
            for (&id, &v) in ids.iter().zip(versions) {
                let hi = identity(id);
                let hc = change(id, v);
                let _ = write!(sku, "SKU-{id:08}");
                sku.append_value("");
                name_join(
                    &mut name,
                    ADJECTIVES[(hi & 7) as usize],
                    NOUNS[((hi >> 3) & 7) as usize],
                );
                category.append_value(CATEGORIES[((hi >> 6) % 6) as usize]);
                price.push((mix(hc) % 50_000) as i128 + 99);
                in_stock.append_value((hc >> 60) != 0);
            }
            vec![
                id_col,
                Arc::new(sku.finish()),
                Arc::new(name.finish()),
                Arc::new(category.finish()),
                Arc::new(Decimal128Array::from(price).with_precision_and_scale(10, 2)?),
                Arc::new(in_stock.finish()),
                updated_at,
            ]
        }
    };
    RecordBatch::try_new(stream.schema(), columns)
}

/// Appends "`a` `b`" as one value, written into the builder's buffer.
fn name_join(builder: &mut StringBuilder, a: &str, b: &str) {
    let _ = builder.write_str(a);
    let _ = builder.write_char(' ');
    let _ = builder.write_str(b);
    builder.append_value("");
}
