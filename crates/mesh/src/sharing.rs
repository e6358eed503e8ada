//! Sharing between domains: the grants a producer's product file gives other domains, products
//! that read another product (`source: { product: finance/revenue }`), the checks tying them
//! together, lineage, and the order a run takes them in.
//!
//! Checks come in two kinds. Those about the shape of the mesh (a grant to an undeclared domain,
//! a grant of a stream the product lacks, a source product that does not exist, circular
//! lineage) fail [`crate::Project::load`]: nothing can run on a broken graph. Those about one
//! consumer's access ([`access`]: no grant, a stream or column outside it) stop only that
//! consumer, when it is validated or synced, so a producer revoking a grant never blocks the
//! producer's own runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use weft_core::{DomainName, ProductName, StreamName};

use crate::config::{ConnectorRef, GrantCondition, GrantFile, Mapper, SourceSpec};
use crate::error::{Position, ProjectError};
use crate::interpolate::Interpolator;
use crate::load::{load_mapper, SourceFile};
use crate::project::{Product, Project, StreamConfig};

/// The connector name a product reading another product has as `source.connector`; no
/// registry holds it: the engine reads the upstream product's store instead.
pub const PRODUCT_SOURCE: &str = "product";

/// `domain/product`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ProductRef {
    pub domain: DomainName,
    pub product: ProductName,
}

impl ProductRef {
    pub fn of(product: &Product) -> Self {
        Self {
            domain: product.domain.clone(),
            product: product.name.clone(),
        }
    }
}

impl fmt::Display for ProductRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.product)
    }
}

/// The product a product reads (`source: { product: ... }`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Upstream {
    pub product: ProductRef,
    /// Where the product file names it.
    #[serde(skip)]
    pub at: Position,
}

/// A grant of some streams of a product to another domain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grant {
    pub to: DomainName,
    pub streams: Vec<GrantedStream>,
    #[serde(skip)]
    pub at: Position,
}

impl Grant {
    pub fn stream(&self, name: &str) -> Option<&GrantedStream> {
        self.streams.iter().find(|s| s.name.as_str() == name)
    }
}

/// One granted stream: which columns, which rows, and the transformations forced on the way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrantedStream {
    pub name: StreamName,
    /// The columns the consumer may read, after `transform` (all when absent).
    pub columns: Option<Vec<String>>,
    /// `Mapper::Filter`s (or one `Mapper::AnyOf` of them): only rows matching all of them are
    /// shared.
    pub filter: Vec<Mapper>,
    /// `hash`, `mask` or `drop` mappers, applied in order before the consumer's own.
    pub transform: Vec<Mapper>,
}

impl GrantedStream {
    /// The mappers the grant puts in front of the consumer's: the row filter on the upstream's
    /// columns, the transformations, then the granted columns.
    pub fn mappers(&self) -> Vec<Mapper> {
        let mut mappers: Vec<Mapper> = self.filter.clone();
        mappers.extend(self.transform.iter().cloned());
        if let Some(columns) = &self.columns {
            mappers.push(Mapper::Select(columns.clone()));
        }
        mappers
    }

    /// Whether the consumer may read `column`, as far as the configuration tells (the
    /// upstream's schema decides the rest at planning).
    fn allows(&self, column: &str) -> bool {
        let dropped = self
            .transform
            .iter()
            .any(|m| matches!(m, Mapper::Drop(cols) if cols.iter().any(|c| c == column)));
        !dropped
            && self
                .columns
                .as_ref()
                .is_none_or(|cols| cols.iter().any(|c| c == column))
    }
}

/// `source:` of a product file: a connector, or another product.
pub(crate) fn load_source(
    file: &SourceFile,
    spec: SourceSpec,
    interp: &mut Interpolator<'_>,
) -> Result<(ConnectorRef, Option<Upstream>), ProjectError> {
    let Some(named) = spec.product else {
        let Some(connector) = spec.connector else {
            return Err(ProjectError::invalid(
                file.at_text("source", "source"),
                "names no `connector` (`weft connector list` shows them) and no `product` (`domain/product`, a product that grants this domain its streams); add one",
            ));
        };
        let connector = ConnectorRef {
            connector,
            config: spec
                .config
                .unwrap_or(serde_json::Value::Object(Default::default())),
        };
        return Ok((file.connector(connector, "source", interp)?, None));
    };
    let at = file.at_span(&named, "source.product");
    if spec.connector.is_some() || spec.config.is_some() {
        return Err(ProjectError::invalid(
            at,
            "a source is either a `product` or a `connector` with its `config`, not both; remove one",
        ));
    }
    let product =
        parse_product_ref(&named.value).map_err(|e| ProjectError::invalid(at.clone(), e))?;
    let connector = ConnectorRef {
        connector: PRODUCT_SOURCE.to_string(),
        config: serde_json::json!({ "product": product.to_string() }),
    };
    Ok((connector, Some(Upstream { product, at })))
}

fn parse_product_ref(text: &str) -> Result<ProductRef, String> {
    let usage = "name it as `domain/product` (`weft config validate` lists the products)";
    let Some((domain, product)) = text.split_once('/') else {
        return Err(format!("`{text}` is not a product; {usage}"));
    };
    let domain = DomainName::new(domain).map_err(|e| format!("`{text}`: {e}; {usage}"))?;
    let product = ProductName::new(product).map_err(|e| format!("`{text}`: {e}; {usage}"))?;
    Ok(ProductRef { domain, product })
}

/// `grants:` of a product file.
pub(crate) fn load_grants(
    file: &SourceFile,
    grants: &[serde_saphyr::Spanned<GrantFile>],
    interp: &mut Interpolator<'_>,
) -> Result<Vec<Grant>, ProjectError> {
    let mut out: Vec<Grant> = Vec::with_capacity(grants.len());
    for (i, grant) in grants.iter().enumerate() {
        let field = format!("grants[{i}]");
        let raw = &grant.value;
        let at = file.at_span(&raw.to, format!("{field}.to"));
        let to = DomainName::new(raw.to.value.as_str()).map_err(|e| {
            ProjectError::invalid(at.clone(), format!("{e}; name the consumer domain"))
        })?;
        if let Some(first) = out.iter().position(|g| g.to == to) {
            return Err(ProjectError::invalid(
                at,
                format!("domain `{to}` already has a grant at grants[{first}]; keep one grant per domain and list its streams there"),
            ));
        }
        if raw.streams.value.is_empty() {
            return Err(ProjectError::invalid(
                file.at_span(&raw.streams, format!("{field}.streams")),
                "a grant lists the streams it shares; add `- name: <stream>` entries",
            ));
        }
        let mut streams: Vec<GrantedStream> = Vec::new();
        for (j, stream) in raw.streams.value.iter().enumerate() {
            let sfield = format!("{field}.streams[{j}]");
            let s = &stream.value;
            let name = StreamName::new(s.name.value.as_str()).map_err(|e| {
                ProjectError::invalid(
                    file.at_span(&s.name, format!("{sfield}.name")),
                    e.to_string(),
                )
            })?;
            if streams.iter().any(|g| g.name == name) {
                return Err(ProjectError::invalid(
                    file.at_span(&s.name, format!("{sfield}.name")),
                    format!("stream `{name}` is granted twice to `{to}`; keep one entry"),
                ));
            }
            // `any:` becomes one mapper keeping the rows that match one of its comparisons.
            let mut any = false;
            let conditions: Vec<(String, GrantCondition)> = match &s.filter {
                None => Vec::new(),
                Some(f) => match (&f.all, &f.any, &f.column, f.op) {
                    (Some(all), None, None, None) if f.value.is_none() && !all.is_empty() => all
                        .iter()
                        .enumerate()
                        .map(|(k, c)| (format!("{sfield}.filter.all[{k}]"), c.clone()))
                        .collect(),
                    (None, Some(alternatives), None, None)
                        if f.value.is_none() && !alternatives.is_empty() =>
                    {
                        any = true;
                        alternatives
                            .iter()
                            .enumerate()
                            .map(|(k, c)| (format!("{sfield}.filter.any[{k}]"), c.clone()))
                            .collect()
                    }
                    (None, None, Some(column), Some(op)) => vec![(
                        format!("{sfield}.filter"),
                        GrantCondition {
                            column: column.clone(),
                            op,
                            value: f.value.clone(),
                        },
                    )],
                    _ => {
                        return Err(ProjectError::invalid(
                            file.at_span(stream, format!("{sfield}.filter")),
                            "a grant's filter is one comparison (`{ column: country, op: eq, value: DE }`), `all:` of several that must all hold (`{ all: [{ column: country, op: in, value: [DE, AT] }, { column: status, op: eq, value: delivered }] }`) or `any:` of several of which one must hold (`{ any: [{ column: country, op: eq, value: DE }, { column: vip, op: eq, value: true }] }`); fix it",
                        ))
                    }
                },
            };
            let mut filter = Vec::with_capacity(conditions.len());
            for (field, c) in conditions {
                let mapper = serde_saphyr::Spanned::new(
                    Mapper::Filter {
                        column: c.column,
                        op: c.op,
                        value: c.value,
                    },
                    stream.referenced,
                    stream.defined,
                );
                filter.push(load_mapper(file, &field, &mapper, interp)?);
            }
            if any {
                filter = vec![Mapper::AnyOf(filter)];
            }
            let mut transform = Vec::with_capacity(s.transform.len());
            for (k, mapper) in s.transform.iter().enumerate() {
                let mfield = format!("{sfield}.transform[{k}]");
                if !matches!(
                    mapper.value,
                    Mapper::Hash { .. } | Mapper::Mask { .. } | Mapper::Drop(_)
                ) {
                    return Err(ProjectError::invalid(
                        file.at_span(mapper, mfield),
                        "a grant's `transform` takes `hash`, `mask` or `drop`; share rows with `filter:` and columns with `columns:`",
                    ));
                }
                transform.push(load_mapper(file, &mfield, mapper, interp)?);
            }
            streams.push(GrantedStream {
                name,
                columns: s.columns.clone(),
                filter,
                transform,
            });
        }
        out.push(Grant { to, streams, at });
    }
    Ok(out)
}

/// The checks on the shape of the mesh, once every product is loaded.
pub(crate) fn check_project(
    root: &Path,
    domains: &[crate::project::Domain],
    products: &[Product],
) -> Result<(), ProjectError> {
    let declared: Vec<&DomainName> = domains.iter().map(|d| &d.name).collect();
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).to_path_buf();
    for product in products {
        for grant in &product.grants {
            if !declared.contains(&&grant.to) {
                return Err(ProjectError::invalid(
                    grant.at.clone(),
                    format!(
                        "grants `{}` to domain `{}`, which is not declared; declare it in domains/{}/domain.yaml or fix the name (domains: {})",
                        product.label(),
                        grant.to,
                        grant.to,
                        join(declared.iter())
                    ),
                ));
            }
            for stream in &grant.streams {
                if product.stream(stream.name.as_str()).is_none() {
                    return Err(ProjectError::invalid(
                        grant.at.clone(),
                        format!(
                            "grants stream `{}`, which product `{}` does not have (streams: {})",
                            stream.name,
                            product.label(),
                            join(product.streams.iter().map(|s| &s.name))
                        ),
                    ));
                }
            }
        }
        if let Some(up) = &product.upstream {
            if find(products, &up.product).is_none() {
                return Err(ProjectError::invalid(
                    up.at.clone(),
                    format!(
                        "product `{}` does not exist (products: {})",
                        up.product,
                        join(products.iter().map(Product::label))
                    ),
                ));
            }
        }
    }
    if let Some((start, cycle)) = first_cycle(products) {
        let names: Vec<String> = cycle.iter().map(ToString::to_string).collect();
        let up = start
            .upstream
            .as_ref()
            .expect("a product in a cycle reads another");
        return Err(ProjectError::invalid(
            up.at.clone(),
            format!(
                "circular product lineage: {}; a product cannot read itself through other products, so point one of them ({}) at another source",
                names.join(" → "),
                names[..names.len() - 1]
                    .iter()
                    .map(|n| rel(&file_of(products, n)).display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(())
}

fn file_of(products: &[Product], label: &str) -> PathBuf {
    products
        .iter()
        .find(|p| p.label() == label)
        .map(|p| p.file.clone())
        .unwrap_or_default()
}

fn join<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|i| i.to_string()).collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn find<'a>(products: &'a [Product], r: &ProductRef) -> Option<&'a Product> {
    products
        .iter()
        .find(|p| p.domain == r.domain && p.name == r.product)
}

/// The first cycle of "reads" links, from the first product (in order) that starts one: the
/// product and the path back to it (`a/x, b/y, a/x`).
fn first_cycle(products: &[Product]) -> Option<(&Product, Vec<ProductRef>)> {
    for start in products {
        let mut path = vec![ProductRef::of(start)];
        let mut at = start;
        while let Some(up) = &at.upstream {
            let Some(next) = find(products, &up.product) else {
                break;
            };
            let r = ProductRef::of(next);
            if let Some(i) = path.iter().position(|p| *p == r) {
                if i == 0 {
                    path.push(r);
                    return Some((start, path));
                }
                break; // a cycle further on; found when its own first product is the start
            }
            path.push(r);
            at = next;
        }
    }
    None
}

/// Why a consumer may not read (what it names of) its upstream product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessDenied {
    /// The consumer's product file, relative to the project folder.
    pub file: PathBuf,
    pub field: String,
    pub message: String,
}

impl fmt::Display for AccessDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.field,
            self.message
        )
    }
}

/// What a consumer reads: its upstream product and the grant it reads through (`None` within
/// one domain, where no grant is needed).
pub struct Access<'a> {
    pub upstream: &'a Product,
    pub grant: Option<&'a Grant>,
}

/// Whether `consumer` may read what it names of its upstream; `Ok(None)` for a product with a
/// connector source.
pub fn access<'a>(
    project: &'a Project,
    consumer: &Product,
) -> Result<Option<Access<'a>>, AccessDenied> {
    let Some(up) = &consumer.upstream else {
        return Ok(None);
    };
    let file = project.relative(&consumer.file).to_path_buf();
    let denied = |field: String, message: String| AccessDenied {
        file: file.clone(),
        field,
        message,
    };
    let upstream = project
        .product(up.product.domain.as_str(), up.product.product.as_str())
        .ok_or_else(|| {
            denied(
                "source.product".into(),
                format!("product `{}` does not exist", up.product),
            )
        })?;
    let producer_file = project.relative(&upstream.file).display().to_string();
    let grant = if upstream.domain == consumer.domain {
        None
    } else {
        Some(
            upstream
                .grants
                .iter()
                .find(|g| g.to == consumer.domain)
                .ok_or_else(|| {
                    denied(
                        "source.product".into(),
                        format!(
                            "product `{}` grants nothing to domain `{}` ({producer_file} has no grant `to: {}`); ask its owner ({}) for a grant",
                            up.product, consumer.domain, consumer.domain, upstream.owner
                        ),
                    )
                })?,
        )
    };
    for (i, stream) in consumer.streams.iter().enumerate() {
        if upstream.stream(stream.name.as_str()).is_none() {
            return Err(denied(
                format!("streams[{i}].name"),
                format!(
                    "product `{}` has no stream `{}` (streams: {})",
                    up.product,
                    stream.name,
                    join(upstream.streams.iter().map(|s| &s.name))
                ),
            ));
        }
        let Some(grant) = grant else { continue };
        let Some(granted) = grant.stream(stream.name.as_str()) else {
            return Err(denied(
                format!("streams[{i}].name"),
                format!(
                    "stream `{}` of `{}` is not granted to domain `{}` (granted: {}); ask its owner ({}) to add it to the grant in {producer_file}",
                    stream.name,
                    up.product,
                    consumer.domain,
                    join(grant.streams.iter().map(|s| &s.name)),
                    upstream.owner
                ),
            ));
        };
        for column in stream.columns.iter().flatten() {
            if !granted.allows(column) {
                return Err(denied(
                    format!("streams[{i}].columns"),
                    format!(
                        "column `{column}` of `{}/{}` is outside the grant to domain `{}`{}; remove it, or ask its owner ({}) to grant it in {producer_file}",
                        up.product,
                        stream.name,
                        consumer.domain,
                        match &granted.columns {
                            Some(cols) => format!(" (granted columns: {})", cols.join(", ")),
                            None => " (the grant drops it)".to_string(),
                        },
                        upstream.owner
                    ),
                ));
            }
        }
    }
    Ok(Some(Access { upstream, grant }))
}

/// A consumer's stream as it runs: the grant's filter, transformations and columns in front of
/// the consumer's own `columns` and mappers, and the upstream stream's cursor and key where the
/// consumer names none (followed through the upstream's renames).
pub fn granted_stream(
    upstream: &StreamConfig,
    granted: Option<&GrantedStream>,
    consumer: &StreamConfig,
) -> StreamConfig {
    let renamed = |column: &String| {
        upstream
            .mappers
            .iter()
            .fold(column.clone(), |name, m| match m {
                Mapper::Rename { from, to } if *from == name => to.clone(),
                _ => name,
            })
    };
    let mut mappers = granted.map(GrantedStream::mappers).unwrap_or_default();
    if let Some(columns) = &consumer.columns {
        mappers.push(Mapper::Select(columns.clone()));
    }
    mappers.extend(consumer.mappers.iter().cloned());
    StreamConfig {
        name: consumer.name.clone(),
        mode: consumer.mode,
        write: consumer.write,
        cursor: consumer
            .cursor
            .clone()
            .or_else(|| upstream.cursor.as_ref().map(renamed)),
        primary_key: consumer.primary_key.clone().or_else(|| {
            upstream
                .primary_key
                .as_ref()
                .map(|k| k.iter().map(renamed).collect())
        }),
        columns: None,
        mappers,
        description: consumer.description.clone(),
        fields: consumer.fields.clone(),
    }
}

/// One link of a product's lineage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineageLink {
    pub product: ProductRef,
    /// The streams read along the link.
    pub streams: Vec<StreamName>,
    /// How many links away (1: read directly).
    pub depth: usize,
}

/// Where a product's data comes from and where it goes, from the configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lineage {
    /// The connector at the start of the chain (`sample`, `postgres`, …).
    pub origin: String,
    /// The products read, nearest first.
    pub upstream: Vec<LineageLink>,
    /// The products reading this one, directly or through others, nearest first.
    pub downstream: Vec<LineageLink>,
}

/// The lineage of `product`: source → products → derived products. The checkpoint each run
/// read of an upstream stream is recorded with the consumer stream's checkpoint (`weft sync
/// status` shows it).
pub fn lineage(project: &Project, product: &Product) -> Lineage {
    let mut upstream = Vec::new();
    let mut at = product;
    while let Some(up) = &at.upstream {
        let Some(next) = project.product(up.product.domain.as_str(), up.product.product.as_str())
        else {
            break;
        };
        if upstream
            .iter()
            .any(|l: &LineageLink| l.product == up.product)
        {
            break;
        }
        upstream.push(LineageLink {
            product: up.product.clone(),
            streams: at.streams.iter().map(|s| s.name.clone()).collect(),
            depth: upstream.len() + 1,
        });
        at = next;
    }
    let origin = at.source.connector.clone();
    let mut downstream: Vec<LineageLink> = Vec::new();
    let mut frontier = vec![ProductRef::of(product)];
    let mut depth = 0;
    while !frontier.is_empty() {
        depth += 1;
        let mut next = Vec::new();
        for reader in &project.products {
            let Some(up) = &reader.upstream else { continue };
            let r = ProductRef::of(reader);
            if frontier.contains(&up.product)
                && !downstream.iter().any(|l| l.product == r)
                && r != ProductRef::of(product)
            {
                downstream.push(LineageLink {
                    product: r.clone(),
                    streams: reader.streams.iter().map(|s| s.name.clone()).collect(),
                    depth,
                });
                next.push(r);
            }
        }
        frontier = next;
    }
    Lineage {
        origin,
        upstream,
        downstream,
    }
}

/// The products of a run in waves: each wave only reads products of earlier waves (or products
/// outside the run), so a wave runs once the one before it has ended. Indexes into `products`.
pub fn run_order(products: &[&Product]) -> Vec<Vec<usize>> {
    let index: BTreeMap<ProductRef, usize> = products
        .iter()
        .enumerate()
        .map(|(i, p)| (ProductRef::of(p), i))
        .collect();
    let mut level: Vec<Option<usize>> = vec![None; products.len()];
    fn level_of(
        i: usize,
        products: &[&Product],
        index: &BTreeMap<ProductRef, usize>,
        level: &mut Vec<Option<usize>>,
        guard: usize,
    ) -> usize {
        if let Some(l) = level[i] {
            return l;
        }
        // The graph is acyclic (checked at load); the guard only bounds a broken one.
        let l = match products[i]
            .upstream
            .as_ref()
            .and_then(|u| index.get(&u.product))
        {
            Some(&up) if guard < products.len() => {
                level_of(up, products, index, level, guard + 1) + 1
            }
            _ => 0,
        };
        level[i] = Some(l);
        l
    }
    for i in 0..products.len() {
        level_of(i, products, &index, &mut level, 0);
    }
    let depth = level.iter().flatten().max().map_or(0, |m| m + 1);
    let mut waves = vec![Vec::new(); depth];
    for (i, l) in level.iter().enumerate() {
        waves[l.unwrap_or(0)].push(i);
    }
    waves
}
