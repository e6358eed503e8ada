//! The sample source's config.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weft_core::{ConnectorError, Result};

/// The largest `scale` accepted: base rows' `updated_at` then stays well before the first
/// change time, so cursors keep rising from version to version.
pub const MAX_SCALE: u64 = 10_000_000_000;

/// Config of the `sample` source: deterministic generated customers, orders and products.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Rows of `orders` in the base version; `customers` gets scale/10 rows and `products`
    /// scale/100 (at least one each).
    #[serde(default = "default_scale")]
    pub scale: u64,
    /// Rows per generated record batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Seed of the generator: the same seed always gives the same data.
    #[serde(default)]
    pub seed: u64,
    /// When above 0, each new run (a "version") updates this many existing rows and adds this
    /// many new rows to every stream, so incremental syncs have work to do.
    #[serde(default)]
    pub changes_per_run: u64,
}

fn default_scale() -> u64 {
    10_000
}

fn default_batch_size() -> usize {
    65_536
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            scale: default_scale(),
            batch_size: default_batch_size(),
            seed: 0,
            changes_per_run: 0,
        }
    }
}

impl SampleConfig {
    /// A config with `scale` orders and defaults otherwise.
    pub fn new(scale: u64) -> Self {
        Self {
            scale,
            ..Self::default()
        }
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn with_changes_per_run(mut self, changes_per_run: u64) -> Self {
        self.changes_per_run = changes_per_run;
        self
    }

    /// Checks the ranges serde cannot express.
    pub fn validate(&self) -> Result<()> {
        if self.scale > MAX_SCALE {
            return Err(ConnectorError::config(
                "scale",
                format!("must be at most {MAX_SCALE}"),
            ));
        }
        if self.batch_size == 0 {
            return Err(ConnectorError::config("batch_size", "must be at least 1"));
        }
        if self.changes_per_run > MAX_SCALE {
            return Err(ConnectorError::config(
                "changes_per_run",
                format!("must be at most {MAX_SCALE}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_unknown_fields_are_named() {
        let cfg: SampleConfig = weft_core::parse_config(&serde_json::json!({})).unwrap();
        assert_eq!(cfg, SampleConfig::default());
        assert_eq!(cfg.scale, 10_000);
        assert_eq!(cfg.batch_size, 65_536);

        let err = weft_core::parse_config::<SampleConfig>(&serde_json::json!({"scael": 5}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `scael`"), "{err}");
    }

    #[test]
    fn zero_batch_size_is_rejected_with_the_field() {
        let err = SampleConfig::new(10)
            .with_batch_size(0)
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid config at `batch_size`: must be at least 1"
        );
    }

    #[test]
    fn spec_documents_the_fields() {
        let spec = weft_core::spec_of::<SampleConfig>();
        let scale = &spec["properties"]["scale"];
        assert_eq!(scale["default"], 10_000);
        assert!(scale["description"].as_str().unwrap().contains("orders"));
    }
}
