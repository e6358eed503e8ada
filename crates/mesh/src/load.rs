//! Reading a project folder: `weft.yaml`, then every `domains/<domain>/<product>.yaml`, each
//! checked as it is read. Rules that need the source (do streams and columns exist?) are the
//! engine's business, not this module's.

use std::path::{Path, PathBuf};

use weft_core::{DomainName, ProductName, StreamName, SyncMode, WriteMode};

use crate::config::{
    ConnectorRef, DomainFile, FilterOp, Mapper, ProductFile, ProjectFile, StreamFile,
};
use crate::error::{Position, ProjectError};
use crate::interpolate::{EnvLookup, InterpError, Interpolator};
use crate::project::{
    DaemonSettings, Domain, Product, Project, ProjectSettings, RawRule, RunPolicy, StreamConfig,
    CONFIG_FILE, DOMAINS_DIR, DOMAIN_FILE,
};
use crate::redact::Redactor;
use crate::schedule::Schedule;
use crate::yaml::{self, at, at_span, at_text};

pub(crate) fn load(root: &Path, env: EnvLookup<'_>) -> Result<Project, ProjectError> {
    let root = std::path::absolute(root).map_err(|source| ProjectError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let config_path = root.join(CONFIG_FILE);
    if !config_path.is_file() {
        return Err(ProjectError::MissingConfig { root });
    }
    let mut interp = Interpolator::new(&root, env);
    let file = SourceFile::read(&root, PathBuf::from(CONFIG_FILE))?;
    let (settings, default_destination) = load_settings(&root, &file, &mut interp)?;

    let mut warnings = Vec::new();
    let found = project_files(&root, &mut warnings)?;
    let mut domains: Vec<Domain> = Vec::with_capacity(found.domains.len());
    for (folder, rel) in found.domains {
        let file = SourceFile::read(&root, rel)?;
        domains.push(load_domain(&file, &folder, &mut interp)?);
    }
    let mut products: Vec<Product> = Vec::new();
    for product_file in found.products {
        let file = SourceFile::read(&root, product_file.rel)?;
        let Some(domain) = domains
            .iter()
            .find(|d| d.name.as_str() == product_file.domain)
        else {
            return Err(undeclared_domain(&file, &product_file.domain));
        };
        let default_destination = match &domain.destination {
            Some(d) => Some((d, domain.file.as_path())),
            None => default_destination
                .as_ref()
                .map(|d| (d, config_path.as_path())),
        };
        let product = load_product(
            &file,
            &product_file.domain,
            &product_file.stem,
            default_destination,
            &settings,
            &mut interp,
        )?;
        if let Some(first) = products
            .iter()
            .find(|p| p.domain == product.domain && p.name == product.name)
        {
            return Err(ProjectError::invalid(
                file.at(None, "product"),
                format!(
                    "product `{}` is also defined in {}; keep one file per product",
                    product.label(),
                    first
                        .file
                        .strip_prefix(&root)
                        .unwrap_or(&first.file)
                        .display()
                ),
            ));
        }
        products.push(product);
    }
    products.sort_by(|a, b| (&a.domain, &a.name).cmp(&(&b.domain, &b.name)));
    crate::sharing::check_project(&root, &domains, &products)?;
    let secrets = Redactor::new(interp.into_secrets());

    Ok(Project {
        root,
        settings,
        domains,
        products,
        secrets,
        warnings,
    })
}

/// A project file's text and its path relative to the project folder.
pub(crate) struct SourceFile {
    abs: PathBuf,
    rel: PathBuf,
    text: String,
}

impl SourceFile {
    fn read(root: &Path, rel: PathBuf) -> Result<Self, ProjectError> {
        let abs = root.join(&rel);
        let text = std::fs::read_to_string(&abs).map_err(|source| ProjectError::Io {
            path: rel.clone(),
            source,
        })?;
        Ok(Self { abs, rel, text })
    }

    pub(crate) fn at(
        &self,
        location: Option<serde_saphyr::Location>,
        field: impl Into<String>,
    ) -> Position {
        at(&self.rel, location, field)
    }

    pub(crate) fn at_span<T>(
        &self,
        span: &serde_saphyr::Spanned<T>,
        field: impl Into<String>,
    ) -> Position {
        at_span(&self.rel, span, field)
    }

    /// The first line mentioning `needle`: for values without a recorded span.
    pub(crate) fn at_text(&self, needle: &str, field: impl Into<String>) -> Position {
        at_text(&self.rel, &self.text, needle, field)
    }

    fn interp_error(&self, field: String, err: InterpError) -> ProjectError {
        ProjectError::invalid(self.at_text(&err.reference, field), err.message)
    }

    /// Expands `${...}` in a connector config and checks it is a mapping.
    pub(crate) fn connector(
        &self,
        mut connector: ConnectorRef,
        field: &str,
        interp: &mut Interpolator<'_>,
    ) -> Result<ConnectorRef, ProjectError> {
        match &connector.config {
            serde_json::Value::Object(_) => {}
            serde_json::Value::Null => connector.config = serde_json::json!({}),
            other => {
                return Err(ProjectError::invalid(
                    self.at_text("config", format!("{field}.config")),
                    format!(
                        "must be a mapping of settings (`config: {{ key: value }}`), not {}",
                        json_kind(other)
                    ),
                ))
            }
        }
        if connector.connector.trim().is_empty() {
            return Err(ProjectError::invalid(
                self.at_text("connector", format!("{field}.connector")),
                "is empty; name a connector (`weft connector list` shows them)",
            ));
        }
        interp
            .expand_json(&mut connector.config)
            .map_err(|(path, e)| self.interp_error(format!("{field}.config{path}"), e))?;
        Ok(connector)
    }

    fn expand(
        &self,
        value: &str,
        field: impl Into<String>,
        interp: &mut Interpolator<'_>,
    ) -> Result<String, ProjectError> {
        interp
            .expand(value)
            .map_err(|e| self.interp_error(field.into(), e))
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

fn load_settings(
    root: &Path,
    file: &SourceFile,
    interp: &mut Interpolator<'_>,
) -> Result<(ProjectSettings, Option<ConnectorRef>), ProjectError> {
    let config: ProjectFile = yaml::parse(&file.text, &file.rel)?;
    if config.version.value != 1 {
        return Err(ProjectError::invalid(
            file.at_span(&config.version, "version"),
            format!(
                "version {} is not supported; this weft reads version 1",
                config.version.value
            ),
        ));
    }
    let defaults = config.defaults;
    for (span, field) in [
        (
            &defaults.max_concurrent_streams,
            "defaults.max_concurrent_streams",
        ),
        (&defaults.channel_capacity, "defaults.channel_capacity"),
    ] {
        if span.value == 0 {
            return Err(ProjectError::invalid(
                file.at_span(span, field),
                "must be at least 1",
            ));
        }
    }
    if defaults.max_bytes_in_flight.value < 1024 * 1024 {
        return Err(ProjectError::invalid(
            file.at_span(
                &defaults.max_bytes_in_flight,
                "defaults.max_bytes_in_flight",
            ),
            "must be at least 1048576 (1 MiB; the default is 134217728, 128 MiB)",
        ));
    }
    if defaults.commit_interval.is_zero() {
        return Err(ProjectError::invalid(
            file.at_text("commit_interval", "defaults.commit_interval"),
            "must be longer than 0s (for example `10s`)",
        ));
    }
    let state_path = file.expand(&config.state.path, "state.path", interp)?;
    if state_path.trim().is_empty() {
        return Err(ProjectError::invalid(
            file.at_text("path", "state.path"),
            "is empty; name the SQLite file, for example `.weft/state.db`",
        ));
    }
    let destination = defaults
        .destination
        .map(|d| file.connector(d, "defaults.destination", interp))
        .transpose()?;
    let timezone = match &defaults.timezone {
        None => chrono_tz::Tz::UTC,
        Some(name) => parse_timezone(name)
            .map_err(|e| ProjectError::invalid(file.at_text("timezone", "defaults.timezone"), e))?,
    };
    let daemon = config.daemon;
    if daemon.max_concurrent_runs.value == 0 {
        return Err(ProjectError::invalid(
            file.at_span(&daemon.max_concurrent_runs, "daemon.max_concurrent_runs"),
            "must be at least 1",
        ));
    }
    if daemon.retry_backoff > daemon.retry_backoff_max {
        return Err(ProjectError::invalid(
            file.at_text("retry_backoff", "daemon.retry_backoff"),
            "is longer than `daemon.retry_backoff_max`; make the first wait the shorter one",
        ));
    }
    let settings = ProjectSettings {
        state_path: root.join(state_path),
        commit_interval: defaults.commit_interval,
        max_concurrent_streams: defaults.max_concurrent_streams.value,
        channel_capacity: defaults.channel_capacity.value,
        max_bytes_in_flight: defaults.max_bytes_in_flight.value,
        timezone,
        daemon: DaemonSettings {
            max_concurrent_runs: daemon.max_concurrent_runs.value,
            retries: daemon.retries,
            retry_backoff: daemon.retry_backoff,
            retry_backoff_max: daemon.retry_backoff_max,
            misfire: daemon.misfire,
            overlap: daemon.overlap,
            shutdown_timeout: daemon.shutdown_timeout,
            cdc_lag_interval: daemon.cdc_lag_interval,
        },
    };
    Ok((settings, destination))
}

/// The error for a product whose folder has no `domain.yaml`, with a file to start from.
fn undeclared_domain(file: &SourceFile, domain: &str) -> ProjectError {
    ProjectError::invalid(
        file.at(None, "domain"),
        format!(
            "domain `{domain}` is not declared; create {DOMAINS_DIR}/{domain}/{DOMAIN_FILE}, for example:\n  domain: {domain}\n  owners: [{domain}-data@example.com]\n  description: What the {domain} domain owns."
        ),
    )
}

fn load_domain(
    file: &SourceFile,
    folder: &str,
    interp: &mut Interpolator<'_>,
) -> Result<Domain, ProjectError> {
    let raw: DomainFile = yaml::parse(&file.text, &file.rel)?;
    let name = DomainName::new(raw.domain.value.as_str()).map_err(|e| {
        ProjectError::invalid(
            file.at_span(&raw.domain, "domain"),
            format!("{e}; it must be the name of the folder holding this file (`{folder}`)"),
        )
    })?;
    if name.as_str() != folder {
        return Err(ProjectError::invalid(
            file.at_span(&raw.domain, "domain"),
            format!(
                "the file is in folder `{DOMAINS_DIR}/{folder}` but says `domain: {name}`; set `domain: {folder}`"
            ),
        ));
    }
    if raw.owners.value.iter().all(|o| o.trim().is_empty()) {
        return Err(ProjectError::invalid(
            file.at_span(&raw.owners, "owners"),
            "names no owner; list who answers for the domain, for example `owners: [team@example.com]`",
        ));
    }
    if raw.description.trim().is_empty() {
        return Err(ProjectError::invalid(
            file.at_text("description", "description"),
            "is empty; say what the domain owns, for the rest of the organisation",
        ));
    }
    let destination = raw
        .destination
        .map(|d| file.connector(d, "destination", interp))
        .transpose()?;
    Ok(Domain {
        name,
        owners: raw.owners.value,
        description: raw.description,
        contact: raw.contact,
        destination,
        rules: raw
            .rules
            .into_iter()
            .map(|rule| RawRule {
                line: yaml::line_of(&rule),
                value: rule.value,
            })
            .collect(),
        file: file.abs.clone(),
    })
}

/// A product file found under `domains/`.
struct FoundProduct {
    domain: String,
    stem: String,
    rel: PathBuf,
}

/// What `domains/` holds: the domain files (folder name, path) and product files.
struct FoundFiles {
    domains: Vec<(String, PathBuf)>,
    products: Vec<FoundProduct>,
}

/// Every `domains/<domain>/domain.yaml` and `domains/<domain>/<product>.yaml` (or `.yml`),
/// sorted; dot files are skipped.
///
/// Nothing that looks like a product file is ignored silently: a wrong-case extension or a
/// product file in a sub-folder is an error; a missing or empty `domains/` or a domain folder
/// without a domain file or products is a warning.
fn project_files(root: &Path, warnings: &mut Vec<String>) -> Result<FoundFiles, ProjectError> {
    let domains_dir = root.join(DOMAINS_DIR);
    let no_products = format!(
        "{DOMAINS_DIR}/ holds no product files; add one as {DOMAINS_DIR}/<domain>/<product>.yaml"
    );
    let mut domain_files = Vec::new();
    if !domains_dir.is_dir() {
        warnings.push(no_products);
        return Ok(FoundFiles {
            domains: domain_files,
            products: Vec::new(),
        });
    }
    let mut found = Vec::new();
    for (name, path) in sorted_entries(&domains_dir, Path::new(DOMAINS_DIR))? {
        let rel = Path::new(DOMAINS_DIR).join(&name);
        if path.is_file() {
            if looks_like_yaml(&name) {
                return Err(ProjectError::invalid(
                    at(&rel, None, ""),
                    format!(
                        "product files belong in a domain folder; move it to {DOMAINS_DIR}/<domain>/{name}"
                    ),
                ));
            }
            continue;
        }
        if !path.is_dir() {
            continue;
        }
        if let Err(e) = DomainName::new(name.as_str()) {
            return Err(ProjectError::invalid(
                at(&rel, None, ""),
                format!("the folder name is not a valid domain name ({e}); rename the folder"),
            ));
        }
        let before = found.len();
        let declared = path.join(DOMAIN_FILE).is_file();
        if declared {
            domain_files.push((name.clone(), rel.join(DOMAIN_FILE)));
        }
        for (file_name, file_path) in sorted_entries(&path, &rel)? {
            let file_rel = rel.join(&file_name);
            if file_path.is_dir() {
                if let Some(nested) = first_yaml_below(&file_path, &file_rel)? {
                    return Err(ProjectError::invalid(
                        at(&nested, None, ""),
                        format!(
                            "product files sit directly in their domain folder ({DOMAINS_DIR}/<domain>/<product>.yaml), so this one would never be read; move it to {}",
                            rel.join(nested.file_name().unwrap_or_default()).display()
                        ),
                    ));
                }
                continue;
            }
            if !file_path.is_file() {
                continue;
            }
            // A product's locked contract (`weft product contract`), read with its product.
            if file_name.ends_with(crate::contract::CONTRACT_SUFFIX) {
                continue;
            }
            match yaml_stem(&file_name) {
                Some(_) if file_name == DOMAIN_FILE => {}
                Some("domain") => {
                    return Err(ProjectError::invalid(
                        at(&file_rel, None, ""),
                        format!("the domain file is named {DOMAIN_FILE}; rename this one"),
                    ))
                }
                Some(stem) => found.push(FoundProduct {
                    domain: name.clone(),
                    stem: stem.to_string(),
                    rel: file_rel,
                }),
                None if looks_like_yaml(&file_name) => {
                    let (stem, _) = file_name.rsplit_once('.').unwrap_or((&file_name, ""));
                    return Err(ProjectError::invalid(
                        at(&file_rel, None, ""),
                        format!(
                            "product files end in `.yaml` or `.yml`, in lower case, so this one would never be read; rename it to {stem}.yaml"
                        ),
                    ));
                }
                None => {}
            }
        }
        if found.len() == before && !declared {
            warnings.push(format!(
                "{} holds no product files; add <product>.yaml files or remove the folder",
                rel.display()
            ));
        }
    }
    if found.is_empty() && !warnings.iter().any(|w| w.starts_with(DOMAINS_DIR)) {
        warnings.push(no_products);
    }
    Ok(FoundFiles {
        domains: domain_files,
        products: found,
    })
}

fn yaml_stem(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".yaml")
        .or_else(|| file_name.strip_suffix(".yml"))
}

/// A YAML file name in any letter case (`shop.YAML`).
fn looks_like_yaml(file_name: &str) -> bool {
    let lower = file_name.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml")
}

/// The first YAML file anywhere below `dir` (relative path), depth-first by name.
fn first_yaml_below(dir: &Path, rel: &Path) -> Result<Option<PathBuf>, ProjectError> {
    for (name, path) in sorted_entries(dir, rel)? {
        let child = rel.join(&name);
        if path.is_dir() {
            if let Some(found) = first_yaml_below(&path, &child)? {
                return Ok(Some(found));
            }
        } else if path.is_file() && looks_like_yaml(&name) {
            return Ok(Some(child));
        }
    }
    Ok(None)
}

/// The entries of a folder by name, skipping dot files and names that are not UTF-8.
fn sorted_entries(dir: &Path, rel: &Path) -> Result<Vec<(String, PathBuf)>, ProjectError> {
    let io = |source| ProjectError::Io {
        path: rel.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.starts_with('.') {
            entries.push((name, entry.path()));
        }
    }
    entries.sort();
    Ok(entries)
}

fn load_product(
    file: &SourceFile,
    folder: &str,
    stem: &str,
    default_destination: Option<(&ConnectorRef, &Path)>,
    settings: &ProjectSettings,
    interp: &mut Interpolator<'_>,
) -> Result<Product, ProjectError> {
    let raw: ProductFile = yaml::parse(&file.text, &file.rel)?;

    let domain = DomainName::new(raw.domain.value.as_str()).map_err(|e| {
        ProjectError::invalid(
            file.at_span(&raw.domain, "domain"),
            format!("{e}; it must be the name of the folder holding this file (`{folder}`)"),
        )
    })?;
    if domain.as_str() != folder {
        return Err(ProjectError::invalid(
            file.at_span(&raw.domain, "domain"),
            format!(
                "the file is in folder `{DOMAINS_DIR}/{folder}` but says `domain: {domain}`; set `domain: {folder}` or move the file to {DOMAINS_DIR}/{domain}/"
            ),
        ));
    }
    let name = ProductName::new(raw.product.value.as_str()).map_err(|e| {
        ProjectError::invalid(
            file.at_span(&raw.product, "product"),
            format!("{e}; it must be the file name without `.yaml` (`{stem}`)"),
        )
    })?;
    if name.as_str() != stem {
        return Err(ProjectError::invalid(
            file.at_span(&raw.product, "product"),
            format!(
                "the file is named `{stem}` but says `product: {name}`; set `product: {stem}` or rename the file to {name}.yaml"
            ),
        ));
    }

    if raw.streams.value.is_empty() {
        return Err(ProjectError::invalid(
            file.at_span(&raw.streams, "streams"),
            "a product needs at least one stream; add `- name: <stream>` entries (`weft connector discover` lists them)",
        ));
    }
    let mut streams: Vec<StreamConfig> = Vec::with_capacity(raw.streams.value.len());
    for (i, stream) in raw.streams.value.iter().enumerate() {
        let config = load_stream(file, i, stream, interp)?;
        if let Some(first) = streams.iter().position(|s| s.name == config.name) {
            return Err(ProjectError::invalid(
                file.at_span(&stream.value.name, format!("streams[{i}].name")),
                format!(
                    "stream `{}` is already defined at streams[{first}]; each stream may appear once per product",
                    config.name
                ),
            ));
        }
        streams.push(config);
    }

    let (source, upstream) = crate::sharing::load_source(file, raw.source, interp)?;
    let grants = crate::sharing::load_grants(file, &raw.grants, interp)?;
    let (destination, destination_file) = match raw.destination {
        Some(d) => (file.connector(d, "destination", interp)?, file.abs.clone()),
        None => match default_destination {
            Some((d, from)) => (d.clone(), from.to_path_buf()),
            None => {
                return Err(ProjectError::invalid(
                    file.at(None, "destination"),
                    format!(
                        "the product names no destination and neither its {DOMAIN_FILE} nor {CONFIG_FILE} has a default (`destination` / `defaults.destination`); add `destination: {{ connector: ..., config: {{...}} }}` to this file, its {DOMAIN_FILE} or a default to {CONFIG_FILE}"
                    ),
                ))
            }
        },
    };

    let timezone = match &raw.timezone {
        None => settings.timezone,
        Some(name) => parse_timezone(name)
            .map_err(|e| ProjectError::invalid(file.at_text("timezone", "timezone"), e))?,
    };
    let schedule =
        match (raw.schedule, raw.every) {
            (Some(_), Some(_)) => return Err(ProjectError::invalid(
                file.at_text("every", "every"),
                "a product has either a cron `schedule` or an `every` interval, not both; keep one",
            )),
            (None, None) => None,
            (Some(text), None) => {
                let text = file.expand(&text, "schedule", interp)?;
                Some(Schedule::parse_in(&text, timezone).map_err(|e| {
                    ProjectError::invalid(file.at_text("schedule", "schedule"), e.to_string())
                })?)
            }
            (None, Some(text)) => {
                let text = file.expand(&text, "every", interp)?;
                let at = || file.at_text("every", "every");
                let interval = humantime::parse_duration(text.trim()).map_err(|e| {
                    ProjectError::invalid(
                        at(),
                        format!(
                        "`{text}` is not an interval ({e}); write for example `30s`, `15m` or `1h`"
                    ),
                    )
                })?;
                Some(Schedule::every(&text, interval).map_err(|e| ProjectError::invalid(at(), e))?)
            }
        };
    if raw.timezone.is_some() && schedule.as_ref().is_some_and(|s| s.interval().is_some()) {
        return Err(ProjectError::invalid(
            file.at_text("timezone", "timezone"),
            "an `every` interval does not depend on a time zone; remove `timezone` or use a cron `schedule`",
        ));
    }
    let policy = RunPolicy {
        misfire: raw.misfire.unwrap_or(settings.daemon.misfire),
        overlap: raw.overlap.unwrap_or(settings.daemon.overlap),
        retries: raw.retries.unwrap_or(settings.daemon.retries),
        continuous: raw.continuous,
    };

    let contract_rel = file
        .rel
        .with_file_name(format!("{name}{}", crate::contract::CONTRACT_SUFFIX));
    let contract_file = file
        .abs
        .with_file_name(contract_rel.file_name().unwrap_or_default());
    let locked_contract = if contract_file.is_file() {
        let root = file
            .abs
            .ancestors()
            .nth(file.rel.components().count())
            .unwrap_or(Path::new("/"));
        let contract = crate::contract::Contract::read(root, &contract_rel)?;
        let label = format!("{domain}/{name}");
        if contract.product != label {
            return Err(ProjectError::invalid(
                at(&contract_rel, None, "product"),
                format!(
                    "this contract is for `{}`, not `{label}`; regenerate it with `weft product contract {label}`",
                    contract.product
                ),
            ));
        }
        Some(contract)
    } else {
        None
    };

    Ok(Product {
        contract: raw.contract.unwrap_or_default(),
        contract_file,
        locked_contract,
        domain,
        name,
        owner: file.expand(&raw.owner, "owner", interp)?,
        description: file.expand(&raw.description, "description", interp)?,
        source,
        streams,
        destination,
        destination_file,
        schedule,
        policy,
        file: file.abs.clone(),
        upstream,
        grants,
        classification: raw.classification,
        tags: raw.tags,
        freshness: raw.freshness,
    })
}

/// An IANA time zone name, or why not.
fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.trim().parse().map_err(|_| {
        format!("`{name}` is not a time zone; use an IANA name such as `UTC`, `Europe/Berlin` or `America/New_York`")
    })
}

fn load_stream(
    file: &SourceFile,
    i: usize,
    stream: &serde_saphyr::Spanned<StreamFile>,
    interp: &mut Interpolator<'_>,
) -> Result<StreamConfig, ProjectError> {
    let raw = &stream.value;
    let field = |name: &str| format!("streams[{i}].{name}");
    let name = StreamName::new(raw.name.value.as_str()).map_err(|e| {
        ProjectError::invalid(
            file.at_span(&raw.name, field("name")),
            format!("{e}; use the stream's name as `weft connector discover` shows it"),
        )
    })?;
    let mode = raw.mode.as_ref().map_or(SyncMode::FullRefresh, |m| m.value);
    let write = raw.write.as_ref().map_or(
        match mode {
            SyncMode::FullRefresh => WriteMode::Overwrite,
            SyncMode::Incremental | SyncMode::Cdc => WriteMode::AppendDedup,
        },
        |w| w.value,
    );
    // Point at the most specific line we know: the `write:` or `mode:` line, else the stream.
    let write_at = |name: String| match (&raw.write, &raw.mode) {
        (Some(w), _) => file.at_span(w, name),
        (None, Some(m)) => file.at_span(m, name),
        (None, None) => file.at_span(stream, name),
    };

    if mode != SyncMode::FullRefresh && write == WriteMode::Overwrite {
        return Err(ProjectError::invalid(
            write_at(field("write")),
            format!(
                "{mode} streams cannot use write mode overwrite (each run would replace the table with only the rows read since the last one); use `write: append` or `write: append_dedup`"
            ),
        ));
    }
    // Incremental without `cursor` uses the cursor the source defines (Airbyte's
    // source_defined_cursor); the engine checks that one exists once it has the catalog.
    let cursor = raw.cursor.clone().filter(|c| !c.trim().is_empty());
    // append_dedup without `primary_key` uses the key the source defines (a table's primary
    // key); the engine checks that one exists once it has the source's catalog.
    let primary_key = raw.primary_key.clone().filter(|k| !k.is_empty());

    let mut mappers = Vec::with_capacity(raw.mappers.len());
    for (j, mapper) in raw.mappers.iter().enumerate() {
        mappers.push(load_mapper(
            file,
            &format!("streams[{i}].mappers[{j}]"),
            mapper,
            interp,
        )?);
    }

    let mut fields = std::collections::BTreeMap::new();
    for (column, meta) in &raw.fields {
        let mut meta = meta.clone();
        if let Some(text) = &meta.description {
            meta.description =
                Some(file.expand(text, field(&format!("fields.{column}.description")), interp)?);
        }
        fields.insert(column.clone(), meta);
    }

    Ok(StreamConfig {
        name,
        mode,
        write,
        cursor,
        primary_key,
        columns: raw.columns.clone(),
        mappers,
        description: raw.description.clone().filter(|d| !d.trim().is_empty()),
        fields,
    })
}

/// Checks one mapper and expands the `${...}` in its values; `at` is its field path
/// (`streams[0].mappers[1]`).
pub(crate) fn load_mapper(
    file: &SourceFile,
    at: &str,
    mapper: &serde_saphyr::Spanned<Mapper>,
    interp: &mut Interpolator<'_>,
) -> Result<Mapper, ProjectError> {
    {
        let mapper_field = |name: &str| format!("{at}.{name}");
        let invalid = |name: &str, message: String| {
            ProjectError::invalid(file.at_span(mapper, mapper_field(name)), message)
        };
        let mapper = match mapper.value.clone() {
            Mapper::Select(columns) if columns.is_empty() => {
                return Err(invalid(
                    "select",
                    "lists no column; name the columns to keep".into(),
                ))
            }
            Mapper::Filter { op, value, .. } if op.needs_value() && value.is_none() => {
                return Err(invalid(
                    "value",
                    format!("filter op `{op}` needs a `value` to compare with; add one, or use `is_null` / `is_not_null`"),
                ))
            }
            Mapper::Filter {
                op: FilterOp::In,
                value: Some(ref value),
                ..
            } if value.as_array().is_none_or(|v| v.is_empty()) => {
                return Err(invalid(
                    "value",
                    "filter op `in` takes a list of values (`value: [DE, AT]`); give at least one".into(),
                ))
            }
            Mapper::Filter { op, value: Some(_), .. } if !op.needs_value() => {
                return Err(invalid(
                    "value",
                    format!("filter op `{op}` takes no `value`; remove it"),
                ))
            }
            Mapper::Filter {
                column,
                op,
                value: Some(mut value),
            } => {
                interp
                    .expand_json(&mut value)
                    .map_err(|(path, e)| file.interp_error(format!("{}{path}", mapper_field("value")), e))?;
                Mapper::Filter {
                    column,
                    op,
                    value: Some(value),
                }
            }
            Mapper::Hash { column, salt: None } => {
                return Err(invalid(
                    "salt",
                    format!("hashing `{column}` needs a secret `salt`: an unsalted SHA-256 of an e-mail address or a phone number is reversed by hashing a list of candidates; add `salt: \"${{PII_SALT}}\"` (set PII_SALT in the environment) or `salt: \"${{file:secrets/pii-salt}}\"`"),
                ))
            }
            Mapper::Hash {
                column,
                salt: Some(salt),
            } => {
                let salt = file.expand(&salt, mapper_field("salt"), interp)?;
                if salt.trim().is_empty() {
                    return Err(invalid(
                        "salt",
                        format!("the salt for hashing `{column}` is empty (an unset default or an empty secret file?); put a long random secret there, for example `openssl rand -hex 32 > secrets/pii-salt`"),
                    ));
                }
                Mapper::Hash {
                    column,
                    salt: Some(salt),
                }
            }
            other => other,
        };
        Ok(mapper)
    }
}
