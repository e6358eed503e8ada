//! The data model: the three streams, their schemas, and which ids exist or changed in which
//! version.
//!
//! Version 0 holds the base rows (ids `1..=base`). Each version `k ≥ 1` (only when
//! `changes_per_run > 0`) updates `changes_per_run` distinct existing ids, chosen by a seeded
//! affine permutation of the ids that existed before it, and appends as many new ids. A row's
//! values are a pure function of (seed, stream, id, version in which it last changed), see
//! the `generate` module.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::config::SampleConfig;

/// `updated_at` of base rows starts here: 2024-01-01T00:00:00Z, in µs.
pub const BASE_TIME_US: i64 = 1_704_067_200_000_000;
/// Base rows share an `updated_at` in groups of this many consecutive ids (cursor ties).
pub const TIE_GROUP: u64 = 1_000;
/// Rows changed in version `k` get `updated_at = CHANGES_BASE_US + k hours`; a year after
/// [`BASE_TIME_US`], later than any base row's `updated_at` up to [`crate::MAX_SCALE`].
pub const CHANGES_BASE_US: i64 = BASE_TIME_US + 365 * DAY_US;

pub(crate) const SECOND_US: i64 = 1_000_000;
pub const HOUR_US: i64 = 3_600 * SECOND_US;
pub(crate) const DAY_US: i64 = 24 * HOUR_US;

/// One of the sample source's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleStream {
    Customers,
    Orders,
    Products,
}

impl SampleStream {
    pub const ALL: [SampleStream; 3] = [Self::Customers, Self::Orders, Self::Products];

    pub fn name(self) -> &'static str {
        match self {
            Self::Customers => "customers",
            Self::Orders => "orders",
            Self::Products => "products",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Salt mixed into every hash so streams get unrelated values.
    pub(crate) fn tag(self) -> u64 {
        match self {
            Self::Customers => 0x6375_7374,
            Self::Orders => 0x6f72_6472,
            Self::Products => 0x7072_6f64,
        }
    }

    /// The Arrow schema of the stream's batches.
    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<[SchemaRef; 3]> = OnceLock::new();
        let all = SCHEMAS.get_or_init(|| {
            [
                build_schema(Self::Customers),
                build_schema(Self::Orders),
                build_schema(Self::Products),
            ]
        });
        all[self as usize].clone()
    }

    /// Rows in version 0.
    pub fn base_rows(self, config: &SampleConfig) -> u64 {
        match self {
            Self::Orders => config.scale,
            Self::Customers => (config.scale / 10).max(1),
            Self::Products => (config.scale / 100).max(1),
        }
    }

    /// Rows in the table at `version` (ids are `1..=rows_at`), `None` on overflow.
    pub fn rows_at(self, config: &SampleConfig, version: u64) -> Option<u64> {
        config
            .changes_per_run
            .checked_mul(version)?
            .checked_add(self.base_rows(config))
    }

    /// The version that created `id`.
    pub(crate) fn created_version(self, config: &SampleConfig, id: u64) -> u64 {
        let base = self.base_rows(config);
        if id <= base || config.changes_per_run == 0 {
            0
        } else {
            (id - base - 1) / config.changes_per_run + 1
        }
    }

    /// The existing ids version `k ≥ 1` updates, sorted.
    pub fn updated_ids(self, config: &SampleConfig, version: u64) -> Vec<u64> {
        if version == 0 || config.changes_per_run == 0 {
            return Vec::new();
        }
        let Some(existing) = self.rows_at(config, version - 1) else {
            return Vec::new();
        };
        if existing == 0 {
            return Vec::new();
        }
        let count = config.changes_per_run.min(existing);
        // An affine map j ↦ (a·j + b) mod n with gcd(a, n) = 1 is a permutation of 0..n, so
        // the first `count` values are distinct ids without a set or rejection sampling.
        let h = hash4(config.seed, self.tag(), version, 0x7570_6461);
        let b = h % existing;
        let mut a = 1 + mix(h) % existing;
        while gcd(a, existing) != 1 {
            a = if a + 1 >= existing { 1 } else { a + 1 };
        }
        let mut ids: Vec<u64> = (0..count)
            .map(|j| ((a as u128 * j as u128 + b as u128) % existing as u128) as u64 + 1)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The ids version `k ≥ 1` added, in order.
    pub fn added_ids(self, config: &SampleConfig, version: u64) -> std::ops::RangeInclusive<u64> {
        match (
            version.checked_sub(1).and_then(|v| self.rows_at(config, v)),
            self.rows_at(config, version),
        ) {
            (Some(before), Some(after)) if version > 0 => before + 1..=after,
            #[allow(clippy::reversed_empty_ranges)]
            _ => 1..=0,
        }
    }

    /// Every id changed (updated or added) in version `k ≥ 1`, sorted; empty for version 0.
    pub fn changed_ids(self, config: &SampleConfig, version: u64) -> Vec<u64> {
        if version == 0 {
            return Vec::new();
        }
        // Updated ids existed before the version, added ids did not: concatenation is sorted.
        let mut ids = self.updated_ids(config, version);
        ids.extend(self.added_ids(config, version));
        ids
    }

    /// For a full read at `version`: the ids updated after their creation, with the last
    /// version that updated them, sorted by id. Other ids last changed when created.
    pub(crate) fn update_overrides(self, config: &SampleConfig, version: u64) -> Vec<(u64, u64)> {
        let mut last: HashMap<u64, u64> = HashMap::new();
        if config.changes_per_run == 0 {
            return Vec::new();
        }
        for k in 1..=version {
            for id in self.updated_ids(config, k) {
                last.insert(id, k);
            }
        }
        let mut out: Vec<(u64, u64)> = last.into_iter().collect();
        out.sort_unstable();
        out
    }
}

fn build_schema(stream: SampleStream) -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let fields = match stream {
        SampleStream::Customers => vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("email", DataType::Utf8, false),
            Field::new("country", DataType::Utf8, false),
            Field::new("lifetime_value", DataType::Decimal128(12, 2), false),
            Field::new("created_at", ts(), false),
            Field::new("updated_at", ts(), false),
        ],
        SampleStream::Orders => vec![
            Field::new("id", DataType::Int64, false),
            Field::new("customer_id", DataType::Int64, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("amount", DataType::Decimal128(12, 2), false),
            Field::new("quantity", DataType::Int32, false),
            Field::new("ordered_on", DataType::Date32, false),
            Field::new("note", DataType::Utf8, true),
            Field::new("updated_at", ts(), false),
        ],
        SampleStream::Products => vec![
            Field::new("id", DataType::Int64, false),
            Field::new("sku", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("category", DataType::Utf8, false),
            Field::new("price", DataType::Decimal128(10, 2), false),
            Field::new("in_stock", DataType::Boolean, false),
            Field::new("updated_at", ts(), false),
        ],
    };
    Arc::new(Schema::new(fields))
}

/// `updated_at` of every row changed in `version ≥ 1`, µs since the epoch.
pub fn change_time_us(version: u64) -> i64 {
    CHANGES_BASE_US + version as i64 * HOUR_US
}

/// `updated_at` (µs) of a row last changed in `version`.
pub(crate) fn updated_at_us(id: u64, version: u64) -> i64 {
    if version == 0 {
        BASE_TIME_US + ((id - 1) / TIE_GROUP) as i64 * SECOND_US
    } else {
        change_time_us(version)
    }
}

/// SplitMix64's finaliser: a fast, well-mixed 64-bit hash step.
#[inline]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[inline]
pub(crate) fn hash4(a: u64, b: u64, c: u64, d: u64) -> u64 {
    mix(mix(mix(mix(a) ^ b) ^ c) ^ d)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_counts_follow_scale() {
        let cfg = SampleConfig::new(1_000).with_changes_per_run(7);
        assert_eq!(SampleStream::Orders.base_rows(&cfg), 1_000);
        assert_eq!(SampleStream::Customers.base_rows(&cfg), 100);
        assert_eq!(SampleStream::Products.base_rows(&cfg), 10);
        assert_eq!(SampleStream::Products.rows_at(&cfg, 3), Some(31));
        assert_eq!(SampleStream::Products.base_rows(&SampleConfig::new(5)), 1);
    }

    #[test]
    fn each_version_updates_distinct_existing_ids_and_adds_new_ones() {
        let cfg = SampleConfig::new(1_000).with_changes_per_run(7);
        for stream in SampleStream::ALL {
            for k in 1..5 {
                let updated = stream.updated_ids(&cfg, k);
                let before = stream.rows_at(&cfg, k - 1).unwrap();
                assert_eq!(updated.len(), 7, "{stream:?} v{k}");
                assert!(
                    updated.windows(2).all(|w| w[0] < w[1]),
                    "sorted and distinct"
                );
                assert!(updated.iter().all(|&id| (1..=before).contains(&id)));
                assert_eq!(stream.added_ids(&cfg, k), before + 1..=before + 7);
                assert_eq!(stream.changed_ids(&cfg, k).len(), 14);
            }
        }
        // With fewer rows than changes, every row is updated.
        let tiny = SampleConfig::new(1).with_changes_per_run(3);
        assert_eq!(SampleStream::Products.updated_ids(&tiny, 1), vec![1]);
    }

    #[test]
    fn created_version_matches_added_ids() {
        let cfg = SampleConfig::new(100).with_changes_per_run(4);
        for k in 1..4 {
            for id in SampleStream::Customers.added_ids(&cfg, k) {
                assert_eq!(SampleStream::Customers.created_version(&cfg, id), k);
            }
        }
        assert_eq!(SampleStream::Customers.created_version(&cfg, 10), 0);
    }

    #[test]
    fn base_updated_at_has_ties_and_changes_come_later() {
        assert_eq!(updated_at_us(1, 0), updated_at_us(1_000, 0));
        assert_eq!(updated_at_us(1_001, 0), BASE_TIME_US + SECOND_US);
        assert!(updated_at_us(crate::MAX_SCALE, 0) < updated_at_us(1, 1));
        assert_eq!(updated_at_us(5, 2) - updated_at_us(9, 1), HOUR_US);
    }
}
