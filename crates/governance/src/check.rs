//! Evaluating products against the rules: file-level metadata and names, detection of
//! sensitive columns (declared ones and, when known, those the source offers), the
//! transformations tags force, and product files that would get around them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use arrow::datatypes::Schema;
use serde::Serialize;
use weft_mesh::{Mapper, Product, Project, StreamConfig};

use crate::policy::{Action, MetaField, NameTarget, Policy, Rule, RuleKind, Scope, Severity};

/// One broken rule, worded for the product file's author.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// The file to change (relative to the project).
    pub file: PathBuf,
    pub line: Option<u64>,
    pub rule: String,
    pub severity: Severity,
    /// `domain/product`, with `/stream` and `.column` where it applies.
    pub subject: String,
    /// The rule's message and what was found.
    pub message: String,
    pub fix: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(
            f,
            ": {} [{}] {}: {}; fix: {}",
            self.severity, self.rule, self.subject, self.message, self.fix
        )
    }
}

/// A transformation forced on one column of a stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forced {
    /// The column (its source name; forced columns cannot be renamed).
    pub column: String,
    pub action: Action,
    /// The rule that forces it (the strongest applicable).
    pub rule: String,
    pub keep_last: usize,
}

/// A transformation the policy forces on a column, and where it applies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForcedAt {
    #[serde(flatten)]
    pub forced: Forced,
    /// `everywhere`: in the owning domain's own store, and so in every copy; `when_shared`:
    /// only in the copies other domains read through grants.
    pub scope: Scope,
}

impl Forced {
    /// The mapper that carries it out.
    pub fn mapper(&self) -> Option<Mapper> {
        let column = self.column.clone();
        match self.action {
            Action::Allow => None,
            Action::Mask => Some(Mapper::Mask {
                column,
                keep_last: self.keep_last,
                mask_char: '*',
            }),
            Action::Hash => Some(Mapper::KeyedHash { column }),
            Action::Encrypt => Some(Mapper::Encrypt { column }),
            Action::Drop => Some(Mapper::Drop(vec![column])),
        }
    }
}

/// A column known for a stream: its name and, when discovered, its SQL-style type.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    sql_type: Option<String>,
}

/// Where things are in a product file, for violations' lines.
struct Lines {
    text: String,
}

impl Lines {
    fn read(product: &Product) -> Self {
        Self {
            text: std::fs::read_to_string(&product.file).unwrap_or_default(),
        }
    }

    /// The first line holding `needle` at or after line `from` (1-based).
    fn find(&self, needle: &str, from: u64) -> Option<u64> {
        self.text
            .lines()
            .enumerate()
            .skip(from.saturating_sub(1) as usize)
            .find(|(_, l)| l.contains(needle))
            .map(|(i, _)| i as u64 + 1)
    }

    /// The stream's `- name:` line under the top-level `streams:` (not a source config's).
    fn stream(&self, name: &str) -> Option<u64> {
        let streams = self
            .text
            .lines()
            .position(|l| l.starts_with("streams:"))
            .map_or(1, |i| i as u64 + 1);
        self.find(&format!("name: {name}"), streams)
    }

    fn column(&self, stream: &str, column: &str) -> Option<u64> {
        let from = self.stream(stream).unwrap_or(1);
        self.find(column, from).or(Some(from))
    }
}

struct Ctx<'a> {
    file: PathBuf,
    label: String,
    lines: Lines,
    out: &'a mut Vec<Violation>,
}

impl<'a> Ctx<'a> {
    fn new(project: &Project, product: &Product, out: &'a mut Vec<Violation>) -> Self {
        Self {
            file: project.relative(&product.file).to_path_buf(),
            label: product.label(),
            lines: Lines::read(product),
            out,
        }
    }

    fn report(
        &mut self,
        rule: &Rule,
        line: Option<u64>,
        subject: String,
        found: String,
        fix: String,
    ) {
        self.out.push(Violation {
            file: self.file.clone(),
            line,
            rule: rule.id.clone(),
            severity: rule.severity,
            subject,
            message: format!("{} ({found})", rule.message.trim_end_matches('.')),
            fix: rule.fix.clone().unwrap_or(fix),
        });
    }
}

impl Policy {
    /// Every violation of `product`; `schemas` gives the discovered source schema of streams
    /// where it is known (else only the columns named in the file are checked).
    pub fn check_product(
        &self,
        project: &Project,
        product: &Product,
        schemas: &dyn Fn(&str) -> Option<Schema>,
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut ctx = Ctx::new(project, product, &mut out);
        let rules: Vec<&Rule> = self.rules_for(product.domain.as_str()).collect();
        if let Some(level) = &product.classification {
            if !self.classifications.contains(level) {
                ctx.out.push(Violation {
                    file: ctx.file.clone(),
                    line: ctx.lines.find("classification:", 1),
                    rule: "classifications".into(),
                    severity: Severity::Error,
                    subject: ctx.label.clone(),
                    message: format!("classification `{level}` is not one of the project's levels"),
                    fix: format!("use one of: {}", self.classifications.join(", ")),
                });
            }
        }
        for rule in &rules {
            match rule.kind {
                RuleKind::RequiredMetadata => self.check_metadata(rule, product, &mut ctx),
                RuleKind::Naming => check_naming(rule, product, &mut ctx),
                RuleKind::Detect | RuleKind::Force => {}
            }
        }
        for stream in &product.streams {
            let columns = columns_of(stream, schemas(stream.name.as_str()).as_ref());
            check_detection(&rules, stream, &columns, &mut ctx);
            let (_, violations) = self.forced_for(product, stream, &columns, &mut ctx, false);
            ctx.out.extend(violations);
            // Each grant's `transform` against what the policy forces on the way out.
            for grant in &product.grants {
                let Some(granted) = grant.stream(stream.name.as_str()) else {
                    continue;
                };
                let shared = StreamConfig {
                    mappers: granted.transform.clone(),
                    ..stream.clone()
                };
                let (_, violations) = self.forced_for(product, &shared, &columns, &mut ctx, true);
                ctx.out.extend(violations);
            }
            for rule in rules
                .iter()
                .filter(|r| r.kind == RuleKind::Naming && r.applies_to == Some(NameTarget::Column))
            {
                for column in &columns {
                    // What lands is checked: the name after the product's renames.
                    let landed =
                        stream
                            .mappers
                            .iter()
                            .fold(column.name.clone(), |name, m| match m {
                                Mapper::Rename { from, to } if *from == name => to.clone(),
                                _ => name,
                            });
                    if !rule.pattern.as_ref().is_some_and(|p| p.is_match(&landed)) {
                        let line = ctx.lines.column(stream.name.as_str(), &column.name);
                        ctx.report(
                            rule,
                            line,
                            format!("{}/{}.{}", ctx.label, stream.name, column.name),
                            format!(
                                "column `{}` does not match `{}`",
                                column.name,
                                pattern_text(rule)
                            ),
                            format!(
                                "rename the column with a `rename` mapper to a name matching `{}`",
                                pattern_text(rule)
                            ),
                        );
                    }
                }
            }
        }
        out
    }

    fn check_metadata(&self, rule: &Rule, product: &Product, ctx: &mut Ctx<'_>) {
        let field = rule.field.expect("checked");
        let (key, missing, example) = match field {
            MetaField::Owner => {
                let bad_format = rule
                    .pattern
                    .as_ref()
                    .is_some_and(|p| !p.is_match(&product.owner));
                if !product.owner.trim().is_empty() && bad_format {
                    let line = ctx.lines.find("owner:", 1);
                    ctx.report(
                        rule,
                        line,
                        ctx.label.clone(),
                        format!(
                            "owner `{}` does not match `{}`",
                            product.owner,
                            pattern_text(rule)
                        ),
                        format!(
                            "set `owner:` to an address matching `{}`",
                            pattern_text(rule)
                        ),
                    );
                    return;
                }
                (
                    "owner",
                    product.owner.trim().is_empty(),
                    "owner: team@example.com".to_string(),
                )
            }
            MetaField::Description => (
                "description",
                product.description.trim().is_empty(),
                "description: What the product holds.".to_string(),
            ),
            MetaField::Classification => (
                "classification",
                product.classification.is_none(),
                format!("classification: {}", self.classifications.join("|")),
            ),
            MetaField::Tags => (
                "tags",
                product.tags.is_empty(),
                "tags: [revenue]".to_string(),
            ),
            MetaField::Freshness => (
                "freshness",
                product.freshness.is_none(),
                "freshness: 24h".to_string(),
            ),
        };
        if missing {
            let line = ctx.lines.find(&format!("{key}:"), 1).or(Some(1));
            ctx.report(
                rule,
                line,
                ctx.label.clone(),
                format!("`{key}` is missing"),
                format!("add `{example}` to the product file"),
            );
        }
    }

    /// The transformations forced on `stream` (in its owning domain's store) given its source
    /// schema, or the violations that keep the product from running.
    pub fn forced(
        &self,
        project: &Project,
        product: &Product,
        stream: &StreamConfig,
        schema: &Schema,
    ) -> (Vec<Forced>, Vec<Violation>) {
        let mut out = Vec::new();
        let mut ctx = Ctx::new(project, product, &mut out);
        let columns = columns_of(stream, Some(schema));
        let rules: Vec<&Rule> = self.rules_for(product.domain.as_str()).collect();
        check_detection(&rules, stream, &columns, &mut ctx);
        let (forced, violations) = self.forced_for(product, stream, &columns, &mut ctx, false);
        out.extend(violations);
        (forced, out)
    }

    /// What the policy forces on the columns of `stream` (`weft product show`), given as
    /// (source name, SQL type) pairs, as a contract lists them: per column the strongest
    /// transformation forced `everywhere` and, where one is stronger, the strongest forced
    /// `when_shared` (on the way to other domains), in column order.
    pub fn forced_on_columns(
        &self,
        project: &Project,
        product: &Product,
        stream: &StreamConfig,
        columns: &[(String, String)],
    ) -> Vec<ForcedAt> {
        let mut sink = Vec::new();
        let mut ctx = Ctx::new(project, product, &mut sink);
        let columns: Vec<Column> = columns
            .iter()
            .map(|(name, sql_type)| Column {
                name: name.clone(),
                sql_type: Some(sql_type.clone()),
            })
            .collect();
        let (everywhere, _) = self.forced_for(product, stream, &columns, &mut ctx, false);
        let (shared, _) = self.forced_for(product, stream, &columns, &mut ctx, true);
        let mut out = Vec::new();
        for column in &columns {
            let own = everywhere.iter().find(|f| f.column == column.name);
            if let Some(forced) = own {
                out.push(ForcedAt {
                    forced: forced.clone(),
                    scope: Scope::Everywhere,
                });
            }
            let stronger = shared
                .iter()
                .find(|f| f.column == column.name)
                .filter(|f| own.is_none_or(|o| f.action > o.action));
            if let Some(forced) = stronger {
                out.push(ForcedAt {
                    forced: forced.clone(),
                    scope: Scope::WhenShared,
                });
            }
        }
        out
    }

    /// What a consumer domain's copy of `stream` must get on `columns` (the columns the grant
    /// passes, with their source types): everything forced `everywhere` plus the `when_shared`
    /// rules, for the sharing of products between domains. `transform` is the grant's own
    /// `transform:`: one reshaping a forced column (a salted hash, a mask) is a violation, as
    /// a product's own mapper would be, since the policy's transformation is applied after it
    /// (a `drop` is fine: it is stronger).
    pub fn forced_when_shared(
        &self,
        project: &Project,
        product: &Product,
        stream: &StreamConfig,
        transform: &[Mapper],
        columns: &Schema,
    ) -> (Vec<Forced>, Vec<Violation>) {
        let mut sink = Vec::new();
        let mut ctx = Ctx::new(project, product, &mut sink);
        let columns = columns_of(stream, Some(columns));
        let granted = StreamConfig {
            mappers: transform.to_vec(),
            ..stream.clone()
        };
        self.forced_for(product, &granted, &columns, &mut ctx, true)
    }

    fn forced_for(
        &self,
        product: &Product,
        stream: &StreamConfig,
        columns: &[Column],
        ctx: &mut Ctx<'_>,
        shared: bool,
    ) -> (Vec<Forced>, Vec<Violation>) {
        let rules: Vec<&Rule> = self.rules_for(product.domain.as_str()).collect();
        let mut forced = Vec::new();
        let mut violations = Vec::new();
        for column in columns {
            let tags = tags_of(&rules, stream, column);
            let strongest = rules
                .iter()
                .filter(|r| r.kind == RuleKind::Force)
                .filter(|r| r.tag.as_ref().is_some_and(|t| tags.contains(t)))
                .filter(|r| shared || r.scope == Scope::Everywhere)
                .max_by_key(|r| r.action);
            let Some(rule) = strongest else { continue };
            let action = rule.action.expect("checked");
            if action == Action::Allow {
                continue;
            }
            let subject = format!("{}/{}.{}", ctx.label, stream.name, column.name);
            let line = ctx.lines.column(stream.name.as_str(), &column.name);
            // The product's own mappers may leave the column out, never reshape it first.
            for (j, mapper) in stream.mappers.iter().enumerate() {
                let touched = match mapper {
                    Mapper::Rename { from, .. } => from == &column.name,
                    Mapper::Hash { column: c, .. }
                    | Mapper::Mask { column: c, .. }
                    | Mapper::Encrypt { column: c }
                    | Mapper::KeyedHash { column: c } => c == &column.name,
                    Mapper::Select(_)
                    | Mapper::Drop(_)
                    | Mapper::Filter { .. }
                    | Mapper::AnyOf(_) => false,
                };
                if touched {
                    violations.push(Violation {
                        file: ctx.file.clone(),
                        line: ctx.lines.find(&column.name, line.unwrap_or(1)),
                        rule: rule.id.clone(),
                        severity: Severity::Error,
                        subject: subject.clone(),
                        // The rule's own words first, as every other policy error.
                        message: format!(
                            "{} ({} #{} reshapes `{}`, which rule `{}` forces to `{action}`{}; a product file cannot replace, rename or weaken a forced transformation)",
                            rule.message.trim_end_matches('.'),
                            if shared { "a grant's transform" } else { "streams mapper" },
                            j + 1,
                            column.name,
                            rule.id,
                            if shared && rule.scope == Scope::WhenShared {
                                " when shared"
                            } else {
                                ""
                            }
                        ),
                        fix: format!(
                            "remove that mapper: weft applies `{action}` to `{}` after the product's own mappers (a `drop` of the column is allowed)",
                            column.name
                        ),
                    });
                }
            }
            let key_missing = match action {
                Action::Hash => !self.keys.has_hash(),
                Action::Encrypt => !self.keys.has_encrypt(),
                _ => false,
            };
            if key_missing {
                let key = if action == Action::Hash {
                    "hash"
                } else {
                    "encrypt"
                };
                violations.push(Violation {
                    file: PathBuf::from(crate::POLICY_FILE),
                    line: None,
                    rule: rule.id.clone(),
                    severity: Severity::Error,
                    subject: subject.clone(),
                    message: format!(
                        "{} (rule `{}` forces `{action}` on `{}` but {} sets no `keys.{key}`)",
                        rule.message.trim_end_matches('.'),
                        rule.id,
                        column.name,
                        crate::POLICY_FILE
                    ),
                    fix: format!(
                        "add `keys: {{ {key}: \"${{WEFT_{}_KEY}}\" }}` to {} and set the variable to a secret (`openssl rand -hex 32`)",
                        key.to_ascii_uppercase(),
                        crate::POLICY_FILE
                    ),
                });
            }
            forced.push(Forced {
                column: column.name.clone(),
                action,
                rule: rule.id.clone(),
                keep_last: rule.keep_last,
            });
        }
        (forced, violations)
    }
}

fn pattern_text(rule: &Rule) -> &str {
    rule.pattern.as_ref().map_or("", |p| p.as_str())
}

fn check_naming(rule: &Rule, product: &Product, ctx: &mut Ctx<'_>) {
    let matches = |name: &str| rule.pattern.as_ref().is_some_and(|p| p.is_match(name));
    match rule.applies_to.expect("checked") {
        NameTarget::Domain if !matches(product.domain.as_str()) => {
            let line = ctx.lines.find("domain:", 1);
            ctx.report(
                rule,
                line,
                ctx.label.clone(),
                format!(
                    "domain `{}` does not match `{}`",
                    product.domain,
                    pattern_text(rule)
                ),
                "rename the domain folder (and its domain.yaml and products) to a matching name"
                    .into(),
            );
        }
        NameTarget::Product if !matches(product.name.as_str()) => {
            let line = ctx.lines.find("product:", 1);
            ctx.report(
                rule,
                line,
                ctx.label.clone(),
                format!(
                    "product `{}` does not match `{}`",
                    product.name,
                    pattern_text(rule)
                ),
                "rename the product file and its `product:` to a matching name".into(),
            );
        }
        NameTarget::Stream => {
            for stream in product.streams.iter().filter(|s| !matches(s.name.as_str())) {
                let line = ctx.lines.stream(stream.name.as_str());
                ctx.report(
                    rule,
                    line,
                    format!("{}/{}", ctx.label, stream.name),
                    format!("stream `{}` does not match `{}`", stream.name, pattern_text(rule)),
                    "streams keep their source's names: exempt it in the rule's pattern or read a view with a matching name".into(),
                );
            }
        }
        _ => {}
    }
}

/// An untagged column that a detection rule recognises.
fn check_detection(rules: &[&Rule], stream: &StreamConfig, columns: &[Column], ctx: &mut Ctx<'_>) {
    for rule in rules.iter().filter(|r| r.kind == RuleKind::Detect) {
        let tag = rule.tag.as_deref().expect("checked");
        for column in columns.iter().filter(|c| detects(rule, c)) {
            let declared = stream
                .fields
                .get(&column.name)
                .is_some_and(|f| f.tags.iter().any(|t| t == tag));
            if !declared {
                let line = ctx.lines.column(stream.name.as_str(), &column.name);
                ctx.report(
                    rule,
                    line,
                    format!("{}/{}.{}", ctx.label, stream.name, column.name),
                    format!(
                        "column `{}` looks like `{tag}` but is not tagged",
                        column.name
                    ),
                    format!(
                        "tag it under its stream: `fields: {{ {}: {{ tags: [{tag}] }} }}`",
                        column.name
                    ),
                );
            }
        }
    }
}

fn detects(rule: &Rule, column: &Column) -> bool {
    let name = rule
        .pattern
        .as_ref()
        .is_some_and(|p| p.is_match(&column.name));
    let typed = rule.types.is_empty()
        || column
            .sql_type
            .as_ref()
            .is_none_or(|t| rule.types.iter().any(|want| t.starts_with(want.as_str())));
    name && typed
}

/// A column's tags: declared in `fields:` plus those detection rules give it.
fn tags_of(rules: &[&Rule], stream: &StreamConfig, column: &Column) -> BTreeSet<String> {
    let mut tags: BTreeSet<String> = stream
        .fields
        .get(&column.name)
        .map(|f| f.tags.iter().cloned().collect())
        .unwrap_or_default();
    for rule in rules.iter().filter(|r| r.kind == RuleKind::Detect) {
        if detects(rule, column) {
            tags.insert(rule.tag.clone().expect("checked"));
        }
    }
    tags
}

/// The columns of a stream: the discovered ones when known, else every column the file names.
fn columns_of(stream: &StreamConfig, schema: Option<&Schema>) -> Vec<Column> {
    if let Some(schema) = schema {
        return schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                sql_type: Some(weft_core::sql_type(f.data_type())),
            })
            .collect();
    }
    let mut names: Vec<String> = Vec::new();
    let mut add = |n: &str| {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    };
    for n in stream.fields.keys() {
        add(n);
    }
    for n in stream.columns.iter().flatten() {
        add(n);
    }
    for n in stream.primary_key.iter().flatten() {
        add(n);
    }
    if let Some(c) = &stream.cursor {
        add(c);
    }
    for m in &stream.mappers {
        match m {
            Mapper::Hash { column, .. }
            | Mapper::Mask { column, .. }
            | Mapper::Encrypt { column }
            | Mapper::KeyedHash { column }
            | Mapper::Filter { column, .. } => add(column),
            Mapper::Rename { from, .. } => add(from),
            Mapper::Select(cols) | Mapper::Drop(cols) => cols.iter().for_each(|c| add(c)),
            Mapper::AnyOf(alternatives) => {
                for m in alternatives {
                    if let Mapper::Filter { column, .. } = m {
                        add(column);
                    }
                }
            }
        }
    }
    names
        .into_iter()
        .map(|name| Column {
            name,
            sql_type: None,
        })
        .collect()
}
