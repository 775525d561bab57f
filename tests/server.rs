//! Integration tests of `cairn serve`: the real binary on 127.0.0.1 with a
//! temporary data directory. Remote-write in, the HTTP API and remote-read
//! out; restart; a table of malformed writes; configuration errors.

mod support;

use cairn_proto::prost::Message;
use cairn_proto::{prometheus as pb, write_v2 as v2};
use support::*;

const T0: i64 = 1_700_000_000_000;
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn first_write(server: &Server) {
    let req = pb::WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "up"), ("job", "api"), ("instance", "a:1")],
                &[
                    (T0, 1.0),
                    (T0 + 15_000, 0.0),
                    (T0 + 30_000, f64::from_bits(STALE_NAN)),
                ],
            ),
            // Unsorted labels are accepted (sorted by the server).
            series(
                &[("job", "worker"), ("__name__", "up"), ("instance", "b:2")],
                &[(T0, 1.0)],
            ),
            series(
                &[
                    ("__name__", "infer_requests_total"),
                    ("model", "llama"),
                    ("job", "api"),
                ],
                &[(T0, 10.0), (T0 + 15_000, 12.5)],
            ),
        ],
        metadata: vec![pb::MetricMetadata {
            r#type: pb::metric_metadata::MetricType::Counter as i32,
            metric_family_name: "infer_requests_total".into(),
            help: "Inference requests.".into(),
            unit: String::new(),
        }],
    };
    let a = post_write(server, V1_HEADERS, snappy(&req.encode_to_vec()));
    assert_eq!(a.status, 204, "{}", a.body);
    assert!(a.body.is_empty());
    // Remote-write 1.0 answers carry no *-Written headers (as Prometheus).
    assert!(
        a.headers
            .get("x-prometheus-remote-write-samples-written")
            .is_none()
    );
}

/// Everything the first write stored, read back through every read path.
fn check_first_write(server: &Server) {
    let got = read(server, &[("__name__", "up"), ("job", "api")], 0, i64::MAX);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].0,
        vec![
            ("__name__".to_string(), "up".to_string()),
            ("instance".into(), "a:1".into()),
            ("job".into(), "api".into())
        ]
    );
    assert_eq!(
        got[0].1,
        vec![
            (T0, 1f64.to_bits()),
            (T0 + 15_000, 0f64.to_bits()),
            (T0 + 30_000, STALE_NAN)
        ],
        "samples, stale marker bits included"
    );
    let counter = read(server, &[("__name__", "infer_requests_total")], 0, i64::MAX);
    assert_eq!(
        counter[0].1,
        vec![(T0, 10f64.to_bits()), (T0 + 15_000, 12.5f64.to_bits())]
    );

    let (s, j) = get_json(server, "/api/v1/series?match[]=up");
    assert_eq!(s, 200);
    assert_eq!(j["status"], "success");
    assert_eq!(
        j["data"],
        serde_json::json!([
            {"__name__": "up", "instance": "a:1", "job": "api"},
            {"__name__": "up", "instance": "b:2", "job": "worker"}
        ])
    );
    let (_, j) = get_json(server, "/api/v1/labels");
    assert_eq!(
        j["data"],
        serde_json::json!(["__name__", "instance", "job", "model"])
    );
    let (_, j) = get_json(
        server,
        "/api/v1/label/__name__/values?match[]={job=~\".%2B\"}",
    );
    assert_eq!(j["data"], serde_json::json!(["infer_requests_total", "up"]));
    let (_, j) = get_json(
        server,
        "/api/v1/label/job/values?match[]=up{instance=\"b:2\"}",
    );
    assert_eq!(j["data"], serde_json::json!(["worker"]));
    let (_, j) = get_json(server, "/api/v1/metadata");
    assert_eq!(
        j["data"],
        serde_json::json!({"infer_requests_total": [{"type": "counter", "help": "Inference requests.", "unit": ""}]})
    );
}

#[test]
fn write_read_restart_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    first_write(&server);
    check_first_write(&server);

    let (_, j) = get_json(&server, "/api/v1/status/tsdb");
    assert_eq!(j["data"]["headStats"]["numSeries"], 3);
    assert_eq!(
        j["data"]["seriesCountByMetricName"][0],
        serde_json::json!({"name": "up", "value": 2})
    );
    // Query latency is recorded per endpoint (route pattern).
    let (s, _) = get_json(&server, "/api/v1/query?query=up&time=1700000000");
    assert_eq!(s, 200);
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics.contains(
            "cairn_http_request_duration_seconds_count{handler=\"/api/v1/query\",code=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_ingested_samples_total{protocol=\"v1\"} 6"),
        "{metrics}"
    );
    assert!(metrics.contains("cairn_head_series 3"), "{metrics}");
    // Every WAL fsync (at least the write's) is in the latency histogram.
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing: {metrics}"))
            .parse()
            .expect("number")
    };
    let fsyncs = value("cairn_wal_fsyncs");
    assert!(fsyncs >= 1.0, "{metrics}");
    assert_eq!(value("cairn_wal_fsync_duration_seconds_count"), fsyncs);
    assert_eq!(
        value("cairn_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}"),
        fsyncs
    );
    assert!(
        value("cairn_wal_fsync_duration_seconds_sum") > 0.0,
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "cairn_http_request_duration_seconds_count{handler=\"/api/v1/write\",code=\"204\"} 1"
        ),
        "{metrics}"
    );

    let status = server.stop();
    assert!(status.success(), "graceful stop exits 0: {status:?}");

    let server = Server::start(dir.path(), &[]);
    check_first_write(&server);
}

/// Series sent again are named by the series cache (their labels not
/// decoded again); answers, rejections and stored samples are the same as
/// for first-time series, and with the cache turned off.
#[test]
fn resent_series_answer_alike_with_and_without_the_series_cache() {
    let a = [("job", "api"), ("__name__", "lat"), ("instance", "a:1")];
    let a_reordered = [("__name__", "lat"), ("instance", "a:1"), ("job", "api")];
    let b = [("__name__", "lat"), ("instance", "b:2"), ("job", "api")];
    let mut stored = Vec::new();
    for cached in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("cairn.yml");
        std::fs::write(
            &config,
            if cached {
                "{}\n"
            } else {
                "remote_write:\n  series_cache_bytes: 0\n"
            },
        )
        .expect("config");
        let server = Server::start(dir.path(), &["--config", config.to_str().expect("utf-8")]);
        for (i, labels) in [&a[..], &a[..], &a_reordered[..]].into_iter().enumerate() {
            let t = T0 + 15_000 * i as i64;
            let w = write_v1(
                &server,
                vec![
                    series(labels, &[(t, i as f64)]),
                    series(&b, &[(t, 10.0 + i as f64)]),
                ],
            );
            assert_eq!(w.status, 204, "{}", w.body);
        }
        let hits = metric(&server, "cairn_remote_write_series_cache_hits_total");
        if cached {
            // a and b in the second request, b in the third (a's labels
            // came in another order: other bytes, the same series).
            assert_eq!(hits, 3.0);
        } else {
            assert_eq!(hits, 0.0);
        }
        // A resent sample is a no-op; a sample before the window is
        // rejected with the series named.
        let w = write_v1(&server, vec![series(&a, &[(T0, 0.0)])]);
        assert_eq!(w.status, 204, "{}", w.body);
        let w = write_v1(
            &server,
            vec![series(&a, &[(T0 - 3_600_000, 1.0), (T0 + 45_000, 3.0)])],
        );
        assert_eq!(w.status, 400, "{}", w.body);
        assert!(
            w.body.contains("too old") || w.body.contains("too_old"),
            "{}",
            w.body
        );
        assert!(w.body.contains("instance=\"a:1\""), "{}", w.body);
        let got: Vec<_> = read(&server, &[("__name__", "lat")], 0, i64::MAX);
        assert_eq!(got.len(), 2);
        stored.push(got);
        let (_, tsdb) = get_json(&server, "/api/v1/status/tsdb");
        assert_eq!(tsdb["data"]["headStats"]["numSeries"], 2);
        assert!(server.stop().success());
    }
    assert_eq!(stored[0], stored[1]);
    assert_eq!(
        stored[0][0].1,
        [
            (T0, 0.0),
            (T0 + 15_000, 1.0),
            (T0 + 30_000, 2.0),
            (T0 + 45_000, 3.0)
        ]
        .map(|(t, v): (i64, f64)| (t, v.to_bits()))
        .to_vec()
    );
}

#[test]
fn remote_write_2_resolves_symbols_and_reports_written_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let req = v2::Request {
        symbols: [
            "",
            "__name__",
            "tokens_total",
            "model",
            "llama",
            "Tokens.",
            "tokens",
            "trace_id",
            "abc",
        ]
        .map(String::from)
        .to_vec(),
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            samples: vec![
                v2::Sample {
                    value: 5.0,
                    timestamp: T0,
                    start_timestamp: T0 - 1000,
                },
                v2::Sample {
                    value: 7.0,
                    timestamp: T0 + 1000,
                    start_timestamp: T0 - 1000,
                },
            ],
            exemplars: vec![v2::Exemplar {
                labels_refs: vec![7, 8],
                value: 1.0,
                timestamp: T0,
            }],
            metadata: Some(v2::Metadata {
                r#type: v2::metadata::MetricType::Counter as i32,
                help_ref: 5,
                unit_ref: 6,
            }),
            ..Default::default()
        }],
    };
    let a = post_write(&server, V2_HEADERS, snappy(&req.encode_to_vec()));
    assert_eq!(a.status, 204, "{}", a.body);
    let h = |n: &str| {
        a.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    assert_eq!(
        h("x-prometheus-remote-write-samples-written").as_deref(),
        Some("2")
    );
    assert_eq!(
        h("x-prometheus-remote-write-histograms-written").as_deref(),
        Some("0")
    );
    assert_eq!(
        h("x-prometheus-remote-write-exemplars-written").as_deref(),
        Some("1")
    );

    let got = read(&server, &[("__name__", "tokens_total")], 0, i64::MAX);
    assert_eq!(got[0].0[1], ("model".to_string(), "llama".to_string()));
    assert_eq!(
        got[0].1,
        vec![(T0, 5f64.to_bits()), (T0 + 1000, 7f64.to_bits())]
    );
    let (_, j) = get_json(&server, "/api/v1/metadata?metric=tokens_total");
    assert_eq!(j["data"]["tokens_total"][0]["unit"], "tokens");
    let (_, j) = get_json(
        &server,
        &format!(
            "/api/v1/query_exemplars?query=sum(rate(tokens_total%5B5m%5D))&start={}&end={}",
            T0 / 1000 - 1,
            T0 / 1000 + 1
        ),
    );
    assert_eq!(j["data"][0]["exemplars"][0]["labels"]["trace_id"], "abc");
    assert_eq!(j["data"][0]["exemplars"][0]["value"], "1");
    assert_eq!(
        j["data"][0]["exemplars"][0]["timestamp"],
        serde_json::json!(T0 / 1000)
    );
    assert_eq!(j["data"][0]["seriesLabels"]["model"], "llama");
    let (s, j) = get_json(&server, "/api/v1/query_exemplars?query=test&start=0&end=1");
    assert_eq!((s, &j["data"]), (200, &serde_json::json!([])));
    let (s, j) = get_json(&server, "/api/v1/query_exemplars?query=sum(");
    assert_eq!((s, &j["errorType"]), (400, &serde_json::json!("bad_data")));

    // A v2 series with a reference outside the symbol table: 400, counted.
    let bad = v2::Request {
        symbols: vec!["".into(), "__name__".into()],
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 9],
            samples: vec![v2::Sample {
                value: 1.0,
                timestamp: T0,
                start_timestamp: 0,
            }],
            ..Default::default()
        }],
    };
    let a = post_write(&server, V2_HEADERS, snappy(&bad.encode_to_vec()));
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("invalid_symbol_ref"), "{}", a.body);
    assert_eq!(
        a.headers
            .get("x-prometheus-remote-write-samples-written")
            .and_then(|v| v.to_str().ok()),
        Some("0")
    );
}

/// One malformed request: what is sent, and what must come back.
struct Case {
    name: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Vec<u8>,
    status: u16,
    message: &'static str,
}

fn encoded(series: Vec<pb::TimeSeries>) -> Vec<u8> {
    pb::WriteRequest {
        timeseries: series,
        metadata: vec![],
    }
    .encode_to_vec()
}

#[test]
fn malformed_writes_get_documented_statuses_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &["--remote-write-max-body-bytes", "65536"]);
    first_write(&server);

    let good = encoded(vec![series(&[("__name__", "x")], &[(T0, 1.0)])]);
    let far_future = 4_000_000_000_000; // year 2096
    let cases = vec![
        Case {
            name: "truncated protobuf",
            headers: V1_HEADERS,
            body: snappy(&good[..good.len() - 4]),
            status: 400,
            message: "protobuf decode error",
        },
        Case {
            name: "bad snappy",
            headers: V1_HEADERS,
            body: b"\xff\xff\xff\xff\x0fnot snappy".to_vec(),
            status: 400,
            message: "snappy decode error",
        },
        Case {
            name: "uncompressed protobuf",
            headers: V1_HEADERS,
            body: good.clone(),
            status: 400,
            message: "decode error",
        },
        Case {
            name: "empty label name",
            headers: V1_HEADERS,
            body: snappy(&encoded(vec![series(
                &[("__name__", "up"), ("", "v")],
                &[(T0, 5.0)],
            )])),
            status: 400,
            message: "empty_label_name",
        },
        Case {
            name: "duplicate label names",
            headers: V1_HEADERS,
            body: snappy(&encoded(vec![series(
                &[("__name__", "up"), ("job", "api"), ("job", "worker")],
                &[(T0, 5.0)],
            )])),
            status: 400,
            message: "duplicate_label_name",
        },
        Case {
            name: "no metric name",
            headers: V1_HEADERS,
            body: snappy(&encoded(vec![series(&[("job", "api")], &[(T0, 5.0)])])),
            status: 400,
            message: "missing_metric_name",
        },
        Case {
            name: "sample far in the future",
            headers: V1_HEADERS,
            body: snappy(&encoded(vec![series(
                &[("__name__", "future")],
                &[(far_future, 1.0)],
            )])),
            status: 400,
            message: "too_far_in_future",
        },
        Case {
            name: "other value at a stored timestamp",
            headers: V1_HEADERS,
            body: snappy(&encoded(vec![series(
                &[("__name__", "up"), ("job", "api"), ("instance", "a:1")],
                &[(T0, 42.0)],
            )])),
            status: 400,
            message: "duplicate_sample",
        },
        Case {
            name: "JSON content type",
            headers: &[
                ("Content-Type", "application/json"),
                ("Content-Encoding", "snappy"),
            ],
            body: b"{}".to_vec(),
            status: 415,
            message: "Content-Type",
        },
        Case {
            name: "unknown proto",
            headers: &[
                ("Content-Type", "application/x-protobuf;proto=foo.Bar"),
                ("Content-Encoding", "snappy"),
            ],
            body: snappy(&good),
            status: 415,
            message: "Content-Type",
        },
        Case {
            name: "gzip encoding",
            headers: &[
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "gzip"),
            ],
            body: b"corrupted".to_vec(),
            status: 415,
            message: "Content-Encoding",
        },
        Case {
            name: "body over the limit",
            headers: V1_HEADERS,
            body: vec![0u8; 100_000],
            status: 413,
            message: "larger than the limit of 65536 bytes",
        },
        Case {
            name: "v2 symbols not starting empty",
            headers: V2_HEADERS,
            body: snappy(
                &v2::Request {
                    symbols: vec!["x".into()],
                    timeseries: vec![],
                }
                .encode_to_vec(),
            ),
            status: 400,
            message: "symbols[0]",
        },
    ];
    for c in cases {
        let a = post_write(&server, c.headers, c.body);
        assert_eq!(a.status, c.status, "{}: {}", c.name, a.body);
        assert!(
            a.body.contains(c.message),
            "{}: {:?} lacks {:?}",
            c.name,
            a.body,
            c.message
        );
    }

    // Named series in the 400 body, and partial acceptance: the valid
    // series of a mixed request is written.
    let mixed = encoded(vec![
        series(&[("__name__", "ok_metric")], &[(T0, 3.0)]),
        series(&[("__name__", "bad_metric"), ("", "x")], &[(T0, 1.0)]),
    ]);
    let a = post_write(&server, V1_HEADERS, snappy(&mixed));
    assert_eq!(a.status, 400);
    assert!(a.body.contains("1 samples rejected"), "{}", a.body);
    assert!(a.body.contains("bad_metric"), "{}", a.body);
    assert_eq!(
        read(&server, &[("__name__", "ok_metric")], 0, i64::MAX)[0].1,
        vec![(T0, 3f64.to_bits())]
    );

    // A declared 1 GiB body is refused from its headers, without reading it.
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        1u64 << 30
    );
    let resp = raw_http(&server.addr, &head, &[0u8; 1024]);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");

    // A resent identical write (a sender retrying after a lost answer) is
    // accepted and changes nothing.
    first_write(&server);

    // Still up, and nothing written before changed.
    assert!(server.is_running());
    check_first_write(&server);
    assert!(read(&server, &[("__name__", "future")], 0, i64::MAX).is_empty());
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .expect("m")
        .text()
        .expect("t");
    assert!(
        metrics.contains("cairn_rejected_samples_total{reason=\"empty_label_name\"} 2"),
        "{metrics}"
    );
}

#[test]
fn api_envelope_errors_and_status_endpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--retention", "30d"]);
    let table: &[(&str, u16, &str)] = &[
        ("/api/v1/series", 400, "bad_data"),
        ("/api/v1/series?match[]={}", 400, "bad_data"),
        ("/api/v1/series?match[]=up{", 400, "bad_data"),
        ("/api/v1/labels?start=yesterday", 400, "bad_data"),
        ("/api/v1/labels?start=10&end=5", 400, "bad_data"),
        ("/api/v1/label/job/values?limit=-1", 400, "bad_data"),
        ("/api/v1/no_such_endpoint", 404, "not_found"),
        ("/api/v1/format_query?query=sum(rate(x[5m]", 400, "bad_data"),
        ("/api/v1/parse_query", 400, "bad_data"),
    ];
    for (path, status, kind) in table {
        let (s, j) = get_json(&server, path);
        assert_eq!(s, *status, "{path}: {j}");
        assert_eq!(j["status"], "error", "{path}");
        assert_eq!(j["errorType"], *kind, "{path}");
        assert!(j["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}");
    }
    let (_, j) = get_json(&server, "/api/v1/status/buildinfo");
    assert!(
        j["data"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    assert!(j["data"].get("features").is_none());
    let (_, j) = get_json(&server, "/api/v1/status/flags");
    assert_eq!(j["data"]["retention"], "30d");
    let (_, j) = get_json(&server, "/api/v1/status/config");
    assert!(
        j["data"]["yaml"]
            .as_str()
            .is_some_and(|y| y.contains("retention: 30d"))
    );
    let (_, j) = get_json(&server, "/api/v1/status/runtimeinfo");
    assert_eq!(j["data"]["storageRetention"], "30d");
    let (s, j) = get_json(
        &server,
        "/api/v1/format_query?query=sum(rate(x[5m]))by(job)",
    );
    assert_eq!(
        (s, &j["data"]),
        (200, &serde_json::json!("sum by (job) (rate(x[5m]))"))
    );
    let (_, j) = get_json(&server, "/api/v1/format_query?query=1%2B");
    assert!(
        j["error"]
            .as_str()
            .is_some_and(|e| e.contains("parse error")),
        "{j}"
    );
    let (_, j) = get_json(&server, "/api/v1/parse_query?query=up%7Bjob%3D%22a%22%7D");
    assert_eq!(j["data"]["type"], "vectorSelector");
    assert_eq!(j["data"]["name"], "up");
    let (_, j) = get_json(&server, "/api/v1/status/walreplay");
    assert_eq!(
        j["data"],
        serde_json::json!({"min": 0, "max": 1, "current": 1})
    );
    let (_, j) = get_json(&server, "/api/v1/rules");
    assert_eq!(j["data"]["groups"], serde_json::json!([]));

    // POST with a form body works like GET, and `limit` truncates with a warning.
    let a = write_v1(
        &server,
        vec![
            series(&[("__name__", "m"), ("k", "1")], &[(T0, 1.0)]),
            series(&[("__name__", "m"), ("k", "2")], &[(T0, 1.0)]),
        ],
    );
    assert_eq!(a.status, 204, "{}", a.body);
    let resp = client()
        .post(server.url("/api/v1/series"))
        .form(&[("match[]", "m"), ("limit", "1")])
        .send()
        .expect("post");
    let j: serde_json::Value = serde_json::from_str(&resp.text().expect("text")).expect("json");
    assert_eq!(j["data"], serde_json::json!([{"__name__": "m", "k": "1"}]));
    assert_eq!(j["warnings"][0], "results truncated due to limit");
}

#[test]
fn bad_configuration_stops_startup_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("cairn.yml");
    let table: &[(&str, &[&str], &str)] = &[
        ("storage:\n  retension: 5d\n", &[], "retension"),
        ("query:\n  timeout: soon\n", &[], "query.timeout"),
        ("", &["--retention", "forever"], "--retention"),
    ];
    for (yaml, flags, key) in table {
        std::fs::write(&cfg, yaml).expect("write config");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("serve")
            .arg("--config")
            .arg(&cfg)
            .args(["--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--http-listen", "127.0.0.1:0"])
            .args(*flags)
            .output()
            .expect("run cairn");
        assert_eq!(out.status.code(), Some(2), "{yaml:?} {flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{yaml:?}: {err}");
    }
}

#[test]
fn text_format_import_writes_with_plain_curl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let body = format!(
        "# TYPE gpu_util gauge\n# HELP gpu_util GPU utilisation.\n\
         gpu_util{{model=\"llama\",gpu=\"0\"}} 0.75 {T0}\ngpu_util{{model=\"llama\",gpu=\"0\"}} 0.5 {}\n",
        T0 + 15_000
    );
    let resp = client()
        .post(server.url("/api/v1/import/prometheus"))
        .body(body)
        .send()
        .expect("import");
    assert_eq!(resp.status().as_u16(), 204);
    let got = read(&server, &[("__name__", "gpu_util")], 0, i64::MAX);
    assert_eq!(
        got[0].1,
        vec![(T0, 0.75f64.to_bits()), (T0 + 15_000, 0.5f64.to_bits())]
    );
    let (_, j) = get_json(&server, "/api/v1/metadata?metric=gpu_util");
    assert_eq!(j["data"]["gpu_util"][0]["type"], "gauge");

    let resp = client()
        .post(server.url("/api/v1/import/prometheus"))
        .body("ok_line 1\nbroken{ 2\n")
        .send()
        .expect("import");
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().expect("text").contains("line 2"));
    assert!(
        read(&server, &[("__name__", "ok_line")], 0, i64::MAX).is_empty(),
        "nothing written"
    );
}

#[test]
fn writes_beyond_max_in_flight_get_503_with_retry_after() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("cairn.yml");
    std::fs::write(&cfg, "remote_write:\n  max_in_flight: 1\n").expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().expect("utf-8")],
    );

    // A write whose body never finishes holds the only permit.
    let mut held = std::net::TcpStream::connect(&server.addr).expect("connect");
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nContent-Length: 1000\r\n\r\n",
        server.addr
    );
    held.write_all(head.as_bytes()).expect("write head");
    held.write_all(&[0u8; 10]).expect("write some body");

    let small = || vec![series(&[("__name__", "shed")], &[(T0, 1.0)])];
    let mut shed = None;
    for _ in 0..200 {
        let a = write_v1(&server, small());
        if a.status == 503 {
            shed = Some(a);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let a = shed.expect("a write was shed while the permit was held");
    assert_eq!(
        a.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert!(
        a.body.contains("too many concurrent remote-write requests"),
        "{}",
        a.body
    );

    // Once the slow request is gone, writes succeed again.
    drop(held);
    let mut ok = false;
    for _ in 0..200 {
        if write_v1(&server, small()).status == 204 {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(ok, "writes recover after the slow request ends");
}

#[test]
fn remote_read_streams_xor_chunks_when_asked_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    first_write(&server);
    // 3 series of 1000 samples with irregular steps and values, one with a
    // stale marker: several 120-sample chunks each.
    let mut written: Vec<(Vec<(String, String)>, Vec<(i64, u64)>)> = Vec::new();
    let mut batch = Vec::new();
    for s in 0..3i64 {
        let labels = [
            ("__name__", "long_series"),
            ("shard", ["a", "b", "c"][s as usize]),
        ];
        let mut samples = Vec::new();
        let mut t = T0;
        for i in 0..1000i64 {
            t += 15_000 + (i * 7 + s) % 50 - 25;
            let v = if s == 1 && i == 500 {
                f64::from_bits(STALE_NAN)
            } else {
                ((i * (s + 3)) % 97) as f64 * 0.25 + i as f64
            };
            samples.push((t, v));
        }
        written.push((
            labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            samples.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
        ));
        batch.push(series(&labels, &samples));
    }
    let a = write_v1(&server, batch);
    assert_eq!(a.status, 204, "{}", a.body);

    let (streamed, frames) = read_streamed(
        &server,
        &[
            (&[("__name__", "long_series")], 0, i64::MAX),
            (&[("__name__", "up"), ("job", "api")], 0, i64::MAX),
            (&[("__name__", "absent")], 0, i64::MAX),
        ],
    );
    assert!(frames >= 2, "one frame per query with series: {frames}");
    assert_eq!(streamed[0], written);
    // The same answer as the SAMPLES response.
    assert_eq!(
        streamed[0],
        read(&server, &[("__name__", "long_series")], 0, i64::MAX)
    );
    assert_eq!(
        streamed[1],
        read(&server, &[("__name__", "up"), ("job", "api")], 0, i64::MAX)
    );
    assert_eq!(
        streamed[1][0].1.len(),
        3,
        "stale marker kept: {:?}",
        streamed[1]
    );
    assert!(streamed[2].is_empty());

    // A time range cuts inside chunks: only samples inside it come back.
    let (mint, maxt) = (written[2].1[130].0, written[2].1[400].0);
    let (cut, _) = read_streamed(
        &server,
        &[(&[("__name__", "long_series"), ("shard", "c")], mint, maxt)],
    );
    assert_eq!(cut[0].len(), 1);
    assert_eq!(cut[0][0].1, written[2].1[130..=400].to_vec());
}

/// Loads 2000 series of an hour of 15 s samples: a range query over them
/// evaluates millions of points, which takes far longer than 1 ms in any
/// build, so a 1 ms timeout expires deterministically.
fn load_heavy(server: &Server) {
    for batch in 0..10 {
        let series_batch: Vec<pb::TimeSeries> = (0..200)
            .map(|i| {
                let n = batch * 200 + i;
                let samples: Vec<(i64, f64)> = (0..240)
                    .map(|k| (T0 + k * 15_000, (k * (n % 7 + 1)) as f64))
                    .collect();
                series(
                    &[
                        ("__name__", "load"),
                        ("g", &(n % 10).to_string()),
                        ("n", &n.to_string()),
                    ],
                    &samples,
                )
            })
            .collect();
        let a = write_v1(server, series_batch);
        assert_eq!(a.status, 204, "{}", a.body);
    }
}

#[test]
fn query_timeouts_answer_503_with_error_type_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    load_heavy(&server);
    let (start, end) = (T0 / 1000 + 300, T0 / 1000 + 3600);
    let range = format!(
        "/api/v1/query_range?query=sum%20by%20(g)%20(rate(load%5B5m%5D))&start={start}&end={end}&step=1"
    );
    // Without a timeout parameter the query completes: 10 groups.
    let (s, j) = get_json(&server, &range);
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["data"]["result"].as_array().map(Vec::len), Some(10));
    // The same query with timeout=1ms: 503, errorType timeout.
    let (s, j) = get_json(&server, &format!("{range}&timeout=1ms"));
    assert_eq!(s, 503, "{j}");
    assert_eq!(j["status"], "error");
    assert_eq!(j["errorType"], "timeout");
    assert_eq!(j["error"], "query timed out in expression evaluation");
    // The server stays healthy and answers the next query.
    let (s, _) = get_json(&server, &range);
    assert_eq!(s, 200);
    server.stop();

    // query.timeout is a ceiling: a longer `timeout` parameter cannot
    // extend it.
    let server = Server::start(dir.path(), &["--query-timeout", "1ms"]);
    let (s, j) = get_json(&server, &format!("{range}&timeout=60s"));
    assert_eq!(s, 503, "{j}");
    assert_eq!(j["errorType"], "timeout");
    let (s, j) = get_json(
        &server,
        &format!(
            "/api/v1/query?query=count(max_over_time(rate(load%5B5m%5D)%5B55m:1s%5D))&time={end}"
        ),
    );
    assert_eq!(s, 503, "{j}");
    assert_eq!(j["errorType"], "timeout");
}
