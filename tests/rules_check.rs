//! `cairn rules check` on every example in `../shared/rules/rulefmt/`:
//! the verdict (exit status) follows the file name (`*.bad.yaml` fail, the
//! rest pass), and under the legacy name scheme it is the same as
//! `promtool check rules` (Prometheus 2.42, installed by
//! `scripts/install-peers.sh`) on every file.
//!
//! Prometheus 2.42 validates label and annotation names with the legacy
//! scheme only, so it rejects `utf-8_annotation.good.yaml` and
//! `utf-8_lname.good.yaml`, which Prometheus 3 (and Cairn's default UTF-8
//! scheme) accept; `cairn rules check --name-validation=legacy` rejects them
//! too, which is what the comparison with promtool runs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rules/rulefmt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("../shared/rules/rulefmt")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 16, "examples missing in {}", dir.display());
    files
}

fn cairn_check(names: &str, file: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["rules", "check", "--name-validation", names])
        .arg(file)
        .output()
        .expect("run cairn");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "exit status {:?}: {text}",
        out.status
    );
    (out.status.success(), text)
}

fn name(p: &Path) -> String {
    p.file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("")
        .to_string()
}

#[test]
fn verdicts_follow_file_names() {
    for file in examples() {
        let name = name(&file);
        let names = if name.starts_with("legacy_validation") {
            "legacy"
        } else {
            "utf8"
        };
        let (ok, text) = cairn_check(names, &file);
        assert_eq!(ok, !name.ends_with(".bad.yaml"), "{name}: {text}");
        if ok {
            assert!(text.contains("SUCCESS"), "{name}: {text}");
        } else {
            assert!(text.contains("FAILED"), "{name}: {text}");
        }
    }
}

#[test]
fn verdicts_match_promtool_under_legacy_names() {
    for file in examples() {
        let out = Command::new("promtool")
            .args(["check", "rules"])
            .arg(&file)
            .output()
            .expect("promtool must be installed (scripts/install-peers.sh)");
        let (ok, text) = cairn_check("legacy", &file);
        assert_eq!(
            ok,
            out.status.success(),
            "{}: cairn says {ok}, promtool {}\ncairn: {text}\npromtool: {}",
            name(&file),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn failures_name_file_line_group_and_rule() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rules/rulefmt");
    let (ok, text) = cairn_check("utf8", &dir.join("record_and_for.bad.yaml"));
    assert!(!ok);
    assert!(
        text.contains(
            "record_and_for.bad.yaml:4: group \"yolo\", rule 1, \"Hello\": invalid field 'for' in recording rule"
        ),
        "{text}"
    );
    let (ok, text) = cairn_check("utf8", &dir.join("bad_field.bad.yaml"));
    assert!(!ok);
    assert!(
        text.contains(
            "bad_field.bad.yaml:4: groups[0].rules[0].annotation: unknown field `annotation`"
        ),
        "{text}"
    );
}
