//! `cairn serve` with `rule_files`: a recording rule's series becomes
//! queryable, an alerting rule fires and is listed by `/api/v1/alerts` and
//! `/api/v1/rules` in Prometheus's shapes, and a broken rule file stops
//! start-up with the problem named; reload (`/-/reload`, SIGHUP) swaps in
//! valid rules and keeps the old ones on error; a restart keeps the `for`
//! progress of pending alerts. Every wait is a bounded poll.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

const RULES: &str = "groups:
  - name: smoke
    interval: 1s
    rules:
      - record: cairn_rule_one
        expr: vector(1)
        labels:
          source: rules
      - alert: AlwaysOn
        expr: cairn_rule_one > 0
        labels:
          severity: info
        annotations:
          summary: \"value {{ $value }} from {{ $labels.source }}\"
";

fn json(url: &str) -> serde_json::Value {
    let body = client()
        .get(url)
        .send()
        .and_then(|r| r.text())
        .expect("response");
    serde_json::from_str(&body).expect("JSON response")
}

#[test]
fn rules_record_and_alert_in_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("smoke.rules.yml");
    std::fs::write(&rules, RULES).expect("write rules");
    let config = dir.path().join("cairn.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files:\n  - {}/*.rules.yml\n",
            dir.path().display()
        ),
    )
    .expect("write config");
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", config.to_str().expect("utf-8 path")]);

    let mut firing = serde_json::Value::Null;
    for _ in 0..120 {
        let alerts = json(&server.url("/api/v1/alerts"));
        if alerts["data"]["alerts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            firing = alerts;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let alert = &firing["data"]["alerts"][0];
    assert_eq!(alert["state"], "firing", "{firing}\n{}", server.log());
    assert_eq!(alert["labels"]["alertname"], "AlwaysOn");
    assert_eq!(alert["labels"]["severity"], "info");
    assert_eq!(alert["annotations"]["summary"], "value 1 from rules");

    let q = json(&server.url("/api/v1/query?query=cairn_rule_one"));
    assert_eq!(q["data"]["result"][0]["metric"]["source"], "rules", "{q}");
    assert_eq!(q["data"]["result"][0]["value"][1], "1");
    let q = json(&server.url("/api/v1/query?query=ALERTS"));
    assert_eq!(
        q["data"]["result"][0]["metric"]["alertstate"], "firing",
        "{q}"
    );

    let r = json(&server.url("/api/v1/rules?type=alert"));
    let group = &r["data"]["groups"][0];
    assert_eq!(group["name"], "smoke");
    assert_eq!(group["interval"], 1.0);
    assert_eq!(group["rules"].as_array().map(|a| a.len()), Some(1), "{r}");
    assert_eq!(group["rules"][0]["health"], "ok");
    assert_eq!(group["rules"][0]["state"], "firing");
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    assert!(
        metrics.contains("cairn_rule_group_iterations_total{rule_group=")
            && metrics.contains("cairn_rule_group_last_duration_seconds{rule_group=")
            && metrics.contains("cairn_rule_evaluations_total{rule_group=")
            && metrics.contains("smoke.rules.yml;smoke"),
        "{metrics}"
    );
    let bad = client()
        .get(server.url("/api/v1/rules?type=nope"))
        .send()
        .expect("request");
    assert_eq!(bad.status().as_u16(), 400);
    server.stop();
}

#[test]
fn a_broken_rule_file_stops_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("bad.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: rate(x)\n",
    )
    .expect("write");
    let config = dir.path().join("cairn.yml");
    std::fs::write(&config, format!("rule_files:\n  - {}\n", rules.display())).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--http-listen", "127.0.0.1:0"])
        .args([
            "--otlp-grpc-listen",
            "127.0.0.1:0",
            "--otlp-http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run cairn");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.yml:4: group \"g\", rule 1, \"x\": could not parse expression"),
        "{stderr}"
    );
}

fn post(url: &str, put: bool) -> (u16, String) {
    let c = client();
    let r = if put { c.put(url) } else { c.post(url) }
        .send()
        .expect("request");
    let status = r.status().as_u16();
    (status, r.text().unwrap_or_default())
}

fn metric(server: &Server, name: &str) -> Option<f64> {
    let text = client()
        .get(server.url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// The `activeAt` of the first alert of the first rule of group `group`.
fn active_at(server: &Server, group: &str) -> Option<String> {
    let r = json(&server.url("/api/v1/rules?type=alert"));
    r["data"]["groups"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == group)?["rules"][0]["alerts"][0]["activeAt"]
        .as_str()
        .map(str::to_string)
}

const KEEP: &str = "groups:
  - name: keep
    interval: 1s
    rules:
      - alert: Kept
        expr: vector(1)
        for: 1h
";

#[test]
fn reload_swaps_valid_rules_and_keeps_old_ones_on_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("r.rules.yml");
    std::fs::write(&rules, KEEP).expect("write rules");
    let config = dir.path().join("cairn.yml");
    std::fs::write(&config, "rule_files:\n  - '*.rules.yml'\n").expect("write config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf-8 path")],
    );
    let mut first = None;
    for _ in 0..120 {
        first = active_at(&server, "keep");
        if first.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = first.unwrap_or_else(|| panic!("alert never pending\n{}", server.log()));
    assert_eq!(
        metric(&server, "cairn_config_last_reload_successful"),
        Some(1.0)
    );

    // A broken file: 500 naming the problem, the old rules keep running.
    std::fs::write(
        dir.path().join("broken.rules.yml"),
        "groups:\n  - name: b\n    rules:\n      - record: x\n        expr: sum(\n",
    )
    .expect("write");
    let (status, body) = post(&server.url("/-/reload"), false);
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("failed to reload config") && body.contains("broken.rules.yml:4"),
        "{body}"
    );
    assert_eq!(
        metric(&server, "cairn_config_last_reload_successful"),
        Some(0.0)
    );
    assert!(server.log().contains("configuration reload failed"));
    assert_eq!(active_at(&server, "keep").as_deref(), Some(first.as_str()));

    // Fixed, plus a new group: the unchanged group keeps its alert's
    // `for` progress, the new one runs (PUT, as Prometheus accepts).
    std::fs::write(
        dir.path().join("broken.rules.yml"),
        "groups:\n  - name: added\n    interval: 1s\n    rules:\n      - alert: Added\n        expr: vector(2)\n        for: 1h\n",
    )
    .expect("write");
    let (status, body) = post(&server.url("/-/reload"), true);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        metric(&server, "cairn_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(
        metric(
            &server,
            "cairn_config_last_reload_success_timestamp_seconds"
        )
        .is_some_and(|t| t > 0.0)
    );
    assert_eq!(active_at(&server, "keep").as_deref(), Some(first.as_str()));
    let mut added = None;
    for _ in 0..100 {
        added = active_at(&server, "added");
        if added.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        added.is_some(),
        "new group never evaluated\n{}",
        server.log()
    );
    let alerts_added = |server: &Server| {
        json(&server.url("/api/v1/query?query=ALERTS%7Balertname%3D%22Added%22%7D"))["data"]["result"]
            .as_array()
            .map(|a| a.len())
    };
    let mut written = false;
    for _ in 0..50 {
        if alerts_added(&server) == Some(1) {
            written = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(written, "ALERTS of the added group never written");

    // SIGHUP reloads too: the group removed from the files disappears.
    std::fs::remove_file(dir.path().join("broken.rules.yml")).expect("rm");
    let pid = server.pid();
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill -HUP");
    assert!(ok.success());
    let mut gone = false;
    for _ in 0..100 {
        let r = json(&server.url("/api/v1/rules"));
        let names: Vec<_> = r["data"]["groups"]
            .as_array()
            .map(|g| g.iter().map(|g| g["name"].clone()).collect())
            .unwrap_or_default();
        if names == vec![serde_json::json!("keep")] {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gone, "SIGHUP did not reload\n{}", server.log());
    // The removed group's series got staleness markers: gone at once,
    // not after the 5m lookback.
    assert_eq!(alerts_added(&server), Some(0));
    assert_eq!(active_at(&server, "keep").as_deref(), Some(first.as_str()));
    server.stop();
}

fn parse_time(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("RFC 3339 time")
        .with_timezone(&chrono::Utc)
}

/// A restart between pending and firing keeps the `for` progress: the
/// restored active-since time moves forward by the time Cairn was down,
/// so it is earlier than the restart (without a restore it would be the
/// first evaluation after it).
#[test]
fn a_restart_keeps_the_for_progress_of_pending_alerts() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.rules.yml"),
        "groups:\n  - name: pend\n    interval: 1s\n    rules:\n      - alert: Slow\n        expr: vector(1)\n        for: 10m\n",
    )
    .expect("write rules");
    let config = dir.path().join("cairn.yml");
    std::fs::write(
        &config,
        "rule_files:\n  - '*.rules.yml'\nrules:\n  for_grace_period: 2s\n",
    )
    .expect("write config");
    let data = dir.path().join("data");
    let args = ["--config", config.to_str().expect("utf-8 path")];
    let server = Server::start(&data, &args);
    let mut first = None;
    for _ in 0..120 {
        first = active_at(&server, "pend");
        if first.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = parse_time(&first.unwrap_or_else(|| panic!("never pending\n{}", server.log())));
    // Pending for about 6 s before the stop.
    std::thread::sleep(Duration::from_secs(6));
    assert!(server.stop().success());
    std::thread::sleep(Duration::from_secs(2));

    let restart = chrono::Utc::now();
    let server = Server::start(&data, &args);
    let mut restored = None;
    for _ in 0..100 {
        if let Some(t) = active_at(&server, "pend").map(|t| parse_time(&t))
            && t < restart
        {
            restored = Some(t);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let restored = restored.unwrap_or_else(|| {
        panic!(
            "activeAt never restored before the restart at {restart}: {:?}\n{}",
            active_at(&server, "pend"),
            server.log()
        )
    });
    // Moved forward by the outage (at least the 2 s sleep).
    assert!(
        restored >= first + chrono::Duration::seconds(2),
        "first {first}, restored {restored}"
    );
    let r = json(&server.url("/api/v1/rules?type=alert"));
    assert_eq!(
        r["data"]["groups"][0]["rules"][0]["state"], "pending",
        "{r}"
    );
    assert!(server.log().contains("alert `for` state restored"));
    server.stop();
}
