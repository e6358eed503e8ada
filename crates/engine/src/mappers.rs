//! Per-stream mappers: select, drop, rename, hash, mask, filter and the governance ones (keyed
//! hash, encrypt, with the project's keys), applied to whole Arrow batches between source and
//! destination.
//!
//! A [`MapperChain`] is compiled once per stream against the source schema, so a mapper naming
//! a column that does not exist fails before any row moves, and the destination learns the
//! output schema up front.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, StringBuilder};
use arrow::compute::kernels::cmp;
use arrow::compute::{cast, filter_record_batch, is_not_null, is_null};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use sha2::{Digest, Sha256};
use weft_core::ChangeBatch;
use weft_governance::crypto::{Cipher, KeyedHasher};
use weft_governance::Keys;
use weft_mesh::{FilterOp, Mapper};

/// A mapper that cannot be applied to a stream's schema or data.
#[derive(Debug, thiserror::Error)]
#[error("mapper #{index} ({kind}): {message}")]
pub struct MapperError {
    /// 1-based position in the stream's `mappers` list (0 for the `columns` selection).
    pub index: usize,
    pub kind: &'static str,
    pub message: String,
}

/// One compiled step.
#[derive(Clone)]
enum Step {
    /// Keep these column indices, in this order.
    Project(Vec<usize>),
    Hash {
        index: usize,
        salt: Vec<u8>,
    },
    Mask {
        index: usize,
        keep_last: usize,
        mask_char: char,
    },
    KeyedHash {
        index: usize,
        hasher: KeyedHasher,
    },
    Encrypt {
        index: usize,
        // Boxed: the AES key schedule is large, and every other step small.
        cipher: Box<Cipher>,
    },
    /// Keeps the rows passing at least one of the tests (one for a `filter` mapper).
    Filter {
        any: Vec<Test>,
    },
}

/// One comparison of a row filter: the column at `index` against `value`.
#[derive(Clone)]
struct Test {
    index: usize,
    op: FilterOp,
    value: Option<ArrayRef>,
}

/// The mappers of one stream, compiled against its source schema.
#[derive(Debug, Clone)]
pub struct MapperChain {
    steps: Vec<Step>,
    output: SchemaRef,
    /// For each output column, the source column it came from.
    origins: Vec<String>,
    /// What the chain was compiled from, to recompile on a schema change.
    columns: Option<Vec<String>>,
    mappers: Vec<Mapper>,
    keys: Keys,
    /// The input's fields, and the indices of those the source is asked to read (see
    /// [`MapperChain::read_only`]): a batch of just those is widened back with NULL columns
    /// that the chain removes before anything reads them.
    input: Vec<Field>,
    read: Option<Vec<usize>>,
}

fn kind_of(m: &Mapper) -> &'static str {
    match m {
        Mapper::Select(_) => "select",
        Mapper::Drop(_) => "drop",
        Mapper::Rename { .. } => "rename",
        Mapper::Hash { .. } => "hash",
        Mapper::Mask { .. } => "mask",
        Mapper::Filter { .. } => "filter",
        Mapper::AnyOf(_) => "filter (any of)",
        Mapper::Encrypt { .. } => "encrypt",
        Mapper::KeyedHash { .. } => "keyed hash",
    }
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Project(keep) => write!(f, "Project({keep:?})"),
            Step::Hash { index, .. } => write!(f, "Hash({index})"),
            Step::Mask { index, .. } => write!(f, "Mask({index})"),
            Step::KeyedHash { index, .. } => write!(f, "KeyedHash({index})"),
            Step::Encrypt { index, .. } => write!(f, "Encrypt({index})"),
            Step::Filter { any } => {
                let tests: Vec<String> = any
                    .iter()
                    .map(|t| format!("{} {}", t.index, t.op))
                    .collect();
                write!(f, "Filter({})", tests.join(" or "))
            }
        }
    }
}

impl MapperChain {
    /// Compiles `columns` (an optional selection) followed by `mappers` against `input`.
    pub fn compile(
        input: &SchemaRef,
        columns: Option<&[String]>,
        mappers: &[Mapper],
    ) -> Result<Self, MapperError> {
        Self::compile_with_keys(input, columns, mappers, &Keys::default())
    }

    /// [`MapperChain::compile`] with the project's keys, for keyed hashes and encryption.
    pub fn compile_with_keys(
        input: &SchemaRef,
        columns: Option<&[String]>,
        mappers: &[Mapper],
        keys: &Keys,
    ) -> Result<Self, MapperError> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut origins: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
        let mut steps = Vec::new();

        let find = |fields: &[Field], name: &str, index: usize, kind: &'static str| {
            fields
                .iter()
                .position(|f| f.name() == name)
                .ok_or_else(|| MapperError {
                    index,
                    kind,
                    message: format!(
                        "no column `{name}`; the columns at this point are: {}",
                        fields
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
        };

        let project = |fields: &mut Vec<Field>,
                       origins: &mut Vec<String>,
                       keep: Vec<usize>,
                       steps: &mut Vec<Step>| {
            *fields = keep.iter().map(|&i| fields[i].clone()).collect();
            *origins = keep.iter().map(|&i| origins[i].clone()).collect();
            steps.push(Step::Project(keep));
        };

        if let Some(columns) = columns {
            let keep = columns
                .iter()
                .map(|c| find(&fields, c, 0, "columns"))
                .collect::<Result<Vec<_>, _>>()?;
            project(&mut fields, &mut origins, keep, &mut steps);
        }

        for (i, mapper) in mappers.iter().enumerate() {
            let index = i + 1;
            let kind = kind_of(mapper);
            match mapper {
                Mapper::Select(cols) => {
                    let keep = cols
                        .iter()
                        .map(|c| find(&fields, c, index, kind))
                        .collect::<Result<Vec<_>, _>>()?;
                    project(&mut fields, &mut origins, keep, &mut steps);
                }
                Mapper::Drop(cols) => {
                    for c in cols {
                        find(&fields, c, index, kind)?;
                    }
                    let keep = (0..fields.len())
                        .filter(|&i| !cols.contains(fields[i].name()))
                        .collect();
                    project(&mut fields, &mut origins, keep, &mut steps);
                }
                Mapper::Rename { from, to } => {
                    let at = find(&fields, from, index, kind)?;
                    if fields.iter().any(|f| f.name() == to) {
                        return Err(MapperError {
                            index,
                            kind,
                            message: format!("a column `{to}` already exists"),
                        });
                    }
                    // Renames only change the output schema; no data step is needed.
                    fields[at] = fields[at].clone().with_name(to.clone());
                }
                Mapper::Hash { column, salt } => {
                    let at = find(&fields, column, index, kind)?;
                    check_castable_to_text(&fields[at], index, kind)?;
                    fields[at] = Field::new(column, DataType::Utf8, fields[at].is_nullable());
                    steps.push(Step::Hash {
                        index: at,
                        salt: salt.clone().unwrap_or_default().into_bytes(),
                    });
                }
                Mapper::KeyedHash { column } => {
                    let at = find(&fields, column, index, kind)?;
                    check_castable_to_text(&fields[at], index, kind)?;
                    let hasher = keys.hasher().ok_or_else(|| MapperError {
                        index,
                        kind,
                        message: format!("hashing `{column}` needs `keys.hash` in governance.yaml"),
                    })?;
                    fields[at] = Field::new(column, DataType::Utf8, fields[at].is_nullable());
                    steps.push(Step::KeyedHash { index: at, hasher });
                }
                Mapper::Encrypt { column } => {
                    let at = find(&fields, column, index, kind)?;
                    check_castable_to_text(&fields[at], index, kind)?;
                    let cipher = keys.cipher().ok_or_else(|| MapperError {
                        index,
                        kind,
                        message: format!("encrypting `{column}` needs `keys.encrypt` in governance.yaml (64 hex digits, e.g. from `openssl rand -hex 32`)"),
                    })?;
                    fields[at] = Field::new(column, DataType::Utf8, fields[at].is_nullable());
                    steps.push(Step::Encrypt {
                        index: at,
                        cipher: Box::new(cipher),
                    });
                }
                Mapper::Mask {
                    column,
                    keep_last,
                    mask_char,
                } => {
                    let at = find(&fields, column, index, kind)?;
                    check_text(&fields[at], index, kind)?;
                    fields[at] = Field::new(column, DataType::Utf8, fields[at].is_nullable());
                    steps.push(Step::Mask {
                        index: at,
                        keep_last: *keep_last,
                        mask_char: *mask_char,
                    });
                }
                Mapper::Filter { column, op, value } => {
                    let at = find(&fields, column, index, kind)?;
                    let test = compile_test(&fields, at, column, op, value, index, kind)?;
                    steps.push(Step::Filter { any: vec![test] });
                }
                Mapper::AnyOf(alternatives) => {
                    let mut any = Vec::with_capacity(alternatives.len());
                    for m in alternatives {
                        let Mapper::Filter { column, op, value } = m else {
                            return Err(MapperError {
                                index,
                                kind,
                                message: "`any` holds only comparisons".into(),
                            });
                        };
                        let at = find(&fields, column, index, kind)?;
                        any.push(compile_test(&fields, at, column, op, value, index, kind)?);
                    }
                    steps.push(Step::Filter { any });
                }
            }
        }

        Ok(Self {
            steps,
            output: Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())),
            origins,
            columns: columns.map(<[String]>::to_vec),
            mappers: mappers.to_vec(),
            keys: keys.clone(),
            input: input.fields().iter().map(|f| f.as_ref().clone()).collect(),
            read: None,
        })
    }

    /// The input columns the chain reads or outputs, plus `keep` (key and cursor): the rest
    /// are left out by `columns` or dropped before any mapper reads them, and need not be read
    /// at all. Indices into the input, in input order.
    pub fn needed_columns(&self, keep: &[String]) -> Vec<usize> {
        let names: Vec<&str> = self.input.iter().map(|f| f.name().as_str()).collect();
        let mut needed = vec![false; names.len()];
        // Current name → input index of the live columns.
        let mut live: Vec<(String, usize)> = match &self.columns {
            Some(cols) => cols
                .iter()
                .filter_map(|c| names.iter().position(|n| n == c).map(|i| (c.clone(), i)))
                .collect(),
            None => names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), i))
                .collect(),
        };
        let mut mark = |live: &[(String, usize)], name: &str| {
            if let Some((_, i)) = live.iter().find(|(n, _)| n == name) {
                needed[*i] = true;
            }
        };
        for mapper in &self.mappers {
            match mapper {
                Mapper::Select(cols) => {
                    for c in cols {
                        mark(&live, c);
                    }
                    live.retain(|(n, _)| cols.contains(n));
                }
                Mapper::Drop(cols) => live.retain(|(n, _)| !cols.contains(n)),
                Mapper::Rename { from, to } => {
                    for (n, _) in live.iter_mut().filter(|(n, _)| n == from) {
                        *n = to.clone();
                    }
                }
                Mapper::Hash { column, .. }
                | Mapper::Mask { column, .. }
                | Mapper::KeyedHash { column }
                | Mapper::Encrypt { column } => mark(&live, column),
                Mapper::Filter { column, .. } => mark(&live, column),
                Mapper::AnyOf(alternatives) => {
                    for m in alternatives {
                        if let Mapper::Filter { column, .. } = m {
                            mark(&live, column);
                        }
                    }
                }
            }
        }
        for (_, i) in &live {
            needed[*i] = true;
        }
        for k in keep {
            if let Some(i) = names.iter().position(|n| n == k) {
                needed[i] = true;
            }
        }
        (0..names.len()).filter(|&i| needed[i]).collect()
    }

    /// From now on the source sends only the input columns `read` (it was asked to); sources
    /// that send every column anyway still work.
    pub fn read_only(&mut self, read: Vec<usize>) {
        self.read = Some(read).filter(|r| r.len() < self.input.len());
    }

    /// The same chain compiled against a new source schema (after a schema change).
    pub fn recompile(&self, input: &SchemaRef) -> Result<Self, MapperError> {
        Self::compile_with_keys(input, self.columns.as_deref(), &self.mappers, &self.keys)
    }

    /// The schema of mapped batches.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output
    }

    /// The output name of source column `source`, if it survives the mappers.
    pub fn output_name(&self, source: &str) -> Option<&str> {
        self.origins
            .iter()
            .position(|o| o == source)
            .map(|i| self.output.field(i).name().as_str())
    }

    /// Whether any step changes data (as opposed to a plain pass-through).
    pub fn is_identity(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies the chain to the rows of a change batch; the unchanged-value flags follow their
    /// columns through renames and disappear with dropped columns. Filters are refused at
    /// planning for change streams (a row leaving the filter would need a delete).
    pub fn apply_changes(&self, changes: ChangeBatch) -> Result<ChangeBatch, ArrowError> {
        if self.steps.iter().any(|s| matches!(s, Step::Filter { .. })) {
            return Err(ArrowError::InvalidArgumentError(
                "row filters cannot apply to change batches".into(),
            ));
        }
        let ChangeBatch {
            rows,
            ops,
            positions,
            ordinals,
            commit_micros,
            unchanged,
        } = changes;
        let rows = self.apply(rows)?;
        let unchanged = unchanged
            .into_iter()
            .filter_map(|(column, mask)| {
                self.output_name(&column)
                    .map(|name| (name.to_string(), mask))
            })
            .collect();
        Ok(ChangeBatch {
            rows,
            ops,
            positions,
            ordinals,
            commit_micros,
            unchanged,
        })
    }

    /// Applies the chain to one batch of the source schema.
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        if self.steps.is_empty() {
            return Ok(batch);
        }
        let mut num_rows = batch.num_rows();
        let mut columns: Vec<ArrayRef> = match &self.read {
            // Only the columns asked for: the others come back as NULL placeholders, which a
            // projection removes before any step reads them.
            Some(read) if batch.num_columns() == read.len() => {
                let mut full: Vec<ArrayRef> = self
                    .input
                    .iter()
                    .map(|f| arrow::array::new_null_array(f.data_type(), num_rows))
                    .collect();
                for (column, &i) in batch.columns().iter().zip(read) {
                    full[i] = column.clone();
                }
                full
            }
            _ => batch.columns().to_vec(),
        };
        for step in &self.steps {
            match step {
                Step::Project(keep) => {
                    columns = keep.iter().map(|&i| columns[i].clone()).collect();
                }
                Step::Hash { index, salt } => {
                    columns[*index] = hash_column(&columns[*index], salt)?;
                }
                Step::Mask {
                    index,
                    keep_last,
                    mask_char,
                } => {
                    columns[*index] = mask_column(&columns[*index], *keep_last, *mask_char)?;
                }
                Step::KeyedHash { index, hasher } => {
                    columns[*index] = map_text(&columns[*index], |v| hasher.hash_hex(v))?;
                }
                Step::Encrypt { index, cipher } => {
                    columns[*index] = map_text(&columns[*index], |v| cipher.encrypt(v))?;
                }
                Step::Filter { any } => {
                    // A row failing a test (or unknown: NULL) is dropped unless another passes.
                    let mut keep: Option<BooleanArray> = None;
                    for t in any {
                        let pass = predicate(&columns[t.index], t.op, t.value.as_ref())?;
                        keep = Some(match keep {
                            None => pass,
                            Some(k) => arrow::compute::kernels::boolean::or_kleene(&k, &pass)?,
                        });
                    }
                    let keep = keep.expect("a filter has a test");
                    // Filter all columns at once through a temporary batch of the current shape.
                    let fields: Vec<Field> = columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
                        .collect();
                    let tmp = RecordBatch::try_new_with_options(
                        Arc::new(Schema::new(fields)),
                        columns,
                        &arrow::array::RecordBatchOptions::new().with_row_count(Some(num_rows)),
                    )?;
                    let filtered = filter_record_batch(&tmp, &keep)?;
                    num_rows = filtered.num_rows();
                    columns = filtered.columns().to_vec();
                }
            }
        }
        RecordBatch::try_new_with_options(
            self.output.clone(),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(num_rows)),
        )
    }
}

/// One comparison of a row filter, compiled against the column at `at` of `fields`.
fn compile_test(
    fields: &[Field],
    at: usize,
    column: &str,
    op: &FilterOp,
    value: &Option<serde_json::Value>,
    index: usize,
    kind: &'static str,
) -> Result<Test, MapperError> {
    let value = match (op, value) {
        (FilterOp::IsNull | FilterOp::IsNotNull, _) => None,
        (_, None) => {
            return Err(MapperError {
                index,
                kind,
                message: format!("`{op}` needs a `value` to compare `{column}` with"),
            })
        }
        (FilterOp::In, Some(v)) => {
            let values = v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
            let mut scalars = Vec::with_capacity(values.len());
            for v in &values {
                scalars.push(
                    scalar_for(v, fields[at].data_type()).map_err(|e| MapperError {
                        index,
                        kind,
                        message: format!(
                            "value {v} does not fit column `{column}` of type {}: {e}",
                            weft_core::sql_type(fields[at].data_type())
                        ),
                    })?,
                );
            }
            let refs: Vec<&dyn arrow::array::Array> = scalars.iter().map(|a| a.as_ref()).collect();
            Some(arrow::compute::concat(&refs).map_err(|e| MapperError {
                index,
                kind,
                message: format!("the values of `in` on `{column}`: {e}"),
            })?)
        }
        (_, Some(v)) => Some(
            scalar_for(v, fields[at].data_type()).map_err(|e| MapperError {
                index,
                kind,
                message: format!(
                    "value {v} does not fit column `{column}` of type {}: {e}",
                    weft_core::sql_type(fields[at].data_type())
                ),
            })?,
        ),
    };
    Ok(Test {
        index: at,
        op: *op,
        value,
    })
}

fn check_castable_to_text(
    field: &Field,
    index: usize,
    kind: &'static str,
) -> Result<(), MapperError> {
    if arrow::compute::can_cast_types(field.data_type(), &DataType::Utf8) {
        Ok(())
    } else {
        Err(MapperError {
            index,
            kind,
            message: format!(
                "column `{}` of type {} has no text form to {kind}",
                field.name(),
                weft_core::sql_type(field.data_type())
            ),
        })
    }
}

/// Masking is for text: a masked number or date would silently become a text column of
/// another type than the source's, so anything but text is refused with the alternatives.
fn check_text(field: &Field, index: usize, kind: &'static str) -> Result<(), MapperError> {
    match field.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(()),
        other => Err(MapperError {
            index,
            kind,
            message: format!(
                "column `{}` is {}, not text; mask keeps a column's type and works on text columns only: use `hash` to pseudonymise it, `drop` to leave it out, or a `filter`",
                field.name(),
                weft_core::sql_type(other)
            ),
        }),
    }
}

/// A one-element array of `data_type` holding `value`, cast from its text form so that every
/// type with a text representation (dates, timestamps, decimals) can be compared.
///
/// Timestamps with a time zone compare as instants: the value is parsed with its offset (`Z`,
/// `+02:00`; none means UTC) and stored as UTC like the column's values, so zone names such as
/// `UTC` or `Europe/Berlin` need no zone database.
fn scalar_for(value: &serde_json::Value, data_type: &DataType) -> Result<ArrayRef, ArrowError> {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => {
            return Err(ArrowError::CastError(
                "null is not a value; use op is_null".into(),
            ))
        }
        other => other.to_string(),
    };
    let text: ArrayRef = Arc::new(StringArray::from(vec![text]));
    let options = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    if let DataType::Timestamp(unit, Some(_)) = data_type {
        let utc =
            arrow::compute::cast_with_options(&text, &DataType::Timestamp(*unit, None), &options)?;
        // Same values (UTC instants), the column's zone label: an exact type match for `cmp`.
        let data = utc
            .to_data()
            .into_builder()
            .data_type(data_type.clone())
            .build()?;
        return Ok(arrow::array::make_array(data));
    }
    arrow::compute::cast_with_options(&text, data_type, &options)
}

fn predicate(
    column: &ArrayRef,
    op: FilterOp,
    value: Option<&ArrayRef>,
) -> Result<BooleanArray, ArrowError> {
    use arrow::array::Scalar;
    let scalar = || {
        value
            .map(|v| Scalar::new(v.clone()))
            .ok_or_else(|| ArrowError::InvalidArgumentError("filter value missing".into()))
    };
    match op {
        FilterOp::IsNull => is_null(column),
        FilterOp::IsNotNull => is_not_null(column),
        FilterOp::Eq => cmp::eq(column, &scalar()?),
        FilterOp::Ne => cmp::neq(column, &scalar()?),
        FilterOp::Lt => cmp::lt(column, &scalar()?),
        FilterOp::Le => cmp::lt_eq(column, &scalar()?),
        FilterOp::Gt => cmp::gt(column, &scalar()?),
        FilterOp::Ge => cmp::gt_eq(column, &scalar()?),
        FilterOp::In => {
            let values = value
                .ok_or_else(|| ArrowError::InvalidArgumentError("filter values missing".into()))?;
            let mut keep = BooleanArray::from(vec![false; column.len()]);
            for i in 0..values.len() {
                let one = cmp::eq(column, &Scalar::new(values.slice(i, 1)))?;
                keep = arrow::compute::or(&keep, &one)?;
            }
            Ok(keep)
        }
    }
}

fn as_text(column: &ArrayRef) -> Result<StringArray, ArrowError> {
    let text = cast(column, &DataType::Utf8)?;
    Ok(text
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8 gives a StringArray")
        .clone())
}

/// SHA-256 of `salt ‖ value` as lowercase hex; nulls stay null.
fn hash_column(column: &ArrayRef, salt: &[u8]) -> Result<ArrayRef, ArrowError> {
    let text = as_text(column)?;
    let mut out = StringBuilder::with_capacity(text.len(), text.len() * 64);
    let mut hex_buf = [0u8; 64];
    for value in text.iter() {
        match value {
            None => out.append_null(),
            Some(v) => {
                let mut hasher = Sha256::new();
                hasher.update(salt);
                hasher.update(v.as_bytes());
                let digest = hasher.finalize();
                hex::encode_to_slice(digest, &mut hex_buf).expect("64 bytes hold a SHA-256 in hex");
                out.append_value(std::str::from_utf8(&hex_buf).expect("hex is ASCII"));
            }
        }
    }
    Ok(Arc::new(out.finish()))
}

/// Each value's text form through `f`; nulls stay null.
fn map_text(column: &ArrayRef, f: impl Fn(&[u8]) -> String) -> Result<ArrayRef, ArrowError> {
    let text = as_text(column)?;
    let mut out = StringBuilder::with_capacity(text.len(), text.len() * 64);
    for value in text.iter() {
        match value {
            None => out.append_null(),
            Some(v) => out.append_value(f(v.as_bytes())),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// Replaces every character but the last `keep_last` with `mask_char`; nulls stay null.
fn mask_column(
    column: &ArrayRef,
    keep_last: usize,
    mask_char: char,
) -> Result<ArrayRef, ArrowError> {
    let text = as_text(column)?;
    let mut out = StringBuilder::with_capacity(text.len(), text.value_data().len());
    let mut buf = String::new();
    for value in text.iter() {
        match value {
            None => out.append_null(),
            Some(v) => {
                buf.clear();
                let n = v.chars().count();
                for (i, c) in v.chars().enumerate() {
                    buf.push(if i + keep_last < n { mask_char } else { c });
                }
                out.append_value(&buf);
            }
        }
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn unread_columns_are_left_out_and_come_back_as_placeholders() {
        let full = batch();
        let schema = full.schema();
        // `status` is dropped before anything reads it; `email` is hashed, so it is read.
        let mappers = vec![
            Mapper::Hash {
                column: "email".into(),
                salt: None,
            },
            Mapper::Drop(vec!["status".into()]),
        ];
        let mut chain = MapperChain::compile(&schema, None, &mappers).unwrap();
        assert_eq!(chain.needed_columns(&[]), vec![0, 1]);
        // A key or cursor is always read, even when dropped.
        assert_eq!(chain.needed_columns(&["status".into()]), vec![0, 1, 2]);
        // Left out by `columns`, renamed ones are followed.
        let only = MapperChain::compile(
            &schema,
            Some(&["status".to_string()]),
            &[Mapper::Rename {
                from: "status".into(),
                to: "s".into(),
            }],
        )
        .unwrap();
        assert_eq!(only.needed_columns(&[]), vec![2]);

        let expected = chain.apply(full.clone()).unwrap();
        chain.read_only(vec![0, 1]);
        let narrow = full.project(&[0, 1]).unwrap();
        assert_eq!(chain.apply(narrow).unwrap(), expected);
        // A source that sends every column anyway gives the same.
        assert_eq!(chain.apply(full).unwrap(), expected);
    }

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, true),
            Field::new("status", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![
                    Some("a@x.org"),
                    None,
                    Some("c@x.org"),
                ])),
                Arc::new(StringArray::from(vec!["open", "cancelled", "open"])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn chain_of_all_mappers() {
        let b = batch();
        let mappers = vec![
            Mapper::Hash {
                column: "email".into(),
                salt: Some("pepper".into()),
            },
            Mapper::Filter {
                column: "status".into(),
                op: FilterOp::Ne,
                value: Some(serde_json::json!("cancelled")),
            },
            Mapper::Rename {
                from: "status".into(),
                to: "state".into(),
            },
            Mapper::Mask {
                column: "state".into(),
                keep_last: 1,
                mask_char: '*',
            },
            Mapper::Filter {
                column: "id".into(),
                op: FilterOp::Gt,
                value: Some(serde_json::json!(1)),
            },
        ];
        let chain = MapperChain::compile(&b.schema(), None, &mappers).unwrap();
        assert_eq!(chain.output_name("status"), Some("state"));
        let out = chain.apply(b).unwrap();
        assert_eq!(out.num_rows(), 1);
        let ids = out.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.value(0), 3);
        let email = out
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let expected = hex::encode(Sha256::digest(b"pepperc@x.org"));
        assert_eq!(email.value(0), expected);
        let state = out
            .column(2)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(state.value(0), "***n");
        assert_eq!(out.schema().field(2).name(), "state");
    }

    #[test]
    fn select_drop_and_columns() {
        let b = batch();
        let cols = vec!["status".to_string(), "id".to_string(), "email".to_string()];
        let chain = MapperChain::compile(
            &b.schema(),
            Some(&cols),
            &[Mapper::Drop(vec!["email".into()])],
        )
        .unwrap();
        let out = chain.apply(b).unwrap();
        let names: Vec<_> = out
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["status", "id"]);
        assert_eq!(chain.output_name("email"), None);
    }

    #[test]
    fn unknown_column_is_named_with_what_exists() {
        let b = batch();
        let err = MapperChain::compile(&b.schema(), None, &[Mapper::Drop(vec!["nope".into()])])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "mapper #1 (drop): no column `nope`; the columns at this point are: id, email, status"
        );
    }

    #[test]
    fn filter_value_must_fit_the_column_type() {
        let b = batch();
        let err = MapperChain::compile(
            &b.schema(),
            None,
            &[Mapper::Filter {
                column: "id".into(),
                op: FilterOp::Eq,
                value: Some(serde_json::json!("abc")),
            }],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("does not fit column `id` of type bigint"),
            "{err}"
        );
    }

    #[test]
    fn filter_on_a_zoned_timestamp_compares_instants() {
        use arrow::array::TimestampMicrosecondArray;
        let tz: Arc<str> = Arc::from("UTC");
        let at = |s: i64| s * 1_000_000;
        let ts = TimestampMicrosecondArray::from(vec![at(1_700_000_000), at(1_700_003_600)])
            .with_timezone(tz.clone());
        let schema = Arc::new(Schema::new(vec![Field::new(
            "updated_at",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some(tz)),
            false,
        )]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(ts)]).unwrap();
        // 1_700_000_000 is 2023-11-14T22:13:20Z; the second row is an hour later.
        for value in ["2023-11-14T22:30:00Z", "2023-11-14T23:30:00+01:00"] {
            let chain = MapperChain::compile(
                &b.schema(),
                None,
                &[Mapper::Filter {
                    column: "updated_at".into(),
                    op: FilterOp::Ge,
                    value: Some(serde_json::json!(value)),
                }],
            )
            .unwrap();
            assert_eq!(chain.apply(b.clone()).unwrap().num_rows(), 1, "{value}");
        }
    }

    #[test]
    fn mask_refuses_non_text_columns() {
        let b = batch();
        let err = MapperChain::compile(
            &b.schema(),
            None,
            &[Mapper::Mask {
                column: "id".into(),
                keep_last: 2,
                mask_char: '*',
            }],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("`id` is bigint, not text"),
            "{err}"
        );
    }

    #[test]
    fn is_null_filter() {
        let b = batch();
        let chain = MapperChain::compile(
            &b.schema(),
            None,
            &[Mapper::Filter {
                column: "email".into(),
                op: FilterOp::IsNull,
                value: None,
            }],
        )
        .unwrap();
        assert_eq!(chain.apply(b).unwrap().num_rows(), 1);
    }

    #[test]
    fn any_of_keeps_the_rows_passing_one_test_and_drops_unknowns() {
        let b = batch();
        // Rows: (1, a@x.org, open), (2, NULL, cancelled), (3, c@x.org, open).
        let any = |tests: Vec<Mapper>| {
            let chain = MapperChain::compile(&b.schema(), None, &[Mapper::AnyOf(tests)]).unwrap();
            let out = chain.apply(b.clone()).unwrap();
            let ids = out.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            ids.values().to_vec()
        };
        let eq = |column: &str, value: serde_json::Value| Mapper::Filter {
            column: column.into(),
            op: FilterOp::Eq,
            value: Some(value),
        };
        assert_eq!(
            any(vec![
                eq("id", serde_json::json!(1)),
                eq("status", serde_json::json!("cancelled"))
            ]),
            [1, 2]
        );
        // Row 2's e-mail is NULL (unknown): kept only because its id passes.
        assert_eq!(
            any(vec![
                eq("email", serde_json::json!("c@x.org")),
                eq("id", serde_json::json!(2))
            ]),
            [2, 3]
        );
        assert_eq!(
            any(vec![eq("email", serde_json::json!("z@x.org"))]),
            Vec::<i64>::new()
        );
    }
}
