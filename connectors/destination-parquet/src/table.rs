//! One stream's product table, synchronously: opening (validation + recovery), commits,
//! overwrite publishing. Everything here blocks on the file system; the async writer runs it
//! on tokio's blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::Utc;
use parquet::file::properties::WriterProperties;
use weft_core::arrow_schema::SchemaRef;
use weft_core::{
    Checkpoint, ConfiguredStream, ConnectorError, Result, StreamTarget, SyncMode, WriteMode,
};

use crate::dedup::Compaction;
use crate::encoder::StagedFile;
use crate::layout;
use crate::lock::StreamLock;
use crate::manifest::{
    column_differences, columns_of, read_manifest, ColumnSpec, DataFile, Manifest,
    PendingGeneration,
};
use crate::recovery::recover;
use crate::versions;

/// The state of one open stream. `manifest` always equals what is on disk (version 0: nothing
/// on disk yet); it is replaced only after a new manifest was published.
#[derive(Debug)]
pub(crate) struct Table {
    pub dir: PathBuf,
    /// `stream `x`` — prefixes messages.
    pub label: String,
    pub mode: WriteMode,
    pub run_id: String,
    /// What the product says about itself, recorded in every manifest this table writes.
    pub metadata: weft_core::ProductMetadata,
    pub schema: SchemaRef,
    pub columns: Vec<ColumnSpec>,
    pub manifest: Manifest,
    /// Overwrite mode: the generation this writer fills.
    pub generation: Option<String>,
    pub primary_key: Vec<String>,
    pub cursor: Option<String>,
    pub props: WriterProperties,
    pub file_bytes: u64,
    /// `append_dedup`: new rows a compaction settles at a time (see `dedup`).
    pub merge_keys: u64,
    /// A CDC stream: `schema` is the change file schema (see [`crate::changes`]).
    pub cdc: bool,
    /// A CDC stream that never finishes (`follow`): its current state is published at every
    /// commit instead of at `finish`.
    pub follow: bool,
    /// While a generation is being published: where its files are (they are not in the
    /// current version yet).
    pub unpublished: HashMap<String, PathBuf>,
    /// Held for as long as the table is open.
    pub _lock: StreamLock,
}

/// What opening a table yields besides the table.
pub(crate) struct Opened {
    pub table: Table,
    pub committed: Option<Checkpoint>,
    /// Where the encoder writes new files.
    pub encoder_dir: PathBuf,
    pub next_seq: u64,
}

impl Table {
    /// Validates the stream against its folder, recovers from a crash, and picks up an
    /// unfinished overwrite generation.
    pub fn open(
        root: &Path,
        project: &Path,
        target: &StreamTarget,
        stream: &ConfiguredStream,
        schema: SchemaRef,
        props: WriterProperties,
        file_bytes: u64,
    ) -> Result<Opened> {
        let dir = layout::stream_dir(root, &target.domain, &target.product, &target.stream);
        layout::ensure_under(root, &dir)?;
        let label = format!("stream `{}`", target.stream);
        let mut schema = schema;
        let mut columns = columns_of(&schema);
        check_key_columns(&label, stream, &columns)?;
        let cdc = stream.sync_mode == SyncMode::Cdc;
        if cdc && stream.write_mode == WriteMode::Overwrite {
            return Err(ConnectorError::config(
                "write_mode",
                format!(
                    "{label} is read with CDC, which the lake writes as a changelog (`append`) \
                     or as the current state per key (`append_dedup`), not with `overwrite`"
                ),
            ));
        }

        // The lock first: recovery below deletes what a live writer has not committed yet.
        let lock = crate::lock::acquire(&dir, &label, project)?;
        versions::prepare(&dir)?;
        layout::create_dirs(&layout::staging_dir(&dir))?;
        let on_disk = read_manifest(&dir)?;
        let mut manifest = on_disk
            .clone()
            .unwrap_or_else(|| Manifest::empty(stream.write_mode, &target.run_id));

        if cdc && !manifest.files.is_empty() {
            // CDC streams accept added columns (see `changes`).
            crate::changes::check_evolution(&label, &manifest.fields, &columns)?;
        } else if stream.write_mode != WriteMode::Overwrite && !manifest.files.is_empty() {
            // Added columns and widened types flow in (see `evolution`).
            crate::evolution::check(&label, &dir, &manifest.fields, &columns)?;
            schema = crate::evolution::stored(&schema, &manifest.fields);
            let evolved = columns_of(&schema);
            let diff = column_differences(&manifest.fields, &evolved);
            if !diff.is_empty() {
                tracing::info!(
                    stream = %target.stream,
                    changes = %diff.join("; "),
                    "the stream's schema evolved; files written before read the new columns as null"
                );
            }
            columns = evolved;
        }

        // A pending overwrite generation is resumed only by an overwrite run with the same
        // schema; anything else restarts from scratch, so the generation is dropped first from
        // the manifest, then (by recovery) from the disk.
        // A CDC stream's pending generation is resumed also when columns were added since (its
        // files are null-filled when published): its checkpoint may already have advanced the
        // source's replication slot, so it can never be read again.
        if let Some(pending) = &manifest.pending {
            let same_columns = pending.fields == columns
                || cdc
                    && crate::changes::check_evolution(&label, &pending.fields, &columns).is_ok();
            let resumable = stages(stream.write_mode)
                && pending.write_mode == stream.write_mode
                && same_columns;
            if !resumable {
                tracing::info!(
                    stream = %target.stream,
                    generation = %pending.generation,
                    "dropping an unfinished overwrite generation"
                );
                manifest.pending = None;
                manifest.version += 1;
                manifest.committed_at = Utc::now();
                versions::store(&dir, &manifest, &HashMap::new())?;
            }
        }

        let recovered = recover(&dir, Some(&manifest))?;
        if recovered.removed + recovered.restored > 0 {
            tracing::info!(
                stream = %target.stream,
                removed = recovered.removed,
                restored = recovered.restored,
                "recovered the stream folder from an interrupted run"
            );
        }

        let (committed, generation) = match &manifest.pending {
            Some(p) if stages(stream.write_mode) => {
                (p.checkpoint.clone(), Some(p.generation.clone()))
            }
            None if stages(stream.write_mode) => (
                manifest.checkpoint.clone(),
                Some(uuid::Uuid::new_v4().simple().to_string()),
            ),
            _ => (manifest.checkpoint.clone(), None),
        };
        let encoder_dir = match &generation {
            Some(g) => layout::generation_dir(&dir, g),
            None => layout::staging_dir(&dir),
        };
        layout::create_dirs(&encoder_dir)?;
        let next_seq = manifest.max_seq() + 1;

        Ok(Opened {
            table: Table {
                dir,
                label,
                mode: stream.write_mode,
                run_id: target.run_id.clone(),
                metadata: target.metadata.clone(),
                schema,
                columns,
                manifest,
                generation,
                primary_key: stream.primary_key.clone(),
                cursor: stream.cursor_field.clone(),
                props,
                file_bytes,
                merge_keys: 500_000,
                cdc,
                follow: stream.follow,
                unpublished: HashMap::new(),
                _lock: lock,
            },
            committed,
            encoder_dir,
            next_seq,
        })
    }

    /// Where the encoder writes.
    pub fn encoder_dir(&self) -> PathBuf {
        match &self.generation {
            Some(g) => layout::generation_dir(&self.dir, g),
            None => layout::staging_dir(&self.dir),
        }
    }

    fn next_manifest(&self) -> Manifest {
        let mut next = self.manifest.clone();
        next.version += 1;
        next.run_id = self.run_id.clone();
        next.committed_at = Utc::now();
        next.product = (!self.metadata.is_empty()).then(|| self.metadata.clone());
        next
    }

    /// Makes `staged` (already fsynced) part of the table together with `checkpoint`.
    pub fn commit(&mut self, staged: Vec<StagedFile>, checkpoint: &Checkpoint) -> Result<()> {
        let next = self.next_commit(&staged, checkpoint)?;
        if self.generation.is_some() {
            // The files stay in their generation's folder until it is published.
            self.replace(next, &[])
        } else {
            self.replace(next, &staged)
        }
    }

    /// Makes `next` the table: published as a new version when its files differ from the
    /// current one (files of `new`, and unpublished ones, are linked from where they are), or
    /// the current version's manifest replaced in place. Then removes `new` from staging.
    pub fn replace(&mut self, next: Manifest, new: &[StagedFile]) -> Result<()> {
        let mut sources = self.unpublished.clone();
        sources.extend(new.iter().map(|f| (f.name.clone(), f.path.clone())));
        versions::store(&self.dir, &next, &sources)?;
        self.manifest = next;
        for f in new {
            // Linked into the version already; a crash before this leaves it to recovery.
            layout::remove_file(&f.path)?;
        }
        Ok(())
    }

    /// Where a data file of the manifest is: the current version, or staging while its
    /// generation is being published.
    pub fn file_path(&self, name: &str) -> PathBuf {
        match self.unpublished.get(name) {
            Some(path) => path.clone(),
            None => self.dir.join(name),
        }
    }

    /// Whether commits publish (the current state of a CDC stream that never finishes).
    pub fn publishes_at_commit(&self) -> bool {
        self.cdc && self.follow && self.mode == WriteMode::AppendDedup
    }

    /// A commit that publishes ([`Table::publishes_at_commit`]): commits and settles like
    /// `finish`, then starts a new generation for the next commits. Returns where the encoder
    /// writes from now on.
    pub fn commit_and_publish(
        &mut self,
        staged: Vec<StagedFile>,
        checkpoint: &Checkpoint,
    ) -> Result<(PathBuf, Option<Compaction>)> {
        let compaction = self.finish(staged, checkpoint)?;
        self.generation = Some(uuid::Uuid::new_v4().simple().to_string());
        let dir = self.encoder_dir();
        layout::create_dirs(&dir)?;
        Ok((dir, compaction))
    }

    /// The end of a run: commits `staged` with the final `checkpoint` and publishes, with a
    /// single manifest write. A crash before it leaves the previous commit as the truth, so the
    /// final checkpoint never becomes durable without its publication.
    pub fn finish(
        &mut self,
        staged: Vec<StagedFile>,
        checkpoint: &Checkpoint,
    ) -> Result<Option<Compaction>> {
        if self.generation.is_none() {
            self.commit(staged, checkpoint)?;
            return Ok(None);
        }
        let on_disk = self.manifest.clone();
        // Overwrite and append_dedup: the final commit stays in memory; the publish writes it.
        self.manifest = self.next_commit(&staged, checkpoint)?;
        let published = match self.mode {
            WriteMode::AppendDedup => self.publish_dedup(),
            WriteMode::Overwrite if self.keyed() => self.publish_overwrite_by_key(),
            _ => self.publish_overwrite().map(|()| None),
        };
        self.unpublished.clear();
        if published.is_err() {
            self.manifest = on_disk;
        }
        published
    }

    /// The manifest that commits `staged` with `checkpoint` (listing them as published for
    /// modes that publish at each commit).
    fn next_commit(&mut self, staged: &[StagedFile], checkpoint: &Checkpoint) -> Result<Manifest> {
        let mut next = self.next_manifest();
        let new_files = staged.iter().map(|f| DataFile {
            path: f.name.clone(),
            rows: f.rows,
            bytes: f.bytes,
            compacted: false,
        });
        match &self.generation {
            Some(generation) => {
                // Overwrite and append_dedup: record the generation, leave the published table
                // alone until the run publishes it.
                let mut files = match &self.manifest.pending {
                    Some(p) if &p.generation == generation => p.files.clone(),
                    _ => Vec::new(),
                };
                files.extend(new_files);
                next.pending = Some(PendingGeneration {
                    generation: generation.clone(),
                    write_mode: self.mode,
                    files,
                    fields: self.columns.clone(),
                    checkpoint: Some(checkpoint.clone()),
                    run_id: self.run_id.clone(),
                    updated_at: Utc::now(),
                });
            }
            None => {
                next.files.extend(new_files);
                next.fields = self.columns.clone();
                next.write_mode = self.mode;
                next.checkpoint = Some(checkpoint.clone());
            }
        }
        Ok(next)
    }

    /// Overwrite: swaps the committed generation in as the table, then deletes the old files.
    pub fn publish_overwrite(&mut self) -> Result<()> {
        let Some((pending, gen_dir)) = self.start_publish() else {
            return Ok(());
        };
        let next = self.overwrite_manifest(pending);
        // Readers now see the new files only; the old version went with the publish, and the
        // generation's folder before its flip (so a kill right after leaves staging empty).
        let sources = self.unpublished.clone();
        versions::store_consuming(&self.dir, &next, &sources, Some(&gen_dir))?;
        self.manifest = next;
        self.unpublished.clear();
        self.generation = None;
        Ok(())
    }

    /// Whether the stream has a primary key whose columns it writes.
    fn keyed(&self) -> bool {
        !self.primary_key.is_empty()
            && self
                .primary_key
                .iter()
                .all(|k| self.columns.iter().any(|c| &c.name == k))
    }

    /// Overwrite of a stream with a primary key: the committed generation becomes the table
    /// with one row per key, the last one the source sent (arrival order: commit, then row),
    /// so a source that sends a key twice (a full refresh restarted without telling) never
    /// publishes it twice. The check is the `append_dedup` compaction over the generation's
    /// files alone (key columns read, files rewritten only when a key repeats), in the same
    /// single version switch.
    pub fn publish_overwrite_by_key(&mut self) -> Result<Option<Compaction>> {
        let Some((pending, gen_dir)) = self.start_publish() else {
            return Ok(None);
        };
        // Written only by the compaction's single publish (`finish` restores the on-disk
        // manifest when it fails).
        self.manifest = self.overwrite_manifest(pending);
        // Arrival order decides, not a cursor: a full refresh is one snapshot.
        let cursor = self.cursor.take();
        let compaction = crate::dedup::compact(self);
        self.cursor = cursor;
        let compaction = self.settle_generation(&gen_dir, compaction?)?;
        if let Some(stats) = compaction.as_ref().filter(|s| s.rows_after < s.rows_before) {
            tracing::warn!(
                stream = %self.label,
                "{}: the source sent {} row(s) whose primary key ({}) a later row of the same \
                 full refresh also had; published the last row per key ({} rows)",
                self.label,
                stats.rows_before - stats.rows_after,
                self.primary_key.join(", "),
                stats.rows_after
            );
        }
        Ok(compaction)
    }

    /// append_dedup: publishes the committed generation together with the published files,
    /// settled to the latest row per key, in one manifest swap.
    pub fn publish_dedup(&mut self) -> Result<Option<Compaction>> {
        let Some((pending, gen_dir)) = self.start_publish() else {
            return Ok(None);
        };
        // The manifest compaction starts from: published plus pending files (read from the
        // generation's folder), the pending checkpoint, no pending generation. Written only by
        // the compaction's single publish (a crash before it leaves the on-disk manifest).
        let mut combined = self.next_manifest();
        combined.files.extend(pending.files.iter().cloned());
        combined.fields = pending.fields.clone();
        combined.checkpoint = pending.checkpoint.clone();
        combined.write_mode = WriteMode::AppendDedup;
        combined.pending = None;
        self.manifest = combined;
        let compaction = if self.cdc {
            Some(crate::changes::compact_current(self)?)
        } else {
            crate::dedup::compact(self)?
        };
        self.settle_generation(&gen_dir, compaction)
    }

    /// The pending generation and its folder, its files now found there (`unpublished`):
    /// where every publish starts; `None` when no generation is pending.
    fn start_publish(&mut self) -> Option<(PendingGeneration, PathBuf)> {
        let pending = self.manifest.pending.clone()?;
        let gen_dir = layout::generation_dir(&self.dir, &pending.generation);
        self.unpublished = unpublished(&gen_dir, &pending);
        Some((pending, gen_dir))
    }

    /// The next manifest of an overwrite: the generation's files, columns and checkpoint
    /// alone, nothing pending.
    fn overwrite_manifest(&self, pending: PendingGeneration) -> Manifest {
        let mut next = self.next_manifest();
        next.files = pending.files;
        next.fields = pending.fields;
        next.checkpoint = pending.checkpoint;
        next.write_mode = WriteMode::Overwrite;
        next.pending = None;
        next
    }

    /// Ends a publish settled by key (an overwrite by key, an `append_dedup`) once `self.manifest`
    /// is the table to publish and the compaction has run. Guarantees: readers switch to that
    /// table in one version swap, the compaction's own when it rewrote files (`Some` stats),
    /// else one made here, with nothing of the generation left out or seen twice; then the
    /// generation's folder is gone and no generation is open, so the next commit starts a new
    /// one and a crash after the swap leaves nothing to recover.
    fn settle_generation(
        &mut self,
        gen_dir: &Path,
        compaction: Option<Compaction>,
    ) -> Result<Option<Compaction>> {
        if compaction.is_none() {
            let next = self.manifest.clone();
            self.replace(next, &[])?;
        }
        self.unpublished.clear();
        layout::remove_dir_all(gen_dir)?;
        self.generation = None;
        Ok(compaction)
    }

    /// A CDC stream's columns changed mid-stream: later files have `schema` (the change file
    /// schema). Only added columns are accepted.
    pub fn schema_change(&mut self, schema: SchemaRef) -> Result<()> {
        let columns = columns_of(&schema);
        crate::changes::check_evolution(&self.label, &self.columns, &columns)?;
        self.schema = schema;
        self.columns = columns;
        Ok(())
    }

    /// Drops whatever is not committed (files of the encoder, files moved by a failed commit).
    pub fn discard_uncommitted(&self) -> Result<()> {
        recover(&self.dir, Some(&self.manifest))?;
        layout::create_dirs(&self.encoder_dir())
    }
}

/// Where the files of a pending generation are.
fn unpublished(gen_dir: &Path, pending: &PendingGeneration) -> HashMap<String, PathBuf> {
    pending
        .files
        .iter()
        .map(|f| (f.path.clone(), gen_dir.join(&f.path)))
        .collect()
}

/// Whether a write mode stages its commits in a generation published at the end of the run.
fn stages(mode: WriteMode) -> bool {
    matches!(mode, WriteMode::Overwrite | WriteMode::AppendDedup)
}

/// `append_dedup` needs a key; key and cursor columns must exist in the written schema.
fn check_key_columns(label: &str, stream: &ConfiguredStream, columns: &[ColumnSpec]) -> Result<()> {
    let has = |name: &str| columns.iter().any(|c| c.name == name);
    if stream.write_mode == WriteMode::AppendDedup {
        if stream.primary_key.is_empty() {
            return Err(ConnectorError::config(
                "primary_key",
                format!(
                    "{label} is written with `append_dedup`, which keeps the latest row per \
                     primary key: set `primary_key` for the stream"
                ),
            ));
        }
        if let Some(missing) = stream.primary_key.iter().find(|k| !has(k)) {
            return Err(ConnectorError::Schema(format!(
                "{label}: primary key column `{missing}` is not among the columns written ({}); \
                 fix `primary_key` or the stream's mappers",
                columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Some(cursor) = stream.cursor_field.as_deref().filter(|c| !has(c)) {
            return Err(ConnectorError::Schema(format!(
                "{label}: cursor column `{cursor}` is not among the columns written; fix \
                 `cursor_field` or the stream's mappers"
            )));
        }
    }
    Ok(())
}
