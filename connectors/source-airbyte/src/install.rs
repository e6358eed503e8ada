//! Installing PyPI connectors: one virtualenv per requirement and Python version, cached and
//! shared between projects, created under a file lock so concurrent runs install once.
//!
//! Interpreters are found as `python3.N` on PATH, in pyenv's folder (`$PYENV_ROOT/versions`,
//! default `~/.pyenv`) and in uv's (`$UV_PYTHON_INSTALL_DIR`, default
//! `~/.local/share/uv/python`), and each candidate is run once before it counts: a pyenv shim
//! for a version that is not selected is on PATH but does not run. Without a pinned `python`,
//! the working versions are tried newest first: a version pip refuses (Requires-Python) or on
//! which the connector fails to start (`spec`) is skipped, and the error lists every attempt.
//! A failed attempt is remembered per package, version and interpreter for a day, so commands
//! do not redo a long install that fails the same way; `weft connector install --force`
//! tries again.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weft_core::{ConnectorError, Result};

/// File written last into a complete virtualenv, naming its connector executable.
const MARKER: &str = "weft-installed.json";
/// The connector's spec, saved by the install's smoke test (for redaction by `airbyte_secret`).
const SPEC_FILE: &str = "weft-spec.json";
/// How long the `spec` smoke test may take (a cold start imports a lot of Python).
const SMOKE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long running an interpreter candidate to learn its version may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a failed install attempt is remembered.
const REMEMBER_FAILURE: Duration = Duration::from_secs(24 * 3600);

/// A PyPI requirement: a distribution name plus an optional version specifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub name: String,
    pub spec: String,
}

impl Requirement {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
            .unwrap_or(text.len());
        let (name, spec) = text.split_at(end);
        let spec = spec.trim();
        let bad = || {
            Err(format!(
                "`{text}` is not a PyPI requirement; write a package name with an optional \
                 version, e.g. `airbyte-source-faker==7.2.1`"
            ))
        };
        if name.is_empty() || name.starts_with(['-', '.', '_']) {
            return bad();
        }
        // Only version specifiers: no URLs, paths, options or environment markers.
        if !spec
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "=<>!~.,* ".contains(c))
        {
            return bad();
        }
        Ok(Self {
            name: name.to_string(),
            spec: spec.replace(' ', ""),
        })
    }

    /// PEP 503 normalised name (`Airbyte_Source.Faker` → `airbyte-source-faker`).
    pub fn normalised_name(&self) -> String {
        normalise(&self.name)
    }

    fn cache_key(&self) -> String {
        let mut key = self.normalised_name();
        if !self.spec.is_empty() {
            key.push('-');
            key.extend(self.spec.chars().map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            }));
        }
        key
    }

    fn as_pip_arg(&self) -> String {
        format!("{}{}", self.name, self.spec)
    }
}

fn normalise(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if matches!(c, '.' | '_' | '-') {
            '-'
        } else {
            c.to_ascii_lowercase()
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out
}

/// Parses `"3.10"` into its minor version.
pub fn parse_python_version(text: &str) -> Result<u32, String> {
    text.trim()
        .strip_prefix("3.")
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| format!("`{text}` is not a Python version; write it like \"3.10\""))
}

/// Where connector virtualenvs live.
pub fn cache_root() -> Result<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("WEFT_CONNECTOR_CACHE") {
        return Ok(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(dir.join("weft").join("connectors"));
    }
    if let Some(home) = var("HOME") {
        return Ok(home.join(".cache").join("weft").join("connectors"));
    }
    Err(ConnectorError::Other(
        "no cache folder for connector virtualenvs: set WEFT_CONNECTOR_CACHE (or HOME)".into(),
    ))
}

/// An installed connector.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Installed {
    /// The connector's console script.
    pub executable: PathBuf,
    /// The Python version of its virtualenv (`3.11`).
    pub python: String,
    /// The requirement it was installed for (absent in virtualenvs of older weft versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirement: Option<String>,
}

/// What [`install_package`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    pub installed: Installed,
    /// The virtualenv folder.
    pub venv: PathBuf,
    /// The interpreter the connector runs on (the virtualenv's python, symlinks resolved).
    pub interpreter: PathBuf,
    /// Whether an existing virtualenv was reused rather than created.
    pub reused: bool,
}

/// Installs a PyPI connector ahead of a sync (`weft connector install`), or finds it
/// installed; the same virtualenv a sync of `package: <requirement>` then uses.
pub fn install_package(
    requirement: &str,
    python: Option<&str>,
    force: bool,
) -> Result<InstallReport> {
    let (mut installed, reused) = ensure(requirement, python, force)?;
    installed
        .requirement
        .get_or_insert_with(|| requirement.trim().to_string());
    let venv = installed
        .executable
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let python = venv.join("bin").join("python");
    let interpreter = fs::canonicalize(&python).unwrap_or(python);
    Ok(InstallReport {
        installed,
        venv,
        interpreter,
        reused,
    })
}

/// The connectors installed in the cache, by folder name.
pub fn installed_packages() -> Vec<Installed> {
    let Ok(root) = cache_root() else {
        return Vec::new();
    };
    let mut found: Vec<(String, Installed)> = fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let mut installed = read_marker(&e.path())?;
            let folder = e.file_name().to_string_lossy().into_owned();
            if installed.requirement.is_none() {
                installed.requirement =
                    Some(installed_version(&e.path(), &folder).unwrap_or_else(|| folder.clone()));
            }
            Some((folder, installed))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.into_iter().map(|(_, i)| i).collect()
}

/// A Python 3 interpreter that ran and reported its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    pub minor: u32,
    pub path: PathBuf,
}

/// Where interpreters are looked for: the process's environment, or a test's.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub path: Option<std::ffi::OsString>,
    pub pyenv_root: Option<PathBuf>,
    pub uv_dir: Option<PathBuf>,
}

impl Search {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let home = var("HOME").map(PathBuf::from);
        Self {
            path: var("PATH"),
            pyenv_root: var("PYENV_ROOT")
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".pyenv"))),
            uv_dir: var("UV_PYTHON_INSTALL_DIR")
                .map(PathBuf::from)
                .or_else(|| {
                    var("XDG_DATA_HOME").map(|d| PathBuf::from(d).join("uv").join("python"))
                })
                .or_else(|| home.map(|h| h.join(".local").join("share").join("uv").join("python"))),
        }
    }

    /// Candidates for Python 3.`minor`, best first: PATH, then pyenv's and uv's folders
    /// (newest patch release first).
    fn candidates(&self, minor: u32) -> Vec<PathBuf> {
        let name = format!("python3.{minor}");
        let mut out = Vec::new();
        if let Some(path) = &self.path {
            if let Some(p) = std::env::split_paths(path)
                .map(|dir| dir.join(&name))
                .find(|p| is_executable(p))
            {
                out.push(p);
            }
        }
        let versioned = |root: Option<&PathBuf>, strip: &str| -> Vec<PathBuf> {
            let mut found: Vec<(u32, PathBuf)> = root
                .and_then(|r| fs::read_dir(r).ok())
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let folder = e.file_name().to_string_lossy().into_owned();
                    let version = folder.strip_prefix(strip)?;
                    let mut parts = version.split(['.', '-']);
                    let (major, m, patch) = (parts.next()?, parts.next()?, parts.next());
                    if major != "3" || m.parse::<u32>().ok()? != minor {
                        return None;
                    }
                    let patch = patch.and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
                    let exe = e.path().join("bin").join(&name);
                    is_executable(&exe).then_some((patch, exe))
                })
                .collect();
            found.sort_by_key(|f| std::cmp::Reverse(f.0));
            found.into_iter().map(|(_, p)| p).collect()
        };
        let pyenv = self.pyenv_root.as_ref().map(|r| r.join("versions"));
        out.extend(versioned(pyenv.as_ref(), ""));
        out.extend(versioned(self.uv_dir.as_ref(), "cpython-"));
        out.dedup();
        out
    }
}

/// What a search found: one working interpreter per version, newest first, and the candidates
/// that did not run (path, and why: the cause first, as the candidate said it).
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub working: Vec<Interpreter>,
    pub broken: Vec<(PathBuf, String)>,
}

impl Found {
    pub fn get(&self, minor: u32) -> Option<&Interpreter> {
        self.working.iter().find(|i| i.minor == minor)
    }

    fn versions(&self) -> String {
        list_versions(&self.working.iter().map(|i| i.minor).collect::<Vec<_>>())
    }

    /// Why no candidate for 3.`minor` worked, if any was found.
    fn why_not(&self, minor: u32) -> Option<String> {
        let name = format!("python3.{minor}");
        let causes: Vec<String> = self
            .broken
            .iter()
            .filter(|(p, _)| p.file_name().is_some_and(|n| n == name.as_str()))
            .map(|(p, why)| format!("{} does not run: {why}", p.display()))
            .collect();
        (!causes.is_empty()).then(|| causes.join("; "))
    }
}

/// Finds the working Python 3 interpreters, running each candidate once.
pub fn find_interpreters(search: &Search) -> Found {
    let mut found = Found::default();
    for minor in (6..=30).rev() {
        for candidate in search.candidates(minor) {
            match probe(&candidate) {
                Ok(got) if got == minor => {
                    found.working.push(Interpreter {
                        minor,
                        path: candidate,
                    });
                    break;
                }
                Ok(got) => found
                    .broken
                    .push((candidate, format!("it is Python 3.{got}"))),
                Err(why) => found.broken.push((candidate, why)),
            }
        }
    }
    found
}

/// The interpreters of this process's environment, searched once.
pub fn interpreters() -> &'static Found {
    static FOUND: std::sync::OnceLock<Found> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| find_interpreters(&Search::from_env()))
}

/// Runs `python` to learn its minor version; the error is what it printed, cause first.
fn probe(python: &Path) -> Result<u32, String> {
    let (ok, out) = run_quiet(
        Command::new(python).args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]),
        PROBE_TIMEOUT,
    )?;
    let last = out
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    match last.strip_prefix("3.").and_then(|m| m.parse::<u32>().ok()) {
        Some(minor) if ok => Ok(minor),
        _ => Err(if out.trim().is_empty() {
            "it printed nothing".to_string()
        } else {
            first_lines(&out, 1)
        }),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first executable file called `name` on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// `name==version` of the distribution a virtualenv was made for, from its `.dist-info`
/// (markers of older weft versions do not record the requirement).
fn installed_version(venv: &Path, folder: &str) -> Option<String> {
    let key = folder.rsplit_once("-py3.").map_or(folder, |(k, _)| k);
    let mut best: Option<(String, String)> = None;
    for lib in fs::read_dir(venv.join("lib")).ok()?.flatten() {
        for entry in fs::read_dir(lib.path().join("site-packages"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some((dist, version)) = file_name
                .strip_suffix(".dist-info")
                .and_then(|stem| stem.rsplit_once('-'))
            else {
                continue;
            };
            let dist = normalise(dist);
            // The longest match: `airbyte-source-x` over a dependency called `airbyte`.
            let fits = key == dist || key.starts_with(&format!("{dist}-"));
            if fits && best.as_ref().is_none_or(|(d, _)| d.len() < dist.len()) {
                best = Some((dist, version.to_string()));
            }
        }
    }
    best.map(|(dist, version)| format!("{dist}=={version}"))
}

/// Installs `requirement` (once) and returns its executable.
pub fn ensure_installed(requirement: &str, python: Option<&str>) -> Result<Installed> {
    ensure(requirement, python, false).map(|(installed, _)| installed)
}

/// The spec a package's install saved, for the connector `program` runs.
pub fn saved_spec(program: &crate::process::Program) -> Option<serde_json::Value> {
    let exe = Path::new(program.argv.first()?);
    let venv = exe.parent()?.parent()?;
    if !venv.join(MARKER).is_file() {
        return None;
    }
    serde_json::from_slice(&fs::read(venv.join(SPEC_FILE)).ok()?).ok()
}

/// Saves a package connector's spec in its virtualenv (installs of older weft versions have
/// none), so later runs need not start the connector for it; a command's is not saved.
pub fn save_spec(program: &crate::process::Program, spec: &serde_json::Value) {
    let Some(venv) = Path::new(&program.argv[0]).parent().and_then(Path::parent) else {
        return;
    };
    if venv.join(MARKER).is_file() {
        let _ = fs::write(
            venv.join(SPEC_FILE),
            serde_json::to_vec(spec).expect("JSON"),
        );
    }
}

/// A failed attempt, remembered next to the virtualenv it would have been.
#[derive(serde::Serialize, serde::Deserialize)]
struct Remembered {
    message: String,
    /// Seconds since the Unix epoch.
    at: u64,
    /// No other interpreter would help: the package failed by itself.
    #[serde(default)]
    no_other: bool,
}

fn failure_file(venv: &Path) -> PathBuf {
    let mut name = venv.file_name().unwrap_or_default().to_os_string();
    name.push(".failed.json");
    venv.with_file_name(name)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn remembered_failure(venv: &Path) -> Option<Remembered> {
    let r: Remembered = serde_json::from_slice(&fs::read(failure_file(venv)).ok()?).ok()?;
    (now_secs().saturating_sub(r.at) < REMEMBER_FAILURE.as_secs()).then_some(r)
}

fn remember_failure(venv: &Path, message: &str, no_other: bool) {
    let r = Remembered {
        message: message.to_string(),
        at: now_secs(),
        no_other,
    };
    let _ = fs::write(failure_file(venv), serde_json::to_vec(&r).expect("JSON"));
}

/// As [`ensure_installed`], plus whether it was installed already. `force` forgets failures
/// remembered from earlier attempts.
fn ensure(requirement: &str, python: Option<&str>, force: bool) -> Result<(Installed, bool)> {
    let req = Requirement::parse(requirement).map_err(|e| ConnectorError::config("package", e))?;
    let root = cache_root()?;
    fs::create_dir_all(&root).map_err(|e| ConnectorError::io("creating", &root, e))?;
    let venv_of = |minor: u32| root.join(format!("{}-py3.{minor}", req.cache_key()));
    let pinned = python
        .map(parse_python_version)
        .transpose()
        .map_err(|e| ConnectorError::config("python", e))?;
    // An installed virtualenv needs no interpreter search (newest first when not pinned).
    let installed = match pinned {
        Some(minor) => read_marker(&venv_of(minor)),
        None => (6..=30)
            .rev()
            .find_map(|minor| read_marker(&venv_of(minor))),
    };
    if let Some(done) = installed {
        return Ok((done, true));
    }
    let found = interpreters();
    let candidates: Vec<u32> = match pinned {
        Some(minor) => vec![minor],
        None => found.working.iter().map(|i| i.minor).collect(),
    };
    let ready = |candidates: &[u32]| {
        candidates
            .iter()
            .find_map(|&minor| read_marker(&venv_of(minor)))
    };
    if let Some(done) = ready(&candidates) {
        return Ok((done, true));
    }
    if candidates.is_empty() {
        let broken = if found.broken.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                found
                    .broken
                    .iter()
                    .map(|(p, why)| format!("{} does not run: {why}", p.display()))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        return Err(ConnectorError::Other(format!(
            "cannot install `{requirement}`: no working Python 3 interpreter found on PATH or \
             in pyenv's or uv's folders{broken}; install Python 3.10 or newer, or run an \
             installed connector with `command`"
        )));
    }
    let lock_path = root.join(format!("{}.lock", req.cache_key()));
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| ConnectorError::io("creating", &lock_path, e))?;
    lock.lock()
        .map_err(|e| ConnectorError::io("locking", &lock_path, e))?;
    // Another process may have installed it while we waited for the lock.
    if let Some(done) = ready(&candidates) {
        return Ok((done, true));
    }
    let mut attempts = Vec::new();
    let mut remembered = 0;
    for &minor in &candidates {
        let Some(interpreter) = found.get(minor) else {
            let cause = found.why_not(minor).unwrap_or_else(|| {
                format!("python3.{minor} is not on PATH nor in pyenv's or uv's folders")
            });
            return Err(ConnectorError::Other(format!(
                "cannot install `{requirement}`: no working Python 3.{minor}: {cause}; install \
                 Python 3.{minor}, or remove `python` to use another installed version (found: \
                 {})",
                found.versions()
            )));
        };
        let venv = venv_of(minor);
        if force {
            let _ = fs::remove_file(failure_file(&venv));
        } else if let Some(failed) = remembered_failure(&venv) {
            if failed.no_other {
                return Err(ConnectorError::Other(format!(
                    "cannot install `{requirement}` with Python 3.{minor}: {} (remembered from \
                     an earlier attempt: `weft connector install {requirement} --force` tries \
                     again)",
                    failed.message
                )));
            }
            remembered += 1;
            attempts.push(format!("Python 3.{minor}: {}", failed.message));
            continue;
        }
        tracing::info!(package = %requirement, python = %interpreter.path.display(), venv = %venv.display(), "installing the Airbyte connector");
        match install_into(&req, &interpreter.path, &venv) {
            Ok(executable) => {
                let installed = Installed {
                    executable,
                    python: format!("3.{minor}"),
                    requirement: Some(requirement.to_string()),
                };
                let marker = venv.join(MARKER);
                fs::write(&marker, serde_json::to_vec(&installed).expect("JSON"))
                    .map_err(|e| ConnectorError::io("writing", &marker, e))?;
                return Ok((installed, false));
            }
            Err(Attempt::Fatal(message)) => {
                let _ = fs::remove_dir_all(&venv);
                return Err(ConnectorError::Other(format!(
                    "cannot install `{requirement}` with Python 3.{minor}: {message}"
                )));
            }
            Err(Attempt::Broken(message)) => {
                let _ = fs::remove_dir_all(&venv);
                remember_failure(&venv, &message, true);
                return Err(ConnectorError::Other(format!(
                    "cannot install `{requirement}` with Python 3.{minor}: {message}"
                )));
            }
            Err(Attempt::TryAnother(message)) => {
                let _ = fs::remove_dir_all(&venv);
                remember_failure(&venv, &message, false);
                tracing::info!(package = %requirement, "Python 3.{minor} does not work: {message}");
                attempts.push(format!("Python 3.{minor}: {message}"));
            }
        }
    }
    let hint = if python.is_some() {
        format!(
            "set `python` to another installed version ({}), or remove it to try them all",
            found.versions()
        )
    } else {
        "install a Python version the package supports (see its Requires-Python on PyPI) and \
         set `python`, e.g. `python: \"3.10\"`"
            .to_string()
    };
    let retry = if remembered > 0 {
        format!(
            "; {} remembered from an earlier attempt: `weft connector install {requirement} \
             --force` tries again",
            if remembered == 1 {
                "this failure is"
            } else {
                "these failures are"
            }
        )
    } else {
        String::new()
    };
    Err(ConnectorError::Other(format!(
        "cannot install `{requirement}`: {}; {hint}{retry}",
        attempts.join("; ")
    )))
}

fn list_versions(minors: &[u32]) -> String {
    if minors.is_empty() {
        return "none".into();
    }
    minors
        .iter()
        .map(|m| format!("3.{m}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_marker(venv: &Path) -> Option<Installed> {
    let installed: Installed = serde_json::from_slice(&fs::read(venv.join(MARKER)).ok()?).ok()?;
    is_executable(&installed.executable).then_some(installed)
}

enum Attempt {
    /// This interpreter does not fit; another may.
    TryAnother(String),
    /// No interpreter will help (the package does not exist, the network is down…).
    Fatal(String),
    /// The connector started but failed by itself (a TRACE error from `spec`): no interpreter
    /// will help, and the same install would fail the same way, so it is remembered.
    Broken(String),
}

fn install_into(req: &Requirement, interpreter: &Path, venv: &Path) -> Result<PathBuf, Attempt> {
    let _ = fs::remove_dir_all(venv);
    let out = run_quiet(
        Command::new(interpreter).arg("-m").arg("venv").arg(venv),
        Duration::from_secs(300),
    )
    .map_err(Attempt::Fatal)?;
    if !out.0 {
        let text = out.1;
        let hint = if text.contains("ensurepip") || text.contains("No module named venv") {
            " (this Python lacks venv/pip support; on Debian/Ubuntu install the python3.N-venv \
             package)"
        } else {
            ""
        };
        return Err(Attempt::TryAnother(format!(
            "creating the virtualenv failed: {}{hint}",
            last_lines(&text, 3)
        )));
    }
    let python = venv.join("bin").join("python");
    let out = run_quiet(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
            ])
            .arg(req.as_pip_arg()),
        Duration::from_secs(1800),
    )
    .map_err(Attempt::Fatal)?;
    if !out.0 {
        let text = out.1;
        if text.contains("require a different python version") || text.contains("Requires-Python") {
            return Err(Attempt::TryAnother(
                "the package does not support this Python version (Requires-Python)".into(),
            ));
        }
        if text.contains("No matching distribution found")
            || text.contains("Could not find a version")
        {
            return Err(Attempt::Fatal(format!(
                "pip found no such package on PyPI; check the name and version (pip: {})",
                last_lines(&text, 2)
            )));
        }
        if text.contains("Failed to establish a new connection")
            || text.contains("Temporary failure in name resolution")
            || text.contains("Max retries exceeded")
        {
            return Err(Attempt::Fatal(format!(
                "PyPI is unreachable; check the network or a pip proxy (pip: {})",
                last_lines(&text, 2)
            )));
        }
        return Err(Attempt::TryAnother(format!(
            "pip install failed: {}",
            last_lines(&text, 4)
        )));
    }
    let (executable, module) = console_script(req, venv).ok_or_else(|| {
        Attempt::Fatal(format!(
            "the package installs no console script to run; is `{}` an Airbyte connector?",
            req.name
        ))
    })?;
    // Importing the entry point's module first tells a connector that does not run on this
    // Python (a dependency or the CDK incompatible with it) by its own exception, before the
    // full `spec` start.
    if let Some(module) = module {
        probe_import(&python, &module)?;
    }
    // A connector that cannot even print its spec (an import error on this Python) is no use.
    let out =
        run_quiet(Command::new(&executable).arg("spec"), SMOKE_TIMEOUT).map_err(Attempt::Fatal)?;
    let spec = out.1.lines().find_map(|l| {
        let m: serde_json::Value = serde_json::from_str(l).ok()?;
        (m.get("type")?.as_str()? == "SPEC").then(|| m.get("spec").cloned())?
    });
    // A TRACE error means Python imported the connector, which then failed by itself.
    let trace = out.1.lines().find_map(|l| {
        let m: serde_json::Value = serde_json::from_str(l).ok()?;
        (m.get("type")?.as_str()? == "TRACE").then_some(())?;
        let error = m.pointer("/trace/error")?;
        let text = |k: &str| error.get(k).and_then(serde_json::Value::as_str);
        Some(crate::session::trace_error_text(
            text("message"),
            text("internal_message"),
            text("stack_trace"),
        ))
    });
    if let (None, Some(trace)) = (&spec, trace) {
        return Err(Attempt::Broken(format!(
            "the connector starts but its `spec` fails: {}",
            trace.chars().take(400).collect::<String>()
        )));
    }
    let Some(spec) = spec.filter(|_| out.0) else {
        return Err(Attempt::TryAnother(format!(
            "the connector does not start (`{} spec`): {}",
            executable.display(),
            last_lines(&out.1, 3)
        )));
    };
    let _ = fs::write(
        venv.join(SPEC_FILE),
        serde_json::to_vec(&spec).expect("JSON"),
    );
    Ok(executable)
}

/// Imports `module` with the virtualenv's `python`: a failure is this interpreter's (try
/// another), told by the exception Python raised, cause first.
fn probe_import(python: &Path, module: &str) -> Result<(), Attempt> {
    let (ok, out) = run_quiet(
        Command::new(python).args(["-c", &format!("import {module}")]),
        SMOKE_TIMEOUT,
    )
    .map_err(Attempt::Fatal)?;
    if ok {
        return Ok(());
    }
    Err(Attempt::TryAnother(format!(
        "the connector does not import (`import {module}`): {}",
        import_error(&out)
    )))
}

/// The exception of a Python traceback (its last line, `ValueError: …`), then where it was
/// raised (the last `File "…", line N` of the traceback).
fn import_error(out: &str) -> String {
    let lines: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let Some(exception) = lines.last() else {
        return "Python printed nothing".into();
    };
    let exception: String = exception.chars().take(300).collect();
    match lines.iter().rev().find(|l| l.starts_with("File \"")) {
        Some(at) => format!("{exception} (at {at})"),
        None => exception,
    }
}

/// The package's console script and the module its entry point names (`source_faker.run` of
/// `source-faker = source_faker.run:run`): from its `entry_points.txt`, preferring the name
/// without the `airbyte-` prefix (`airbyte-source-faker` → `source-faker`).
fn console_script(req: &Requirement, venv: &Path) -> Option<(PathBuf, Option<String>)> {
    let bin = venv.join("bin");
    let wanted = req.normalised_name();
    let short = wanted
        .strip_prefix("airbyte-")
        .unwrap_or(&wanted)
        .to_string();
    let mut scripts = Vec::new();
    for lib in fs::read_dir(venv.join("lib")).ok()?.flatten() {
        let site = lib.path().join("site-packages");
        for entry in fs::read_dir(&site).into_iter().flatten().flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = file_name.strip_suffix(".dist-info") else {
                continue;
            };
            let dist = stem.rsplit_once('-').map_or(stem, |(n, _)| n);
            if normalise(dist) != wanted {
                continue;
            }
            let text =
                fs::read_to_string(entry.path().join("entry_points.txt")).unwrap_or_default();
            let mut in_scripts = false;
            for line in text.lines().map(str::trim) {
                if line.starts_with('[') {
                    in_scripts = line == "[console_scripts]";
                } else if in_scripts {
                    if let Some((name, target)) = line.split_once('=') {
                        let module = target.split(':').next().unwrap_or_default().trim();
                        let importable = !module.is_empty()
                            && module
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
                        scripts.push((
                            name.trim().to_string(),
                            importable.then(|| module.to_string()),
                        ));
                    }
                }
            }
        }
    }
    scripts.sort_by_key(|(s, _)| s != &short);
    scripts
        .into_iter()
        .chain([(short, None)])
        .map(|(s, module)| (bin.join(s), module))
        .find(|(p, _)| is_executable(p))
}

/// Runs a command with stdout+stderr captured; (success, output), or an error if it cannot
/// start or outlives `timeout`.
fn run_quiet(cmd: &mut Command, timeout: Duration) -> Result<(bool, String), String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let log = dir.path().join("out.log");
    let file = fs::File::create(&log).map_err(|e| format!("cannot create a temp file: {e}"))?;
    let file2 = file.try_clone().map_err(|e| e.to_string())?;
    crate::process::contain(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(file2)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let pid = child.id();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > timeout {
            crate::process::kill_group(pid);
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{program} took longer than {}s and was stopped",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // pip's build helpers and the like die with their group.
    crate::process::kill_group(pid);
    let text = String::from_utf8_lossy(&fs::read(&log).unwrap_or_default()).into_owned();
    Ok((status.success(), text))
}

fn first_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .collect();
    lines.join(" | ")
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_are_names_and_version_specifiers_only() {
        let r = Requirement::parse("Airbyte_Source.Faker == 7.2.1").unwrap();
        assert_eq!(r.normalised_name(), "airbyte-source-faker");
        assert_eq!(r.as_pip_arg(), "Airbyte_Source.Faker==7.2.1");
        assert_eq!(r.cache_key(), "airbyte-source-faker-__7.2.1");
        for bad in [
            "",
            "--index-url=http://x",
            "./local",
            "x @ https://evil",
            "x; os_name",
        ] {
            assert!(Requirement::parse(bad).is_err(), "{bad}");
        }
    }

    fn script(path: &Path, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_shim_that_does_not_run_is_not_counted_and_pyenv_and_uv_are_searched() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("shims");
        // A pyenv shim for a version that is not selected: on PATH, but it does not run.
        script(
            &bin.join("python3.27"),
            "echo 'pyenv: python3.27: command not found' >&2\necho 'The `python3.27` command exists in these Python versions:' >&2\nexit 127",
        );
        script(&bin.join("python3.26"), "echo 3.26");
        // A shim of another version under this name reports the wrong version.
        script(&bin.join("python3.25"), "echo 3.11");
        let pyenv = dir.path().join("pyenv");
        script(&pyenv.join("versions/3.27.1/bin/python3.27"), "echo 3.27");
        script(&pyenv.join("versions/3.27.10/bin/python3.27"), "echo 3.27");
        script(&pyenv.join("versions/2.7.18/bin/python2.7"), "echo 2.7");
        let uv = dir.path().join("uv");
        script(
            &uv.join("cpython-3.24.2-linux-x86_64-gnu/bin/python3.24"),
            "echo 3.24",
        );
        let search = Search {
            path: Some(bin.into_os_string()),
            pyenv_root: Some(pyenv.clone()),
            uv_dir: Some(uv.clone()),
        };
        let found = find_interpreters(&search);
        let working: Vec<(u32, PathBuf)> = found
            .working
            .iter()
            .map(|i| (i.minor, i.path.clone()))
            .collect();
        assert_eq!(
            working,
            [
                (27, pyenv.join("versions/3.27.10/bin/python3.27")),
                (26, dir.path().join("shims/python3.26")),
                (
                    24,
                    uv.join("cpython-3.24.2-linux-x86_64-gnu/bin/python3.24")
                ),
            ]
        );
        assert_eq!(
            found.why_not(27).unwrap(),
            format!(
                "{} does not run: pyenv: python3.27: command not found",
                dir.path().join("shims/python3.27").display()
            )
        );
        assert_eq!(
            found.why_not(25).unwrap(),
            format!(
                "{} does not run: it is Python 3.11",
                dir.path().join("shims/python3.25").display()
            )
        );
        assert_eq!(found.versions(), "3.27, 3.26, 3.24");
    }

    #[test]
    fn failures_are_remembered_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("airbyte-source-x-__1.0-py3.12");
        assert!(remembered_failure(&venv).is_none());
        remember_failure(
            &venv,
            "the package does not support this Python version",
            false,
        );
        let failed = remembered_failure(&venv).unwrap();
        assert_eq!(
            (failed.message.as_str(), failed.no_other),
            ("the package does not support this Python version", false)
        );
        assert!(failure_file(&venv).ends_with("airbyte-source-x-__1.0-py3.12.failed.json"));
        let old = Remembered {
            message: "old".into(),
            at: now_secs() - REMEMBER_FAILURE.as_secs() - 1,
            no_other: true,
        };
        fs::write(failure_file(&venv), serde_json::to_vec(&old).unwrap()).unwrap();
        assert!(remembered_failure(&venv).is_none());
    }

    #[test]
    fn an_import_error_is_told_by_its_exception_first() {
        let traceback = "Traceback (most recent call last):\n  File \"<string>\", line 1, in <module>\n  File \"/v/lib/python3.11/site-packages/airbyte_cdk/sources/declarative/decoders/json_decoder.py\", line 20, in <module>\n    @dataclass\n\nValueError: mutable default <class 'dict'> for field parameters is not allowed: use default_factory\n";
        assert_eq!(
            import_error(traceback),
            "ValueError: mutable default <class 'dict'> for field parameters is not allowed: use default_factory (at File \"/v/lib/python3.11/site-packages/airbyte_cdk/sources/declarative/decoders/json_decoder.py\", line 20, in <module>)"
        );
        assert_eq!(
            import_error("ModuleNotFoundError: No module named 'x'\n"),
            "ModuleNotFoundError: No module named 'x'"
        );
        assert_eq!(import_error(""), "Python printed nothing");
    }

    #[test]
    fn python_versions() {
        assert_eq!(parse_python_version("3.10"), Ok(10));
        assert!(parse_python_version("2.7").is_err());
    }
}
