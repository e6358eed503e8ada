//! `weft init DIR`: the runnable quickstart (1M generated orders into a local lake), or with
//! `--source` / `--destination` a commented skeleton for those connectors. A folder that is
//! not empty is refused unless `--force`: init never overwrites someone's files by surprise.

use std::path::Path;
use std::process::ExitCode;

use super::skeleton::{config_lines, Side};
use crate::exit::Failure;
use crate::registry::registry;

/// The quickstart project, compiled in so `weft init` works from any installed binary.
const QUICKSTART: &[(&str, &str)] = &[
    (
        "weft.yaml",
        include_str!("../../configs/quickstart/weft.yaml"),
    ),
    (
        "governance.yaml",
        include_str!("../../configs/quickstart/governance.yaml"),
    ),
    (
        "domains/sales/domain.yaml",
        include_str!("../../configs/quickstart/domains/sales/domain.yaml"),
    ),
    (
        "domains/sales/shop.yaml",
        include_str!("../../configs/quickstart/domains/sales/shop.yaml"),
    ),
    (
        "domains/finance/domain.yaml",
        include_str!("../../configs/quickstart/domains/finance/domain.yaml"),
    ),
    (
        "domains/finance/revenue.yaml",
        include_str!("../../configs/quickstart/domains/finance/revenue.yaml"),
    ),
    (
        "domains/marketing/domain.yaml",
        include_str!("../../configs/quickstart/domains/marketing/domain.yaml"),
    ),
    (
        "domains/marketing/campaign_margins.yaml",
        include_str!("../../configs/quickstart/domains/marketing/campaign_margins.yaml"),
    ),
    (".gitignore", GITIGNORE),
];

/// weft's state, lock and the quickstart's lake live under `.weft/`.
const GITIGNORE: &str = "/.weft/\n";

pub fn run(
    dir: &Path,
    force: bool,
    source: Option<&str>,
    destination: Option<&str>,
) -> Result<ExitCode, Failure> {
    check_target(dir, force)?;
    let files: Vec<(String, String)> = if source.is_none() && destination.is_none() {
        QUICKSTART
            .iter()
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect()
    } else {
        // `--source source-postgres` says the same as `--source postgres`.
        let source = source.unwrap_or("sample");
        let destination = destination.unwrap_or("parquet");
        skeleton(
            source.strip_prefix("source-").unwrap_or(source),
            destination
                .strip_prefix("destination-")
                .unwrap_or(destination),
        )?
    };
    for (name, content) in &files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Failure::failed(format!("cannot create {}: {e}", parent.display())))?;
        }
        // An existing .gitignore keeps its lines and gains weft's.
        let content = match std::fs::read_to_string(&path) {
            Ok(existing) if name == ".gitignore" => merge_lines(&existing, content),
            _ => content.clone(),
        };
        std::fs::write(&path, content)
            .map_err(|e| Failure::failed(format!("cannot write {}: {e}", path.display())))?;
    }
    let dir = dir.display();
    if source.is_none() && destination.is_none() {
        println!("Created a weft project in {dir}.\nRun it with:  weft --project {dir} sync run");
    } else {
        println!(
            "Created a weft project skeleton in {dir}:\n  {}\nFill in the settings marked CHANGE_ME and the streams, then:\n  weft --project {dir} config validate --connect\n  weft --project {dir} connector discover example/my_product\n  weft --project {dir} sync run",
            files
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `existing` with the lines of `add` it lacks appended.
fn merge_lines(existing: &str, add: &str) -> String {
    let mut out = existing.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for line in add.lines() {
        if !existing.lines().any(|l| l.trim() == line.trim()) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A folder that exists and holds anything (dot files too) is only written with `--force`.
fn check_target(dir: &Path, force: bool) -> Result<(), Failure> {
    if dir.exists() && !dir.is_dir() {
        return Err(Failure::config(format!(
            "{} is a file, not a folder; pick a folder for the project",
            dir.display()
        )));
    }
    let entries: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    if entries.is_empty() || force {
        return Ok(());
    }
    let mut shown = entries.clone();
    shown.sort();
    shown.truncate(5);
    let what = if entries.iter().any(|e| e == "weft.yaml") {
        "already holds a weft project (weft.yaml)"
    } else {
        "is not empty"
    };
    Err(Failure::config(format!(
        "{} {what} ({}{}); pick an empty or new folder, or pass --force to write the project's files into it (files of the same name are replaced)",
        dir.display(),
        shown.join(", "),
        if entries.len() > shown.len() { ", …" } else { "" }
    )))
}

/// `weft.yaml` with the destination as the project default, and one product reading from the
/// source, both with every setting of the connectors' specs.
fn skeleton(source: &str, destination: &str) -> Result<Vec<(String, String)>, Failure> {
    let registry = registry();
    let source_factory = registry
        .source(source)
        .map_err(|e| Failure::config(format!("--source: {e}")))?;
    let destination_factory = registry
        .destination(destination)
        .map_err(|e| Failure::config(format!("--destination: {e}")))?;

    let mut weft_yaml = vec![
        "# A weft project: the state store and the defaults of every product.".to_string(),
        "# Products live in domains/<domain>/<product>.yaml; `weft config validate` checks them all.".into(),
        "version: 1".into(),
        "state:".into(),
        "  # Checkpoints and run history (SQLite), relative to this folder.".into(),
        "  path: .weft/state.db".into(),
        "defaults:".into(),
        format!("  # The product store of products naming no `destination:` (`weft connector spec destination-{destination}`)."),
        "  destination:".into(),
        format!("    connector: {destination}"),
        "    config:".into(),
    ];
    weft_yaml.extend(config_lines(
        &destination_factory.spec(),
        Side::Destination,
        6,
    ));
    weft_yaml.extend([
        "  # How often a running stream commits what it has written (and can resume from).".into(),
        "  commit_interval: 10s".into(),
    ]);

    let stream = match source {
        "sample" => "orders",
        "postgres" => "public.my_table",
        "airbyte" => "users",
        _ => "my_stream",
    };
    let mut product = vec![
        "# A data product of the `example` domain. The folder is the domain, the file name the".to_string(),
        "# product: rename both (and the two fields below) to yours.".into(),
        "product: my_product".into(),
        "domain: example".into(),
        "# Who answers for the product: an e-mail address or a team handle.".into(),
        "owner: data-team@example.com".into(),
        "description: What this product holds, for its consumers.".into(),
        format!("# Where the data comes from (`weft connector spec source-{source}` lists every setting)."),
        "source:".into(),
        format!("  connector: {source}"),
        "  config:".into(),
    ];
    product.extend(config_lines(&source_factory.spec(), Side::Source, 4));
    product.extend([
        "# The streams to sync: `weft connector discover example/my_product` lists what the source offers.".to_string(),
        "streams:".into(),
        format!("  - name: {stream}"),
        "    # full_refresh (every run reads everything) | incremental (rows past the cursor) | cdc".into(),
        "    mode: full_refresh".into(),
        "    # overwrite (replace the table) | append | append_dedup (latest row per primary_key)".into(),
        "    write: overwrite".into(),
        "    # cursor: updated_at       # incremental: the column that grows when a row changes".into(),
        "    # primary_key: [id]        # append_dedup: the columns identifying a row".into(),
        "    # mappers:                 # applied in order before rows are written".into(),
        "    #   - hash: { column: email, salt: \"${PII_SALT}\" }".into(),
        "    #   - drop: [internal_notes]".into(),
        "# A product store of its own instead of the project default:".into(),
        "# destination: { connector: ..., config: { ... } }".into(),
        "# When the daemon runs it (cron, UTC):".into(),
        "# schedule: \"0 * * * *\"".into(),
    ]);
    let domain = [
        "# Declares the `example` domain: every folder under domains/ needs one.",
        "domain: example",
        "# Who answers for the domain's products.",
        "owners: [data-team@example.com]",
        "description: What this domain owns, for the rest of the organisation.",
        "# contact: \"#data-team\"",
        "# The product store of this domain's products that name none (else weft.yaml's default):",
        "# destination: { connector: ..., config: { ... } }",
    ]
    .map(String::from)
    .to_vec();
    let lines = |l: Vec<String>| l.join("\n") + "\n";
    Ok(vec![
        ("weft.yaml".into(), lines(weft_yaml)),
        ("domains/example/domain.yaml".into(), lines(domain)),
        ("domains/example/my_product.yaml".into(), lines(product)),
        (".gitignore".into(), GITIGNORE.into()),
    ])
}
