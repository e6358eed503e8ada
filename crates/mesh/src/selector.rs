//! Selectors (`domain`, `domain/product`, `domain/product/stream`) and what they pick out of a
//! project.

use std::fmt;

use weft_core::{DomainName, ProductName, StreamName};

use crate::error::ProjectError;
use crate::project::{Product, Project};

/// Part of a project, as named on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    Domain(DomainName),
    Product(DomainName, ProductName),
    Stream(DomainName, ProductName, StreamName),
}

impl Selector {
    /// Parses `domain`, `domain/product` or `domain/product/stream`.
    pub fn parse(text: &str) -> Result<Selector, ProjectError> {
        let fail = |message: String| ProjectError::Selector {
            selector: text.to_string(),
            message,
        };
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() > 3 {
            return Err(fail(
                "has too many parts; use DOMAIN, DOMAIN/PRODUCT or DOMAIN/PRODUCT/STREAM".into(),
            ));
        }
        let domain = DomainName::new(parts[0]).map_err(|e| fail(e.to_string()))?;
        let product = parts
            .get(1)
            .map(|p| ProductName::new(*p))
            .transpose()
            .map_err(|e| fail(e.to_string()))?;
        let stream = parts
            .get(2)
            .map(|s| StreamName::new(*s))
            .transpose()
            .map_err(|e| fail(e.to_string()))?;
        Ok(match (product, stream) {
            (None, _) => Selector::Domain(domain),
            (Some(product), None) => Selector::Product(domain, product),
            (Some(product), Some(stream)) => Selector::Stream(domain, product, stream),
        })
    }

    fn domain(&self) -> &DomainName {
        match self {
            Selector::Domain(d) | Selector::Product(d, _) | Selector::Stream(d, _, _) => d,
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Domain(d) => write!(f, "{d}"),
            Selector::Product(d, p) => write!(f, "{d}/{p}"),
            Selector::Stream(d, p, s) => write!(f, "{d}/{p}/{s}"),
        }
    }
}

impl std::str::FromStr for Selector {
    type Err = ProjectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

/// A selected product and the streams of it to run (in the product's order).
#[derive(Debug, Clone, PartialEq)]
pub struct Selection<'a> {
    pub product: &'a Product,
    pub streams: Vec<StreamName>,
}

impl Project {
    /// The products and streams the selectors name, in project order, each once. No
    /// selectors select everything. A selector naming nothing is an error listing what exists.
    pub fn select(&self, selectors: &[Selector]) -> Result<Vec<Selection<'_>>, ProjectError> {
        let all = |p: &Product| p.streams.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        if selectors.is_empty() {
            return Ok(self
                .products
                .iter()
                .map(|p| Selection {
                    product: p,
                    streams: all(p),
                })
                .collect());
        }
        // Per product: which streams were asked for.
        let mut wanted: Vec<Vec<StreamName>> = vec![Vec::new(); self.products.len()];
        for selector in selectors {
            let fail = |message: String| ProjectError::Selector {
                selector: selector.to_string(),
                message,
            };
            let domain = selector.domain();
            let in_domain: Vec<usize> = (0..self.products.len())
                .filter(|&i| &self.products[i].domain == domain)
                .collect();
            if in_domain.is_empty() {
                return Err(fail(format!(
                    "no domain `{domain}` in this project; domains: {}",
                    list(self.domains())
                )));
            }
            let pick = |product: &ProductName| {
                in_domain
                    .iter()
                    .copied()
                    .find(|&i| &self.products[i].name == product)
                    .ok_or_else(|| {
                        fail(format!(
                            "no product `{domain}/{product}`; products of `{domain}`: {}",
                            list(in_domain.iter().map(|&i| &self.products[i].name))
                        ))
                    })
            };
            match selector {
                Selector::Domain(_) => {
                    for &i in &in_domain {
                        wanted[i] = all(&self.products[i]);
                    }
                }
                Selector::Product(_, product) => {
                    let i = pick(product)?;
                    wanted[i] = all(&self.products[i]);
                }
                Selector::Stream(_, product, stream) => {
                    let i = pick(product)?;
                    let p = &self.products[i];
                    if p.stream(stream.as_str()).is_none() {
                        return Err(fail(format!(
                            "no stream `{selector}`; streams of `{}`: {}",
                            p.label(),
                            list(p.streams.iter().map(|s| &s.name))
                        )));
                    }
                    if !wanted[i].contains(stream) {
                        wanted[i].push(stream.clone());
                    }
                }
            }
        }
        Ok(self
            .products
            .iter()
            .zip(wanted)
            .filter(|(_, streams)| !streams.is_empty())
            .map(|(product, streams)| Selection {
                product,
                // Product order, whatever the selectors' order.
                streams: product
                    .streams
                    .iter()
                    .map(|s| s.name.clone())
                    .filter(|s| streams.contains(s))
                    .collect(),
            })
            .collect())
    }
}

fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(Selector::parse("sales").unwrap().to_string(), "sales");
        assert!(matches!(
            Selector::parse("sales/orders").unwrap(),
            Selector::Product(..)
        ));
        assert!(matches!(
            Selector::parse("sales/orders/items").unwrap(),
            Selector::Stream(..)
        ));
    }

    #[test]
    fn rejects_malformed_selectors() {
        assert_eq!(
            Selector::parse("a/b/c/d").unwrap_err().to_string(),
            "selector `a/b/c/d`: has too many parts; use DOMAIN, DOMAIN/PRODUCT or DOMAIN/PRODUCT/STREAM"
        );
        assert_eq!(
            Selector::parse("../x").unwrap_err().to_string(),
            "selector `../x`: invalid domain name \"..\": `.` and `..` are not names"
        );
        assert_eq!(
            Selector::parse("sales/").unwrap_err().to_string(),
            "selector `sales/`: invalid product name \"\": it is empty"
        );
        assert!(Selector::parse("").is_err());
    }
}
