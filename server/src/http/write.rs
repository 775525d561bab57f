//! `POST /api/v1/write`: the remote-write 1.0 and 2.0 receiver.
//!
//! Order of checks: headers (415), load shedding (503), readiness (503),
//! body size while reading (413), then on a blocking thread snappy (400),
//! protobuf (400), per-series validation, and the append, which returns
//! only after the WAL fsync. 204 only if everything was written; 400 with a
//! plain-text body naming counts, reasons and series if anything was
//! rejected (the valid rest is written: partial acceptance). For 2.0 the
//! `X-Prometheus-Remote-Write-*-Written` headers are set on every answer
//! given after decoding.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AppState, MAX_EXEMPLARS, read_body};
use crate::error::Error;
use crate::remote_write::{self, DecodeLimits, Protocol};

const SAMPLES_WRITTEN: &str = "x-prometheus-remote-write-samples-written";
const HISTOGRAMS_WRITTEN: &str = "x-prometheus-remote-write-histograms-written";
const EXEMPLARS_WRITTEN: &str = "x-prometheus-remote-write-exemplars-written";

/// Counts for the `*-Written` headers.
#[derive(Debug, Default, Clone, Copy)]
struct Written {
    samples: u64,
    histograms: u64,
    exemplars: u64,
}

/// An error answered to a remote-write sender: plain text (senders log it,
/// they do not parse JSON), status from the one mapping.
struct WriteError {
    error: Error,
    /// Set for 2.0 requests that got as far as decoding.
    written: Option<Written>,
}

impl IntoResponse for WriteError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        if status.is_server_error() {
            tracing::warn!(error = %self.error, "remote-write failed");
        } else {
            tracing::debug!(error = %self.error, "remote-write rejected");
        }
        let mut resp = (status, format!("{}\n", self.error)).into_response();
        let h = resp.headers_mut();
        if matches!(self.error, Error::Overloaded { .. }) {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(w) = self.written {
            set_written(h, w);
        }
        resp
    }
}

fn set_written(h: &mut HeaderMap, w: Written) {
    h.insert(SAMPLES_WRITTEN, HeaderValue::from(w.samples));
    h.insert(HISTOGRAMS_WRITTEN, HeaderValue::from(w.histograms));
    h.insert(EXEMPLARS_WRITTEN, HeaderValue::from(w.exemplars));
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).map(|v| v.to_str().unwrap_or("<not ASCII>"))
}

pub(super) async fn remote_write(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle(state, headers, body).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, WriteError> {
    let plain = |error: Error| WriteError {
        error,
        written: None,
    };
    let protocol = remote_write::negotiate(
        header_str(&headers, header::CONTENT_TYPE),
        header_str(&headers, header::CONTENT_ENCODING),
    )
    .map_err(plain)?;

    let limits = &state.config.remote_write;
    let _permit = state.write_slots.clone().try_acquire_owned().map_err(|_| {
        plain(Error::Overloaded {
            what: "remote-write",
            limit: limits.max_in_flight,
        })
    })?;
    let storage = state.storage().map_err(plain)?.clone();

    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let compressed = read_body(body, limits.max_body_bytes, declared)
        .await
        .map_err(plain)?;

    let max_decoded = limits.max_decoded_bytes;
    let max_timestamp = chrono::Utc::now()
        .timestamp_millis()
        .saturating_add(limits.max_future.as_millis_i64());
    let st = state.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<Outcome, WriteError> {
        let buf = remote_write::decompress(&compressed, max_decoded).map_err(plain)?;
        drop(compressed);
        let mut decoded = remote_write::decode_with_cache(
            protocol,
            &buf,
            DecodeLimits { max_timestamp },
            storage.series_cache(),
        )
        .map_err(plain)?;
        drop(buf);
        st.metrics.series_cache_hits.inc_by(decoded.series_cached);

        let series = std::mem::take(&mut decoded.series);
        let started = std::time::Instant::now();
        let report = if series.is_empty() {
            Default::default()
        } else {
            storage.append(series).map_err(|error| WriteError {
                error,
                // Nothing may be assumed written: the sender retries.
                written: (protocol == Protocol::V2).then_some(Written::default()),
            })?
        };
        st.metrics
            .append_duration
            .observe(started.elapsed().as_secs_f64());
        for (labels, reason, n, detail) in &report.rejected {
            decoded
                .rejected
                .add(*reason, *n, &labels.to_string(), detail);
        }
        st.metadata.record(&decoded.metadata);
        let exemplars = decoded.exemplars.len() as u64;
        if exemplars > 0 {
            let mut store = st.exemplars.lock();
            for ex in std::mem::take(&mut decoded.exemplars) {
                if store.len() == MAX_EXEMPLARS {
                    store.pop_front();
                }
                store.push_back(ex);
            }
        }
        Ok(Outcome {
            written: Written {
                samples: report.appended,
                histograms: decoded.histograms_sent - decoded.rejected.histograms,
                exemplars,
            },
            rejected: decoded.rejected,
        })
    })
    .await
    .map_err(|e| {
        plain(Error::Internal {
            reason: format!("write task failed: {e}"),
        })
    })??;

    state
        .metrics
        .count_ingested(protocol, outcome.written.samples);
    state
        .metrics
        .ingested_exemplars
        .inc_by(outcome.written.exemplars);
    for (reason, n) in &outcome.rejected.samples {
        state.metrics.count_rejected(*reason, *n);
    }
    let written = (protocol == Protocol::V2).then_some(outcome.written);
    if !outcome.rejected.is_empty() {
        return Err(WriteError {
            error: Error::WriteRejected {
                summary: outcome.rejected.summary(),
            },
            written,
        });
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Some(w) = written {
        set_written(resp.headers_mut(), w);
    }
    Ok(resp)
}

struct Outcome {
    written: Written,
    rejected: remote_write::Rejections,
}

/// `POST /api/v1/import/prometheus`: samples in the text exposition
/// format (see `crate::import`). 204 when everything was written, 400 with
/// the line for a malformed body (nothing written), 400 naming series for
/// samples storage rejected (the rest written).
pub(super) async fn import_prometheus(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match import(state, headers, body).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn import(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, WriteError> {
    let plain = |error: Error| WriteError {
        error,
        written: None,
    };
    if let Some(enc) = header_str(&headers, header::CONTENT_ENCODING)
        && !enc.eq_ignore_ascii_case("identity")
    {
        return Err(plain(Error::UnsupportedMediaType {
            what: "Content-Encoding",
            value: enc.to_string(),
            expected: "the import endpoint takes an uncompressed body",
        }));
    }
    let limits = &state.config.remote_write;
    let _permit = state.write_slots.clone().try_acquire_owned().map_err(|_| {
        plain(Error::Overloaded {
            what: "import",
            limit: limits.max_in_flight,
        })
    })?;
    let storage = state.storage().map_err(plain)?.clone();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = read_body(body, limits.max_body_bytes, declared)
        .await
        .map_err(plain)?;
    let now = chrono::Utc::now().timestamp_millis();
    let st = state.clone();
    let (appended, rejected) = tokio::task::spawn_blocking(move || {
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            plain(Error::BadParam {
                param: "body".into(),
                reason: format!("not UTF-8: {e}"),
            })
        })?;
        let parsed = crate::import::parse(text, now).map_err(plain)?;
        let report = storage.append(parsed.series).map_err(plain)?;
        st.metadata.record(&parsed.metadata);
        let mut rejected = remote_write::Rejections::default();
        for (labels, reason, n, detail) in &report.rejected {
            rejected.add(*reason, *n, &labels.to_string(), detail);
        }
        Ok::<_, WriteError>((report.appended, rejected))
    })
    .await
    .map_err(|e| {
        plain(Error::Internal {
            reason: format!("import task failed: {e}"),
        })
    })??;
    state.metrics.count_ingested(Protocol::Import, appended);
    for (reason, n) in &rejected.samples {
        state.metrics.count_rejected(*reason, *n);
    }
    if !rejected.is_empty() {
        return Err(plain(Error::WriteRejected {
            summary: rejected.summary(),
        }));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
