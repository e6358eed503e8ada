//! `append_dedup` compaction: settle a stream to the latest row per primary key.
//!
//! Commits only append; `compact` runs once the stream was read completely. The published
//! files are already settled (`compacted`: one row per key, no key of another compacted file),
//! so only the keys of the run's new rows can have two rows:
//!
//! 1. scan the new files (not `compacted`) reading only key and cursor columns, and find the
//!    winning new row of every key (highest cursor; on equal cursors, or without a cursor, the
//!    row that arrived last, in commit order then row order);
//! 2. scan the published files' key and cursor columns for those keys, skipping every row
//!    group whose key statistics (min/max) hold none of them: a published row of a changed key
//!    loses to the new winner, unless its cursor is higher (then the new rows lose);
//! 3. rewrite only the files holding losing rows, and in them only the row groups holding
//!    one (the others are copied as encoded bytes, see [`crate::rewrite`]), and publish the
//!    new file list as one new version (see [`crate::versions`]), which leaves the replaced
//!    files out.
//!
//! Memory is bounded by the keys changed in the run, not by the table, and by `merge_keys` for
//! runs changing more: the new rows are settled in partitions by key hash, each held as one
//! flat list sorted by key (32 bytes per row plus its key and cursor bytes in one arena, no hash
//! map: ~50 bytes per row for an integer key and a timestamp cursor), plus one batch at a time
//! while scanning and one row group while rewriting. A run changing 2,000 keys of 10M holds
//! 2,000 entries; a first load of 10M rows holds `merge_keys` (500,000) at a time, ~25 MB.
//! (Files a stream holds from before it was `append_dedup`, not `compacted`, are scanned like
//! new ones.)
//!
//! Keys are compared in Arrow's row format, so multi-column keys of any type work, and a null
//! key is a key like any other (all rows with a null key collapse into one). The row format
//! orders like the values, which is what lets step 2 compare keys with row group statistics
//! (single-column keys; multi-column keys scan every row group of the published files).

use std::fs::File;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::Schema;
use arrow::row::{RowConverter, Rows, SortField};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use weft_core::{ConnectorError, Result};

use crate::encoder::{PartWriter, StagedFile};
use crate::layout;
use crate::manifest::DataFile;
use crate::table::Table;

/// Rows per batch while scanning and rewriting.
const BATCH_ROWS: usize = 64 * 1024;

/// A new row of a key: where it is, and its key and cursor (row format) in the arena of
/// [`Winners`], the cursor right after the key.
#[derive(Clone, Copy)]
struct Candidate {
    at: usize,
    key_len: u32,
    cursor_len: u32,
    file: u32,
    row: u64,
}

/// The winning new rows of one partition's keys, sorted by key. Flat: one arena of key and
/// cursor bytes and 32 bytes per key, about a third of a hash map of boxed keys (which is what
/// bounds a compaction's memory by `merge_keys`).
#[derive(Default)]
struct Winners {
    arena: Vec<u8>,
    list: Vec<Candidate>,
}

impl Winners {
    fn key(&self, c: &Candidate) -> &[u8] {
        &self.arena[c.at..c.at + c.key_len as usize]
    }

    fn cursor(&self, c: &Candidate) -> Option<&[u8]> {
        let from = c.at + c.key_len as usize;
        (c.cursor_len > 0).then(|| &self.arena[from..from + c.cursor_len as usize - 1])
    }

    /// Adds a new row; `cursor` None when the stream has none.
    fn push(&mut self, key: &[u8], cursor: Option<&[u8]>, file: u32, row: u64) {
        let at = self.arena.len();
        self.arena.extend_from_slice(key);
        // Stored with one byte more so an empty cursor still reads as present.
        let cursor_len = match cursor {
            Some(c) => {
                self.arena.extend_from_slice(c);
                self.arena.push(0);
                c.len() as u32 + 1
            }
            None => 0,
        };
        self.list.push(Candidate {
            at,
            key_len: key.len() as u32,
            cursor_len,
            file,
            row,
        });
    }

    /// Sorts the rows by key and keeps the winner of each key (highest cursor; on equal
    /// cursors, or without one, the last to arrive: commit order, then row order), listing
    /// the others in `losers`.
    fn settle(&mut self, losers: &mut [Vec<u64>]) {
        let mut list = std::mem::take(&mut self.list);
        list.sort_unstable_by(|a, b| {
            self.key(a)
                .cmp(self.key(b))
                .then((a.file, a.row).cmp(&(b.file, b.row)))
        });
        let mut kept = 0;
        for i in 0..list.len() {
            let c = list[i];
            if kept > 0 && self.key(&list[kept - 1]) == self.key(&c) {
                let w = list[kept - 1];
                // Later arrival wins unless its cursor is lower.
                let wins = match (self.cursor(&c), self.cursor(&w)) {
                    (Some(new), Some(old)) => new >= old,
                    _ => true,
                };
                if wins {
                    losers[w.file as usize].push(w.row);
                    list[kept - 1] = c;
                } else {
                    losers[c.file as usize].push(c.row);
                }
            } else {
                list[kept] = c;
                kept += 1;
            }
        }
        list.truncate(kept);
        self.list = list;
    }

    fn find(&self, key: &[u8]) -> Option<&Candidate> {
        self.list
            .binary_search_by(|c| self.key(c).cmp(key))
            .ok()
            .map(|i| &self.list[i])
    }

    /// Whether some key is in `lo..=hi`.
    fn any_within(&self, lo: &[u8], hi: &[u8]) -> bool {
        let at = self.list.partition_point(|c| self.key(c) < lo);
        at < self.list.len() && self.key(&self.list[at]) <= hi
    }
}

/// Takes a new row: its key, its cursor (row format), its file index and row number.
type Sink<'a> = dyn FnMut(&[u8], Option<&[u8]>, u32, u64) -> Result<()> + 'a;

/// The new rows' keys and cursors, spilled to one file per partition (in the stream's staging
/// folder, which recovery empties after a crash), so that the new files are read once however
/// many partitions settle them. Records: key length (u32), key, cursor length + 1 (u32, 0 for
/// no cursor), cursor, file (u32), row (u64), little-endian. The files go when it is dropped.
struct Spill {
    paths: Vec<std::path::PathBuf>,
}

impl Spill {
    fn write<F>(dir: &std::path::Path, partitions: u64, scan: F) -> Result<Self>
    where
        F: FnOnce(&mut Sink) -> Result<()>,
    {
        use std::io::Write;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut spill = Spill { paths: Vec::new() };
        let mut writers = Vec::new();
        for p in 0..partitions {
            let path = dir.join(format!("spill-{id}-{p}.keys"));
            let file =
                File::create_new(&path).map_err(|e| ConnectorError::io("creating", &path, e))?;
            spill.paths.push(path);
            writers.push(std::io::BufWriter::with_capacity(64 * 1024, file));
        }
        let paths = spill.paths.clone();
        scan(&mut |key, cursor, file, row| {
            let p = (fnv1a(key) % partitions) as usize;
            let w = &mut writers[p];
            let cursor_len = cursor.map_or(0, |c| c.len() as u32 + 1);
            w.write_all(&(key.len() as u32).to_le_bytes())
                .and_then(|()| w.write_all(key))
                .and_then(|()| w.write_all(&cursor_len.to_le_bytes()))
                .and_then(|()| w.write_all(cursor.unwrap_or_default()))
                .and_then(|()| w.write_all(&file.to_le_bytes()))
                .and_then(|()| w.write_all(&row.to_le_bytes()))
                .map_err(|e| ConnectorError::io("writing", &paths[p], e))
        })?;
        for (w, path) in writers.into_iter().zip(&spill.paths) {
            w.into_inner()
                .map_err(|e| ConnectorError::io("writing", path, e.into_error()))?;
        }
        Ok(spill)
    }

    /// Pushes partition `p`'s rows, in the order they were written, into `winners`.
    fn read(&self, p: usize, winners: &mut Winners) -> Result<()> {
        use std::io::Read;
        let path = &self.paths[p];
        let io = |e| ConnectorError::io("reading", path, e);
        let file = File::open(path).map_err(io)?;
        let mut r = std::io::BufReader::with_capacity(64 * 1024, file);
        let (mut key, mut cursor) = (Vec::new(), Vec::new());
        let mut word = [0u8; 4];
        loop {
            match r.read_exact(&mut word) {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                other => other.map_err(io)?,
            }
            key.resize(u32::from_le_bytes(word) as usize, 0);
            r.read_exact(&mut key).map_err(io)?;
            r.read_exact(&mut word).map_err(io)?;
            let cursor_len = u32::from_le_bytes(word) as usize;
            cursor.resize(cursor_len.saturating_sub(1), 0);
            r.read_exact(&mut cursor).map_err(io)?;
            r.read_exact(&mut word).map_err(io)?;
            let file = u32::from_le_bytes(word);
            let mut long = [0u8; 8];
            r.read_exact(&mut long).map_err(io)?;
            let row = u64::from_le_bytes(long);
            winners.push(&key, (cursor_len > 0).then_some(&cursor[..]), file, row);
        }
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// FNV-1a: a fast, stable hash to spread keys over partitions.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What a compaction did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Compaction {
    pub rows_before: u64,
    pub rows_after: u64,
    pub files_rewritten: usize,
    /// Row groups of published files whose key columns were read (the others were skipped
    /// by their statistics).
    pub row_groups_scanned: usize,
    pub row_groups_skipped: usize,
    /// Row groups of rewritten files copied as encoded bytes (they lost no row).
    pub row_groups_copied: usize,
    /// Row groups of rewritten files decoded and encoded again.
    pub row_groups_encoded: usize,
    /// Bytes of the Parquet files the compaction wrote (the rewritten files).
    pub bytes_written: u64,
}

/// Removes files the compaction wrote before it failed (a crash leaves them to recovery).
fn discard(files: &[StagedFile]) {
    for f in files {
        let _ = std::fs::remove_file(&f.path);
    }
}

pub(crate) fn compact(table: &mut Table) -> Result<Option<Compaction>> {
    let label = table.label.clone();
    let files = table.manifest.files.clone();
    let schema = table.schema.clone();
    let err = |path: &std::path::Path, e: &dyn std::fmt::Display| {
        ConnectorError::Other(format!("{label}: compacting {}: {e}", path.display()))
    };
    let open = |path: &std::path::Path| {
        let reader = File::open(path).map_err(|e| ConnectorError::io("opening", path, e))?;
        ParquetRecordBatchReaderBuilder::try_new(reader).map_err(|e| err(path, &e))
    };
    // Files without a column added with a constant default hold rows that read that value
    // upstream: they are rewritten filled (see `evolution`), whether or not a key changed.
    // Only their footers are read to tell.
    let fills = crate::evolution::Fills::of(&label, &schema);
    let mut lacking = vec![false; files.len()];
    if !fills.is_empty() {
        for (index, file) in files.iter().enumerate() {
            let path = table.file_path(&file.path);
            lacking[index] = fills.lacked_by(open(&path)?.schema());
        }
    }
    if table.manifest.files.iter().all(|f| f.compacted) && !lacking.contains(&true) {
        return Ok(None);
    }

    let key_cols = table.primary_key.clone();
    let cursor_col = table.cursor.clone();
    let field_of = |name: &str| {
        schema
            .field_with_name(name)
            .map(|f| SortField::new(f.data_type().clone()))
            .map_err(|_| {
                ConnectorError::Schema(format!("{label}: column `{name}` is not in the stream"))
            })
    };
    let key_fields = key_cols
        .iter()
        .map(|k| field_of(k))
        .collect::<Result<Vec<_>>>()?;
    let key_conv = RowConverter::new(key_fields).map_err(|e| {
        ConnectorError::Schema(format!(
            "{label}: the primary key ({}) cannot be used to de-duplicate: {e}",
            key_cols.join(", ")
        ))
    })?;
    let cursor_conv = match &cursor_col {
        Some(c) => Some(RowConverter::new(vec![field_of(c)?]).map_err(|e| {
            ConnectorError::Schema(format!("{label}: cursor `{c}` cannot be compared: {e}"))
        })?),
        None => None,
    };
    let scan_columns: Vec<&String> = key_cols.iter().chain(cursor_col.iter()).collect();
    let projection = |builder: &ParquetRecordBatchReaderBuilder<File>, path: &std::path::Path| {
        let mut roots = Vec::new();
        for name in &scan_columns {
            let i = builder.schema().index_of(name).map_err(|_| {
                ConnectorError::Schema(format!(
                    "{label}: column `{name}` is missing from {}",
                    path.display()
                ))
            })?;
            roots.push(i);
        }
        roots.sort_unstable();
        roots.dedup();
        Ok::<_, ConnectorError>(ProjectionMask::roots(builder.parquet_schema(), roots))
    };
    // Keys and cursors of one batch, in the stream's types.
    let encode = |batch: &RecordBatch, path: &std::path::Path| {
        let keys = convert(&key_conv, batch, &key_cols, &schema).map_err(|e| err(path, &e))?;
        let cursors = match (&cursor_conv, &cursor_col) {
            (Some(conv), Some(c)) => Some(
                convert(conv, batch, std::slice::from_ref(c), &schema)
                    .map_err(|e| err(path, &e))?,
            ),
            _ => None,
        };
        Ok::<_, ConnectorError>((keys, cursors))
    };

    // The new rows are taken in partitions by key hash, each settled on its own, so the list
    // of winners never holds more than about `merge_keys` rows (by default, a first load of
    // 10M rows is 20 partitions; an incremental run of a few thousand changes is one). With
    // several partitions the new files' key columns are read once, each row's key and cursor
    // spilled to its partition's file in staging (see `Spill`), not read again per partition.
    let new_rows: u64 = files.iter().filter(|f| !f.compacted).map(|f| f.rows).sum();
    let partitions = new_rows.div_ceil(table.merge_keys.max(1)).max(1);
    let mut stats = Compaction::default();
    // Per file, the rows that lose (superseded by a later row of their key).
    let mut losers: Vec<Vec<u64>> = vec![Vec::new(); files.len()];
    // Every new row, in arrival order (commit order, then row order), to `sink`.
    let scan_new = |sink: &mut Sink| {
        for (index, file) in files.iter().enumerate() {
            if file.compacted {
                continue;
            }
            let path = table.file_path(&file.path);
            let builder = open(&path)?;
            let mask = projection(&builder, &path)?;
            let reader = builder
                .with_projection(mask)
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| err(&path, &e))?;
            let mut base = 0u64;
            for batch in reader {
                let batch = batch.map_err(|e| err(&path, &e))?;
                let (keys, cursors) = encode(&batch, &path)?;
                for i in 0..batch.num_rows() {
                    let cursor = cursors.as_ref().map(|c| c.row(i));
                    sink(
                        keys.row(i).as_ref(),
                        cursor.as_ref().map(|c| c.as_ref()),
                        index as u32,
                        base + i as u64,
                    )?;
                }
                base += batch.num_rows() as u64;
            }
        }
        Ok::<_, ConnectorError>(())
    };
    let spill = if partitions > 1 {
        Some(Spill::write(
            &layout::staging_dir(&table.dir),
            partitions,
            scan_new,
        )?)
    } else {
        None
    };
    for partition in 0..partitions {
        // Pass 1: the winning new row of every key of the partition the run changed.
        let mut winners = Winners::default();
        match &spill {
            Some(spill) => spill.read(partition as usize, &mut winners)?,
            None => scan_new(&mut |key, cursor, file, row| {
                winners.push(key, cursor, file, row);
                Ok(())
            })?,
        }
        if winners.list.is_empty() {
            continue;
        }
        winners.settle(&mut losers);

        // Pass 2: the published rows of those keys, row groups without one skipped.
        for (index, file) in files.iter().enumerate() {
            if !file.compacted {
                continue;
            }
            let path = table.file_path(&file.path);
            let builder = open(&path)?;
            let candidates =
                row_groups_with_keys(&builder, &key_cols, &schema, &key_conv, &winners);
            let groups = builder.metadata().row_groups();
            let mut offsets = Vec::with_capacity(groups.len());
            let mut offset = 0u64;
            for group in groups {
                offsets.push(offset);
                offset += group.num_rows().max(0) as u64;
            }
            stats.row_groups_skipped += groups.len() - candidates.len();
            stats.row_groups_scanned += candidates.len();
            let mask = projection(&builder, &path)?;
            for group in candidates {
                let reader = open(&path)?
                    .with_projection(mask.clone())
                    .with_row_groups(vec![group])
                    .with_batch_size(BATCH_ROWS)
                    .build()
                    .map_err(|e| err(&path, &e))?;
                let mut base = offsets[group];
                for batch in reader {
                    let batch = batch.map_err(|e| err(&path, &e))?;
                    let (keys, cursors) = encode(&batch, &path)?;
                    for i in 0..batch.num_rows() {
                        let Some(w) = winners.find(keys.row(i).as_ref()) else {
                            continue;
                        };
                        let published = cursors.as_ref().map(|c| c.row(i));
                        // The published row arrived first: it stays only with a higher cursor,
                        // and then every new row of its key loses.
                        let stays = match (&published, winners.cursor(w)) {
                            (Some(old), Some(new)) => old.as_ref() > new,
                            _ => false,
                        };
                        if stays {
                            losers[w.file as usize].push(w.row);
                        } else {
                            losers[index].push(base + i as u64);
                        }
                    }
                    base += batch.num_rows() as u64;
                }
            }
        }
    }

    // Pass 3: rewrite the files holding losers; files without losers stay as they are. A
    // file in the stream's latest schema is spliced (see `rewrite`): only its row groups with
    // losers are encoded again. Files from before a schema evolution are encoded whole.
    let staging = layout::staging_dir(&table.dir);
    let mut seq = table.manifest.max_seq() + 1;
    let mut kept = Vec::new();
    let mut spliced: Vec<StagedFile> = Vec::new();
    let mut whole = Vec::new();
    let result = (|| -> Result<()> {
        for (index, file) in files.iter().enumerate() {
            let rows = file.rows;
            let listed = &mut losers[index];
            listed.sort_unstable();
            listed.dedup();
            let dropping = listed.len() as u64;
            stats.rows_before += rows;
            stats.rows_after += rows.saturating_sub(dropping);
            if dropping == 0 && !lacking[index] {
                kept.push(DataFile {
                    compacted: true,
                    ..file.clone()
                });
                continue;
            }
            if dropping >= rows {
                continue;
            }
            stats.files_rewritten += 1;
            let path = table.file_path(&file.path);
            if !lacking[index] {
                let done = crate::rewrite::splice(
                    &label,
                    &path,
                    &staging,
                    seq,
                    &table.schema,
                    &table.props,
                    listed,
                )?;
                if let Some((staged, cost)) = done {
                    seq += 1;
                    stats.row_groups_copied += cost.copied;
                    stats.row_groups_encoded += cost.encoded;
                    spliced.push(staged);
                    continue;
                }
            }
            whole.push(index);
        }
        Ok(())
    })();
    if let Err(e) = result {
        discard(&spliced);
        return Err(e);
    }
    let mut writer = PartWriter::new(
        label.clone(),
        staging,
        table.schema.clone(),
        table.props.clone(),
        table.file_bytes,
        seq,
    );
    let result = (|| -> Result<()> {
        for &index in &whole {
            let file = &files[index];
            let listed = &losers[index];
            let path = table.file_path(&file.path);
            let reader = open(&path)?
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| err(&path, &e))?;
            let mut base = 0u64;
            let mut next = listed.iter().peekable();
            for batch in reader {
                let batch = batch.map_err(|e| err(&path, &e))?;
                let n = batch.num_rows() as u64;
                // Every row but the losers.
                let mask: BooleanArray = (base..base + n)
                    .map(|row| Some(next.next_if_eq(&&row).is_none()))
                    .collect();
                let batch = filter_record_batch(&batch, &mask).map_err(|e| err(&path, &e))?;
                // Files from before a schema evolution are rewritten in the latest schema.
                let batch = if batch.schema().fields() == table.schema.fields() {
                    batch
                } else {
                    let columns = crate::evolution::conform(&batch, &table.schema, &fills)?;
                    RecordBatch::try_new(table.schema.clone(), columns)?
                };
                writer.write(&batch)?;
                base += n;
            }
            stats.row_groups_encoded += open(&path)?.metadata().num_row_groups();
        }
        Ok(())
    })();
    let mut staged = match result.and_then(|()| writer.seal()) {
        Ok(staged) => staged,
        Err(e) => {
            let _ = writer.discard();
            discard(&spliced);
            return Err(e);
        }
    };
    if !spliced.is_empty() {
        if let Err(e) = layout::fsync_dir(&layout::staging_dir(&table.dir)) {
            discard(&spliced);
            discard(&staged);
            return Err(e);
        }
    }
    spliced.append(&mut staged);
    let staged = spliced;
    stats.bytes_written = staged.iter().map(|f| f.bytes).sum();
    let mut next = table.manifest.clone();
    next.version += 1;
    next.committed_at = chrono::Utc::now();
    next.files = kept;
    next.files.extend(staged.iter().map(|f| DataFile {
        path: f.name.clone(),
        rows: f.rows,
        bytes: f.bytes,
        compacted: true,
    }));
    // The replaced files are not in the new version: they go with the old one.
    table.replace(next, &staged)?;
    Ok(Some(stats))
}

/// The row groups of a published file that can hold one of `keys` (sorted, in row format), by
/// the statistics of a single-column key; every row group when that cannot be told.
fn row_groups_with_keys(
    builder: &ParquetRecordBatchReaderBuilder<File>,
    key_cols: &[String],
    schema: &Schema,
    conv: &RowConverter,
    keys: &Winners,
) -> Vec<usize> {
    let groups = builder.metadata().row_groups();
    let all = (0..groups.len()).collect();
    let [key] = key_cols else {
        return all;
    };
    let Ok(field) = schema.field_with_name(key).map(|f| f.data_type().clone()) else {
        return all;
    };
    let bounds = || -> Option<(Rows, Rows, Vec<bool>)> {
        let stats =
            StatisticsConverter::try_new(key, builder.schema(), builder.parquet_schema()).ok()?;
        let as_key = |a: ArrayRef| -> Option<ArrayRef> {
            if a.data_type() == &field {
                Some(a)
            } else {
                cast(&a, &field).ok()
            }
        };
        let mins = as_key(stats.row_group_mins(groups).ok()?)?;
        let maxes = as_key(stats.row_group_maxes(groups).ok()?)?;
        let nulls = stats.row_group_null_counts(groups).ok()?;
        let has_nulls = (0..groups.len())
            .map(|g| !nulls.is_valid(g) || nulls.value(g) > 0)
            .collect();
        let (mins_null, maxes_null) = (mins.logical_nulls(), maxes.logical_nulls());
        if mins_null.is_some_and(|n| n.null_count() > 0)
            || maxes_null.is_some_and(|n| n.null_count() > 0)
        {
            // Some row group has no statistics: read them all.
            return None;
        }
        Some((
            conv.convert_columns(&[mins]).ok()?,
            conv.convert_columns(&[maxes]).ok()?,
            has_nulls,
        ))
    };
    let Some((mins, maxes, has_nulls)) = bounds() else {
        return all;
    };
    // A null key sorts first in the row format; null statistics say nothing about it.
    let null_key = conv
        .convert_columns(&[arrow::array::new_null_array(&field, 1)])
        .ok();
    let wants_null = null_key.is_some_and(|n| keys.find(n.row(0).as_ref()).is_some());
    (0..groups.len())
        .filter(|&g| {
            keys.any_within(mins.row(g).as_ref(), maxes.row(g).as_ref())
                || (wants_null && has_nulls[g])
        })
        .collect()
}

/// The row-format values of columns `names` of `batch`, in the types of `schema` (a file from
/// before a type widening is compared in the widened type).
fn convert(
    conv: &RowConverter,
    batch: &RecordBatch,
    names: &[String],
    schema: &Schema,
) -> std::result::Result<Rows, String> {
    let columns = names
        .iter()
        .map(|n| {
            let column = batch
                .column_by_name(n)
                .cloned()
                .ok_or_else(|| format!("column `{n}` is missing"))?;
            let want = schema.field_with_name(n).map_err(|e| e.to_string())?;
            if column.data_type() == want.data_type() {
                Ok(column)
            } else {
                cast(&column, want.data_type()).map_err(|e| e.to_string())
            }
        })
        .collect::<std::result::Result<Vec<ArrayRef>, String>>()?;
    conv.convert_columns(&columns).map_err(|e| e.to_string())
}
