//! `POST /api/v1/read`: Prometheus remote-read, answered in the SAMPLES
//! response type (one snappy-compressed `ReadResponse`). Clients that also
//! accept `STREAMED_XOR_CHUNKS` pick the format from our `Content-Type`,
//! so SAMPLES serves every Prometheus version.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_engine::{MatchOp, Matcher, Sample};
use cairn_proto::prometheus as pb;
use cairn_proto::prost::Message;

use super::{AppState, read_body};
use crate::error::Error;
use crate::remote_write;

/// Plain-text errors, as Prometheus's remote-read handler answers them.
pub(super) struct ReadError(Error);

impl IntoResponse for ReadError {
    fn into_response(self) -> Response {
        (self.0.status(), format!("{}\n", self.0)).into_response()
    }
}

impl From<Error> for ReadError {
    fn from(e: Error) -> Self {
        ReadError(e)
    }
}

fn matcher(m: &pb::LabelMatcher) -> Result<Matcher, Error> {
    use pb::label_matcher::Type;
    let op = match Type::try_from(m.r#type) {
        Ok(Type::Eq) => MatchOp::Equal,
        Ok(Type::Neq) => MatchOp::NotEqual,
        Ok(Type::Re) => MatchOp::RegexMatch,
        Ok(Type::Nre) => MatchOp::RegexNoMatch,
        Err(_) => {
            return Err(Error::BadParam {
                param: "matchers".into(),
                reason: format!("unknown matcher type {}", m.r#type),
            });
        }
    };
    Ok(Matcher::new(op, m.name.clone(), m.value.clone())?)
}

pub(super) async fn remote_read(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ReadError> {
    let storage = state.storage()?.clone();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limits = &state.config.remote_write;
    let compressed = read_body(body, limits.max_body_bytes, declared).await?;
    let max_decoded = limits.max_decoded_bytes;
    let max_samples = state.config.query.max_samples;
    let response = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, Error> {
        let buf = remote_write::decompress(&compressed, max_decoded)?;
        let req = pb::ReadRequest::decode(buf.as_slice()).map_err(|e| Error::Protobuf {
            message: "prometheus.ReadRequest",
            reason: e.to_string(),
        })?;
        let querier = storage.querier()?;
        let mut results = Vec::with_capacity(req.queries.len());
        let mut total: u64 = 0;
        let mut samples: Vec<Sample> = Vec::new();
        for q in &req.queries {
            let matchers = q
                .matchers
                .iter()
                .map(matcher)
                .collect::<Result<Vec<_>, _>>()?;
            let (mint, maxt) = (q.start_timestamp_ms, q.end_timestamp_ms);
            let mut timeseries = Vec::new();
            for series in querier.select(&matchers, mint, maxt)? {
                samples.clear();
                series.read_samples(mint, maxt, &mut samples);
                total += samples.len() as u64;
                if total > max_samples {
                    return Err(Error::Execution {
                        reason: format!(
                            "remote-read would return more than {max_samples} samples \
                             (query.max_samples); narrow the time range or matchers"
                        ),
                    });
                }
                timeseries.push(pb::TimeSeries {
                    labels: series
                        .labels
                        .iter()
                        .map(|l| pb::Label {
                            name: l.name.to_string(),
                            value: l.value.to_string(),
                        })
                        .collect(),
                    samples: samples
                        .iter()
                        .map(|s| pb::Sample {
                            value: s.v,
                            timestamp: s.t,
                        })
                        .collect(),
                    ..Default::default()
                });
            }
            results.push(pb::QueryResult { timeseries });
        }
        let raw = pb::ReadResponse { results }.encode_to_vec();
        snap::raw::Encoder::new()
            .compress_vec(&raw)
            .map_err(|e| Error::Internal {
                reason: format!("snappy encode: {e}"),
            })
    })
    .await
    .map_err(|e| Error::Internal {
        reason: format!("read task failed: {e}"),
    })??;
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            ),
            (header::CONTENT_ENCODING, HeaderValue::from_static("snappy")),
        ],
        response,
    )
        .into_response())
}
