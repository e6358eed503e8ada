//! `${VAR}`, `${VAR:-default}` and `${file:PATH}` substitution in string values.
//!
//! Substitution runs on string values after parsing, never on the YAML text: a value holding
//! `: `, quotes or newlines cannot change the file's structure, and parse errors quote the
//! `${...}` reference rather than the secret. Every substituted value is recorded so the
//! [`crate::Redactor`] can scrub it from errors and logs.

use std::path::Path;

/// A reference that could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterpError {
    /// The reference as written (`${PII_SALT}`), to locate it in the file.
    pub reference: String,
    pub message: String,
}

/// Looks up environment variables; injectable so tests need not mutate the process env.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) struct Interpolator<'a> {
    root: &'a Path,
    env: EnvLookup<'a>,
    secrets: Vec<String>,
}

impl<'a> Interpolator<'a> {
    /// `root` resolves relative `${file:...}` paths.
    pub fn new(root: &'a Path, env: EnvLookup<'a>) -> Self {
        Self {
            root,
            env,
            secrets: Vec::new(),
        }
    }

    /// The values substituted so far.
    pub fn into_secrets(self) -> Vec<String> {
        self.secrets
    }

    /// Expands every reference in `input`; `$${` stands for a literal `${`.
    pub fn expand(&mut self, input: &str) -> Result<String, InterpError> {
        if !input.contains('$') {
            return Ok(input.to_string());
        }
        let mut out = String::with_capacity(input.len());
        let mut rest = input;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("$${") {
                out.push_str("${");
                rest = after;
            } else if tail.starts_with("${") {
                let Some(close) = tail.find('}') else {
                    return Err(InterpError {
                        reference: tail.to_string(),
                        message: format!(
                            "`{tail}` has no closing `}}`; write ${{VAR}}, or $${{ for a literal ${{"
                        ),
                    });
                };
                let reference = &tail[..=close];
                out.push_str(&self.resolve(reference, &tail[2..close])?);
                rest = &tail[close + 1..];
            } else {
                out.push('$');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Expands every string inside a JSON value (not the keys); returns the field path of a
    /// failing string, relative to `value`, with the error.
    pub fn expand_json(
        &mut self,
        value: &mut serde_json::Value,
    ) -> Result<(), (String, InterpError)> {
        match value {
            serde_json::Value::String(s) => {
                *s = self.expand(s).map_err(|e| (String::new(), e))?;
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.expand_json(item)
                        .map_err(|(path, e)| (format!("[{i}]{path}"), e))?;
                }
            }
            serde_json::Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    self.expand_json(item)
                        .map_err(|(path, e)| (format!(".{key}{path}"), e))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn resolve(&mut self, reference: &str, body: &str) -> Result<String, InterpError> {
        let fail = |message: String| InterpError {
            reference: reference.to_string(),
            message,
        };
        if let Some(file) = body.strip_prefix("file:") {
            let file = file.trim();
            if file.is_empty() {
                return Err(fail(format!(
                    "`{reference}` names no file; write ${{file:path/to/secret}}"
                )));
            }
            let path = self.root.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                fail(format!(
                    "cannot read secret file {}: {e}; create it or fix the path (relative paths start at the project folder)",
                    path.display()
                ))
            })?;
            let value = text.trim().to_string();
            self.secrets.push(value.clone());
            return Ok(value);
        }
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if !is_var_name(name) {
            return Err(fail(format!(
                "`{reference}` is not a valid reference; use ${{VAR}}, ${{VAR:-default}} or ${{file:PATH}} (variable names are letters, digits and `_`; write $${{ for a literal ${{)"
            )));
        }
        match ((self.env)(name), default) {
            (Some(value), Some(default)) if value.is_empty() => Ok(default.to_string()),
            (Some(value), _) => {
                self.secrets.push(value.clone());
                Ok(value)
            }
            (None, Some(default)) => Ok(default.to_string()),
            (None, None) => Err(fail(format!(
                "environment variable `{name}` is not set; export it or use ${{{name}:-default}}"
            ))),
        }
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Expands `${VAR}`, `${VAR:-default}` and `${file:PATH}` in one value of another project file
/// (the policy's keys): `Err((reference, message))` names the reference, never a value.
pub fn expand_value(
    root: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    input: &str,
) -> Result<String, (String, String)> {
    Interpolator::new(root, env)
        .expand(input)
        .map_err(|e| (e.reference, e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "USER_PW" => Some("s3cr3t-pw".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn expand(input: &str) -> Result<String, InterpError> {
        Interpolator::new(Path::new("/nonexistent"), &env).expand(input)
    }

    #[test]
    fn substitutes_variables_and_defaults() {
        assert_eq!(expand("pw=${USER_PW}!").unwrap(), "pw=s3cr3t-pw!");
        assert_eq!(expand("${NOPE:-fallback}").unwrap(), "fallback");
        assert_eq!(expand("${EMPTY:-fallback}").unwrap(), "fallback");
        assert_eq!(expand("${USER_PW:-x}").unwrap(), "s3cr3t-pw");
        assert_eq!(expand("a $ b $5 $x").unwrap(), "a $ b $5 $x");
        assert_eq!(
            expand("$${USER_PW} costs $$").unwrap(),
            "${USER_PW} costs $$"
        );
    }

    #[test]
    fn records_substituted_values_only() {
        let mut i = Interpolator::new(Path::new("/"), &env);
        i.expand("${USER_PW} ${NOPE:-not-a-secret}").unwrap();
        assert_eq!(i.into_secrets(), vec!["s3cr3t-pw".to_string()]);
    }

    #[test]
    fn missing_and_malformed_references_are_errors() {
        let err = expand("x ${PII_SALT} y").unwrap_err();
        assert_eq!(err.reference, "${PII_SALT}");
        assert_eq!(
            err.message,
            "environment variable `PII_SALT` is not set; export it or use ${PII_SALT:-default}"
        );
        let err = expand("${1abc}").unwrap_err();
        assert!(
            err.message
                .starts_with("`${1abc}` is not a valid reference"),
            "{}",
            err.message
        );
        let err = expand("${OPEN").unwrap_err();
        assert!(
            err.message.starts_with("`${OPEN` has no closing `}`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn expands_nested_json_strings_and_names_the_path() {
        let mut value = serde_json::json!({"a": {"b": ["ok", "${USER_PW}"]}, "n": 1});
        let mut i = Interpolator::new(Path::new("/"), &env);
        i.expand_json(&mut value).unwrap();
        assert_eq!(value["a"]["b"][1], "s3cr3t-pw");
        let mut value = serde_json::json!({"a": {"b": ["ok", "${MISSING}"]}});
        let (path, _) = i.expand_json(&mut value).unwrap_err();
        assert_eq!(path, ".a.b[1]");
    }
}
