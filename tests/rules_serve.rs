//! `cairn serve` with `rule_files`: a recording rule's series becomes
//! queryable, an alerting rule fires and is listed by `/api/v1/alerts` and
//! `/api/v1/rules` in Prometheus's shapes, and a broken rule file stops
//! start-up with the problem named. Every wait is a bounded poll.

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
