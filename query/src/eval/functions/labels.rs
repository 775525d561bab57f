//! Label functions: `label_replace` and `label_join` on one label set.

use cairn_engine::Labels;
use regex::Regex;

/// Compiles the `label_replace` regex as Prometheus does: Go RE2
/// semantics (ASCII `\d`, `\w`, `\s`, `\b`), anchored at both ends.
pub fn compile_anchored(re: &str) -> Result<Regex, regex::Error> {
    cairn_engine::matcher::compile_anchored(re)
}

/// `label_replace` on one label set: when `re` matches the value of `src`,
/// sets `dst` to `repl` with `$1`/`${name}` expanded; `None` when the regex
/// does not match (the series is then passed through unchanged).
pub fn replace(labels: &Labels, dst: &str, repl: &str, src: &str, re: &Regex) -> Option<Labels> {
    let value = labels.get(src).unwrap_or("");
    let caps = re.captures(value)?;
    let mut out = String::new();
    caps.expand(repl, &mut out);
    let mut b = labels.builder();
    b.set(dst, out);
    Some(b.build())
}

/// `label_join` on one label set: `dst` becomes the values of `srcs`
/// joined by `sep`.
pub fn join(labels: &Labels, dst: &str, sep: &str, srcs: &[String]) -> Labels {
    let joined = srcs
        .iter()
        .map(|s| labels.get(s).unwrap_or(""))
        .collect::<Vec<_>>()
        .join(sep);
    let mut b = labels.builder();
    b.set(dst, joined);
    b.build()
}

/// Whether `name` may be used as a label name (any non-empty valid UTF-8
/// in Prometheus 3).
pub fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_and_join() {
        let l = Labels::from_pairs([("src", "source-value-10"), ("a", "x")]);
        let re = compile_anchored("source-value-(.*)").unwrap();
        let r = replace(&l, "dst", "value-$1", "src", &re).unwrap();
        assert_eq!(r.get("dst"), Some("value-10"));
        let re = compile_anchored("nomatch").unwrap();
        assert!(replace(&l, "dst", "x", "src", &re).is_none());
        let j = join(
            &l,
            "dst",
            "-",
            &["a".to_string(), "missing".to_string(), "a".to_string()],
        );
        assert_eq!(j.get("dst"), Some("x--x"));
    }
}
