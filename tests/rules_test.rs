//! `cairn rules test` on the corpus in `tests/rules/` (one passing test
//! file and deliberately failing ones: a wrong annotation, a wrong sample
//! value, an alert expected to fire while still pending): the verdict of
//! each file is the one its name gives (`pass*` pass, `fail*` fail) and the
//! same as `promtool test rules` (Prometheus 2.42, installed by
//! `scripts/install-peers.sh`); the rule file passes both checkers; and
//! the LLM-serving example of `docs/examples/` passes both.

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/rules")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "corpus missing in {}", dir.display());
    files
}

fn run(cmd: &str, args: &[&str], file: &Path) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .arg(file.file_name().expect("file name"))
        .current_dir(file.parent().expect("dir"))
        .output()
        .unwrap_or_else(|e| panic!("run {cmd} (promtool: scripts/install-peers.sh): {e}"));
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{cmd}: {:?}",
        out.status
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn verdicts_follow_names_and_match_promtool() {
    for file in corpus() {
        let name = file
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        let (cairn_ok, cairn_text) = run(env!("CARGO_BIN_EXE_cairn"), &["rules", "test"], &file);
        assert_eq!(cairn_ok, name.starts_with("pass"), "{name}:\n{cairn_text}");
        let (prom_ok, prom_text) = run("promtool", &["test", "rules"], &file);
        assert_eq!(
            cairn_ok, prom_ok,
            "{name}:\ncairn: {cairn_text}\npromtool: {prom_text}"
        );
        if !cairn_ok {
            // The same kind of failure is reported.
            let kind = |t: &str| (t.contains("alertname:"), t.contains("expr:"));
            assert_eq!(
                kind(&cairn_text),
                kind(&prom_text),
                "{name}:\ncairn: {cairn_text}\npromtool: {prom_text}"
            );
        }
    }
}

#[test]
fn the_corpus_rule_file_is_valid_for_both_checkers() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules/serving.rules.yml");
    let (ok, text) = run(env!("CARGO_BIN_EXE_cairn"), &["rules", "check"], &file);
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS: 4 rules found"), "{text}");
    let (ok, text) = run("promtool", &["check", "rules"], &file);
    assert!(ok, "{text}");
}

/// The LLM-serving example of `docs/examples/`: its rule file is valid and
/// its unit tests pass, for Cairn and for promtool alike.
#[test]
fn the_llm_serving_example_passes_both() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    let rules = dir.join("llm-serving.rules.yml");
    let tests = dir.join("llm-serving.test.yml");
    let (ok, text) = run(env!("CARGO_BIN_EXE_cairn"), &["rules", "check"], &rules);
    assert!(ok && text.contains("SUCCESS: 17 rules found"), "{text}");
    let (ok, text) = run("promtool", &["check", "rules"], &rules);
    assert!(ok, "{text}");
    let (ok, text) = run(env!("CARGO_BIN_EXE_cairn"), &["rules", "test"], &tests);
    assert!(ok, "{text}");
    let (ok, text) = run("promtool", &["test", "rules"], &tests);
    assert!(ok, "{text}");
}
