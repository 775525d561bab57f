//! Alert notification: Alertmanager's v2 API (`POST /api/v2/alerts`), as
//! Prometheus's `notifier` package sends it.
//!
//! After each evaluation a group hands the alerts that need sending to
//! [`Notifier::send`] ([`alerts_to_send`] decides which, with Prometheus's
//! rule: firing alerts every `resend_delay`, a resolved alert at once and
//! then every `resend_delay` for as long as the group keeps it, pending
//! alerts never). Alerts wait in one bounded queue; when it is full the
//! oldest are dropped and counted. One task drains the queue in batches
//! and posts each batch to every configured Alertmanager at once; a
//! failure is logged and counted per Alertmanager, never retried (the next
//! resend covers it, as in Prometheus).
//!
//! **API Boundary:** the JSON is Alertmanager's `postableAlerts`: `labels`
//! (the alert's labels plus the external labels it does not set),
//! `annotations`, `startsAt`, `endsAt` and `generatorURL`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use cairn_engine::TimestampMs;
use parking_lot::{Mutex, RwLock};
use serde_json::{Value as Json, json};

use crate::config::{AlertmanagerConfig, Config};
use crate::metrics::{AlertmanagerLabels, NotifierMetrics};
use crate::rules::group::{AlertState, Group};

/// Alerts posted in one request at most (Prometheus's `maxBatchSize`).
pub const MAX_BATCH: usize = 256;

/// One Alertmanager's endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertmanagerTarget {
    /// `scheme://host:port/<path_prefix>/api/v2/alerts`.
    pub url: String,
    pub timeout: Duration,
}

/// Every target of an `alerting.alertmanagers` list.
pub fn targets(ams: &[AlertmanagerConfig]) -> Vec<AlertmanagerTarget> {
    let mut out = Vec::new();
    for am in ams {
        let prefix = am.path_prefix.trim_matches('/');
        for sc in &am.static_configs {
            for t in &sc.targets {
                let url = if prefix.is_empty() {
                    format!("{}://{t}/api/v2/alerts", am.scheme)
                } else {
                    format!("{}://{t}/{prefix}/api/v2/alerts", am.scheme)
                };
                out.push(AlertmanagerTarget {
                    url,
                    timeout: am.timeout.0,
                });
            }
        }
    }
    out
}

/// The `generatorURL` of an alert: Prometheus's table link for the
/// rule's expression under the external URL.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    format!(
        "{}/graph?g0.expr={}&g0.tab=1",
        external_url.trim_end_matches('/'),
        query_escape(expr)
    )
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, the rest
/// `%XX` (upper case).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn rfc3339(t: TimestampMs) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

/// The alerts of `group` that need sending after its evaluation at `ts`,
/// as Alertmanager JSON; marks them sent. `endsAt` of a firing alert is
/// `ts + 4 * max(resend_delay, interval)`, so Alertmanager resolves it by
/// itself if Cairn stops sending; a resolved alert carries its end time.
pub fn alerts_to_send(
    group: &mut Group,
    ts: TimestampMs,
    resend_delay_ms: i64,
    external_url: &str,
) -> Vec<Json> {
    let valid_for = 4 * resend_delay_ms.max(group.interval_ms);
    let mut out = Vec::new();
    for rs in &mut group.rules {
        let mut sent: Vec<_> = rs
            .alerts
            .values_mut()
            .filter(|a| {
                if a.state == AlertState::Pending {
                    return false;
                }
                match (a.resolved_at, a.last_sent_at) {
                    (_, None) => true,
                    (Some(r), Some(s)) if r > s => true,
                    (_, Some(s)) => s + resend_delay_ms < ts,
                }
            })
            .collect();
        sent.sort_by(|a, b| a.labels.cmp(&b.labels));
        let url = generator_url(external_url, &rs.rule.expr_text);
        for a in sent {
            a.last_sent_at = Some(ts);
            a.valid_until = ts + valid_for;
            let ends_at = match (a.state, a.resolved_at) {
                (AlertState::Inactive, Some(r)) => r,
                _ => a.valid_until,
            };
            out.push(json!({
                "labels": Json::Object(a.labels.iter().map(|l| (l.name.to_string(), Json::String(l.value.to_string()))).collect()),
                "annotations": Json::Object(a.annotations.iter().map(|(k, v)| (k.clone(), Json::String(v.clone()))).collect()),
                "startsAt": rfc3339(a.fired_at.unwrap_or(a.active_at)),
                "endsAt": rfc3339(ends_at),
                "generatorURL": url,
            }));
        }
    }
    out
}

/// What a reload may change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotifierSettings {
    pub targets: Vec<AlertmanagerTarget>,
    pub external_labels: BTreeMap<String, String>,
}

impl NotifierSettings {
    pub fn from_config(config: &Config) -> NotifierSettings {
        NotifierSettings {
            targets: targets(&config.alerting.alertmanagers),
            external_labels: config.global.external_labels.clone(),
        }
    }
}

/// The bounded alert queue and the Alertmanagers it drains to.
pub struct Notifier {
    queue: Mutex<VecDeque<Json>>,
    capacity: usize,
    wake: tokio::sync::Notify,
    settings: RwLock<NotifierSettings>,
    metrics: NotifierMetrics,
}

impl Notifier {
    pub fn new(settings: NotifierSettings, capacity: usize, metrics: NotifierMetrics) -> Notifier {
        metrics.queue_capacity.set(capacity as i64);
        metrics
            .alertmanagers_discovered
            .set(settings.targets.len() as i64);
        Notifier {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            wake: tokio::sync::Notify::new(),
            settings: RwLock::new(settings),
            metrics,
        }
    }

    /// Replaces the targets and external labels (configuration reload).
    pub fn apply(&self, settings: NotifierSettings) {
        self.metrics
            .alertmanagers_discovered
            .set(settings.targets.len() as i64);
        *self.settings.write() = settings;
    }

    /// Queues alerts, external labels added where the alert has none of
    /// that name. When the queue overflows the oldest alerts are dropped.
    pub fn send(&self, alerts: Vec<Json>) {
        if alerts.is_empty() {
            return;
        }
        let ext = self.settings.read().external_labels.clone();
        let mut q = self.queue.lock();
        for mut a in alerts {
            if let Some(labels) = a.get_mut("labels").and_then(Json::as_object_mut) {
                for (k, v) in &ext {
                    labels
                        .entry(k.clone())
                        .or_insert_with(|| Json::String(v.clone()));
                }
            }
            q.push_back(a);
        }
        let over = q.len().saturating_sub(self.capacity);
        if over > 0 {
            q.drain(..over);
            self.metrics.dropped.inc_by(over as u64);
            tracing::warn!(dropped = over, "alert queue full: oldest alerts dropped");
        }
        self.metrics.queue_length.set(q.len() as i64);
        drop(q);
        self.wake.notify_one();
    }

    /// Alerts waiting to be sent.
    pub fn queue_len(&self) -> usize {
        self.queue.lock().len()
    }

    /// Drains the queue to every Alertmanager until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let client = match reqwest::Client::builder().build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the Alertmanager HTTP client: alerts will not be sent");
                return;
            }
        };
        loop {
            let batch: Vec<Json> = {
                let mut q = self.queue.lock();
                let n = q.len().min(MAX_BATCH);
                let b = q.drain(..n).collect();
                self.metrics.queue_length.set(q.len() as i64);
                b
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = stop.changed() => return,
                }
            }
            if *stop.borrow() {
                return;
            }
            let targets = self.settings.read().targets.clone();
            if targets.is_empty() {
                continue;
            }
            let count = batch.len() as u64;
            let body = Json::Array(batch).to_string();
            let n = body.len();
            let sends = targets.into_iter().map(|t| {
                let (client, body, metrics) = (client.clone(), body.clone(), self.metrics.clone());
                async move {
                    let label = AlertmanagerLabels {
                        alertmanager: t.url.clone(),
                    };
                    let r = client
                        .post(&t.url)
                        .header("content-type", "application/json")
                        .timeout(t.timeout)
                        .body(body)
                        .send()
                        .await;
                    match r {
                        Ok(resp) if resp.status().is_success() => {
                            metrics.sent.get_or_create(&label).inc_by(count);
                        }
                        Ok(resp) => {
                            let status = resp.status();
                            let text = resp.text().await.unwrap_or_default();
                            metrics.errors.get_or_create(&label).inc_by(count);
                            tracing::warn!(alertmanager = %t.url, %status, body = %text.trim(), "Alertmanager rejected alerts");
                        }
                        Err(e) => {
                            metrics.errors.get_or_create(&label).inc_by(count);
                            tracing::warn!(alertmanager = %t.url, error = %e, "cannot send alerts to Alertmanager");
                        }
                    }
                }
            });
            futures_join_all(sends.collect()).await;
            tracing::debug!(bytes = n, "alert batch sent");
        }
    }
}

/// Runs the futures concurrently and waits for all.
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(fs: Vec<F>) {
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_url_is_prometheus_table_link() {
        assert_eq!(
            generator_url("http://cairn:9201/", "sum(rate(x{a=\"b\"}[5m])) > 0.5"),
            "http://cairn:9201/graph?g0.expr=sum%28rate%28x%7Ba%3D%22b%22%7D%5B5m%5D%29%29+%3E+0.5&g0.tab=1"
        );
    }

    #[test]
    fn targets_join_scheme_prefix_and_api_path() {
        let c = crate::config::Config::from_yaml(
            "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [a:9093, b:9093]\n    - scheme: https\n      path_prefix: /am/\n      timeout: 3s\n      static_configs:\n        - targets: [c:443]\n",
        )
        .expect("config");
        let t = targets(&c.alerting.alertmanagers);
        let urls: Vec<_> = t.iter().map(|t| t.url.as_str()).collect();
        assert_eq!(
            urls,
            vec![
                "http://a:9093/api/v2/alerts",
                "http://b:9093/api/v2/alerts",
                "https://c:443/am/api/v2/alerts"
            ]
        );
        assert_eq!(t[2].timeout, Duration::from_secs(3));
    }

    /// Prometheus's resend rule over a fire, resend, resolve sequence.
    #[test]
    fn firing_alerts_are_resent_and_resolved_ones_carry_their_end() {
        use crate::rules::file::{NameValidation, parse_rule_file};
        use crate::rules::group::EvalContext;
        use cairn_engine::{Db, DbOptions, Labels, Sample, WriteSeries};
        const MIN: i64 = 60_000;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path(), DbOptions::default()).expect("db");
        // `up` is 1 until 3m, then absent.
        db.append(&[WriteSeries {
            labels: Labels::from_pairs([("__name__", "up"), ("job", "api")]),
            samples: (0..=3).map(|m| Sample::new(m * MIN, 1.0)).collect(),
        }])
        .expect("append");
        let f = parse_rule_file(
            std::path::Path::new("t.yml"),
            "groups:\n  - name: g\n    rules:\n      - alert: Up\n        expr: up == 1\n        for: 1m\n        annotations:\n          s: \"{{ $labels.job }}\"\n",
            NameValidation::Utf8,
        )
        .expect("rules");
        let mut g = Group::new("t.yml".into(), &f.groups[0], MIN, 0);
        let engine = cairn_query::Engine::new(cairn_query::EngineOptions {
            lookback_delta_ms: 30_000,
            ..Default::default()
        });
        let ext = BTreeMap::new();
        let ctx = EvalContext {
            engine: &engine,
            sink: &db,
            external_labels: &ext,
            external_url: "http://c",
        };
        let mut sent_at = Vec::new();
        for m in 0..=6 {
            let ts = m * MIN;
            g.eval(&ctx, ts);
            // Resend delay 2m, interval 1m: endsAt = ts + 8m.
            for a in alerts_to_send(&mut g, ts, 2 * MIN, "http://c") {
                sent_at.push((m, a["endsAt"].as_str().unwrap_or("").to_string()));
                assert_eq!(a["labels"]["alertname"], "Up");
                assert_eq!(a["annotations"]["s"], "api");
                assert_eq!(a["startsAt"], "1970-01-01T00:01:00.000Z");
                assert_eq!(
                    a["generatorURL"],
                    "http://c/graph?g0.expr=up+%3D%3D+1&g0.tab=1"
                );
            }
        }
        assert_eq!(
            sent_at,
            vec![
                // Pending at 0m: not sent. Fires at 1m: sent.
                (1, "1970-01-01T00:09:00.000Z".to_string()),
                // Resent once more than 2m passed.
                (4, "1970-01-01T00:04:00.000Z".to_string()),
            ],
            "resolved at 4m (no sample within 30s lookback), sent at once with its end time"
        );
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_them() {
        let m = NotifierMetrics::default();
        let mut s = NotifierSettings::default();
        s.external_labels.insert("cluster".into(), "eu".into());
        s.external_labels.insert("alertname".into(), "never".into());
        let n = Notifier::new(s, 3, m.clone());
        let alerts: Vec<Json> = (0..5)
            .map(|i| json!({"labels": {"alertname": format!("A{i}")}}))
            .collect();
        n.send(alerts);
        assert_eq!(n.queue_len(), 3);
        assert_eq!(m.dropped.get(), 2);
        let q = n.queue.lock();
        assert_eq!(q[0]["labels"]["alertname"], "A2", "oldest dropped first");
        assert_eq!(q[0]["labels"]["cluster"], "eu", "external label added");
    }
}
