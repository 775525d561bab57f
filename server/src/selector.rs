//! Series selectors of the metadata endpoints (`match[]` of
//! `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values`, and
//! the `query` of `/api/v1/query_exemplars`): `metric`, `metric{a="b"}`,
//! `{a=~"b.*", c!=""}`, `{"utf8.name"}`, parsed by cairn-query's PromQL
//! parser, which must yield a plain vector selector (as Prometheus's
//! `ParseMetricSelector`).

use cairn_engine::Matcher;
use cairn_query::Expr;

use crate::error::{Error, Result};

/// Parses one selector into its label matchers.
pub fn parse(param: &str, input: &str) -> Result<Vec<Matcher>> {
    let bad = |reason: String| Error::BadParam {
        param: param.to_string(),
        reason,
    };
    match cairn_query::parse(input) {
        Ok(Expr::VectorSelector(vs)) => {
            if vs.matchers.iter().all(|m| m.matches_empty()) {
                return Err(bad(
                    "vector selector must contain at least one non-empty matcher".into(),
                ));
            }
            Ok(vs.matchers)
        }
        Ok(_) => Err(bad(format!("{input:?} is not a series selector"))),
        Err(e) => Err(bad(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_engine::MatchOp;

    fn check(input: &str, want: &[(&str, MatchOp, &str)]) {
        let got = parse("match[]", input).unwrap_or_else(|e| panic!("{input}: {e}"));
        let mut got: Vec<(String, MatchOp, String)> = got
            .iter()
            .map(|m| (m.name.to_string(), m.op, m.value.to_string()))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want: Vec<(String, MatchOp, String)> = want
            .iter()
            .map(|(n, o, v)| (n.to_string(), *o, v.to_string()))
            .collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, want, "{input}");
    }

    #[test]
    fn selectors() {
        use MatchOp::*;
        check("up", &[("__name__", Equal, "up")]);
        check(
            "up{job=\"a\", instance!~'x.*'}",
            &[
                ("__name__", Equal, "up"),
                ("job", Equal, "a"),
                ("instance", RegexNoMatch, "x.*"),
            ],
        );
        check("{__name__=~\".+\",}", &[("__name__", RegexMatch, ".+")]);
        check(
            "{\"http.server.duration\", \"k8s.pod\"=\"x\"}",
            &[
                ("__name__", Equal, "http.server.duration"),
                ("k8s.pod", Equal, "x"),
            ],
        );
    }

    #[test]
    fn bad_selectors_are_bad_data() {
        for input in [
            "",
            "{}",
            "{a=\"\"}",
            "up{",
            "up{a}",
            "up{a=b}",
            "up x",
            "1+1",
            "rate(up[5m])",
        ] {
            let e = parse("match[]", input).expect_err(input);
            assert_eq!(e.status().as_u16(), 400, "{input}");
            assert!(e.to_string().contains("match[]"), "{input}: {e}");
        }
    }
}
