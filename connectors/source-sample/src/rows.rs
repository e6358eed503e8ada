//! Walking a set of rows of one version in id order, a batch at a time.

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;

use crate::config::SampleConfig;
use crate::generate::build_batch;
use crate::model::SampleStream;

/// The ids to generate, each with the version in which it last changed.
pub(crate) struct RowWalk {
    stream: SampleStream,
    config: SampleConfig,
    ids: IdSource,
    ids_buf: Vec<u64>,
    versions_buf: Vec<u64>,
}

enum IdSource {
    /// Every id in `next..=last` (a full table), with sparse later-update overrides.
    Range {
        next: u64,
        last: u64,
        overrides: Vec<(u64, u64)>,
        at: usize,
    },
    /// Listed ids, all changed in `version`.
    Listed {
        ids: Vec<u64>,
        at: usize,
        version: u64,
    },
}

impl RowWalk {
    /// The full table at `version`, ids after `after_id`.
    pub(crate) fn table(
        stream: SampleStream,
        config: &SampleConfig,
        version: u64,
        after_id: u64,
    ) -> Self {
        let last = stream.rows_at(config, version).unwrap_or(0);
        let overrides = stream.update_overrides(config, version);
        let at = overrides.partition_point(|&(id, _)| id <= after_id);
        Self::new(
            stream,
            config,
            IdSource::Range {
                next: after_id.saturating_add(1),
                last,
                overrides,
                at,
            },
        )
    }

    /// The rows changed in `version ≥ 1`, ids after `after_id`.
    pub(crate) fn changes(
        stream: SampleStream,
        config: &SampleConfig,
        version: u64,
        after_id: u64,
    ) -> Self {
        let ids = stream.changed_ids(config, version);
        let at = ids.partition_point(|&id| id <= after_id);
        Self::new(stream, config, IdSource::Listed { ids, at, version })
    }

    fn new(stream: SampleStream, config: &SampleConfig, ids: IdSource) -> Self {
        Self {
            stream,
            config: config.clone(),
            ids,
            ids_buf: Vec::new(),
            versions_buf: Vec::new(),
        }
    }

    /// Rows not yet generated.
    pub(crate) fn remaining(&self) -> u64 {
        match &self.ids {
            IdSource::Range { next, last, .. } => (last + 1).saturating_sub(*next),
            IdSource::Listed { ids, at, .. } => (ids.len() - at) as u64,
        }
    }

    /// The next batch of at most `batch_size` rows, `None` when done.
    pub(crate) fn next_batch(&mut self) -> Option<Result<RecordBatch, ArrowError>> {
        let want = (self.config.batch_size as u64).min(self.remaining()) as usize;
        if want == 0 {
            return None;
        }
        self.ids_buf.clear();
        self.versions_buf.clear();
        match &mut self.ids {
            IdSource::Range {
                next,
                overrides,
                at,
                ..
            } => {
                for id in *next..*next + want as u64 {
                    let version = match overrides.get(*at) {
                        Some(&(oid, v)) if oid == id => {
                            *at += 1;
                            v
                        }
                        _ => self.stream.created_version(&self.config, id),
                    };
                    self.ids_buf.push(id);
                    self.versions_buf.push(version);
                }
                *next += want as u64;
            }
            IdSource::Listed { ids, at, version } => {
                self.ids_buf.extend_from_slice(&ids[*at..*at + want]);
                self.versions_buf.resize(want, *version);
                *at += want;
            }
        }
        Some(build_batch(
            self.stream,
            &self.config,
            &self.ids_buf,
            &self.versions_buf,
        ))
    }
}

impl Iterator for RowWalk {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
    }
}
