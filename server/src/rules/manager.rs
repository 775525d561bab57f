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
//! every problem listed, so a half-loaded rule set never runs. A reload
//! ([`RuleManager::reload`], on SIGHUP and `POST /-/reload`) loads the new
//! set the same way and swaps it in only when it is valid: a group whose
//! definition did not change keeps its task and state; a changed group
//! takes over its rules' alerts; a removed group's task stops.
//!
//! After each evaluation the group's alerts that need sending go to the
//! [`Notifier`]. At start-up, alerting rules restore their `for` progress
//! from `ALERTS_FOR_STATE` after the second evaluation of their group
//! ([`Group::restore_for_state`]), as Prometheus does.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cairn_engine::{Labels, Querier, TimestampMs, WriteSeries};
use cairn_query::Engine;
use parking_lot::{Mutex, RwLock};
use serde_json::{Value as Json, json};

use crate::config::Config;
use crate::http::AppState;
use crate::remote_write::IncomingSeries;
use crate::rules::file::{NameValidation, RuleFileError, RuleKind, load_rule_file};
use crate::rules::group::{AlertState, EvalContext, Group, RuleSink};
use crate::rules::notifier::{Notifier, NotifierSettings, alerts_to_send};

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
    /// Turns true when a reload replaced or removed the group: its task ends.
    retired: tokio::sync::watch::Sender<bool>,
}

impl ManagedGroup {
    fn new(group: Group) -> Arc<ManagedGroup> {
        Arc::new(ManagedGroup {
            group: Mutex::new(group),
            stats: GroupStats::default(),
            retired: tokio::sync::watch::channel(false).0,
        })
    }
}

/// The settings rule evaluation takes from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSettings {
    pub rule_files: Vec<String>,
    pub default_interval_ms: i64,
    pub default_offset_ms: i64,
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
    pub resend_delay_ms: i64,
    pub for_outage_tolerance_ms: i64,
    pub for_grace_period_ms: i64,
}

impl RuleSettings {
    pub fn from_config(c: &Config) -> RuleSettings {
        let external_url = if c.web.external_url.is_empty() {
            format!("http://{}", c.listen.http)
        } else {
            c.web.external_url.trim_end_matches('/').to_string()
        };
        RuleSettings {
            rule_files: c.rule_files.clone(),
            default_interval_ms: c.global.evaluation_interval.as_millis_i64(),
            default_offset_ms: c.global.rule_query_offset.as_millis_i64(),
            external_labels: c.global.external_labels.clone(),
            external_url,
            resend_delay_ms: c.rules.resend_delay.as_millis_i64(),
            for_outage_tolerance_ms: c.rules.for_outage_tolerance.as_millis_i64(),
            for_grace_period_ms: c.rules.for_grace_period.as_millis_i64(),
        }
    }
}

/// What the group tasks run with, set once evaluation starts.
struct Runtime {
    engine: Engine,
    sink: Arc<dyn RuleSink + Send + Sync>,
    metrics: crate::metrics::RuleMetrics,
    stop: tokio::sync::watch::Receiver<bool>,
    handle: tokio::runtime::Handle,
}

/// All loaded rule groups.
pub struct RuleManager {
    groups: RwLock<Vec<Arc<ManagedGroup>>>,
    /// Shared with the group tasks, which read it at each evaluation.
    settings: Arc<RwLock<Arc<RuleSettings>>>,
    notifier: Option<Arc<Notifier>>,
    runtime: OnceLock<Runtime>,
    /// Serialises reloads.
    reloading: Mutex<()>,
    /// The flags a reload applies again (`None`: the configuration came
    /// from elsewhere; a reload re-reads only the rule files).
    reload_args: Option<crate::config::ServeArgs>,
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

/// Loads every file the patterns match into groups. Any invalid file
/// fails the whole load with every problem found.
fn load_groups(settings: &RuleSettings, base: &Path) -> Result<Vec<Group>, Vec<RuleFileError>> {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for path in expand_globs(&settings.rule_files, base) {
        match load_rule_file(&path, NameValidation::Utf8) {
            Ok(f) => {
                for g in &f.groups {
                    groups.push(Group::new(
                        path.clone(),
                        g,
                        settings.default_interval_ms,
                        settings.default_offset_ms,
                    ));
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

impl RuleManager {
    /// Loads every file the settings' patterns match (relative ones against
    /// `base`). Any invalid file fails the whole load with every problem
    /// found. Alerts go to `notifier` when there is one.
    pub fn load(
        settings: RuleSettings,
        base: &Path,
        notifier: Option<Arc<Notifier>>,
    ) -> Result<RuleManager, Vec<RuleFileError>> {
        let groups = load_groups(&settings, base)?;
        Ok(RuleManager {
            groups: RwLock::new(groups.into_iter().map(ManagedGroup::new).collect()),
            settings: Arc::new(RwLock::new(Arc::new(settings))),
            notifier,
            runtime: OnceLock::new(),
            reloading: Mutex::new(()),
            reload_args: None,
        })
    }

    /// Sets the flags a reload applies again.
    pub fn with_reload_args(mut self, args: Option<crate::config::ServeArgs>) -> Self {
        self.reload_args = args;
        self
    }

    /// The flags a reload applies again.
    pub fn reload_args(&self) -> Option<crate::config::ServeArgs> {
        self.reload_args.clone()
    }

    /// The groups, in file and then file order.
    pub fn groups(&self) -> Vec<Arc<ManagedGroup>> {
        self.groups.read().clone()
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<RuleSettings> {
        self.settings.read().clone()
    }

    /// Re-reads the rule files of `config` (and its alerting settings).
    /// On any error nothing changes and every problem is returned; on
    /// success unchanged groups keep running as they were.
    pub fn reload(&self, config: &Config, base: &Path) -> Result<(), String> {
        let _one = self.reloading.lock();
        let settings = RuleSettings::from_config(config);
        let new = load_groups(&settings, base).map_err(|errors| {
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let old_groups = self.groups();
        let mut old: HashMap<(PathBuf, String), Arc<ManagedGroup>> = HashMap::new();
        for g in &old_groups {
            let k = {
                let gg = g.group.lock();
                (gg.file.clone(), gg.name.clone())
            };
            old.insert(k, g.clone());
        }
        let mut kept = Vec::new();
        let mut started = Vec::new();
        let mut changed = Vec::new();
        for mut g in new {
            let key = (g.file.clone(), g.name.clone());
            match old.get(&key) {
                Some(o) if o.group.lock().signature() == g.signature() => {
                    kept.push(o.clone());
                    old.remove(&key);
                }
                Some(o) => {
                    g.copy_state_from(&o.group.lock());
                    changed.push(key.clone());
                    let m = ManagedGroup::new(g);
                    kept.push(m.clone());
                    started.push(m);
                }
                None => {
                    let m = ManagedGroup::new(g);
                    kept.push(m.clone());
                    started.push(m);
                }
            }
        }
        // What is left of the old set was changed or removed. A removed
        // group's series get staleness markers, as Prometheus writes them.
        let now = chrono::Utc::now().timestamp_millis();
        for (key, g) in &old {
            let _ = g.retired.send(true);
            if changed.contains(key) {
                continue;
            }
            let stale = g.group.lock().take_stale_markers(now);
            if let (Some(rt), false) = (self.runtime.get(), stale.is_empty())
                && let Err(e) = rt.sink.append(stale)
            {
                tracing::warn!(group = %key.1, error = %e, "cannot write staleness markers of a removed rule group");
            }
        }
        *self.settings.write() = Arc::new(settings);
        if let Some(n) = &self.notifier {
            n.apply(NotifierSettings::from_config(config));
        }
        let (n_groups, n_started, n_stopped) = (kept.len(), started.len(), old.len());
        *self.groups.write() = kept;
        if let Some(rt) = self.runtime.get() {
            for g in started {
                self.spawn_group(rt, g);
            }
        }
        tracing::info!(
            groups = n_groups,
            started = n_started,
            stopped = n_stopped,
            "rule files reloaded"
        );
        Ok(())
    }

    /// Starts one task per group; they run until `stop` turns true (or a
    /// reload retires their group). Groups loaded now restore their alerts'
    /// `for` state after their second evaluation.
    pub fn spawn(
        self: &Arc<Self>,
        engine: Engine,
        sink: Arc<dyn RuleSink + Send + Sync>,
        metrics: crate::metrics::RuleMetrics,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> usize {
        let rt = Runtime {
            engine,
            sink,
            metrics,
            stop,
            handle: tokio::runtime::Handle::current(),
        };
        if self.runtime.set(rt).is_err() {
            return 0;
        }
        let Some(rt) = self.runtime.get() else {
            return 0;
        };
        let groups = self.groups();
        let grace_ms = self.settings().for_grace_period_ms;
        for g in &groups {
            g.group.lock().set_should_restore(grace_ms);
            self.spawn_group(rt, g.clone());
        }
        groups.len()
    }

    fn spawn_group(&self, rt: &Runtime, g: Arc<ManagedGroup>) {
        let (engine, sink, metrics) = (rt.engine.clone(), rt.sink.clone(), rt.metrics.clone());
        let mut stop = rt.stop.clone();
        let mut retired = g.retired.subscribe();
        let notifier = self.notifier.clone();
        let settings = self.settings.clone();
        rt.handle.spawn(async move {
            let (interval, offset, label) = {
                let grp = g.group.lock();
                let key = format!("{}\u{0}{}", grp.file.display(), grp.name);
                let label = crate::metrics::RuleGroupLabels {
                    rule_group: format!("{};{}", grp.file.display(), grp.name),
                };
                let interval = grp.interval_ms.max(1);
                let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
                (interval, (hash % interval as u64) as i64, label)
            };
            let now = chrono::Utc::now().timestamp_millis();
            let mut next = next_slot(now, interval, offset);
            let mut evaluations = 0u64;
            loop {
                let wait = (next - chrono::Utc::now().timestamp_millis()).max(0);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                    _ = stop.changed() => return,
                    _ = retired.changed() => return,
                }
                if *stop.borrow() || *retired.borrow() {
                    return;
                }
                let (gg, e, s, n, st) =
                    (g.clone(), engine.clone(), sink.clone(), notifier.clone(), settings.read().clone());
                let ts = next;
                evaluations += 1;
                let restore = evaluations == 2;
                let failures = tokio::task::spawn_blocking(move || {
                    let ctx = EvalContext {
                        engine: &e,
                        sink: &*s,
                        external_labels: &st.external_labels,
                        external_url: &st.external_url,
                    };
                    let mut grp = gg.group.lock();
                    grp.eval(&ctx, ts);
                    if restore {
                        grp.restore_for_state(
                            &*s,
                            chrono::Utc::now().timestamp_millis(),
                            st.for_outage_tolerance_ms,
                            st.for_grace_period_ms,
                        );
                    }
                    if let Some(n) = n {
                        n.send(alerts_to_send(&mut grp, ts, st.resend_delay_ms, &st.external_url));
                    }
                    let failures = grp.rules.iter().filter(|r| r.health == crate::rules::group::Health::Err).count();
                    (failures, grp.rules.len(), grp.eval_duration.as_secs_f64())
                })
                .await
                .unwrap_or((0, 0, 0.0));
                let (failures, rules, duration_s) = failures;
                metrics.evaluations.get_or_create(&label).inc_by(rules as u64);
                metrics.last_duration_seconds.get_or_create(&label).set(duration_s);
                g.stats.iterations.fetch_add(1, Ordering::Relaxed);
                metrics.iterations.get_or_create(&label).inc();
                if failures > 0 {
                    metrics.evaluation_failures.get_or_create(&label).inc_by(failures as u64);
                }
                next += interval;
                let now = chrono::Utc::now().timestamp_millis();
                if now > next {
                    let missed = (now - next) / interval + 1;
                    g.stats.iterations_missed.fetch_add(missed as u64, Ordering::Relaxed);
                    metrics.iterations_missed.get_or_create(&label).inc_by(missed as u64);
                    tracing::warn!(group = %g.group.lock().name, missed, "rule group evaluation slower than its interval: iterations skipped");
                    next += missed * interval;
                }
            }
        });
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
            .map(|s| IncomingSeries::new(s.labels, s.samples))
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
        for mg in self.groups().iter() {
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
        for mg in self.groups().iter() {
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

    fn test_settings(files: &[&str]) -> RuleSettings {
        RuleSettings {
            rule_files: files.iter().map(|f| f.to_string()).collect(),
            default_interval_ms: 60_000,
            default_offset_ms: 0,
            external_labels: BTreeMap::new(),
            external_url: String::new(),
            resend_delay_ms: 60_000,
            for_outage_tolerance_ms: 3_600_000,
            for_grace_period_ms: 600_000,
        }
    }

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

        let mgr = RuleManager::load(test_settings(&["rules/*.yml"]), dir.path(), None)
            .unwrap_or_else(|e| panic!("load: {e:?}"));
        assert_eq!(mgr.groups().len(), 2);

        // One broken file fails the whole load.
        std::fs::write(
            dir.path().join("rules/c.yml"),
            "groups:\n  - name: x\n    rules:\n      - record: r\n",
        )
        .expect("write");
        let errs = RuleManager::load(test_settings(&["rules/*.yml"]), dir.path(), None)
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
            external_labels: &BTreeMap::new(),
            external_url: "",
        };
        mgr.groups()[0].group.lock().eval(&ctx, 60_000);
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
