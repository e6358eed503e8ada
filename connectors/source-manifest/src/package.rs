//! Manifests out of published connector packages: `package: airbyte-source-xyz==1.2.3` (looked
//! up in a package index's JSON API, PyPI's by default) or `wheel: path/to/file.whl` (a wheel
//! already in the project). No Python: a wheel is a zip; weft reads the manifest, its spec and
//! its schema files out of it and caches them under the project's `.weft/manifests/`.
//!
//! A cache entry is complete or absent: files are unpacked into a temporary folder that is
//! renamed into place, so a run killed mid-download unpacks again next time.

use std::io::{Cursor, Read};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ManifestSourceError;

/// The index weft asks when a config names none (PyPI's JSON API).
pub const DEFAULT_INDEX: &str = "https://pypi.org/pypi";

/// Most a wheel's unpacked manifest files may weigh (a guard against zip bombs).
const MAX_UNPACKED: u64 = 64 << 20;

/// Where a package's unpacked files are recorded within its cache entry.
const MARKER: &str = "weft-package.json";

/// A pinned requirement, `name==version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Normalised as the index does (PEP 503: lower case, runs of `-_.` as one `-`).
    pub name: String,
    pub version: String,
}

impl Requirement {
    /// Parses `airbyte-source-xyz==1.2.3`; anything but an exact pin is refused, since an
    /// unpinned manifest would change under a product between two runs.
    pub fn parse(text: &str) -> Result<Self, ManifestSourceError> {
        let err = |why: &str| {
            ManifestSourceError::Config(format!(
                "`package: {text}`: {why}; write it as `airbyte-source-NAME==VERSION`"
            ))
        };
        let (name, version) = text.split_once("==").ok_or_else(|| err("pin a version"))?;
        let (name, version) = (name.trim(), version.trim());
        let plain = |s: &str, extra: &[char]| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
        };
        if !plain(name, &['-', '_', '.']) {
            return Err(err("the name is not a package name"));
        }
        if !plain(version, &['.', '-', '_', '+', '!']) {
            return Err(err("the version is not an exact version"));
        }
        Ok(Self {
            name: normalise(name),
            version: version.to_string(),
        })
    }
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}=={}", self.name, self.version)
    }
}

fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// What a cache entry holds: the manifest's path within it, and where it came from.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    manifest: PathBuf,
    wheel: String,
    sha256: String,
}

/// The parts of the index's JSON answer weft reads.
#[derive(Debug, Deserialize)]
struct Release {
    #[serde(default)]
    urls: Vec<ReleaseFile>,
}

#[derive(Debug, Deserialize)]
struct ReleaseFile {
    filename: String,
    url: String,
    packagetype: String,
    #[serde(default)]
    digests: Digests,
}

#[derive(Debug, Default, Deserialize)]
struct Digests {
    sha256: Option<String>,
}

/// The manifest of `requirement`, from the cache under `cache` or downloaded from `index`.
/// Blocking: it runs the download on a runtime of its own, so it can be called from a
/// connector factory whether or not a runtime is running.
pub fn manifest_of_package(
    requirement: &Requirement,
    index: &str,
    cache: &Path,
) -> Result<PathBuf, ManifestSourceError> {
    let entry = cache.join(&requirement.name).join(&requirement.version);
    if let Some(path) = cached(&entry)? {
        return Ok(path);
    }
    let index = url::Url::parse(index.trim_end_matches('/'))
        .map_err(|e| ManifestSourceError::Config(format!("`index_url: {}`: {e}", shown(index))))?;
    if !matches!(index.scheme(), "http" | "https") {
        return Err(ManifestSourceError::Config(format!(
            "`index_url: {}`: a package index is reached over http:// or https://; for a wheel \
             file already here, name it with `wheel:` instead of `package:` ({requirement})",
            shown(index.as_str()),
        )));
    }
    let requirement = requirement.clone();
    let (wheel_name, bytes) = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| ManifestSourceError::Other(format!("starting a runtime: {e}")))?;
            rt.block_on(download(&requirement, &index))
        })
        .join()
        .unwrap_or_else(|_| Err(ManifestSourceError::Other("the download panicked".into())))
    })?;
    unpack(&bytes, &wheel_name, &entry, &requirement.to_string())
}

/// The manifest of the wheel file at `wheel`, unpacked into `cache` (keyed by its digest).
pub fn manifest_of_wheel(wheel: &Path, cache: &Path) -> Result<PathBuf, ManifestSourceError> {
    let bytes = std::fs::read(wheel)
        .map_err(|e| ManifestSourceError::Config(format!("`wheel: {}`: {e}", wheel.display())))?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let entry = cache.join("wheels").join(&digest[..32]);
    if let Some(path) = cached(&entry)? {
        return Ok(path);
    }
    let name = wheel
        .file_name()
        .map_or_else(|| "the wheel".into(), |n| n.to_string_lossy().into_owned());
    unpack(&bytes, &name, &entry, &wheel.display().to_string())
}

/// The manifest of a complete cache entry, if there is one.
fn cached(entry: &Path) -> Result<Option<PathBuf>, ManifestSourceError> {
    let Ok(text) = std::fs::read_to_string(entry.join(MARKER)) else {
        return Ok(None);
    };
    let marker: Marker = serde_json::from_str(&text).map_err(|e| {
        ManifestSourceError::Other(format!(
            "the manifest cache {} is damaged ({e}); delete that folder",
            entry.display()
        ))
    })?;
    Ok(Some(entry.join(marker.manifest)))
}

/// A URL as errors show it: without credentials.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

async fn download(
    requirement: &Requirement,
    index: &url::Url,
) -> Result<(String, Vec<u8>), ManifestSourceError> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("weft/", env!("CARGO_PKG_VERSION")))
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .map_err(|e| ManifestSourceError::Other(format!("building the HTTP client: {e}")))?;
    let what = format!("package {requirement}");
    let release_url = format!(
        "{}/{}/{}/json",
        index.as_str().trim_end_matches('/'),
        requirement.name,
        requirement.version
    );
    let release: Release = get(&client, &release_url, &what)
        .await?
        .json()
        .await
        .map_err(|e| {
            ManifestSourceError::Package(format!(
                "{what}: the index's answer at {} is not a release ({e})",
                shown(&release_url)
            ))
        })?;
    let file = release
        .urls
        .iter()
        .filter(|f| f.packagetype == "bdist_wheel")
        .min_by_key(|f| !f.filename.ends_with("-none-any.whl"))
        .ok_or_else(|| {
            ManifestSourceError::Package(format!(
                "{what}: the index lists no wheel for this version (only {}); name another version",
                if release.urls.is_empty() {
                    "nothing".to_string()
                } else {
                    release
                        .urls
                        .iter()
                        .map(|f| f.filename.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))
        })?;
    let wheel_url = index.join(&file.url).map_err(|e| {
        ManifestSourceError::Package(format!("{what}: the wheel's URL `{}`: {e}", file.url))
    })?;
    let bytes = get(&client, wheel_url.as_str(), &what)
        .await?
        .bytes()
        .await
        .map_err(|e| {
            ManifestSourceError::Package(format!(
                "{what}: downloading {}: {e}",
                shown(wheel_url.as_str())
            ))
        })?;
    if let Some(want) = &file.digests.sha256 {
        let got = hex::encode(Sha256::digest(&bytes));
        if !got.eq_ignore_ascii_case(want) {
            return Err(ManifestSourceError::Package(format!(
                "{what}: {} does not match the index's sha256 ({got} instead of {want}); nothing was cached, run again",
                file.filename
            )));
        }
    }
    Ok((file.filename.clone(), bytes.to_vec()))
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    what: &str,
) -> Result<reqwest::Response, ManifestSourceError> {
    let response = client.get(url).send().await.map_err(|e| {
        ManifestSourceError::Package(format!("{what}: {}: {}", shown(url), e.without_url()))
    })?;
    match response.status() {
        s if s.is_success() => Ok(response),
        s if s.as_u16() == 404 => Err(ManifestSourceError::Package(format!(
            "{what}: not found on the index ({} answered 404); check the name and the version",
            shown(url)
        ))),
        s => Err(ManifestSourceError::Package(format!(
            "{what}: {} answered {s}",
            shown(url)
        ))),
    }
}

/// Unpacks the manifest, spec and schema files of `bytes` (a wheel) into `entry`.
fn unpack(
    bytes: &[u8],
    wheel: &str,
    entry: &Path,
    what: &str,
) -> Result<PathBuf, ManifestSourceError> {
    let bad = |why: String| ManifestSourceError::Package(format!("{what}: {wheel}: {why}"));
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| bad(format!("not a wheel (zip): {e}")))?;
    let mut names: Vec<PathBuf> = (0..archive.len())
        .filter_map(|i| archive.by_index(i).ok()?.enclosed_name())
        .collect();
    names.sort();
    // Published manifest connectors keep it as `source_xyz/manifest.yaml`.
    let package = names
        .iter()
        .find(|n| n.components().count() == 2 && n.ends_with("manifest.yaml"))
        .and_then(|n| n.parent())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            bad("holds no `<package>/manifest.yaml`, so it is not a declarative (manifest) connector; run the package through the Airbyte-protocol source (`connector: airbyte`, `package: ...`) instead".into())
        })?;
    let wanted = |name: &Path| -> bool {
        let Ok(rel) = name.strip_prefix(&package) else {
            return false;
        };
        let top = ["manifest.yaml", "spec.json", "spec.yaml", "spec.yml"];
        let is_data = name
            .extension()
            .is_some_and(|e| e == "json" || e == "yaml" || e == "yml");
        rel.components().all(|c| matches!(c, Component::Normal(_)))
            && (top.iter().any(|t| rel == Path::new(t)) || rel.starts_with("schemas") && is_data)
    };

    let parent = entry.parent().expect("a cache entry has a parent");
    std::fs::create_dir_all(parent).map_err(|e| cache_error(parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(parent)
        .map_err(|e| cache_error(parent, e))?;
    let mut total = 0u64;
    for i in 0..archive.len() {
        let mut file = archive
            .by_index(i)
            .map_err(|e| bad(format!("entry {i}: {e}")))?;
        let Some(name) = file.enclosed_name().filter(|n| wanted(n)) else {
            continue;
        };
        if file.is_dir() {
            continue;
        }
        total += file.size();
        if total > MAX_UNPACKED {
            return Err(bad(format!(
                "its manifest files unpack to more than {} MiB; refusing it",
                MAX_UNPACKED >> 20
            )));
        }
        let mut content = Vec::with_capacity(file.size() as usize);
        file.by_ref()
            .take(MAX_UNPACKED)
            .read_to_end(&mut content)
            .map_err(|e| bad(format!("{}: {e}", name.display())))?;
        let path = staging.path().join(&name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| cache_error(dir, e))?;
        }
        std::fs::write(&path, content).map_err(|e| cache_error(&path, e))?;
    }
    let marker = Marker {
        manifest: package.join("manifest.yaml"),
        wheel: wheel.to_string(),
        sha256: hex::encode(Sha256::digest(bytes)),
    };
    let marker_path = staging.path().join(MARKER);
    std::fs::write(
        &marker_path,
        serde_json::to_vec_pretty(&marker).expect("the marker serialises"),
    )
    .map_err(|e| cache_error(&marker_path, e))?;
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, entry) {
        let _ = std::fs::remove_dir_all(&staged);
        // Another run unpacked the same package meanwhile: its entry is as good as ours.
        if cached(entry)?.is_none() {
            return Err(cache_error(entry, e));
        }
    }
    Ok(entry.join(&marker.manifest))
}

fn cache_error(path: &Path, e: std::io::Error) -> ManifestSourceError {
    ManifestSourceError::Other(format!("the manifest cache at {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_are_pinned_and_normalised() {
        let r = Requirement::parse("Airbyte_Source.Xyz==1.2.3").unwrap();
        assert_eq!(
            (r.name.as_str(), r.version.as_str()),
            ("airbyte-source-xyz", "1.2.3")
        );
        for bad in [
            "airbyte-source-xyz",
            "airbyte-source-xyz>=1.0",
            "==1.0",
            "a/b==1",
            "x==1.0; python_version<'3'",
        ] {
            let e = Requirement::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`package: {bad}`")), "{e}");
        }
    }

    #[test]
    fn credentials_are_not_shown() {
        assert_eq!(
            shown("http://me:s3cret@127.0.0.1:9/pypi"),
            "http://127.0.0.1:9/pypi"
        );
    }
}
