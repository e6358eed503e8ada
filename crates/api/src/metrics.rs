//! [`Metrics`]: the Prometheus registry of the daemon, served at `/metrics` (OpenMetrics text).
//!
//! The daemon reports what happens as it happens (`run_started`, `run_finished`,
//! `scheduler_lag`); freshness is computed from the state store at scrape time, so it is right
//! after a restart too.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use weft_state::RunStatus;

use crate::control::ProductRef;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProductLabels {
    domain: String,
    product: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    domain: String,
    product: String,
    stream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    domain: String,
    product: String,
    status: String,
}

fn product_labels(p: &ProductRef) -> ProductLabels {
    ProductLabels {
        domain: p.domain.clone(),
        product: p.product.clone(),
    }
}

/// How one stream of a finished run went, for [`Metrics::run_finished`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamVolume {
    pub stream: String,
    pub rows: u64,
    pub bytes: u64,
}

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    rows: Family<StreamLabels, Counter>,
    bytes: Family<StreamLabels, Counter>,
    runs: Family<RunLabels, Counter>,
    failures: Family<ProductLabels, Counter>,
    duration: Family<ProductLabels, Histogram>,
    in_flight: Family<ProductLabels, Gauge>,
    lag: Family<ProductLabels, Gauge<f64, AtomicU64>>,
    freshness: Family<ProductLabels, Gauge<f64, AtomicU64>>,
    cdc_lag: Family<StreamLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weft");
        let rows = Family::<StreamLabels, Counter>::default();
        let bytes = Family::<StreamLabels, Counter>::default();
        let runs = Family::<RunLabels, Counter>::default();
        let failures = Family::<ProductLabels, Counter>::default();
        let duration = Family::<ProductLabels, Histogram>::new_with_constructor(|| {
            // 0.1 s … ~55 min.
            Histogram::new(exponential_buckets(0.1, 2.0, 16))
        });
        let in_flight = Family::<ProductLabels, Gauge>::default();
        let lag = Family::<ProductLabels, Gauge<f64, AtomicU64>>::default();
        let freshness = Family::<ProductLabels, Gauge<f64, AtomicU64>>::default();
        let cdc_lag = Family::<StreamLabels, Gauge>::default();
        registry.register("rows_synced", "Rows synced per stream", rows.clone());
        registry.register("bytes_synced", "Bytes synced per stream", bytes.clone());
        registry.register("runs", "Finished runs per product and status", runs.clone());
        registry.register("run_failures", "Failed runs per product", failures.clone());
        registry.register(
            "run_duration_seconds",
            "Duration of finished runs per product",
            duration.clone(),
        );
        registry.register(
            "runs_in_flight",
            "Runs in flight per product",
            in_flight.clone(),
        );
        registry.register(
            "scheduler_lag_seconds",
            "Actual start minus scheduled time of the latest scheduled run",
            lag.clone(),
        );
        registry.register(
            "seconds_since_last_success",
            "Seconds since every stream of the product last succeeded (absent: never)",
            freshness.clone(),
        );
        registry.register(
            "cdc_lag_bytes",
            "Bytes a CDC stream's replication position is behind its source's log (PostgreSQL: \
             the slot's confirmed position behind the current WAL)",
            cdc_lag.clone(),
        );
        Self {
            registry,
            rows,
            bytes,
            runs,
            failures,
            duration,
            in_flight,
            lag,
            freshness,
            cdc_lag,
        }
    }

    /// A run of `product` started.
    pub fn run_started(&self, product: &ProductRef) {
        self.in_flight.get_or_create(&product_labels(product)).inc();
    }

    /// A run of `product` ended with `status` after `duration`, moving these volumes.
    pub fn run_finished(
        &self,
        product: &ProductRef,
        status: RunStatus,
        duration: Duration,
        streams: &[StreamVolume],
    ) {
        let labels = product_labels(product);
        self.in_flight.get_or_create(&labels).dec();
        self.duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
        self.runs
            .get_or_create(&RunLabels {
                domain: product.domain.clone(),
                product: product.product.clone(),
                status: status.as_str().to_string(),
            })
            .inc();
        if matches!(status, RunStatus::Failed | RunStatus::Interrupted) {
            self.failures.get_or_create(&labels).inc();
        }
        for s in streams {
            let key = StreamLabels {
                domain: product.domain.clone(),
                product: product.product.clone(),
                stream: s.stream.clone(),
            };
            self.rows.get_or_create(&key).inc_by(s.rows);
            self.bytes.get_or_create(&key).inc_by(s.bytes);
        }
    }

    /// A scheduled run of `product` started `seconds` after its scheduled time.
    pub fn scheduler_lag(&self, product: &ProductRef, seconds: f64) {
        self.lag
            .get_or_create(&product_labels(product))
            .set(seconds);
    }

    /// The source reported that `stream` of `product` is `bytes` behind its log (CDC).
    pub fn cdc_lag(&self, product: &ProductRef, stream: &str, bytes: u64) {
        let key = StreamLabels {
            domain: product.domain.clone(),
            product: product.product.clone(),
            stream: stream.to_string(),
        };
        self.cdc_lag
            .get_or_create(&key)
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Replaces the freshness gauges (called at scrape time).
    pub(crate) fn set_freshness(&self, values: impl IntoIterator<Item = (ProductRef, f64)>) {
        self.freshness.clear();
        for (product, seconds) in values {
            self.freshness
                .get_or_create(&product_labels(&product))
                .set(seconds);
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_run_shows_up_in_the_text() {
        let m = Metrics::new();
        let p = ProductRef::new("sales", "orders");
        m.run_started(&p);
        m.run_finished(
            &p,
            RunStatus::Failed,
            Duration::from_millis(1500),
            &[StreamVolume {
                stream: "orders".into(),
                rows: 42,
                bytes: 4200,
            }],
        );
        m.scheduler_lag(&p, 0.25);
        m.cdc_lag(&p, "public.orders", 4096);
        let text = m.encode();
        for line in [
            r#"weft_rows_synced_total{domain="sales",product="orders",stream="orders"} 42"#,
            r#"weft_bytes_synced_total{domain="sales",product="orders",stream="orders"} 4200"#,
            r#"weft_run_failures_total{domain="sales",product="orders"} 1"#,
            r#"weft_runs_in_flight{domain="sales",product="orders"} 0"#,
            r#"weft_scheduler_lag_seconds{domain="sales",product="orders"} 0.25"#,
            r#"weft_run_duration_seconds_count{domain="sales",product="orders"} 1"#,
            r#"weft_cdc_lag_bytes{domain="sales",product="orders",stream="public.orders"} 4096"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
