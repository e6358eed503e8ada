//! [`Redactor`]: scrubs the project's secret values out of text (errors, logs).

use std::sync::Arc;

/// Secrets shorter than this are not redacted: replacing every `id` or `1` in a log would
/// mangle it while hiding nothing worth hiding.
const MIN_SECRET_LEN: usize = 4;

/// Replaces every known secret value with `***`. Cheap to clone and share between threads.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Arc<[String]>,
}

impl Redactor {
    /// A redactor for these values (short and duplicate ones are dropped).
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = values
            .into_iter()
            .filter(|v| v.chars().count() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Self {
            secrets: secrets.into(),
        }
    }

    /// `text` with each secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }

    /// A redactor for the secrets of both.
    pub fn merged(&self, other: Redactor) -> Redactor {
        Redactor::new(self.secrets.iter().chain(other.secrets.iter()).cloned())
    }

    /// How many secrets are known.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_secret_longest_first() {
        let r = Redactor::new(["hunter2".to_string(), "hunter2-extra".to_string()]);
        assert_eq!(
            r.redact("pw=hunter2-extra, again hunter2."),
            "pw=***, again ***."
        );
    }

    #[test]
    fn ignores_short_values() {
        let r = Redactor::new(["abc".to_string(), "".to_string(), "abcd".to_string()]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.redact("abc abcd"), "abc ***");
        assert_eq!(Redactor::default().redact("abcd"), "abcd");
    }

    #[test]
    fn is_send_sync_and_cheap_to_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Redactor>();
    }
}
