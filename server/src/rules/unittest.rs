//! `cairn rules test`: rule unit tests in the format of `promtool test
//! rules` (`../shared/rules/UNIT_TEST_FORMAT.md`).
//!
//! Each test group loads its `input_series` (the expanding notation of
//! promqltest, `cairn_query::promqltest::notation`) into a fresh `Db` in a
//! temporary directory, so rules run over the same write and read path as
//! the server. Every `evaluation_interval` from the start to the last
//! `eval_time`, every group is evaluated (those named in `group_eval_order`
//! first, in that order); after the evaluation at `ts`, the alert tests
//! whose `eval_time` falls in `[ts, ts + evaluation_interval)` compare the
//! firing alerts of their `alertname` (labels without `alertname`, and
//! annotations) with `exp_alerts`. Then each `promql_expr_test` evaluates
//! its expression at `eval_time` and compares the samples.
//!
//! Output and exit status as promtool's: `Unit Testing:  FILE`, then
//! `  SUCCESS` or `  FAILED:` with what was expected and what was got.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_engine::{Db, DbOptions, Labels, Sample, WriteSeries};
use cairn_query::promqltest::notation::{parse_labels, parse_series_desc};
use cairn_query::{Engine, Value};
use serde::Deserialize;

use crate::config::PromDuration;
use crate::rules::file::{NameValidation, RuleKind, load_rule_file};
use crate::rules::group::{AlertState, EvalContext, Group};
use crate::rules::manager::expand_globs;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    evaluation_interval: Option<PromDuration>,
    #[serde(default)]
    fuzzy_compare: bool,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    interval: Option<PromDuration>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    name: String,
    start_timestamp: Option<serde_norway::Value>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<PromqlTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    #[serde(default)]
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: PromDuration,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromqlTest {
    expr: String,
    eval_time: PromDuration,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

/// Runs every test file, writing promtool's report; returns whether all
/// passed (exit status 0, else 1).
pub fn run_test_files(
    paths: &[PathBuf],
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> std::io::Result<bool> {
    let mut ok = true;
    for path in paths {
        writeln!(out, "Unit Testing:  {}", path.display())?;
        let problems = run_test_file(path);
        if problems.is_empty() {
            writeln!(out, "  SUCCESS")?;
        } else {
            ok = false;
            writeln!(err, "  FAILED:")?;
            for p in problems {
                writeln!(err, "{p}")?;
            }
        }
        writeln!(out)?;
    }
    Ok(ok)
}

/// Runs one test file; returns every failure, as text (empty: passed).
pub fn run_test_file(path: &Path) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return vec![format!("    cannot read {}: {e}", path.display())],
    };
    let file: TestFile = match serde_norway::from_str(&text) {
        Ok(f) => f,
        Err(e) => return vec![format!("    {}: {e}", path.display())],
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let eval_interval_ms = file
        .evaluation_interval
        .map(|d| d.as_millis_i64())
        .unwrap_or(60_000)
        .max(1);
    // Rule files, validated as `cairn rules check` does.
    let mut rule_groups = Vec::new();
    let mut problems = Vec::new();
    for f in expand_globs(&file.rule_files, base) {
        match load_rule_file(&f, NameValidation::Utf8) {
            Ok(rf) => {
                for g in &rf.groups {
                    rule_groups.push(Group::new(f.clone(), g, eval_interval_ms, 0));
                }
            }
            Err(errs) => problems.extend(errs.iter().map(|e| format!("    {e}"))),
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    // group_eval_order: the named groups first, in that order.
    for name in &file.group_eval_order {
        if !rule_groups.iter().any(|g| &g.name == name) {
            return vec![format!(
                "    group {name:?} in group_eval_order not found in the rule files"
            )];
        }
    }
    let rank = |g: &Group| {
        file.group_eval_order
            .iter()
            .position(|n| n == &g.name)
            .unwrap_or(usize::MAX)
    };
    rule_groups.sort_by_key(rank);
    for tg in &file.tests {
        let groups = rule_groups.clone();
        problems.extend(run_group(tg, groups, eval_interval_ms, file.fuzzy_compare));
    }
    problems
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "cairn-rules-test-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_ms(v: &Option<serde_norway::Value>) -> Result<i64, String> {
    match v {
        None => Ok(0),
        Some(serde_norway::Value::Number(n)) => n
            .as_i64()
            .map(|s| s * 1000)
            .or_else(|| n.as_f64().map(|f| (f * 1000.0) as i64))
            .ok_or_else(|| format!("invalid start_timestamp {n}")),
        Some(serde_norway::Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .or_else(|_| s.parse::<i64>().map(|s| s * 1000))
            .map_err(|e| format!("invalid start_timestamp {s:?}: {e}")),
        Some(other) => Err(format!("invalid start_timestamp {other:?}")),
    }
}

fn run_group(
    tg: &TestGroup,
    mut groups: Vec<Group>,
    eval_interval_ms: i64,
    fuzzy: bool,
) -> Vec<String> {
    let name = if tg.name.is_empty() {
        String::new()
    } else {
        format!("{}: ", tg.name)
    };
    let fail = |m: String| vec![format!("    {name}{m}")];
    let start = match start_ms(&tg.start_timestamp) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let series_interval = tg
        .interval
        .map(|d| d.as_millis_i64())
        .unwrap_or(eval_interval_ms)
        .max(1);
    let dir = match TempDir::new() {
        Ok(d) => d,
        Err(e) => return fail(format!("cannot create a temporary directory: {e}")),
    };
    let db = match Db::open(&dir.0, DbOptions::default()) {
        Ok(db) => db,
        Err(e) => return fail(format!("cannot open a database: {e}")),
    };
    let mut batch = Vec::new();
    for s in &tg.input_series {
        let desc = match parse_series_desc(&format!("{} {}", s.series, s.values)) {
            Ok(d) => d,
            Err(e) => return fail(format!("series {:?}: {e}", s.series)),
        };
        let samples: Vec<Sample> = desc
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| Sample::new(start + i as i64 * series_interval, v)))
            .collect();
        batch.push(WriteSeries {
            labels: desc.labels,
            samples,
        });
    }
    if let Err(e) = db.append(&batch) {
        return fail(format!("cannot load input series: {e}"));
    }
    let engine = Engine::default();
    let ctx = EvalContext {
        engine: &engine,
        sink: &db,
        external_labels: &tg.external_labels,
        external_url: &tg.external_url,
    };
    let mut alert_tests: Vec<&AlertTest> = tg.alert_rule_test.iter().collect();
    alert_tests.sort_by_key(|a| a.eval_time);
    let max_eval = tg
        .alert_rule_test
        .iter()
        .map(|a| a.eval_time.as_millis_i64())
        .chain(
            tg.promql_expr_test
                .iter()
                .map(|p| p.eval_time.as_millis_i64()),
        )
        .max()
        .unwrap_or(0);
    let mut problems = Vec::new();
    let mut next_test = 0;
    let mut rel = 0;
    while rel <= max_eval {
        for g in groups.iter_mut() {
            g.eval(&ctx, start + rel);
        }
        while next_test < alert_tests.len() {
            let at = alert_tests[next_test];
            let t = at.eval_time.as_millis_i64();
            if !(rel <= t && t < rel + eval_interval_ms) {
                break;
            }
            if let Some(p) = check_alerts(at, &groups) {
                problems.push(format!("    {name}{p}"));
            }
            next_test += 1;
        }
        rel += eval_interval_ms;
    }
    for pt in &tg.promql_expr_test {
        if let Some(p) = check_promql(pt, &engine, &db, start, fuzzy) {
            problems.push(format!("    {name}{p}"));
        }
    }
    problems
}

type AlertKey = (Labels, BTreeMap<String, String>);

fn fmt_alerts(v: &[AlertKey]) -> String {
    if v.is_empty() {
        return "[]".into();
    }
    let items: Vec<String> = v
        .iter()
        .enumerate()
        .map(|(i, (l, a))| {
            let ann: Vec<String> = a.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!(
                "\n            {i}:\n              Labels:{l}\n              Annotations:{{{}}}",
                ann.join(", ")
            )
        })
        .collect();
    format!("[{}\n            ]", items.join(""))
}

fn check_alerts(at: &AlertTest, groups: &[Group]) -> Option<String> {
    let mut got: Vec<AlertKey> = Vec::new();
    for g in groups {
        for rs in &g.rules {
            if rs.rule.kind != RuleKind::Alert(at.alertname.clone()) {
                continue;
            }
            for a in rs.alerts.values() {
                if a.state == AlertState::Firing {
                    got.push((a.labels.clone(), a.annotations.clone()));
                }
            }
        }
    }
    let mut exp: Vec<AlertKey> = at
        .exp_alerts
        .iter()
        .map(|e| {
            let mut l: Vec<(&str, &str)> = e
                .exp_labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            l.push(("alertname", at.alertname.as_str()));
            (Labels::from_pairs(l), e.exp_annotations.clone())
        })
        .collect();
    got.sort();
    exp.sort();
    if got == exp {
        return None;
    }
    Some(format!(
        "alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
        at.alertname,
        at.eval_time,
        fmt_alerts(&exp),
        fmt_alerts(&got)
    ))
}

fn values_equal(a: f64, b: f64, fuzzy: bool) -> bool {
    if a.is_nan() && b.is_nan() {
        return cairn_engine::is_stale_nan(a) == cairn_engine::is_stale_nan(b);
    }
    if fuzzy {
        // One unit in the last place of the mantissa.
        return a == b || (a.to_bits() as i64 - b.to_bits() as i64).abs() <= 1;
    }
    a == b
}

fn check_promql(
    pt: &PromqlTest,
    engine: &Engine,
    db: &Db,
    start: i64,
    fuzzy: bool,
) -> Option<String> {
    let t = start + pt.eval_time.as_millis_i64();
    let head = format!("expr: {:?}, time: {}", pt.expr, pt.eval_time);
    let querier = db.querier();
    let got: Vec<(Labels, f64)> = match engine.instant_query(&*querier, &pt.expr, t) {
        Ok(r) => match r.value {
            Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
            Value::Scalar { v, .. } => vec![(Labels::empty(), v)],
            other => return Some(format!("{head}, err: unexpected result type {other:?}")),
        },
        Err(e) => return Some(format!("{head}, err: {e}")),
    };
    let mut exp = Vec::new();
    for s in &pt.exp_samples {
        let labels = if s.labels.trim().is_empty() {
            Labels::empty()
        } else {
            match parse_labels(s.labels.trim()) {
                Ok((l, rest)) if rest.trim().is_empty() => l,
                Ok((_, rest)) => {
                    return Some(format!(
                        "{head}, err: unexpected {rest:?} after labels {:?}",
                        s.labels
                    ));
                }
                Err(e) => return Some(format!("{head}, err: labels {:?}: {e}", s.labels)),
            }
        };
        exp.push((labels, s.value));
    }
    let mut got_sorted = got;
    got_sorted.sort_by(|a, b| a.0.cmp(&b.0));
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    let same = got_sorted.len() == exp.len()
        && got_sorted
            .iter()
            .zip(&exp)
            .all(|(g, e)| g.0 == e.0 && values_equal(g.1, e.1, fuzzy));
    if same {
        return None;
    }
    let fmt = |v: &[(Labels, f64)]| {
        let parts: Vec<String> = v
            .iter()
            .map(|(l, x)| {
                format!(
                    "{l} {}",
                    crate::rules::manager::go_fmt_e(*x).replace('e', "E")
                )
            })
            .collect();
        parts.join(",\n")
    };
    Some(format!(
        "{head},\n        exp: {}\n        got: {}",
        fmt(&exp),
        fmt(&got_sorted)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = "groups:
- name: example
  rules:
  - record: job:up:sum
    expr: sum by (job) (up)
  - alert: InstanceDown
    expr: up == 0
    for: 5m
    labels:
        severity: page
    annotations:
        summary: \"Instance {{ $labels.instance }} down\"
";

    fn run(test: &str) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("rules.yml"), RULES).expect("write");
        let path = dir.path().join("test.yml");
        std::fs::write(&path, test).expect("write");
        run_test_file(&path)
    }

    const PASSING: &str = "rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job=\"prometheus\", instance=\"localhost:9090\"}'
        values: '0x14'
      - series: 'up{job=\"node\", instance=\"localhost:9100\"}'
        values: '1+0x6 0 0 0 0 0 0 0 0'
    alert_rule_test:
      - eval_time: 4m
        alertname: InstanceDown
      - eval_time: 10m
        alertname: InstanceDown
        exp_alerts:
          - exp_labels:
              severity: page
              instance: localhost:9090
              job: prometheus
            exp_annotations:
              summary: Instance localhost:9090 down
    promql_expr_test:
      - expr: job:up:sum
        eval_time: 2m
        exp_samples:
          - labels: 'job:up:sum{job=\"node\"}'
            value: 1
          - labels: 'job:up:sum{job=\"prometheus\"}'
            value: 0
      - expr: scalar(sum(up))
        eval_time: 8m
        exp_samples:
          - value: 0
";

    #[test]
    fn a_passing_file_passes() {
        assert_eq!(run(PASSING), Vec::<String>::new());
    }

    #[test]
    fn wrong_expectations_fail_with_exp_and_got() {
        // The node instance has been down since 7m: at 10m it is not yet
        // firing (for: 5m), so expecting it is a failure.
        let t = PASSING.replace(
            "              summary: Instance localhost:9090 down\n",
            "              summary: Instance localhost:9090 down\n          - exp_labels:\n              severity: page\n              instance: localhost:9100\n              job: node\n",
        );
        let problems = run(&t);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("alertname: InstanceDown, time: 10m"),
            "{}",
            problems[0]
        );
        assert!(
            problems[0].contains("instance=\"localhost:9100\""),
            "{}",
            problems[0]
        );

        let t = PASSING.replace("            value: 1\n", "            value: 2\n");
        let problems = run(&t);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("    expr: \"job:up:sum\", time: 2m,"),
            "{}",
            problems[0]
        );
        assert!(
            problems[0].contains("got: job:up:sum{job=\"node\"} 1E+00"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn broken_rule_files_and_unknown_groups_fail() {
        let problems =
            run("rule_files: [missing.yml, rules.yml]\ngroup_eval_order: [nope]\ntests: []\n");
        assert_eq!(
            problems,
            vec!["    group \"nope\" in group_eval_order not found in the rule files".to_string()]
        );
    }
}
