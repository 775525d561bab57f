//! Series selectors of the metadata endpoints (`match[]` of
//! `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values`):
//! `metric`, `metric{a="b"}`, `{a=~"b.*", c!=""}`, `{"utf8.name"}`.
//!
//! Only selectors are accepted here (not whole PromQL expressions), so a
//! small parser suffices; query endpoints use cairn-query's parser.

use cairn_engine::{MatchOp, Matcher};

use crate::error::{Error, Result};

/// Parses one selector into matchers. At least one matcher must not match
/// the empty string, as Prometheus requires (so `{}` and `{a=""}` are
/// refused: they would select every series).
pub fn parse(param: &str, input: &str) -> Result<Vec<Matcher>> {
    let err = |pos: usize, what: &str| Error::BadParam {
        param: param.to_string(),
        reason: format!("parse error at char {}: {what} in {input:?}", pos + 1),
    };
    let mut p = Parser { s: input, pos: 0 };
    let mut matchers = Vec::new();
    p.skip_ws();
    if let Some(name) = p.ident() {
        matchers.push(matcher(MatchOp::Equal, "__name__", &name).map_err(|e| err(0, &e))?);
    }
    p.skip_ws();
    if p.eat('{') {
        loop {
            p.skip_ws();
            if p.eat('}') {
                break;
            }
            let start = p.pos;
            let name = match p.peek() {
                Some('"') | Some('\'') | Some('`') => p.string().map_err(|e| err(p.pos, &e))?,
                _ => p.ident().ok_or_else(|| err(start, "expected label name"))?,
            };
            p.skip_ws();
            let op = if p.eat_str("=~") {
                Some(MatchOp::RegexMatch)
            } else if p.eat_str("!~") {
                Some(MatchOp::RegexNoMatch)
            } else if p.eat_str("!=") {
                Some(MatchOp::NotEqual)
            } else if p.eat('=') {
                Some(MatchOp::Equal)
            } else {
                None
            };
            match op {
                Some(op) => {
                    p.skip_ws();
                    let at = p.pos;
                    let value = p.string().map_err(|e| err(at, &e))?;
                    matchers.push(matcher(op, &name, &value).map_err(|e| err(start, &e))?);
                }
                // A bare quoted string is a metric name: {"http.server.duration"}.
                None if matches!(input.as_bytes().get(start), Some(b'"' | b'\'' | b'`')) => {
                    matchers.push(
                        matcher(MatchOp::Equal, "__name__", &name).map_err(|e| err(start, &e))?,
                    );
                }
                None => return Err(err(p.pos, "expected one of =, !=, =~, !~")),
            }
            p.skip_ws();
            if p.eat(',') {
                continue;
            }
            if p.eat('}') {
                break;
            }
            return Err(err(p.pos, "expected , or }"));
        }
    }
    p.skip_ws();
    if p.pos != input.len() {
        return Err(err(p.pos, "unexpected trailing input"));
    }
    if matchers.is_empty() {
        return Err(err(0, "expected a series selector"));
    }
    if matchers.iter().all(|m| m.matches_empty()) {
        return Err(err(
            0,
            "vector selector must contain at least one non-empty matcher",
        ));
    }
    Ok(matchers)
}

fn matcher(op: MatchOp, name: &str, value: &str) -> std::result::Result<Matcher, String> {
    Matcher::new(op, name, value).map_err(|e| e.to_string())
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if !c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, t: &str) -> bool {
        if self.s[self.pos..].starts_with(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    fn ident(&mut self) -> Option<String> {
        let rest = &self.s[self.pos..];
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            let ok =
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit());
            if !ok {
                break;
            }
            end = i + c.len_utf8();
        }
        if end == 0 {
            return None;
        }
        self.pos += end;
        Some(rest[..end].to_string())
    }

    /// A PromQL string literal: "..." or '...' with Go escapes, or `...` raw.
    fn string(&mut self) -> std::result::Result<String, String> {
        let quote = self.peek().ok_or("expected string")?;
        if !matches!(quote, '"' | '\'' | '`') {
            return Err("expected string".into());
        }
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or("unterminated string")?;
            self.pos += c.len_utf8();
            if c == quote {
                return Ok(out);
            }
            if c == '\\' && quote != '`' {
                let e = self.peek().ok_or("unterminated string")?;
                self.pos += e.len_utf8();
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' | '"' | '\'' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex = self.s.get(self.pos..self.pos + n).ok_or("bad escape")?;
                        let v = u32::from_str_radix(hex, 16).map_err(|_| "bad escape")?;
                        out.push(char::from_u32(v).ok_or("bad escape")?);
                        self.pos += n;
                    }
                    _ => return Err(format!("unknown escape sequence \\{e}")),
                }
            } else {
                out.push(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, want: &[(&str, MatchOp, &str)]) {
        let got = parse("match[]", input).unwrap_or_else(|e| panic!("{input}: {e}"));
        let got: Vec<(String, MatchOp, String)> = got
            .iter()
            .map(|m| (m.name.to_string(), m.op, m.value.to_string()))
            .collect();
        let want: Vec<(String, MatchOp, String)> = want
            .iter()
            .map(|(n, o, v)| (n.to_string(), *o, v.to_string()))
            .collect();
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
        check("{__name__!=\"\"}", &[("__name__", NotEqual, "")]);
        check(
            "{\"http.server.duration\", \"k8s.pod\"=\"x\"}",
            &[
                ("__name__", Equal, "http.server.duration"),
                ("k8s.pod", Equal, "x"),
            ],
        );
        check("{a=`raw\\n`}", &[("a", Equal, "raw\\n")]);
        check("{a=\"q\\\"\\n\"}", &[("a", Equal, "q\"\n")]);
    }

    #[test]
    fn bad_selectors_say_where() {
        for input in [
            "",
            "{}",
            "{a=\"\"}",
            "up{",
            "up{a}",
            "up{a=b}",
            "up x",
            "{a=~\"(\"}",
            "1+1",
        ] {
            let e = parse("match[]", input).expect_err(input);
            assert_eq!(e.status().as_u16(), 400, "{input}");
            assert!(e.to_string().contains("match[]"), "{input}: {e}");
        }
    }
}
