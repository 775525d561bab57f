//! The remote-write receiver's decoding half: headers to protocol version,
//! snappy to protobuf to validated series, for remote-write 1.0
//! (`prometheus.WriteRequest`) and 2.0 (`io.prometheus.write.v2.Request`).
//!
//! Nothing here touches storage: [`decode`] turns a request body into a
//! [`DecodedWrite`] (series ready to append, metadata, exemplars, and the
//! series rejected with their reason); `http::write` appends it and answers.
//! Checks run in the order the compliance suite expects: both headers first
//! (415), then snappy (400), then protobuf (400), then per series.

use std::collections::BTreeMap;
use std::fmt;

use cairn_engine::{Labels, Sample, TimestampMs};
use cairn_proto::prost::Message;
use cairn_proto::{prometheus as v1, write_v2 as v2};

use crate::error::{Error, Result};

/// Which remote-write message the body holds, chosen by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V1,
    V2,
    /// Not remote-write: the text exposition import endpoint, counted with
    /// the same metrics.
    Import,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
            Protocol::Import => "import",
        }
    }
}

/// Chooses the protocol from the `Content-Type` and checks the
/// `Content-Encoding`, as the 2.0 specification says: an unsupported type
/// or encoding is 415. A missing content type is 1.0 (old senders).
pub fn negotiate(content_type: Option<&str>, content_encoding: Option<&str>) -> Result<Protocol> {
    if let Some(enc) = content_encoding {
        let enc = enc.trim();
        if !enc.eq_ignore_ascii_case("snappy") {
            return Err(Error::UnsupportedMediaType {
                what: "Content-Encoding",
                value: enc.to_string(),
                expected: "only snappy is supported",
            });
        }
    }
    let Some(ct) = content_type else {
        return Ok(Protocol::V1);
    };
    let unsupported = || Error::UnsupportedMediaType {
        what: "Content-Type",
        value: ct.to_string(),
        expected: "expected application/x-protobuf with proto=prometheus.WriteRequest \
                   or proto=io.prometheus.write.v2.Request",
    };
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(cairn_proto::CONTENT_TYPE_WRITE_V1) {
        return Err(unsupported());
    }
    let mut protocol = Protocol::V1;
    for param in parts {
        let Some((k, v)) = param.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("proto") {
            protocol = match v.trim().trim_matches('"') {
                cairn_proto::PROTO_WRITE_V1 => Protocol::V1,
                cairn_proto::PROTO_WRITE_V2 => Protocol::V2,
                _ => return Err(unsupported()),
            };
        }
    }
    Ok(protocol)
}

/// Decompresses a snappy *block* (not framed) body, refusing one that
/// would decode to more than `max_decoded_bytes` before allocating.
pub fn decompress(body: &[u8], max_decoded_bytes: u64) -> Result<Vec<u8>> {
    let len = snap::raw::decompress_len(body).map_err(|e| Error::Snappy {
        reason: e.to_string(),
    })?;
    // Snappy expands at most ~21x (a 3-byte copy element yields 64
    // bytes), so a header claiming much more than that is corrupt data,
    // not a large request.
    if len as u64 > (body.len() as u64).saturating_mul(32).saturating_add(64) {
        return Err(Error::Snappy {
            reason: format!(
                "header claims {len} decoded bytes for {} compressed bytes",
                body.len()
            ),
        });
    }
    if len as u64 > max_decoded_bytes {
        return Err(Error::BodyTooLarge {
            limit_bytes: max_decoded_bytes,
            detail: format!(" after snappy decompression (would be {len} bytes)"),
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Error::Snappy {
            reason: e.to_string(),
        })
}

/// One series of a write, validated: labels sorted and unique, samples in
/// the order sent (the engine rejects out-of-order ones).
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingSeries {
    pub series: SeriesKey,
    pub samples: Vec<Sample>,
}

impl IncomingSeries {
    /// A series given by its label set.
    pub fn new(labels: Labels, samples: Vec<Sample>) -> Self {
        IncomingSeries {
            series: SeriesKey::Labels {
                labels,
                cache_key: None,
            },
            samples,
        }
    }

    /// The label set, when the series is given by one (not cached).
    pub fn labels(&self) -> Option<&Labels> {
        match &self.series {
            SeriesKey::Labels { labels, .. } => Some(labels),
            SeriesKey::Cached(_) => None,
        }
    }
}

/// How a write names its series.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesKey {
    /// By label set; `cache_key` holds the raw label bytes the sender
    /// encoded them as, when storage may remember the series under them
    /// (see [`crate::series_cache`]).
    Labels {
        labels: Labels,
        cache_key: Option<Box<[u8]>>,
    },
    /// A series storage remembered under the same raw label bytes.
    Cached(cairn_engine::SeriesHandle),
}

/// An exemplar attached to a series.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingExemplar {
    pub series: Labels,
    pub labels: Labels,
    pub value: f64,
    pub t: TimestampMs,
}

/// Type, help and unit of a metric family.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Metadata {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub help: String,
    pub unit: String,
}

/// Why items of a write were not written. The string forms are the
/// `reason` label of `cairn_remote_write_rejected_samples_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    EmptyLabelName,
    DuplicateLabelName,
    MissingMetricName,
    InvalidSymbolRef,
    TooFarInFuture,
    NativeHistogramUnsupported,
    SamplesAndHistograms,
    /// Reasons reported by the storage engine on append.
    TooOld,
    DuplicateSample,
    InvalidLabels,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        use RejectReason::*;
        match self {
            EmptyLabelName => "empty_label_name",
            DuplicateLabelName => "duplicate_label_name",
            MissingMetricName => "missing_metric_name",
            InvalidSymbolRef => "invalid_symbol_ref",
            TooFarInFuture => "too_far_in_future",
            NativeHistogramUnsupported => "native_histogram_unsupported",
            SamplesAndHistograms => "samples_and_histograms",
            TooOld => "too_old",
            DuplicateSample => "duplicate_sample",
            InvalidLabels => "invalid_labels",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many examples of rejected series a 400 body names.
const MAX_EXAMPLES: usize = 10;

/// Counts of rejected items by reason, with the first few series named.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rejections {
    /// Rejected samples (floats and histograms) per reason.
    pub samples: BTreeMap<RejectReason, u64>,
    /// Rejected histograms (a subset of `samples`).
    pub histograms: u64,
    /// Rejected exemplars.
    pub exemplars: u64,
    /// `series: reason` for the first [`MAX_EXAMPLES`] rejections.
    pub examples: Vec<String>,
    /// Rejections beyond the examples.
    pub more: u64,
}

impl Rejections {
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.exemplars == 0
    }

    /// Records `n` samples of `series` rejected for `reason`.
    pub fn add(&mut self, reason: RejectReason, n: u64, series: &str, detail: &str) {
        *self.samples.entry(reason).or_default() += n;
        if self.examples.len() < MAX_EXAMPLES {
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!(" ({detail})")
            };
            self.examples.push(format!("{series}: {reason}{detail}"));
        } else {
            self.more += 1;
        }
    }

    pub fn total_samples(&self) -> u64 {
        self.samples.values().sum()
    }

    /// The human-readable 400 body: counts by reason, then examples.
    pub fn summary(&self) -> String {
        let mut s = format!("{} samples rejected", self.total_samples());
        if self.exemplars > 0 {
            s.push_str(&format!(", {} exemplars rejected", self.exemplars));
        }
        let by: Vec<String> = self
            .samples
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect();
        if !by.is_empty() {
            s.push_str(&format!(" ({})", by.join(", ")));
        }
        for e in &self.examples {
            s.push_str("\n  ");
            s.push_str(e);
        }
        if self.more > 0 {
            s.push_str(&format!("\n  ... and {} more", self.more));
        }
        s
    }
}

/// A decoded and validated write.
#[derive(Debug, Default)]
pub struct DecodedWrite {
    pub series: Vec<IncomingSeries>,
    pub metadata: Vec<(String, Metadata)>,
    pub exemplars: Vec<IncomingExemplar>,
    pub rejected: Rejections,
    /// What the request held, for the `*-Written` headers and counters.
    pub samples_sent: u64,
    pub histograms_sent: u64,
    pub exemplars_sent: u64,
    /// Series named by the series cache ([`SeriesKey::Cached`]).
    pub series_cached: u64,
}

impl DecodedWrite {
    /// Samples handed to storage (before storage's own rejections).
    pub fn samples_to_append(&self) -> u64 {
        self.series.iter().map(|s| s.samples.len() as u64).sum()
    }
}

/// Limits applied while validating.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Newest acceptable timestamp (now + the configured future window).
    pub max_timestamp: TimestampMs,
}

/// Decodes an uncompressed protobuf body of the given protocol.
pub fn decode(protocol: Protocol, buf: &[u8], limits: DecodeLimits) -> Result<DecodedWrite> {
    decode_with_cache(protocol, buf, limits, None)
}

/// [`decode`], naming series the series cache knows by their handle (see
/// [`crate::series_cache`]).
pub fn decode_with_cache(
    protocol: Protocol,
    buf: &[u8],
    limits: DecodeLimits,
    series_cache: Option<&crate::series_cache::SeriesCache>,
) -> Result<DecodedWrite> {
    match protocol {
        Protocol::V1 => {
            if let Some(out) = crate::remote_write_fast::decode_v1_plain(buf, limits, series_cache)
            {
                return Ok(out);
            }
            let req = v1::WriteRequest::decode(buf).map_err(|e| Error::Protobuf {
                message: "prometheus.WriteRequest",
                reason: e.to_string(),
            })?;
            Ok(decode_v1(req, limits))
        }
        Protocol::V2 => {
            let req = v2::Request::decode(buf).map_err(|e| Error::Protobuf {
                message: "io.prometheus.write.v2.Request",
                reason: e.to_string(),
            })?;
            decode_v2(req, limits)
        }
        Protocol::Import => Err(Error::Internal {
            reason: "the import format is not protobuf".into(),
        }),
    }
}

/// A non-empty label name. Prometheus 3 accepts any UTF-8 name (protobuf
/// decoding has already checked UTF-8), so only emptiness is invalid.
pub fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

/// Builds the label set of a series, or says why it is invalid.
/// Unsorted labels are sorted; empty values are dropped (an empty value
/// means "no such label").
fn build_labels<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
) -> std::result::Result<Labels, (RejectReason, String)> {
    check_label_names(pairs.clone())?;
    finish_labels(Labels::try_from_pairs(pairs))
}

/// The first check of [`build_labels`]: every name non-empty.
pub(crate) fn check_label_names<'a>(
    mut pairs: impl Iterator<Item = (&'a str, &'a str)>,
) -> std::result::Result<(), (RejectReason, String)> {
    if pairs.any(|(n, _)| !is_valid_label_name(n)) {
        return Err((RejectReason::EmptyLabelName, String::new()));
    }
    Ok(())
}

/// The rest of [`build_labels`]: a duplicate name or a missing metric name
/// rejects the series.
pub(crate) fn finish_labels(
    labels: cairn_engine::Result<Labels>,
) -> std::result::Result<Labels, (RejectReason, String)> {
    let labels = labels.map_err(|e| {
        let detail = match e {
            cairn_engine::Error::InvalidLabels { reason, .. } => reason,
            other => other.to_string(),
        };
        (RejectReason::DuplicateLabelName, detail)
    })?;
    if labels.metric_name().is_none() {
        return Err((RejectReason::MissingMetricName, String::new()));
    }
    Ok(labels)
}

/// Prints a raw label list (possibly invalid) for an error message.
pub(crate) fn describe_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let inner: Vec<String> = pairs.map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Keeps the samples not too far in the future, rejecting the rest.
pub(crate) fn accept_samples(
    labels: &Labels,
    samples: impl Iterator<Item = Sample>,
    limits: DecodeLimits,
    rejected: &mut Rejections,
) -> Vec<Sample> {
    let mut out = Vec::with_capacity(samples.size_hint().0);
    let mut future = 0u64;
    let mut first_future = 0;
    for s in samples {
        if s.t > limits.max_timestamp {
            if future == 0 {
                first_future = s.t;
            }
            future += 1;
        } else {
            out.push(s);
        }
    }
    if future > 0 {
        rejected.add(
            RejectReason::TooFarInFuture,
            future,
            &labels.to_string(),
            &format!(
                "timestamp {first_future} is after the newest accepted {}",
                limits.max_timestamp
            ),
        );
    }
    out
}

fn v1_type_name(t: i32) -> &'static str {
    use v1::metric_metadata::MetricType as T;
    match T::try_from(t).unwrap_or(T::Unknown) {
        T::Unknown => "unknown",
        T::Counter => "counter",
        T::Gauge => "gauge",
        T::Histogram => "histogram",
        T::Gaugehistogram => "gaugehistogram",
        T::Summary => "summary",
        T::Info => "info",
        T::Stateset => "stateset",
    }
}

fn v2_type_name(t: i32) -> &'static str {
    use v2::metadata::MetricType as T;
    match T::try_from(t).unwrap_or(T::Unspecified) {
        T::Unspecified => "unknown",
        T::Counter => "counter",
        T::Gauge => "gauge",
        T::Histogram => "histogram",
        T::Gaugehistogram => "gaugehistogram",
        T::Summary => "summary",
        T::Info => "info",
        T::Stateset => "stateset",
    }
}

/// [`decode_v1`] for the fast path's equivalence tests.
#[cfg(test)]
pub(crate) fn decode_v1_for_tests(req: v1::WriteRequest, limits: DecodeLimits) -> DecodedWrite {
    decode_v1(req, limits)
}

fn decode_v1(req: v1::WriteRequest, limits: DecodeLimits) -> DecodedWrite {
    let mut out = DecodedWrite::default();
    for ts in req.timeseries {
        let n_samples = ts.samples.len() as u64;
        let n_hist = ts.histograms.len() as u64;
        let n_ex = ts.exemplars.len() as u64;
        out.samples_sent += n_samples;
        out.histograms_sent += n_hist;
        out.exemplars_sent += n_ex;
        let pairs = ts
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()));
        let labels = match build_labels(pairs.clone()) {
            Ok(l) => l,
            Err((reason, detail)) => {
                out.rejected
                    .add(reason, n_samples + n_hist, &describe_pairs(pairs), &detail);
                out.rejected.histograms += n_hist;
                out.rejected.exemplars += n_ex;
                continue;
            }
        };
        if n_hist > 0 {
            out.rejected.add(
                RejectReason::NativeHistogramUnsupported,
                n_hist,
                &labels.to_string(),
                "",
            );
            out.rejected.histograms += n_hist;
        }
        for ex in ts.exemplars {
            match Labels::try_from_pairs(
                ex.labels
                    .iter()
                    .map(|l| (l.name.as_str(), l.value.as_str())),
            ) {
                Ok(ex_labels) => out.exemplars.push(IncomingExemplar {
                    series: labels.clone(),
                    labels: ex_labels,
                    value: ex.value,
                    t: ex.timestamp,
                }),
                Err(_) => out.rejected.exemplars += 1,
            }
        }
        let samples = accept_samples(
            &labels,
            ts.samples.iter().map(|s| Sample {
                t: s.timestamp,
                v: s.value,
            }),
            limits,
            &mut out.rejected,
        );
        if !samples.is_empty() {
            out.series.push(IncomingSeries::new(labels, samples));
        }
    }
    for m in req.metadata {
        if m.metric_family_name.is_empty() {
            continue;
        }
        out.metadata.push((
            m.metric_family_name,
            Metadata {
                kind: v1_type_name(m.r#type),
                help: m.help,
                unit: m.unit,
            },
        ));
    }
    out
}

fn decode_v2(req: v2::Request, limits: DecodeLimits) -> Result<DecodedWrite> {
    let symbols = &req.symbols;
    if let Some(first) = symbols.first()
        && !first.is_empty()
    {
        return Err(Error::InvalidV2 {
            reason: format!("symbols[0] must be the empty string, got {first:?}"),
        });
    }
    let sym = |r: u32| symbols.get(r as usize).map(String::as_str);
    let resolve = |refs: &[u32]| -> std::result::Result<Vec<(&str, &str)>, String> {
        if !refs.len().is_multiple_of(2) {
            return Err(format!("odd number of label references ({})", refs.len()));
        }
        refs.chunks_exact(2)
            .map(|p| match (sym(p[0]), sym(p[1])) {
                (Some(n), Some(v)) => Ok((n, v)),
                _ => Err(format!(
                    "label reference ({}, {}) out of range of {} symbols",
                    p[0],
                    p[1],
                    symbols.len()
                )),
            })
            .collect()
    };

    let mut out = DecodedWrite::default();
    for ts in &req.timeseries {
        let n_samples = ts.samples.len() as u64;
        let n_hist = ts.histograms.len() as u64;
        let n_ex = ts.exemplars.len() as u64;
        out.samples_sent += n_samples;
        out.histograms_sent += n_hist;
        out.exemplars_sent += n_ex;

        let reject_all = |out: &mut DecodedWrite, reason, series: &str, detail: &str| {
            out.rejected.add(reason, n_samples + n_hist, series, detail);
            out.rejected.histograms += n_hist;
            out.rejected.exemplars += n_ex;
        };
        let pairs = match resolve(&ts.labels_refs) {
            Ok(p) => p,
            Err(detail) => {
                let refs = format!("labels_refs {:?}", ts.labels_refs);
                reject_all(&mut out, RejectReason::InvalidSymbolRef, &refs, &detail);
                continue;
            }
        };
        let labels = match build_labels(pairs.iter().copied()) {
            Ok(l) => l,
            Err((reason, detail)) => {
                let series = describe_pairs(pairs.iter().copied());
                reject_all(&mut out, reason, &series, &detail);
                continue;
            }
        };
        if n_samples > 0 && n_hist > 0 {
            let series = labels.to_string();
            reject_all(
                &mut out,
                RejectReason::SamplesAndHistograms,
                &series,
                "a series carries samples or histograms, never both",
            );
            continue;
        }
        if n_hist > 0 {
            out.rejected.add(
                RejectReason::NativeHistogramUnsupported,
                n_hist,
                &labels.to_string(),
                "",
            );
            out.rejected.histograms += n_hist;
        }
        if let Some(md) = &ts.metadata {
            let help = sym(md.help_ref);
            let unit = sym(md.unit_ref);
            match (help, unit, labels.metric_name()) {
                (Some(help), Some(unit), Some(name)) => {
                    if md.r#type != 0 || !help.is_empty() || !unit.is_empty() {
                        out.metadata.push((
                            name.to_string(),
                            Metadata {
                                kind: v2_type_name(md.r#type),
                                help: help.to_string(),
                                unit: unit.to_string(),
                            },
                        ));
                    }
                }
                _ => {
                    let series = labels.to_string();
                    reject_all(
                        &mut out,
                        RejectReason::InvalidSymbolRef,
                        &series,
                        &format!(
                            "metadata references ({}, {}) out of range of {} symbols",
                            md.help_ref,
                            md.unit_ref,
                            symbols.len()
                        ),
                    );
                    continue;
                }
            }
        }
        for ex in &ts.exemplars {
            let ex_labels = resolve(&ex.labels_refs)
                .ok()
                .and_then(|p| Labels::try_from_pairs(p).ok());
            match ex_labels {
                Some(ex_labels) => out.exemplars.push(IncomingExemplar {
                    series: labels.clone(),
                    labels: ex_labels,
                    value: ex.value,
                    t: ex.timestamp,
                }),
                None => out.rejected.exemplars += 1,
            }
        }
        let samples = accept_samples(
            &labels,
            ts.samples.iter().map(|s| Sample {
                t: s.timestamp,
                v: s.value,
            }),
            limits,
            &mut out.rejected,
        );
        if !samples.is_empty() {
            out.series.push(IncomingSeries::new(labels, samples));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_timestamp: 10_000,
    };

    fn label(n: &str, v: &str) -> v1::Label {
        v1::Label {
            name: n.into(),
            value: v.into(),
        }
    }

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> v1::TimeSeries {
        v1::TimeSeries {
            labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
            samples: samples
                .iter()
                .map(|&(t, v)| v1::Sample {
                    value: v,
                    timestamp: t,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn negotiation_follows_the_spec() {
        use Protocol::*;
        let ok = [
            (None, Some("snappy"), V1),
            (Some("application/x-protobuf"), Some("snappy"), V1),
            (Some("application/x-protobuf"), None, V1),
            (
                Some("application/x-protobuf;proto=prometheus.WriteRequest"),
                Some("snappy"),
                V1,
            ),
            (
                Some("application/x-protobuf; proto=io.prometheus.write.v2.Request"),
                Some("snappy"),
                V2,
            ),
        ];
        for (ct, enc, want) in ok {
            assert_eq!(negotiate(ct, enc).expect("supported"), want, "{ct:?}");
        }
        let bad = [
            (Some("application/json"), Some("snappy")),
            (Some("image/png"), Some("snappy")),
            (Some("application/x-protobuf;proto=foo.Bar"), Some("snappy")),
            (Some("application/x-protobuf"), Some("gzip")),
            (Some("application/x-protobuf"), Some("deflate")),
        ];
        for (ct, enc) in bad {
            let e = negotiate(ct, enc).expect_err("unsupported");
            assert_eq!(e.status().as_u16(), 415, "{ct:?} {enc:?}");
        }
    }

    #[test]
    fn snappy_limits_and_errors() {
        let raw = vec![7u8; 1000];
        let body = snap::raw::Encoder::new()
            .compress_vec(&raw)
            .expect("compress");
        assert_eq!(decompress(&body, 1000).expect("fits"), raw);
        let e = decompress(&body, 999).expect_err("too large");
        assert_eq!(e.status().as_u16(), 413);
        let e = decompress(b"\xff\xff\xff\xff\xff\xff", 1 << 20).expect_err("garbage");
        assert_eq!(e.status().as_u16(), 400);
        // A truncated block is an error, not a panic.
        let e = decompress(&body[..body.len() / 2], 1 << 20).expect_err("truncated");
        assert_eq!(e.status().as_u16(), 400);
    }

    /// A table of v1 series: whether each is accepted, and the reason.
    #[test]
    fn v1_series_validation_table() {
        type Case = (
            &'static [(&'static str, &'static str)],
            Option<RejectReason>,
        );
        let cases: &[Case] = &[
            (&[("__name__", "up"), ("job", "a")], None),
            // Unsorted labels are sorted, not rejected.
            (&[("job", "a"), ("__name__", "up")], None),
            // An empty value is dropped.
            (&[("__name__", "up"), ("job", "")], None),
            (
                &[("__name__", "up"), ("", "x")],
                Some(RejectReason::EmptyLabelName),
            ),
            (
                &[("__name__", "up"), ("job", "a"), ("job", "b")],
                Some(RejectReason::DuplicateLabelName),
            ),
            (&[("job", "a")], Some(RejectReason::MissingMetricName)),
        ];
        for (labels, want) in cases {
            let req = v1::WriteRequest {
                timeseries: vec![series(labels, &[(1, 1.0), (2, 2.0)])],
                metadata: vec![],
            };
            let d = decode_v1(req, LIMITS);
            assert_eq!(d.samples_sent, 2);
            match want {
                None => {
                    assert!(d.rejected.is_empty(), "{labels:?}: {:?}", d.rejected);
                    assert_eq!(d.series.len(), 1);
                    assert_eq!(d.series[0].samples.len(), 2);
                    assert_eq!(
                        d.series[0].labels().and_then(|l| l.metric_name()),
                        Some("up")
                    );
                }
                Some(r) => {
                    assert!(d.series.is_empty(), "{labels:?}");
                    assert_eq!(d.rejected.samples.get(r), Some(&2), "{labels:?}");
                    assert!(d.rejected.summary().contains(r.as_str()));
                }
            }
        }
    }

    #[test]
    fn partial_acceptance_keeps_valid_series_and_names_rejected_ones() {
        let req = v1::WriteRequest {
            timeseries: vec![
                series(&[("__name__", "good")], &[(1, 1.0)]),
                series(&[("__name__", "bad"), ("", "x")], &[(1, 1.0), (2, 1.0)]),
                series(&[("__name__", "future")], &[(5, 1.0), (20_000, 2.0)]),
            ],
            metadata: vec![v1::MetricMetadata {
                r#type: v1::metric_metadata::MetricType::Counter as i32,
                metric_family_name: "good".into(),
                help: "Good things.".into(),
                unit: "".into(),
            }],
        };
        let d = decode_v1(req, LIMITS);
        assert_eq!(d.samples_sent, 5);
        assert_eq!(d.samples_to_append(), 2);
        assert_eq!(d.rejected.total_samples(), 3);
        let s = d.rejected.summary();
        assert!(s.contains("3 samples rejected"), "{s}");
        assert!(s.contains("__name__=\"bad\""), "{s}");
        assert!(s.contains("future"), "{s}");
        assert_eq!(d.metadata[0].0, "good");
        assert_eq!(d.metadata[0].1.kind, "counter");
    }

    #[test]
    fn v2_symbols_are_resolved() {
        let req = v2::Request {
            symbols: ["", "__name__", "req_total", "job", "api", "Requests.", "s"]
                .map(String::from)
                .to_vec(),
            timeseries: vec![
                v2::TimeSeries {
                    labels_refs: vec![3, 4, 1, 2],
                    samples: vec![v2::Sample {
                        value: 3.0,
                        timestamp: 7,
                        start_timestamp: 1,
                    }],
                    metadata: Some(v2::Metadata {
                        r#type: v2::metadata::MetricType::Counter as i32,
                        help_ref: 5,
                        unit_ref: 6,
                    }),
                    exemplars: vec![v2::Exemplar {
                        labels_refs: vec![3, 4],
                        value: 1.0,
                        timestamp: 7,
                    }],
                    ..Default::default()
                },
                v2::TimeSeries {
                    labels_refs: vec![1, 99],
                    samples: vec![v2::Sample::default()],
                    ..Default::default()
                },
                v2::TimeSeries {
                    labels_refs: vec![1],
                    samples: vec![v2::Sample::default()],
                    ..Default::default()
                },
            ],
        };
        let d = decode_v2(req, LIMITS).expect("decodes");
        assert_eq!(d.series.len(), 1);
        assert_eq!(
            d.series[0].labels().cloned().unwrap_or_default(),
            Labels::from_pairs([("__name__", "req_total"), ("job", "api")])
        );
        assert_eq!(d.series[0].samples, vec![Sample { t: 7, v: 3.0 }]);
        assert_eq!(
            d.metadata,
            vec![(
                "req_total".to_string(),
                Metadata {
                    kind: "counter",
                    help: "Requests.".into(),
                    unit: "s".into()
                }
            )]
        );
        assert_eq!(d.exemplars.len(), 1);
        assert_eq!(d.exemplars_sent, 1);
        assert_eq!(d.rejected.samples[&RejectReason::InvalidSymbolRef], 2);
    }

    #[test]
    fn v2_symbols_must_start_empty() {
        let req = v2::Request {
            symbols: vec!["x".into()],
            timeseries: vec![],
        };
        assert_eq!(
            decode_v2(req, LIMITS).expect_err("bad").status().as_u16(),
            400
        );
    }

    #[test]
    fn truncated_protobuf_is_a_decode_error() {
        let req = v1::WriteRequest {
            timeseries: vec![series(&[("__name__", "up")], &[(1, 1.0)])],
            metadata: vec![],
        };
        let bytes = req.encode_to_vec();
        let e = decode(Protocol::V1, &bytes[..bytes.len() - 3], LIMITS).expect_err("truncated");
        assert_eq!(e.status().as_u16(), 400);
        assert!(e.to_string().contains("prometheus.WriteRequest"));
    }

    proptest::proptest! {
        /// Decoding arbitrary bytes never panics, whatever the protocol.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(Protocol::V1, &bytes, LIMITS);
            let _ = decode(Protocol::V2, &bytes, LIMITS);
            let _ = decompress(&bytes, 1 << 16);
        }
    }
}
