//! Interop with the real Alertmanager (Debian package
//! `prometheus-alertmanager`, installed by `scripts/install-peers.sh`):
//! Cairn evaluates an alerting rule over remote-written data and posts the
//! alert to Alertmanager's v2 API; Alertmanager's webhook receiver calls a
//! small HTTP listener in this test, which sees the firing alert with its
//! labels (external labels included), rendered annotations and
//! `generatorURL`, then, after the data changes, the resolved one. Every
//! wait is a bounded poll.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::*;

/// A webhook receiver: every POST body, parsed as JSON, goes to the channel.
fn webhook() -> (u16, mpsc::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(match stream.try_clone() {
                Ok(s) => s,
                Err(_) => continue,
            });
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.trim_end().to_ascii_lowercase();
                if l.is_empty() {
                    break;
                }
                if let Some(v) = l.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if let Ok(v) = serde_json::from_slice(&body) {
                let _ = tx.send(v);
            }
        }
    });
    (port, rx)
}

struct Alertmanager {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Alertmanager on a free port with a webhook receiver and short
/// grouping times; returns it and its `host:port` once ready.
fn start_alertmanager(hook_port: u16) -> (Alertmanager, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("am.yml");
    std::fs::write(
        &config,
        format!(
            "route:
  receiver: hook
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:{hook_port}/hook
        send_resolved: true
"
        ),
    )
    .expect("write am config");
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager is installed (scripts/install-peers.sh)");
    let am = Alertmanager { child, _dir: dir };
    let client = client();
    for _ in 0..200 {
        if client
            .get(format!("http://{addr}/-/ready"))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            return (am, addr);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("Alertmanager never became ready at {addr}");
}

/// The next webhook call whose `status` is `want`, within `secs` seconds.
fn next_with_status(
    rx: &mpsc::Receiver<serde_json::Value>,
    want: &str,
    secs: u64,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(v) if v["status"] == want => return v,
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    panic!("no {want} webhook call within {secs}s");
}

#[test]
fn alertmanager_receives_firing_then_resolved() {
    let (hook_port, hooks) = webhook();
    let (_am, am_addr) = start_alertmanager(hook_port);

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("am.rules.yml"),
        "groups:
  - name: errors
    interval: 1s
    rules:
      - alert: HighErrors
        expr: infer_errors > 5
        labels:
          severity: page
        annotations:
          summary: \"{{ $labels.model }} has {{ $value }} errors\"
",
    )
    .expect("write rules");
    let config = dir.path().join("cairn.yml");
    std::fs::write(
        &config,
        format!(
            "global:
  evaluation_interval: 1s
  external_labels:
    cluster: test-1
rule_files:
  - am.rules.yml
alerting:
  alertmanagers:
    - api_version: v2
      timeout: 5s
      static_configs:
        - targets: [\"{am_addr}\"]
web:
  external_url: http://cairn.example:9201/
"
        ),
    )
    .expect("write config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf-8 path")],
    );
    let now = chrono::Utc::now().timestamp_millis();
    let ok = write_v1(
        &server,
        vec![series(
            &[("__name__", "infer_errors"), ("model", "llama")],
            &[(now, 9.0)],
        )],
    );
    assert_eq!(ok.status, 204, "{}", ok.body);

    let firing = next_with_status(&hooks, "firing", 60);
    let alert = &firing["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "HighErrors", "{firing}");
    assert_eq!(alert["labels"]["model"], "llama");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["cluster"], "test-1", "external label");
    assert_eq!(alert["annotations"]["summary"], "llama has 9 errors");
    assert_eq!(
        alert["generatorURL"],
        "http://cairn.example:9201/graph?g0.expr=infer_errors+%3E+5&g0.tab=1"
    );

    // The errors drop: the alert resolves and Alertmanager says so.
    let later = chrono::Utc::now().timestamp_millis().max(now + 1);
    let ok = write_v1(
        &server,
        vec![series(
            &[("__name__", "infer_errors"), ("model", "llama")],
            &[(later, 0.0)],
        )],
    );
    assert_eq!(ok.status, 204, "{}", ok.body);
    let resolved = next_with_status(&hooks, "resolved", 60);
    let alert = &resolved["alerts"][0];
    assert_eq!(alert["status"], "resolved", "{resolved}");
    assert_eq!(alert["labels"]["alertname"], "HighErrors");
    assert_ne!(alert["endsAt"], "0001-01-01T00:00:00Z");

    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    let sent = metrics
        .lines()
        .find(|l| l.starts_with("cairn_notifications_sent_total{"))
        .unwrap_or_default();
    assert!(sent.contains(&am_addr), "{metrics}");
    assert!(
        metrics.contains("cairn_notifications_dropped_total 0"),
        "{metrics}"
    );
    server.stop();
}
