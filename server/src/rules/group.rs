//! One rule group's evaluation: its rules in order at one timestamp, the
//! alert state machine of each alerting rule, and the series written.
//!
//! [`Group::eval`] evaluates every rule at `ts - query_offset` and appends
//! each rule's output through a [`RuleSink`] before the next rule runs, so
//! a rule sees the series the rule before it recorded. It follows
//! Prometheus's `rules` package:
//! - a recording rule writes its result under the `record` name with the
//!   group's and the rule's labels; a series it wrote last time and not
//!   this time gets a staleness marker;
//! - an alerting rule turns each result sample into an alert keyed by its
//!   labels (minus `__name__`, plus the expanded rule labels and
//!   `alertname`): new alerts are pending, firing once active for `for`,
//!   kept firing `keep_firing_for` after the condition clears, and then
//!   inactive (resolved), kept for 15 minutes so notifiers can send the
//!   resolution. Active alerts write `ALERTS{alertstate=...}` = 1 and
//!   `ALERTS_FOR_STATE` = the active-since time in seconds;
//! - over `limit`, a rule's output is discarded, an alerting rule's alerts
//!   are cleared, and the evaluation is an error (no staleness markers).
//!
//! Scheduling (the interval, the per-group offset, missed iterations) is the
//! manager's; this file knows nothing of time passing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::labels::METRIC_NAME;
use cairn_engine::{Labels, Querier, STALE_NAN_BITS, Sample, TimestampMs, WriteSeries};
use cairn_query::{Engine, QueryOptions, Value};

use crate::rules::file::{Rule, RuleGroup, RuleKind};
use crate::rules::template::{Data, QuerySample, expand_alert_template};

/// How long a resolved alert is kept (and reported) before it is dropped.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60_000;

/// Where rule evaluation reads and writes.
pub trait RuleSink {
    /// A querier over everything stored, including what was just appended.
    fn querier(&self) -> Result<Arc<dyn Querier>, String>;
    /// Appends recorded samples durably (the normal write path).
    fn append(&self, series: Vec<WriteSeries>) -> Result<(), String>;
}

impl RuleSink for cairn_engine::Db {
    fn querier(&self) -> Result<Arc<dyn Querier>, String> {
        Ok(cairn_engine::Db::querier(self))
    }
    fn append(&self, series: Vec<WriteSeries>) -> Result<(), String> {
        cairn_engine::Db::append(self, &series)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// What rule templates and queries need from outside the group.
pub struct EvalContext<'a> {
    pub engine: &'a Engine,
    pub sink: &'a dyn RuleSink,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
}

/// An alert's state, as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of an alerting rule.
#[derive(Debug, Clone)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub value: f64,
    /// When the condition was first seen (eval time, ms).
    pub active_at: TimestampMs,
    pub fired_at: Option<TimestampMs>,
    pub resolved_at: Option<TimestampMs>,
    /// When the condition cleared while `keep_firing_for` holds it firing.
    pub keep_firing_since: Option<TimestampMs>,
    /// When the alert was last handed to the notifier (eval time, ms).
    pub last_sent_at: Option<TimestampMs>,
    /// The `endsAt` last sent for a firing alert.
    pub valid_until: TimestampMs,
}

/// `ok`, `err` or `unknown` (never evaluated), as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// A rule with what its evaluations left behind.
#[derive(Debug, Clone)]
pub struct RuleState {
    pub rule: Rule,
    pub health: Health,
    pub last_error: Option<String>,
    pub last_eval: Option<TimestampMs>,
    pub eval_duration: Duration,
    /// Alerts by their label set (alerting rules).
    pub alerts: HashMap<Labels, Alert>,
    /// Series written by the last successful evaluation (for staleness).
    written: HashSet<Labels>,
    /// False until the `for` state was restored after a start: until then
    /// no `ALERTS` or `ALERTS_FOR_STATE` sample is written, so the restore
    /// reads the ones written before the restart (as Prometheus).
    pub restored: bool,
}

/// A group ready to evaluate.
#[derive(Debug, Clone)]
pub struct Group {
    pub file: PathBuf,
    pub name: String,
    pub interval_ms: i64,
    pub query_offset_ms: i64,
    pub limit: u64,
    pub rules: Vec<RuleState>,
    pub last_eval: Option<TimestampMs>,
    pub eval_duration: Duration,
}

impl Group {
    /// A group from a validated file; `default_interval_ms` and
    /// `default_offset_ms` apply where the group sets none. The group's
    /// labels are folded into each rule's (the rule's win).
    pub fn new(
        file: PathBuf,
        g: &RuleGroup,
        default_interval_ms: i64,
        default_offset_ms: i64,
    ) -> Group {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let rules = g
            .rules
            .iter()
            .map(|r| {
                let mut rule = r.clone();
                for (k, v) in &g.labels {
                    rule.labels.entry(k.clone()).or_insert_with(|| v.clone());
                }
                RuleState {
                    rule,
                    health: Health::Unknown,
                    last_error: None,
                    last_eval: None,
                    eval_duration: Duration::ZERO,
                    alerts: HashMap::new(),
                    written: HashSet::new(),
                    restored: true,
                }
            })
            .collect();
        Group {
            file,
            name: g.name.clone(),
            interval_ms: g.interval.map(ms).unwrap_or(default_interval_ms),
            query_offset_ms: g.query_offset.map(ms).unwrap_or(default_offset_ms),
            limit: g.limit,
            rules,
            last_eval: None,
            eval_duration: Duration::ZERO,
        }
    }

    /// What defines the group's behaviour (not its lines in the file): a
    /// reload keeps a group whose signature did not change as it is.
    pub fn signature(&self) -> String {
        let mut s = format!(
            "{}|{}|{}|{}",
            self.interval_ms,
            self.query_offset_ms,
            self.limit,
            self.rules.len()
        );
        for r in &self.rules {
            let r = &r.rule;
            s.push_str(&format!(
                "|{:?}|{}|{:?}|{:?}|{:?}|{:?}",
                r.kind, r.expr_text, r.for_, r.keep_firing_for, r.labels, r.annotations
            ));
        }
        s
    }

    /// Takes over the alerts and written series of `old`'s rules of the
    /// same kind, name and labels (a group changed by a reload), as
    /// Prometheus's `CopyState`.
    pub fn copy_state_from(&mut self, old: &Group) {
        for rs in &mut self.rules {
            if let Some(o) = old
                .rules
                .iter()
                .find(|o| o.rule.kind == rs.rule.kind && o.rule.labels == rs.rule.labels)
            {
                rs.alerts = o.alerts.clone();
                rs.written = o.written.clone();
                rs.health = o.health;
                rs.last_error = o.last_error.clone();
                rs.last_eval = o.last_eval;
                rs.restored = o.restored;
            }
        }
        self.last_eval = old.last_eval;
    }

    /// Staleness markers at `t` for every series the group's last
    /// evaluation wrote (the group is being removed); forgets them.
    pub fn take_stale_markers(&mut self, t: TimestampMs) -> Vec<WriteSeries> {
        let mut out = Vec::new();
        for rs in &mut self.rules {
            let mut gone: Vec<Labels> = rs.written.drain().collect();
            gone.sort();
            out.extend(gone.into_iter().map(|labels| WriteSeries {
                labels,
                samples: vec![Sample::new(t, f64::from_bits(STALE_NAN_BITS))],
            }));
        }
        out
    }

    /// Marks the alerting rules whose `for` is at least the grace period
    /// as not yet restored (a server start): see
    /// [`Group::restore_for_state`]. Shorter ones are never restored, so
    /// they write `ALERTS` from the first evaluation (Prometheus waits for
    /// the second either way).
    pub fn set_should_restore(&mut self, grace_period_ms: i64) {
        for rs in &mut self.rules {
            let hold_ms = i64::try_from(rs.rule.for_.as_millis()).unwrap_or(i64::MAX);
            if matches!(rs.rule.kind, RuleKind::Alert(_)) && hold_ms >= grace_period_ms {
                rs.restored = false;
            }
        }
    }

    /// Restores the `for` progress of active alerts from the last
    /// `ALERTS_FOR_STATE` sample written before a restart, within
    /// `outage_tolerance_ms` of `ts`, as Prometheus's `RestoreForState`:
    /// an alert that was firing fires again; one with less than
    /// `grace_period_ms` of `for` left waits the grace period; otherwise
    /// the time Cairn was down is added to its active-since time. Rules
    /// whose `for` is shorter than the grace period are not restored.
    pub fn restore_for_state(
        &mut self,
        sink: &dyn RuleSink,
        ts: TimestampMs,
        outage_tolerance_ms: i64,
        grace_period_ms: i64,
    ) {
        let querier = match sink.querier() {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(group = %self.name, error = %e, "cannot restore alert state");
                for rs in &mut self.rules {
                    rs.restored = true;
                }
                return;
            }
        };
        for rs in &mut self.rules {
            if rs.restored {
                continue;
            }
            rs.restored = true;
            let hold_ms = i64::try_from(rs.rule.for_.as_millis()).unwrap_or(i64::MAX);
            if hold_ms < grace_period_ms {
                continue;
            }
            for a in rs.alerts.values_mut() {
                if a.state == AlertState::Inactive {
                    continue;
                }
                let mut matchers = vec![cairn_engine::Matcher::new(
                    cairn_engine::MatchOp::Equal,
                    METRIC_NAME,
                    "ALERTS_FOR_STATE",
                )];
                for l in a.labels.iter() {
                    matchers.push(cairn_engine::Matcher::new(
                        cairn_engine::MatchOp::Equal,
                        l.name.to_string(),
                        l.value.to_string(),
                    ));
                }
                let Ok(matchers) = matchers.into_iter().collect::<Result<Vec<_>, _>>() else {
                    continue;
                };
                let Ok(series) = querier.select(&matchers, ts - outage_tolerance_ms, ts) else {
                    continue;
                };
                let mut last: Option<Sample> = None;
                for s in series {
                    if s.labels.len() != a.labels.len() + 1 {
                        continue;
                    }
                    let mut buf = Vec::new();
                    s.read_samples(ts - outage_tolerance_ms, ts, &mut buf);
                    if let Some(smp) = buf.last()
                        && last.is_none_or(|l| smp.t > l.t)
                    {
                        last = Some(*smp);
                    }
                }
                let Some(last) = last else { continue };
                if last.v.to_bits() == STALE_NAN_BITS || !last.v.is_finite() {
                    continue;
                }
                // Prometheus keeps whole seconds of both times.
                let down_at = last.t.div_euclid(1000) * 1000;
                let mut active_at = (last.v as i64) * 1000;
                let remaining = hold_ms - (down_at - active_at);
                if remaining <= 0 {
                    // It was firing: the next evaluation fires it again.
                } else if remaining < grace_period_ms {
                    active_at = ts + grace_period_ms - hold_ms;
                } else {
                    active_at += ts - down_at;
                }
                tracing::info!(group = %self.name, alert = %a.labels, active_at, "alert `for` state restored");
                a.active_at = active_at;
            }
        }
    }

    /// Evaluates every rule at `ts` (ms), in order. Errors are kept per
    /// rule (health, last error); one failing rule does not stop the next.
    pub fn eval(&mut self, ctx: &EvalContext<'_>, ts: TimestampMs) {
        let started = Instant::now();
        let t = ts - self.query_offset_ms;
        for i in 0..self.rules.len() {
            let rule_started = Instant::now();
            let result = eval_rule(&mut self.rules[i], ctx, ts, t, self.limit);
            let rs = &mut self.rules[i];
            rs.last_eval = Some(ts);
            rs.eval_duration = rule_started.elapsed();
            match result {
                Ok(()) => {
                    rs.health = Health::Ok;
                    rs.last_error = None;
                }
                Err(e) => {
                    tracing::warn!(group = %self.name, rule = %rs.rule.name(), error = %e, "rule evaluation failed");
                    rs.health = Health::Err;
                    rs.last_error = Some(e);
                }
            }
        }
        self.last_eval = Some(ts);
        self.eval_duration = started.elapsed();
    }
}

/// Evaluates one rule and appends what it produces.
fn eval_rule(
    rs: &mut RuleState,
    ctx: &EvalContext<'_>,
    ts: TimestampMs,
    t: TimestampMs,
    limit: u64,
) -> Result<(), String> {
    let querier = ctx.sink.querier()?;
    let result = ctx
        .engine
        .instant_query_expr(
            &*querier,
            &rs.rule.expr,
            &rs.rule.expr_text,
            t,
            &QueryOptions::default(),
        )
        .map_err(|e| e.to_string())?;
    let samples: Vec<(Labels, f64)> = match result.value {
        Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
        Value::Scalar { v, .. } => vec![(Labels::empty(), v)],
        Value::String { .. } | Value::Matrix(_) => {
            return Err("rule result is not a vector or a scalar".into());
        }
    };
    let out = match rs.rule.kind.clone() {
        RuleKind::Record(name) => record(&rs.rule, &name, samples, limit)?,
        RuleKind::Alert(name) => {
            let q = |text: &str| template_query(ctx, &*querier, text, t);
            let mut out = alert(rs, &name, samples, ctx, &q, ts, limit)?;
            if !rs.restored {
                out.clear();
            }
            out
        }
    };
    // Series written last time and not now get a staleness marker at t.
    let now: HashSet<Labels> = out.iter().map(|(l, _)| l.clone()).collect();
    let mut batch: Vec<WriteSeries> = out
        .into_iter()
        .map(|(labels, v)| WriteSeries {
            labels,
            samples: vec![Sample::new(t, v)],
        })
        .collect();
    let mut gone: Vec<&Labels> = rs.written.difference(&now).collect();
    gone.sort();
    for labels in gone {
        batch.push(WriteSeries {
            labels: labels.clone(),
            samples: vec![Sample::new(t, f64::from_bits(STALE_NAN_BITS))],
        });
    }
    rs.written = now;
    if !batch.is_empty() {
        ctx.sink.append(batch)?;
    }
    Ok(())
}

fn record(
    rule: &Rule,
    name: &str,
    samples: Vec<(Labels, f64)>,
    limit: u64,
) -> Result<Vec<(Labels, f64)>, String> {
    let mut out = Vec::with_capacity(samples.len());
    let mut seen = HashSet::new();
    for (labels, v) in samples {
        let mut b = labels.builder();
        b.set(METRIC_NAME, name);
        for (k, val) in &rule.labels {
            if val.is_empty() {
                b.del(k);
            } else {
                b.set(k.as_str(), val.as_str());
            }
        }
        let labels = b.build();
        if !seen.insert(labels.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        out.push((labels, v));
    }
    if limit > 0 && out.len() as u64 > limit {
        return Err(format!(
            "exceeded limit of {limit} with {} series",
            out.len()
        ));
    }
    Ok(out)
}

fn template_query(
    ctx: &EvalContext<'_>,
    querier: &dyn Querier,
    text: &str,
    t: TimestampMs,
) -> Result<Vec<QuerySample>, String> {
    let r = ctx
        .engine
        .instant_query(querier, text, t)
        .map_err(|e| e.to_string())?;
    let to_map = |l: &Labels| -> BTreeMap<String, String> {
        l.iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect()
    };
    Ok(match r.value {
        Value::Vector(v) => v
            .iter()
            .map(|s| QuerySample {
                labels: to_map(&s.labels),
                value: s.v,
            })
            .collect(),
        Value::Scalar { v, .. } => vec![QuerySample {
            labels: BTreeMap::new(),
            value: v,
        }],
        _ => return Err("query result is not a vector or a scalar".into()),
    })
}

#[allow(clippy::too_many_arguments)]
fn alert(
    rs: &mut RuleState,
    name: &str,
    samples: Vec<(Labels, f64)>,
    ctx: &EvalContext<'_>,
    query: &dyn Fn(&str) -> Result<Vec<QuerySample>, String>,
    ts: TimestampMs,
    limit: u64,
) -> Result<Vec<(Labels, f64)>, String> {
    let rule = &rs.rule;
    let mut current: HashMap<Labels, Alert> = HashMap::new();
    for (labels, v) in samples {
        let label_map: BTreeMap<String, String> = labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect();
        let data = Data {
            labels: &label_map,
            external_labels: ctx.external_labels,
            external_url: ctx.external_url,
            value: v,
            query: Some(query),
        };
        let mut b = labels.builder();
        b.del(METRIC_NAME);
        for (k, text) in &rule.labels {
            let val = expand_alert_template(name, text, &data);
            if val.is_empty() {
                b.del(k);
            } else {
                b.set(k.as_str(), val);
            }
        }
        b.set("alertname", name);
        let alert_labels = b.build();
        let annotations = rule
            .annotations
            .iter()
            .map(|(k, text)| (k.clone(), expand_alert_template(name, text, &data)))
            .collect();
        if current.contains_key(&alert_labels) {
            return Err(
                "vector contains metrics with the same labelset after applying alert labels".into(),
            );
        }
        current.insert(
            alert_labels.clone(),
            Alert {
                labels: alert_labels,
                annotations,
                state: AlertState::Pending,
                value: v,
                active_at: ts,
                fired_at: None,
                resolved_at: None,
                keep_firing_since: None,
                last_sent_at: None,
                valid_until: 0,
            },
        );
    }
    // Alerts seen again keep their state; new ones start pending.
    let mut present = HashSet::new();
    for (labels, new) in current {
        present.insert(labels.clone());
        match rs.alerts.get_mut(&labels) {
            Some(a) if a.state != AlertState::Inactive => {
                a.value = new.value;
                a.annotations = new.annotations;
            }
            _ => {
                rs.alerts.insert(labels, new);
            }
        }
    }
    let for_ms = i64::try_from(rule.for_.as_millis()).unwrap_or(i64::MAX);
    let keep_ms = i64::try_from(rule.keep_firing_for.as_millis()).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    let mut active = 0u64;
    let mut drop = Vec::new();
    for (labels, a) in rs.alerts.iter_mut() {
        if present.contains(labels) {
            a.keep_firing_since = None;
        } else {
            let mut keep_firing = false;
            if a.state == AlertState::Firing && keep_ms > 0 {
                let since = *a.keep_firing_since.get_or_insert(ts);
                keep_firing = ts - since < keep_ms;
            }
            if a.state == AlertState::Pending
                || a.resolved_at
                    .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
            {
                drop.push(labels.clone());
            }
            if a.state != AlertState::Inactive && !keep_firing {
                a.state = AlertState::Inactive;
                a.resolved_at = Some(ts);
            }
            if !keep_firing {
                continue;
            }
        }
        active += 1;
        if a.state == AlertState::Pending && ts - a.active_at >= for_ms {
            a.state = AlertState::Firing;
            a.fired_at = Some(ts);
        }
        let mut b = a.labels.builder();
        b.set(METRIC_NAME, "ALERTS");
        b.set("alertstate", a.state.as_str());
        out.push((b.build(), 1.0));
        let mut b = a.labels.builder();
        b.set(METRIC_NAME, "ALERTS_FOR_STATE");
        out.push((b.build(), a.active_at as f64 / 1000.0));
    }
    for l in drop {
        rs.alerts.remove(&l);
    }
    if limit > 0 && active > limit {
        rs.alerts.clear();
        return Err(format!("exceeded limit of {limit} with {active} alerts"));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::file::{NameValidation, parse_rule_file};
    use cairn_engine::{Db, DbOptions, MatchOp, Matcher};
    use std::path::Path;

    const MIN: i64 = 60_000;

    fn groups(text: &str) -> Vec<Group> {
        let f =
            parse_rule_file(Path::new("t.yml"), text, NameValidation::Utf8).expect("valid rules");
        f.groups
            .iter()
            .map(|g| Group::new("t.yml".into(), g, MIN, 0))
            .collect()
    }

    fn write(db: &Db, labels: &[(&str, &str)], samples: &[(i64, f64)]) {
        db.append(&[WriteSeries {
            labels: Labels::from_pairs(labels.iter().copied()),
            samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        }])
        .expect("append");
    }

    /// Every sample of series named `name`, as `(labels, t, v)`.
    fn read(db: &Db, name: &str) -> Vec<(String, i64, f64)> {
        let m = Matcher::new(MatchOp::Equal, METRIC_NAME, name).expect("matcher");
        let mut out = Vec::new();
        for s in db
            .querier()
            .select(&[m], i64::MIN, i64::MAX)
            .expect("select")
        {
            let mut buf = Vec::new();
            s.read_samples(i64::MIN, i64::MAX, &mut buf);
            for smp in buf {
                out.push((s.labels.to_string(), smp.t, smp.v));
            }
        }
        out
    }

    fn ctx<'a>(
        engine: &'a Engine,
        db: &'a Db,
        ext: &'a BTreeMap<String, String>,
    ) -> EvalContext<'a> {
        EvalContext {
            engine,
            sink: db,
            external_labels: ext,
            external_url: "http://cairn",
        }
    }

    #[test]
    fn recording_rules_chain_write_and_go_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path(), DbOptions::default()).expect("db");
        write(
            &db,
            &[("__name__", "req"), ("job", "a")],
            &[(0, 1.0), (MIN, 2.0)],
        );
        write(
            &db,
            &[("__name__", "req"), ("job", "b")],
            &[(0, 10.0), (MIN, 20.0)],
        );
        let mut g = groups(
            "groups:\n  - name: g\n    labels:\n      team: ml\n    rules:\n      - record: job:req:sum\n        expr: sum by (job) (req)\n      - record: req:total\n        expr: sum(job:req:sum)\n        labels:\n          team: core\n",
        )
        .remove(0);
        let engine = Engine::default();
        let ext = BTreeMap::new();
        g.eval(&ctx(&engine, &db, &ext), MIN);
        assert!(
            g.rules.iter().all(|r| r.health == Health::Ok),
            "{:?}",
            g.rules[1].last_error
        );
        assert_eq!(
            read(&db, "job:req:sum"),
            vec![
                ("job:req:sum{job=\"a\", team=\"ml\"}".to_string(), MIN, 2.0),
                ("job:req:sum{job=\"b\", team=\"ml\"}".to_string(), MIN, 20.0),
            ]
        );
        // The second rule saw the first one's output of the same evaluation.
        assert_eq!(
            read(&db, "req:total"),
            vec![("req:total{team=\"core\"}".to_string(), MIN, 22.0)]
        );

        // Job b disappears (no samples within the lookback): its recorded
        // series gets a staleness marker at the next evaluation.
        write(&db, &[("__name__", "req"), ("job", "a")], &[(7 * MIN, 3.0)]);
        g.eval(&ctx(&engine, &db, &ext), 7 * MIN);
        let b: Vec<_> = read(&db, "job:req:sum")
            .into_iter()
            .filter(|(l, _, _)| l.contains("\"b\""))
            .collect();
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].1, 7 * MIN);
        assert!(cairn_engine::is_stale_nan(b[1].2), "{b:?}");
    }

    #[test]
    fn recording_limit_and_query_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path(), DbOptions::default()).expect("db");
        for job in ["a", "b", "c"] {
            write(&db, &[("__name__", "up"), ("job", job)], &[(0, 1.0)]);
        }
        let mut g = groups(
            "groups:\n  - name: g\n    limit: 2\n    query_offset: 30s\n    rules:\n      - record: up:copy\n        expr: up\n      - record: one\n        expr: vector(1)\n",
        )
        .remove(0);
        let engine = Engine::default();
        let ext = BTreeMap::new();
        g.eval(&ctx(&engine, &db, &ext), MIN);
        assert_eq!(g.rules[0].health, Health::Err);
        assert_eq!(
            g.rules[0].last_error.as_deref(),
            Some("exceeded limit of 2 with 3 series")
        );
        assert!(read(&db, "up:copy").is_empty());
        // Written at the evaluation time minus the offset.
        assert_eq!(read(&db, "one"), vec![("one".to_string(), 30_000, 1.0)]);
    }

    /// Prometheus's `RestoreForState` cases: `for` 30m, grace period 10m,
    /// outage tolerance 1h; the alert was active since minute 0 and the
    /// last `ALERTS_FOR_STATE` sample was written at `down` (minutes).
    #[test]
    fn for_state_is_restored_as_prometheus_does() {
        // (down at, restore at, expected active-since), minutes.
        let cases = [
            (40, 50, 0),    // had fired: fires again at once
            (25, 50, 30),   // 5m left < grace: fires 10m after the restore
            (10, 50, 40),   // 20m left: moved forward by the 40m outage
            (10, 200, 200), // older than the outage tolerance: starts over
        ];
        for (down, at, want) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = Db::open(dir.path(), DbOptions::default()).expect("db");
            write(
                &db,
                &[("__name__", "ALERTS_FOR_STATE"), ("alertname", "A")],
                &[(down * MIN, 0.0)],
            );
            let mut g = groups(
                "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: vector(1)\n        for: 30m\n",
            )
            .remove(0);
            g.set_should_restore(10 * MIN);
            let engine = Engine::default();
            let ext = BTreeMap::new();
            g.eval(&ctx(&engine, &db, &ext), at * MIN);
            assert!(
                read(&db, "ALERTS_FOR_STATE").len() == 1,
                "nothing written before the restore"
            );
            g.restore_for_state(&db, at * MIN, 60 * MIN, 10 * MIN);
            let a = g.rules[0].alerts.values().next().expect("alert");
            assert_eq!(a.active_at, want * MIN, "down {down}, restore at {at}");
            assert!(g.rules[0].restored);
        }
    }

    #[test]
    fn alerts_go_pending_firing_kept_and_resolved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path(), DbOptions::default()).expect("db");
        let mut g = groups(
            "groups:\n  - name: g\n    rules:\n      - alert: High\n        expr: errors > 5\n        for: 2m\n        keep_firing_for: 1m\n        labels:\n          severity: \"{{ if gt $value 10.0 }}page{{ else }}ticket{{ end }}\"\n        annotations:\n          summary: \"{{ $labels.job }} at {{ $value }} in {{ $externalLabels.cluster }}\"\n",
        )
        .remove(0);
        let engine = Engine::default();
        let ext: BTreeMap<String, String> = [("cluster".to_string(), "eu".to_string())].into();
        let c = ctx(&engine, &db, &ext);
        let series = [("__name__", "errors"), ("job", "api")];
        // minute: value (the condition holds from 1 to 4 inclusive)
        let values = [
            (0, 1.0),
            (1, 7.0),
            (2, 8.0),
            (3, 9.0),
            (4, 9.0),
            (5, 1.0),
            (6, 1.0),
            (7, 1.0),
        ];
        let mut states = Vec::new();
        for (m, v) in values {
            write(&db, &series, &[(m * MIN, v)]);
            g.eval(&c, m * MIN);
            assert_eq!(g.rules[0].health, Health::Ok, "{:?}", g.rules[0].last_error);
            let a = g.rules[0].alerts.values().next();
            states.push(a.map(|a| a.state.as_str()).unwrap_or("-"));
        }
        assert_eq!(
            states,
            vec![
                "-", "pending", "pending", "firing", "firing", "firing", "inactive", "inactive"
            ]
        );
        let a = g.rules[0]
            .alerts
            .values()
            .next()
            .expect("resolved alert kept");
        assert_eq!(
            a.labels.to_string(),
            "{alertname=\"High\", job=\"api\", severity=\"ticket\"}"
        );
        assert_eq!(a.annotations["summary"], "api at 9 in eu");
        assert_eq!(a.active_at, MIN);
        assert_eq!(a.fired_at, Some(3 * MIN));
        assert_eq!(a.resolved_at, Some(6 * MIN));

        let alerts = read(&db, "ALERTS");
        let pending: Vec<_> = alerts
            .iter()
            .filter(|(l, _, _)| l.contains("pending"))
            .collect();
        let firing: Vec<_> = alerts
            .iter()
            .filter(|(l, _, _)| l.contains("firing"))
            .collect();
        assert_eq!(
            pending
                .iter()
                .map(|(_, t, v)| (*t / MIN, v.is_nan()))
                .collect::<Vec<_>>(),
            vec![(1, false), (2, false), (3, true)]
        );
        assert_eq!(
            firing
                .iter()
                .map(|(_, t, v)| (*t / MIN, v.is_nan()))
                .collect::<Vec<_>>(),
            vec![(3, false), (4, false), (5, false), (6, true)]
        );
        let for_state = read(&db, "ALERTS_FOR_STATE");
        assert_eq!(for_state[0].2, 60.0, "active since 1m, in seconds");
    }

    #[test]
    fn alert_limit_clears_alerts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path(), DbOptions::default()).expect("db");
        for job in ["a", "b"] {
            write(&db, &[("__name__", "down"), ("job", job)], &[(0, 1.0)]);
        }
        let mut g = groups(
            "groups:\n  - name: g\n    limit: 1\n    rules:\n      - alert: Down\n        expr: down == 1\n",
        )
        .remove(0);
        let engine = Engine::default();
        let ext = BTreeMap::new();
        g.eval(&ctx(&engine, &db, &ext), 0);
        assert_eq!(
            g.rules[0].last_error.as_deref(),
            Some("exceeded limit of 1 with 2 alerts")
        );
        assert!(g.rules[0].alerts.is_empty());
        assert!(read(&db, "ALERTS").is_empty());
    }
}
