//! `governance.yaml`: classification levels, the project's keys and the central rules; plus
//! each domain's `rules:` in the same format. Loading checks every rule for the fields its
//! kind needs, compiles its patterns, and refuses domain rules that would weaken central ones.

use std::path::{Path, PathBuf};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};
use weft_mesh::{Position, Project};

use crate::crypto::{parse_key32, Keys};
use crate::error::PolicyError;

/// The central policy file, at the project root.
pub const POLICY_FILE: &str = "governance.yaml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: Spanned<u32>,
    #[serde(default = "default_classifications")]
    classifications: Vec<String>,
    #[serde(default)]
    keys: KeysFile,
    #[serde(default)]
    rules: Vec<Spanned<RuleFile>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    encrypt: Option<String>,
}

fn default_classifications() -> Vec<String> {
    ["public", "internal", "confidential", "restricted"]
        .map(String::from)
        .to_vec()
}

/// One rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: String,
    kind: RuleKind,
    severity: Severity,
    message: String,
    /// `required_metadata`: which field.
    #[serde(default)]
    field: Option<MetaField>,
    /// A regex: the owner's format, a naming convention, a detection's column names.
    #[serde(default)]
    pattern: Option<String>,
    /// `naming`: what the pattern names.
    #[serde(default)]
    applies_to: Option<NameTarget>,
    /// `detect`: column types (SQL-style prefixes: `text`, `varchar`) the columns must have.
    #[serde(default)]
    types: Option<Vec<String>>,
    /// `detect`: the tag a matching column gets; `force`: the tag acted on.
    #[serde(default)]
    tag: Option<String>,
    /// `force`: what the tag forces.
    #[serde(default)]
    action: Option<Action>,
    /// `force`: in the owning domain's store (`everywhere`) or only `when_shared`.
    #[serde(default, rename = "where")]
    scope: Option<Scope>,
    /// `force` with `mask`: trailing characters left visible.
    #[serde(default)]
    keep_last: Option<usize>,
    /// What to do about a violation; a default per kind when absent.
    #[serde(default)]
    fix: Option<String>,
}

/// What a rule checks or does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A product field must be set (and the owner match `pattern`).
    RequiredMetadata,
    /// Names of domains, products, streams or columns must match `pattern`.
    Naming,
    /// Columns whose name matches `pattern` (and type `types`) carry `tag`, and must say so.
    Detect,
    /// Columns carrying `tag` get `action`.
    Force,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Reported; the product still runs.
    Warn,
    /// The product is refused (by `policy check` and at sync time).
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Warn => "warn",
            Severity::Error => "error",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaField {
    Owner,
    Description,
    Classification,
    Tags,
    Freshness,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameTarget {
    Domain,
    Product,
    Stream,
    Column,
}

/// What a tag forces on a column, weakest first (the strongest applicable one runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Explicitly nothing.
    Allow,
    Mask,
    Hash,
    Encrypt,
    Drop,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Mask => "mask",
            Action::Hash => "hash",
            Action::Encrypt => "encrypt",
            Action::Drop => "drop",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// In the owning domain's own store, and so in every copy.
    #[default]
    Everywhere,
    /// Only on the way to another domain.
    WhenShared,
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub kind: RuleKind,
    pub severity: Severity,
    pub message: String,
    pub field: Option<MetaField>,
    pub pattern: Option<Regex>,
    pub applies_to: Option<NameTarget>,
    pub types: Vec<String>,
    pub tag: Option<String>,
    pub action: Option<Action>,
    pub scope: Scope,
    pub keep_last: usize,
    pub fix: Option<String>,
    /// The file defining it (relative) and its line.
    pub file: PathBuf,
    pub line: Option<u64>,
    /// `None` for a central rule, else the domain that added it.
    pub domain: Option<String>,
}

/// The loaded policy: central rules and every domain's, and the project's keys.
#[derive(Debug, Clone)]
pub struct Policy {
    pub classifications: Vec<String>,
    pub central: Vec<Rule>,
    /// (domain, its rules).
    pub domain_rules: Vec<(String, Vec<Rule>)>,
    pub keys: Keys,
    /// SHA-256 (hex) of the canonical policy: governance.yaml's and the domain rules' text.
    pub digest: String,
    /// Whether `governance.yaml` exists (else only domain rules apply).
    pub present: bool,
}

impl Policy {
    /// Reads `governance.yaml` (if any) and the domains' rules, keys from the environment.
    pub fn load(project: &Project) -> Result<Policy, PolicyError> {
        Self::load_with_env(project, &|name| std::env::var(name).ok())
    }

    pub fn load_with_env(
        project: &Project,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Policy, PolicyError> {
        let path = project.root.join(POLICY_FILE);
        let rel = PathBuf::from(POLICY_FILE);
        let mut digest = Sha256::new();
        let (file, present) = if path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Io {
                path: POLICY_FILE.into(),
                source,
            })?;
            digest.update(canonical(&text));
            let file: PolicyFile = weft_mesh::parse_yaml(&text, &rel)?;
            if file.version.value != 1 {
                return Err(PolicyError::invalid(
                    pos(&rel, Some(file.version.referenced.line()), "version"),
                    format!(
                        "version {} is not supported; this weft reads version 1",
                        file.version.value
                    ),
                ));
            }
            (file, true)
        } else {
            (
                PolicyFile {
                    version: Spanned::new(
                        1,
                        serde_saphyr::Location::UNKNOWN,
                        serde_saphyr::Location::UNKNOWN,
                    ),
                    classifications: default_classifications(),
                    keys: KeysFile::default(),
                    rules: Vec::new(),
                },
                false,
            )
        };
        if file.classifications.is_empty() {
            return Err(PolicyError::invalid(
                pos(&rel, None, "classifications"),
                "lists no level; list them least to most sensitive, e.g. [public, internal, confidential, restricted]",
            ));
        }
        let keys = load_keys(&project.root, &rel, &file.keys, env)?;
        let mut central = Vec::new();
        for (i, rule) in file.rules.into_iter().enumerate() {
            let line = Some(rule.referenced.line()).filter(|l| *l > 0);
            let rule = check_rule(rule.value, &rel, line, i, None, &file.classifications)?;
            if central.iter().any(|r: &Rule| r.id == rule.id) {
                return Err(PolicyError::invalid(
                    pos(&rel, line, format!("rules[{i}].id")),
                    format!("rule id `{}` is used twice; ids must be unique", rule.id),
                ));
            }
            central.push(rule);
        }
        let mut domain_rules = Vec::new();
        for domain in project.domains() {
            let rel = project.relative(&domain.file).to_path_buf();
            let mut rules = Vec::new();
            for (i, raw) in domain.rules.iter().enumerate() {
                digest.update(format!("{}:{}\n", domain.name, raw.value).as_bytes());
                let parsed: RuleFile = serde_json::from_value(raw.value.clone()).map_err(|e| {
                    PolicyError::invalid(pos(&rel, raw.line, format!("rules[{i}]")), e.to_string())
                })?;
                let rule = check_rule(
                    parsed,
                    &rel,
                    raw.line,
                    i,
                    Some(domain.name.as_str()),
                    &file.classifications,
                )?;
                check_not_weaker(&rule, &central)?;
                rules.push(rule);
            }
            domain_rules.push((domain.name.to_string(), rules));
        }
        Ok(Policy {
            classifications: file.classifications,
            central,
            domain_rules,
            keys,
            digest: hex::encode(digest.finalize()),
            present,
        })
    }

    /// The rules that apply to products of `domain`: the central ones, then the domain's.
    pub fn rules_for<'a>(&'a self, domain: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        let own = self
            .domain_rules
            .iter()
            .filter(move |(d, _)| d == domain)
            .flat_map(|(_, rules)| rules.iter());
        self.central.iter().chain(own)
    }
}

/// The text hashed for the digest: line endings and trailing spaces normalised, so an editor
/// re-saving the file does not change it.
fn canonical(text: &str) -> Vec<u8> {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.into_bytes()
}

fn pos(file: &Path, line: Option<u64>, field: impl Into<String>) -> Position {
    Position {
        file: file.to_path_buf(),
        line,
        column: None,
        field: field.into(),
    }
}

fn load_keys(
    root: &Path,
    rel: &Path,
    keys: &KeysFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Keys, PolicyError> {
    let expand = |value: &Option<String>, field: &str| -> Result<Option<String>, PolicyError> {
        let Some(value) = value else { return Ok(None) };
        let text = weft_mesh::expand_value(root, env, value).map_err(|(reference, message)| {
            PolicyError::invalid(
                pos(rel, None, format!("keys.{field}")),
                format!("{reference}: {message}"),
            )
        })?;
        if text.trim().is_empty() {
            return Err(PolicyError::invalid(
                pos(rel, None, format!("keys.{field}")),
                "is empty; set it to a long random secret, e.g. `openssl rand -hex 32`",
            ));
        }
        Ok(Some(text))
    };
    let hash = expand(&keys.hash, "hash")?.map(String::into_bytes);
    let encrypt = expand(&keys.encrypt, "encrypt")?
        .map(|text| {
            parse_key32(&text).map_err(|e| {
                PolicyError::invalid(pos(rel, None, "keys.encrypt"), format!("the key {e}"))
            })
        })
        .transpose()?;
    Ok(Keys::new(hash, encrypt))
}

/// Checks one rule has what its kind needs (and nothing another kind needs).
fn check_rule(
    raw: RuleFile,
    file: &Path,
    line: Option<u64>,
    i: usize,
    domain: Option<&str>,
    _classifications: &[String],
) -> Result<Rule, PolicyError> {
    let at = |field: &str| pos(file, line, format!("rules[{i}].{field}"));
    let id = raw.id.trim().to_string();
    if id.is_empty() {
        return Err(PolicyError::invalid(
            at("id"),
            "is empty; give the rule a short id, e.g. `pii-hash`",
        ));
    }
    let need = |present: bool, field: &str, example: &str| {
        if present {
            Ok(())
        } else {
            Err(PolicyError::invalid(
                at(field),
                format!(
                    "rule `{id}` of kind {:?} needs `{field}` (for example `{example}`)",
                    raw.kind
                )
                .replace("RequiredMetadata", "required_metadata")
                .replace("Naming", "naming")
                .replace("Detect", "detect")
                .replace("Force", "force"),
            ))
        }
    };
    match raw.kind {
        RuleKind::RequiredMetadata => need(raw.field.is_some(), "field", "field: owner")?,
        RuleKind::Naming => {
            need(raw.applies_to.is_some(), "applies_to", "applies_to: column")?;
            need(
                raw.pattern.is_some(),
                "pattern",
                "pattern: '^[a-z][a-z0-9_]*$'",
            )?;
        }
        RuleKind::Detect => {
            need(raw.tag.is_some(), "tag", "tag: pii")?;
            need(raw.pattern.is_some(), "pattern", "pattern: '(?i)e-?mail'")?;
        }
        RuleKind::Force => {
            need(raw.tag.is_some(), "tag", "tag: pii")?;
            need(raw.action.is_some(), "action", "action: hash")?;
        }
    }
    let pattern = raw
        .pattern
        .as_deref()
        .map(|p| {
            Regex::new(p).map_err(|e| {
                PolicyError::invalid(at("pattern"), format!("is not a valid regex: {e}"))
            })
        })
        .transpose()?;
    Ok(Rule {
        id,
        kind: raw.kind,
        severity: raw.severity,
        message: raw.message,
        field: raw.field,
        pattern,
        applies_to: raw.applies_to,
        types: raw.types.unwrap_or_default(),
        tag: raw.tag,
        action: raw.action,
        scope: raw.scope.unwrap_or_default(),
        keep_last: raw.keep_last.unwrap_or(0),
        fix: raw.fix,
        file: file.to_path_buf(),
        line,
        domain: domain.map(str::to_string),
    })
}

/// A domain rule may add rules, never replace or soften a central one.
fn check_not_weaker(rule: &Rule, central: &[Rule]) -> Result<(), PolicyError> {
    let at = pos(&rule.file, rule.line, "rules");
    if let Some(c) = central.iter().find(|c| c.id == rule.id) {
        return Err(PolicyError::invalid(
            at,
            format!(
                "rule `{}` reuses the id of a central rule in {POLICY_FILE}{}; domain rules add to the central ones and cannot replace them: give it an id of its own",
                rule.id,
                c.line.map_or(String::new(), |l| format!(":{l}"))
            ),
        ));
    }
    if rule.kind == RuleKind::Force {
        let action = rule.action.expect("checked");
        for c in central
            .iter()
            .filter(|c| c.kind == RuleKind::Force && c.tag == rule.tag)
        {
            let forced = c.action.expect("checked");
            let weaker_scope = c.scope == Scope::Everywhere && rule.scope == Scope::WhenShared;
            if action < forced || (action == forced && weaker_scope) {
                return Err(PolicyError::invalid(
                    at,
                    format!(
                        "rule `{}` would weaken central rule `{}` ({POLICY_FILE}{}), which forces `{forced}` on columns tagged `{}`: a domain may only force something stronger (drop > encrypt > hash > mask > allow); remove the rule or make it stronger",
                        rule.id,
                        c.id,
                        c.line.map_or(String::new(), |l| format!(":{l}")),
                        c.tag.as_deref().unwrap_or_default()
                    ),
                ));
            }
        }
    }
    Ok(())
}
