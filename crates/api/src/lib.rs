//! `weft-api`: the HTTP layer of `weft daemon` — the JSON API under `/api/v1`, bearer-token
//! authentication, the OpenAPI 3.1 document, the embedded catalog page and Prometheus metrics.
//!
//! - [`control`]: the [`Control`] trait through which it reaches the scheduler;
//! - [`tokens`]: token text, hashes and the caller's visibility;
//! - `routes`: the handlers; `views`: the JSON they answer; `error`: the error shape;
//! - [`metrics`]: the Prometheus registry the daemon reports to;
//! - `page`: the embedded catalog page.
//!
//! The engine knows nothing of HTTP; this crate runs no sync itself.

pub mod control;
mod error;
pub mod metrics;
mod page;
mod routes;
pub mod tokens;
mod views;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_state::StateStore;

pub use control::{
    Control, ControlError, LogLine, ProductRef, ProductStatus, RunLogs, Scheduling, Triggered,
};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use metrics::{Metrics, StreamVolume};
pub use views::{Freshness, ProductDetail, ProductView, RunView, RunsPage, StreamRunView};

use routes::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "weft",
        description = "The common access interface of a weft daemon: domains, data products, \
                       their streams and runs; trigger, pause and resume."
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The router and the OpenAPI document it is described by.
fn router(state: AppState) -> axum::Router {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::health))
        .routes(routes!(routes::ready))
        .routes(routes!(routes::domains))
        .routes(routes!(routes::products))
        .routes(routes!(routes::product))
        .routes(routes!(routes::runs, routes::trigger))
        .routes(routes!(routes::run))
        .routes(routes!(routes::run_logs))
        .routes(routes!(routes::pause))
        .routes(routes!(routes::resume))
        .routes(routes!(routes::metrics))
        .with_state(state)
        .split_for_parts();
    let api = Arc::new(api);
    router
        .route(
            "/openapi.json",
            get(move || {
                let api = api.clone();
                async move { Json(api.as_ref().clone()) }
            }),
        )
        .route("/", get(routes::page))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see /openapi.json",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see /openapi.json",
            )
            .into_response()
        })
}

/// Serves the API on `listener` until `shutdown` is cancelled (requests in flight finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    control: Arc<dyn Control>,
    store: Arc<dyn StateStore>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(AppState {
        control,
        store,
        metrics,
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
