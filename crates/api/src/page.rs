//! The catalog page: one self-contained HTML file (inline CSS and script, no CDN), embedded in
//! the binary. It asks for a token once (kept in sessionStorage) and draws from the JSON API.

/// `static/index.html`.
pub const INDEX: &str = include_str!("../static/index.html");
