//! Query results as `cairn.query.v1` messages: label sets, instant
//! results, statistics, and the bounded batches a range query streams.
//! Values are copied as doubles, never formatted: what the engine computed
//! is what the client gets, bit for bit.

use std::time::Duration;

use cairn_engine::Labels;
use cairn_proto::query::v1 as pb;
use cairn_query::eval::RangeSeries;
use cairn_query::{QueryResult, Value};

use crate::exec::Executed;

/// Series per streamed message when the request does not say.
pub const DEFAULT_SERIES_PER_MESSAGE: usize = 100;
/// The most series per streamed message a request may ask for.
pub const MAX_SERIES_PER_MESSAGE: usize = 10_000;
/// A streamed message is closed once it holds this many samples (a single
/// series longer than that still goes whole in one message; the number of
/// points per series is capped by `query.max_points_per_series`).
pub const MAX_SAMPLES_PER_MESSAGE: usize = 65_536;

pub fn labels(l: &Labels) -> Vec<pb::Label> {
    l.iter()
        .map(|l| pb::Label {
            name: l.name.to_string(),
            value: l.value.to_string(),
        })
        .collect()
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The statistics of an executed query; `parse` and `total` are measured
/// by the caller.
pub fn stats(done: &Executed, parse: Duration, total: Duration) -> pb::QueryStats {
    let s = &done.result.stats;
    pb::QueryStats {
        series_read: s.series_read as u64,
        samples_read: s.samples_read as u64,
        peak_samples: s.peak_samples as u64,
        parse_time_ns: nanos(parse),
        queue_time_ns: nanos(done.queue),
        eval_time_ns: nanos(done.eval),
        total_time_ns: nanos(total),
    }
}

fn series(s: RangeSeries) -> pb::Series {
    pb::Series {
        labels: labels(&s.labels),
        samples: s
            .samples
            .iter()
            .map(|p| pb::Sample {
                timestamp_ms: p.t,
                value: p.v,
            })
            .collect(),
    }
}

/// The typed result of an instant query.
pub fn instant_result(v: Value) -> pb::instant_query_response::Result {
    use pb::instant_query_response::Result as R;
    match v {
        Value::Scalar { t, v } => R::Scalar(pb::Scalar {
            timestamp_ms: t,
            value: v,
        }),
        Value::String { t, v } => R::String(pb::StringValue {
            timestamp_ms: t,
            value: v,
        }),
        Value::Vector(samples) => R::Vector(pb::Vector {
            samples: samples
                .into_iter()
                .map(|s| pb::VectorSample {
                    labels: labels(&s.labels),
                    timestamp_ms: s.t,
                    value: s.v,
                })
                .collect(),
        }),
        Value::Matrix(m) => R::Matrix(pb::Matrix {
            series: m.into_iter().map(series).collect(),
        }),
    }
}

/// The series of a range query's result, whatever the engine's value
/// type: a matrix as it is, an instant vector or a scalar as series of
/// one point (the engine evaluates range queries to matrices; the other
/// arms keep the stream total). A string has no series form: `None`.
pub fn range_series(r: &mut QueryResult) -> Option<Vec<RangeSeries>> {
    let value = std::mem::replace(&mut r.value, Value::Matrix(Vec::new()));
    match value {
        Value::Matrix(m) => Some(m),
        Value::Vector(v) => Some(
            v.into_iter()
                .map(|s| RangeSeries {
                    labels: s.labels,
                    samples: vec![cairn_engine::Sample { t: s.t, v: s.v }],
                })
                .collect(),
        ),
        Value::Scalar { t, v } => Some(vec![RangeSeries {
            labels: Labels::default(),
            samples: vec![cairn_engine::Sample { t, v }],
        }]),
        Value::String { .. } => None,
    }
}

/// The messages of a range query's stream, built as the client reads
/// them: batches of whole series (at most `max_series` series, closed at
/// [`MAX_SAMPLES_PER_MESSAGE`] samples), then the summary. Series already
/// sent are dropped, so the memory held shrinks as the stream advances.
pub struct Batches {
    series: std::vec::IntoIter<RangeSeries>,
    max_series: usize,
    summary: Option<pb::RangeQuerySummary>,
}

impl Batches {
    pub fn new(
        series: Vec<RangeSeries>,
        max_series: usize,
        mut summary: pb::RangeQuerySummary,
    ) -> Batches {
        summary.series_count = series.len() as u64;
        let max_series = match max_series {
            0 => DEFAULT_SERIES_PER_MESSAGE,
            n => n.min(MAX_SERIES_PER_MESSAGE),
        };
        Batches {
            series: series.into_iter(),
            max_series,
            summary: Some(summary),
        }
    }
}

impl Iterator for Batches {
    type Item = pb::RangeQueryResponse;

    fn next(&mut self) -> Option<pb::RangeQueryResponse> {
        let mut batch = Vec::new();
        let mut samples = 0usize;
        while batch.len() < self.max_series && samples < MAX_SAMPLES_PER_MESSAGE {
            let Some(s) = self.series.next() else { break };
            samples += s.samples.len();
            batch.push(series(s));
        }
        if !batch.is_empty() {
            return Some(pb::RangeQueryResponse {
                series: batch,
                summary: None,
            });
        }
        self.summary.take().map(|summary| pb::RangeQueryResponse {
            series: Vec::new(),
            summary: Some(summary),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_engine::Sample;

    fn rs(name: &str, points: usize) -> RangeSeries {
        RangeSeries {
            labels: Labels::from_pairs([("__name__", name)]),
            samples: (0..points)
                .map(|i| Sample {
                    t: i as i64,
                    v: i as f64,
                })
                .collect(),
        }
    }

    /// Series counts per message for (series lengths, max per message).
    #[test]
    fn batches_are_bounded_and_end_with_the_summary() {
        let big = MAX_SAMPLES_PER_MESSAGE;
        let table: &[(&[usize], usize, &[usize])] = &[
            (&[], 0, &[]),
            (&[1, 1, 1], 2, &[2, 1]),
            (&[1; 250], 0, &[100, 100, 50]),
            (&[1; 5], 20_000, &[5]),
            // A message closes once it holds MAX_SAMPLES_PER_MESSAGE.
            (&[big / 2, big / 2, 1, big + 5, 3], 100, &[2, 2, 1]),
        ];
        for (lens, max, want) in table {
            let series: Vec<RangeSeries> = lens
                .iter()
                .enumerate()
                .map(|(i, n)| rs(&format!("m{i}"), *n))
                .collect();
            let msgs: Vec<_> = Batches::new(series, *max, Default::default()).collect();
            let (last, batches) = msgs.split_last().expect("at least the summary");
            let summary = last.summary.as_ref().expect("summary last");
            assert!(last.series.is_empty());
            assert_eq!(summary.series_count, lens.len() as u64);
            let counts: Vec<usize> = batches.iter().map(|m| m.series.len()).collect();
            assert!(batches.iter().all(|m| m.summary.is_none()));
            assert_eq!(&counts[..], *want, "{lens:?} max {max}");
            // Order and content survive batching.
            let names: Vec<String> = batches
                .iter()
                .flat_map(|m| m.series.iter().map(|s| s.labels[0].value.clone()))
                .collect();
            let expect: Vec<String> = (0..lens.len()).map(|i| format!("m{i}")).collect();
            assert_eq!(names, expect);
        }
    }
}
