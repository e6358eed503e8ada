//! Parsing one YAML file into a typed value, with file, line, column and field path on error.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_saphyr::{DefaultMessageFormatter, Location, MessageFormatter, Spanned};

use crate::error::{Position, ProjectError};

/// Parses `text` (the content of `file`, relative to the project folder); errors carry the
/// file, line and field path. Public for the crates reading other project files (the policy).
pub fn parse<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, ProjectError> {
    let mut field = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|err| {
            field = field_path(err.path());
            err.into_inner()
        })
    });
    result.map_err(|err| {
        let message = DefaultMessageFormatter
            .format_message(err.without_snippet())
            .into_owned();
        // Missing fields are noticed at the end of their mapping, often the end of the file:
        // that line would mislead, the field path says enough.
        let location = if message.starts_with("missing field") {
            None
        } else {
            err.location()
        };
        ProjectError::invalid(at(file, location, field), message)
    })
}

/// `streams[1].write` from a serde path, without the `value` steps of [`Spanned`] wrappers.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    let mut previous: Option<&str> = None;
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
                previous = None;
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                // `value` is the wrapped value of a `Spanned`, except in a filter mapper,
                // where it is a real field.
                if key == "value" && previous != Some("filter") {
                    continue;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
                previous = Some(key.as_str());
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// A position from a saphyr location (unknown locations give no line).
pub(crate) fn at(file: &Path, location: Option<Location>, field: impl Into<String>) -> Position {
    let location = location.filter(|l| *l != Location::UNKNOWN);
    Position {
        file: file.to_path_buf(),
        line: location.map(|l| l.line()),
        column: location.map(|l| l.column()),
        field: field.into(),
    }
}

/// The line of a spanned value, when known.
pub(crate) fn line_of<T>(span: &Spanned<T>) -> Option<u64> {
    Some(span.referenced)
        .filter(|l| *l != Location::UNKNOWN)
        .map(|l| l.line())
}

/// The position of a spanned value.
pub(crate) fn at_span<T>(file: &Path, span: &Spanned<T>, field: impl Into<String>) -> Position {
    at(file, Some(span.referenced), field)
}

/// The position of the first occurrence of `needle` in `text` (1-based line and column).
pub(crate) fn at_text(file: &Path, text: &str, needle: &str, field: impl Into<String>) -> Position {
    let (line, column) = match text.find(needle) {
        Some(offset) => {
            let before = &text[..offset];
            let line = before.matches('\n').count() as u64 + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = text[line_start..offset].chars().count() as u64 + 1;
            (Some(line), Some(column))
        }
        None => (None, None),
    };
    Position {
        file: file.to_path_buf(),
        line,
        column,
        field: field.into(),
    }
}
