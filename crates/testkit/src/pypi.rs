//! A package index on loopback for tests of connectors published as Python wheels: wheels are
//! built by the test (real zips, deflated as `pip wheel` writes them) and served, with the
//! release's JSON as PyPI's JSON API answers it, by an [`crate::http_mock`] handler.

use std::io::Write;

use sha2::{Digest, Sha256};

use crate::http_mock::{Reply, Seen};

/// A wheel: `files` (path in the wheel, content) plus the `.dist-info` a wheel carries.
pub fn wheel(name: &str, version: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let dist_info = format!("{}-{version}.dist-info", name.replace('-', "_"));
    let metadata = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
    let all = files
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .chain([
            (format!("{dist_info}/METADATA"), metadata),
            (
                format!("{dist_info}/WHEEL"),
                "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n".into(),
            ),
        ]);
    for (path, content) in all {
        zip.start_file(path, deflated).expect("a zip entry");
        zip.write_all(content.as_bytes()).expect("zip content");
    }
    zip.finish().expect("a finished zip");
    out.into_inner()
}

/// A wheel's file name as an index lists it.
pub fn wheel_file_name(name: &str, version: &str) -> String {
    format!("{}-{version}-py3-none-any.whl", name.replace('-', "_"))
}

/// One release on the index: a wheel (and an sdist beside it, as most releases have).
pub struct Release {
    pub name: String,
    pub version: String,
    pub wheel: Vec<u8>,
    /// The sha256 the index states (the wheel's own unless a test says otherwise).
    pub sha256: String,
}

impl Release {
    pub fn new(name: &str, version: &str, wheel: Vec<u8>) -> Self {
        let sha256 = hex::encode(Sha256::digest(&wheel));
        Self {
            name: name.into(),
            version: version.into(),
            wheel,
            sha256,
        }
    }

    /// Answers `GET /pypi/<name>/<version>/json` and `GET /files/<wheel>`; `None` for any
    /// other request, so a handler can serve an API beside the index.
    pub fn serve(&self, req: &Seen) -> Option<Reply> {
        let file = wheel_file_name(&self.name, &self.version);
        if req.path == format!("/pypi/{}/{}/json", self.name, self.version) {
            let sdist = format!("{}-{}.tar.gz", self.name.replace('-', "_"), self.version);
            return Some(Reply::json(serde_json::json!({
                "info": {"name": self.name, "version": self.version},
                "urls": [
                    {"filename": sdist, "packagetype": "sdist", "url": format!("/files/{sdist}"),
                     "digests": {"sha256": "0".repeat(64)}},
                    {"filename": file, "packagetype": "bdist_wheel", "url": format!("/files/{file}"),
                     "digests": {"sha256": self.sha256}},
                ],
            })));
        }
        if req.path == format!("/files/{file}") {
            return Some(Reply::bytes("application/octet-stream", self.wheel.clone()));
        }
        req.path
            .starts_with("/pypi/")
            .then(|| Reply::status(404, "{\"message\": \"Not Found\"}"))
    }
}
