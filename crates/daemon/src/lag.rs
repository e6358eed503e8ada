//! CDC replication lag for the `weft_cdc_lag_bytes` gauge: how many bytes each CDC stream's
//! position is behind its source's log. Asking needs a connection to the source, too heavy per
//! scrape, so the daemon asks every `daemon.cdc_lag_interval` (followers never end, so this
//! is how their lag shows) and right after each run of a product with CDC streams.

use weft_core::SyncMode;
use weft_mesh::Selector;
use weft_state::ProductKey;

use crate::{key_of, status, Daemon};

/// Asks every CDC product's source, every `cdc_lag_interval`, until shutdown.
pub(crate) fn spawn(daemon: Daemon) {
    tokio::spawn(async move {
        loop {
            let project = daemon.project();
            for product in project.products.iter().filter(|p| has_cdc(p)) {
                probe(&daemon, &key_of(product)).await;
            }
            let interval = project.settings.daemon.cdc_lag_interval;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = daemon.shared.stopping.cancelled() => break,
            }
        }
    });
}

pub(crate) fn has_cdc(product: &weft_mesh::Product) -> bool {
    product.streams.iter().any(|s| s.mode == SyncMode::Cdc)
}

/// Asks `key`'s source how far behind each of its CDC streams is and sets the gauges; a
/// source that cannot say (unreachable, no slot yet) leaves them as they were.
pub(crate) async fn probe(daemon: &Daemon, key: &ProductKey) {
    let project = daemon.project();
    let Ok(selector) = Selector::parse(&key.to_string()) else {
        return;
    };
    let Ok(selections) = project.select(&[selector]) else {
        return;
    };
    let lags = match weft_engine::cdc_lags(&project, &selections, &daemon.shared.registry).await {
        Ok(lags) => lags,
        Err(e) => {
            tracing::debug!(product = %key, "cannot ask for CDC lag: {e}");
            return;
        }
    };
    let product = status::product_ref(key);
    for (stream, lag) in lags {
        match lag {
            Ok(Some(bytes)) => {
                daemon
                    .shared
                    .metrics
                    .cdc_lag(&product, stream.stream.as_str(), bytes)
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(product = %key, stream = %stream.stream, "cannot ask for CDC lag: {e}")
            }
        }
    }
}
