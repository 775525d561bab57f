//! Runs every promqltest script against Cairn's evaluator: Prometheus's
//! own scripts from `../shared/promqltest/testdata` (or `$PROMQLTEST_DIR`)
//! and ours from `tests/promql/` at the repository root.
//!
//! Prints, per file, the cases passed / failed / not supported and the
//! reason for each non-pass (`PROMQLTEST_VERBOSE=1` prints all of them).
//! The cases listed in `promqltest-passing.txt` must keep passing: any of
//! them that does not is a regression and fails the test. Newly passing
//! cases are printed; `PROMQLTEST_UPDATE=1` rewrites the list.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cairn_query::Engine;
use cairn_query::EngineOptions;
use cairn_query::promqltest::{DbStorage, Outcome, run_script};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script_dirs() -> Vec<PathBuf> {
    let upstream = match std::env::var("PROMQLTEST_DIR") {
        Ok(d) => {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                manifest_dir().join(p)
            }
        }
        Err(_) => manifest_dir().join("../../shared/promqltest/testdata"),
    };
    vec![upstream, manifest_dir().join("../tests/promql")]
}

fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "test"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A temporary directory, in memory (`/dev/shm`) where there is one: the
/// scripts' many small loads each end in a WAL fsync.
fn temp_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("temp dir")
}

fn engine() -> Engine {
    Engine::new(EngineOptions {
        default_subquery_step_ms: 60_000,
        ..EngineOptions::default()
    })
}

#[test]
fn promqltest_scripts() {
    let verbose = std::env::var("PROMQLTEST_VERBOSE").is_ok_and(|v| v == "1");
    let engine = engine();
    let mut passing: BTreeSet<String> = BTreeSet::new();
    let mut files_run = 0;
    let (mut tp, mut tf, mut tn) = (0, 0, 0);
    for dir in script_dirs() {
        for path in test_files(&dir) {
            files_run += 1;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let src = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let tmp = temp_dir();
            let mut storage =
                DbStorage::open(&tmp.path().join("db")).unwrap_or_else(|e| panic!("{e}"));
            let cases = match run_script(&src, &engine, &mut storage) {
                Ok(c) => c,
                Err(e) => {
                    println!("{name}: script error: {e}");
                    continue;
                }
            };
            let (mut p, mut f, mut n) = (0, 0, 0);
            let mut lines = Vec::new();
            for c in &cases {
                match &c.outcome {
                    Outcome::Passed => {
                        p += 1;
                        passing.insert(format!("{name}:{}", c.line));
                    }
                    Outcome::Failed(why) => {
                        f += 1;
                        lines.push(format!(
                            "  FAIL {name}:{} {}\n       {why}",
                            c.line, c.query
                        ));
                    }
                    Outcome::NotSupported(why) => {
                        n += 1;
                        if verbose {
                            lines.push(format!("  N/S  {name}:{} {}: {why}", c.line, c.query));
                        }
                    }
                }
            }
            println!("{name:<28} passed {p:>4}  failed {f:>4}  not supported {n:>4}");
            for l in &lines {
                println!("{l}");
            }
            if !verbose && n > 0 {
                let mut why: BTreeSet<String> = BTreeSet::new();
                for c in &cases {
                    if let Outcome::NotSupported(w) = &c.outcome {
                        // One entry per reason: without the position or series.
                        let w = w.split(" (").next().unwrap_or(w);
                        let w = w.split("parse error: ").last().unwrap_or(w);
                        why.insert(w.to_string());
                    }
                }
                println!(
                    "  not supported because: {}",
                    why.into_iter().collect::<Vec<_>>().join("; ")
                );
            }
            tp += p;
            tf += f;
            tn += n;
        }
    }
    println!(
        "{:<28} passed {tp:>4}  failed {tf:>4}  not supported {tn:>4}",
        "TOTAL"
    );
    assert!(
        files_run > 0,
        "no promqltest scripts found in {:?}",
        script_dirs()
    );

    let list_path = manifest_dir().join("tests/promqltest-passing.txt");
    if std::env::var("PROMQLTEST_UPDATE").is_ok_and(|v| v == "1") {
        let mut text = String::from(
            "# Cases of the promqltest scripts that pass; kept by tests/promqltest.rs.\n",
        );
        for id in &passing {
            text.push_str(id);
            text.push('\n');
        }
        std::fs::write(&list_path, text).expect("writing the passing list");
        println!(
            "wrote {} passing cases to {}",
            passing.len(),
            list_path.display()
        );
        return;
    }
    let listed: BTreeSet<String> = std::fs::read_to_string(&list_path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let new: Vec<&String> = passing.difference(&listed).collect();
    if !new.is_empty() {
        println!(
            "{} cases pass that are not in {} (run with PROMQLTEST_UPDATE=1 to add them)",
            new.len(),
            list_path.display()
        );
    }
    let regressions: Vec<&String> = listed.difference(&passing).collect();
    assert!(
        regressions.is_empty(),
        "regressions: cases listed as passing now fail: {regressions:?}"
    );
}
