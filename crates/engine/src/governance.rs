//! The policy at sync time: products breaking an `error` rule are refused before anything
//! runs, and each stream's forced transformations are appended to its mapper chain after the
//! product's own mappers (so no product file can remove them), then recorded for the audit.

use serde::Serialize;
use tracing::warn;
use weft_core::Catalog;
use weft_governance::{Forced, Keys, Policy, Severity, Violation};
use weft_mesh::{Product, Project, StreamConfig};
use weft_state::{StateStore, StreamKey};

use crate::error::EngineError;
use crate::mappers::MapperChain;

/// What governance did to one stream of a run: the audit record.
#[derive(Debug, Clone, Serialize)]
pub struct StreamAudit {
    /// SHA-256 of the policy in force (governance.yaml and the domains' rules).
    pub policy_digest: String,
    /// Ids of the rules that applied to the product.
    pub rules: Vec<String>,
    /// Per column, the forced transformation and the rule forcing it.
    pub columns: Vec<Forced>,
}

pub(crate) struct Governance {
    policy: Policy,
    project: Project,
}

fn refusal(violations: &[Violation]) -> String {
    let lines: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
    format!(
        "refused by the governance policy:\n  {}",
        lines.join("\n  ")
    )
}

impl Governance {
    pub fn load(project: &Project) -> Result<Self, EngineError> {
        let policy = Policy::load(project).map_err(|e| EngineError::Policy(e.to_string()))?;
        Ok(Self {
            policy,
            project: project.clone(),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.policy.keys
    }

    /// Refuses a product breaking an `error` rule on what its files say; logs the warnings.
    pub fn refuse_violations(&self, product: &Product) -> Result<(), EngineError> {
        let (errors, warnings): (Vec<Violation>, Vec<Violation>) = self
            .policy
            .check_product(&self.project, product, &|_| None)
            .into_iter()
            .partition(|v| v.severity == Severity::Error);
        for w in &warnings {
            warn!("{w}");
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Policy(refusal(&errors)))
        }
    }

    /// The stream's config with the forced mappers appended, checked against the source's
    /// schema (columns the file does not name are caught here), and its audit record.
    pub fn govern(
        &self,
        product: &Product,
        config: &StreamConfig,
        catalog: &Catalog,
    ) -> Result<(StreamConfig, StreamAudit), String> {
        let mut governed = config.clone();
        let mut audit = StreamAudit {
            policy_digest: self.policy.digest.clone(),
            rules: self
                .policy
                .rules_for(product.domain.as_str())
                .map(|r| r.id.clone())
                .collect(),
            columns: Vec::new(),
        };
        let Some(descriptor) = catalog.stream(config.name.as_str()) else {
            // plan_stream names the missing stream.
            return Ok((governed, audit));
        };
        let (forced, violations) =
            self.policy
                .forced(&self.project, product, config, &descriptor.schema);
        let (errors, warnings): (Vec<Violation>, Vec<Violation>) = violations
            .into_iter()
            .partition(|v| v.severity == Severity::Error);
        for w in &warnings {
            warn!("{w}");
        }
        if !errors.is_empty() {
            return Err(refusal(&errors));
        }
        // Columns the product's own mappers already leave out need nothing.
        let own = MapperChain::compile_with_keys(
            &descriptor.schema,
            config.columns.as_deref(),
            &config.mappers,
            self.keys(),
        )
        .map_err(|e| e.to_string())?;
        for f in forced {
            if own.output_name(&f.column).is_none() {
                continue;
            }
            if let Some(mapper) = f.mapper() {
                governed.mappers.push(mapper);
                audit.columns.push(f);
            }
        }
        Ok((governed, audit))
    }

    /// Records the audit of a planned stream; a failure to record is logged, not fatal.
    pub fn record(
        &self,
        state: &std::sync::Arc<dyn StateStore>,
        run_id: &str,
        key: &StreamKey,
        audit: &StreamAudit,
    ) {
        let json = serde_json::to_string(audit).expect("audit is JSON");
        if let Err(e) = state.record_policy(run_id, key, &audit.policy_digest, &json) {
            warn!(stream = %key, "could not record the governance audit: {e}");
        }
    }
}
