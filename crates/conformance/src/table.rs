//! Rows as text: what a source yielded or a reader of a product store sees, compared by value.
//!
//! Values are rendered by Arrow's display formatter (`NULL` as `None`; zoned timestamps as
//! their UTC instants), so a table read back from a database as text compares equal to the
//! batches that were written.

use std::collections::BTreeMap;

use arrow::array::{make_array, ArrayRef, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// A zoned timestamp column as the same instants without the zone (rendered as UTC): Arrow's
/// formatter resolves a zone name (`UTC`, `Europe/Oslo`) only with its `chrono-tz` feature,
/// which would rebuild Arrow for every connector's tests; the instants are what is compared.
fn utc_instants(array: &ArrayRef) -> Result<ArrayRef, String> {
    match array.data_type() {
        DataType::Timestamp(unit, Some(_)) => array
            .to_data()
            .into_builder()
            .data_type(DataType::Timestamp(*unit, None))
            .build()
            .map(make_array)
            .map_err(|e| e.to_string()),
        _ => Ok(array.clone()),
    }
}

/// A row: one text value (or `None` for NULL) per column of its [`Table`].
pub type Row = Vec<Option<String>>;

/// Rows with their column names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// The column names, in order.
    pub columns: Vec<String>,
    /// The rows, each with one value per column.
    pub rows: Vec<Row>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(columns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            columns: columns.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// The rows of `batches` (all of one schema; the first batch names the columns).
    pub fn from_batches(batches: &[RecordBatch]) -> Result<Self, String> {
        let mut table = match batches.first() {
            Some(b) => Self::new(b.schema().fields().iter().map(|f| f.name().clone())),
            None => return Ok(Self::default()),
        };
        for batch in batches {
            table.push_batch(batch)?;
        }
        Ok(table)
    }

    /// Adds the rows of `batch`, matching its columns by name (columns it lacks read NULL).
    pub fn push_batch(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let options = FormatOptions::default().with_null("\u{0}");
        let schema = batch.schema();
        let arrays: Vec<Option<ArrayRef>> = self
            .columns
            .iter()
            .map(|name| {
                schema
                    .index_of(name)
                    .ok()
                    .map(|i| utc_instants(batch.column(i)))
                    .transpose()
                    .map_err(|e| format!("column `{name}`: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let mut formatters = Vec::with_capacity(self.columns.len());
        for (name, array) in self.columns.iter().zip(&arrays) {
            formatters.push(match array {
                Some(array) => Some(
                    ArrayFormatter::try_new(array.as_ref(), &options)
                        .map_err(|e| format!("column `{name}`: {e}"))?,
                ),
                None => None,
            });
        }
        for row in 0..batch.num_rows() {
            self.rows.push(
                formatters
                    .iter()
                    .map(|f| {
                        f.as_ref().and_then(|f| {
                            let text = f.value(row).to_string();
                            (text != "\u{0}").then_some(text)
                        })
                    })
                    .collect(),
            );
        }
        Ok(())
    }

    /// The values of `column`, one per row (`None` where absent or NULL).
    pub fn column(&self, column: &str) -> Vec<Option<String>> {
        match self.columns.iter().position(|c| c == column) {
            Some(i) => self.rows.iter().map(|r| r[i].clone()).collect(),
            None => vec![None; self.rows.len()],
        }
    }

    /// The rows projected onto `columns` (absent columns read NULL).
    pub fn project(&self, columns: &[&str]) -> Vec<Row> {
        let index: Vec<Option<usize>> = columns
            .iter()
            .map(|c| self.columns.iter().position(|n| n == c))
            .collect();
        self.rows
            .iter()
            .map(|r| index.iter().map(|i| i.and_then(|i| r[i].clone())).collect())
            .collect()
    }
}

/// How two multisets of rows differ: rows of `expected` missing from `actual`, and rows of
/// `actual` beyond `expected` (each with how many times too few or too many).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Rows `actual` lacks, with how many copies are missing.
    pub missing: Vec<(Row, usize)>,
    /// Rows `actual` has too often (duplicates or rows that should not be there).
    pub extra: Vec<(Row, usize)>,
}

impl Diff {
    /// Compares as multisets: order does not matter, counts do.
    pub fn of(expected: &[Row], actual: &[Row]) -> Self {
        let mut counts: BTreeMap<&Row, i64> = BTreeMap::new();
        for r in expected {
            *counts.entry(r).or_default() += 1;
        }
        for r in actual {
            *counts.entry(r).or_default() -= 1;
        }
        let mut diff = Diff::default();
        for (row, n) in counts {
            if n > 0 {
                diff.missing.push((row.clone(), n as usize));
            } else if n < 0 {
                diff.extra.push((row.clone(), (-n) as usize));
            }
        }
        diff
    }

    /// Whether the multisets are equal.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty()
    }

    /// A short description: counts and the first few rows of each side.
    pub fn describe(&self) -> String {
        let show = |rows: &[(Row, usize)]| {
            let total: usize = rows.iter().map(|(_, n)| n).sum();
            let sample: Vec<String> = rows
                .iter()
                .take(3)
                .map(|(r, n)| format!("{} ×{n}", show_row(r)))
                .collect();
            format!("{total} (e.g. {})", sample.join(", "))
        };
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("{} row(s) missing", show(&self.missing)));
        }
        if !self.extra.is_empty() {
            parts.push(format!("{} row(s) extra or duplicated", show(&self.extra)));
        }
        parts.join("; ")
    }
}

/// A row as `(v1, v2, NULL)`.
pub fn show_row(row: &Row) -> String {
    let values: Vec<&str> = row.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
    format!("({})", values.join(", "))
}
