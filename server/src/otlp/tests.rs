//! Table-driven tests of the OTLP -> Prometheus mapping: each case is a
//! request and the series lines (`labels @t value`) it must produce, plus
//! the data points it must refuse.

use cairn_engine::is_stale_nan;
use cairn_proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use cairn_proto::opentelemetry::proto::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use cairn_proto::opentelemetry::proto::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, metric::Data, number_data_point, summary_data_point::ValueAtQuantile,
};
use cairn_proto::opentelemetry::proto::resource::v1::Resource;

use super::streams::Streams;
use super::translate::{Translated, Translator, ns_to_ms};
use super::{OtlpConfig, TranslationStrategy};

const MS: u64 = 1_000_000;
/// A base time (ms) well inside the accepted range.
const T0: u64 = 1_700_000_000_000;
const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;
const DELTA: i32 = AggregationTemporality::Delta as i32;

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(s(v)),
    }
}

fn kv_any(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
    }
}

/// The resource most cases use: job `shop/api`, instance `i-1`, one other
/// attribute.
fn service() -> Vec<KeyValue> {
    vec![
        kv("service.name", "api"),
        kv("service.namespace", "shop"),
        kv("service.instance.id", "i-1"),
        kv("host.name", "h1"),
    ]
}

fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    version: "1.2".into(),
                    attributes: vec![kv("team", "ml")],
                    dropped_attributes_count: 0,
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        description: format!("about {name}"),
        unit: unit.into(),
        data: Some(data),
        metadata: vec![],
    }
}

/// A number point at `T0 + dt_ms`, started at `T0 - 1000 ms`.
fn np(attrs: Vec<KeyValue>, dt_ms: u64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: (T0 - 1000) * MS,
        time_unix_nano: (T0 + dt_ms) * MS,
        value: Some(number_data_point::Value::AsDouble(v)),
        exemplars: vec![],
        flags: 0,
    }
}

fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    metric(
        name,
        unit,
        Data::Gauge(Gauge {
            data_points: points,
        }),
    )
}

fn sum(name: &str, unit: &str, mono: bool, temp: i32, points: Vec<NumberDataPoint>) -> Metric {
    metric(
        name,
        unit,
        Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temp,
            is_monotonic: mono,
        }),
    )
}

fn hp(dt_ms: u64, bounds: &[f64], counts: &[u64], sum: Option<f64>) -> HistogramDataPoint {
    HistogramDataPoint {
        attributes: vec![kv("route", "/a")],
        start_time_unix_nano: (T0 - 1000) * MS,
        time_unix_nano: (T0 + dt_ms) * MS,
        count: counts.iter().sum(),
        sum,
        bucket_counts: counts.to_vec(),
        explicit_bounds: bounds.to_vec(),
        ..Default::default()
    }
}

fn hist(name: &str, unit: &str, temp: i32, points: Vec<HistogramDataPoint>) -> Metric {
    metric(
        name,
        unit,
        Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: temp,
        }),
    )
}

/// Renders the output as sorted `labels @t value` lines (`stale` for the
/// stale marker), target_info included.
fn render(out: &Translated) -> Vec<String> {
    let mut lines = Vec::new();
    for s in &out.series {
        for smp in &s.samples {
            let v = if is_stale_nan(smp.v) {
                "stale".to_string()
            } else {
                format!("{}", smp.v)
            };
            lines.push(format!("{} @{} {}", s.labels, smp.t - T0 as i64, v));
        }
    }
    lines.sort();
    lines
}

fn translate_with(
    config: &OtlpConfig,
    streams: &Streams,
    req: &ExportMetricsServiceRequest,
) -> Translated {
    Translator {
        config,
        streams,
        max_t: (T0 + 600_000) as i64,
        now_ms: T0 as i64,
    }
    .translate(req)
}

fn no_target_info() -> OtlpConfig {
    OtlpConfig {
        target_info: false,
        ..Default::default()
    }
}

/// One case: config, request, expected lines (sorted by the check), and
/// expected rejected points.
struct Case {
    name: &'static str,
    config: OtlpConfig,
    req: ExportMetricsServiceRequest,
    want: Vec<&'static str>,
    rejected: u64,
}

fn check(cases: Vec<Case>) {
    for c in cases {
        let streams = Streams::new(1000, 300_000);
        let out = translate_with(&c.config, &streams, &c.req);
        let mut want: Vec<String> = c.want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(render(&out), want, "case {:?}", c.name);
        assert_eq!(
            out.rejected.points,
            c.rejected,
            "case {:?}: rejected; message {}",
            c.name,
            out.rejected.message()
        );
    }
}

#[test]
fn metric_types_map_to_prometheus_types() {
    let cfg = no_target_info;
    check(vec![
        Case {
            name: "gauge",
            config: cfg(),
            req: request(
                service(),
                vec![gauge(
                    "gpu.utilization",
                    "1",
                    vec![np(vec![kv("gpu", "0")], 0, 0.5)],
                )],
            ),
            want: vec![r#"gpu_utilization_ratio{gpu="0", instance="i-1", job="shop/api"} @0 0.5"#],
            rejected: 0,
        },
        Case {
            name: "monotonic cumulative sum is a counter",
            config: cfg(),
            req: request(
                service(),
                vec![sum(
                    "http.requests",
                    "{request}",
                    true,
                    CUMULATIVE,
                    vec![np(vec![], 0, 7.0)],
                )],
            ),
            want: vec![r#"http_requests_total{instance="i-1", job="shop/api"} @0 7"#],
            rejected: 0,
        },
        Case {
            name: "non-monotonic sum is a gauge",
            config: cfg(),
            req: request(
                service(),
                vec![sum(
                    "queue.depth",
                    "{item}",
                    false,
                    CUMULATIVE,
                    vec![np(vec![], 0, -3.0)],
                )],
            ),
            want: vec![r#"queue_depth{instance="i-1", job="shop/api"} @0 -3"#],
            rejected: 0,
        },
        Case {
            name: "integer values",
            config: cfg(),
            req: request(
                service(),
                vec![gauge(
                    "g",
                    "",
                    vec![NumberDataPoint {
                        value: Some(number_data_point::Value::AsInt(-42)),
                        ..np(vec![], 0, 0.0)
                    }],
                )],
            ),
            want: vec![r#"g{instance="i-1", job="shop/api"} @0 -42"#],
            rejected: 0,
        },
        Case {
            name: "explicit-bucket histogram: cumulative buckets, +Inf, sum, count",
            config: cfg(),
            req: request(
                service(),
                vec![hist(
                    "http.server.request.duration",
                    "s",
                    CUMULATIVE,
                    vec![hp(0, &[0.1, 0.5], &[2, 3, 1], Some(1.5))],
                )],
            ),
            want: vec![
                r#"http_server_request_duration_seconds_bucket{instance="i-1", job="shop/api", le="0.1", route="/a"} @0 2"#,
                r#"http_server_request_duration_seconds_bucket{instance="i-1", job="shop/api", le="0.5", route="/a"} @0 5"#,
                r#"http_server_request_duration_seconds_bucket{instance="i-1", job="shop/api", le="+Inf", route="/a"} @0 6"#,
                r#"http_server_request_duration_seconds_sum{instance="i-1", job="shop/api", route="/a"} @0 1.5"#,
                r#"http_server_request_duration_seconds_count{instance="i-1", job="shop/api", route="/a"} @0 6"#,
            ],
            rejected: 0,
        },
        Case {
            name: "histogram without sum and without buckets",
            config: cfg(),
            req: request(
                service(),
                vec![hist(
                    "h",
                    "",
                    CUMULATIVE,
                    vec![HistogramDataPoint {
                        count: 4,
                        ..hp(0, &[], &[], None)
                    }],
                )],
            ),
            want: vec![
                r#"h_bucket{instance="i-1", job="shop/api", le="+Inf", route="/a"} @0 4"#,
                r#"h_count{instance="i-1", job="shop/api", route="/a"} @0 4"#,
            ],
            rejected: 0,
        },
        Case {
            name: "summary: quantiles, sum, count",
            config: cfg(),
            req: request(
                service(),
                vec![metric(
                    "rpc.latency",
                    "ms",
                    Data::Summary(Summary {
                        data_points: vec![SummaryDataPoint {
                            attributes: vec![],
                            start_time_unix_nano: (T0 - 1000) * MS,
                            time_unix_nano: T0 * MS,
                            count: 10,
                            sum: 55.0,
                            quantile_values: vec![
                                ValueAtQuantile {
                                    quantile: 0.5,
                                    value: 4.0,
                                },
                                ValueAtQuantile {
                                    quantile: 0.99,
                                    value: 9.5,
                                },
                            ],
                            flags: 0,
                        }],
                    }),
                )],
            ),
            want: vec![
                r#"rpc_latency_milliseconds{instance="i-1", job="shop/api", quantile="0.5"} @0 4"#,
                r#"rpc_latency_milliseconds{instance="i-1", job="shop/api", quantile="0.99"} @0 9.5"#,
                r#"rpc_latency_milliseconds_sum{instance="i-1", job="shop/api"} @0 55"#,
                r#"rpc_latency_milliseconds_count{instance="i-1", job="shop/api"} @0 10"#,
            ],
            rejected: 0,
        },
        Case {
            name: "exponential histograms are refused, not dropped",
            config: cfg(),
            req: request(
                service(),
                vec![metric(
                    "e",
                    "",
                    Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![
                            ExponentialHistogramDataPoint {
                                time_unix_nano: T0 * MS,
                                ..Default::default()
                            };
                            3
                        ],
                        aggregation_temporality: CUMULATIVE,
                    }),
                )],
            ),
            want: vec![],
            rejected: 3,
        },
    ]);
}

#[test]
fn resources_scopes_and_attributes_become_labels() {
    check(vec![
        Case {
            name: "job without namespace; no instance",
            config: no_target_info(),
            req: request(
                vec![kv("service.name", "api")],
                vec![gauge("g", "", vec![np(vec![], 0, 1.0)])],
            ),
            want: vec![r#"g{job="api"} @0 1"#],
            rejected: 0,
        },
        Case {
            name: "target_info carries the other resource attributes, at first and last time",
            config: OtlpConfig::default(),
            req: request(
                service(),
                vec![gauge(
                    "g",
                    "",
                    vec![np(vec![], 0, 1.0), np(vec![kv("x", "y")], 30_000, 2.0)],
                )],
            ),
            want: vec![
                r#"g{instance="i-1", job="shop/api"} @0 1"#,
                r#"g{instance="i-1", job="shop/api", x="y"} @30000 2"#,
                r#"target_info{host_name="h1", instance="i-1", job="shop/api"} @0 1"#,
                r#"target_info{host_name="h1", instance="i-1", job="shop/api"} @30000 1"#,
            ],
            rejected: 0,
        },
        Case {
            name: "no target_info without other attributes or without service identity",
            config: OtlpConfig::default(),
            req: ExportMetricsServiceRequest {
                resource_metrics: [
                    request(
                        vec![kv("service.name", "a")],
                        vec![gauge("g", "", vec![np(vec![], 0, 1.0)])],
                    ),
                    request(
                        vec![kv("host.name", "h")],
                        vec![gauge("g", "", vec![np(vec![], 0, 2.0)])],
                    ),
                ]
                .into_iter()
                .flat_map(|r| r.resource_metrics)
                .collect(),
            },
            want: vec![r#"g{job="a"} @0 1"#, r#"g @0 2"#],
            rejected: 0,
        },
        Case {
            name: "keep_identifying_resource_attributes",
            config: OtlpConfig {
                keep_identifying_resource_attributes: true,
                ..Default::default()
            },
            req: request(
                vec![kv("service.name", "api"), kv("k8s.pod.name", "p")],
                vec![gauge("g", "", vec![np(vec![], 0, 1.0)])],
            ),
            want: vec![
                r#"g{job="api"} @0 1"#,
                r#"target_info{job="api", k8s_pod_name="p", service_name="api"} @0 1"#,
            ],
            rejected: 0,
        },
        Case {
            name: "promoted resource attributes, point attributes win",
            config: OtlpConfig {
                target_info: false,
                promote_resource_attributes: vec![
                    "host.name".into(),
                    "cloud.region".into(),
                    "deployment.environment".into(),
                ],
                ..Default::default()
            },
            req: request(
                [
                    service(),
                    vec![
                        kv("cloud.region", "eu"),
                        kv("deployment.environment", "prod"),
                    ],
                ]
                .concat(),
                vec![gauge(
                    "g",
                    "",
                    vec![np(vec![kv("cloud.region", "point-wins")], 0, 1.0)],
                )],
            ),
            want: vec![
                r#"g{cloud_region="point-wins", deployment_environment="prod", host_name="h1", instance="i-1", job="shop/api"} @0 1"#,
            ],
            rejected: 0,
        },
        Case {
            name: "scope labels when promoted; job and instance override attributes",
            config: OtlpConfig {
                target_info: false,
                promote_scope_metadata: true,
                ..Default::default()
            },
            req: request(
                service(),
                vec![gauge("g", "", vec![np(vec![kv("job", "mine")], 0, 1.0)])],
            ),
            want: vec![
                r#"g{instance="i-1", job="shop/api", otel_scope_name="lib", otel_scope_team="ml", otel_scope_version="1.2"} @0 1"#,
            ],
            rejected: 0,
        },
        Case {
            name: "attribute names sanitised, colliding ones joined with ; in key order",
            config: no_target_info(),
            req: request(
                vec![],
                vec![gauge(
                    "g",
                    "",
                    vec![np(
                        vec![kv("a.b", "2"), kv("a-b", "1"), kv("9x", "n"), kv("_p", "u")],
                        0,
                        1.0,
                    )],
                )],
            ),
            want: vec![r#"g{a_b="1;2", key_9x="n", key_p="u"} @0 1"#],
            rejected: 0,
        },
        Case {
            name: "non-string attribute values",
            config: no_target_info(),
            req: request(
                vec![],
                vec![gauge(
                    "g",
                    "",
                    vec![np(
                        vec![
                            kv_any("b", any_value::Value::BoolValue(true)),
                            kv_any("i", any_value::Value::IntValue(-7)),
                            kv_any("d", any_value::Value::DoubleValue(0.25)),
                            kv_any(
                                "arr",
                                any_value::Value::ArrayValue(ArrayValue {
                                    values: vec![s("x"), s("y")],
                                }),
                            ),
                            kv_any("bytes", any_value::Value::BytesValue(vec![1, 2, 3])),
                            kv("empty", ""),
                        ],
                        0,
                        1.0,
                    )],
                )],
            ),
            want: vec![r#"g{arr="[\"x\",\"y\"]", b="true", bytes="AQID", d="0.25", i="-7"} @0 1"#],
            rejected: 0,
        },
        Case {
            name: "UTF-8 names kept with NoUTF8EscapingWithSuffixes",
            config: OtlpConfig {
                target_info: false,
                translation_strategy: TranslationStrategy::NoUtf8EscapingWithSuffixes,
                ..Default::default()
            },
            req: request(
                vec![kv("service.name", "api")],
                vec![sum(
                    "http.requests",
                    "",
                    true,
                    CUMULATIVE,
                    vec![np(vec![kv("http.method", "GET")], 0, 1.0)],
                )],
            ),
            want: vec![r#"http.requests_total{http.method="GET", job="api"} @0 1"#],
            rejected: 0,
        },
    ]);
}

#[test]
fn timestamps_flags_and_bad_points() {
    let stale_point = |mut p: NumberDataPoint| {
        p.flags = 1;
        p
    };
    check(vec![
        Case {
            name: "ns to ms truncates",
            config: no_target_info(),
            req: request(
                vec![],
                vec![gauge(
                    "g",
                    "",
                    vec![NumberDataPoint {
                        time_unix_nano: T0 * MS + 999_999,
                        ..np(vec![], 0, 1.0)
                    }],
                )],
            ),
            want: vec!["g @0 1"],
            rejected: 0,
        },
        Case {
            name: "no recorded value is the stale marker, for histograms on every series",
            config: no_target_info(),
            req: request(
                vec![],
                vec![
                    gauge("g", "", vec![stale_point(np(vec![], 0, 5.0))]),
                    hist(
                        "h",
                        "",
                        CUMULATIVE,
                        vec![HistogramDataPoint {
                            flags: 1,
                            ..hp(0, &[1.0], &[0, 0], Some(0.0))
                        }],
                    ),
                ],
            ),
            want: vec![
                "g @0 stale",
                r#"h_bucket{le="1", route="/a"} @0 stale"#,
                r#"h_bucket{le="+Inf", route="/a"} @0 stale"#,
                r#"h_sum{route="/a"} @0 stale"#,
                r#"h_count{route="/a"} @0 stale"#,
            ],
            rejected: 0,
        },
        Case {
            name: "missing and future timestamps, bad buckets, bad names refused per point",
            config: no_target_info(),
            req: request(
                vec![],
                vec![
                    gauge(
                        "g",
                        "",
                        vec![
                            NumberDataPoint {
                                time_unix_nano: 0,
                                ..np(vec![], 0, 1.0)
                            },
                            np(vec![], 3_600_000, 1.0),
                            np(vec![], 1, 3.0),
                        ],
                    ),
                    hist("h", "", CUMULATIVE, vec![hp(0, &[1.0, 2.0], &[1, 1], None)]),
                    gauge("...", "", vec![np(vec![], 0, 1.0)]),
                    gauge("g2", "", vec![np(vec![kv("", "v")], 0, 1.0)]),
                ],
            ),
            want: vec!["g @1 3"],
            rejected: 5,
        },
        Case {
            name: "limits on labels",
            config: OtlpConfig {
                target_info: false,
                max_labels_per_series: 3,
                max_label_value_bytes: 4,
                ..Default::default()
            },
            req: request(
                vec![],
                vec![gauge(
                    "g",
                    "",
                    vec![
                        np(vec![kv("a", "1"), kv("b", "2")], 0, 1.0),
                        np(vec![kv("a", "1"), kv("b", "2"), kv("c", "3")], 0, 1.0),
                        np(vec![kv("a", "12345")], 0, 1.0),
                    ],
                )],
            ),
            want: vec![r#"g{a="1", b="2"} @0 1"#],
            rejected: 2,
        },
        Case {
            name: "delta refused when conversion is off",
            config: OtlpConfig {
                target_info: false,
                convert_delta_to_cumulative: false,
                ..Default::default()
            },
            req: request(
                vec![],
                vec![sum(
                    "c",
                    "",
                    true,
                    DELTA,
                    vec![np(vec![], 0, 1.0), np(vec![], 10, 1.0)],
                )],
            ),
            want: vec![],
            rejected: 2,
        },
        Case {
            name: "unspecified temporality refused",
            config: no_target_info(),
            req: request(
                vec![],
                vec![sum("c", "", true, 0, vec![np(vec![], 0, 1.0)])],
            ),
            want: vec![],
            rejected: 1,
        },
    ]);
}

#[test]
fn a_metric_without_data_is_reported_not_dropped_silently() {
    let streams = Streams::new(10, 1000);
    let mut m = gauge("nodata", "", vec![]);
    m.data = None;
    let out = translate_with(
        &no_target_info(),
        &streams,
        &request(vec![], vec![m, gauge("empty", "", vec![])]),
    );
    assert!(out.series.is_empty());
    let msg = out.rejected.message();
    assert!(msg.contains("\"nodata\" has no data"), "{msg}");
    assert!(msg.contains("\"empty\" has no data points"), "{msg}");
}

#[test]
fn delta_sums_and_histograms_become_cumulative_across_requests() {
    let cfg = no_target_info();
    let streams = Streams::new(100, 300_000);
    let delta_point = |start: u64, end: u64, v: f64| NumberDataPoint {
        start_time_unix_nano: (T0 + start) * MS,
        time_unix_nano: (T0 + end) * MS,
        ..np(vec![], 0, v)
    };
    let dh = |start: u64, end: u64, counts: &[u64], sum: f64| HistogramDataPoint {
        start_time_unix_nano: (T0 + start) * MS,
        time_unix_nano: (T0 + end) * MS,
        ..hp(0, &[1.0], counts, Some(sum))
    };
    let req = |p: NumberDataPoint, h: HistogramDataPoint| {
        request(
            vec![],
            vec![
                sum("c", "", true, DELTA, vec![p]),
                hist("h", "", DELTA, vec![h]),
            ],
        )
    };
    let a = translate_with(
        &cfg,
        &streams,
        &req(delta_point(0, 10, 3.0), dh(0, 10, &[1, 2], 4.0)),
    );
    let b = translate_with(
        &cfg,
        &streams,
        &req(delta_point(10, 20, 2.0), dh(10, 20, &[0, 1], 5.0)),
    );
    // a replay of the first request is out of order for the stream
    let c = translate_with(
        &cfg,
        &streams,
        &req(delta_point(0, 10, 3.0), dh(0, 10, &[1, 2], 4.0)),
    );
    assert_eq!(
        render(&a),
        vec![
            "c_total @10 3",
            r#"h_bucket{le="+Inf", route="/a"} @10 3"#,
            r#"h_bucket{le="1", route="/a"} @10 1"#,
            r#"h_count{route="/a"} @10 3"#,
            r#"h_sum{route="/a"} @10 4"#,
        ]
    );
    assert_eq!(
        render(&b),
        vec![
            "c_total @20 5",
            r#"h_bucket{le="+Inf", route="/a"} @20 4"#,
            r#"h_bucket{le="1", route="/a"} @20 1"#,
            r#"h_count{route="/a"} @20 4"#,
            r#"h_sum{route="/a"} @20 9"#,
        ]
    );
    assert!(c.series.is_empty());
    assert_eq!(c.rejected.points, 2);
    assert!(
        c.rejected.message().contains("out of order"),
        "{}",
        c.rejected.message()
    );
}

#[test]
fn a_later_start_time_writes_a_zero_before_the_restarted_counter() {
    let cfg = no_target_info();
    let streams = Streams::new(100, 300_000);
    let point = |start: u64, end: u64, v: f64| NumberDataPoint {
        start_time_unix_nano: (T0 + start) * MS,
        time_unix_nano: (T0 + end) * MS,
        ..np(vec![], 0, v)
    };
    let req = |p| request(vec![], vec![sum("c", "", true, CUMULATIVE, vec![p])]);
    let first = translate_with(&cfg, &streams, &req(point(0, 10_000, 100.0)));
    let again = translate_with(&cfg, &streams, &req(point(0, 20_000, 150.0)));
    let restarted = translate_with(&cfg, &streams, &req(point(25_000, 30_000, 400.0)));
    assert_eq!(render(&first), vec!["c_total @10000 100"]);
    assert_eq!(render(&again), vec!["c_total @20000 150"]);
    assert_eq!(
        render(&restarted),
        vec!["c_total @25000 0", "c_total @30000 400"]
    );
}

#[test]
fn metadata_is_recorded_per_family() {
    let streams = Streams::new(10, 1000);
    let out = translate_with(
        &OtlpConfig::default(),
        &streams,
        &request(
            service(),
            vec![
                hist(
                    "http.server.request.duration",
                    "s",
                    CUMULATIVE,
                    vec![hp(0, &[1.0], &[1, 1], Some(1.0))],
                ),
                sum("net.io", "By/s", true, CUMULATIVE, vec![np(vec![], 0, 1.0)]),
                sum(
                    "active",
                    "{req}",
                    false,
                    CUMULATIVE,
                    vec![np(vec![], 0, 1.0)],
                ),
            ],
        ),
    );
    let md: Vec<(String, &str, String, String)> = out
        .metadata
        .iter()
        .map(|(n, m)| (n.clone(), m.kind, m.unit.clone(), m.help.clone()))
        .collect();
    assert_eq!(
        md,
        vec![
            ("active".into(), "gauge", "".into(), "about active".into()),
            (
                "http_server_request_duration_seconds".into(),
                "histogram",
                "seconds".into(),
                "about http.server.request.duration".into()
            ),
            (
                "net_io_bytes_per_second_total".into(),
                "counter",
                "bytes_per_second".into(),
                "about net.io".into()
            ),
            (
                "target_info".into(),
                "gauge",
                "".into(),
                "Target metadata".into()
            ),
        ]
    );
}

#[test]
fn ns_to_ms_table() {
    for (ns, ms) in [
        (0u64, 0i64),
        (999_999, 0),
        (1_000_000, 1),
        (1_700_000_000_123_456_789, 1_700_000_000_123),
    ] {
        assert_eq!(ns_to_ms(ns), ms, "{ns}");
    }
}
