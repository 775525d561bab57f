//! Table-driven parser tests: valid queries with the tree they must give
//! (written as an S-expression that makes precedence and modifiers
//! visible) and the canonical text they print as; invalid queries with the
//! position and message of the error; and inputs built to exhaust the
//! stack, which must be refused at once.

use cairn_query::ast::{AtModifier, Expr, ValueType, VectorMatchCardinality};
use cairn_query::format::prettify;
use cairn_query::{ParseOptions, parse, parse_with};

/// The tree as an S-expression: `(op lhs rhs)`, selectors with their
/// matchers, modifiers spelled out.
fn sexp(e: &Expr) -> String {
    match e {
        Expr::Number(n) => cairn_query::format::format_float(n.value),
        Expr::String(s) => format!("{:?}", s.value),
        Expr::VectorSelector(vs) => {
            let ms: Vec<String> = vs.matchers.iter().map(|m| m.to_string()).collect();
            let mut s = format!("(sel {})", ms.join(" "));
            if vs.offset_ms != 0 {
                s = format!("(offset {} {s})", vs.offset_ms);
            }
            match vs.at {
                Some(AtModifier::Timestamp(t)) => s = format!("(at {t} {s})"),
                Some(AtModifier::Start) => s = format!("(at start {s})"),
                Some(AtModifier::End) => s = format!("(at end {s})"),
                None => {}
            }
            s
        }
        Expr::MatrixSelector(m) => {
            format!(
                "(range {} {})",
                m.range_ms,
                sexp(&Expr::VectorSelector(m.vector.clone()))
            )
        }
        Expr::Subquery(sq) => {
            let mut s = format!(
                "(subquery {} {} {})",
                sq.range_ms,
                sq.step_ms.map_or("default".to_string(), |s| s.to_string()),
                sexp(&sq.expr)
            );
            if sq.offset_ms != 0 {
                s = format!("(offset {} {s})", sq.offset_ms);
            }
            if let Some(AtModifier::Timestamp(t)) = sq.at {
                s = format!("(at {t} {s})");
            }
            s
        }
        Expr::Paren(p) => format!("(paren {})", sexp(&p.expr)),
        Expr::Unary(u) => format!("(neg {})", sexp(&u.expr)),
        Expr::Binary(b) => {
            let mut op = b.op.as_str().to_string();
            if b.return_bool {
                op.push_str(" bool");
            }
            if let Some(vm) = &b.matching {
                let card = match vm.card {
                    VectorMatchCardinality::OneToOne => "1:1",
                    VectorMatchCardinality::ManyToOne => "n:1",
                    VectorMatchCardinality::OneToMany => "1:n",
                    VectorMatchCardinality::ManyToMany => "n:n",
                };
                let kind = if vm.on { "on" } else { "ignoring" };
                op.push_str(&format!(" [{card} {kind}({})", vm.labels.join(",")));
                if !vm.include.is_empty() {
                    op.push_str(&format!(" +({})", vm.include.join(",")));
                }
                op.push(']');
            }
            format!("({op} {} {})", sexp(&b.lhs), sexp(&b.rhs))
        }
        Expr::Aggregate(a) => {
            let mut s = format!("({}", a.op);
            if a.without {
                s.push_str(&format!(" without({})", a.grouping.join(",")));
            } else if !a.grouping.is_empty() {
                s.push_str(&format!(" by({})", a.grouping.join(",")));
            }
            if let Some(p) = &a.param {
                s.push(' ');
                s.push_str(&sexp(p));
            }
            s.push(' ');
            s.push_str(&sexp(&a.expr));
            s.push(')');
            s
        }
        Expr::Call(c) => {
            let args: Vec<String> = c.args.iter().map(sexp).collect();
            format!("({}() {})", c.func.name, args.join(" "))
        }
    }
}

/// `input` parses to the tree `tree` and prints as `printed`, which
/// re-parses to the same tree.
fn check_ok(input: &str, tree: &str, printed: &str) {
    let e = parse(input).unwrap_or_else(|err| panic!("{input:?} should parse: {err}"));
    assert_eq!(sexp(&e), tree, "tree of {input:?}");
    assert_eq!(e.to_string(), printed, "printed form of {input:?}");
    let again = parse(printed).unwrap_or_else(|err| panic!("{printed:?} should re-parse: {err}"));
    assert_eq!(again, e, "round trip of {input:?}");
}

/// `input` fails with `message` at `line:col`.
fn check_err(input: &str, pos: &str, message: &str) {
    match parse(input) {
        Ok(e) => panic!("{input:?} should fail, parsed as {e}"),
        Err(err) => {
            assert_eq!(err.message, message, "message for {input:?}");
            assert_eq!(
                format!("{}:{}", err.line, err.col),
                pos,
                "position for {input:?}"
            );
            assert_eq!(err.to_string(), format!("{pos}: parse error: {message}"));
        }
    }
}

#[test]
fn literals() {
    let cases = [
        ("42", "42", "42"),
        ("0x2A", "42", "42"),
        ("017", "15", "15"),
        ("1_000_000", "1000000", "1000000"),
        ("2.5e3", "2500", "2500"),
        (".25", "0.25", "0.25"),
        ("7.", "7", "7"),
        ("-7", "-7", "-7"),
        ("- -7", "7", "7"),
        ("+7", "7", "7"),
        ("INF", "+Inf", "+Inf"),
        ("-iNf", "-Inf", "-Inf"),
        ("Nan", "NaN", "NaN"),
        ("90s", "90", "90"),
        ("1h30m", "5400", "5400"),
        (r#""tab\there""#, r#""tab\there""#, r#""tab\there""#),
        (r#"'single "q"'"#, r#""single \"q\"""#, r#""single \"q\"""#),
        ("`raw \\n`", r#""raw \\n""#, r#""raw \\n""#),
        (r#""\u00e9t\u00e9""#, r#""été""#, r#""été""#),
        ("# a comment\n 3 # another", "3", "3"),
    ];
    for (input, tree, printed) in cases {
        check_ok(input, tree, printed);
    }
}

#[test]
fn selectors_and_modifiers() {
    let cases = [
        ("up", r#"(sel __name__="up")"#, "up"),
        (
            r#"gpu_util{model="llama", region!~"eu-.*"}"#,
            r#"(sel __name__="gpu_util" model="llama" region!~"eu-.*")"#,
            r#"gpu_util{model="llama",region!~"eu-.*"}"#,
        ),
        (
            r#"{__name__=~"infer_.+", model!=""}"#,
            r#"(sel __name__=~"infer_.+" model!="")"#,
            r#"{__name__=~"infer_.+",model!=""}"#,
        ),
        (
            r#"{"kv.cache.hits", "gpu.id"="3"}"#,
            r#"(sel __name__="kv.cache.hits" gpu.id="3")"#,
            r#"{"gpu.id"="3",__name__="kv.cache.hits"}"#,
        ),
        (
            "job:errors:rate5m",
            r#"(sel __name__="job:errors:rate5m")"#,
            "job:errors:rate5m",
        ),
        ("sum", r#"(sel __name__="sum")"#, "sum"),
        (
            "offset{a=\"b\",}",
            r#"(sel __name__="offset" a="b")"#,
            "offset{a=\"b\"}",
        ),
        (
            "tokens_total[90s]",
            r#"(range 90000 (sel __name__="tokens_total"))"#,
            "tokens_total[1m30s]",
        ),
        ("x[300]", r#"(range 300000 (sel __name__="x"))"#, "x[5m]"),
        (
            "x offset 1h30m",
            r#"(offset 5400000 (sel __name__="x"))"#,
            "x offset 1h30m",
        ),
        (
            "x offset -90",
            r#"(offset -90000 (sel __name__="x"))"#,
            "x offset -1m30s",
        ),
        (
            "x[5m] offset 1w",
            r#"(range 300000 (offset 604800000 (sel __name__="x")))"#,
            "x[5m] offset 1w",
        ),
        (
            "x @ 1700000000.5",
            r#"(at 1700000000500 (sel __name__="x"))"#,
            "x @ 1700000000.500",
        ),
        (
            "x @ -10",
            r#"(at -10000 (sel __name__="x"))"#,
            "x @ -10.000",
        ),
        ("x @ end()", r#"(at end (sel __name__="x"))"#, "x @ end()"),
        (
            "x offset 5m @ start()",
            r#"(at start (offset 300000 (sel __name__="x")))"#,
            "x @ start() offset 5m",
        ),
        (
            "x[1m] @ 100 offset 10s",
            r#"(range 60000 (at 100000 (offset 10000 (sel __name__="x"))))"#,
            "x[1m] @ 100.000 offset 10s",
        ),
        (
            "rate(x[1m])[1h:5m]",
            r#"(subquery 3600000 300000 (rate() (range 60000 (sel __name__="x"))))"#,
            "rate(x[1m])[1h:5m]",
        ),
        (
            "x[1h:] offset 1d @ 50",
            r#"(at 50000 (offset 86400000 (subquery 3600000 default (sel __name__="x"))))"#,
            "x[1h:] @ 50.000 offset 1d",
        ),
    ];
    for (input, tree, printed) in cases {
        check_ok(input, tree, printed);
    }
}

#[test]
fn operator_precedence_and_associativity() {
    let cases = [
        ("1 + 2 * 3", "(+ 1 (* 2 3))", "1 + 2 * 3"),
        ("1 * 2 + 3", "(+ (* 1 2) 3)", "1 * 2 + 3"),
        ("1 - 2 - 3", "(- (- 1 2) 3)", "1 - 2 - 3"),
        ("2 ^ 3 ^ 2", "(^ 2 (^ 3 2))", "2 ^ 3 ^ 2"),
        ("-2 ^ 2", "(neg (^ 2 2))", "-2 ^ 2"),
        (
            "-x * y",
            "(* [1:1 ignoring()] (neg (sel __name__=\"x\")) (sel __name__=\"y\"))",
            "-x * y",
        ),
        ("2 * -3", "(* 2 -3)", "2 * -3"),
        ("1 - -1", "(- 1 -1)", "1 - -1"),
        ("2 ^ -1", "(^ 2 -1)", "2 ^ -1"),
        ("1 atan2 2 % 3", "(% (atan2 1 2) 3)", "1 atan2 2 % 3"),
        (
            "a or b and c unless d",
            "(or [n:n ignoring()] (sel __name__=\"a\") (unless [n:n ignoring()] (and [n:n ignoring()] (sel __name__=\"b\") (sel __name__=\"c\")) (sel __name__=\"d\")))",
            "a or b and c unless d",
        ),
        (
            "a > 1 and b + 1 < 2",
            "(and [n:n ignoring()] (> (sel __name__=\"a\") 1) (< (+ (sel __name__=\"b\") 1) 2))",
            "a > 1 and b + 1 < 2",
        ),
        ("(1 + 2) * 3", "(* (paren (+ 1 2)) 3)", "(1 + 2) * 3"),
        ("1 < bool 2", "(< bool 1 2)", "1 < bool 2"),
        (
            "a == BOOL b",
            "(== bool [1:1 ignoring()] (sel __name__=\"a\") (sel __name__=\"b\"))",
            "a == bool b",
        ),
        (
            "errors / on(model, route) group_left(team) requests",
            "(/ [n:1 on(model,route) +(team)] (sel __name__=\"errors\") (sel __name__=\"requests\"))",
            "errors / on (model, route) group_left (team) requests",
        ),
        (
            "a * ignoring(instance) group_right b",
            "(* [1:n ignoring(instance)] (sel __name__=\"a\") (sel __name__=\"b\"))",
            "a * ignoring (instance) group_right () b",
        ),
        (
            "a + on() b",
            "(+ [1:1 on()] (sel __name__=\"a\") (sel __name__=\"b\"))",
            "a + on () b",
        ),
        (
            "a + ignoring() b",
            "(+ [1:1 ignoring()] (sel __name__=\"a\") (sel __name__=\"b\"))",
            "a + b",
        ),
        ("x + 1", "(+ (sel __name__=\"x\") 1)", "x + 1"),
        ("x </ 5", "(</ (sel __name__=\"x\") 5)", "x </ 5"),
    ];
    for (input, tree, printed) in cases {
        check_ok(input, tree, printed);
    }
}

#[test]
fn aggregations_and_calls() {
    let cases = [
        (
            "sum by (model) (rate(x[5m]))",
            "(sum by(model) (rate() (range 300000 (sel __name__=\"x\"))))",
            "sum by (model) (rate(x[5m]))",
        ),
        (
            "SUM(x) BY (a, b,)",
            "(sum by(a,b) (sel __name__=\"x\"))",
            "sum by (a, b) (x)",
        ),
        (
            "avg without (gpu) (x)",
            "(avg without(gpu) (sel __name__=\"x\"))",
            "avg without (gpu) (x)",
        ),
        (
            "max without () (x)",
            "(max without() (sel __name__=\"x\"))",
            "max without () (x)",
        ),
        ("min by () (x)", "(min (sel __name__=\"x\"))", "min(x)"),
        ("topk(3, x)", "(topk 3 (sel __name__=\"x\"))", "topk(3, x)"),
        (
            "count_values(\"version\", build_info)",
            "(count_values \"version\" (sel __name__=\"build_info\"))",
            "count_values(\"version\", build_info)",
        ),
        (
            "quantile(0.99, x)",
            "(quantile 0.99 (sel __name__=\"x\"))",
            "quantile(0.99, x)",
        ),
        (
            "limitk(2, x)",
            "(limitk 2 (sel __name__=\"x\"))",
            "limitk(2, x)",
        ),
        (
            "limit_ratio(0.5, x)",
            "(limit_ratio 0.5 (sel __name__=\"x\"))",
            "limit_ratio(0.5, x)",
        ),
        (
            "sum by (\"k8s.pod\", on) (x)",
            "(sum by(k8s.pod,on) (sel __name__=\"x\"))",
            "sum by (\"k8s.pod\", on) (x)",
        ),
        ("time()", "(time() )", "time()"),
        ("round(x)", "(round() (sel __name__=\"x\"))", "round(x)"),
        (
            "round(x, 0.5)",
            "(round() (sel __name__=\"x\") 0.5)",
            "round(x, 0.5)",
        ),
        (
            "label_join(x, \"d\", \",\", \"a\", \"b\", \"c\")",
            "(label_join() (sel __name__=\"x\") \"d\" \",\" \"a\" \"b\" \"c\")",
            "label_join(x, \"d\", \",\", \"a\", \"b\", \"c\")",
        ),
        (
            "rate (x[1m])",
            "(rate() (range 60000 (sel __name__=\"x\")))",
            "rate(x[1m])",
        ),
        (
            "histogram_quantile(0.95, sum by (le) (rate(b[5m])))",
            "(histogram_quantile() 0.95 (sum by(le) (rate() (range 300000 (sel __name__=\"b\")))))",
            "histogram_quantile(0.95, sum by (le) (rate(b[5m])))",
        ),
    ];
    for (input, tree, printed) in cases {
        check_ok(input, tree, printed);
    }
}

#[test]
fn value_types() {
    let cases = [
        ("1", ValueType::Scalar),
        ("\"s\"", ValueType::String),
        ("x", ValueType::Vector),
        ("x[1m]", ValueType::Matrix),
        ("x[1m:]", ValueType::Matrix),
        ("1 + 1", ValueType::Scalar),
        ("x + 1", ValueType::Vector),
        ("scalar(x)", ValueType::Scalar),
        ("(x)", ValueType::Vector),
        ("-time()", ValueType::Scalar),
    ];
    for (input, want) in cases {
        let e = parse(input).unwrap_or_else(|err| panic!("{input}: {err}"));
        assert_eq!(e.value_type(), want, "{input}");
    }
}

#[test]
fn syntax_errors() {
    let cases = [
        ("", "1:1", "no expression found in input"),
        ("  # only a comment", "1:1", "no expression found in input"),
        ("x +", "1:4", "unexpected end of input"),
        ("* x", "1:1", "unexpected <op:*>"),
        ("x y", "1:3", "unexpected identifier \"y\""),
        ("(x", "1:3", "unclosed left parenthesis"),
        ("x)", "1:2", "unexpected right parenthesis ')'"),
        ("x]", "1:2", "unexpected right bracket ']'"),
        ("x $ y", "1:3", "unexpected character: '$'"),
        ("1.2.3", "1:1", "bad number or duration syntax: \"1.2.\""),
        ("3hh", "1:1", "bad number or duration syntax: \"3hh\""),
        ("x =~ y", "1:3", "unexpected character after '=': '~'"),
        ("x{", "1:3", "unexpected end of input inside braces"),
        (
            "x{a=b}",
            "1:5",
            "unexpected identifier \"b\" in label matching, expected string",
        ),
        (
            "x{a}",
            "1:4",
            "unexpected \"}\" in label matching, expected label matching operator",
        ),
        (
            "x{a=\"1\" b=\"2\"}",
            "1:9",
            "unexpected identifier \"b\" in label matching, expected \",\" or \"}\"",
        ),
        (
            "x{,}",
            "1:3",
            "unexpected \",\" in label matching, expected identifier or \"}\"",
        ),
        (
            "x{a.b=\"1\"}",
            "1:4",
            "unexpected character inside braces: '.'",
        ),
        (
            "x{a=~\"(\"}",
            "1:3",
            "error parsing regexp: error: unclosed group",
        ),
        ("\"abc", "1:1", "unterminated quoted string"),
        ("`abc", "1:1", "unterminated raw string"),
        ("\"\\q\"", "1:1", "unknown escape sequence U+0071 'q'"),
        (
            "\"\\xZZ\"",
            "1:1",
            "illegal character U+005A 'Z' in escape sequence",
        ),
        ("\"\\xff\"", "1:1", "string \"\\xff\" is not valid UTF-8"),
        (
            "x[",
            "1:3",
            "unexpected end of input in duration expression",
        ),
        (
            "x[]",
            "1:3",
            "unexpected \"]\" in subquery or range selector, expected number, duration, step(), or range()",
        ),
        (
            "x[5m",
            "1:5",
            "unexpected end of input in duration expression",
        ),
        (
            "x[5m:1m:]",
            "1:8",
            "unexpected \":\" in subquery selector, expected \"]\"",
        ),
        ("x[0s]", "1:3", "duration must be greater than 0"),
        ("x[-5m]", "1:3", "duration must be greater than 0"),
        ("x[5m1h]", "1:3", "not a valid duration string: \"5m1h\""),
        (
            "x[5m+1m]",
            "1:5",
            "experimental duration expression is not enabled",
        ),
        ("x[1000y]", "1:3", "duration out of range"),
        (
            "x[5m] offset",
            "1:13",
            "unexpected end of input in offset, expected number, duration, step(), or range()",
        ),
        (
            "x offset 1m offset 2m",
            "1:1",
            "offset may not be set multiple times",
        ),
        (
            "x offset 1m [5m]",
            "1:13",
            "no offset modifiers allowed before range",
        ),
        ("x @ 1 [5m]", "1:7", "no @ modifiers allowed before range"),
        (
            "x @ 1 @ 2",
            "1:1",
            "@ <timestamp> may not be set multiple times",
        ),
        (
            "x @",
            "1:4",
            "unexpected end of input in @, expected timestamp",
        ),
        (
            "x @ Inf",
            "1:1",
            "timestamp out of bounds for @ modifier: +Inf",
        ),
        (
            "sum(x) offset 1m",
            "1:1",
            "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
        ),
        (
            "rate(x[1m]) @ 5",
            "1:1",
            "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery",
        ),
        ("(x)[5m]", "1:4", "ranges only allowed for vector selectors"),
        (
            "x anchored",
            "1:3",
            "anchored modifier is experimental and not supported",
        ),
        (
            "sum by x (y)",
            "1:8",
            "unexpected identifier \"x\" in grouping opts, expected \"(\"",
        ),
        (
            "sum by (1) (y)",
            "1:9",
            "unexpected number \"1\" in grouping opts, expected label",
        ),
        (
            "sum by (a b) (y)",
            "1:11",
            "unexpected identifier \"b\" in grouping opts, expected \",\" or \")\"",
        ),
        ("sum by (a) (y) without (b)", "1:16", "unexpected <without>"),
        (
            "sum by (a)",
            "1:11",
            "unexpected end of input in aggregation, expected \"(\"",
        ),
        (
            "sum()",
            "1:1",
            "no arguments for aggregate expression provided",
        ),
        (
            "topk(x)",
            "1:1",
            "wrong number of arguments for aggregate expression provided, expected 2, got 1",
        ),
        (
            "sum(1, x)",
            "1:1",
            "wrong number of arguments for aggregate expression provided, expected 1, got 2",
        ),
        (
            "rate(x[1m],)",
            "1:11",
            "trailing commas not allowed in function call args",
        ),
        ("nope(x)", "1:1", "unknown function with name \"nope\""),
        ("Rate(x[1m])", "1:1", "unknown function with name \"Rate\""),
        ("x + on(a) ignoring(b) y", "1:11", "unexpected <ignoring>"),
        ("x + group_left y", "1:5", "unexpected <group_left>"),
        (
            "a * on(b) fill(0) c",
            "1:11",
            "binop fill modifiers are experimental and not supported",
        ),
    ];
    for (input, pos, msg) in cases {
        check_err(input, pos, msg);
    }
}

#[test]
fn type_errors() {
    let cases = [
        (
            "1 > 2",
            "1:3",
            "comparisons between scalars must use BOOL modifier",
        ),
        (
            "x + bool y",
            "1:3",
            "bool modifier can only be used on comparison operators",
        ),
        (
            "1 and 2",
            "1:1",
            "set operator \"and\" not allowed in binary scalar expression",
        ),
        (
            "x unless 1",
            "1:1",
            "set operator \"unless\" not allowed in binary scalar expression",
        ),
        (
            "x or on(a) 1",
            "1:1",
            "vector matching only allowed between instant vectors",
        ),
        (
            "x and on(a) group_left(b) y",
            "1:1",
            "no grouping allowed for \"and\" operation",
        ),
        (
            "x + on(a) group_left(a) y",
            "1:3",
            "label \"a\" must not occur in ON and GROUP clause at once",
        ),
        (
            "x[1m] + 1",
            "1:1",
            "binary expression must contain only scalar and instant vector types",
        ),
        (
            "1 + \"s\"",
            "1:5",
            "binary expression must contain only scalar and instant vector types",
        ),
        (
            "-\"s\"",
            "1:1",
            "unary expression only allowed on expressions of type scalar or instant vector, got \"string\"",
        ),
        (
            "-x[1m]",
            "1:1",
            "unary expression only allowed on expressions of type scalar or instant vector, got \"range vector\"",
        ),
        (
            "+x[1m]",
            "1:1",
            "unary expression only allowed on expressions of type scalar or instant vector, got \"range vector\"",
        ),
        (
            "x[1m][1h:]",
            "1:1",
            "subquery is only allowed on instant vector, got matrix instead",
        ),
        (
            "rate(x)",
            "1:6",
            "expected type range vector in call to function \"rate\", got instant vector",
        ),
        (
            "abs(x[1m])",
            "1:5",
            "expected type instant vector in call to function \"abs\", got range vector",
        ),
        (
            "clamp(x, \"a\", 1)",
            "1:10",
            "expected type scalar in call to function \"clamp\", got string",
        ),
        (
            "abs()",
            "1:1",
            "expected 1 argument(s) in call to \"abs\", got 0",
        ),
        (
            "time(x)",
            "1:1",
            "expected 0 argument(s) in call to \"time\", got 1",
        ),
        (
            "label_join(x, \"a\")",
            "1:1",
            "expected at least 3 argument(s) in call to \"label_join\", got 2",
        ),
        (
            "hour(x, x)",
            "1:1",
            "expected at most 1 argument(s) in call to \"hour\", got 2",
        ),
        (
            "sum(x[5m])",
            "1:5",
            "expected type instant vector in aggregation expression, got range vector",
        ),
        (
            "topk(x, y)",
            "1:6",
            "expected type scalar in aggregation parameter, got instant vector",
        ),
        (
            "count_values(1, y)",
            "1:14",
            "expected type string in aggregation parameter, got scalar",
        ),
        (
            "{}",
            "1:1",
            "vector selector must contain at least one non-empty matcher",
        ),
        (
            "{a=~\".*\", b!=\"x\"}",
            "1:1",
            "vector selector must contain at least one non-empty matcher",
        ),
        (
            "x{__name__=\"y\"}",
            "1:1",
            "metric name must not be set twice: \"x\" or \"y\"",
        ),
        (
            "floor(1, rate(x))",
            "1:1",
            "expected 1 argument(s) in call to \"floor\", got 2",
        ),
        (
            "\"a\\xc5z\"",
            "1:1",
            "string \"a\\xc5z\" is not valid UTF-8",
        ),
    ];
    for (input, pos, msg) in cases {
        check_err(input, pos, msg);
    }
    // Where a label name is expected, Prometheus parses such a string and
    // refuses it at evaluation (promqltest aggregators.test): it parses and
    // prints back unchanged.
    let input = "count_values(\"a\\xc5z\", x)";
    let expr = cairn_query::parse(input).expect("parses");
    assert_eq!(expr.to_string(), input);
}

#[test]
fn multi_line_positions() {
    check_err(
        "sum(\n  rate(x)\n)",
        "2:8",
        "expected type range vector in call to function \"rate\", got instant vector",
    );
}

#[test]
fn experimental_functions_can_be_disabled() {
    let strict = ParseOptions {
        experimental_functions: false,
        ..ParseOptions::default()
    };
    let err = parse_with("mad_over_time(x[5m])", &strict).expect_err("experimental");
    assert_eq!(err.message, "function \"mad_over_time\" is not enabled");
    let err = parse_with("limitk(1, x)", &strict).expect_err("experimental");
    assert!(err.message.starts_with("limitk() is experimental"), "{err}");
    assert!(parse("mad_over_time(x[5m])").is_ok());
    assert!(parse_with("rate(x[5m])", &strict).is_ok());
}

#[test]
fn prettify_splits_long_expressions_like_format_query() {
    let e = parse(
        "sum by (model, adapter) (rate(infer_requests_total{route=\"/v1/chat\", region=\"eu-west-1\"}[5m])) / on (model) group_left sum by (model) (rate(infer_tokens_total[5m]))",
    )
    .expect("parses");
    // The left operand fits in 100 bytes and stays on one line; the
    // operands of the split binary expression are indented one level
    // deeper than the operator.
    let want = "  sum by (model, adapter) (rate(infer_requests_total{region=\"eu-west-1\",route=\"/v1/chat\"}[5m]))\n/ on (model) group_left ()\n  sum by (model) (rate(infer_tokens_total[5m]))";
    assert_eq!(prettify(&e), want);
    let long = parse(
        "histogram_quantile(0.99, sum by (le, model, adapter, route, region) (rate(infer_latency_ms_bucket{env=\"prod\"}[5m])))",
    )
    .expect("parses");
    let want = "histogram_quantile(\n  0.99,\n  sum by (le, model, adapter, route, region) (rate(infer_latency_ms_bucket{env=\"prod\"}[5m]))\n)";
    assert_eq!(prettify(&long), want);
    assert_eq!(parse(&prettify(&e)).expect("re-parses"), e);
    let short = parse("sum(rate(x[5m]))").expect("parses");
    assert_eq!(prettify(&short), "sum(rate(x[5m]))");
}

/// Inputs that would exhaust the stack of a naive recursive parser are
/// refused with a clear error, whatever their shape.
#[test]
fn nesting_bombs_are_refused() {
    let n = 20_000;
    let bombs = [
        format!("{}1{}", "(".repeat(n), ")".repeat(n)),
        format!("{}x", "-".repeat(n)),
        format!("{}x", "-(".repeat(n)),
        format!("{}x{}", "abs(".repeat(n), ")".repeat(n)),
        format!("{}x{}", "sum(".repeat(n), ")".repeat(n)),
        format!("x{}", " ^ x".repeat(n)),
        format!("x{}", " + x".repeat(n)),
        format!("x{}", "[1m:]".repeat(n)),
    ];
    for bomb in &bombs {
        let err = parse(bomb).expect_err("must be refused");
        assert!(
            err.message.contains("nested too deeply"),
            "{}...: {}",
            &bomb[..20],
            err.message
        );
    }
    // `- - - 1` folds into a literal, so a long run of signs on a number is
    // fine and cheap.
    assert!(parse(&format!("{}1", "- ".repeat(n))).is_ok());
}

/// Nesting just under the limit works (and does not overflow the stack of
/// a test thread in a debug build).
#[test]
fn deep_but_legal_nesting_parses() {
    let depth = cairn_query::parser::DEFAULT_MAX_DEPTH - 2;
    let q = format!("{}x{}", "abs(".repeat(depth), ")".repeat(depth));
    let e = parse(&q).expect("parses");
    assert_eq!(parse(&e.to_string()).expect("re-parses"), e);
    let q = format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
    assert!(parse(&q).is_ok());
}
