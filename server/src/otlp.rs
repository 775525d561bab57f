//! OTLP metrics ingest: OpenTelemetry's protocol over gRPC
//! (`MetricsService/Export`) and HTTP (`POST /v1/metrics`, protobuf or
//! JSON), translated to Prometheus series the way Prometheus's own OTLP
//! receiver does.
//!
//! Data path: a transport ([`grpc`], [`http`]) decodes the request
//! (gzip, body limits), [`OtlpReceiver::ingest`] translates it
//! ([`translate`], with names from [`naming`] and per-stream state from
//! [`streams`]), appends the series with `Db::append` on a blocking thread
//! (returning after the WAL fsync), records metadata, and only then is the
//! request answered: success, or `partial_success` counting the data points
//! refused and why. Retryable failures (overload, storage unavailable) are
//! gRPC `UNAVAILABLE` / HTTP 503 with `Retry-After`; bad data is
//! `INVALID_ARGUMENT` / 400 (never retried).

pub mod grpc;
pub mod http;
pub mod naming;
pub mod streams;
pub mod translate;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_engine::{Db, RejectReason};
use cairn_proto::opentelemetry::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::config::PromDuration;
use crate::error::{Error, Result};
use crate::metadata::MetadataStore;
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
    db: Arc<Db>,
    config: OtlpConfig,
    /// How far in the future a sample may be (the remote-write setting).
    max_future_ms: i64,
    streams: Streams,
    metadata: Arc<MetadataStore>,
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
    pub fn new(
        db: Arc<Db>,
        config: OtlpConfig,
        max_future: PromDuration,
        metadata: Arc<MetadataStore>,
    ) -> Self {
        OtlpReceiver {
            streams: Streams::new(config.max_streams, config.stream_max_stale.as_millis_i64()),
            in_flight: Semaphore::new(config.max_in_flight.max(1)),
            max_future_ms: max_future.as_millis_i64(),
            db,
            config,
            metadata,
        }
    }

    pub fn config(&self) -> &OtlpConfig {
        &self.config
    }

    pub fn metadata(&self) -> &Arc<MetadataStore> {
        &self.metadata
    }

    /// Translates a request without storing it (benches, tests).
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
    /// whole-request failures (overload, storage).
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

    /// The blocking half of [`OtlpReceiver::ingest`]: translation and
    /// `Db::append` (which returns after the WAL fsync).
    pub fn ingest_blocking(&self, req: &ExportMetricsServiceRequest) -> Result<ExportOutcome> {
        let translated = self.translate(req);
        let mut rejected = translated.rejected.clone();
        let outcome = if translated.series.is_empty() {
            Default::default()
        } else {
            self.db.append(&translated.series)?
        };
        for r in &outcome.rejected {
            let counts = translated
                .counts_points
                .get(r.index)
                .copied()
                .unwrap_or(false);
            let name = translated
                .series
                .get(r.index)
                .map(|s| s.labels.to_string())
                .unwrap_or_default();
            let reason = match &r.reason {
                RejectReason::TooOld => "too old sample".to_string(),
                RejectReason::DuplicateSampleForTimestamp => {
                    "duplicate sample for timestamp".to_string()
                }
                RejectReason::InvalidLabels(why) => format!("invalid labels: {why}"),
            };
            let points = if counts { r.samples } else { 0 };
            if points > 0 {
                rejected.add(points, &reason, &name);
            } else if !counts {
                // Samples of bucket/sum/target_info series: no data point
                // of their own, but say so.
                rejected.warn(format!("{} samples of {name} refused: {reason}", r.samples));
            }
        }
        for (name, m) in &translated.metadata {
            self.metadata.record(name, m.clone());
        }
        Ok(ExportOutcome {
            points_received: translated.points_received,
            samples_appended: outcome.samples_appended,
            rejected_points: rejected.points.min(translated.points_received),
            message: rejected.message(),
        })
    }
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
