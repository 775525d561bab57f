//! Property tests: random well-typed trees print to PromQL that parses
//! back to the same tree, in both the one-line and the pretty form; and
//! the parser never panics on random or mutated input.
//!
//! Trees are generated the way the parser would build them (matchers
//! sorted, unary minus folded into number literals, parentheses wherever
//! precedence requires them), from a seed that proptest chooses and
//! reports on failure.

use cairn_engine::{MatchOp, Matcher};
use cairn_query::ast::*;
use cairn_query::format::prettify;
use cairn_query::functions;
use cairn_query::parse;
use proptest::prelude::*;

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const S: Span = Span { start: 0, end: 0 };

fn num(v: f64) -> Expr {
    Expr::Number(NumberLiteral { value: v, span: S })
}

fn paren(e: Expr) -> Expr {
    Expr::Paren(ParenExpr {
        expr: Box::new(e),
        span: S,
    })
}

fn label_name(r: &mut Rng) -> String {
    r.pick(&[
        "job", "model", "le", "gpu_id", "_x", "a1", "by", "on", "sum", "offset", "k8s.pod", "é", "",
    ])
    .to_string()
}

fn grouping_label(r: &mut Rng) -> String {
    let l = label_name(r);
    if l.is_empty() { "region".into() } else { l }
}

fn label_value(r: &mut Rng) -> String {
    r.pick(&[
        "",
        "a",
        "prod",
        "x y",
        "quote\"d",
        "back\\slash",
        "new\nline",
        "ünï",
        "\u{1}",
    ])
    .to_string()
}

fn metric_name(r: &mut Rng) -> String {
    r.pick(&[
        "up",
        "infer_requests_total",
        "job:err:rate5m",
        "x",
        "sum",
        "count_values",
    ])
    .to_string()
}

fn selector(r: &mut Rng) -> VectorSelector {
    let name = if r.chance(70) {
        Some(metric_name(r))
    } else {
        None
    };
    let mut matchers = Vec::new();
    if let Some(n) = &name {
        matchers.push(Matcher::equal("__name__", n.as_str()));
    }
    for _ in 0..r.below(3) {
        let mut l = label_name(r);
        if l.is_empty() {
            l = "job".into();
        }
        let m = match r.below(4) {
            0 => Matcher::new(MatchOp::Equal, l, label_value(r)),
            1 => Matcher::new(MatchOp::NotEqual, l, label_value(r)),
            2 => Matcher::new(
                MatchOp::RegexMatch,
                l,
                *r.pick(&[".*", "a|b", "x+", "(?i)pro.*"]),
            ),
            _ => Matcher::new(MatchOp::RegexNoMatch, l, *r.pick(&["", "a.+", "[0-9]"])),
        };
        matchers.push(m.expect("valid regex"));
    }
    if name.is_none() {
        // At least one matcher that does not match the empty string.
        let m = if r.chance(50) {
            Matcher::equal("__name__", metric_name(r))
        } else {
            Matcher::equal("job", "api")
        };
        matchers.push(m);
    }
    matchers.sort_by(|a, b| {
        (a.name.as_str(), a.op.as_str(), a.value.as_str()).cmp(&(
            b.name.as_str(),
            b.op.as_str(),
            b.value.as_str(),
        ))
    });
    VectorSelector {
        name,
        matchers,
        offset_ms: offset(r),
        at: at(r),
        span: S,
    }
}

fn duration_ms(r: &mut Rng) -> i64 {
    match r.below(4) {
        0 => 1 + r.below(59_999) as i64,
        1 => 60_000 * (1 + r.below(120) as i64),
        2 => 86_400_000 * (1 + r.below(800) as i64),
        _ => 1 + (r.next() % 10_000_000_000) as i64,
    }
}

fn offset(r: &mut Rng) -> i64 {
    if r.chance(70) {
        0
    } else if r.chance(50) {
        duration_ms(r)
    } else {
        -duration_ms(r)
    }
}

fn at(r: &mut Rng) -> Option<AtModifier> {
    match r.below(8) {
        0 => Some(AtModifier::Start),
        1 => Some(AtModifier::End),
        2 => Some(AtModifier::Timestamp(
            (r.next() % 4_000_000_000_000) as i64 - 1_000_000_000_000,
        )),
        _ => None,
    }
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Call(Call {
        func: functions::lookup(name).expect("known function"),
        args,
        span: S,
    })
}

/// Wraps `e` in parentheses unless a postfix modifier can follow it.
fn postfixable(e: Expr) -> Expr {
    match e {
        Expr::VectorSelector(_) | Expr::Call(_) | Expr::Aggregate(_) | Expr::Paren(_) => e,
        other => paren(other),
    }
}

fn unary(e: Expr) -> Expr {
    // Unary minus binds like `*`: its operand must bind tighter.
    let e = match e {
        Expr::Binary(b) if b.op != BinaryOp::Pow => paren(Expr::Binary(b)),
        Expr::Number(n) => paren(Expr::Number(n)),
        other => other,
    };
    Expr::Unary(UnaryExpr {
        expr: Box::new(e),
        span: S,
    })
}

/// `lhs op rhs` with the parentheses precedence needs.
fn binary(
    op: BinaryOp,
    lhs: Expr,
    rhs: Expr,
    return_bool: bool,
    matching: Option<VectorMatching>,
) -> Expr {
    let p = op.precedence();
    let lhs = match lhs {
        Expr::Binary(b)
            if b.op.precedence() < p || (b.op.precedence() == p && op.is_right_associative()) =>
        {
            paren(Expr::Binary(b))
        }
        Expr::Unary(u) if op == BinaryOp::Pow => paren(Expr::Unary(u)),
        Expr::Number(n) if op == BinaryOp::Pow && n.value.is_sign_negative() => {
            paren(Expr::Number(n))
        }
        other => other,
    };
    let rhs = match rhs {
        Expr::Binary(b)
            if b.op.precedence() < p || (b.op.precedence() == p && !op.is_right_associative()) =>
        {
            paren(Expr::Binary(b))
        }
        other => other,
    };
    Expr::Binary(BinaryExpr {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
        return_bool,
        matching,
        span: S,
    })
}

fn scalar(r: &mut Rng, depth: usize) -> Expr {
    let leaf = depth == 0 || r.chance(35);
    if leaf {
        return match r.below(6) {
            0 => num(f64::NAN),
            1 => num(if r.chance(50) {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            }),
            2 => num(-(r.below(1000) as f64) / 8.0),
            3 => num((r.next() % 1_000_000) as f64 * 1e-3),
            4 => {
                let f: &str = if r.chance(50) { "time" } else { "pi" };
                call(f, vec![])
            }
            _ => num(r.below(100) as f64),
        };
    }
    match r.below(5) {
        0 => paren(scalar(r, depth - 1)),
        1 => unary(scalar(r, depth - 1)),
        2 => call("scalar", vec![vector(r, depth - 1)]),
        _ => {
            let ops = [
                BinaryOp::Add,
                BinaryOp::Sub,
                BinaryOp::Mul,
                BinaryOp::Div,
                BinaryOp::Mod,
                BinaryOp::Pow,
                BinaryOp::Atan2,
                BinaryOp::Eql,
                BinaryOp::Lss,
                BinaryOp::Gte,
            ];
            let op = *r.pick(&ops);
            binary(
                op,
                scalar(r, depth - 1),
                scalar(r, depth - 1),
                op.is_comparison(),
                None,
            )
        }
    }
}

fn vector_matching(r: &mut Rng, op: BinaryOp) -> VectorMatching {
    let on = r.chance(40);
    let labels: Vec<String> = (0..r.below(3)).map(|_| grouping_label(r)).collect();
    if op.is_set_operator() {
        return VectorMatching {
            card: VectorMatchCardinality::ManyToMany,
            on,
            labels,
            include: Vec::new(),
        };
    }
    let (card, include) = match r.below(4) {
        0 => (
            VectorMatchCardinality::ManyToOne,
            (0..r.below(2)).map(|_| grouping_label(r)).collect(),
        ),
        1 => (VectorMatchCardinality::OneToMany, Vec::new()),
        _ => (VectorMatchCardinality::OneToOne, Vec::new()),
    };
    let include: Vec<String> = if on {
        include
            .into_iter()
            .filter(|l| !labels.contains(l))
            .collect()
    } else {
        include
    };
    VectorMatching {
        card,
        on,
        labels,
        include,
    }
}

fn vector(r: &mut Rng, depth: usize) -> Expr {
    if depth == 0 || r.chance(25) {
        return Expr::VectorSelector(selector(r));
    }
    let d = depth - 1;
    match r.below(9) {
        0 => paren(vector(r, d)),
        1 => unary(vector(r, d)),
        2 => {
            let f = *r.pick(&["rate", "increase", "avg_over_time", "quantile_over_time"]);
            let m = matrix(r, d);
            if f == "quantile_over_time" {
                call(f, vec![scalar(r, d), m])
            } else {
                call(f, vec![m])
            }
        }
        3 => match r.below(4) {
            0 => call("abs", vec![vector(r, d)]),
            1 => call("histogram_quantile", vec![scalar(r, d), vector(r, d)]),
            2 => call(
                "label_replace",
                vec![
                    vector(r, d),
                    Expr::string(label_value(r)),
                    Expr::string("$1"),
                    Expr::string(grouping_label(r)),
                    Expr::string("(.*)"),
                ],
            ),
            _ => {
                let mut args = vec![vector(r, d)];
                if r.chance(50) {
                    args.push(scalar(r, d));
                }
                call("round", args)
            }
        },
        4 | 5 => {
            let ops = [
                AggregateOp::Sum,
                AggregateOp::Avg,
                AggregateOp::Count,
                AggregateOp::Max,
                AggregateOp::Group,
                AggregateOp::Topk,
                AggregateOp::CountValues,
                AggregateOp::Quantile,
                AggregateOp::LimitRatio,
            ];
            let op = *r.pick(&ops);
            let param = match op.param_type() {
                Some(ValueType::String) => Some(Box::new(Expr::string(label_value(r)))),
                Some(_) => Some(Box::new(scalar(r, d))),
                None => None,
            };
            let without = r.chance(30);
            let grouping = if without || r.chance(50) {
                (0..r.below(3)).map(|_| grouping_label(r)).collect()
            } else {
                Vec::new()
            };
            Expr::Aggregate(AggregateExpr {
                op,
                expr: Box::new(vector(r, d)),
                param,
                grouping,
                without,
                span: S,
            })
        }
        _ => {
            let ops = [
                BinaryOp::Add,
                BinaryOp::Sub,
                BinaryOp::Mul,
                BinaryOp::Div,
                BinaryOp::Pow,
                BinaryOp::Gtr,
                BinaryOp::Neq,
                BinaryOp::And,
                BinaryOp::Or,
                BinaryOp::Unless,
            ];
            let op = *r.pick(&ops);
            let return_bool = op.is_comparison() && r.chance(50);
            if !op.is_set_operator() && r.chance(40) {
                // vector op scalar, either way round.
                let (v, s) = (vector(r, d), scalar(r, d));
                return if r.chance(50) {
                    binary(op, v, s, return_bool, None)
                } else {
                    binary(op, s, v, return_bool, None)
                };
            }
            let m = vector_matching(r, op);
            binary(op, vector(r, d), vector(r, d), return_bool, Some(m))
        }
    }
}

fn matrix(r: &mut Rng, depth: usize) -> Expr {
    if depth == 0 || r.chance(60) {
        let mut vs = selector(r);
        let range_ms = duration_ms(r);
        // Modifiers are written after the range; keep them on the selector.
        vs.offset_ms = offset(r);
        vs.at = at(r);
        return Expr::MatrixSelector(MatrixSelector {
            vector: vs,
            range_ms,
            span: S,
        });
    }
    Expr::Subquery(SubqueryExpr {
        expr: Box::new(postfixable(vector(r, depth - 1))),
        range_ms: duration_ms(r),
        step_ms: if r.chance(50) {
            Some(duration_ms(r))
        } else {
            None
        },
        offset_ms: offset(r),
        at: at(r),
        span: S,
    })
}

fn any_expr(seed: u64) -> Expr {
    let mut r = Rng(seed);
    let depth = 1 + r.below(5);
    match r.below(10) {
        0 => scalar(&mut r, depth),
        1 => matrix(&mut r, depth),
        2 => Expr::string(label_value(&mut r)),
        _ => vector(&mut r, depth),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn printed_trees_parse_back_to_themselves(seed in any::<u64>()) {
        let e = any_expr(seed);
        let printed = e.to_string();
        let back = parse(&printed).map_err(|err| TestCaseError::fail(format!("{printed}\n{err}")))?;
        prop_assert_eq!(&back, &e, "printed as {}", printed);
        let pretty = prettify(&e);
        let back = parse(&pretty).map_err(|err| TestCaseError::fail(format!("{pretty}\n{err}")))?;
        prop_assert_eq!(&back, &e, "prettified as {}", pretty);
    }

    /// Arbitrary bytes never panic the parser, and an accepted query
    /// always prints to something that parses to the same tree.
    #[test]
    fn random_input_never_panics(input in "\\PC{0,60}") {
        if let Ok(e) = parse(&input) {
            let printed = e.to_string();
            prop_assert_eq!(parse(&printed).ok(), Some(e), "{} printed as {}", input, printed);
        }
    }

    /// Valid queries with one random edit (a byte removed, duplicated or
    /// replaced by PromQL punctuation) never panic the parser.
    #[test]
    fn mutated_queries_never_panic(seed in any::<u64>(), at in any::<usize>(), edit in 0usize..4, c in "[(){}\\[\\]:,@\"'`=~!<>^*/%+#0-9a-z -]") {
        let base = any_expr(seed).to_string();
        let mut chars: Vec<char> = base.chars().collect();
        let i = at % (chars.len() + 1);
        let c = c.chars().next().unwrap_or('(');
        match edit {
            0 if i < chars.len() => { chars.remove(i); }
            1 if i < chars.len() => { let x = chars[i]; chars.insert(i, x); }
            2 if i < chars.len() => chars[i] = c,
            _ => chars.insert(i, c),
        }
        let input: String = chars.into_iter().collect();
        if let Ok(e) = parse(&input) {
            let printed = e.to_string();
            prop_assert_eq!(parse(&printed).ok(), Some(e), "{} printed as {}", input, printed);
        }
    }
}
