//! The gRPC query service against the real binary: a Rust tonic client
//! gets the same series and the same values, bit for bit, as the HTTP API
//! for the same queries (instant, range streamed in batches, series, label
//! names and values); errors carry the documented status codes; and
//! `cairn query` / `series` / `labels` print the expected table, JSON and
//! CSV, and a bad expression's parse error with its position. The health
//! service, reflection and gzip work, and cancelled or expired queries
//! leave `cairn_queries_in_flight` at zero.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use cairn_proto::query::v1 as pb;
use cairn_proto::query::v1::query_service_client::QueryServiceClient;
use serde_json::Value;
use support::{Server, get_json};

use support::T0;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn server_with_data(dir: &std::path::Path) -> Server {
    support::server_with_query_data(dir)
}

async fn connect(server: &Server) -> QueryServiceClient<tonic::transport::Channel> {
    QueryServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .expect("connect")
}

fn label_map(labels: &[pb::Label]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

fn json_labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .expect("labels object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_string()))
        .collect()
}

/// `[1700000000.5, "1.25"]` as (ms, value bits).
fn json_point(p: &Value) -> (i64, u64) {
    let secs = p[0].as_f64().expect("timestamp");
    let v: f64 = p[1].as_str().expect("value").parse().expect("float");
    ((secs * 1000.0).round() as i64, v.to_bits())
}

fn http_data(server: &Server, path: &str) -> Value {
    let (status, body) = get_json(server, path);
    assert_eq!(status, 200, "{path}: {body}");
    body["data"].clone()
}

fn enc(q: &str) -> String {
    form_urlencode(q)
}

fn form_urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

type Points = Vec<(BTreeMap<String, String>, Vec<(i64, u64)>)>;

#[test]
fn grpc_results_equal_the_http_api_bit_for_bit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_data(dir.path());
    let rt = runtime();
    let mut client = rt.block_on(connect(&server));
    let t = T0 + 10 * 60_000;

    // Instant queries: vectors and a scalar.
    for q in [
        "infer_requests_total",
        "rate(infer_requests_total[5m])",
        "gpu_util * 3 / 7",
        "sum by (model) (infer_requests_total) / 3",
    ] {
        let resp = rt
            .block_on(client.instant_query(pb::InstantQueryRequest {
                query: q.into(),
                time_ms: Some(t),
                ..Default::default()
            }))
            .unwrap_or_else(|s| panic!("{q}: {s}"))
            .into_inner();
        let Some(pb::instant_query_response::Result::Vector(v)) = resp.result else {
            panic!("{q}: not a vector: {:?}", resp.result);
        };
        let got: Points = v
            .samples
            .iter()
            .map(|s| {
                (
                    label_map(&s.labels),
                    vec![(s.timestamp_ms, s.value.to_bits())],
                )
            })
            .collect();
        let data = http_data(
            &server,
            &format!("/api/v1/query?query={}&time={}", enc(q), t as f64 / 1000.0),
        );
        let want: Points = data["result"]
            .as_array()
            .expect("result")
            .iter()
            .map(|r| (json_labels(&r["metric"]), vec![json_point(&r["value"])]))
            .collect();
        assert!(!want.is_empty(), "{q}: empty result");
        assert_eq!(got, want, "{q}");
        let stats = resp.stats.expect("stats");
        assert!(
            stats.samples_read > 0 && stats.series_read > 0,
            "{q}: {stats:?}"
        );
    }
    let resp = rt
        .block_on(client.instant_query(pb::InstantQueryRequest {
            query: "1 / 3".into(),
            time_ms: Some(t),
            ..Default::default()
        }))
        .expect("scalar")
        .into_inner();
    assert_eq!(
        resp.result,
        Some(pb::instant_query_response::Result::Scalar(pb::Scalar {
            timestamp_ms: t,
            value: 1.0 / 3.0
        }))
    );

    // Range queries, streamed one series per message.
    for q in [
        "rate(infer_requests_total[2m])",
        "gpu_util / 9",
        "load * 1.1",
    ] {
        let (start, end, step) = (T0, T0 + 19 * 60_000, 30_000);
        let mut stream = rt
            .block_on(client.range_query(pb::RangeQueryRequest {
                query: q.into(),
                start_ms: start,
                end_ms: end,
                step_ms: step,
                max_series_per_message: 1,
                ..Default::default()
            }))
            .unwrap_or_else(|s| panic!("{q}: {s}"))
            .into_inner();
        let mut got: Points = Vec::new();
        let mut summary = None;
        let mut messages = 0;
        while let Some(msg) = rt.block_on(stream.message()).expect("message") {
            messages += 1;
            assert!(summary.is_none(), "{q}: a message after the summary");
            assert!(msg.series.len() <= 1, "{q}: batch over the bound");
            for s in msg.series {
                let pts = s
                    .samples
                    .iter()
                    .map(|p| (p.timestamp_ms, p.value.to_bits()))
                    .collect();
                got.push((label_map(&s.labels), pts));
            }
            summary = msg.summary;
        }
        let summary = summary.expect("summary last");
        assert_eq!(summary.series_count as usize, got.len());
        assert_eq!(messages, got.len() + 1, "{q}: one series per message");
        let data = http_data(
            &server,
            &format!(
                "/api/v1/query_range?query={}&start={}&end={}&step={}",
                enc(q),
                start / 1000,
                end / 1000,
                step / 1000
            ),
        );
        let want: Points = data["result"]
            .as_array()
            .expect("result")
            .iter()
            .map(|r| {
                (
                    json_labels(&r["metric"]),
                    r["values"]
                        .as_array()
                        .expect("values")
                        .iter()
                        .map(json_point)
                        .collect(),
                )
            })
            .collect();
        assert!(!want.is_empty(), "{q}: empty result");
        assert_eq!(got, want, "{q}");
    }

    // Series, label names, label values.
    let resp = rt
        .block_on(client.series(pb::SeriesRequest {
            matchers: vec!["infer_requests_total".into(), "gpu_util".into()],
            ..Default::default()
        }))
        .expect("series")
        .into_inner();
    let got: Vec<BTreeMap<String, String>> =
        resp.series.iter().map(|s| label_map(&s.labels)).collect();
    let data = http_data(
        &server,
        "/api/v1/series?match[]=infer_requests_total&match[]=gpu_util",
    );
    let want: Vec<BTreeMap<String, String>> = data
        .as_array()
        .expect("series")
        .iter()
        .map(json_labels)
        .collect();
    assert_eq!(got.len(), 3);
    assert_eq!(got, want);

    let names = rt
        .block_on(client.label_names(pb::LabelNamesRequest::default()))
        .expect("labels")
        .into_inner()
        .names;
    assert_eq!(
        serde_json::to_value(&names).expect("json"),
        http_data(&server, "/api/v1/labels")
    );
    assert_eq!(names, ["__name__", "gpu", "i", "model", "route"]);
    let values = rt
        .block_on(client.label_values(pb::LabelValuesRequest {
            name: "model".into(),
            ..Default::default()
        }))
        .expect("values")
        .into_inner();
    assert_eq!(values.values, ["llama", "mistral"]);
    assert_eq!(
        serde_json::to_value(&values.values).expect("json"),
        http_data(&server, "/api/v1/label/model/values")
    );

    // A limit cuts with the warning.
    let cut = rt
        .block_on(client.label_values(pb::LabelValuesRequest {
            name: "i".into(),
            limit: 2,
            ..Default::default()
        }))
        .expect("values")
        .into_inner();
    assert_eq!(cut.values, ["0", "1"]);
    assert_eq!(cut.warnings, ["results truncated due to limit"]);
}

/// A tonic client that sends `grpc-timeout` but does not enforce it
/// itself (tonic's own channel gives up first, with CANCELLED): hyper's
/// HTTP/2 client under the generated stub.
fn raw_client(
    server: &Server,
) -> QueryServiceClient<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        tonic::body::Body,
    >,
> {
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let origin = format!("http://{}", server.grpc).parse().expect("uri");
    QueryServiceClient::with_origin(http, origin)
}

#[test]
fn errors_have_the_documented_status_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_data(dir.path());
    let rt = runtime();
    let mut client = rt.block_on(connect(&server));

    // A syntax error: INVALID_ARGUMENT with the position.
    let err = rt
        .block_on(client.instant_query(pb::InstantQueryRequest {
            query: "sum(rate(x[5m])".into(),
            ..Default::default()
        }))
        .expect_err("bad query");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("1:16: parse error"),
        "{}",
        err.message()
    );

    // A bad selector and an end before the start: INVALID_ARGUMENT.
    let err = rt
        .block_on(client.series(pb::SeriesRequest {
            matchers: vec!["{".into()],
            ..Default::default()
        }))
        .expect_err("bad selector");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let err = rt
        .block_on(client.range_query(pb::RangeQueryRequest {
            query: "up".into(),
            start_ms: 10,
            end_ms: 5,
            step_ms: 1,
            ..Default::default()
        }))
        .expect_err("end before start");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    // Over a limit: too many points per series.
    let err = rt
        .block_on(client.range_query(pb::RangeQueryRequest {
            query: "up".into(),
            start_ms: 0,
            end_ms: 100_000_000,
            step_ms: 1,
            ..Default::default()
        }))
        .expect_err("too many points");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("maximum resolution"), "{err:?}");

    // A 1 ms deadline on real work: DEADLINE_EXCEEDED.
    let mut raw = raw_client(&server);
    let mut req = tonic::Request::new(pb::RangeQueryRequest {
        query: "sum by (i) (rate(load[5m])) * on (i) group_left count by (i) (load)".into(),
        start_ms: T0,
        end_ms: T0 + 20 * 60_000,
        step_ms: 1_000,
        ..Default::default()
    });
    req.set_timeout(std::time::Duration::from_millis(1));
    let err = rt
        .block_on(raw.range_query(req))
        .expect_err("deadline exceeded");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");

    // The server still answers (the cancelled query released its slot).
    let ok = rt
        .block_on(client.instant_query(pb::InstantQueryRequest {
            query: "count(load)".into(),
            time_ms: Some(T0 + 60_000),
            ..Default::default()
        }))
        .expect("after the deadline")
        .into_inner();
    let Some(pb::instant_query_response::Result::Vector(v)) = ok.result else {
        panic!("not a vector");
    };
    assert_eq!(v.samples[0].value, 150.0);
}

/// `cairn_queries_in_flight` from `/metrics`.
fn in_flight(server: &Server) -> f64 {
    let text = support::client()
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix("cairn_queries_in_flight "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no cairn_queries_in_flight in:\n{text}"))
}

/// Waits (bounded) until no query is in flight.
fn wait_no_query_in_flight(server: &Server) {
    for _ in 0..400 {
        if in_flight(server) == 0.0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("queries still in flight: {}", in_flight(server));
}

#[test]
fn health_reflection_gzip_and_released_queries() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_data(dir.path());
    let rt = runtime();
    let channel = rt
        .block_on(
            tonic::transport::Channel::from_shared(format!("http://{}", server.grpc))
                .expect("uri")
                .connect(),
        )
        .expect("connect");

    // Health: the query service (and the server as a whole) is serving.
    let mut health = HealthClient::new(channel.clone());
    for service in ["cairn.query.v1.QueryService", ""] {
        let mut status = ServingStatus::Unknown;
        // Serving once storage is open; the server is ready already, the
        // health watcher polls every 100 ms.
        for _ in 0..100 {
            status = rt
                .block_on(health.check(HealthCheckRequest {
                    service: service.into(),
                }))
                .expect("check")
                .into_inner()
                .status();
            if status == ServingStatus::Serving {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }

    // Reflection lists the services.
    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = rt
        .block_on(refl.server_reflection_info(tokio_stream_once(req)))
        .expect("reflection")
        .into_inner();
    let msg = rt
        .block_on(stream.message())
        .expect("message")
        .expect("a response");
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("not a service list: {msg:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"cairn.query.v1.QueryService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );

    // gzip both ways.
    let mut gz = rt
        .block_on(connect(&server))
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let names = rt
        .block_on(gz.label_names(pb::LabelNamesRequest::default()))
        .expect("gzip")
        .into_inner()
        .names;
    assert_eq!(names.len(), 5);

    // A client that stops reading mid-stream, and one whose deadline
    // passes: the server keeps answering and no query stays in flight.
    let mut client = rt.block_on(connect(&server));
    let mut stream = rt
        .block_on(client.range_query(pb::RangeQueryRequest {
            query: "load".into(),
            start_ms: T0,
            end_ms: T0 + 19 * 60_000,
            step_ms: 15_000,
            max_series_per_message: 1,
            ..Default::default()
        }))
        .expect("range")
        .into_inner();
    let first = rt
        .block_on(stream.message())
        .expect("message")
        .expect("a batch");
    assert_eq!(first.series.len(), 1);
    drop(stream);
    let mut raw = raw_client(&server);
    let mut req = tonic::Request::new(pb::InstantQueryRequest {
        query: "count_values by (i) (\"v\", load) * on (i) group_left sum by (i) (load)".into(),
        time_ms: Some(T0 + 60_000),
        ..Default::default()
    });
    req.set_timeout(std::time::Duration::from_millis(1));
    let err = rt.block_on(raw.instant_query(req)).expect_err("deadline");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    wait_no_query_in_flight(&server);
    let again = rt
        .block_on(client.label_values(pb::LabelValuesRequest {
            name: "gpu".into(),
            ..Default::default()
        }))
        .expect("still serving")
        .into_inner();
    assert_eq!(again.values, ["0"]);

    // SIGTERM with gRPC client connections still open: a clean exit and
    // no more answers.
    let status = server.stop();
    assert!(status.success(), "{status:?}");
    let err = rt
        .block_on(client.label_names(pb::LabelNamesRequest::default()))
        .expect_err("server gone");
    assert_ne!(err.code(), tonic::Code::Ok, "{err:?}");
}

/// A query that runs for tens of seconds in a debug build while holding
/// little memory (as in tests/http_timeouts.rs): only cancellation ends
/// it early.
const SLOW_QUERY: &str = "count(quantile_over_time(0.5, rate(load[5m])[20m:1s]))";

/// A client that gives up on a range query while it is being evaluated
/// (its call future dropped: RST_STREAM CANCEL) stops the evaluation: the
/// query leaves `cairn_queries_in_flight` long before it would end.
#[test]
fn a_client_that_cancels_mid_evaluation_releases_the_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_data(dir.path());
    let grpc = server.grpc.clone();
    let impatient = std::thread::spawn(move || {
        let rt = runtime();
        rt.block_on(async move {
            let mut client = QueryServiceClient::connect(format!("http://{grpc}"))
                .await
                .expect("connect");
            let call = client.range_query(pb::RangeQueryRequest {
                query: SLOW_QUERY.into(),
                start_ms: T0,
                end_ms: T0 + 3_000_000,
                step_ms: 1_000,
                ..Default::default()
            });
            tokio::time::timeout(std::time::Duration::from_millis(1500), call)
                .await
                .is_err()
        })
    });
    // The query is running ...
    let mut running = false;
    for _ in 0..200 {
        if in_flight(&server) == 1.0 {
            running = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(running, "the query never showed in cairn_queries_in_flight");
    assert!(
        impatient.join().expect("client thread"),
        "the query finished before the client gave up"
    );
    // ... and stops once its client cancelled.
    wait_no_query_in_flight(&server);
}

/// SIGTERM while one client holds an idle connection it does not read
/// (its runtime is not driven, so it cannot answer the server's GOAWAY
/// and PING) and another is in the middle of a range stream: the stream
/// gets every message and its summary, and the server exits promptly
/// after it instead of waiting for the idle client (it waited a 5 s
/// grace period before).
#[test]
fn shutdown_finishes_streams_and_does_not_wait_for_idle_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_data(dir.path());
    let rt = runtime();
    let mut idle = rt.block_on(connect(&server));
    rt.block_on(idle.label_names(pb::LabelNamesRequest::default()))
        .expect("a first call");

    let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
    let (term_tx, term_rx) = std::sync::mpsc::channel::<()>();
    let grpc = server.grpc.clone();
    let streaming = std::thread::spawn(move || -> Result<(usize, u64), tonic::Status> {
        let rt = runtime();
        rt.block_on(async move {
            let mut client = QueryServiceClient::connect(format!("http://{grpc}"))
                .await
                .expect("connect");
            let mut stream = client
                .range_query(pb::RangeQueryRequest {
                    query: "load".into(),
                    start_ms: T0,
                    end_ms: T0 + 19 * 60_000,
                    step_ms: 15_000,
                    max_series_per_message: 1,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let mut series = 0;
            let first = stream.message().await?.expect("a first batch");
            series += first.series.len();
            first_tx.send(()).expect("main thread waits");
            term_rx
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("SIGTERM sent");
            // Shutdown is under way: the HTTP API stops first, then the
            // gRPC listener; this call is still in flight.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            loop {
                let Some(msg) = stream.message().await? else {
                    panic!("the stream ended without its summary");
                };
                series += msg.series.len();
                if let Some(summary) = msg.summary {
                    return Ok((series, summary.series_count));
                }
            }
        })
    });
    first_rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the stream started");
    let terminated = std::time::Instant::now();
    server.signal_term();
    term_tx.send(()).expect("stream thread waits");
    let (series, count) = streaming
        .join()
        .expect("stream thread")
        .expect("the stream in flight gets all its data");
    assert_eq!((series, count), (150, 150));
    let status = server.stop();
    let took = terminated.elapsed();
    assert!(status.success(), "{status:?}");
    // The stream held shutdown for about 300 ms; the idle connection
    // must not hold it for the old 5 s grace period.
    assert!(
        took < std::time::Duration::from_secs(3),
        "shutdown took {took:?} with an idle client connected"
    );
    let err = rt
        .block_on(idle.label_names(pb::LabelNamesRequest::default()))
        .expect_err("server gone");
    assert_ne!(err.code(), tonic::Code::Ok, "{err:?}");
}

/// A request stream of one message.
fn tokio_stream_once<T: Send + 'static>(msg: T) -> impl tonic::IntoStreamingRequest<Message = T> {
    futures_once(msg)
}

fn futures_once<T: Send + 'static>(msg: T) -> tokio_stream::Iter<std::vec::IntoIter<T>> {
    tokio_stream::iter(vec![msg])
}

/// Rows of an export as (labels, [(ms, value bits)]) per series.
type Exported = BTreeMap<Vec<(String, String)>, Vec<(i64, u64)>>;

#[test]
fn export_streams_the_raw_samples_as_arrow_ipc() {
    use arrow::array::{Array, Float64Array, StringArray, TimestampMillisecondArray};

    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_data(dir.path());
    let rt = runtime();
    let mut client = rt.block_on(connect(&server));
    let (start, end) = (T0, T0 + 20 * 60_000);
    let mut stream = rt
        .block_on(client.export(pb::ExportRequest {
            matchers: vec!["infer_requests_total".into(), "gpu_util".into()],
            start_ms: start,
            end_ms: end,
            max_rows_per_batch: 50,
        }))
        .expect("export")
        .into_inner();
    let mut bytes = Vec::new();
    let mut messages = 0;
    while let Some(m) = rt.block_on(stream.message()).expect("message") {
        bytes.extend_from_slice(&m.arrow_ipc);
        messages += 1;
    }
    // 240 rows: four full batches of 50 sent as they fill, then the last
    // 40 rows with the end-of-stream marker.
    assert_eq!(messages, 5);
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .expect("an Arrow IPC stream");
    let schema = reader.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["__name__", "gpu", "model", "route", "timestamp", "value"]
    );
    let label_names: Vec<String> = names[..4].iter().map(|n| n.to_string()).collect();
    let mut got = Exported::new();
    let mut batches = 0;
    for batch in reader {
        let batch = batch.expect("batch");
        batches += 1;
        assert!(batch.num_rows() <= 50);
        let labels: Vec<&StringArray> = (0..4)
            .map(|i| {
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("utf8 label column")
            })
            .collect();
        let ts = batch
            .column(4)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .expect("timestamp column");
        let vs = batch
            .column(5)
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("value column");
        for row in 0..batch.num_rows() {
            let key: Vec<(String, String)> = label_names
                .iter()
                .zip(&labels)
                .filter(|(_, col)| !col.is_null(row))
                .map(|(n, col)| (n.clone(), col.value(row).to_string()))
                .collect();
            got.entry(key)
                .or_default()
                .push((ts.value(row), vs.value(row).to_bits()));
        }
    }
    assert_eq!(batches, 5);
    let mut want = Exported::new();
    for name in ["infer_requests_total", "gpu_util"] {
        for (labels, samples) in support::read(&server, &[("__name__", name)], start, end) {
            want.insert(labels, samples);
        }
    }
    assert_eq!(want.len(), 3);
    assert_eq!(got, want);

    // No selector: INVALID_ARGUMENT.
    let err = rt
        .block_on(client.export(pb::ExportRequest::default()))
        .expect_err("no selector");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    wait_no_query_in_flight(&server);
}

/// Runs the `cairn` binary; returns (exit code, stdout, stderr).
fn cairn(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .expect("run cairn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_command_line_client_prints_tables_json_and_csv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_data(dir.path());
    let addr = server.grpc.as_str();
    let t = "2023-11-14T22:23:20Z"; // T0 + 10 min: point 40
    let q = "infer_requests_total";

    let (code, out, err) = cairn(&["query", q, "--time", t, "--server", addr]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "SERIES                                                VALUE  TIMESTAMP\n\
         infer_requests_total{model=\"llama\", route=\"/chat\"}    120.1  2023-11-14T22:23:20.000Z\n\
         infer_requests_total{model=\"mistral\", route=\"/chat\"}  200.1  2023-11-14T22:23:20.000Z\n"
    );

    let (code, out, err) = cairn(&[
        "query",
        q,
        "--time",
        "1700000600",
        "-o",
        "csv",
        "--server",
        addr,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "__name__,model,route,timestamp_ms,value\n\
         infer_requests_total,llama,/chat,1700000600000,120.1\n\
         infer_requests_total,mistral,/chat,1700000600000,200.1\n"
    );

    // JSON is the HTTP API's `data`, for instant and range queries.
    let (code, out, err) = cairn(&[
        "query",
        "gpu_util / 7",
        "--time",
        t,
        "-o",
        "json",
        "--server",
        addr,
    ]);
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(&out).expect("json");
    let want = http_data(
        &server,
        &format!(
            "/api/v1/query?query={}&time=1700000600",
            enc("gpu_util / 7")
        ),
    );
    assert_eq!(got, want);
    let (code, out, err) = cairn(&[
        "query",
        "rate(infer_requests_total[1m])",
        "--start",
        "1700000000",
        "--end",
        "2023-11-14T22:33:00Z",
        "--step",
        "1m",
        "-o",
        "json",
        "--server",
        addr,
    ]);
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(&out).expect("json");
    let want = http_data(
        &server,
        &format!(
            "/api/v1/query_range?query={}&start=1700000000&end=1700001180&step=60",
            enc("rate(infer_requests_total[1m])")
        ),
    );
    assert_eq!(got, want);
    assert_eq!(
        got["result"][0]["values"].as_array().map(Vec::len),
        Some(19)
    );

    // Series and labels.
    let (code, out, err) = cairn(&[
        "series",
        "infer_requests_total{model=\"llama\"}",
        "gpu_util",
        "--server",
        addr,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "gpu_util{gpu=\"0\"}\ninfer_requests_total{model=\"llama\", route=\"/chat\"}\n"
    );
    let (code, out, _) = cairn(&["labels", "--server", addr]);
    assert_eq!(
        (code, out.as_str()),
        (0, "__name__\ngpu\ni\nmodel\nroute\n")
    );
    let (code, out, _) = cairn(&["labels", "model", "-o", "json", "--server", addr]);
    assert_eq!((code, out.as_str()), (0, "[\"llama\",\"mistral\"]\n"));
    let (code, out, _) = cairn(&["labels", "route", "-o", "csv", "--server", addr]);
    assert_eq!((code, out.as_str()), (0, "value\n/chat\n"));

    // A bad expression: the parse error with its position, exit status 1.
    let (code, out, err) = cairn(&["query", "sum(rate(x[5m])", "--server", addr]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("1:16: parse error"), "{err}");
    assert!(
        err.contains("  sum(rate(x[5m])\n                 ^"),
        "{err}"
    );

    // A deadline the query cannot meet: exit status 1, said plainly.
    let (code, _, err) = cairn(&[
        "query",
        "sum by (i) (rate(load[5m])) * on (i) group_left count by (i) (load)",
        "--start",
        "1700000000",
        "--end",
        "1700001200",
        "--step",
        "1s",
        "--timeout",
        "1ms",
        "--server",
        addr,
    ]);
    assert_eq!(code, 1);
    assert!(err.starts_with("cairn: DeadlineExceeded"), "{err}");

    // No server there: a clear message, exit status 1.
    let (code, _, err) = cairn(&["labels", "--server", "127.0.0.1:1"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("cairn: cannot connect to http://127.0.0.1:1"),
        "{err}"
    );
}
