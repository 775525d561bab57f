//! The query endpoints against the real binary, in the order Grafana's
//! Prometheus data source calls the API when a user saves the data source,
//! opens the query editor, browses labels and renders a panel; each
//! response's shape checked as Grafana parses it. Then PromQL errors.

mod support;

use support::*;

const T0: i64 = 1_700_000_000_000;

fn form(server: &Server, path: &str, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let resp = client()
        .post(server.url(path))
        .form(params)
        .send()
        .expect("POST");
    let status = resp.status().as_u16();
    let text = resp.text().expect("text");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}")),
    )
}

fn load(server: &Server) {
    // Two counters over 10 minutes, 15 s apart.
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..=40 {
        a.push((T0 + i * 15_000, i as f64 * 15.0)); // 1/s
        b.push((T0 + i * 15_000, i as f64 * 30.0)); // 2/s
    }
    let w = write_v1(
        server,
        vec![
            series(
                &[
                    ("__name__", "infer_requests_total"),
                    ("model", "llama"),
                    ("job", "api"),
                ],
                &a,
            ),
            series(
                &[
                    ("__name__", "infer_requests_total"),
                    ("model", "mistral"),
                    ("job", "api"),
                ],
                &b,
            ),
        ],
    );
    assert_eq!(w.status, 204, "{}", w.body);
}

#[test]
fn grafana_call_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    load(&server);
    let start = (T0 / 1000).to_string();
    let end = (T0 / 1000 + 600).to_string();

    // "Save & test": the health-check query, then buildinfo.
    let (s, j) = form(&server, "/api/v1/query", &[("query", "1+1"), ("time", "4")]);
    assert_eq!(s, 200);
    assert_eq!(
        j,
        serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}})
    );
    let (s, j) = get_json(&server, "/api/v1/status/buildinfo");
    assert_eq!(s, 200);
    assert!(j["data"]["version"].is_string());

    // Query editor start: metric names, metadata, exemplar probe.
    let (_, j) = get_json(
        &server,
        &format!("/api/v1/label/__name__/values?start={start}&end={end}&limit=40000"),
    );
    assert_eq!(j["data"], serde_json::json!(["infer_requests_total"]));
    let (s, j) = get_json(&server, "/api/v1/metadata?limit=40000");
    assert_eq!((s, j["status"].as_str()), (200, Some("success")));
    let probe = format!(
        "/api/v1/query_exemplars?query=test&start={}&end={}",
        T0 - 1_800_000,
        T0
    );
    let (s, j) = get_json(&server, &probe);
    assert_eq!((s, &j["data"]), (200, &serde_json::json!([])));

    // Label browser: labels and values with match[].
    let (_, j) = form(
        &server,
        "/api/v1/labels",
        &[
            ("start", &start),
            ("end", &end),
            ("match[]", "{__name__=~\".+\",}"),
            ("limit", "40000"),
        ],
    );
    assert_eq!(j["data"], serde_json::json!(["__name__", "job", "model"]));
    let (_, j) = get_json(
        &server,
        &format!("/api/v1/label/model/values?start={start}&end={end}&match[]=infer_requests_total"),
    );
    assert_eq!(j["data"], serde_json::json!(["llama", "mistral"]));
    let (_, j) = form(
        &server,
        "/api/v1/series",
        &[
            ("match[]", "{__name__!=\"\"}"),
            ("start", &start),
            ("end", &end),
        ],
    );
    assert_eq!(j["data"].as_array().map(Vec::len), Some(2));

    // A panel: a range query by POST, with Grafana's timeout parameter.
    let (s, j) = form(
        &server,
        "/api/v1/query_range",
        &[
            ("query", "sum by (model) (rate(infer_requests_total[1m0s]))"),
            ("start", &(T0 / 1000 + 120).to_string()),
            ("end", &(T0 / 1000 + 300).to_string()),
            ("step", "60"),
            ("timeout", "60s"),
        ],
    );
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["data"]["resultType"], "matrix");
    let result = j["data"]["result"].as_array().expect("result");
    assert_eq!(result.len(), 2);
    assert_eq!(result[0]["metric"], serde_json::json!({"model": "llama"}));
    assert_eq!(result[1]["metric"], serde_json::json!({"model": "mistral"}));
    let values = result[0]["values"].as_array().expect("values");
    assert_eq!(values.len(), 4);
    let point = |p: &serde_json::Value| -> (i64, f64) {
        let t = p[0].as_i64().expect("integer-second timestamp");
        let v: f64 = p[1]
            .as_str()
            .expect("value as a string")
            .parse()
            .expect("float");
        (t, v)
    };
    let (t, v) = point(&values[0]);
    assert_eq!(t, T0 / 1000 + 120);
    assert!((v - 1.0).abs() < 1e-9, "{v}");
    let (t, v) = point(&result[1]["values"][3]);
    assert_eq!(t, T0 / 1000 + 300);
    assert!((v - 2.0).abs() < 1e-9, "{v}");

    // An instant query with a vector result, GET, RFC 3339 time.
    let (s, j) = get_json(
        &server,
        "/api/v1/query?query=infer_requests_total%7Bmodel%3D%22llama%22%7D&time=2023-11-14T22:13:35.5Z",
    );
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["data"]["resultType"], "vector");
    assert_eq!(
        j["data"]["result"][0]["value"],
        serde_json::json!([1_700_000_015.5, "15"]),
        "the sample at T0+15s, seen at T0+15.5s"
    );
    // A matrix from an instant query, and special values.
    let (_, j) = form(
        &server,
        "/api/v1/query",
        &[
            ("query", "infer_requests_total{model=\"llama\"}[30s]"),
            ("time", &(T0 / 1000 + 30).to_string()),
        ],
    );
    assert_eq!(j["data"]["resultType"], "matrix");
    let (_, j) = form(
        &server,
        "/api/v1/query",
        &[("query", "vector(1) / 0 or vector(-1)/0"), ("time", "100")],
    );
    assert_eq!(
        j["data"]["result"][0]["value"],
        serde_json::json!([100, "+Inf"])
    );
    let (_, j) = form(
        &server,
        "/api/v1/query",
        &[("query", "0/0"), ("time", "1.5")],
    );
    assert_eq!(j["data"]["result"], serde_json::json!([1.5, "NaN"]));
    // `limit` truncates with a warning; `stats` adds data.stats.
    let (_, j) = form(
        &server,
        "/api/v1/query",
        &[
            ("query", "infer_requests_total"),
            ("time", &(T0 / 1000 + 60).to_string()),
            ("limit", "1"),
            ("stats", "all"),
        ],
    );
    assert_eq!(j["data"]["result"].as_array().map(Vec::len), Some(1));
    assert_eq!(j["warnings"][0], "results truncated due to limit");
    assert!(
        j["data"]["stats"]["timings"]["evalTotalTime"].is_number(),
        "{j}"
    );
}

#[test]
fn promql_errors_have_prometheus_status_and_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &[]);
    load(&server);
    let deep = format!("{}1{}", "(".repeat(20_000), ")".repeat(20_000));
    let table: Vec<(&str, Vec<(&str, &str)>, u16, &str, &str)> = vec![
        (
            "/api/v1/query",
            vec![("query", "sum(rate(x[5m])")],
            400,
            "bad_data",
            "parse error",
        ),
        ("/api/v1/query", vec![], 400, "bad_data", "query"),
        (
            "/api/v1/query",
            vec![("query", "up"), ("time", "tomorrow")],
            400,
            "bad_data",
            "time",
        ),
        (
            "/api/v1/query",
            vec![("query", deep.as_str())],
            400,
            "bad_data",
            "parse error",
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "up"),
                ("start", "0"),
                ("end", "86400"),
                ("step", "0.001"),
            ],
            400,
            "bad_data",
            "exceeded maximum resolution",
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "up"),
                ("start", "0"),
                ("end", "100"),
                ("step", "0"),
            ],
            400,
            "bad_data",
            "zero or negative",
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "up"),
                ("start", "0"),
                ("end", "100"),
                ("step", "1e300"),
            ],
            400,
            "bad_data",
            "step",
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "up[5m]"),
                ("start", "0"),
                ("end", "100"),
                ("step", "10"),
            ],
            400,
            "bad_data",
            "range query",
        ),
        (
            "/api/v1/query",
            vec![
                ("query", "infer_requests_total + on() infer_requests_total"),
                ("time", "1700000060"),
            ],
            422,
            "execution",
            "many",
        ),
    ];
    for (path, params, status, kind, msg) in &table {
        let (s, j) = form(&server, path, params);
        assert_eq!(s, *status, "{path} {params:?}: {j}");
        assert_eq!(j["status"], "error");
        assert_eq!(j["errorType"], *kind, "{path} {params:?}");
        let e = j["error"].as_str().unwrap_or_default();
        assert!(e.contains(msg), "{path} {params:?}: {e:?} lacks {msg:?}");
    }
    assert!(server.is_running());
}
