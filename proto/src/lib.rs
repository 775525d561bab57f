//! cairn-proto: the protobuf messages Cairn speaks, and their Rust types.
//!
//! The `.proto` files under `proto/proto/` are written by us from the
//! published specifications; `build.rs` generates the Rust types with
//! prost (protoc comes from the `protoc-bin-vendored` crate, nothing to
//! install). Only cairn-server (and tests and benches that build payloads)
//! depend on this crate: the engine and the query crate know no wire format.
//!
//! | module | package | used for |
//! |---|---|---|
//! | [`prometheus`] | `prometheus` | remote-write 1.0 (`WriteRequest`), remote-read (`ReadRequest`, `ReadResponse`, `ChunkedReadResponse`) |
//! | [`write_v2`] | `io.prometheus.write.v2` | remote-write 2.0 (`Request` with its symbol table) |
//! | [`opentelemetry::proto`] | `opentelemetry.proto.{common,resource,metrics,collector.metrics}.v1` | OTLP metrics: `ExportMetricsServiceRequest`, the `MetricsService` gRPC server stub; serde for OTLP/JSON |
//! | [`google::rpc`] | `google.rpc` | `Status`, the body of OTLP/HTTP failures |
//! | [`query::v1`] | `cairn.query.v1` | Cairn's gRPC query service: `QueryService` server stub and client |
//!
//! Remote-write bodies are these messages encoded with [`prost::Message`]
//! and then compressed with snappy's *block* format; this crate does only
//! the protobuf half.

/// `prost`, re-exported so that users encode and decode with the very
/// version the types were generated for.
pub use prost;

/// Package `prometheus`: remote-write 1.0 and remote-read.
#[allow(clippy::all, missing_docs)]
pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Package `io.prometheus.write.v2`: remote-write 2.0.
#[allow(clippy::all, missing_docs)]
pub mod write_v2 {
    include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
}

/// OpenTelemetry's OTLP messages (metrics only), in the module tree of
/// their protobuf packages so that the generated cross-references resolve.
#[allow(clippy::all, missing_docs)]
pub mod opentelemetry {
    pub mod proto {
        pub mod common {
            pub mod v1 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.common.v1.rs"
                ));
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.common.v1.serde.rs"
                ));
            }
        }
        pub mod resource {
            pub mod v1 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.resource.v1.rs"
                ));
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.resource.v1.serde.rs"
                ));
            }
        }
        pub mod metrics {
            pub mod v1 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.metrics.v1.rs"
                ));
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.metrics.v1.serde.rs"
                ));
            }
        }
        pub mod collector {
            pub mod metrics {
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/opentelemetry.proto.collector.metrics.v1.rs"
                    ));
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/opentelemetry.proto.collector.metrics.v1.serde.rs"
                    ));
                }
            }
        }
    }
}

/// `google.rpc.Status` (without `details`), for OTLP/HTTP error bodies.
#[allow(clippy::all, missing_docs)]
pub mod google {
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        include!(concat!(env!("OUT_DIR"), "/google.rpc.serde.rs"));
    }
}

/// Package `cairn.query.v1`: Cairn's gRPC query service (the public
/// contract is `proto/cairn/query/v1/query.proto`).
#[allow(clippy::all, missing_docs)]
pub mod query {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/cairn.query.v1.rs"));
    }
}

/// The encoded `FileDescriptorSet` of every message and service of this
/// crate, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

pub mod codec;

/// `pbjson`, re-exported for the generated serde code's users.
pub use pbjson;
/// `tonic`, re-exported so the server uses the version the stubs need.
pub use tonic;

/// The `Content-Type` a remote-write 1.0 sender uses (also accepted with
/// `;proto=prometheus.WriteRequest`).
pub const CONTENT_TYPE_WRITE_V1: &str = "application/x-protobuf";
/// The `proto=` parameter value naming the 1.0 message.
pub const PROTO_WRITE_V1: &str = "prometheus.WriteRequest";
/// The `proto=` parameter value naming the 2.0 message.
pub const PROTO_WRITE_V2: &str = "io.prometheus.write.v2.Request";

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn v1_request() -> prometheus::WriteRequest {
        prometheus::WriteRequest {
            timeseries: vec![prometheus::TimeSeries {
                labels: vec![
                    prometheus::Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    prometheus::Label {
                        name: "job".into(),
                        value: "node".into(),
                    },
                ],
                samples: vec![prometheus::Sample {
                    value: 1.5,
                    timestamp: 1_700_000_000_123,
                }],
                ..Default::default()
            }],
            metadata: vec![prometheus::MetricMetadata {
                r#type: prometheus::metric_metadata::MetricType::Gauge as i32,
                metric_family_name: "up".into(),
                help: "1 if the target is up".into(),
                unit: String::new(),
            }],
        }
    }

    #[test]
    fn v1_write_request_round_trips() {
        let req = v1_request();
        let bytes = req.encode_to_vec();
        let back = prometheus::WriteRequest::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(back, req);
    }

    /// The bytes of a hand-encoded WriteRequest pin the field numbers: a
    /// renumbered field would decode differently.
    #[test]
    fn v1_field_numbers_match_the_wire_format() {
        // timeseries(1) { labels(1) { name(1)="a" value(2)="b" }
        //                 samples(2) { value(1)=1.0 timestamp(2)=5 } }
        let sample = [0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x05];
        let label = [0x0a, 0x01, b'a', 0x12, 0x01, b'b'];
        let mut ts = vec![0x0a, label.len() as u8];
        ts.extend_from_slice(&label);
        ts.push(0x12);
        ts.push(sample.len() as u8);
        ts.extend_from_slice(&sample);
        let mut body = vec![0x0a, ts.len() as u8];
        body.extend_from_slice(&ts);

        let req = prometheus::WriteRequest::decode(body.as_slice()).expect("decodes");
        assert_eq!(req.timeseries.len(), 1);
        let s = &req.timeseries[0];
        assert_eq!(
            (s.labels[0].name.as_str(), s.labels[0].value.as_str()),
            ("a", "b")
        );
        assert_eq!(s.samples[0].value, 1.0);
        assert_eq!(s.samples[0].timestamp, 5);
    }

    #[test]
    fn v2_request_round_trips_and_a_v1_body_decodes_empty() {
        let req = write_v2::Request {
            symbols: vec!["".into(), "__name__".into(), "up".into(), "help".into()],
            timeseries: vec![write_v2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![write_v2::Sample {
                    value: 2.0,
                    timestamp: 10,
                    start_timestamp: 3,
                }],
                metadata: Some(write_v2::Metadata {
                    r#type: write_v2::metadata::MetricType::Counter as i32,
                    help_ref: 3,
                    unit_ref: 0,
                }),
                ..Default::default()
            }],
        };
        let back = write_v2::Request::decode(req.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(back, req);

        // Fields 1..3 are reserved in v2, so a v1 body yields an empty v2
        // request: the reason receivers must dispatch on Content-Type.
        let v1 = v1_request().encode_to_vec();
        let as_v2 = write_v2::Request::decode(v1.as_slice()).expect("decodes");
        assert!(as_v2.symbols.is_empty() && as_v2.timeseries.is_empty());
    }

    #[test]
    fn read_request_round_trips() {
        let req = prometheus::ReadRequest {
            queries: vec![prometheus::Query {
                start_timestamp_ms: 1,
                end_timestamp_ms: 2,
                matchers: vec![prometheus::LabelMatcher {
                    r#type: prometheus::label_matcher::Type::Re as i32,
                    name: "job".into(),
                    value: "n.*".into(),
                }],
                hints: None,
            }],
            accepted_response_types: vec![
                prometheus::read_request::ResponseType::StreamedXorChunks as i32,
            ],
        };
        let back =
            prometheus::ReadRequest::decode(req.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(back, req);
    }

    /// OTLP/JSON through the pbjson-generated serde: camelCase keys,
    /// 64-bit integers as strings or numbers, enums as names or numbers,
    /// unknown fields ignored; and the protobuf field numbers of a data point.
    #[test]
    fn otlp_json_and_field_numbers() {
        use opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry::proto::metrics::v1::{metric::Data, number_data_point::Value};
        let json = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
            {"name":"a","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA","isMonotonic":true,
              "dataPoints":[{"timeUnixNano":"1700000000000000001","asInt":"-5","flags":1,"unknownKey":[1]}]}},
            {"name":"b","sum":{"aggregationTemporality":2,"dataPoints":[{"timeUnixNano":17,"asDouble":0.5}]}}
        ]}]}]}"#;
        let req: ExportMetricsServiceRequest = serde_json::from_str(json).expect("decodes");
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let Some(Data::Sum(a)) = &metrics[0].data else {
            panic!("a is a sum: {metrics:?}");
        };
        assert_eq!(a.aggregation_temporality, 1);
        assert_eq!(a.data_points[0].time_unix_nano, 1_700_000_000_000_000_001);
        assert_eq!(a.data_points[0].value, Some(Value::AsInt(-5)));
        assert_eq!(a.data_points[0].flags, 1);
        let Some(Data::Sum(b)) = &metrics[1].data else {
            panic!("b is a sum: {metrics:?}");
        };
        assert_eq!(b.aggregation_temporality, 2);
        assert_eq!(b.data_points[0].time_unix_nano, 17);

        // NumberDataPoint: time_unix_nano is fixed64 field 3, as_double
        // double field 4, flags varint field 8.
        let p = opentelemetry::proto::metrics::v1::NumberDataPoint::decode(
            &[
                0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x40, 1,
            ][..],
        )
        .expect("decodes");
        assert_eq!(
            (p.time_unix_nano, p.value, p.flags),
            (1, Some(Value::AsDouble(1.0)), 1)
        );
    }
}
