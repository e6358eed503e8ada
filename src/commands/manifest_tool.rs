//! `weft connector test MANIFEST` and `weft connector new --manifest NAME`: writing and trying
//! a declarative (low-code) manifest without Rust, the command-line twin of Airbyte's
//! Connector Builder test panel. The work is `weft_source_manifest::tester`; this module only
//! prints.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;
use weft_source_manifest::tester::{self, Event, Limits};

use crate::exit::Failure;

/// The widest a record's cell is shown.
const CELL: usize = 40;
/// The most columns of records shown (the rest are counted).
const COLUMNS: usize = 8;

/// Runs a stream of `manifest` with the config in `config` and prints what happened.
pub async fn test(
    manifest: &Path,
    config: Option<&Path>,
    stream: Option<&str>,
    limits: Limits,
) -> Result<ExitCode, Failure> {
    let config = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::config(format!("reading the config {}: {e}", path.display()))
            })?;
            let value: Value = serde_saphyr::from_str(&text).map_err(|e| {
                Failure::config(format!(
                    "the config {} is neither JSON nor YAML: {e}",
                    path.display()
                ))
            })?;
            if !value.is_object() {
                return Err(Failure::config(format!(
                    "the config {} must be a mapping of the manifest spec's fields",
                    path.display()
                )));
            }
            value
        }
        None => Value::Object(Default::default()),
    };
    let mut records_seen = 0usize;
    let mut out = String::new();
    let result = tester::run(manifest, config, stream, limits, |event| {
        print_event(&event, &mut records_seen, &mut out);
        print!("{out}");
        out.clear();
    })
    .await;
    match result {
        Ok(()) => {
            println!(
                "{records_seen} records read (limits: {} pages per slice, {} slices)",
                limits.pages, limits.slices
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(Failure::failed(format!("{}: {e}", manifest.display()))),
    }
}

fn print_event(event: &Event, records_seen: &mut usize, out: &mut String) {
    match event {
        Event::Request {
            method,
            url,
            headers,
            body,
            status,
        } => {
            let _ = writeln!(out, "→ {method} {url}  ← {status}");
            for (k, v) in headers {
                let _ = writeln!(out, "    {k}: {v}");
            }
            if let Some(b) = body {
                let _ = writeln!(out, "    body: {}", cut(b, 200));
            }
        }
        Event::Page {
            slice,
            page,
            records,
        } => {
            *records_seen += records.len();
            let _ = writeln!(out, "slice {slice}, page {page}: {} records", records.len());
            if !records.is_empty() {
                let _ = writeln!(out, "{}", records_table(records));
            }
        }
        Event::SliceDone {
            slice,
            partition,
            state,
            truncated,
        } => {
            let _ = writeln!(
                out,
                "slice {slice} {} {partition}\n  state: {state}",
                if *truncated {
                    "stopped at the page limit:"
                } else {
                    "done:"
                }
            );
        }
        Event::Mismatch { field, problem } => {
            let _ = writeln!(out, "schema: `{field}` {problem}");
        }
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Records as a table: the union of their fields (first seen first), values as JSON.
fn records_table(records: &[Value]) -> String {
    let mut columns: Vec<String> = Vec::new();
    for r in records {
        if let Some(m) = r.as_object() {
            for k in m.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
    }
    let hidden = columns.len().saturating_sub(COLUMNS);
    columns.truncate(COLUMNS);
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(columns.clone());
    for r in records {
        table.add_row(columns.iter().map(|c| match r.get(c) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => cut(s, CELL),
            Some(v) => cut(&v.to_string(), CELL),
        }));
    }
    let mut text = table.to_string();
    if hidden > 0 {
        let _ = write!(text, "\n(+{hidden} more fields)");
    }
    text
}

/// The starter manifest `weft connector new --manifest NAME` writes.
pub fn starter(name: &str) -> String {
    STARTER.replace("{{NAME}}", name)
}

const STARTER: &str = r##"# A declarative (low-code) connector: Airbyte's manifest format, run by weft natively.
# Try it:   weft connector test connectors/{{NAME}}.yaml --config {{NAME}}.config.yaml
# Use it in a product file:
#   source:
#     connector: manifest
#     config: { manifest: connectors/{{NAME}}.yaml, config: { api_key: ..., start_date: ... } }
# The format: https://docs.airbyte.com/platform/connector-development/config-based/understanding-the-yaml-file/yaml-overview
version: 6.0.0
type: DeclarativeSource

# What the user's config must hold; validated (and defaults applied) before anything runs.
spec:
  type: Spec
  connection_specification:
    type: object
    required: [api_key, start_date]
    properties:
      api_key:
        type: string
        airbyte_secret: true   # never shown by `weft connector test`, never logged
      start_date:
        type: string
        format: date
        default: "2024-01-01"

# `weft connector check` reads the first page of these streams.
check:
  type: CheckStream
  stream_names: [items]

# Pieces shared by the streams, used with `$ref: "#/definitions/..."`.
definitions:
  requester:
    type: HttpRequester
    url_base: https://api.example.com/v1
    http_method: GET
    authenticator:
      type: BearerAuthenticator
      api_token: "{{ config['api_key'] }}"

streams:
  # One stream: GET /items?page=N&per_page=100, records under `data`, read by day windows.
  - type: DeclarativeStream
    name: items
    primary_key: id
    retriever:
      type: SimpleRetriever
      requester:
        $ref: "#/definitions/requester"
        path: /items
      record_selector:
        type: RecordSelector
        extractor:
          type: DpathExtractor
          field_path: [data]          # the records' place in the response body
      paginator:
        type: DefaultPaginator
        pagination_strategy:
          type: PageIncrement
          start_from_page: 1
          page_size: 100              # a shorter page is the last
        page_token_option:
          type: RequestOption
          inject_into: request_parameter
          field_name: page
        page_size_option:
          type: RequestOption
          inject_into: request_parameter
          field_name: per_page
    # Incremental: each window is a slice, checkpointed when read; a rerun starts at the state.
    incremental_sync:
      type: DatetimeBasedCursor
      cursor_field: updated_at
      datetime_format: "%Y-%m-%d"
      start_datetime: "{{ config['start_date'] }}"
      step: P1D
      cursor_granularity: P1D
      start_time_option:
        type: RequestOption
        inject_into: request_parameter
        field_name: updated_since
    schema_loader:
      type: InlineSchemaLoader
      schema:
        type: object
        properties:
          id: {type: integer}
          name: {type: [string, "null"]}
          updated_at: {type: string, format: date}
"##;

/// Writes `connectors/NAME.yaml` (and an example config beside the project root) under
/// `root`; refuses to overwrite.
pub fn new(root: &Path, name: &str) -> Result<ExitCode, Failure> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(Failure::config(format!(
            "`{name}` is not a connector name: use lower-case letters, digits, `-` and `_`"
        )));
    }
    let path: PathBuf = root.join("connectors").join(format!("{name}.yaml"));
    if path.exists() {
        return Err(Failure::config(format!(
            "{} exists already; pick another name or remove it",
            path.display()
        )));
    }
    std::fs::create_dir_all(path.parent().expect("a parent"))
        .and_then(|()| std::fs::write(&path, starter(name)))
        .map_err(|e| Failure::runtime(format!("writing {}: {e}", path.display())))?;
    let config = root.join(format!("{name}.config.yaml"));
    if !config.exists() {
        std::fs::write(
            &config,
            "# The config `weft connector test` runs the manifest with (keep it out of git).\napi_key: change-me\nstart_date: \"2024-01-01\"\n",
        )
        .map_err(|e| Failure::runtime(format!("writing {}: {e}", config.display())))?;
    }
    println!(
        "wrote {} (a starter manifest with one commented stream) and {}\nnext: edit url_base, path and the schema, then `weft connector test {} --config {}`",
        path.display(),
        config.display(),
        path.display(),
        config.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_manifest_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, starter("things")).unwrap();
        let source =
            weft_source_manifest::ManifestSource::open(&path, serde_json::json!({"api_key": "k"}))
                .unwrap();
        assert_eq!(tester::stream_names(&source), ["items"]);
    }
}
