//! Integration tests of the OTLP receiver in the real `cairn serve`:
//! OTLP/HTTP with protobuf and JSON bodies (plain and gzip) on the OTLP port
//! and under `/otlp` on the main port, read back through remote-read and
//! `/api/v1/series` and `/api/v1/metadata`; a table of bad requests, each
//! with its status and message, after which the server still serves.

mod support;

use std::io::Write;

use cairn_proto::opentelemetry::proto::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use cairn_proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
use cairn_proto::opentelemetry::proto::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use cairn_proto::opentelemetry::proto::resource::v1::Resource;
use cairn_proto::prost::Message;
use support::*;

const T0: i64 = 1_700_000_000_000;
const MS: u64 = 1_000_000;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

fn point(t: i64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: vec![kv("model", "llama")],
        start_time_unix_nano: (T0 as u64 - 60_000) * MS,
        time_unix_nano: t as u64 * MS,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

/// A protobuf request: a counter, a gauge and a histogram of service
/// `shop/api` instance `i-1`.
fn protobuf_request() -> ExportMetricsServiceRequest {
    let metric = |name: &str, unit: &str, data| Metric {
        name: name.into(),
        description: format!("{name} help"),
        unit: unit.into(),
        data: Some(data),
        metadata: vec![],
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "api"),
                    kv("service.namespace", "shop"),
                    kv("service.instance.id", "i-1"),
                    kv("k8s.cluster.name", "eu-1"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    metric(
                        "infer.requests",
                        "{request}",
                        Data::Sum(Sum {
                            data_points: vec![point(T0, 10.0), point(T0 + 15_000, 25.0)],
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "gpu.utilization",
                        "1",
                        Data::Gauge(Gauge {
                            data_points: vec![point(T0, 0.75)],
                        }),
                    ),
                    metric(
                        "infer.latency",
                        "ms",
                        Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                attributes: vec![kv("model", "llama")],
                                start_time_unix_nano: (T0 as u64 - 60_000) * MS,
                                time_unix_nano: T0 as u64 * MS,
                                count: 6,
                                sum: Some(420.0),
                                bucket_counts: vec![1, 4, 1],
                                explicit_bounds: vec![50.0, 100.0],
                                ..Default::default()
                            }],
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        }),
                    ),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The same kind of data as OTLP/JSON: camelCase keys, 64-bit integers as
/// strings, the temporality as a number and a name, hex exemplar ids.
fn json_request() -> String {
    let t = |ms: i64| format!("\"{}\"", ms as u64 * MS);
    format!(
        r#"{{"resourceMetrics":[{{
  "resource":{{"attributes":[
    {{"key":"service.name","value":{{"stringValue":"json-svc"}}}},
    {{"key":"service.instance.id","value":{{"stringValue":"j-1"}}}}]}},
  "scopeMetrics":[{{"scope":{{"name":"curl","version":"1"}},"metrics":[
    {{"name":"tokens.out","unit":"{{token}}","description":"tokens generated",
      "sum":{{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[
        {{"attributes":[{{"key":"model","value":{{"stringValue":"mistral"}}}},
                        {{"key":"shard","value":{{"intValue":"3"}}}}],
          "startTimeUnixNano":{start},"timeUnixNano":{t0},"asInt":"1234",
          "exemplars":[{{"timeUnixNano":{t0},"asDouble":1.5,
                         "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}}]}}]}}}},
    {{"name":"queue.depth","unit":"{{item}}",
      "sum":{{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":false,"dataPoints":[
        {{"timeUnixNano":{t0},"asDouble":4.5}}]}}}},
    {{"name":"ignored.unknown.fields","gauge":{{"dataPoints":[{{"timeUnixNano":{t0},"asDouble":1,"someFutureField":true}}]}},"futureKey":1}}
  ]}}]}}]}}"#,
        start = t(T0 - 60_000),
        t0 = t(T0),
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

struct Reply {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    body: Vec<u8>,
}

fn post(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    let mut req = client().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body).send().expect("OTLP request");
    let header = |h: &str| {
        resp.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Reply {
        status: resp.status().as_u16(),
        content_type: header("content-type").unwrap_or_default(),
        retry_after: header("retry-after"),
        body: resp.bytes().expect("body").to_vec(),
    }
}

const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");
const JSON: (&str, &str) = ("Content-Type", "application/json");
const GZIP: (&str, &str) = ("Content-Encoding", "gzip");

fn sample_values(server: &Server, name: &str) -> Vec<(Vec<(String, String)>, Vec<(i64, f64)>)> {
    read(
        server,
        &[("__name__", name)],
        T0 - 3_600_000,
        T0 + 3_600_000,
    )
    .into_iter()
    .map(|(l, s)| {
        (
            l,
            s.into_iter().map(|(t, b)| (t, f64::from_bits(b))).collect(),
        )
    })
    .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn otlp_http_protobuf_and_json_are_stored_with_prometheus_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let otlp_url = format!("http://{}/v1/metrics", server.otlp_http);

    // Protobuf, gzip-compressed, on the OTLP port.
    let r = post(
        &otlp_url,
        &[PROTOBUF, GZIP],
        gzip(&protobuf_request().encode_to_vec()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.content_type, "application/x-protobuf");
    let resp = ExportMetricsServiceResponse::decode(r.body.as_slice()).expect("response");
    assert_eq!(resp.partial_success, None, "everything accepted");

    // JSON on the main port under /otlp.
    let r = post(
        &server.url("/otlp/v1/metrics"),
        &[JSON],
        json_request().into_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.content_type, "application/json");
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON response");
    assert_eq!(body, serde_json::json!({}));

    let svc = [("instance", "i-1"), ("job", "shop/api")];
    assert_eq!(
        sample_values(&server, "infer_requests_total"),
        vec![(
            labels(&[
                ("__name__", "infer_requests_total"),
                svc[0],
                svc[1],
                ("model", "llama")
            ]),
            vec![(T0, 10.0), (T0 + 15_000, 25.0)]
        )]
    );
    assert_eq!(
        sample_values(&server, "gpu_utilization_ratio")[0].1,
        vec![(T0, 0.75)]
    );
    let buckets = sample_values(&server, "infer_latency_milliseconds_bucket");
    let by_le: Vec<(String, f64)> = buckets
        .iter()
        .map(|(l, s)| {
            let le = l.iter().find(|(n, _)| n == "le").map(|(_, v)| v.clone());
            (le.unwrap_or_default(), s[0].1)
        })
        .collect();
    assert_eq!(
        by_le,
        vec![
            ("+Inf".into(), 6.0),
            ("100".into(), 5.0),
            ("50".into(), 1.0)
        ]
    );
    assert_eq!(
        sample_values(&server, "infer_latency_milliseconds_sum")[0].1,
        vec![(T0, 420.0)]
    );
    assert_eq!(
        sample_values(&server, "infer_latency_milliseconds_count")[0].1,
        vec![(T0, 6.0)]
    );
    assert_eq!(
        sample_values(&server, "target_info"),
        vec![(
            labels(&[
                ("__name__", "target_info"),
                svc[0],
                svc[1],
                ("k8s_cluster_name", "eu-1")
            ]),
            vec![(T0, 1.0), (T0 + 15_000, 1.0)]
        )]
    );
    // JSON: string-encoded ints, enum by name, unknown fields ignored.
    assert_eq!(
        sample_values(&server, "tokens_out_total"),
        vec![(
            labels(&[
                ("__name__", "tokens_out_total"),
                ("instance", "j-1"),
                ("job", "json-svc"),
                ("model", "mistral"),
                ("shard", "3")
            ]),
            vec![(T0, 1234.0)]
        )]
    );
    assert_eq!(sample_values(&server, "queue_depth")[0].1, vec![(T0, 4.5)]);
    assert_eq!(
        sample_values(&server, "ignored_unknown_fields")[0].1,
        vec![(T0, 1.0)]
    );

    // Metadata for /api/v1/metadata.
    let md: serde_json::Value = client()
        .get(server.url("/api/v1/metadata?metric=infer_latency_milliseconds"))
        .send()
        .expect("metadata")
        .bytes()
        .map(|b| serde_json::from_slice(&b).expect("json"))
        .expect("body");
    assert_eq!(
        md["data"]["infer_latency_milliseconds"][0],
        serde_json::json!({"type": "histogram", "help": "infer.latency help", "unit": "milliseconds"})
    );
    let series: serde_json::Value = client()
        .get(server.url("/api/v1/series?match[]=tokens_out_total"))
        .send()
        .expect("series")
        .bytes()
        .map(|b| serde_json::from_slice(&b).expect("json"))
        .expect("body");
    assert_eq!(series["data"][0]["model"], "mistral");
    server.stop();
}

#[test]
fn bad_otlp_requests_get_the_right_status_and_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("cairn.yml");
    std::fs::write(
        &config,
        "otlp:\n  max_body_bytes: 4000000\n  max_decoded_bytes: 16000000\n",
    )
    .expect("config");
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", config.to_str().expect("utf-8 path")]);
    let url = format!("http://{}/v1/metrics", server.otlp_http);
    let good = protobuf_request().encode_to_vec();
    let truncated = good[..good.len() - 7].to_vec();

    // A 10 MB attribute value, gzip-compressed under the body limit: the
    // point is refused (label value limit), the request succeeds.
    let mut huge = protobuf_request();
    if let Some(Data::Gauge(g)) = &mut huge.resource_metrics[0].scope_metrics[0].metrics[1].data {
        g.data_points[0]
            .attributes
            .push(kv("blob", &"x".repeat(10 << 20)));
    }
    let huge_gz = gzip(&huge.encode_to_vec());
    assert!(huge_gz.len() < 4_000_000);
    let nan_json = json_request().replacen(&format!("\"{}\"", T0 as u64 * MS), "\"NaN\"", 1);

    struct Bad {
        what: &'static str,
        headers: Vec<(&'static str, &'static str)>,
        body: Vec<u8>,
        status: u16,
        message: &'static str,
    }
    #[rustfmt::skip]
    let cases = vec![
        Bad { what: "truncated protobuf", headers: vec![PROTOBUF], body: truncated, status: 400, message: "protobuf decode error" },
        Bad { what: "invalid JSON", headers: vec![JSON], body: b"{\"resourceMetrics\": [".to_vec(), status: 400, message: "invalid OTLP/JSON" },
        Bad { what: "JSON of the wrong shape", headers: vec![JSON], body: b"{\"resourceMetrics\": 5}".to_vec(), status: 400, message: "invalid OTLP/JSON" },
        Bad { what: "NaN timestamp", headers: vec![JSON], body: nan_json.into_bytes(), status: 400, message: "invalid OTLP/JSON" },
        Bad { what: "unsupported content type", headers: vec![("Content-Type", "text/plain")], body: good.clone(), status: 415, message: "Content-Type" },
        Bad { what: "unsupported encoding", headers: vec![PROTOBUF, ("Content-Encoding", "br")], body: good.clone(), status: 415, message: "Content-Encoding" },
        Bad { what: "corrupt gzip", headers: vec![PROTOBUF, GZIP], body: b"\x1f\x8bnot gzip at all".to_vec(), status: 400, message: "invalid gzip" },
        Bad { what: "body over the limit", headers: vec![PROTOBUF], body: vec![0u8; 4_500_000], status: 413, message: "larger than the limit" },
        Bad { what: "gzip bomb over the decoded limit", headers: vec![PROTOBUF, GZIP], body: gzip(&vec![0u8; 17_000_000]), status: 413, message: "after gzip decompression" },
    ];
    for c in cases {
        let r = post(&url, &c.headers, c.body);
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert_eq!(r.status, c.status, "{}: {text}", c.what);
        assert!(
            text.contains(c.message),
            "{}: {text:?} lacks {:?}",
            c.what,
            c.message
        );
        assert_eq!(r.retry_after, None, "{}: bad data is not retryable", c.what);
    }

    // The 10 MB attribute: 200 with partial_success naming the reason.
    let r = post(&url, &[PROTOBUF, GZIP], huge_gz);
    assert_eq!(r.status, 200);
    let resp = ExportMetricsServiceResponse::decode(r.body.as_slice()).expect("response");
    let partial = resp.partial_success.expect("partial success");
    assert_eq!(partial.rejected_data_points, 1);
    assert!(
        partial.error_message.contains("label value too long"),
        "{}",
        partial.error_message
    );

    // An exponential histogram and a metric without data: refused or
    // reported in partial_success (JSON in, JSON out).
    let t0 = T0 as u64 * MS;
    let body = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[
          {{"name":"exp","exponentialHistogram":{{"aggregationTemporality":2,"dataPoints":[
            {{"timeUnixNano":"{t0}","count":"1","scale":2,"positive":{{"offset":0,"bucketCounts":["1"]}}}}]}}}},
          {{"name":"nodata"}}]}}]}}]}}"#
    );
    let r = post(&url, &[JSON], body.into_bytes());
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["partialSuccess"]["rejectedDataPoints"], "1");
    let msg = v["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap_or_default();
    assert!(
        msg.contains("exponential histograms are not stored"),
        "{msg}"
    );
    assert!(msg.contains("\"nodata\" has no data"), "{msg}");

    // A 3 MB body (a long description) under the 4 MB limit is accepted:
    // no other, smaller limit is in the way.
    let mut big = protobuf_request();
    big.resource_metrics[0].scope_metrics[0].metrics[0].description = "d".repeat(3 << 20);
    let r = post(&url, &[PROTOBUF], big.encode_to_vec());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // Still up and still ingesting.
    let r = post(&url, &[PROTOBUF], good);
    assert_eq!(r.status, 200);
    let r = client()
        .get(server.url("/-/healthy"))
        .send()
        .expect("healthy");
    assert_eq!(r.status().as_u16(), 200);
    server.stop();
}
