//! Interop with the real Prometheus tools (installed by
//! `scripts/install-peers.sh`): Prometheus scrapes Cairn's `/metrics` and
//! remote-writes the result to Cairn, which then answers `/api/v1/query`
//! with those series; `promtool query` works against Cairn's API;
//! Prometheus remote-reads data that exists only in Cairn; vmagent
//! remote-writes to Cairn. Every wait is a bounded poll.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// Polls of 500 ms: up to a minute for scrapes and remote-write batches.
const MAX_POLLS: usize = 120;

/// A peer process, killed when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &str, args: &[String], dir: &Path) -> Peer {
    let log = std::fs::File::create(dir.join(format!("{cmd}.log"))).expect("log file");
    let child = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd} must be installed (scripts/install-peers.sh): {e}"));
    Peer(child)
}

/// Polls an instant query on `base` (Cairn or Prometheus) until it returns
/// a non-empty vector; returns the first element.
fn poll_query(base: &str, query: &str, what: &str, dir: &Path) -> serde_json::Value {
    let client = client();
    for _ in 0..MAX_POLLS {
        if let Ok(resp) = client
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", query)])
            .send()
            && let Ok(text) = resp.text()
            && let Ok(j) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(first) = j["data"]["result"].as_array().and_then(|r| r.first())
        {
            return first.clone();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let logs: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    panic!(
        "{what}: {query} never answered; peer logs:\n{}",
        logs.join("\n")
    );
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(["query"])
        .args(args)
        .output()
        .expect("promtool must be installed (scripts/install-peers.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "promtool query {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn prometheus_scrapes_remote_writes_and_remote_reads_cairn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cairn = Server::start(&dir.path().join("cairn"), &[]);
    let cairn_url = format!("http://{}", cairn.addr);
    let prom_port = free_port();
    let prom_url = format!("http://127.0.0.1:{prom_port}");
    let config = format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: cairn
    static_configs:
      - targets: ["{addr}"]
remote_write:
  - url: {cairn_url}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
    metadata_config:
      send_interval: 1s
remote_read:
  - url: {cairn_url}/api/v1/read
    read_recent: true
"#,
        addr = cairn.addr
    );
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("mkdir");
    std::fs::write(prom_dir.join("prometheus.yml"), config).expect("config");
    let _prom = spawn(
        "prometheus",
        &[
            "--config.file=prometheus.yml".into(),
            "--storage.tsdb.path=data".into(),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--log.level=warn".into(),
        ],
        &prom_dir,
    );

    // Prometheus scraped Cairn (so Cairn's /metrics parses) and
    // remote-wrote the scrape to Cairn.
    let up = poll_query(
        &cairn_url,
        "up{job=\"cairn\"}",
        "remote-write from Prometheus",
        &prom_dir,
    );
    assert_eq!(up["metric"]["instance"], cairn.addr.as_str());
    assert_eq!(up["value"][1], "1", "Prometheus could scrape Cairn: {up}");
    let ready = poll_query(
        &cairn_url,
        "cairn_ready{job=\"cairn\"}",
        "Cairn's own metric",
        &prom_dir,
    );
    assert_eq!(ready["value"][1], "1");

    // promtool against Cairn's API.
    let out = promtool(&["instant", &cairn_url, "up{job=\"cairn\"}"]);
    assert!(
        out.contains("job=\"cairn\"") && out.contains("=> 1 @"),
        "{out}"
    );
    let out = promtool(&["series", "--match=up", &cairn_url]);
    assert!(out.contains("job=\"cairn\""), "{out}");
    let out = promtool(&["labels", &cairn_url, "job"]);
    assert!(out.lines().any(|l| l.trim() == "cairn"), "{out}");
    let now = chrono_like_now();
    let out = promtool(&[
        "range",
        &format!("--start={}", now - 600),
        // Past now by more than a step: `now` is truncated to the second
        // and the first scrape may be younger, so a grid ending at `now`
        // could have no step at or after it.
        &format!("--end={}", now + 30),
        "--step=15s",
        &cairn_url,
        "up{job=\"cairn\"}",
    ]);
    assert!(out.contains("job=\"cairn\""), "{out}");

    // Remote-read: a series written only to Cairn is visible in Prometheus.
    let resp = client()
        .post(format!("{cairn_url}/api/v1/import/prometheus"))
        .body("only_in_cairn{src=\"import\"} 42\n")
        .send()
        .expect("import");
    assert_eq!(resp.status().as_u16(), 204);
    let read = poll_query(
        &prom_url,
        "only_in_cairn",
        "remote-read by Prometheus",
        &prom_dir,
    );
    assert_eq!(read["metric"]["src"], "import");
    assert_eq!(read["value"][1], "42");
}

#[test]
fn vmagent_remote_writes_to_cairn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cairn = Server::start(&dir.path().join("cairn"), &[]);
    let cairn_url = format!("http://{}", cairn.addr);
    let vm_dir = dir.path().join("vmagent");
    std::fs::create_dir_all(&vm_dir).expect("mkdir");
    let scrape = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vmagent-scrape\n    \
         static_configs:\n      - targets: [\"{}\"]\n",
        cairn.addr
    );
    std::fs::write(vm_dir.join("scrape.yml"), scrape).expect("config");
    let _vmagent = spawn(
        "vmagent",
        &[
            "-promscrape.config=scrape.yml".into(),
            format!("-remoteWrite.url={cairn_url}/api/v1/write"),
            "-remoteWrite.tmpDataPath=queue".into(),
            "-remoteWrite.flushInterval=1s".into(),
            format!("-httpListenAddr=127.0.0.1:{}", free_port()),
            "-loggerLevel=WARN".into(),
        ],
        &vm_dir,
    );
    let up = poll_query(
        &cairn_url,
        "up{job=\"vmagent-scrape\"}",
        "remote-write from vmagent",
        &vm_dir,
    );
    assert_eq!(up["value"][1], "1", "vmagent could scrape Cairn: {up}");
    let series = poll_query(
        &cairn_url,
        "cairn_http_request_duration_seconds_count{job=\"vmagent-scrape\",handler=\"/metrics\"}",
        "a histogram series from vmagent",
        &vm_dir,
    );
    assert!(series["value"][1].as_str().is_some());
}

/// Unix seconds now.
fn chrono_like_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `delete_series` gives the same answers as Prometheus's: the same data
/// remote-written to both, the same deletions (part of one series, all of
/// another, a selector matching nothing), then series, label values and
/// raw samples compared.
#[test]
fn delete_series_answers_like_prometheus() {
    use cairn_proto::prost::Message;
    let dir = tempfile::tempdir().expect("tempdir");
    let cairn = Server::start(&dir.path().join("cairn"), &["--web.enable-admin-api"]);
    let prom_port = free_port();
    let prom_url = format!("http://127.0.0.1:{prom_port}");
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("mkdir");
    std::fs::write(
        prom_dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 1m\n",
    )
    .expect("config");
    let _prom = spawn(
        "prometheus",
        &[
            "--config.file=prometheus.yml".into(),
            "--storage.tsdb.path=data".into(),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--web.enable-remote-write-receiver".into(),
            "--web.enable-admin-api".into(),
            "--log.level=warn".into(),
        ],
        &prom_dir,
    );
    let client = client();
    let mut ready = false;
    for _ in 0..MAX_POLLS {
        if client
            .get(format!("{prom_url}/-/ready"))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(ready, "Prometheus never became ready");

    // 20 minutes of three series, ending a minute ago.
    let end = chrono_like_now() / 15_000 * 15_000 - 60_000;
    let start = end - 20 * 60_000;
    let samples: Vec<(i64, f64)> = (0..=80)
        .map(|i| (start + i * 15_000, i as f64 * 1.5))
        .collect();
    let series = vec![
        series(&[("__name__", "up"), ("job", "a")], &samples),
        series(&[("__name__", "up"), ("job", "b")], &samples),
        series(&[("__name__", "other"), ("job", "a")], &samples),
    ];
    let body = snappy(
        &cairn_proto::prometheus::WriteRequest {
            timeseries: series.clone(),
            metadata: vec![],
        }
        .encode_to_vec(),
    );
    let mut req = client.post(format!("{prom_url}/api/v1/write"));
    for (k, v) in V1_HEADERS {
        req = req.header(*k, *v);
    }
    let r = req.body(body).send().expect("write to Prometheus");
    assert_eq!(r.status().as_u16(), 204, "{:?}", r.text());
    assert_eq!(write_v1(&cairn, series).status, 204);

    let cairn_url = format!("http://{}", cairn.addr);
    let secs = |ms: i64| format!("{}", ms as f64 / 1000.0);
    let deletions = [
        vec![
            ("match[]", r#"up{job="a"}"#.to_string()),
            ("start", secs(start + 5 * 60_000)),
            ("end", secs(start + 10 * 60_000)),
        ],
        vec![("match[]", r#"up{job="b"}"#.to_string())],
        vec![("match[]", r#"absent_metric"#.to_string())],
    ];
    for base in [&prom_url, &cairn_url] {
        for form in &deletions {
            let r = client
                .post(format!("{base}/api/v1/admin/tsdb/delete_series"))
                .form(form)
                .send()
                .expect("delete_series");
            assert_eq!(r.status().as_u16(), 204, "{base}: {:?}", r.text());
        }
    }
    let get = |base: &str, path: &str| -> serde_json::Value {
        let text = client
            .get(format!("{base}{path}"))
            .send()
            .expect("GET")
            .text()
            .expect("body");
        let mut v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        v["data"].take()
    };
    let at = secs(end);
    for path in [
        "/api/v1/series?match[]=up".to_string(),
        "/api/v1/series?match[]={job=\"a\"}".to_string(),
        "/api/v1/label/job/values?match[]=up".to_string(),
        format!("/api/v1/query?query=up[30m]&time={at}"),
        format!("/api/v1/query?query=count_over_time(up[30m])&time={at}"),
        format!("/api/v1/query?query=other[30m]&time={at}"),
    ] {
        let mut want = get(&prom_url, &path);
        let mut got = get(&cairn_url, &path);
        // Series lists come in no promised order.
        for v in [&mut want, &mut got] {
            if let Some(a) = v.as_array_mut() {
                a.sort_by_key(|x| x.to_string());
            }
        }
        assert_eq!(got, want, "{path}");
    }
    assert!(cairn.stop().success());
}
