//! `weft connector new NAME --kind source|destination`: writes a connector crate under
//! `connectors/` that builds, is registered (workspace member, cargo feature in the defaults,
//! one line in `src/registry.rs`) and passes its generated conformance test, with TODOs where
//! the author's code goes.
//!
//! The templates are the `*.tmpl` files beside this module, rendered with minijinja (strict:
//! a placeholder the renderer does not know is an error, not an empty string). Every edit of
//! the workspace is computed first and written only when all of them apply, so a workspace
//! whose files do not look as expected is left untouched.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use minijinja::{context, Environment, UndefinedBehavior};

use crate::cli::{KindArg, NewConnector};
use crate::exit::Failure;

/// Template name → text; the names are the generated files' names, for error messages.
const TEMPLATES: [(&str, &str); 5] = [
    ("Cargo.toml", include_str!("Cargo.toml.tmpl")),
    ("source/lib.rs", include_str!("source_lib.rs.tmpl")),
    ("source/conformance.rs", include_str!("source_test.rs.tmpl")),
    (
        "destination/lib.rs",
        include_str!("destination_lib.rs.tmpl"),
    ),
    (
        "destination/conformance.rs",
        include_str!("destination_test.rs.tmpl"),
    ),
];

/// The names one connector is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    /// As in product files: `crm`.
    name: String,
    /// `source` or `destination`.
    kind: &'static str,
    /// Folder under `connectors/` and cargo feature: `source-crm`.
    dir: String,
    /// Package: `weft-source-crm`.
    krate: String,
    /// `crm` as a Rust identifier part: `crm` (`my-crm` → `my_crm`).
    ident: String,
    /// `crm` as a type prefix: `Crm` (`my-crm` → `MyCrm`).
    type_name: String,
}

impl Names {
    fn new(name: &str, kind: KindArg) -> Result<Self, Failure> {
        let valid = name.len() <= 40
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.ends_with('-')
            && !name.contains("--")
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(Failure::config(format!(
                "connector name {name:?} is not valid: use lower-case letters, digits and single `-`, starting with a letter (at most 40), e.g. `crm` or `web-events`"
            )));
        }
        let kind = match kind {
            KindArg::Source => "source",
            KindArg::Destination => "destination",
        };
        let dir = format!("{kind}-{name}");
        Ok(Self {
            name: name.to_string(),
            kind,
            krate: format!("weft-{dir}"),
            ident: name.replace('-', "_"),
            type_name: name
                .split('-')
                .map(|part| {
                    let mut chars = part.chars();
                    chars.next().map_or(String::new(), |c| {
                        c.to_ascii_uppercase().to_string() + chars.as_str()
                    })
                })
                .collect(),
            dir,
        })
    }

    fn crate_ident(&self) -> String {
        self.krate.replace('-', "_")
    }

    fn factory(&self) -> String {
        let suffix = if self.kind == "source" {
            "SourceFactory"
        } else {
            "DestinationFactory"
        };
        format!("{}::{}{suffix}", self.crate_ident(), self.type_name)
    }

    /// The generated crate's files: path under the crate folder → text.
    fn render(&self) -> Result<Vec<(PathBuf, String)>, Failure> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_trim_blocks(true);
        for (name, text) in TEMPLATES {
            env.add_template(name, text)
                .map_err(|e| Failure::failed(format!("scaffold template {name}: {e}")))?;
        }
        let ctx = context! {
            name => self.name,
            kind => self.kind,
            krate => self.krate,
            crate_ident => self.crate_ident(),
            ident => self.ident,
            Type => self.type_name,
        };
        let render = |template: String, to: &str| {
            env.get_template(&template)
                .and_then(|t| t.render(&ctx))
                .map(|text| (PathBuf::from(to), text))
                .map_err(|e| Failure::failed(format!("scaffold template {template}: {e:#}")))
        };
        Ok(vec![
            render("Cargo.toml".into(), "Cargo.toml")?,
            render(format!("{}/lib.rs", self.kind), "src/lib.rs")?,
            render(
                format!("{}/conformance.rs", self.kind),
                "tests/conformance.rs",
            )?,
        ])
    }
}

/// The workspace root: `given`, or the nearest folder at or above the current one whose
/// `Cargo.toml` declares a `[workspace]`.
fn workspace_root(given: Option<PathBuf>) -> Result<PathBuf, Failure> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::config(format!("cannot read the current folder: {e}")))?;
    cwd.ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"))
        })
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            Failure::config(format!(
                "{} is not inside a weft checkout (no Cargo.toml with a [workspace] at or above it); run `weft connector new` there, or pass --workspace DIR",
                cwd.display()
            ))
        })
}

/// Runs `weft connector new`.
pub fn run(args: NewConnector) -> Result<ExitCode, Failure> {
    // clap requires `--kind` unless `--manifest`, which is dispatched elsewhere.
    let kind = args
        .kind
        .ok_or_else(|| Failure::config("`weft connector new` needs `--kind source|destination`"))?;
    let names = Names::new(&args.name, kind)?;
    let root = workspace_root(args.workspace)?;
    let manifest_path = root.join("Cargo.toml");
    let registry_path = root.join("src").join("registry.rs");
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| {
            Failure::config(format!(
                "{}: {e}; run `weft connector new` at the root of a weft checkout, or pass --workspace DIR",
                path.display()
            ))
        })
    };
    let manifest = read(&manifest_path)?;
    let registry = read(&registry_path)?;
    let crate_dir = root.join("connectors").join(&names.dir);
    if crate_dir.exists() {
        return Err(Failure::config(format!(
            "{} already exists: choose another name or remove it",
            crate_dir.display()
        )));
    }
    let manifest = register_in_manifest(&manifest, &names)
        .map_err(|why| Failure::config(format!("{}: {why}", manifest_path.display())))?;
    let registry = register_in_registry(&registry, &names)
        .map_err(|why| Failure::config(format!("{}: {why}", registry_path.display())))?;
    let mut files: Vec<(PathBuf, String)> = names
        .render()?
        .into_iter()
        .map(|(rel, text)| (crate_dir.join(rel), text))
        .collect();
    // The crate first, the registration last: an interrupted run leaves a folder to remove,
    // never a workspace naming a crate that is not there.
    files.push((manifest_path, manifest));
    files.push((registry_path, registry));
    for (path, text) in &files {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::failed(format!("creating {}: {e}", dir.display())))?;
        }
        std::fs::write(path, text)
            .map_err(|e| Failure::failed(format!("writing {}: {e}", path.display())))?;
    }
    format_rust(&files);
    println!(
        "created {} `{}` in {}",
        names.kind,
        names.name,
        crate_dir.display()
    );
    for (path, _) in &files {
        println!("  wrote {}", path.display());
    }
    println!(
        "next: fill in the TODOs, then `cargo test -p {}` (the conformance suite; see docs/connectors.md)",
        names.krate
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs rustfmt over the generated Rust files and the registry: the templates are formatted
/// for a name of average length, and a longer or shorter one moves line breaks. Without rustfmt the files
/// still build; only `cargo fmt --check` would ask for the change, so this says so and goes on.
fn format_rust(files: &[(PathBuf, String)]) {
    let rust: Vec<&PathBuf> = files
        .iter()
        .map(|(path, _)| path)
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    let outcome = std::process::Command::new("rustfmt")
        .args(["--edition", "2021"])
        .args(&rust)
        .output();
    match outcome {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "note: rustfmt did not format the new files ({}); run `cargo fmt`",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("note: rustfmt could not be run ({e}); run `cargo fmt` later"),
    }
}

/// The workspace manifest with the crate as member, workspace dependency, optional dependency
/// of the binary and default cargo feature.
fn register_in_manifest(manifest: &str, names: &Names) -> Result<String, String> {
    if manifest.contains(&format!("\"connectors/{}\"", names.dir)) {
        return Err(format!(
            "connector `{}` is already a workspace member",
            names.dir
        ));
    }
    let member = format!("    \"connectors/{}\",\n", names.dir);
    let text = insert_before_list_end(manifest, "members = [", &member)?;
    let text = insert_after_last(
        &text,
        "[workspace.dependencies]",
        |l| l.starts_with("weft-") && l.contains("{ path = "),
        &format!(
            "{} = {{ path = \"connectors/{}\" }}\n",
            names.krate, names.dir
        ),
    )?;
    let text = insert_before_list_end(&text, "default = [", &format!("    \"{}\",\n", names.dir))?;
    let text = insert_after_last(
        &text,
        "[features]",
        |l| (l.starts_with("source-") || l.starts_with("destination-")) && l.contains("[\"dep:"),
        &format!("{} = [\"dep:{}\"]\n", names.dir, names.krate),
    )?;
    insert_after_last(
        &text,
        "[dependencies]",
        |l| l.starts_with("weft-") && l.contains("optional = true"),
        &format!(
            "{} = {{ workspace = true, optional = true }}\n",
            names.krate
        ),
    )
}

/// `text` with `line` inserted before the `]` closing the list opened by the first `opening`.
fn insert_before_list_end(text: &str, opening: &str, line: &str) -> Result<String, String> {
    let start = text
        .find(opening)
        .ok_or_else(|| format!("no `{opening}` list found"))?;
    let end = start
        + text[start..]
            .find("\n]")
            .ok_or_else(|| format!("the `{opening}` list is not closed by a `]` line"))?;
    Ok(format!(
        "{}\n{}{}",
        &text[..end],
        line.trim_end_matches('\n'),
        &text[end..]
    ))
}

/// `text` with `line` inserted after the last line matching `is_entry` in the table `section`.
fn insert_after_last(
    text: &str,
    section: &str,
    is_entry: impl Fn(&str) -> bool,
    line: &str,
) -> Result<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == section)
        .ok_or_else(|| format!("no `{section}` table found"))?;
    let mut last = None;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        if l.starts_with('[') {
            break;
        }
        if is_entry(l) {
            last = Some(i);
        }
    }
    let last =
        last.ok_or_else(|| format!("no connector entry found in `{section}` to add one after"))?;
    let mut out: Vec<&str> = lines.clone();
    out.insert(last + 1, line.trim_end_matches('\n'));
    let mut joined = out.join("\n");
    if text.ends_with('\n') {
        joined.push('\n');
    }
    Ok(joined)
}

/// `src/registry.rs` with the connector's line, behind its feature, before the final
/// `registry`.
fn register_in_registry(registry: &str, names: &Names) -> Result<String, String> {
    let at = registry
        .rfind("\n    registry\n}")
        .ok_or("no final `registry` expression found to register the connector before")?;
    let with = if names.kind == "source" {
        "with_source"
    } else {
        "with_destination"
    };
    Ok(format!(
        "{}\n    #[cfg(feature = \"{}\")]\n    let registry = registry.{with}({});{}",
        &registry[..at],
        names.dir,
        names.factory(),
        &registry[at..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_derived_and_checked() {
        let n = Names::new("web-events", KindArg::Source).unwrap();
        assert_eq!(
            (
                n.dir.as_str(),
                n.krate.as_str(),
                n.ident.as_str(),
                n.type_name.as_str()
            ),
            (
                "source-web-events",
                "weft-source-web-events",
                "web_events",
                "WebEvents"
            )
        );
        for bad in ["", "Crm", "9crm", "crm-", "a--b", "c_rm", "x/y"] {
            let err = Names::new(bad, KindArg::Source).unwrap_err();
            assert!(
                err.message().contains("is not valid"),
                "{bad}: {}",
                err.message()
            );
        }
    }

    #[test]
    fn the_manifest_gains_member_dependency_and_feature() {
        let manifest = "[workspace]\nmembers = [\n    \"crates/core\",\n    \"connectors/source-sample\",\n]\n\n[workspace.dependencies]\nweft-core = { path = \"crates/core\" }\nweft-source-sample = { path = \"connectors/source-sample\" }\ntokio = \"1\"\n\n[features]\ndefault = [\n    \"source-sample\",\n]\nsource-sample = [\"dep:weft-source-sample\"]\n\n[dependencies]\nweft-core.workspace = true\nweft-source-sample = { workspace = true, optional = true }\ntokio.workspace = true\n";
        let names = Names::new("crm", KindArg::Destination).unwrap();
        let out = register_in_manifest(manifest, &names).unwrap();
        assert_eq!(
            out,
            "[workspace]\nmembers = [\n    \"crates/core\",\n    \"connectors/source-sample\",\n    \"connectors/destination-crm\",\n]\n\n[workspace.dependencies]\nweft-core = { path = \"crates/core\" }\nweft-source-sample = { path = \"connectors/source-sample\" }\nweft-destination-crm = { path = \"connectors/destination-crm\" }\ntokio = \"1\"\n\n[features]\ndefault = [\n    \"source-sample\",\n    \"destination-crm\",\n]\nsource-sample = [\"dep:weft-source-sample\"]\ndestination-crm = [\"dep:weft-destination-crm\"]\n\n[dependencies]\nweft-core.workspace = true\nweft-source-sample = { workspace = true, optional = true }\nweft-destination-crm = { workspace = true, optional = true }\ntokio.workspace = true\n"
        );
        let err = register_in_manifest(&out, &names).unwrap_err();
        assert_eq!(
            err,
            "connector `destination-crm` is already a workspace member"
        );
        assert_eq!(
            register_in_manifest("[package]\n", &names).unwrap_err(),
            "no `members = [` list found"
        );
    }

    #[test]
    fn the_registry_gains_one_line_behind_the_feature() {
        let registry =
            "pub fn registry() -> Registry {\n    let registry = Registry::new();\n    registry\n}\n";
        let names = Names::new("crm", KindArg::Source).unwrap();
        assert_eq!(
            register_in_registry(registry, &names).unwrap(),
            "pub fn registry() -> Registry {\n    let registry = Registry::new();\n    #[cfg(feature = \"source-crm\")]\n    let registry = registry.with_source(weft_source_crm::CrmSourceFactory);\n    registry\n}\n"
        );
    }

    #[test]
    fn every_template_renders_for_both_kinds() {
        for kind in [KindArg::Source, KindArg::Destination] {
            let files = Names::new("web-events", kind).unwrap().render().unwrap();
            let text: String = files.iter().map(|(_, t)| t.as_str()).collect();
            assert!(text.contains("WebEvents"), "{text}");
            assert!(!text.contains("{{") && !text.contains("{%"), "{text}");
        }
    }
}
