//! Interop with a gRPC client in another language: a Python grpcio client
//! generated at test time from `proto/` with grpcio-tools (installed by
//! `scripts/install-peers.sh` into a venv) runs instant and range queries
//! (streamed, one series per message), series, label names and values
//! against the real `cairn serve`; its series and values equal the HTTP
//! API's for the same queries, bit for bit, and a syntax error comes back
//! as INVALID_ARGUMENT with the position. pyarrow reads the Arrow export,
//! whose samples equal remote-read's.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use support::{Server, T0, get_json, server_with_query_data};

/// The venv's python, as `scripts/install-peers.sh` creates it.
fn python() -> PathBuf {
    support::py_venv_bin("python")
}

fn enc(s: &str) -> String {
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

fn http_data(server: &Server, path: &str) -> Value {
    let (status, body) = get_json(server, path);
    assert_eq!(status, 200, "{path}: {body}");
    body["data"].clone()
}

/// An HTTP API point `[secs, "value"]` as `[ms, bits]`.
fn point(p: &Value) -> Value {
    let ms = (p[0].as_f64().expect("timestamp") * 1000.0).round() as i64;
    let v: f64 = p[1].as_str().expect("value").parse().expect("float");
    json!([ms, v.to_bits()])
}

#[test]
fn a_generated_python_client_gets_the_http_api_results_bit_for_bit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_query_data(dir.path());
    let gen_dir = tempfile::tempdir().expect("tempdir");
    let t = T0 + 10 * 60_000;
    let (start, end, step) = (T0, T0 + 19 * 60_000, 30_000);
    let instant = [
        "infer_requests_total",
        "gpu_util * 3 / 7",
        "rate(infer_requests_total[5m])",
    ];
    let range = ["rate(infer_requests_total[2m])", "gpu_util / 9"];
    let spec = json!({
        "t": t, "start": start, "end": end, "step": step,
        "instant": instant, "range": range,
        "series": ["infer_requests_total", "gpu_util"],
    });
    let out = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/grpc_interop.py"
        ))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/proto/proto"))
        .arg(gen_dir.path())
        .arg(&server.grpc)
        .arg(spec.to_string())
        .output()
        .expect("run the Python client");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).expect("python printed JSON");

    for q in instant {
        let data = http_data(
            &server,
            &format!("/api/v1/query?query={}&time={}", enc(q), t as f64 / 1000.0),
        );
        let want: Vec<Value> = data["result"]
            .as_array()
            .expect("result")
            .iter()
            .map(|r| json!([r["metric"], [point(&r["value"])]]))
            .collect();
        assert!(!want.is_empty(), "{q}");
        assert_eq!(got["instant"][q], Value::Array(want), "{q}");
    }
    for q in range {
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
        let want: Vec<Value> = data["result"]
            .as_array()
            .expect("result")
            .iter()
            .map(|r| {
                let pts: Vec<Value> = r["values"]
                    .as_array()
                    .expect("values")
                    .iter()
                    .map(point)
                    .collect();
                json!([r["metric"], pts])
            })
            .collect();
        assert!(!want.is_empty(), "{q}");
        // One message per series, then the summary.
        assert_eq!(got["messages"][q], json!(want.len() + 1), "{q}");
        assert_eq!(got["range"][q], Value::Array(want), "{q}");
    }
    assert_eq!(
        got["series"],
        http_data(
            &server,
            "/api/v1/series?match[]=infer_requests_total&match[]=gpu_util"
        )
    );
    assert_eq!(got["labels"], http_data(&server, "/api/v1/labels"));
    assert_eq!(
        got["values"],
        http_data(&server, "/api/v1/label/model/values")
    );
    // The export, read by pyarrow: exactly the stored samples.
    let mut want: Vec<Value> = Vec::new();
    for name in ["gpu_util", "infer_requests_total"] {
        let end = T0 + 19 * 60_000;
        for (labels, samples) in support::read(&server, &[("__name__", name)], T0, end) {
            let labels: serde_json::Map<String, Value> = labels
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let pts: Vec<Value> = samples.iter().map(|(t, b)| json!([t, b])).collect();
            want.push(json!([labels, pts]));
        }
    }
    assert_eq!(want.len(), 3);
    assert_eq!(got["export"], Value::Array(want));
    assert_eq!(
        got["export_schema"],
        json!([
            "string",
            "string",
            "string",
            "string",
            "timestamp[ms, tz=UTC]",
            "double"
        ])
    );

    let bad: BTreeMap<usize, String> = got["bad_query"]
        .as_array()
        .expect("an error")
        .iter()
        .enumerate()
        .map(|(i, v)| (i, v.as_str().unwrap_or_default().to_string()))
        .collect();
    assert_eq!(bad[&0], "INVALID_ARGUMENT");
    assert!(bad[&1].contains("1:16: parse error"), "{}", bad[&1]);
}
