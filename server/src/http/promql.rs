//! The PromQL text endpoints: `/api/v1/format_query` (the query
//! pretty-printed, as Prometheus's `Pretty`) and `/api/v1/parse_query`
//! (the syntax tree as JSON, in the shape of Prometheus's `translateAST`,
//! which its UI's tree view reads).

use axum::response::Response;
use cairn_query::Expr;
use cairn_query::ast::{AtModifier, VectorMatchCardinality, VectorSelector};
use cairn_query::functions::Variadic;
use serde_json::{Value, json};

use super::{ApiError, Params, success};
use crate::error::Error;

/// Parses the `query` parameter; a syntax error is 400 `bad_data` with
/// the position (`1:5: parse error: ...`).
pub fn parse_param(p: &Params) -> Result<Expr, Error> {
    crate::exec::parse_query(p.get("query").unwrap_or_default())
}

pub(super) async fn format_query(p: Params) -> Result<Response, ApiError> {
    let expr = parse_param(&p)?;
    Ok(success(cairn_query::format::prettify(&expr)))
}

pub(super) async fn parse_query(p: Params) -> Result<Response, ApiError> {
    let expr = parse_param(&p)?;
    Ok(success(translate(&expr)))
}

fn at_json(at: &Option<AtModifier>) -> (Value, Value) {
    match at {
        None => (Value::Null, Value::Null),
        Some(AtModifier::Timestamp(ms)) => (json!(ms), Value::Null),
        Some(AtModifier::Start) => (Value::Null, json!("start")),
        Some(AtModifier::End) => (Value::Null, json!("end")),
    }
}

fn matchers_json(vs: &VectorSelector) -> Value {
    Value::Array(
        vs.matchers
            .iter()
            .map(|m| json!({"name": m.name, "value": m.value, "type": m.op.as_str()}))
            .collect(),
    )
}

/// The syntax tree in the JSON shape of Prometheus's `translateAST`.
pub fn translate(e: &Expr) -> Value {
    match e {
        Expr::Number(n) => json!({"type": "numberLiteral", "val": crate::format::float(n.value)}),
        Expr::String(s) => json!({"type": "stringLiteral", "val": s.value}),
        Expr::Paren(p) => json!({"type": "parenExpr", "expr": translate(&p.expr)}),
        Expr::Unary(u) => json!({"type": "unaryExpr", "op": "-", "expr": translate(&u.expr)}),
        Expr::VectorSelector(vs) => {
            let (timestamp, start_or_end) = at_json(&vs.at);
            json!({
                "type": "vectorSelector",
                "name": vs.name.clone().unwrap_or_default(),
                "offset": vs.offset_ms,
                "matchers": matchers_json(vs),
                "timestamp": timestamp,
                "startOrEnd": start_or_end,
            })
        }
        Expr::MatrixSelector(ms) => {
            let vs = &ms.vector;
            let (timestamp, start_or_end) = at_json(&vs.at);
            json!({
                "type": "matrixSelector",
                "name": vs.name.clone().unwrap_or_default(),
                "range": ms.range_ms,
                "offset": vs.offset_ms,
                "matchers": matchers_json(vs),
                "timestamp": timestamp,
                "startOrEnd": start_or_end,
            })
        }
        Expr::Subquery(s) => {
            let (timestamp, start_or_end) = at_json(&s.at);
            json!({
                "type": "subquery",
                "expr": translate(&s.expr),
                "range": s.range_ms,
                "offset": s.offset_ms,
                "step": s.step_ms.unwrap_or(0),
                "timestamp": timestamp,
                "startOrEnd": start_or_end,
            })
        }
        Expr::Binary(b) => {
            let matching = b.matching.as_ref().map(|m| {
                let card = match m.card {
                    VectorMatchCardinality::OneToOne => "one-to-one",
                    VectorMatchCardinality::ManyToOne => "many-to-one",
                    VectorMatchCardinality::OneToMany => "one-to-many",
                    VectorMatchCardinality::ManyToMany => "many-to-many",
                };
                json!({"card": card, "labels": m.labels, "on": m.on, "include": m.include})
            });
            json!({
                "type": "binaryExpr",
                "op": b.op.as_str(),
                "lhs": translate(&b.lhs),
                "rhs": translate(&b.rhs),
                "matching": matching,
                "bool": b.return_bool,
            })
        }
        Expr::Aggregate(a) => json!({
            "type": "aggregation",
            "op": a.op.as_str(),
            "expr": translate(&a.expr),
            "param": a.param.as_ref().map(|p| translate(p)),
            "grouping": a.grouping,
            "without": a.without,
        }),
        Expr::Call(c) => {
            let variadic: i64 = match c.func.variadic {
                Variadic::None => 0,
                Variadic::UpTo(n) => n as i64,
                Variadic::Unbounded => -1,
            };
            let arg_types: Vec<&str> = c.func.arg_types.iter().map(|t| t.as_str()).collect();
            json!({
                "type": "call",
                "func": {
                    "name": c.func.name,
                    "argTypes": arg_types,
                    "variadic": variadic,
                    "returnType": c.func.return_type.as_str(),
                },
                "args": c.args.iter().map(translate).collect::<Vec<_>>(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(q: &str) -> Value {
        translate(&cairn_query::parse(q).unwrap_or_else(|e| panic!("{q}: {e}")))
    }

    #[test]
    fn translated_trees() {
        assert_eq!(tree("1.5"), json!({"type": "numberLiteral", "val": "1.5"}));
        let t = tree("sum by (job) (rate(http_requests_total{code=\"500\"}[5m] offset 1m))");
        assert_eq!(t["type"], "aggregation");
        assert_eq!(t["op"], "sum");
        assert_eq!(t["grouping"], json!(["job"]));
        assert_eq!(t["param"], Value::Null);
        let call = &t["expr"];
        assert_eq!(call["func"]["name"], "rate");
        assert_eq!(call["func"]["argTypes"], json!(["matrix"]));
        assert_eq!(call["func"]["returnType"], "vector");
        let ms = &call["args"][0];
        assert_eq!(ms["type"], "matrixSelector");
        assert_eq!(ms["name"], "http_requests_total");
        assert_eq!(ms["range"], 300_000);
        assert_eq!(ms["offset"], 60_000);
        let t = tree("a / on(x) group_left(y) b @ end()");
        assert_eq!(t["matching"]["card"], "many-to-one");
        assert_eq!(t["matching"]["include"], json!(["y"]));
        assert_eq!(t["rhs"]["startOrEnd"], "end");
    }
}
