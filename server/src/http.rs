//! The HTTP server: routes, shared state, Prometheus's JSON envelope,
//! request parameters, and request-latency tracking.
//!
//! | module | endpoints |
//! |---|---|
//! | `write` | `POST /api/v1/write` (remote-write 1.0 and 2.0), `POST /api/v1/import/prometheus` (text format) |
//! | `query` | `/api/v1/query`, `/api/v1/query_range` |
//! | `promql` | `/api/v1/format_query`, `/api/v1/parse_query` |
//! | `read` | `POST /api/v1/read` (remote-read, SAMPLES or streamed XOR chunks) |
//! | `api` | `/api/v1/{series,labels,label/<n>/values,metadata,query_exemplars,rules,alerts}`, `/api/v1/status/*` |
//! | here | `/-/healthy`, `/-/ready`, `/metrics` |
//!
//! **API Boundary:** every error reaches the client through
//! [`ApiError`] (JSON envelope) or `write::WriteError` (plain text for
//! remote-write senders); both take status and `errorType` from
//! [`Error::status_and_type`], the one mapping.

mod admin;
mod api;
mod promql;
mod query;
mod read;
mod read_timeout;
mod write;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::error::Error;
use crate::metadata::MetadataStore;
use crate::metrics::{HttpLabels, Metrics};
use crate::remote_write::IncomingExemplar;
use crate::storage::Storage;
pub use api::{MAX_TIME_MS, MIN_TIME_MS, parse_time, unescape_label_name};
pub use query::{parse_duration, write_timestamp};

/// Exemplars kept in memory (oldest dropped first), as Prometheus's
/// default exemplar storage.
pub const MAX_EXEMPLARS: usize = 100_000;

/// State shared by every handler.
pub struct AppState {
    pub config: Config,
    /// Set once storage is open and the WAL replayed.
    storage: OnceLock<Arc<dyn Storage>>,
    pub metadata: MetadataStore,
    pub exemplars: Mutex<VecDeque<IncomingExemplar>>,
    pub metrics: Metrics,
    /// Permits for concurrent write requests (load shedding).
    pub write_slots: Arc<Semaphore>,
    /// Permits for concurrent queries (further queries wait).
    pub query_slots: Arc<Semaphore>,
    pub started: chrono::DateTime<chrono::Utc>,
    pub shutting_down: AtomicBool,
    /// The loaded rule groups (set at start-up when `rule_files` match).
    pub rules: OnceLock<Arc<crate::rules::manager::RuleManager>>,
}

impl AppState {
    pub fn new(config: Config, metadata: MetadataStore) -> Self {
        let slots = config.remote_write.max_in_flight;
        AppState {
            query_slots: Arc::new(Semaphore::new(config.query.max_concurrency)),
            config,
            storage: OnceLock::new(),
            metadata,
            exemplars: Mutex::new(VecDeque::new()),
            metrics: Metrics::new(),
            write_slots: Arc::new(Semaphore::new(slots)),
            started: chrono::Utc::now(),
            shutting_down: AtomicBool::new(false),
            rules: OnceLock::new(),
        }
    }

    /// Makes storage available: from now on the server is ready.
    pub fn set_storage(&self, storage: Arc<dyn Storage>) {
        if self.storage.set(storage).is_ok() {
            self.metrics.ready.set(1);
        }
    }

    /// Storage, or 503 while the WAL is replayed or after shutdown began.
    pub fn storage(&self) -> Result<&Arc<dyn Storage>, Error> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(Error::Unavailable {
                reason: "shutting down".into(),
            });
        }
        self.storage.get().ok_or_else(|| Error::Unavailable {
            reason: "storage is starting (WAL replay in progress)".into(),
        })
    }

    /// Storage for the shutdown path (even when shutting down).
    pub fn storage_for_close(&self) -> Option<&Arc<dyn Storage>> {
        self.storage.get()
    }

    pub fn is_ready(&self) -> bool {
        self.storage.get().is_some() && !self.shutting_down.load(Ordering::Acquire)
    }
}

/// Builds the router with all endpoints.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/write", post(write::remote_write))
        .route("/api/v1/read", post(read::remote_read))
        .route("/api/v1/import/prometheus", post(write::import_prometheus))
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route("/api/v1/series", get(api::series).post(api::series))
        .route("/api/v1/labels", get(api::labels).post(api::labels))
        .route("/api/v1/label/{name}/values", get(api::label_values))
        .route("/api/v1/metadata", get(api::metadata))
        .route(
            "/api/v1/query_exemplars",
            get(api::query_exemplars).post(api::query_exemplars),
        )
        .route(
            "/api/v1/format_query",
            get(promql::format_query).post(promql::format_query),
        )
        .route(
            "/api/v1/parse_query",
            get(promql::parse_query).post(promql::parse_query),
        )
        .route("/api/v1/rules", get(api::rules).post(api::rules))
        .route("/api/v1/alerts", get(api::alerts).post(api::alerts))
        .route("/api/v1/status/buildinfo", get(api::buildinfo))
        .route("/api/v1/status/runtimeinfo", get(api::runtimeinfo))
        .route("/api/v1/status/flags", get(api::flags))
        .route("/api/v1/status/config", get(api::status_config))
        .route("/api/v1/status/tsdb", get(api::tsdb))
        .route("/api/v1/status/walreplay", get(api::walreplay))
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(admin::delete_series).put(admin::delete_series),
        )
        .route(
            "/api/v1/admin/tsdb/snapshot",
            post(admin::snapshot).put(admin::snapshot),
        )
        .route(
            "/api/v1/admin/tsdb/clean_tombstones",
            post(admin::clean_tombstones).put(admin::clean_tombstones),
        )
        .route("/-/healthy", any(healthy))
        .route("/-/ready", any(ready))
        .route(
            "/-/reload",
            post(crate::rules::reload::reload_handler).put(crate::rules::reload::reload_handler),
        )
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            read_timeout::limit,
        ))
        .fallback(not_found)
        .with_state(state)
}

/// Records the latency of each request by route pattern and status.
async fn track(
    State(state): State<Arc<AppState>>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let handler = matched
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .http_duration
        .get_or_create(&HttpLabels {
            handler,
            code: resp.status().as_u16(),
        })
        .observe(start.elapsed().as_secs_f64());
    resp
}

async fn healthy() -> &'static str {
    "Cairn is Healthy.\n"
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "Cairn is Ready.\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Ok(storage) = state.storage() {
        let storage = storage.clone();
        if let Ok(Ok(stats)) = tokio::task::spawn_blocking(move || storage.stats(0)).await {
            state.metrics.set_storage_stats(&stats);
        }
    }
    state
        .metrics
        .metadata_families
        .set(i64::try_from(state.metadata.len()).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError(Error::NotFound {
        what: format!("path {}", req.uri().path()),
    })
}

// --- Prometheus's JSON envelope ----------------------------------------------

/// `{"status":"success","data":...}` with optional warnings and infos.
#[derive(Serialize)]
pub struct Success<T: Serialize> {
    status: &'static str,
    data: T,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    infos: Vec<String>,
}

/// A success response with `data`.
pub fn success<T: Serialize>(data: T) -> Response {
    success_with(data, Vec::new(), Vec::new())
}

/// A success response with `data`, warnings and infos.
pub fn success_with<T: Serialize>(data: T, warnings: Vec<String>, infos: Vec<String>) -> Response {
    json_response(
        StatusCode::OK,
        &Success {
            status: "success",
            data,
            warnings,
            infos,
        },
    )
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            format!(
                "{{\"status\":\"error\",\"errorType\":\"internal\",\"error\":{}}}",
                serde_json::Value::String(e.to_string())
            ),
        )
            .into_response(),
    }
}

/// An error answered in Prometheus's envelope:
/// `{"status":"error","errorType":"bad_data","error":"..."}`.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            status: &'static str,
            #[serde(rename = "errorType")]
            error_type: &'a str,
            error: String,
        }
        let (status, kind) = self.0.status_and_type();
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "request failed");
        }
        let mut resp = json_response(
            status,
            &Body {
                status: "error",
                error_type: kind.as_str(),
                error: self.0.to_string(),
            },
        );
        if matches!(self.0, Error::Overloaded { .. }) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

// --- request parameters ------------------------------------------------------

/// Largest form body accepted on the query endpoints.
const MAX_FORM_BYTES: usize = 8 << 20;

/// Request parameters from the query string and, for a form-encoded POST,
/// the body, merged (as Go's `r.FormValue`): repeated keys such as
/// `match[]` keep every value, in order.
#[derive(Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `key`, if given and non-empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let mut pairs: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if req.method() == Method::POST && is_form {
            let body = read_body(req.into_body(), MAX_FORM_BYTES as u64, None).await?;
            // Body parameters come first, as Go's ParseForm orders them.
            let mut merged: Vec<(String, String)> =
                form_urlencoded::parse(&body).into_owned().collect();
            merged.append(&mut pairs);
            pairs = merged;
        }
        Ok(Params(pairs))
    }
}

/// Reads a body of at most `limit` bytes, failing with 413 as soon as more
/// arrives (never buffering more than `limit`). `declared` is the
/// Content-Length, checked before reading anything.
pub async fn read_body(body: Body, limit: u64, declared: Option<u64>) -> Result<Vec<u8>, Error> {
    if let Some(len) = declared
        && len > limit
    {
        return Err(Error::BodyTooLarge {
            limit_bytes: limit,
            detail: format!(" (Content-Length is {len})"),
        });
    }
    let mut body = body;
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| match read_timeout::ReadTimedOut::find(&e) {
            Some(timeout) => read_timeout::ReadTimedOut { timeout }.into(),
            None => Error::BodyRead {
                reason: e.to_string(),
            },
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() as u64 + data.len() as u64 > limit {
                return Err(Error::BodyTooLarge {
                    limit_bytes: limit,
                    detail: String::new(),
                });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}
