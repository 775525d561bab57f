//! OTLP metrics to Prometheus series: the mapping of Prometheus's OTLP
//! receiver (see `docs/otlp.md` for the table).
//!
//! [`Translator::translate`] turns an `ExportMetricsServiceRequest` into
//! [`Translated`]: series ready for `Db::append` (samples of one label set
//! grouped), metadata per metric family, and the data points refused with
//! their reasons (they become `partial_success`). Nothing is dropped
//! silently: every data point either yields samples or is counted as
//! rejected with a message.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use cairn_engine::{Label, Labels, STALE_NAN_BITS, Sample, TimestampMs, WriteSeries};
use cairn_proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use cairn_proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
use cairn_proto::opentelemetry::proto::metrics::v1::{
    AggregationTemporality, HistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint,
    metric::Data, number_data_point,
};

use super::OtlpConfig;
use super::naming::{self, NameKind};
use super::streams::{Accumulated, Streams};
use crate::remote_write::Metadata;

/// The `DataPointFlags` bit that marks "no recorded value".
const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// Resource attributes that identify the target (they become `job` and
/// `instance`, and stay out of `target_info` unless configured).
const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";

/// The stale marker, a NaN with Prometheus's exact bits.
fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// A translated request.
#[derive(Debug, Default)]
pub struct Translated {
    pub series: Vec<WriteSeries>,
    /// For each of `series`: whether each sample stands for one OTLP data
    /// point (number series and the `_count` series of histograms and
    /// summaries) -- used to count data points the engine rejects.
    pub counts_points: Vec<bool>,
    /// Type, help and unit per metric family.
    pub metadata: Vec<(String, Metadata)>,
    /// Data points in the request.
    pub points_received: u64,
    pub rejected: Rejected,
}

impl Translated {
    /// Samples to append.
    pub fn samples(&self) -> u64 {
        self.series.iter().map(|s| s.samples.len() as u64).sum()
    }
}

/// Data points refused, with reasons (counted per reason) and a few
/// examples naming metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rejected {
    pub points: u64,
    pub by_reason: BTreeMap<String, u64>,
    pub examples: Vec<String>,
    /// Messages that refuse nothing but should reach the client (a metric
    /// with no data).
    pub warnings: Vec<String>,
}

const MAX_EXAMPLES: usize = 10;

impl Rejected {
    pub fn add(&mut self, points: u64, reason: &str, metric: &str) {
        if points == 0 {
            return;
        }
        self.points += points;
        *self.by_reason.entry(reason.to_string()).or_default() += points;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(format!("{metric}: {reason}"));
        }
    }

    pub fn warn(&mut self, msg: String) {
        if self.warnings.len() < MAX_EXAMPLES {
            self.warnings.push(msg);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.points == 0 && self.warnings.is_empty()
    }

    /// The `partial_success.error_message`.
    pub fn message(&self) -> String {
        let mut s = String::new();
        if self.points > 0 {
            let _ = write!(s, "{} data points rejected (", self.points);
            let by: Vec<String> = self
                .by_reason
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect();
            s.push_str(&by.join("; "));
            s.push(')');
            for e in &self.examples {
                s.push_str("\n  ");
                s.push_str(e);
            }
        }
        for w in &self.warnings {
            if !s.is_empty() {
                s.push('\n');
            }
            s.push_str(w);
        }
        s
    }
}

/// Labels of a resource (and scope) shared by all its points.
struct Context {
    /// Promoted resource attributes (sanitised): added unless a point
    /// attribute has the name.
    promoted: Vec<(String, String)>,
    /// Scope labels, `job`, `instance`: they override point attributes.
    overrides: Vec<(String, String)>,
}

/// Turns OTLP into series. Holds the options and the per-stream state.
pub struct Translator<'a> {
    pub config: &'a OtlpConfig,
    pub streams: &'a Streams,
    /// Newest acceptable sample timestamp (now + the future window).
    pub max_t: TimestampMs,
    /// Wall clock, for the state's expiry.
    pub now_ms: i64,
}

/// Where series are collected, grouped by label set (through a 64-bit
/// hash; label sets whose hash collides with another's go to `collided`).
#[derive(Default)]
struct Sink {
    index: HashMap<u64, usize>,
    collided: HashMap<Labels, usize>,
    out: Translated,
}

impl Sink {
    fn push(&mut self, labels: Labels, sample: Sample, counts_point: bool) {
        let h = labels_hash(&labels);
        let found = match self.index.get(&h) {
            Some(&i) if self.out.series[i].labels == labels => Some(i),
            Some(_) => self.collided.get(&labels).copied(),
            None => None,
        };
        let i = match found {
            Some(i) => i,
            None => {
                let i = self.out.series.len();
                match self.index.entry(h) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        self.collided.insert(labels.clone(), i);
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(i);
                    }
                }
                self.out.series.push(WriteSeries {
                    labels,
                    samples: Vec::new(),
                });
                self.out.counts_points.push(counts_point);
                i
            }
        };
        self.out.series[i].samples.push(sample);
    }
}

/// OTLP attribute values as label values, as Prometheus writes them.
pub fn any_value_string(v: Option<&AnyValue>) -> String {
    let Some(value) = v.and_then(|v| v.value.as_ref()) else {
        return String::new();
    };
    match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => format_float(*d),
        any_value::Value::BytesValue(b) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(b)
        }
        any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_) => {
            any_value_json(value).to_string()
        }
    }
}

fn any_value_json(v: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        any_value::Value::StringValue(s) => J::String(s.clone()),
        any_value::Value::BoolValue(b) => J::Bool(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(d) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(format_float(*d)), J::Number)
        }
        any_value::Value::BytesValue(_) => J::String(any_value_string(Some(&AnyValue {
            value: Some(v.clone()),
        }))),
        any_value::Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|x| x.value.as_ref().map_or(J::Null, any_value_json))
                .collect(),
        ),
        any_value::Value::KvlistValue(kv) => J::Object(
            kv.values
                .iter()
                .map(|x| {
                    let v = x
                        .value
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                        .map_or(J::Null, any_value_json);
                    (x.key.clone(), v)
                })
                .collect(),
        ),
    }
}

/// A float the way Prometheus writes `le` and `quantile` values: shortest
/// round-trip digits, `+Inf`/`-Inf`/`NaN`.
pub fn format_float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

/// ns since the epoch to ms, truncating as Prometheus does.
pub fn ns_to_ms(ns: u64) -> TimestampMs {
    (ns / 1_000_000) as TimestampMs
}

/// The ways a point is refused before storage.
mod reason {
    pub const MISSING_TIMESTAMP: &str = "missing timestamp";
    pub const TOO_FAR_IN_FUTURE: &str = "timestamp too far in the future";
    pub const INVALID_NAME: &str = "invalid metric name";
    pub const INVALID_LABEL: &str = "invalid attribute";
    pub const TOO_MANY_LABELS: &str = "too many labels";
    pub const LABEL_TOO_LONG: &str = "label value too long";
    pub const EXPONENTIAL: &str = "exponential histograms are not stored yet (Cairn has no native histograms); export explicit-bucket histograms";
    pub const DELTA_DISABLED: &str =
        "delta temporality is not accepted (otlp.convert_delta_to_cumulative is off)";
    pub const UNSPECIFIED_TEMPORALITY: &str = "aggregation temporality unspecified";
    pub const BAD_BUCKETS: &str =
        "histogram bucket_counts must have one more element than explicit_bounds";
}

impl Translator<'_> {
    /// Translates a whole request.
    pub fn translate(&self, req: &ExportMetricsServiceRequest) -> Translated {
        let mut sink = Sink::default();
        let mut metadata: BTreeMap<String, Metadata> = BTreeMap::new();
        for rm in &req.resource_metrics {
            let empty = Vec::new();
            let res_attrs = rm.resource.as_ref().map_or(&empty, |r| &r.attributes);
            let (job, instance) = self.job_instance(res_attrs);
            let promoted = self.promoted(res_attrs);
            let mut min_t = i64::MAX;
            let mut max_t = i64::MIN;
            for sm in &rm.scope_metrics {
                let mut overrides = Vec::new();
                if self.config.promote_scope_metadata
                    && let Some(scope) = &sm.scope
                {
                    overrides.push(("otel_scope_name".to_string(), scope.name.clone()));
                    overrides.push(("otel_scope_version".to_string(), scope.version.clone()));
                    overrides.push(("otel_scope_schema_url".to_string(), sm.schema_url.clone()));
                    for kv in &scope.attributes {
                        if let Ok(n) = self.label(&format!("otel_scope_{}", kv.key)) {
                            overrides.push((n, any_value_string(kv.value.as_ref())));
                        }
                    }
                }
                if let Some(j) = &job {
                    overrides.push(("job".into(), j.clone()));
                }
                if let Some(i) = &instance {
                    overrides.push(("instance".into(), i.clone()));
                }
                let ctx = Context {
                    promoted: promoted.clone(),
                    overrides,
                };
                for m in &sm.metrics {
                    if let Some((t0, t1)) = self.metric(&ctx, m, &mut sink, &mut metadata) {
                        min_t = min_t.min(t0);
                        max_t = max_t.max(t1);
                    }
                }
            }
            if self.config.target_info && min_t <= max_t {
                self.target_info(res_attrs, &job, &instance, min_t, max_t, &mut sink);
            }
        }
        if sink
            .out
            .series
            .iter()
            .any(|s| s.labels.metric_name() == Some("target_info"))
        {
            metadata.insert(
                "target_info".into(),
                Metadata {
                    kind: "gauge",
                    help: "Target metadata".into(),
                    unit: String::new(),
                },
            );
        }
        let mut out = sink.out;
        out.metadata = metadata.into_iter().collect();
        out
    }

    fn utf8(&self) -> bool {
        !self.config.translation_strategy.escapes()
    }

    fn label(&self, key: &str) -> Result<String, naming::NameError> {
        naming::label_name(key, self.utf8())
    }

    fn job_instance(&self, attrs: &[KeyValue]) -> (Option<String>, Option<String>) {
        let job = attr(attrs, SERVICE_NAME).map(|name| {
            let name = any_value_string(Some(name));
            match attr(attrs, SERVICE_NAMESPACE) {
                Some(ns) => format!("{}/{name}", any_value_string(Some(ns))),
                None => name,
            }
        });
        let instance = attr(attrs, SERVICE_INSTANCE_ID).map(|v| any_value_string(Some(v)));
        (job, instance)
    }

    fn promoted(&self, attrs: &[KeyValue]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for key in &self.config.promote_resource_attributes {
            if let Some(v) = attr(attrs, key)
                && let Ok(name) = self.label(key)
            {
                out.push((name, any_value_string(Some(v))));
            }
        }
        out
    }

    /// `target_info{job, instance, <other resource attributes>} 1` at the
    /// first and last timestamps of the resource's points.
    fn target_info(
        &self,
        attrs: &[KeyValue],
        job: &Option<String>,
        instance: &Option<String>,
        min_t: i64,
        max_t: i64,
        sink: &mut Sink,
    ) {
        if job.is_none() && instance.is_none() {
            return;
        }
        let identifying = [SERVICE_NAME, SERVICE_NAMESPACE, SERVICE_INSTANCE_ID];
        let keep = self.config.keep_identifying_resource_attributes;
        let mut sorted: Vec<&KeyValue> = attrs
            .iter()
            .filter(|kv| keep || !identifying.contains(&kv.key.as_str()))
            .collect();
        if sorted.is_empty() {
            return;
        }
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for kv in sorted {
            let Ok(name) = self.label(&kv.key) else {
                continue;
            };
            merge(&mut map, name, any_value_string(kv.value.as_ref()));
        }
        if let Some(j) = job {
            map.insert("job".into(), j.clone());
        }
        if let Some(i) = instance {
            map.insert("instance".into(), i.clone());
        }
        map.insert("__name__".into(), "target_info".into());
        let labels = Labels::from_pairs(map);
        sink.push(labels.clone(), Sample::new(min_t, 1.0), false);
        if max_t != min_t {
            sink.push(labels, Sample::new(max_t, 1.0), false);
        }
    }

    /// The labels of one point (without `__name__`), or why not.
    fn point_labels(
        &self,
        ctx: &Context,
        attrs: &[KeyValue],
    ) -> Result<BTreeMap<String, String>, &'static str> {
        let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for kv in sorted {
            let name = self.label(&kv.key).map_err(|_| reason::INVALID_LABEL)?;
            merge(&mut map, name, any_value_string(kv.value.as_ref()));
        }
        for (n, v) in &ctx.promoted {
            map.entry(n.clone()).or_insert_with(|| v.clone());
        }
        for (n, v) in &ctx.overrides {
            map.insert(n.clone(), v.clone());
        }
        map.retain(|_, v| !v.is_empty());
        // `__name__` is one more label (histograms add `le` as well).
        if map.len() + 1 > self.config.max_labels_per_series {
            return Err(reason::TOO_MANY_LABELS);
        }
        if map
            .values()
            .any(|v| v.len() > self.config.max_label_value_bytes)
        {
            return Err(reason::LABEL_TOO_LONG);
        }
        Ok(map)
    }

    /// Checks a point's timestamp; returns it in ms.
    fn timestamp(&self, ns: u64) -> Result<TimestampMs, &'static str> {
        if ns == 0 {
            return Err(reason::MISSING_TIMESTAMP);
        }
        let t = ns_to_ms(ns);
        if t > self.max_t {
            return Err(reason::TOO_FAR_IN_FUTURE);
        }
        Ok(t)
    }

    /// Translates one metric; returns the range of timestamps written.
    fn metric(
        &self,
        ctx: &Context,
        m: &Metric,
        sink: &mut Sink,
        metadata: &mut BTreeMap<String, Metadata>,
    ) -> Option<(i64, i64)> {
        let Some(data) = &m.data else {
            sink.out.rejected.warn(format!(
                "metric {:?} has no data (unknown or unset metric type): ignored",
                m.name
            ));
            return None;
        };
        let (kind, points, temporality, prom_type) = match data {
            Data::Gauge(g) => (NameKind::Gauge, g.data_points.len(), None, "gauge"),
            Data::Sum(s) => {
                if s.is_monotonic {
                    (
                        NameKind::MonotonicCounter,
                        s.data_points.len(),
                        Some(s.aggregation_temporality),
                        "counter",
                    )
                } else {
                    (
                        NameKind::NonMonotonicCounter,
                        s.data_points.len(),
                        Some(s.aggregation_temporality),
                        "gauge",
                    )
                }
            }
            Data::Histogram(h) => (
                NameKind::Histogram,
                h.data_points.len(),
                Some(h.aggregation_temporality),
                "histogram",
            ),
            Data::Summary(s) => (NameKind::Summary, s.data_points.len(), None, "summary"),
            Data::ExponentialHistogram(h) => {
                let n = h.data_points.len() as u64;
                sink.out.points_received += n;
                sink.out.rejected.add(n, reason::EXPONENTIAL, &m.name);
                return None;
            }
        };
        sink.out.points_received += points as u64;
        if points == 0 {
            sink.out
                .rejected
                .warn(format!("metric {:?} has no data points", m.name));
            return None;
        }
        let delta = match temporality.map(AggregationTemporality::try_from) {
            Some(Ok(AggregationTemporality::Delta)) => {
                if !self.config.convert_delta_to_cumulative {
                    sink.out
                        .rejected
                        .add(points as u64, reason::DELTA_DISABLED, &m.name);
                    return None;
                }
                true
            }
            Some(Ok(AggregationTemporality::Cumulative)) | None => false,
            Some(_) => {
                sink.out
                    .rejected
                    .add(points as u64, reason::UNSPECIFIED_TEMPORALITY, &m.name);
                return None;
            }
        };
        let name =
            match naming::metric_name(&m.name, &m.unit, kind, self.config.translation_strategy) {
                Ok(n) => n,
                Err(e) => {
                    sink.out.rejected.add(
                        points as u64,
                        &format!("{}: {e}", reason::INVALID_NAME),
                        &m.name,
                    );
                    return None;
                }
            };
        metadata.insert(
            name.clone(),
            Metadata {
                kind: prom_type,
                help: m.description.clone(),
                unit: prom_unit(&m.unit),
            },
        );
        let mut range = None;
        let mut note = |t: i64| {
            range = Some(match range {
                None => (t, t),
                Some((a, b)) => (t.min(a), t.max(b)),
            });
        };
        let monotonic = kind == NameKind::MonotonicCounter;
        match data {
            Data::Gauge(g) => {
                for p in &g.data_points {
                    if let Some(t) = self.number(ctx, &name, p, false, false, sink) {
                        note(t);
                    }
                }
            }
            Data::Sum(s) => {
                for p in &s.data_points {
                    if let Some(t) = self.number(ctx, &name, p, delta, monotonic, sink) {
                        note(t);
                    }
                }
            }
            Data::Histogram(h) => {
                for p in &h.data_points {
                    if let Some(t) = self.histogram(ctx, &name, p, delta, sink) {
                        note(t);
                    }
                }
            }
            Data::Summary(s) => {
                for p in &s.data_points {
                    if let Some(t) = self.summary(ctx, &name, p, sink) {
                        note(t);
                    }
                }
            }
            Data::ExponentialHistogram(_) => {}
        }
        range
    }

    /// Common checks of a point: labels and timestamp. Refusals are
    /// recorded in the sink.
    fn prepare(
        &self,
        ctx: &Context,
        name: &str,
        attrs: &[KeyValue],
        time_ns: u64,
        sink: &mut Sink,
    ) -> Option<(Vec<Label>, TimestampMs)> {
        let checked = self.point_labels(ctx, attrs).and_then(|l| {
            let t = self.timestamp(time_ns)?;
            // Sorted by name, unique, no empty values: Labels' invariant.
            let base = l
                .into_iter()
                .map(|(n, v)| Label::new(n, v))
                .collect::<Vec<_>>();
            Ok((base, t))
        });
        match checked {
            Ok(x) => Some(x),
            Err(r) => {
                sink.out.rejected.add(1, r, name);
                None
            }
        }
    }

    fn number(
        &self,
        ctx: &Context,
        name: &str,
        p: &NumberDataPoint,
        delta: bool,
        counter: bool,
        sink: &mut Sink,
    ) -> Option<TimestampMs> {
        let (labels, t) = self.prepare(ctx, name, &p.attributes, p.time_unix_nano, sink)?;
        let key = stream_key(name, &labels);
        let mut v = match p.value {
            Some(number_data_point::Value::AsDouble(d)) => d,
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            None => 0.0,
        };
        let stale = p.flags & FLAG_NO_RECORDED_VALUE != 0;
        if stale {
            if delta {
                self.streams.end(key);
            }
            v = stale_nan();
        } else if delta {
            match self.streams.accumulate(
                key,
                p.start_time_unix_nano,
                p.time_unix_nano,
                Accumulated::Number(v),
                self.now_ms,
            ) {
                Ok(Accumulated::Number(c)) => v = c,
                Ok(_) => return None,
                Err(e) => {
                    sink.out.rejected.add(1, e.as_str(), name);
                    return None;
                }
            }
        }
        let labels = with_name(&labels, name, None);
        if counter
            && !delta
            && !stale
            && self.streams.cumulative_reset(
                key,
                p.start_time_unix_nano,
                p.time_unix_nano,
                self.now_ms,
            )
        {
            sink.push(
                labels.clone(),
                Sample::new(ns_to_ms(p.start_time_unix_nano), 0.0),
                false,
            );
        }
        sink.push(labels, Sample::new(t, v), true);
        Some(t)
    }

    fn histogram(
        &self,
        ctx: &Context,
        name: &str,
        p: &HistogramDataPoint,
        delta: bool,
        sink: &mut Sink,
    ) -> Option<TimestampMs> {
        let (labels, t) = self.prepare(ctx, name, &p.attributes, p.time_unix_nano, sink)?;
        let stale = p.flags & FLAG_NO_RECORDED_VALUE != 0;
        // bucket_counts may be empty (a histogram with count and sum only);
        // otherwise it has one more element than explicit_bounds.
        if !stale
            && !p.bucket_counts.is_empty()
            && p.bucket_counts.len() != p.explicit_bounds.len() + 1
        {
            sink.out.rejected.add(1, reason::BAD_BUCKETS, name);
            return None;
        }
        let key = stream_key(name, &labels);
        let mut count = p.count;
        let mut sum = p.sum;
        let mut buckets = std::borrow::Cow::Borrowed(&p.bucket_counts);
        if stale {
            if delta {
                self.streams.end(key);
            }
        } else if delta {
            let d = Accumulated::Histogram {
                count: p.count,
                sum: p.sum.unwrap_or(0.0),
                bounds: p.explicit_bounds.clone(),
                buckets: p.bucket_counts.clone(),
            };
            match self.streams.accumulate(
                key,
                p.start_time_unix_nano,
                p.time_unix_nano,
                d,
                self.now_ms,
            ) {
                Ok(Accumulated::Histogram {
                    count: c,
                    sum: s,
                    buckets: b,
                    ..
                }) => {
                    count = c;
                    sum = p.sum.map(|_| s);
                    buckets = std::borrow::Cow::Owned(b);
                }
                Ok(_) => return None,
                Err(e) => {
                    sink.out.rejected.add(1, e.as_str(), name);
                    return None;
                }
            }
        }
        let reset = !delta
            && !stale
            && self.streams.cumulative_reset(
                key,
                p.start_time_unix_nano,
                p.time_unix_nano,
                self.now_ms,
            );
        let start_t = ns_to_ms(p.start_time_unix_nano);
        let value = |v: f64| if stale { stale_nan() } else { v };
        let mut emit = |labels: Labels, v: f64, counts: bool| {
            if reset {
                sink.push(labels.clone(), Sample::new(start_t, 0.0), false);
            }
            sink.push(labels, Sample::new(t, v), counts);
        };
        let bucket_name = format!("{name}_bucket");
        if !buckets.is_empty() || stale {
            let mut cumulative: u64 = 0;
            for (i, bound) in p.explicit_bounds.iter().enumerate() {
                cumulative = cumulative.saturating_add(buckets.get(i).copied().unwrap_or(0));
                let l = with_name(&labels, &bucket_name, Some(("le", format_float(*bound))));
                emit(l, value(cumulative as f64), false);
            }
        }
        let l = with_name(&labels, &bucket_name, Some(("le", "+Inf".into())));
        emit(l, value(count as f64), false);
        if let Some(s) = sum {
            let l = with_name(&labels, &format!("{name}_sum"), None);
            emit(l, value(s), false);
        } else if stale {
            let l = with_name(&labels, &format!("{name}_sum"), None);
            emit(l, stale_nan(), false);
        }
        let l = with_name(&labels, &format!("{name}_count"), None);
        emit(l, value(count as f64), true);
        Some(t)
    }

    fn summary(
        &self,
        ctx: &Context,
        name: &str,
        p: &SummaryDataPoint,
        sink: &mut Sink,
    ) -> Option<TimestampMs> {
        let (labels, t) = self.prepare(ctx, name, &p.attributes, p.time_unix_nano, sink)?;
        let stale = p.flags & FLAG_NO_RECORDED_VALUE != 0;
        let key = stream_key(name, &labels);
        let reset = !stale
            && self.streams.cumulative_reset(
                key,
                p.start_time_unix_nano,
                p.time_unix_nano,
                self.now_ms,
            );
        let value = |v: f64| if stale { stale_nan() } else { v };
        let start_t = ns_to_ms(p.start_time_unix_nano);
        for q in &p.quantile_values {
            let l = with_name(&labels, name, Some(("quantile", format_float(q.quantile))));
            sink.push(l, Sample::new(t, value(q.value)), false);
        }
        for (suffix, v, counts) in [("_sum", p.sum, false), ("_count", p.count as f64, true)] {
            let l = with_name(&labels, &format!("{name}{suffix}"), None);
            if reset {
                sink.push(l.clone(), Sample::new(start_t, 0.0), false);
            }
            sink.push(l, Sample::new(t, value(v)), counts);
        }
        Some(t)
    }
}

/// Adds a value under a label name, joining colliding attributes with `;`
/// (their keys are visited in sorted order).
fn merge(map: &mut BTreeMap<String, String>, name: String, value: String) {
    match map.get_mut(&name) {
        Some(existing) => {
            existing.push(';');
            existing.push_str(&value);
        }
        None => {
            map.insert(name, value);
        }
    }
}

/// The identity of a stream: base name and labels.
fn stream_key(name: &str, labels: &[Label]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(name.as_bytes());
    for l in labels {
        h.update(&[0xff]);
        h.update(l.name.as_bytes());
        h.update(&[0xfe]);
        h.update(l.value.as_bytes());
    }
    h.digest128()
}

/// A 64-bit hash of a label set, for grouping samples by series.
fn labels_hash(labels: &Labels) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for l in labels.iter() {
        h.update(l.name.as_bytes());
        h.update(&[0xff]);
        h.update(l.value.as_bytes());
        h.update(&[0xfe]);
    }
    h.digest()
}

/// The point's labels plus `__name__` and the optional `le`/`quantile`,
/// kept sorted (the base labels are already sorted and unique, and hold
/// neither name: `le` and `quantile` coming from attributes are replaced).
fn with_name(base: &[Label], name: &str, extra: Option<(&str, String)>) -> Labels {
    let mut v: Vec<Label> = Vec::with_capacity(base.len() + 2);
    v.extend_from_slice(base);
    let mut put = |n: &str, value: String| match v.binary_search_by(|l| (*l.name).cmp(n)) {
        Ok(i) => v[i] = Label::new(n, value),
        Err(i) => v.insert(i, Label::new(n, value)),
    };
    put("__name__", name.to_string());
    if let Some((n, value)) = extra {
        put(n, value);
    }
    v.retain(|l| !l.value.is_empty());
    Labels::from_sorted(v)
}

/// The unit as Prometheus metadata shows it (`s` -> `seconds`,
/// `By/s` -> `bytes_per_second`, `{request}` -> empty).
pub fn prom_unit(unit: &str) -> String {
    let (main, per) = naming::unit_suffixes(unit);
    let clean = |s: &str| -> String {
        let mut out = String::new();
        for c in s.chars() {
            let c = if c.is_ascii_alphanumeric() || c == ':' {
                c
            } else {
                '_'
            };
            if c == '_' && out.ends_with('_') {
                continue;
            }
            out.push(c);
        }
        out.trim_matches('_').to_string()
    };
    let (main, per) = (clean(&main), clean(&per));
    match (main.is_empty(), per.is_empty()) {
        (false, false) => format!("{main}_{per}"),
        (false, true) => main,
        _ => per,
    }
}
