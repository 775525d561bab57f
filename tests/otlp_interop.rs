//! Interop with a real OTLP client: the OpenTelemetry Python SDK (installed
//! by `scripts/install-peers.sh` into a venv) exports a counter, an up-down
//! counter, an observable gauge and a histogram, with resource attributes,
//! to the real `cairn serve` -- once with the OTLP/gRPC exporter
//! (cumulative temporality) and once with the OTLP/HTTP exporter (delta
//! temporality, converted to cumulative by Cairn), both gzip-compressed.
//! The stored series are then read back through Cairn's HTTP API:
//! remote-read for exact values, PromQL (`rate()` over the counter,
//! `histogram_quantile` over the histogram), `/api/v1/series`,
//! `/api/v1/metadata`.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use support::*;

/// The venv's python, as `scripts/install-peers.sh` creates it.
fn python() -> PathBuf {
    let peers = std::env::var_os("CAIRN_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/cairn-peers")
        });
    let python = peers.join("otel-venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/install-peers.sh (scripts/test.sh does)",
        python.display()
    );
    python
}

/// Runs the Python side with `args`; returns its stdout.
fn run_python(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp_interop.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("run the Python side");
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn export(kind: &str, endpoint: &str, instance: &str) {
    run_python(&[kind, endpoint, instance]);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Values (in time order) of the one series `name` of `instance` with
/// the extra label matchers.
fn values(server: &Server, name: &str, instance: &str, extra: &[(&str, &str)]) -> Vec<f64> {
    let mut m = vec![("__name__", name), ("instance", instance)];
    m.extend_from_slice(extra);
    let now = now_ms();
    let found = read(server, &m, now - 3_600_000, now + 600_000);
    assert_eq!(found.len(), 1, "{name} {instance} {extra:?}: {found:?}");
    let (labels, samples) = &found[0];
    assert!(
        labels.contains(&("job".to_string(), "ml/llm-server".to_string())),
        "{labels:?}"
    );
    samples.iter().map(|(_, b)| f64::from_bits(*b)).collect()
}

fn check_instance(server: &Server, instance: &str) {
    let llama = [("model", "llama")];
    assert_eq!(
        values(server, "infer_requests_total", instance, &llama),
        vec![8.0, 10.0]
    );
    assert_eq!(
        values(server, "queue_depth", instance, &llama),
        vec![5.0, 3.0]
    );
    assert_eq!(
        values(server, "gpu_utilization_ratio", instance, &[("gpu", "0")]),
        vec![0.25, 0.75]
    );
    // Default SDK buckets ..., 50, 75, 100, 250, ...: 30 and 80, then 120.
    for (le, want) in [
        ("50", vec![1.0, 1.0]),
        ("100", vec![2.0, 2.0]),
        ("250", vec![2.0, 3.0]),
        ("+Inf", vec![2.0, 3.0]),
    ] {
        assert_eq!(
            values(
                server,
                "infer_latency_milliseconds_bucket",
                instance,
                &[("model", "llama"), ("le", le)]
            ),
            want,
            "le={le}"
        );
    }
    assert_eq!(
        values(server, "infer_latency_milliseconds_sum", instance, &llama),
        vec![110.0, 230.0]
    );
    assert_eq!(
        values(server, "infer_latency_milliseconds_count", instance, &llama),
        vec![2.0, 3.0]
    );
    let now = now_ms();
    let info = read(
        server,
        &[("__name__", "target_info"), ("instance", instance)],
        now - 3_600_000,
        now + 600_000,
    );
    assert_eq!(info.len(), 1, "{info:?}");
    for want in [
        ("job", "ml/llm-server"),
        ("k8s_cluster_name", "eu-1"),
        ("deployment_environment", "test"),
        ("telemetry_sdk_language", "python"),
    ] {
        assert!(
            info[0]
                .0
                .contains(&(want.0.to_string(), want.1.to_string())),
            "target_info lacks {want:?}: {:?}",
            info[0].0
        );
    }
}

/// The value of a one-element instant vector for `expr` at now.
fn query(server: &Server, expr: &str) -> f64 {
    let v: serde_json::Value = client()
        .post(server.url("/api/v1/query"))
        .form(&[("query", expr)])
        .send()
        .expect("query")
        .bytes()
        .map(|b| serde_json::from_slice(&b).expect("json"))
        .expect("body");
    let result = &v["data"]["result"];
    assert_eq!(result.as_array().map(Vec::len), Some(1), "{expr}: {v}");
    result[0]["value"][1]
        .as_str()
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("{expr}: {v}"))
}

fn check_promql(server: &Server, instance: &str) {
    let sel = format!("{{instance=\"{instance}\", model=\"llama\"}}");
    let rate = query(server, &format!("rate(infer_requests_total{sel}[5m])"));
    assert!(rate > 0.0, "rate over the counter: {rate}");
    // Between the two exports only the 120 ms observation arrived: the
    // median of the increase lies in (100, 250], halfway.
    let p50_rate = query(
        server,
        &format!("histogram_quantile(0.5, rate(infer_latency_milliseconds_bucket{sel}[5m]))"),
    );
    assert!((p50_rate - 175.0).abs() < 1e-9, "{p50_rate}");
    // Over all three observations (30, 80, 120): rank 1.5 in (75, 100].
    let p50 = query(
        server,
        &format!("histogram_quantile(0.5, infer_latency_milliseconds_bucket{sel})"),
    );
    assert!((p50 - 87.5).abs() < 1e-9, "{p50}");
    let ratio = query(
        server,
        &format!("gpu_utilization_ratio{{instance=\"{instance}\"}}"),
    );
    assert_eq!(ratio, 0.75);
}

#[test]
fn the_opentelemetry_python_sdk_exports_over_grpc_and_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);

    export("grpc", &format!("http://{}", server.otlp_grpc), "grpc-1");
    export(
        "http",
        &format!("http://{}/v1/metrics", server.otlp_http),
        "http-1",
    );

    check_instance(&server, "grpc-1");
    check_instance(&server, "http-1");
    check_promql(&server, "grpc-1");
    check_promql(&server, "http-1");

    // gRPC status codes seen by grpcio: an empty request is a success, a
    // truncated one INVALID_ARGUMENT (not retried), and the server stays up.
    let raw = run_python(&["raw-grpc", &server.otlp_grpc]);
    let lines: Vec<&str> = raw.lines().collect();
    assert_eq!(lines.first().copied(), Some("empty OK"), "{raw}");
    assert!(
        lines
            .get(1)
            .is_some_and(|l| l.starts_with("truncated INVALID_ARGUMENT protobuf decode error")),
        "{raw}"
    );

    let series: serde_json::Value = client()
        .get(server.url("/api/v1/series?match[]=infer_requests_total"))
        .send()
        .expect("series")
        .bytes()
        .map(|b| serde_json::from_slice(&b).expect("json"))
        .expect("body");
    assert_eq!(series["data"].as_array().map(Vec::len), Some(2), "{series}");

    let md: serde_json::Value = client()
        .get(server.url("/api/v1/metadata?metric=infer_requests_total"))
        .send()
        .expect("metadata")
        .bytes()
        .map(|b| serde_json::from_slice(&b).expect("json"))
        .expect("body");
    assert_eq!(
        md["data"]["infer_requests_total"][0],
        serde_json::json!({"type": "counter", "help": "Inference requests", "unit": ""})
    );
    server.stop();
}
