//! Building blocks of mesh scenarios (domains, products reading products, grants, policies)
//! shared by the sharing and governance end-to-end tests: product file headers, the keyed
//! token an independent HMAC gives, and the scan proving a store holds no clear value.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The first lines of a product file: its name, domain, owner `<domain>-data@example.com`
/// and a description; the caller appends `source:`, `streams:` and the rest.
pub fn product_header(domain: &str, product: &str) -> String {
    format!("product: {product}\ndomain: {domain}\nowner: {domain}-data@example.com\ndescription: {domain} {product}\n")
}

/// The consumers of the sharing scenarios over `sales/shop`: `finance/revenue` reading it,
/// with `finance_grants` as its `grants:` block (empty to revoke), `marketing/campaign_margins`
/// reading finance's product and `marketing/audience` reading sales' own; `streams` is each
/// one's `streams:` list.
pub fn sharing_consumers(p: &crate::TestProject, streams: &str, finance_grants: &str) {
    let consumer = |domain: &str, product: &str, upstream: &str, grants: &str| {
        p.product(
            domain,
            product,
            &format!(
                "{}source: {{ product: {upstream} }}\nstreams:\n{streams}{grants}",
                product_header(domain, product)
            ),
        );
    };
    consumer("finance", "revenue", "sales/shop", finance_grants);
    consumer("marketing", "campaign_margins", "finance/revenue", "");
    consumer("marketing", "audience", "sales/shop", "");
}

/// The keyed token weft's forced `hash` gives `value` under `key`: HMAC-SHA-256, hex,
/// computed here with the `hmac` crate (not weft's code).
pub fn hmac_hex(key: &str, value: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(value.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Scans every value of every file below `dir` (Parquet cells and footers, manifests, any
/// text): none holds one of `clear` or any other e-mail address except the `allowed`
/// addresses (a product's owner travels with its data as metadata by design). `at_least`
/// guards against a scan of an empty store passing.
pub fn assert_no_clear_email(dir: &Path, clear: &[String], allowed: &[&str], at_least: usize) {
    let values = crate::every_value_below(dir);
    assert!(
        values.len() >= at_least,
        "{} was read ({} values, expected at least {at_least})",
        dir.display(),
        values.len()
    );
    for value in &values {
        let rest = allowed.iter().fold(value.clone(), |v, a| v.replace(a, ""));
        assert!(
            !rest.contains('@'),
            "{} holds an e-mail address: {value}",
            dir.display()
        );
    }
    for email in clear {
        assert!(
            !values.iter().any(|v| v.contains(email.as_str())),
            "{email} is in {}",
            dir.display()
        );
    }
}
