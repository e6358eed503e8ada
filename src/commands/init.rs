//! `weft init DIR`: a runnable example project (the quickstart).

use std::path::Path;
use std::process::ExitCode;

use crate::exit::Failure;

/// The quickstart project, compiled in so `weft init` works from any installed binary.
const FILES: &[(&str, &str)] = &[
    (
        "weft.yaml",
        include_str!("../../configs/quickstart/weft.yaml"),
    ),
    (
        "domains/sales/shop.yaml",
        include_str!("../../configs/quickstart/domains/sales/shop.yaml"),
    ),
    (".gitignore", "/lake/\n/.weft/\n"),
];

pub fn run(dir: &Path) -> Result<ExitCode, Failure> {
    if dir.join("weft.yaml").exists() {
        return Err(Failure::config(format!(
            "{} already holds a weft project (weft.yaml); pick another folder",
            dir.display()
        )));
    }
    for (name, content) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Failure::failed(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, content)
            .map_err(|e| Failure::failed(format!("cannot write {}: {e}", path.display())))?;
    }
    println!(
        "Created a weft project in {dir}.\nRun it with:  weft --project {dir} sync run",
        dir = dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
