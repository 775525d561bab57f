//! OTLP metrics ingest: OpenTelemetry's protocol over gRPC
//! (`MetricsService/Export`) and HTTP (`POST /v1/metrics`, protobuf or
//! JSON), translated to Prometheus series the way Prometheus's own OTLP
//! receiver does.
//!
//! Data path: a transport ([`grpc`], [`http`]) decodes the request
//! (gzip, body limits), [`OtlpReceiver::ingest`] translates it
//! ([`translate`], with names from [`naming`] and per-stream state from
//! [`streams`]), appends the series through the server's storage (the
//! engine's `Db::append`) on a blocking thread, which returns after the WAL
//! fsync, records metadata in the server's store, and only then is the
//! request answered: success, or `partial_success` counting the data points
//! refused and why. Retryable failures (overload, storage unavailable) are
//! gRPC `UNAVAILABLE` / HTTP 503 with `Retry-After`; bad data is
//! `INVALID_ARGUMENT` / 400 (never retried).

pub mod grpc;
pub mod http;
pub mod naming;
pub mod streams;
pub mod translate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_engine::Labels;
use cairn_proto::opentelemetry::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::config::PromDuration;
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::remote_write::IncomingSeries;
use crate::storage::AppendReport;
pub use naming::TranslationStrategy;
use streams::Streams;
use translate::{Translated, Translator};

pub use grpc::otlp_grpc_service;
pub use http::otlp_router;

/// The `otlp:` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// How metric and label names are translated (Prometheus's spellings:
    /// `UnderscoreEscapingWithSuffixes`, `UnderscoreEscapingWithoutSuffixes`,
    /// `NoUTF8EscapingWithSuffixes`, `NoTranslation`).
    pub translation_strategy: TranslationStrategy,
    /// Resource attributes copied onto every series (as labels).
    pub promote_resource_attributes: Vec<String>,
    /// Add `otel_scope_name`, `otel_scope_version`, `otel_scope_schema_url`
    /// and `otel_scope_<attribute>` labels (off by default, as in
    /// Prometheus).
    pub promote_scope_metadata: bool,
    /// Write a `target_info` series per resource with its non-identifying
    /// attributes.
    pub target_info: bool,
    /// Keep `service.*` attributes in `target_info` as well.
    pub keep_identifying_resource_attributes: bool,
    /// Convert delta Sums and Histograms to cumulative (state per stream,
    /// in memory); when off, delta points are rejected.
    pub convert_delta_to_cumulative: bool,
    /// A stream not updated for this long is forgotten.
    pub stream_max_stale: PromDuration,
    /// Most streams whose state is kept (delta accumulation, reset
    /// detection); new delta streams beyond it are rejected.
    pub max_streams: usize,
    /// Largest request body as sent (possibly gzip-compressed): 413.
    pub max_body_bytes: u64,
    /// Largest request after decompression: 413.
    pub max_decoded_bytes: u64,
    /// Requests processed at once; beyond: 503 / UNAVAILABLE, retry.
    pub max_in_flight: usize,
    /// Data points whose label set would have more labels are rejected.
    pub max_labels_per_series: usize,
    /// Data points with a longer label value are rejected.
    pub max_label_value_bytes: usize,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            translation_strategy: TranslationStrategy::default(),
            promote_resource_attributes: Vec::new(),
            promote_scope_metadata: false,
            target_info: true,
            keep_identifying_resource_attributes: false,
            convert_delta_to_cumulative: true,
            stream_max_stale: PromDuration::from_secs(300),
            max_streams: 1_000_000,
            max_body_bytes: 32 << 20,
            max_decoded_bytes: 64 << 20,
            max_in_flight: 64,
            max_labels_per_series: 128,
            max_label_value_bytes: 16 << 10,
        }
    }
}

/// What an export did: the answer both transports send.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOutcome {
    pub points_received: u64,
    pub samples_appended: u64,
    /// Data points refused (by translation or by storage).
    pub rejected_points: u64,
    /// Empty when everything was accepted.
    pub message: String,
}

impl ExportOutcome {
    /// The response message: `partial_success` only when something was
    /// refused or there is a message.
    pub fn response(&self) -> ExportMetricsServiceResponse {
        if self.rejected_points == 0 && self.message.is_empty() {
            return ExportMetricsServiceResponse::default();
        }
        ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: i64::try_from(self.rejected_points).unwrap_or(i64::MAX),
                error_message: self.message.clone(),
            }),
        }
    }
}

/// The OTLP receiver shared by the gRPC and HTTP transports.
pub struct OtlpReceiver {
    /// The server's state: storage (once the WAL is replayed), metadata.
    app: Arc<AppState>,
    config: OtlpConfig,
    /// How far in the future a sample may be (the remote-write setting).
    max_future_ms: i64,
    streams: Streams,
    in_flight: Semaphore,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("config", &self.config)
            .field("streams", &self.streams.len())
            .finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl OtlpReceiver {
    /// A receiver writing into the server's storage, configured by the
    /// `otlp:` section (and `remote_write.max_future`).
    pub fn new(app: Arc<AppState>) -> Self {
        let config = app.config.otlp.clone();
        OtlpReceiver {
            streams: Streams::new(config.max_streams, config.stream_max_stale.as_millis_i64()),
            in_flight: Semaphore::new(config.max_in_flight.max(1)),
            max_future_ms: app.config.remote_write.max_future.as_millis_i64(),
            app,
            config,
        }
    }

    pub fn config(&self) -> &OtlpConfig {
        &self.config
    }

    /// Streams with delta or reset-detection state.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Translates a request without storing it (benches, tests). Updates
    /// the per-stream state as an ingest would.
    pub fn translate(&self, req: &ExportMetricsServiceRequest) -> Translated {
        let now = now_ms();
        Translator {
            config: &self.config,
            streams: &self.streams,
            max_t: now.saturating_add(self.max_future_ms),
            now_ms: now,
        }
        .translate(req)
    }

    /// Translates, appends durably and says what was refused. Errors are
    /// whole-request failures (overload, storage not ready or failing).
    pub async fn ingest(
        self: &Arc<Self>,
        req: ExportMetricsServiceRequest,
    ) -> Result<ExportOutcome> {
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| Error::Overloaded {
                what: "OTLP",
                limit: self.config.max_in_flight,
            })?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.ingest_blocking(&req))
            .await
            .map_err(|e| Error::Internal {
                reason: format!("OTLP ingest task failed: {e}"),
            })?
    }

    /// The blocking half of [`OtlpReceiver::ingest`]: translation, then
    /// the append, which returns after the WAL fsync.
    pub fn ingest_blocking(&self, req: &ExportMetricsServiceRequest) -> Result<ExportOutcome> {
        // Refuse before translating while storage is not ready, so that
        // delta state does not advance for a request that is retried.
        let storage = self.app.storage()?.clone();
        let translated = self.translate(req);
        let mut rejected = translated.rejected.clone();
        let counts: HashMap<&Labels, bool> = translated
            .series
            .iter()
            .zip(&translated.counts_points)
            .map(|(s, c)| (&s.labels, *c))
            .collect();
        let report = if translated.series.is_empty() {
            AppendReport::default()
        } else {
            let batch = translated
                .series
                .iter()
                .map(|s| IncomingSeries::new(s.labels.clone(), s.samples.clone()))
                .collect();
            storage.append(batch)?
        };
        for (labels, reason, n, detail) in &report.rejected {
            let why = if detail.is_empty() {
                reason.to_string()
            } else {
                format!("{reason} ({detail})")
            };
            if counts.get(labels).copied().unwrap_or(false) {
                rejected.add(*n, &why, &labels.to_string());
            } else {
                // Bucket, sum and target_info samples stand for no data
                // point of their own; still say they were refused.
                rejected.warn(format!("{n} samples of {labels} refused: {why}"));
            }
        }
        self.app.metadata.record(&translated.metadata);
        Ok(ExportOutcome {
            points_received: translated.points_received,
            samples_appended: report.appended,
            rejected_points: rejected.points.min(translated.points_received),
            message: rejected.message(),
        })
    }
}

/// The addresses the OTLP listeners are bound to.
#[derive(Debug, Clone, Copy)]
pub struct OtlpAddrs {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

/// Binds the OTLP/gRPC and OTLP/HTTP listeners and serves them in the
/// background until `stop` becomes true. Binding errors are returned (a
/// start-up failure); serving errors are logged.
pub async fn spawn_listeners(
    receiver: Arc<OtlpReceiver>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(OtlpAddrs, Vec<tokio::task::JoinHandle<()>>)> {
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })
    };
    let grpc_listener = bind(grpc_addr).await?;
    let http_listener = bind(http_addr).await?;
    let addrs = OtlpAddrs {
        grpc: grpc_listener.local_addr().unwrap_or(grpc_addr),
        http: http_listener.local_addr().unwrap_or(http_addr),
    };
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        // Ends on `true` or when the sender is gone.
        let _ = rx.wait_for(|v| *v).await;
    };
    let g = {
        let r = receiver.clone();
        let done = stopped(stop.clone());
        tokio::spawn(async move {
            if let Err(e) = grpc::serve(r, grpc_listener, done).await {
                tracing::error!(error = %e, "OTLP/gRPC server failed");
            }
        })
    };
    let h = {
        let done = stopped(stop);
        tokio::spawn(async move {
            if let Err(e) = http::serve(receiver, http_listener, done).await {
                tracing::error!(error = %e, "OTLP/HTTP server failed");
            }
        })
    };
    Ok((addrs, vec![g, h]))
}

/// Whether an error should be retried by an OTLP client, and the gRPC code
/// that says so. **The** mapping of OTLP failures; HTTP statuses follow
/// from it in `http`.
pub fn grpc_code(e: &Error) -> tonic::Code {
    use axum::http::StatusCode;
    match e.status() {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            tonic::Code::InvalidArgument
        }
        StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => tonic::Code::Unavailable,
        // Storage failures (a WAL that cannot be written) are retryable:
        // the client keeps the data until Cairn is repaired or restarted.
        _ if matches!(e, Error::Engine(_)) => tonic::Code::Unavailable,
        _ => tonic::Code::Internal,
    }
}

#[cfg(test)]
mod tests;
