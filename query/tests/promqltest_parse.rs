//! Every query of every `eval` command in Prometheus's conformance scripts
//! (`../shared/promqltest/testdata/*.test`, read in place, never copied)
//! must parse and survive a round trip through the formatter, or fail to
//! parse where the script expects failure with a matching message.
//!
//! The scripts of experimental features (listed in the data's README) are
//! parsed too but only counted: Cairn does not support their syntax yet.
//! The directory can be overridden with `PROMQLTEST_DIR`.

use std::path::{Path, PathBuf};

use cairn_query::format::prettify;
use cairn_query::parse;
use regex::Regex;

/// Scripts of features that Prometheus keeps behind feature flags.
const EXPERIMENTAL_FILES: &[&str] = &[
    "duration_expression.test",
    "extended_vectors.test",
    "fill-modifier.test",
    "info.test",
    "start_timestamps.test",
    "type_and_unit.test",
];

fn testdata_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PROMQLTEST_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let preferred = manifest.join("../../shared/promqltest/testdata");
    if preferred.is_dir() {
        return preferred;
    }
    // Fall back to the nearest ancestor that has `shared/` beside it.
    manifest
        .ancestors()
        .map(|a| a.join("shared/promqltest/testdata"))
        .find(|p| p.is_dir())
        .unwrap_or(preferred)
}

/// One `eval` command: its query and how it is expected to fail, if at all.
struct Case {
    line: usize,
    query: String,
    expect_fail: bool,
    /// `msg:` (exact) or `regex:` expectation of the failure message.
    fail_msg: Option<String>,
    fail_regex: Option<String>,
}

fn cases(script: &str) -> Vec<Case> {
    let instant = Regex::new(r"^eval(?:_\w+)?\s+instant\s+at\s+\S+\s+(.+)$").expect("regex");
    let range = Regex::new(r"^eval(?:_\w+)?\s+range\s+from\s+\S+\s+to\s+\S+\s+step\s+\S+\s+(.+)$")
        .expect("regex");
    let mut out: Vec<Case> = Vec::new();
    let mut in_eval = false;
    for (i, raw) in script.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with("eval") {
            let query = instant
                .captures(line)
                .or_else(|| range.captures(line))
                .map(|c| c[1].to_string());
            let Some(query) = query else {
                panic!("line {}: unrecognised eval command: {line}", i + 1);
            };
            out.push(Case {
                line: i + 1,
                query,
                expect_fail: line.starts_with("eval_fail"),
                fail_msg: None,
                fail_regex: None,
            });
            in_eval = true;
            continue;
        }
        if line.is_empty() || line.starts_with("load") || line.starts_with("clear") {
            in_eval = false;
            continue;
        }
        let Some(case) = out.last_mut().filter(|_| in_eval) else {
            continue;
        };
        if let Some(rest) = line.strip_prefix("expect fail") {
            case.expect_fail = true;
            let rest = rest.trim();
            if let Some(m) = rest.strip_prefix("msg:") {
                case.fail_msg = Some(m.trim().to_string());
            } else if let Some(r) = rest.strip_prefix("regex:") {
                case.fail_regex = Some(r.trim().to_string());
            }
        } else if let Some(m) = line.strip_prefix("expected_fail_message") {
            case.fail_msg = Some(m.trim().to_string());
        } else if let Some(r) = line.strip_prefix("expected_fail_regexp") {
            case.fail_regex = Some(r.trim().to_string());
        }
    }
    out
}

#[derive(Default)]
struct Counts {
    parsed: usize,
    expected_failures: usize,
    problems: Vec<String>,
}

fn run_file(path: &Path) -> Counts {
    let script = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    let mut counts = Counts::default();
    for case in cases(&script) {
        let at = format!("{name}:{}: {}", case.line, case.query);
        match parse(&case.query) {
            Ok(expr) => {
                counts.parsed += 1;
                let printed = expr.to_string();
                match parse(&printed) {
                    Ok(again) if again == expr => {}
                    Ok(again) => counts.problems.push(format!(
                        "{at}\n  printed as {printed}\n  re-parsed differently: {again:?}"
                    )),
                    Err(e) => counts.problems.push(format!(
                        "{at}\n  printed as {printed}\n  does not re-parse: {e}"
                    )),
                }
                let pretty = prettify(&expr);
                match parse(&pretty) {
                    Ok(again) if again == expr => {}
                    _ => counts.problems.push(format!(
                        "{at}\n  prettified form does not round-trip:\n{pretty}"
                    )),
                }
            }
            Err(e) if case.expect_fail => {
                let ok = match (&case.fail_msg, &case.fail_regex) {
                    (Some(m), _) => e.message == *m || e.to_string() == *m,
                    (_, Some(r)) => Regex::new(r).is_ok_and(|re| re.is_match(&e.to_string())),
                    _ => true,
                };
                if ok {
                    counts.expected_failures += 1;
                    println!("  {at}\n    fails to parse, as the script expects: {e}");
                } else {
                    counts
                        .problems
                        .push(format!("{at}\n  fails with the wrong message: {e}"));
                }
            }
            Err(e) => counts.problems.push(format!("{at}\n  does not parse: {e}")),
        }
    }
    counts
}

#[test]
fn every_eval_query_parses_and_round_trips() {
    let dir = testdata_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "promqltest data not found at {} ({e}); set PROMQLTEST_DIR",
                dir.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());

    let mut required_problems = Vec::new();
    let (mut total, mut skipped_total) = (0, 0);
    println!(
        "{:<28} {:>7} {:>9} {:>9}",
        "file", "parsed", "exp.fail", "problems"
    );
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let counts = run_file(path);
        let experimental = EXPERIMENTAL_FILES.contains(&name);
        println!(
            "{:<28} {:>7} {:>9} {:>9}{}",
            name,
            counts.parsed,
            counts.expected_failures,
            counts.problems.len(),
            if experimental {
                "  (experimental: counted, not required)"
            } else {
                ""
            }
        );
        if experimental {
            skipped_total += counts.parsed + counts.expected_failures + counts.problems.len();
        } else {
            total += counts.parsed + counts.expected_failures;
            required_problems.extend(counts.problems);
        }
    }
    println!("required: {total} queries ok; experimental: {skipped_total} queries counted");
    assert!(
        required_problems.is_empty(),
        "{} problems:\n{}",
        required_problems.len(),
        required_problems.join("\n")
    );
    assert!(total > 1500, "suspiciously few queries: {total}");
}
