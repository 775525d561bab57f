//! The rule manager: loads the `rule_files` globs, runs every group on its
//! interval, and renders `/api/v1/rules` and `/api/v1/alerts`.
//!
//! Each group runs in its own task. Evaluation times are aligned to the
//! group's interval and spread by a stable per-group offset (a hash of file
//! and name), as Prometheus spreads them, so groups do not all start at
//! once and a restart keeps each group's phase. The evaluation itself runs
//! on a blocking thread (queries and WAL appends are synchronous). A group
//! slower than its interval skips the iterations it missed (counted in
//! [`GroupStats::iterations_missed`] and logged) instead of piling up.
//!
//! Loading is all-or-nothing: one invalid file fails the whole load with
//! every problem listed, so a half-loaded rule set never runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_engine::{Labels, Querier, TimestampMs, WriteSeries};
use cairn_query::Engine;
use parking_lot::Mutex;
use serde_json::{Value as Json, json};

use crate::http::AppState;
use crate::remote_write::IncomingSeries;
use crate::rules::file::{NameValidation, RuleFileError, RuleKind, load_rule_file};
use crate::rules::group::{AlertState, EvalContext, Group, RuleSink};

/// Counters of one group's scheduling.
#[derive(Debug, Default)]
pub struct GroupStats {
    pub iterations: AtomicU64,
    pub iterations_missed: AtomicU64,
}

/// A loaded group with its counters.
pub struct ManagedGroup {
    pub group: Mutex<Group>,
    pub stats: GroupStats,
}

/// All loaded rule groups.
pub struct RuleManager {
    pub groups: Vec<Arc<ManagedGroup>>,
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
}

/// Expands `rule_files` entries: each a path, or a pattern with `*`, `?` or
/// `[...]` in any path segment (as Go's `filepath.Glob`), relative paths
/// resolved against `base`. Matches come sorted; a pattern matching
/// nothing is not an error (as in Prometheus).
pub fn expand_globs(patterns: &[String], base: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in patterns {
        let full = if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base.join(p)
        };
        let mut found = vec![PathBuf::new()];
        for comp in full.components() {
            let seg = comp.as_os_str().to_string_lossy().to_string();
            if !seg.contains(['*', '?', '[']) {
                found = found.into_iter().map(|f| f.join(&seg)).collect();
                continue;
            }
            let re = glob_regex(&seg);
            let mut next = Vec::new();
            for dir in found {
                let Ok(rd) = std::fs::read_dir(if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    &dir
                }) else {
                    continue;
                };
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if re.as_ref().is_some_and(|re| re.is_match(&name)) {
                        next.push(dir.join(name));
                    }
                }
            }
            next.sort();
            found = next;
        }
        out.extend(found.into_iter().filter(|f| f.exists()));
    }
    out.sort();
    out.dedup();
    out
}

/// A path segment pattern as an anchored regex (`None`: malformed).
fn glob_regex(seg: &str) -> Option<regex::Regex> {
    let mut re = String::from("^");
    let mut chars = seg.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                re.push('[');
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    match c {
                        '^' | '!' if re.ends_with('[') => re.push('^'),
                        '\\' | '[' => {
                            re.push('\\');
                            re.push(c)
                        }
                        c => re.push(c),
                    }
                }
                re.push(']');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).ok()
}

impl RuleManager {
    /// Loads every file the patterns match. Any invalid file fails the
    /// whole load with every problem found.
    pub fn load(
        patterns: &[String],
        base: &Path,
        default_interval_ms: i64,
        default_offset_ms: i64,
        external_labels: BTreeMap<String, String>,
        external_url: String,
    ) -> Result<RuleManager, Vec<RuleFileError>> {
        let mut groups = Vec::new();
        let mut errors = Vec::new();
        for path in expand_globs(patterns, base) {
            match load_rule_file(&path, NameValidation::Utf8) {
                Ok(f) => {
                    for g in &f.groups {
                        groups.push(Arc::new(ManagedGroup {
                            group: Mutex::new(Group::new(
                                path.clone(),
                                g,
                                default_interval_ms,
                                default_offset_ms,
                            )),
                            stats: GroupStats::default(),
                        }));
                    }
                }
                Err(e) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            Ok(RuleManager {
                groups,
                external_labels,
                external_url,
            })
        } else {
            Err(errors)
        }
    }

    /// Starts one task per group; they run until `stop` turns true.
    pub fn spawn(
        self: &Arc<Self>,
        engine: Engine,
        sink: Arc<dyn RuleSink + Send + Sync>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.groups
            .iter()
            .map(|g| {
                let (mgr, g, engine, sink, mut stop) =
                    (self.clone(), g.clone(), engine.clone(), sink.clone(), stop.clone());
                tokio::spawn(async move {
                    let (interval, offset) = {
                        let grp = g.group.lock();
                        let key = format!("{}\u{0}{}", grp.file.display(), grp.name);
                        let interval = grp.interval_ms.max(1);
                        let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
                        (interval, (hash % interval as u64) as i64)
                    };
                    let now = chrono::Utc::now().timestamp_millis();
                    let mut next = next_slot(now, interval, offset);
                    loop {
                        let wait = (next - chrono::Utc::now().timestamp_millis()).max(0);
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                            _ = stop.changed() => return,
                        }
                        if *stop.borrow() {
                            return;
                        }
                        let (m, gg, e, s) = (mgr.clone(), g.clone(), engine.clone(), sink.clone());
                        let ts = next;
                        let _ = tokio::task::spawn_blocking(move || {
                            let ctx = EvalContext {
                                engine: &e,
                                sink: &*s,
                                external_labels: &m.external_labels,
                                external_url: &m.external_url,
                            };
                            gg.group.lock().eval(&ctx, ts);
                        })
                        .await;
                        g.stats.iterations.fetch_add(1, Ordering::Relaxed);
                        next += interval;
                        let now = chrono::Utc::now().timestamp_millis();
                        if now > next {
                            let missed = (now - next) / interval + 1;
                            g.stats.iterations_missed.fetch_add(missed as u64, Ordering::Relaxed);
                            tracing::warn!(group = %g.group.lock().name, missed, "rule group evaluation slower than its interval: iterations skipped");
                            next += missed * interval;
                        }
                    }
                })
            })
            .collect()
    }
}

/// The first time at or after `now` that is `offset` past a multiple of
/// `interval`.
pub fn next_slot(now: TimestampMs, interval: i64, offset: i64) -> TimestampMs {
    let base = now - now.rem_euclid(interval) + offset;
    if base >= now { base } else { base + interval }
}

/// The server's storage as the rules' sink: appends go through the same
/// WAL-durable path as remote write.
pub struct StorageSink(pub Arc<AppState>);

impl RuleSink for StorageSink {
    fn querier(&self) -> Result<Arc<dyn Querier>, String> {
        let st = self.0.storage().map_err(|e| e.to_string())?;
        st.querier().map_err(|e| e.to_string())
    }
    fn append(&self, series: Vec<WriteSeries>) -> Result<(), String> {
        let st = self.0.storage().map_err(|e| e.to_string())?;
        let incoming = series
            .into_iter()
            .map(|s| IncomingSeries {
                labels: s.labels,
                samples: s.samples,
            })
            .collect();
        let report = st.append(incoming).map_err(|e| e.to_string())?;
        if let Some((labels, reason, n, _)) = report.rejected.first() {
            tracing::debug!(series = %labels, ?reason, samples = n, "rule output rejected");
        }
        Ok(())
    }
}

// --- API shapes ------------------------------------------------------------

/// A time as Prometheus's API writes it (RFC 3339, UTC, nanosecond
/// precision trimmed); never evaluated is Go's zero time.
fn rfc3339(t: Option<TimestampMs>) -> String {
    match t.and_then(chrono::DateTime::from_timestamp_millis) {
        Some(d) => d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

/// A float as Go's `strconv.FormatFloat(v, 'e', -1, 64)`: `1e+00`, `2.5e-01`.
pub fn go_fmt_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let s = format!("{v:e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

fn labels_json(l: &Labels) -> Json {
    Json::Object(
        l.iter()
            .map(|l| (l.name.to_string(), Json::String(l.value.to_string())))
            .collect(),
    )
}

fn map_json(m: &BTreeMap<String, String>) -> Json {
    Json::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect(),
    )
}

fn alert_json(a: &crate::rules::group::Alert) -> Json {
    let mut j = json!({
        "labels": labels_json(&a.labels),
        "annotations": map_json(&a.annotations),
        "state": a.state.as_str(),
        "activeAt": rfc3339(Some(a.active_at)),
        "value": go_fmt_e(a.value),
    });
    if let Some(k) = a.keep_firing_since {
        j["keepFiringSince"] = Json::String(rfc3339(Some(k)));
    }
    j
}

/// Filters of `/api/v1/rules`.
#[derive(Debug, Default)]
pub struct RulesFilter {
    /// `alert` or `record`; `None` for both.
    pub kind: Option<String>,
    pub rule_names: Vec<String>,
    pub group_names: Vec<String>,
    pub files: Vec<String>,
    pub exclude_alerts: bool,
}

impl RuleManager {
    /// The `data` of `/api/v1/rules`, in Prometheus's shape.
    pub fn rules_json(&self, f: &RulesFilter) -> Json {
        let mut groups = Vec::new();
        for mg in &self.groups {
            let g = mg.group.lock();
            let file = g.file.display().to_string();
            if !f.group_names.is_empty() && !f.group_names.contains(&g.name) {
                continue;
            }
            if !f.files.is_empty() && !f.files.contains(&file) {
                continue;
            }
            let mut rules = Vec::new();
            for rs in &g.rules {
                let r = &rs.rule;
                if !f.rule_names.is_empty() && !f.rule_names.iter().any(|n| n == r.name()) {
                    continue;
                }
                let common = |j: &mut Json| {
                    j["health"] = json!(rs.health.as_str());
                    j["lastError"] = json!(rs.last_error.clone().unwrap_or_default());
                    j["evaluationTime"] = json!(rs.eval_duration.as_secs_f64());
                    j["lastEvaluation"] = json!(rfc3339(rs.last_eval));
                };
                match &r.kind {
                    RuleKind::Alert(name) => {
                        if f.kind.as_deref() == Some("record") {
                            continue;
                        }
                        let mut alerts: Vec<_> = rs
                            .alerts
                            .values()
                            .filter(|a| a.state != AlertState::Inactive)
                            .collect();
                        alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
                        let state = alerts
                            .iter()
                            .map(|a| a.state)
                            .max_by_key(|s| match s {
                                AlertState::Firing => 2,
                                AlertState::Pending => 1,
                                AlertState::Inactive => 0,
                            })
                            .unwrap_or(AlertState::Inactive);
                        let mut j = json!({
                            "state": state.as_str(),
                            "name": name,
                            "query": r.expr_text.trim(),
                            "duration": r.for_.as_secs_f64(),
                            "keepFiringFor": r.keep_firing_for.as_secs_f64(),
                            "labels": map_json(&r.labels),
                            "annotations": map_json(&r.annotations),
                            "type": "alerting",
                        });
                        if !f.exclude_alerts {
                            j["alerts"] = Json::Array(alerts.into_iter().map(alert_json).collect());
                        }
                        common(&mut j);
                        rules.push(j);
                    }
                    RuleKind::Record(name) => {
                        if f.kind.as_deref() == Some("alert") {
                            continue;
                        }
                        let mut j = json!({
                            "name": name,
                            "query": r.expr_text.trim(),
                            "labels": map_json(&r.labels),
                            "type": "recording",
                        });
                        common(&mut j);
                        rules.push(j);
                    }
                }
            }
            if rules.is_empty() && (f.kind.is_some() || !f.rule_names.is_empty()) {
                continue;
            }
            groups.push(json!({
                "name": g.name,
                "file": file,
                "rules": rules,
                "interval": g.interval_ms as f64 / 1000.0,
                "limit": g.limit,
                "evaluationTime": g.eval_duration.as_secs_f64(),
                "lastEvaluation": rfc3339(g.last_eval),
            }));
        }
        json!({ "groups": groups })
    }

    /// The `data` of `/api/v1/alerts`: every pending or firing alert.
    pub fn alerts_json(&self) -> Json {
        let mut alerts = Vec::new();
        for mg in &self.groups {
            let g = mg.group.lock();
            for rs in &g.rules {
                let mut v: Vec<_> = rs
                    .alerts
                    .values()
                    .filter(|a| a.state != AlertState::Inactive)
                    .collect();
                v.sort_by(|a, b| a.labels.cmp(&b.labels));
                alerts.extend(v.into_iter().map(alert_json));
            }
        }
        json!({ "alerts": alerts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_engine::{Db, DbOptions, Sample};

    #[test]
    fn slots_are_aligned_and_offset() {
        assert_eq!(next_slot(125_000, 60_000, 7_000), 127_000);
        assert_eq!(next_slot(128_000, 60_000, 7_000), 187_000);
        assert_eq!(next_slot(127_000, 60_000, 7_000), 127_000);
    }

    #[test]
    fn go_exponent_format() {
        for (v, want) in [
            (1.0, "1e+00"),
            (0.25, "2.5e-01"),
            (12345.0, "1.2345e+04"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(go_fmt_e(v), want);
        }
    }

    #[test]
    fn globs_expand_sorted_and_load_all_or_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = "groups:\n  - name: g\n    rules:\n      - alert: Up\n        expr: up == 1\n        for: 1m\n        annotations:\n          summary: \"{{ $labels.job }} is up\"\n      - record: up:sum\n        expr: sum(up)\n";
        std::fs::create_dir(dir.path().join("rules")).expect("mkdir");
        std::fs::write(
            dir.path().join("rules/b.yml"),
            good.replace("name: g", "name: b"),
        )
        .expect("write");
        std::fs::write(dir.path().join("rules/a.yml"), good).expect("write");
        std::fs::write(dir.path().join("rules/a.txt"), "not rules").expect("write");
        let files = expand_globs(&["rules/*.yml".into(), "nothing/*.yml".into()], dir.path());
        let names: Vec<_> = files.iter().filter_map(|f| f.file_name()).collect();
        assert_eq!(names, vec!["a.yml", "b.yml"]);

        let mgr = RuleManager::load(
            &["rules/*.yml".into()],
            dir.path(),
            60_000,
            0,
            BTreeMap::new(),
            String::new(),
        )
        .unwrap_or_else(|e| panic!("load: {e:?}"));
        assert_eq!(mgr.groups.len(), 2);

        // One broken file fails the whole load.
        std::fs::write(
            dir.path().join("rules/c.yml"),
            "groups:\n  - name: x\n    rules:\n      - record: r\n",
        )
        .expect("write");
        let errs = RuleManager::load(
            &["rules/*.yml".into()],
            dir.path(),
            60_000,
            0,
            BTreeMap::new(),
            String::new(),
        )
        .err()
        .expect("broken file fails the load");
        assert!(
            errs[0].to_string().contains("field 'expr' must be set"),
            "{errs:?}"
        );

        // The API shapes after one evaluation over real data.
        let db = Db::open(&dir.path().join("data"), DbOptions::default()).expect("db");
        db.append(&[WriteSeries {
            labels: Labels::from_pairs([("__name__", "up"), ("job", "api")]),
            samples: vec![Sample::new(1_000, 1.0)],
        }])
        .expect("append");
        let engine = Engine::default();
        let ctx = EvalContext {
            engine: &engine,
            sink: &db,
            external_labels: &mgr.external_labels,
            external_url: "",
        };
        mgr.groups[0].group.lock().eval(&ctx, 60_000);
        let rules = mgr.rules_json(&RulesFilter::default());
        let g0 = &rules["groups"][0];
        assert_eq!(g0["name"], "g");
        assert_eq!(g0["interval"], 60.0);
        assert_eq!(g0["lastEvaluation"], "1970-01-01T00:01:00Z");
        let alert_rule = &g0["rules"][0];
        assert_eq!(alert_rule["type"], "alerting");
        assert_eq!(alert_rule["state"], "pending");
        assert_eq!(alert_rule["health"], "ok");
        assert_eq!(alert_rule["duration"], 60.0);
        assert_eq!(
            alert_rule["alerts"][0]["annotations"]["summary"],
            "api is up"
        );
        assert_eq!(alert_rule["alerts"][0]["value"], "1e+00");
        assert_eq!(alert_rule["alerts"][0]["activeAt"], "1970-01-01T00:01:00Z");
        assert_eq!(g0["rules"][1]["type"], "recording");
        assert_eq!(g0["rules"][1]["query"], "sum(up)");
        let only_rec = mgr.rules_json(&RulesFilter {
            kind: Some("record".into()),
            ..Default::default()
        });
        assert_eq!(
            only_rec["groups"][0]["rules"].as_array().map(|a| a.len()),
            Some(1)
        );
        // The second group was never evaluated.
        assert_eq!(rules["groups"][1]["rules"][0]["health"], "unknown");
        assert_eq!(rules["groups"][1]["lastEvaluation"], "0001-01-01T00:00:00Z");
        let alerts = mgr.alerts_json();
        assert_eq!(alerts["alerts"].as_array().map(|a| a.len()), Some(1));
        assert_eq!(alerts["alerts"][0]["labels"]["alertname"], "Up");
    }
}
