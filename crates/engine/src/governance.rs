//! The policy at sync time: products breaking an `error` rule are refused before anything
//! runs, and each stream's forced transformations are appended to its mapper chain after the
//! product's own mappers (so no product file can remove them), then recorded for the audit.
//! A product reading another domain's product also gets the producer's `when_shared` rules,
//! right after the grant's mappers; what the upstream's store already holds transformed is
//! not transformed again.

use std::collections::BTreeMap;

use serde::Serialize;
use tracing::warn;
use weft_core::Catalog;
use weft_governance::{Action, Forced, Keys, Policy, Severity, Violation};
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

#[derive(Clone)]
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
        let schema = &descriptor.schema;
        let (mut forced, mut violations) =
            self.policy.forced(&self.project, product, config, schema);
        // A product reading another product: the producer's `when_shared` rules on the grant's
        // way (right after the grant's own mappers, before the consumer's, so no consumer
        // mapper can rename a column out of their reach), and nothing forced again that the
        // upstream's store already holds transformed (a token hashed twice would no longer
        // join with the same address's token elsewhere).
        let mut shared: Vec<Forced> = Vec::new();
        let mut grant_mappers = 0;
        let mut arrived = BTreeMap::new();
        if let Ok(Some(access)) = weft_mesh::access(&self.project, product) {
            let upstream_config =
                crate::validate::effective_streams(&self.project, access.upstream)
                    .ok()
                    .and_then(|s| s.into_iter().find(|s| s.name == config.name));
            if let Some(upstream_config) = upstream_config {
                arrived = self.arrived(access.upstream, &upstream_config, schema);
                if let Some(granted) = access.grant.and_then(|g| g.stream(config.name.as_str())) {
                    // `config` is the effective stream (grant's mappers first) at sync time.
                    let own = granted.mappers();
                    if config.mappers.starts_with(&own) {
                        grant_mappers = own.len();
                    }
                    let (when_shared, v) = self.policy.forced_when_shared(
                        &self.project,
                        access.upstream,
                        &upstream_config,
                        &granted.transform,
                        schema,
                    );
                    violations.extend(v);
                    shared = when_shared
                        .into_iter()
                        .filter(|f| arrived.get(&f.column).is_none_or(|a| *a < f.action))
                        .collect();
                }
            }
        }
        for f in &shared {
            arrived
                .entry(f.column.clone())
                .and_modify(|a: &mut Action| *a = (*a).max(f.action))
                .or_insert(f.action);
        }
        forced.retain(|f| arrived.get(&f.column).is_none_or(|a| *a < f.action));
        let (errors, warnings): (Vec<Violation>, Vec<Violation>) = violations
            .into_iter()
            .partition(|v| v.severity == Severity::Error);
        for w in &warnings {
            warn!("{w}");
        }
        if !errors.is_empty() {
            return Err(refusal(&errors));
        }
        // Columns the grant's mappers leave out need nothing of the shared rules.
        let granted_chain = MapperChain::compile_with_keys(
            schema,
            None,
            &config.mappers[..grant_mappers],
            self.keys(),
        )
        .map_err(|e| e.to_string())?;
        let mut at = grant_mappers;
        for f in shared {
            if granted_chain.output_name(&f.column).is_none() {
                continue;
            }
            if let Some(mapper) = f.mapper() {
                governed.mappers.insert(at, mapper);
                at += 1;
                audit.columns.push(f);
            }
        }
        // Columns the product's own mappers already leave out need nothing.
        let own = MapperChain::compile_with_keys(
            schema,
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

    /// Per column, the strongest transformation `product`'s store already holds for `stream`:
    /// its own `everywhere` rules and, up its chain of upstream products, the `when_shared`
    /// rules of each grant read through. Evaluated on `schema` (the stream as the store keeps
    /// it: forced transformations keep names, so detection finds the same columns).
    fn arrived(
        &self,
        product: &Product,
        stream: &StreamConfig,
        schema: &weft_core::arrow_schema::Schema,
    ) -> BTreeMap<String, Action> {
        let mut out: BTreeMap<String, Action> = BTreeMap::new();
        let mut add = |forced: Vec<Forced>| {
            for f in forced {
                let a = out.entry(f.column).or_insert(f.action);
                *a = (*a).max(f.action);
            }
        };
        add(self.policy.forced(&self.project, product, stream, schema).0);
        if let Ok(Some(access)) = weft_mesh::access(&self.project, product) {
            let upstream_config =
                crate::validate::effective_streams(&self.project, access.upstream)
                    .ok()
                    .and_then(|s| s.into_iter().find(|s| s.name == stream.name));
            if let Some(upstream_config) = upstream_config {
                if let Some(granted) = access.grant.and_then(|g| g.stream(stream.name.as_str())) {
                    add(self
                        .policy
                        .forced_when_shared(
                            &self.project,
                            access.upstream,
                            &upstream_config,
                            &granted.transform,
                            schema,
                        )
                        .0);
                }
                // The lineage is acyclic (checked at load), so this ends.
                add(self
                    .arrived(access.upstream, &upstream_config, schema)
                    .into_iter()
                    .map(|(column, action)| Forced {
                        column,
                        action,
                        rule: String::new(),
                        keep_last: 0,
                    })
                    .collect());
            }
        }
        out
    }

    /// A schema the source changed to mid-stream: a new column a rule forces a transformation
    /// on (or an untagged one a detection rule refuses) stops the stream, since the mappers
    /// planned before the change do not transform it; the next run plans it like any column.
    pub fn check_mid_stream(
        &self,
        product: &Product,
        config: &StreamConfig,
        before: &weft_core::arrow_schema::Schema,
        after: &weft_core::arrow_schema::Schema,
    ) -> Result<(), String> {
        let new: Vec<&str> = after
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|c| before.index_of(c).is_err())
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let (forced, violations) = self.policy.forced(&self.project, product, config, after);
        let errors: Vec<Violation> = violations
            .into_iter()
            .filter(|v| v.severity == Severity::Error)
            .filter(|v| new.iter().any(|c| v.subject.ends_with(&format!(".{c}"))))
            .collect();
        if !errors.is_empty() {
            return Err(refusal(&errors));
        }
        match forced
            .iter()
            .find(|f| f.action != Action::Allow && new.contains(&f.column.as_str()))
        {
            Some(f) => Err(format!(
                "column `{}` appeared, which rule `{}` forces to `{}`; the stream stopped before writing it (the next run applies the rule to it)",
                f.column, f.rule, f.action
            )),
            None => Ok(()),
        }
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
