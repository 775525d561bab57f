//! `POST /api/v1/read`: Prometheus remote-read. The response type is the
//! first of the request's `accepted_response_types` (in the client's order
//! of preference; none listed means SAMPLES):
//!
//! - SAMPLES: one snappy-compressed `ReadResponse` with decoded samples;
//! - STREAMED_XOR_CHUNKS: frames of `ChunkedReadResponse` (see
//!   [`write_frame`]), each series' samples re-encoded as Prometheus XOR
//!   chunks of at most [`xor_chunk::MAX_SAMPLES_PER_CHUNK`] samples, a frame
//!   closed once it holds [`MAX_FRAME_BYTES`] of chunk data (a long series
//!   continues, same labels, in the next frame).
//!
//! Both are bounded by `query.max_samples` over the whole request.

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
use crate::xor_chunk;

/// The streamed response's `Content-Type`.
pub const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// Chunk bytes after which a streamed frame is closed (Prometheus's own
/// server default, `--storage.remote.read-max-bytes-in-frame`, is 1 MiB).
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Appends one frame: the message size as a uvarint, the CRC32
/// (Castagnoli) of the message as a big-endian u32, then the message.
pub fn write_frame(out: &mut Vec<u8>, msg: &[u8]) {
    let mut n = msg.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(&crc32c::crc32c(msg).to_be_bytes());
    out.extend_from_slice(msg);
}

/// Builds the frames of a streamed answer: one series at a time, chunks of
/// at most 120 samples, a frame flushed once its chunks pass the byte bound.
struct FrameBuilder {
    out: Vec<u8>,
    frame: pb::ChunkedReadResponse,
    frame_bytes: usize,
    /// [`MAX_FRAME_BYTES`] in service; smaller in tests.
    max_frame_bytes: usize,
}

impl FrameBuilder {
    fn flush(&mut self) {
        if !self.frame.chunked_series.is_empty() {
            write_frame(&mut self.out, &self.frame.encode_to_vec());
            self.frame.chunked_series.clear();
        }
        self.frame_bytes = 0;
    }

    fn series(&mut self, query_index: i64, labels: Vec<pb::Label>, samples: &[Sample]) {
        if self.frame.query_index != query_index {
            self.flush();
            self.frame.query_index = query_index;
        }
        let mut current = pb::ChunkedSeries {
            labels: labels.clone(),
            chunks: Vec::new(),
        };
        for part in samples.chunks(xor_chunk::MAX_SAMPLES_PER_CHUNK) {
            let (Some(first), Some(last)) = (part.first(), part.last()) else {
                continue;
            };
            let data = xor_chunk::encode(part);
            self.frame_bytes += data.len();
            current.chunks.push(pb::Chunk {
                min_time_ms: first.t,
                max_time_ms: last.t,
                r#type: pb::chunk::Encoding::Xor as i32,
                data,
            });
            if self.frame_bytes >= self.max_frame_bytes {
                let full = std::mem::replace(
                    &mut current,
                    pb::ChunkedSeries {
                        labels: labels.clone(),
                        chunks: Vec::new(),
                    },
                );
                self.frame.chunked_series.push(full);
                self.flush();
            }
        }
        if !current.chunks.is_empty() {
            self.frame.chunked_series.push(current);
        }
    }
}

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
    let (streamed, response) =
        tokio::task::spawn_blocking(move || -> Result<(bool, Vec<u8>), Error> {
            let buf = remote_write::decompress(&compressed, max_decoded)?;
            let req = pb::ReadRequest::decode(buf.as_slice()).map_err(|e| Error::Protobuf {
                message: "prometheus.ReadRequest",
                reason: e.to_string(),
            })?;
            use pb::read_request::ResponseType;
            // The client's first preference we know; unknown values are skipped.
            let streamed = req
                .accepted_response_types
                .iter()
                .find_map(|&t| ResponseType::try_from(t).ok())
                == Some(ResponseType::StreamedXorChunks);
            tracing::debug!(
                streamed,
                accepted = ?req.accepted_response_types,
                queries = req.queries.len(),
                "remote-read"
            );
            let querier = storage.querier()?;
            let mut results = Vec::with_capacity(req.queries.len());
            let mut frames = FrameBuilder {
                out: Vec::new(),
                frame: pb::ChunkedReadResponse::default(),
                frame_bytes: 0,
                max_frame_bytes: MAX_FRAME_BYTES,
            };
            let mut total: u64 = 0;
            let mut samples: Vec<Sample> = Vec::new();
            for (index, q) in req.queries.iter().enumerate() {
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
                    let labels: Vec<pb::Label> = series
                        .labels
                        .iter()
                        .map(|l| pb::Label {
                            name: l.name.to_string(),
                            value: l.value.to_string(),
                        })
                        .collect();
                    if streamed {
                        frames.series(index as i64, labels, &samples);
                        continue;
                    }
                    timeseries.push(pb::TimeSeries {
                        labels,
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
            if streamed {
                frames.flush();
                return Ok((true, frames.out));
            }
            let raw = pb::ReadResponse { results }.encode_to_vec();
            let body =
                snap::raw::Encoder::new()
                    .compress_vec(&raw)
                    .map_err(|e| Error::Internal {
                        reason: format!("snappy encode: {e}"),
                    })?;
            Ok((false, body))
        })
        .await
        .map_err(|e| Error::Internal {
            reason: format!("read task failed: {e}"),
        })??;
    if streamed {
        return Ok((
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(STREAMED_CONTENT_TYPE),
            )],
            response,
        )
            .into_response());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a framed body back into messages, checking each checksum.
    fn frames(mut body: &[u8]) -> Vec<pb::ChunkedReadResponse> {
        let mut out = Vec::new();
        while !body.is_empty() {
            let (mut size, mut shift) = (0usize, 0);
            loop {
                let b = body[0];
                body = &body[1..];
                size |= usize::from(b & 0x7f) << shift;
                shift += 7;
                if b < 0x80 {
                    break;
                }
            }
            let crc = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            let msg = &body[4..4 + size];
            assert_eq!(crc32c::crc32c(msg), crc);
            out.push(pb::ChunkedReadResponse::decode(msg).expect("frame"));
            body = &body[4 + size..];
        }
        out
    }

    #[test]
    fn long_series_continue_in_the_next_frame_when_a_frame_is_full() {
        let mut b = FrameBuilder {
            out: Vec::new(),
            frame: pb::ChunkedReadResponse::default(),
            frame_bytes: 0,
            max_frame_bytes: 500,
        };
        let label = |v: &str| {
            vec![pb::Label {
                name: "s".into(),
                value: v.into(),
            }]
        };
        // Random-ish values: ~8 bytes a sample, so ~1 KiB per full chunk.
        let samples: Vec<Sample> = (0..1000i64)
            .map(|i| Sample {
                t: i * 1000,
                v: ((i * 7919) % 1013) as f64 / 7.0,
            })
            .collect();
        b.series(0, label("a"), &samples);
        b.series(0, label("b"), &samples[..10]);
        b.series(1, label("c"), &samples[..300]);
        b.flush();
        let got = frames(&b.out);
        // "a" has 8 full chunks, each over the bound (one frame each), and a
        // 40-sample tail under it, which "b" joins; "c" answers another
        // query, so it starts a new frame.
        let summary: Vec<(i64, Vec<(String, usize)>)> = got
            .iter()
            .map(|f| {
                (
                    f.query_index,
                    f.chunked_series
                        .iter()
                        .map(|s| (s.labels[0].value.clone(), s.chunks.len()))
                        .collect(),
                )
            })
            .collect();
        let mut expect: Vec<(i64, Vec<(String, usize)>)> =
            (0..8).map(|_| (0, vec![("a".to_string(), 1)])).collect();
        expect.push((0, vec![("a".to_string(), 1), ("b".to_string(), 1)]));
        expect.push((1, vec![("c".to_string(), 1)]));
        expect.push((1, vec![("c".to_string(), 1)]));
        expect.push((1, vec![("c".to_string(), 1)]));
        assert_eq!(summary, expect);
        let a: Vec<Sample> = got[..9]
            .iter()
            .flat_map(|f| xor_chunk::decode(&f.chunked_series[0].chunks[0].data).expect("chunk"))
            .collect();
        assert_eq!(a.len(), 1000);
        assert!(
            a.iter()
                .zip(&samples)
                .all(|(x, y)| x.t == y.t && x.v == y.v)
        );
    }
}
