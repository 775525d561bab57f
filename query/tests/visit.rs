//! The AST utilities: walking, rewriting, and the selectors with the time
//! ranges a query reads (what the planner pushes down to storage).

use cairn_query::ast::visit::{EvalRange, Walk, selectors, time_span, walk};
use cairn_query::ast::{Expr, NumberLiteral};
use cairn_query::parse;

fn kind(e: &Expr) -> &'static str {
    match e {
        Expr::Number(_) => "num",
        Expr::String(_) => "str",
        Expr::VectorSelector(_) => "vs",
        Expr::MatrixSelector(_) => "ms",
        Expr::Subquery(_) => "sq",
        Expr::Paren(_) => "paren",
        Expr::Unary(_) => "neg",
        Expr::Binary(_) => "bin",
        Expr::Aggregate(_) => "agg",
        Expr::Call(_) => "call",
    }
}

#[test]
fn walk_is_pre_order_with_paths() {
    let e = parse("topk(3, -(a + rate(b[1m])))").expect("parses");
    let mut seen = Vec::new();
    walk(&e, &mut |node, path| {
        seen.push(format!("{}@{}", kind(node), path.len()));
        Walk::Continue
    });
    assert_eq!(
        seen,
        [
            "agg@0", "num@1", "neg@1", "paren@2", "bin@3", "vs@4", "call@4", "ms@5"
        ]
    );

    let mut seen = Vec::new();
    walk(&e, &mut |node, _| {
        seen.push(kind(node));
        if matches!(node, Expr::Unary(_)) {
            Walk::SkipChildren
        } else {
            Walk::Continue
        }
    });
    assert_eq!(seen, ["agg", "num", "neg"]);

    let mut count = 0;
    walk(&e, &mut |node, _| {
        count += 1;
        if matches!(node, Expr::Binary(_)) {
            Walk::Stop
        } else {
            Walk::Continue
        }
    });
    assert_eq!(count, 5);
}

#[test]
fn rewrite_replaces_bottom_up() {
    let e = parse("sum(x * 2) + 3 ^ (4)").expect("parses");
    let doubled = e.rewrite(&mut |node| match node {
        Expr::Number(n) => Expr::Number(NumberLiteral {
            value: n.value * 10.0,
            span: n.span,
        }),
        Expr::Paren(p) => *p.expr,
        other => other,
    });
    assert_eq!(doubled.to_string(), "sum(x * 20) + 30 ^ 40");
}

#[test]
fn selectors_carry_the_time_range_they_read() {
    let e = parse(
        "rate(x[5m] offset 1m) + y @ 100 + sum_over_time(z[10m:1m] offset 1h) + w @ start() + count_over_time(v[1m] @ end())",
    )
    .expect("parses");
    let eval = EvalRange {
        start_ms: 1_000_000,
        end_ms: 2_000_000,
        lookback_ms: 300_000,
    };
    let got: Vec<(String, Option<i64>, i64, i64)> = selectors(&e, eval)
        .iter()
        .map(|s| {
            (
                s.selector.name.clone().unwrap_or_default(),
                s.range_ms,
                s.mint,
                s.maxt,
            )
        })
        .collect();
    let want: Vec<(String, Option<i64>, i64, i64)> = vec![
        // [start - offset - range, end - offset]
        ("x".into(), Some(300_000), 640_000, 1_940_000),
        // pinned at 100s, minus the lookback window
        ("y".into(), None, -200_000, 100_000),
        // the subquery evaluates z over [start - 1h - 10m, end - 1h]
        ("z".into(), None, -3_500_000, -1_600_000),
        ("w".into(), None, 700_000, 1_000_000),
        ("v".into(), Some(60_000), 1_940_000, 2_000_000),
    ];
    assert_eq!(got, want);
    assert_eq!(
        selectors(&e, eval)[0]
            .matchers()
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>(),
        ["__name__=\"x\""]
    );
    assert_eq!(time_span(&e, eval), Some((-3_500_000, 2_000_000)));
}

#[test]
fn nested_subqueries_compose_their_windows() {
    let e = parse("max_over_time(rate(x[1m])[1h:5m] offset 1d)[2h:]").expect("parses");
    let eval = EvalRange {
        start_ms: 10_000_000_000,
        end_ms: 10_000_000_000,
        lookback_ms: 300_000,
    };
    let s = selectors(&e, eval);
    assert_eq!(s.len(), 1);
    let t = 10_000_000_000i64;
    let outer_start = t - 7_200_000;
    assert_eq!(s[0].mint, outer_start - 86_400_000 - 3_600_000 - 60_000);
    assert_eq!(s[0].maxt, t - 86_400_000);
}

#[test]
fn queries_without_selectors_have_no_span() {
    let e = parse("1 + time()").expect("parses");
    let eval = EvalRange {
        start_ms: 0,
        end_ms: 0,
        lookback_ms: 300_000,
    };
    assert_eq!(time_span(&e, eval), None);
    assert!(selectors(&e, eval).is_empty());
}
