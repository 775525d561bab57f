//! The fast path of remote-write 1.0 decoding: a zero-copy reader for the
//! common `prometheus.WriteRequest` that holds only series with labels and
//! float samples (no exemplars, histograms, metadata or unknown fields).
//!
//! Label names and values are borrowed from the decompressed body instead
//! of being copied into owned `String`s, and each distinct string of a
//! request is turned into an `Arc<str>` once, shared by every series that
//! uses it. Profiles showed allocation and freeing of those strings as the
//! largest cost of ingest.
//!
//! **Architecture Invariant:** the fast path gives exactly the
//! [`DecodedWrite`] that `remote_write::decode` gives through prost, or
//! declines (`None`) and the caller decodes with prost, which then also
//! produces any error. It declines on anything it does not handle itself:
//! another field or wire type, a malformed varint or length, invalid
//! UTF-8. So behaviour on unusual or broken input is prost's.

use std::sync::Arc;

use cairn_engine::{Labels, Sample};

use crate::remote_write::{
    DecodeLimits, DecodedWrite, IncomingSeries, SeriesKey, accept_samples, check_label_names,
    describe_pairs, finish_labels,
};
use crate::series_cache::SeriesCache;

/// Protobuf wire types used by the schema.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;

/// A cursor over one message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// A base-128 varint of at most 10 bytes, the 10th at most 1.
    fn varint(&mut self) -> Option<u64> {
        let mut x = 0u64;
        for i in 0..10 {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            if i == 9 && b > 1 {
                return None;
            }
            x |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(x);
            }
        }
        None
    }

    /// A field key: (field number, wire type). Field 0 and numbers beyond
    /// the protobuf maximum decline.
    fn key(&mut self) -> Option<(u64, u64)> {
        let k = self.varint()?;
        if k > u64::from(u32::MAX) {
            return None;
        }
        let field = k >> 3;
        if field == 0 {
            return None;
        }
        Some((field, k & 7))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let end = self.pos.checked_add(len)?;
        let b = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(b)
    }

    fn fixed64(&mut self) -> Option<u64> {
        let end = self.pos.checked_add(8)?;
        let b: [u8; 8] = self.buf.get(self.pos..end)?.try_into().ok()?;
        self.pos = end;
        Some(u64::from_le_bytes(b))
    }
}

/// One `Arc<str>` per distinct string of a request, keyed by its bytes:
/// only a string not seen before is checked for UTF-8 and allocated.
struct StrCache<'a> {
    map: hashbrown::HashMap<&'a [u8], Arc<str>>,
}

impl<'a> StrCache<'a> {
    fn new() -> Self {
        StrCache {
            map: hashbrown::HashMap::with_capacity(256),
        }
    }

    /// The string of `b`, or `None` if it is not UTF-8.
    fn get(&mut self, b: &'a [u8]) -> Option<Arc<str>> {
        if let Some(a) = self.map.get(b) {
            return Some(a.clone());
        }
        let a: Arc<str> = Arc::from(std::str::from_utf8(b).ok()?);
        self.map.insert(b, a.clone());
        Some(a)
    }
}

/// Reads a `prometheus.Label` (name 1, value 2; last occurrence wins).
fn read_label<'a>(msg: &'a [u8], cache: &mut StrCache<'a>) -> Option<(Arc<str>, Arc<str>)> {
    let mut r = Reader::new(msg);
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    while !r.done() {
        match r.key()? {
            (1, LEN) => name = r.bytes()?,
            (2, LEN) => value = r.bytes()?,
            _ => return None,
        }
    }
    Some((cache.get(name)?, cache.get(value)?))
}

fn as_strs(p: &(Arc<str>, Arc<str>)) -> (&str, &str) {
    (&p.0, &p.1)
}

/// Reads a `prometheus.Sample` (value 1 double, timestamp 2 int64).
fn read_sample(msg: &[u8]) -> Option<Sample> {
    let mut r = Reader::new(msg);
    let mut s = Sample { t: 0, v: 0.0 };
    while !r.done() {
        match r.key()? {
            (1, FIXED64) => s.v = f64::from_bits(r.fixed64()?),
            (2, VARINT) => s.t = r.varint()? as i64,
            _ => return None,
        }
    }
    Some(s)
}

/// Reads the samples of a `prometheus.TimeSeries` into the (cleared)
/// buffer and returns the span of its `Label` fields (keys included) when
/// they are contiguous: the series cache's key. Labels are not decoded.
fn scan_series<'a>(msg: &'a [u8], samples: &mut Vec<Sample>) -> Option<Option<&'a [u8]>> {
    samples.clear();
    let mut ts = Reader::new(msg);
    let (mut start, mut end) = (None, 0);
    let mut contiguous = true;
    while !ts.done() {
        let at = ts.pos;
        match ts.key()? {
            (1, LEN) => {
                ts.bytes()?;
                if start.is_some() && end != at {
                    contiguous = false;
                }
                start.get_or_insert(at);
                end = ts.pos;
            }
            (2, LEN) => samples.push(read_sample(ts.bytes()?)?),
            _ => return None,
        }
    }
    let span = start.map_or(&msg[..0], |s| &msg[s..end]);
    Some(contiguous.then_some(span))
}

/// Reads the labels of a `prometheus.TimeSeries` (already scanned by
/// [`scan_series`]) into the (cleared) buffer.
fn read_labels<'a>(
    msg: &'a [u8],
    cache: &mut StrCache<'a>,
    pairs: &mut Vec<(Arc<str>, Arc<str>)>,
) -> Option<()> {
    pairs.clear();
    let mut ts = Reader::new(msg);
    while !ts.done() {
        match ts.key()? {
            (1, LEN) => pairs.push(read_label(ts.bytes()?, cache)?),
            _ => {
                ts.bytes()?;
            }
        }
    }
    Some(())
}

/// Decodes a `prometheus.WriteRequest` made only of series with labels
/// and float samples, as `decode` would; `None` to let prost decode it.
///
/// With a series cache, a series whose raw label bytes the cache knows
/// (and whose samples are all acceptable) comes out as
/// [`SeriesKey::Cached`], its labels not decoded; the others carry their
/// raw label bytes for storage to remember them under.
pub fn decode_v1_plain(
    buf: &[u8],
    limits: DecodeLimits,
    series_cache: Option<&SeriesCache>,
) -> Option<DecodedWrite> {
    let mut out = DecodedWrite::default();
    let mut cache = StrCache::new();
    let mut pairs: Vec<(Arc<str>, Arc<str>)> = Vec::with_capacity(16);
    let mut samples: Vec<Sample> = Vec::with_capacity(16);
    let mut top = Reader::new(buf);
    while !top.done() {
        let (1, LEN) = top.key()? else {
            return None;
        };
        let ts = top.bytes()?;
        let span = scan_series(ts, &mut samples)?;
        let n_samples = samples.len() as u64;
        out.samples_sent += n_samples;
        if let (Some(series_cache), Some(key)) = (series_cache, span)
            && samples.iter().all(|s| s.t <= limits.max_timestamp)
            && let Some(handle) = series_cache.get(key)
        {
            out.series_cached += 1;
            if !samples.is_empty() {
                out.series.push(IncomingSeries {
                    series: SeriesKey::Cached(handle),
                    samples: samples.clone(),
                });
            }
            continue;
        }
        read_labels(ts, &mut cache, &mut pairs)?;
        // The pairs move into the label set; a rejection (rare) reads
        // them again to name the series as it was sent.
        let labels: Result<Labels, _> = check_label_names(pairs.iter().map(as_strs))
            .and_then(|()| finish_labels(Labels::try_from_pairs(pairs.drain(..))));
        let labels = match labels {
            Ok(l) => l,
            Err((reason, detail)) => {
                read_labels(ts, &mut cache, &mut pairs)?;
                out.rejected.add(
                    reason,
                    n_samples,
                    &describe_pairs(pairs.iter().map(as_strs)),
                    &detail,
                );
                continue;
            }
        };
        let accepted = accept_samples(&labels, samples.iter().copied(), limits, &mut out.rejected);
        if !accepted.is_empty() {
            out.series.push(IncomingSeries {
                series: SeriesKey::Labels {
                    labels,
                    cache_key: span.filter(|_| series_cache.is_some()).map(Box::from),
                },
                samples: accepted,
            });
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::prometheus as v1;
    use cairn_proto::prost::Message;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_timestamp: 10_000,
    };

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> v1::TimeSeries {
        v1::TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| v1::Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
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

    /// What the prost path makes of the same bytes.
    fn via_prost(bytes: &[u8]) -> DecodedWrite {
        let req = v1::WriteRequest::decode(bytes).expect("prost decodes");
        crate::remote_write::decode_v1_for_tests(req, LIMITS)
    }

    fn same(a: &DecodedWrite, b: &DecodedWrite) {
        assert_eq!(a.series, b.series);
        assert_eq!(a.rejected, b.rejected);
        assert_eq!(a.samples_sent, b.samples_sent);
        assert_eq!(a.histograms_sent, b.histograms_sent);
        assert_eq!(a.exemplars_sent, b.exemplars_sent);
        assert_eq!(a.metadata, b.metadata);
        assert_eq!(a.exemplars, b.exemplars);
    }

    #[test]
    fn plain_requests_decode_like_prost() {
        let cases: Vec<Vec<v1::TimeSeries>> = vec![
            vec![],
            vec![series(&[("__name__", "up"), ("job", "a")], &[(1, 1.0)])],
            vec![
                series(&[("job", "a"), ("__name__", "up")], &[(1, 1.0), (2, -0.5)]),
                series(
                    &[("__name__", "up"), ("job", "b"), ("x", "")],
                    &[(3, f64::MAX)],
                ),
                series(&[("__name__", "up"), ("", "x")], &[(1, 1.0)]),
                series(&[("__name__", "up"), ("a", "1"), ("a", "2")], &[(1, 1.0)]),
                series(&[("job", "a")], &[(1, 1.0)]),
                series(&[("__name__", "future")], &[(5, 1.0), (20_000, 2.0)]),
                series(&[("__name__", "none")], &[]),
                series(&[("__name__", "neg")], &[(-7, 0.0)]),
            ],
        ];
        for ts in cases {
            let bytes = v1::WriteRequest {
                timeseries: ts,
                metadata: vec![],
            }
            .encode_to_vec();
            let fast = decode_v1_plain(&bytes, LIMITS, None).expect("plain request");
            same(&fast, &via_prost(&bytes));
        }
    }

    #[test]
    fn declines_what_it_does_not_handle() {
        let mut with_exemplar = series(&[("__name__", "up")], &[(1, 1.0)]);
        with_exemplar.exemplars.push(v1::Exemplar {
            labels: vec![],
            value: 1.0,
            timestamp: 1,
        });
        let with_metadata = v1::WriteRequest {
            timeseries: vec![],
            metadata: vec![v1::MetricMetadata {
                r#type: 1,
                metric_family_name: "up".into(),
                help: "".into(),
                unit: "".into(),
            }],
        };
        let plain = v1::WriteRequest {
            timeseries: vec![series(&[("__name__", "up")], &[(1, 1.0)])],
            metadata: vec![],
        }
        .encode_to_vec();
        let inputs: Vec<Vec<u8>> = vec![
            v1::WriteRequest {
                timeseries: vec![with_exemplar],
                metadata: vec![],
            }
            .encode_to_vec(),
            with_metadata.encode_to_vec(),
            plain[..plain.len() - 1].to_vec(),
            vec![0x0a, 0x03, 0x0a, 0x01, 0xff],
            vec![0x00],
        ];
        for b in inputs {
            assert!(decode_v1_plain(&b, LIMITS, None).is_none(), "{b:?}");
        }
    }

    /// The decoded write with cached series named by their labels again.
    fn resolved(db: &cairn_engine::Db, mut d: DecodedWrite) -> DecodedWrite {
        for s in &mut d.series {
            s.series = match &s.series {
                SeriesKey::Cached(h) => SeriesKey::Labels {
                    labels: db.handle_labels(h),
                    cache_key: None,
                },
                SeriesKey::Labels { labels, .. } => SeriesKey::Labels {
                    labels: labels.clone(),
                    cache_key: None,
                },
            };
        }
        d
    }

    #[test]
    fn known_series_come_out_cached_and_mean_the_same_labels() {
        let dir = tempfile::tempdir().unwrap();
        let db = cairn_engine::Db::open(dir.path(), cairn_engine::DbOptions::default()).unwrap();
        let cache = SeriesCache::new(1 << 20);
        let a = series(&[("job", "a"), ("__name__", "up")], &[(1, 1.0)]);
        // Labels around a sample: no contiguous key, never cached.
        let mut b = series(&[("__name__", "up"), ("job", "b")], &[(1, 2.0)]);
        let b_bytes = {
            let mut out = Vec::new();
            let label = |l: &v1::Label| l.encode_to_vec();
            for (field, msg) in [
                (1u8, label(&b.labels[0])),
                (2, b.samples[0].encode_to_vec()),
                (1, label(&b.labels[1])),
            ] {
                out.push(field << 3 | 2);
                out.push(msg.len() as u8);
                out.extend(msg);
            }
            b.labels.clear();
            b.samples.clear();
            out
        };
        let c = series(&[("job", "c")], &[(1, 3.0)]);
        let request = |ts: Vec<v1::TimeSeries>| {
            let mut bytes = v1::WriteRequest {
                timeseries: ts,
                metadata: vec![],
            }
            .encode_to_vec();
            bytes.push(0x0a);
            bytes.push(b_bytes.len() as u8);
            bytes.extend(&b_bytes);
            bytes
        };
        let bytes = request(vec![a.clone(), c.clone()]);

        let first = decode_v1_plain(&bytes, LIMITS, Some(&cache)).expect("plain");
        same(
            &resolved(&db, decode_v1_plain(&bytes, LIMITS, Some(&cache)).unwrap()),
            &via_prost(&bytes),
        );
        assert_eq!(first.series_cached, 0);
        assert_eq!(first.series.len(), 2, "c has no metric name");
        let SeriesKey::Labels {
            cache_key: Some(key),
            labels,
        } = &first.series[0].series
        else {
            panic!("a carries its key: {:?}", first.series[0]);
        };
        assert!(matches!(
            first.series[1].series,
            SeriesKey::Labels {
                cache_key: None,
                ..
            }
        ));
        // What storage does after appending: remember a's handle.
        let mut got = None;
        db.append_series(
            [(
                cairn_engine::WriteTarget::Labels(labels),
                &first.series[0].samples[..],
            )],
            |_, h| got = Some(h),
        )
        .unwrap();
        let handle = got.unwrap();
        cache.insert(key.clone(), handle.clone());

        let again = decode_v1_plain(&bytes, LIMITS, Some(&cache)).expect("plain");
        assert_eq!(again.series_cached, 1);
        assert_eq!(again.series[0].series, SeriesKey::Cached(handle.clone()));
        assert_eq!(again.series[0].samples, vec![Sample { t: 1, v: 1.0 }]);
        same(&resolved(&db, again), &via_prost(&bytes));

        // A sample too far in the future: the slow path, to name the series.
        let mut late = a.clone();
        late.samples.push(v1::Sample {
            value: 9.0,
            timestamp: 20_000,
        });
        let bytes = request(vec![late]);
        let d = decode_v1_plain(&bytes, LIMITS, Some(&cache)).expect("plain");
        assert_eq!(d.series_cached, 0);
        assert!(
            d.rejected.summary().contains("up"),
            "{}",
            d.rejected.summary()
        );
        same(&resolved(&db, d), &via_prost(&bytes));
    }

    proptest::proptest! {
        /// On any bytes the fast path either declines or agrees with prost.
        #[test]
        fn agrees_with_prost_or_declines(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            if let Some(fast) = decode_v1_plain(&bytes, LIMITS, None) {
                same(&fast, &via_prost(&bytes));
            }
        }
    }
}
