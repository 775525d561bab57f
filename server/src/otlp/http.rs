//! OTLP/HTTP: `POST /v1/metrics` with a protobuf (`application/x-protobuf`)
//! or JSON (`application/json`) `ExportMetricsServiceRequest`, optionally
//! gzip-compressed.
//!
//! Checks in order: Content-Encoding (415), Content-Type (415), body size as
//! sent (413), gzip (400) and size after decompression (413), decoding (400),
//! then ingest. Success is 200 with an `ExportMetricsServiceResponse` in the
//! request's format (`partial_success` set when points were refused);
//! failures carry a `google.rpc.Status` in the request's format. Overload
//! and storage unavailability are 503 with `Retry-After` (OTLP clients
//! retry 429, 502, 503, 504 and nothing else).
//!
//! OTLP/JSON is decoded with the pbjson-generated serde implementations
//! (proto3 JSON mapping: camelCase or original field names, 64-bit integers
//! as strings or numbers, enums as names or numbers, unknown fields
//! ignored). Trace and span ids, hex in OTLP/JSON, appear only in exemplars,
//! which Cairn does not store; they decode without error and are unused.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cairn_proto::google::rpc::Status;
use cairn_proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use cairn_proto::prost::Message;

use super::{OtlpReceiver, grpc_code};
use crate::error::Error;

/// Seconds a client is asked to wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "5";

/// The body format of a request (and so of its response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// The router serving `POST /v1/metrics`. Mount it at the root of the
/// OTLP/HTTP port, and under `/otlp` (and Prometheus's `/api/v1/otlp`) on
/// the main HTTP port.
pub fn otlp_router(receiver: Arc<OtlpReceiver>) -> Router {
    Router::new()
        .route("/v1/metrics", post(export))
        .with_state(receiver)
}

/// Serves OTLP/HTTP on its own listener until `shutdown` resolves.
pub async fn serve(
    receiver: Arc<OtlpReceiver>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, otlp_router(receiver))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Chooses the format from the headers; 415 for anything else.
pub fn negotiate(headers: &HeaderMap) -> Result<(Format, bool), Error> {
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e.is_empty() || e == "identity" => false,
        Some(e) if e == "gzip" => true,
        Some(e) => {
            return Err(Error::UnsupportedMediaType {
                what: "Content-Encoding",
                value: e,
                expected: "OTLP/HTTP accepts gzip or no encoding",
            });
        }
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?"))
        .unwrap_or("");
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let format = match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Format::Protobuf,
        "application/json" => Format::Json,
        _ => {
            return Err(Error::UnsupportedMediaType {
                what: "Content-Type",
                value: ct.to_string(),
                expected: "OTLP/HTTP accepts application/x-protobuf or application/json",
            });
        }
    };
    Ok((format, gzip))
}

/// Decompresses a gzip body, refusing to produce more than `limit` bytes.
pub fn gunzip(body: &[u8], limit: u64) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut reader = flate2::read::GzDecoder::new(body).take(limit.saturating_add(1));
    reader.read_to_end(&mut out).map_err(|e| Error::BadParam {
        param: "body".into(),
        reason: format!("invalid gzip data: {e}"),
    })?;
    if out.len() as u64 > limit {
        return Err(Error::BodyTooLarge {
            limit_bytes: limit,
            detail: " after gzip decompression".into(),
        });
    }
    Ok(out)
}

/// Decodes an uncompressed body.
pub fn decode(format: Format, body: &[u8]) -> Result<ExportMetricsServiceRequest, Error> {
    match format {
        Format::Protobuf => {
            ExportMetricsServiceRequest::decode(body).map_err(|e| Error::Protobuf {
                message: "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest",
                reason: e.to_string(),
            })
        }
        Format::Json => serde_json::from_slice(body).map_err(|e| Error::BadParam {
            param: "body".into(),
            reason: format!("invalid OTLP/JSON: {e}"),
        }),
    }
}

/// Reads, decodes and checks a request body: everything before ingest.
pub fn read_request(
    headers: &HeaderMap,
    body: &[u8],
    max_decoded_bytes: u64,
) -> Result<(Format, ExportMetricsServiceRequest), (Format, Error)> {
    let (format, gzip) = negotiate(headers).map_err(|e| (Format::Protobuf, e))?;
    let raw;
    let plain: &[u8] = if gzip {
        raw = gunzip(body, max_decoded_bytes).map_err(|e| (format, e))?;
        &raw
    } else {
        if body.len() as u64 > max_decoded_bytes {
            return Err((
                format,
                Error::BodyTooLarge {
                    limit_bytes: max_decoded_bytes,
                    detail: String::new(),
                },
            ));
        }
        body
    };
    let req = decode(format, plain).map_err(|e| (format, e))?;
    Ok((format, req))
}

async fn export(
    State(receiver): State<Arc<OtlpReceiver>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limit = receiver.config().max_body_bytes;
    let bytes: Bytes =
        match axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX)).await {
            Ok(b) => b,
            Err(e) => {
                let format = negotiate(&headers).map(|f| f.0).unwrap_or(Format::Protobuf);
                // axum reports an over-long body as a length-limit error.
                let too_long = std::error::Error::source(&e)
                    .is_some_and(|s| s.to_string().contains("length limit"))
                    || e.to_string().contains("length limit");
                let err = if too_long {
                    Error::BodyTooLarge {
                        limit_bytes: limit,
                        detail: String::new(),
                    }
                } else {
                    Error::BodyRead {
                        reason: e.to_string(),
                    }
                };
                return error_response(format, &err);
            }
        };
    let (format, req) = match read_request(&headers, &bytes, receiver.config().max_decoded_bytes) {
        Ok(x) => x,
        Err((format, e)) => return error_response(format, &e),
    };
    match receiver.ingest(req).await {
        Ok(outcome) => {
            let resp = outcome.response();
            let body = match format {
                Format::Protobuf => resp.encode_to_vec(),
                Format::Json => serde_json::to_vec(&resp).unwrap_or_else(|_| b"{}".to_vec()),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, format.content_type())],
                body,
            )
                .into_response()
        }
        Err(e) => error_response(format, &e),
    }
}

/// The HTTP status of an OTLP failure (derived from its gRPC code, so both
/// transports agree on what is retryable).
pub fn http_status(e: &Error) -> StatusCode {
    match grpc_code(e) {
        tonic::Code::InvalidArgument => match e.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        },
        tonic::Code::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A failure as `google.rpc.Status` in the request's format.
pub fn error_response(format: Format, e: &Error) -> Response {
    let status = http_status(e);
    let msg = Status {
        code: grpc_code(e) as i32,
        message: e.to_string(),
    };
    let body = match format {
        Format::Protobuf => msg.encode_to_vec(),
        Format::Json => serde_json::to_vec(&msg).unwrap_or_default(),
    };
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    resp
}
