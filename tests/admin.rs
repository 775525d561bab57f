//! Prometheus's TSDB admin API on the real binary: off by default (503,
//! as Prometheus without `--web.enable-admin-api`); on, `delete_series`
//! hides the matching samples at once and across a restart, bad requests
//! get 400, `clean_tombstones` answers 204.

mod support;

use support::*;

const T0: i64 = 1_700_000_000_000;
const STEP: i64 = 15_000;

fn write_fixture(server: &Server) {
    let samples: Vec<(i64, f64)> = (0..40).map(|i| (T0 + i * STEP, i as f64)).collect();
    let a = write_v1(
        server,
        vec![
            series(&[("__name__", "up"), ("job", "a")], &samples),
            series(&[("__name__", "up"), ("job", "b")], &samples),
            series(&[("__name__", "other"), ("job", "a")], &samples),
        ],
    );
    assert_eq!(a.status, 204, "{}", a.body);
}

fn post(server: &Server, path: &str, form: &[(&str, String)]) -> (u16, String) {
    let r = client()
        .post(server.url(path))
        .form(form)
        .send()
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.text().expect("body"))
}

/// Timestamps (ms) of each series `query` (a range selector) returns at
/// the end of the data, by job and name.
fn points(server: &Server, selector: &str) -> Vec<(String, Vec<i64>)> {
    let at = (T0 + 40 * STEP) as f64 / 1000.0;
    let (status, v) = get_json(
        server,
        &format!("/api/v1/query?query={selector}[20m]&time={at}"),
    );
    assert_eq!(status, 200, "{v}");
    let mut out: Vec<(String, Vec<i64>)> = v["data"]["result"]
        .as_array()
        .expect("matrix")
        .iter()
        .map(|s| {
            let key = format!(
                "{}/{}",
                s["metric"]["__name__"].as_str().unwrap_or(""),
                s["metric"]["job"].as_str().unwrap_or("")
            );
            let ts = s["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|p| (p[0].as_f64().expect("t") * 1000.0).round() as i64)
                .collect();
            (key, ts)
        })
        .collect();
    out.sort();
    out
}

fn all_times() -> Vec<i64> {
    (0..40).map(|i| T0 + i * STEP).collect()
}

#[test]
fn admin_api_is_off_unless_enabled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[]);
    write_fixture(&server);
    for path in [
        "/api/v1/admin/tsdb/delete_series",
        "/api/v1/admin/tsdb/clean_tombstones",
        "/api/v1/admin/tsdb/snapshot",
    ] {
        let (status, body) = post(&server, path, &[("match[]", "up".into())]);
        assert_eq!(status, 503, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["status"], "error");
        assert_eq!(v["errorType"], "unavailable");
        assert!(
            v["error"]
                .as_str()
                .unwrap_or("")
                .contains("admin APIs disabled"),
            "{v}"
        );
    }
    assert_eq!(points(&server, "up").len(), 2, "nothing deleted");
    assert!(server.stop().success());
}

#[test]
fn delete_series_hides_samples_at_once_and_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = ["--web.enable-admin-api"];
    let server = Server::start(dir.path(), &flags);
    write_fixture(&server);

    // Bad requests: no selector, a bad selector, end before start.
    let path = "/api/v1/admin/tsdb/delete_series";
    for (form, want) in [
        (vec![], "match[]"),
        (vec![("match[]", "up{".to_string())], "match[]"),
        (
            vec![
                ("match[]", "up".to_string()),
                ("start", "10".to_string()),
                ("end", "5".to_string()),
            ],
            "end",
        ),
    ] {
        let (status, body) = post(&server, path, &form);
        assert_eq!(status, 400, "{form:?}: {body}");
        assert!(body.contains("bad_data") && body.contains(want), "{body}");
    }

    // Part of up{job="a"} (start and end inclusive, RFC 3339 and Unix
    // seconds), and all of up{job="b"}.
    let (lo, hi) = (T0 + 10 * STEP, T0 + 19 * STEP);
    let rfc = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .expect("time")
            .to_rfc3339()
    };
    let (status, body) = post(
        &server,
        path,
        &[
            ("match[]", r#"up{job="a"}"#.to_string()),
            ("start", rfc(lo)),
            ("end", format!("{}", hi as f64 / 1000.0)),
        ],
    );
    assert_eq!((status, body.as_str()), (204, ""));
    let r = client()
        .put(server.url(&format!("{path}?match[]=up{{job=%22b%22}}")))
        .send()
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 204);

    let kept: Vec<i64> = all_times()
        .into_iter()
        .filter(|t| *t < lo || *t > hi)
        .collect();
    let want = vec![
        ("other/a".to_string(), all_times()),
        ("up/a".to_string(), kept),
    ];
    assert_eq!(points(&server, r#"{job!=""}"#), want);
    // As in Prometheus, the series API still lists a wholly deleted
    // series until its range is compacted (cut into a block) without it.
    let (status, v) = get_json(&server, "/api/v1/series?match[]=up");
    assert_eq!(status, 200);
    assert_eq!(
        v["data"],
        serde_json::json!([{"__name__": "up", "job": "a"}, {"__name__": "up", "job": "b"}])
    );

    let (status, body) = post(&server, "/api/v1/admin/tsdb/clean_tombstones", &[]);
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(points(&server, r#"{job!=""}"#), want);

    // A snapshot: the head written as a block, deleted samples left out.
    let (status, body) = post(&server, "/api/v1/admin/tsdb/snapshot", &[]);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let name = v["data"]["name"].as_str().expect("name");
    assert!(
        name.len() == 16 + 1 + 16 && name.as_bytes()[8] == b'T',
        "{name}"
    );
    let snap = dir.path().join("snapshots").join(name);
    let metas: Vec<serde_json::Value> = std::fs::read_dir(&snap)
        .expect("snapshot dir")
        .map(|e| e.expect("entry").path().join("meta.json"))
        .filter(|p| p.is_file())
        .map(|p| serde_json::from_slice(&std::fs::read(p).expect("meta")).expect("JSON"))
        .collect();
    assert_eq!(metas.len(), 1, "one block: the head");
    // 40 samples of other/a, 30 of up/a, none of up/b.
    assert_eq!(metas[0]["stats"]["num_samples"], 70);
    assert_eq!(metas[0]["stats"]["num_series"], 2);
    let (status, _) = post(
        &server,
        "/api/v1/admin/tsdb/snapshot",
        &[("skip_head", "maybe".into())],
    );
    assert_eq!(status, 400);

    // The WAL replays the deleted samples; the delete requests hide them.
    assert!(server.stop().success());
    let server = Server::start(dir.path(), &flags);
    assert_eq!(points(&server, r#"{job!=""}"#), want, "after a restart");
    assert!(server.stop().success());
}
