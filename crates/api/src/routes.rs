//! The endpoints: one handler each, documented for the OpenAPI document by `utoipa::path`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use weft_mesh::{Product, Project};
use weft_state::StateStore;

use crate::control::{Control, ControlError, ProductRef, ProductStatus, RunLogs, Triggered};
use crate::error::{ApiError, ErrorBody};
use crate::metrics::Metrics;
use crate::tokens::{self, Caller};
use crate::views::{
    product_detail, run_view, DomainView, Health, ProductDetail, ProductView, Readiness, RunView,
    RunsPage,
};

/// What every handler reaches.
#[derive(Clone)]
pub struct AppState {
    pub control: Arc<dyn Control>,
    pub store: Arc<dyn StateStore>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// Runs a state-store call off the async threads (each is a short SQLite transaction).
    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn StateStore) -> weft_state::StateResult<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        let project = self.control.project();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::internal(project.secrets.redact(&e.to_string())))
    }

    fn status_of(&self, product: &ProductRef) -> Option<ProductStatus> {
        self.control
            .statuses()
            .into_iter()
            .find(|s| &s.product == product)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized =
            |code, message: &str| ApiError::new(StatusCode::UNAUTHORIZED, code, message);
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "missing_token",
                "this endpoint needs `Authorization: Bearer <token>`; create one with `weft token create`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| tokens::well_formed(t))
            .ok_or_else(|| {
                unauthorized(
                    "malformed_token",
                    "the Authorization header is not `Bearer weft_<64 hex digits>`",
                )
            })?;
        let hash = tokens::hash(token);
        let record = state
            .store(move |s| s.use_token(&hash, Utc::now()))
            .await?
            .ok_or_else(|| {
                unauthorized(
                    "invalid_token",
                    "this token is unknown or revoked; `weft token list` shows the live ones",
                )
            })?;
        Ok(Caller {
            token_name: record.name,
            scope: record.scope,
        })
    }
}

/// Path and query parameters that fail to parse answer in the API's error shape.
pub struct ApiPath<T>(pub T);
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// The product a caller names, if it exists and the caller may see it (otherwise the same
/// 404 either way: another domain's names never leak).
fn visible_product<'p>(
    project: &'p Project,
    caller: &Caller,
    domain: &str,
    product: &str,
) -> Result<&'p Product, ApiError> {
    if !caller.sees_domain(domain) {
        return Err(ApiError::not_found());
    }
    project
        .product(domain, product)
        .ok_or_else(ApiError::not_found)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProductPath {
    /// The product's domain.
    domain: String,
    /// The product's name.
    product: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RunPath {
    domain: String,
    product: String,
    /// A run id.
    run_id: String,
}

/// Liveness: answers without a token.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".to_string(),
    })
}

/// Readiness: the state store answers. Reports a rejected configuration reload.
#[utoipa::path(get, path = "/ready", tag = "health", security(("bearer" = [])),
    responses((status = 200, body = Readiness), (status = 401, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn ready(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Readiness>, ApiError> {
    state.store(|s| s.runs(1)).await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the state store does not answer",
        )
    })?;
    Ok(Json(Readiness {
        ready: true,
        config_error: state.control.config_error(),
    }))
}

/// The domains the token sees, with their products' names.
#[utoipa::path(get, path = "/api/v1/domains", tag = "catalog", security(("bearer" = [])),
    responses((status = 200, body = Vec<DomainView>), (status = 401, body = ErrorBody)))]
pub async fn domains(State(state): State<AppState>, caller: Caller) -> Json<Vec<DomainView>> {
    let project = state.control.project();
    let out = project
        .domains()
        .iter()
        .filter(|d| caller.sees_domain(d.name.as_str()))
        .map(|d| DomainView {
            name: d.name.to_string(),
            owners: d.owners.clone(),
            description: d.description.clone(),
            contact: d.contact.clone(),
            products: project
                .products
                .iter()
                .filter(|p| p.domain == d.name)
                .map(|p| p.name.to_string())
                .collect(),
        })
        .collect();
    Json(out)
}

/// The products the token sees, with owner, schedule, freshness and health.
#[utoipa::path(get, path = "/api/v1/products", tag = "catalog", security(("bearer" = [])),
    responses((status = 200, body = Vec<ProductView>), (status = 401, body = ErrorBody)))]
pub async fn products(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ProductView>>, ApiError> {
    let project = state.control.project();
    let statuses = state.control.statuses();
    let out = state
        .store(move |store| {
            let now = Utc::now();
            project
                .products
                .iter()
                .filter(|p| caller.sees_domain(p.domain.as_str()))
                .map(|p| {
                    let status = statuses.iter().find(|s| {
                        s.product.domain == p.domain.as_str()
                            && s.product.product == p.name.as_str()
                    });
                    product_detail(&project, p, status, store, now).map(|d| d.product)
                })
                .collect()
        })
        .await?;
    Ok(Json(out))
}

/// One product with its streams: configuration, checkpoint, latest run.
#[utoipa::path(get, path = "/api/v1/products/{domain}/{product}", tag = "catalog",
    security(("bearer" = [])), params(ProductPath),
    responses((status = 200, body = ProductDetail), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn product(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<ProductPath>,
) -> Result<Json<ProductDetail>, ApiError> {
    let project = state.control.project();
    visible_product(&project, &caller, &path.domain, &path.product)?;
    let status = state.status_of(&ProductRef::new(&path.domain, &path.product));
    let out = state
        .store(move |store| {
            let p = project
                .product(&path.domain, &path.product)
                .expect("checked above");
            product_detail(&project, p, status.as_ref(), store, Utc::now())
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Runs per page, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_before` of the previous page.
    before: Option<String>,
}

/// A product's run history, newest first, paged.
#[utoipa::path(get, path = "/api/v1/products/{domain}/{product}/runs", tag = "runs",
    security(("bearer" = [])), params(ProductPath, RunsQuery),
    responses((status = 200, body = RunsPage), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<ProductPath>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<Json<RunsPage>, ApiError> {
    let project = state.control.project();
    visible_product(&project, &caller, &path.domain, &path.product)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 500"));
    }
    let limit = limit as usize;
    let product = ProductRef::new(&path.domain, &path.product);
    let (d, p) = (path.domain.clone(), path.product.clone());
    let before = query.before.clone();
    // One more than asked tells whether another page exists.
    let mut records = state
        .store(move |s| s.product_runs(&d, &p, before.as_deref(), limit + 1))
        .await?;
    let more = records.len() > limit;
    records.truncate(limit);
    let runs: Vec<RunView> = records
        .iter()
        .map(|r| run_view(&project, &product, r))
        .collect();
    Ok(Json(RunsPage {
        next_before: if more {
            runs.last().map(|r| r.run_id.clone())
        } else {
            None
        },
        runs,
    }))
}

/// One run of a product, with the product's streams in it.
#[utoipa::path(get, path = "/api/v1/products/{domain}/{product}/runs/{run_id}", tag = "runs",
    security(("bearer" = [])), params(RunPath),
    responses((status = 200, body = RunView), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<RunPath>,
) -> Result<Json<RunView>, ApiError> {
    let project = state.control.project();
    let (asked, run_id) = (
        ProductRef::new(&path.domain, &path.product),
        path.run_id.clone(),
    );
    match product_run(&state, &project, &caller, path).await {
        Ok((product, record)) => Ok(Json(run_view(&project, &product, &record))),
        // Only once the caller may see the product (a hidden one stays a plain 404).
        Err(e)
            if e.status == StatusCode::NOT_FOUND
                && visible_product(&project, &caller, &asked.domain, &asked.product).is_ok() =>
        {
            accepted_run(&state, &asked, &run_id).ok_or(e)
        }
        Err(e) => Err(e),
    }
}

/// A run the daemon accepted that is not in the history yet (it waits for a slot of the
/// concurrency limit or the product's lock): `pending`, so the `run_id` a trigger answered is
/// never a 404.
fn accepted_run(state: &AppState, product: &ProductRef, run_id: &str) -> Option<Json<RunView>> {
    let status = state
        .control
        .statuses()
        .into_iter()
        .find(|s| &s.product == product && s.scheduling.running.as_deref() == Some(run_id))?;
    Some(Json(RunView {
        run_id: run_id.to_string(),
        status: "pending".into(),
        started_at: status.scheduling.running_since?,
        ended_at: None,
        duration_seconds: None,
        rows: 0,
        bytes: 0,
        error: None,
        streams: Vec::new(),
    }))
}

/// The run `path` names, if it is a run of the product and the caller sees the product.
async fn product_run(
    state: &AppState,
    project: &Project,
    caller: &Caller,
    path: RunPath,
) -> Result<(ProductRef, weft_state::RunRecord), ApiError> {
    visible_product(project, caller, &path.domain, &path.product)?;
    let product = ProductRef::new(&path.domain, &path.product);
    let run_id = path.run_id.clone();
    let record = state
        .store(move |s| s.run(&run_id))
        .await?
        .ok_or_else(ApiError::not_found)?;
    let label = product.to_string();
    let belongs = record.streams.iter().any(|s| {
        s.key.domain.as_str() == product.domain && s.key.product.as_str() == product.product
    }) || record
        .selectors
        .iter()
        .any(|s| s == &label || s.starts_with(&format!("{label}/")));
    if !belongs {
        return Err(ApiError::not_found());
    }
    Ok((product, record))
}

/// The log lines the daemon kept of a run (bounded, secrets redacted): why it failed.
#[utoipa::path(get, path = "/api/v1/products/{domain}/{product}/runs/{run_id}/logs", tag = "runs",
    security(("bearer" = [])), params(RunPath),
    responses((status = 200, body = RunLogs), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn run_logs(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<RunPath>,
) -> Result<Json<RunLogs>, ApiError> {
    let project = state.control.project();
    let (_, record) = product_run(&state, &project, &caller, path).await?;
    state
        .control
        .run_logs(&record.run_id)
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_logs",
                "this daemon keeps the logs of the runs it made since it started (the latest \
             ones); this run's are not kept: see the daemon's log for its run_id",
            )
        })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TriggerQuery {
    /// Run only this stream of the product.
    stream: Option<String>,
}

/// What a trigger answers.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct TriggerResponse {
    pub run_id: String,
}

fn control_error(e: ControlError) -> ApiError {
    match e {
        ControlError::UnknownProduct => ApiError::not_found(),
        ControlError::UnknownStream => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_stream",
            "the product has no stream of that name",
        ),
        ControlError::ShuttingDown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the daemon is shutting down",
        ),
        ControlError::Paused => ApiError::new(
            StatusCode::CONFLICT,
            "paused",
            "the product's schedule is paused; resume it (`POST …/resume`) to run it",
        ),
        ControlError::Other(m) => ApiError::new(StatusCode::CONFLICT, "refused", m),
    }
}

/// Starts a run of the product (or one stream of it) unless one is in flight.
#[utoipa::path(post, path = "/api/v1/products/{domain}/{product}/runs", tag = "runs",
    security(("bearer" = [])), params(ProductPath, TriggerQuery),
    responses((status = 202, body = TriggerResponse), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn trigger(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<ProductPath>,
    ApiQuery(query): ApiQuery<TriggerQuery>,
) -> Result<Response, ApiError> {
    let project = state.control.project();
    let p = visible_product(&project, &caller, &path.domain, &path.product)?;
    if !caller.operates_domain(&path.domain) {
        return Err(ApiError::not_found());
    }
    if let Some(stream) = &query.stream {
        if p.stream(stream).is_none() {
            return Err(control_error(ControlError::UnknownStream));
        }
    }
    let product = ProductRef::new(&path.domain, &path.product);
    tracing::info!(product = %product, stream = ?query.stream, token = %caller.token_name, "run triggered through the API");
    match state
        .control
        .trigger(&product, query.stream.as_deref())
        .await
        .map_err(control_error)?
    {
        Triggered::Started { run_id } => {
            Ok((StatusCode::ACCEPTED, Json(TriggerResponse { run_id })).into_response())
        }
        Triggered::AlreadyRunning { run_id } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_running",
            format!("a run of {product} is in flight (run {run_id}); wait for it to end"),
        )),
    }
}

async fn set_paused(
    state: AppState,
    caller: Caller,
    path: ProductPath,
    pause: bool,
) -> Result<Json<ProductStatus>, ApiError> {
    let project = state.control.project();
    visible_product(&project, &caller, &path.domain, &path.product)?;
    if !caller.operates_domain(&path.domain) {
        return Err(ApiError::not_found());
    }
    let product = ProductRef::new(&path.domain, &path.product);
    tracing::info!(product = %product, pause, token = %caller.token_name, "schedule changed through the API");
    if pause {
        state.control.pause(&product).await
    } else {
        state.control.resume(&product).await
    }
    .map_err(control_error)?;
    state
        .status_of(&product)
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// Stops scheduling the product (a run in flight finishes).
#[utoipa::path(post, path = "/api/v1/products/{domain}/{product}/pause", tag = "schedule",
    security(("bearer" = [])), params(ProductPath),
    responses((status = 200, body = ProductStatus), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<ProductPath>,
) -> Result<Json<ProductStatus>, ApiError> {
    set_paused(state, caller, path, true).await
}

/// Schedules a paused product again.
#[utoipa::path(post, path = "/api/v1/products/{domain}/{product}/resume", tag = "schedule",
    security(("bearer" = [])), params(ProductPath),
    responses((status = 200, body = ProductStatus), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<ProductPath>,
) -> Result<Json<ProductStatus>, ApiError> {
    set_paused(state, caller, path, false).await
}

/// Prometheus metrics (OpenMetrics text). Needs an admin token: the labels name every domain.
#[utoipa::path(get, path = "/metrics", tag = "metrics", security(("bearer" = [])),
    responses((status = 200, content_type = "application/openmetrics-text", body = String),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "metrics name every domain's products: use an admin token (`weft token create --admin`)",
        ));
    }
    let project = state.control.project();
    let statuses = state.control.statuses();
    let freshness = state
        .store(move |store| {
            let now = Utc::now();
            let mut out = Vec::new();
            for p in &project.products {
                let status = statuses.iter().find(|s| {
                    s.product.domain == p.domain.as_str() && s.product.product == p.name.as_str()
                });
                let d = product_detail(&project, p, status, store, now)?;
                if let Some(age) = d.product.freshness_seconds {
                    out.push((ProductRef::new(p.domain.as_str(), p.name.as_str()), age));
                }
            }
            Ok(out)
        })
        .await?;
    state.metrics.set_freshness(freshness);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response())
}

/// The catalog page shell (it asks for a token, then calls the API).
pub async fn page() -> Html<&'static str> {
    Html(crate::page::INDEX)
}
