//! The evaluator's public API: results, errors classified by fault,
//! limits (samples, timeout, cancellation) and per-query options, over a
//! real `Db`.

use std::time::Duration;

use cairn_engine::{Labels, Sample};
use cairn_query::eval::{CancelToken, InstantSample};
use cairn_query::promqltest::{DbStorage, TestStorage};
use cairn_query::{Engine, EngineOptions, Error, QueryOptions, Value};

fn storage() -> (tempfile::TempDir, DbStorage) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut st = DbStorage::open(&tmp.path().join("db")).expect("db");
    let mut batch = Vec::new();
    for (inst, rate) in [("a", 1.0), ("b", 2.0)] {
        let labels = Labels::from_pairs([("__name__", "req_total"), ("instance", inst)]);
        // One sample a minute for 10 minutes.
        let samples = (0..=10)
            .map(|i| Sample::new(i * 60_000, i as f64 * 60.0 * rate))
            .collect();
        batch.push((labels, samples));
    }
    st.load(batch).expect("load");
    (tmp, st)
}

fn vector(v: &Value) -> Vec<(String, f64)> {
    match v {
        Value::Vector(s) => s
            .iter()
            .map(|InstantSample { labels, v, .. }| (labels.to_string(), *v))
            .collect(),
        other => panic!("expected a vector, got {other:?}"),
    }
}

#[test]
fn instant_and_range_results() {
    let (_tmp, st) = storage();
    let e = Engine::default();
    let r = e
        .instant_query(
            st.querier(),
            "sum by (instance) (rate(req_total[5m]))",
            600_000,
        )
        .unwrap();
    assert_eq!(
        vector(&r.value),
        vec![
            (r#"{instance="a"}"#.to_string(), 1.0),
            (r#"{instance="b"}"#.to_string(), 2.0)
        ]
    );
    let r = e
        .range_query(st.querier(), "sum(req_total)", 0, 120_000, 60_000)
        .unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("expected a matrix")
    };
    assert_eq!(m.len(), 1);
    let got: Vec<(i64, f64)> = m[0].samples.iter().map(|s| (s.t, s.v)).collect();
    assert_eq!(got, vec![(0, 0.0), (60_000, 180.0), (120_000, 360.0)]);
    let r = e.instant_query(st.querier(), "1 + 2", 0).unwrap();
    assert_eq!(r.value, Value::Scalar { t: 0, v: 3.0 });
}

#[test]
fn annotations_travel_beside_the_result() {
    let (_tmp, st) = storage();
    let e = Engine::default();
    let r = e
        .instant_query(st.querier(), "quantile(2, req_total)", 600_000)
        .unwrap();
    assert_eq!(
        r.warnings,
        vec!["PromQL warning: quantile value should be between 0 and 1, got 2 (1:10)"]
    );
    let r = e
        .instant_query(st.querier(), "rate(req_total[5m])", 600_000)
        .unwrap();
    assert!(r.infos.is_empty(), "{:?}", r.infos);
}

#[test]
fn errors_are_classified_by_fault() {
    let (_tmp, st) = storage();
    let q = st.querier();
    let e = Engine::default();
    let cases: Vec<(crate::Result, &str)> = vec![
        (e.instant_query(q, "sum(", 0).map(|_| ()), "parse"),
        (
            e.range_query(q, "req_total", 0, 10, 0).map(|_| ()),
            "bad_data",
        ),
        (
            e.range_query(q, "req_total", 10, 0, 1).map(|_| ()),
            "bad_data",
        ),
        (
            e.range_query(q, "req_total[5m]", 0, 10, 1).map(|_| ()),
            "bad_data",
        ),
        (
            e.instant_query(q, "req_total + on() req_total", 600_000)
                .map(|_| ()),
            "execution",
        ),
    ];
    for (r, want) in cases {
        let got = match r {
            Err(Error::Parse { line, column, .. }) => {
                assert_eq!((line, column), (1, 5));
                "parse"
            }
            Err(Error::BadData { .. }) => "bad_data",
            Err(Error::Execution { message }) => {
                assert!(
                    message.starts_with("found duplicate series for the match group {}"),
                    "{message}"
                );
                "execution"
            }
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(got, want);
    }
}

type Result = std::result::Result<(), Error>;

#[test]
fn limits() {
    let (_tmp, st) = storage();
    let q = st.querier();
    let small = Engine::new(EngineOptions {
        max_samples: 5,
        ..EngineOptions::default()
    });
    let err = small
        .instant_query(q, "req_total[10m]", 600_000)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "query processing would load too many samples into memory in query execution"
    );
    let expired = Engine::new(EngineOptions {
        timeout: Some(Duration::ZERO),
        ..EngineOptions::default()
    });
    let err = expired.instant_query(q, "req_total", 0).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    let cancel = CancelToken::new();
    cancel.cancel();
    let expr = cairn_query::parse("req_total").unwrap();
    let opts = QueryOptions {
        cancel: Some(cancel),
        ..QueryOptions::default()
    };
    let err = Engine::default()
        .instant_query_expr(q, &expr, "req_total", 0, &opts)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "query was canceled in expression evaluation"
    );
}

#[test]
fn lookback_delta_is_a_query_option() {
    let (_tmp, st) = storage();
    let q = st.querier();
    let e = Engine::default();
    let expr = cairn_query::parse("req_total").unwrap();
    // The last sample is at 10m: 13m is within 5m, not within 2m.
    let r = e
        .instant_query_expr(q, &expr, "req_total", 780_000, &QueryOptions::default())
        .unwrap();
    assert_eq!(vector(&r.value).len(), 2);
    let short = QueryOptions {
        lookback_delta_ms: Some(120_000),
        ..QueryOptions::default()
    };
    let r = e
        .instant_query_expr(q, &expr, "req_total", 780_000, &short)
        .unwrap();
    assert!(vector(&r.value).is_empty());
}

#[test]
fn deepest_query_the_parser_accepts_evaluates_on_a_small_stack() {
    let (_tmp, st) = storage();
    let depth = cairn_query::parser::DEFAULT_MAX_DEPTH - 2;
    let queries = [
        format!("{}req_total{}", "sum(".repeat(depth), ")".repeat(depth)),
        // Each `-(` and `(1 +` is two levels (the operator and the parentheses).
        format!(
            "{}req_total{}",
            "-(".repeat(depth / 2),
            ")".repeat(depth / 2)
        ),
        format!("{}1{}", "(1 + ".repeat(depth / 2), ")".repeat(depth / 2)),
    ];
    let querier = st.querier();
    for q in queries {
        // Parsing (and dropping) the tree is the parser's business: give it
        // room. Evaluation runs on a 2 MiB stack, a tokio blocking thread's.
        std::thread::scope(|outer| {
            let big = std::thread::Builder::new().stack_size(256 << 20);
            let h = big
                .spawn_scoped(outer, || {
                    let expr = cairn_query::parse(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
                    std::thread::scope(|s| {
                        let small = std::thread::Builder::new().stack_size(2 << 20);
                        small
                            .spawn_scoped(s, || {
                                Engine::default()
                                    .range_query_expr(
                                        querier,
                                        &expr,
                                        &q,
                                        0,
                                        600_000,
                                        60_000,
                                        &QueryOptions::default(),
                                    )
                                    .map(|r| r.value)
                            })
                            .expect("spawn")
                            .join()
                            .expect("no stack overflow")
                    })
                })
                .expect("spawn");
            let r = h.join().expect("no stack overflow");
            assert!(r.is_ok(), "{r:?}");
        });
    }
}

#[test]
fn a_subquery_too_fine_to_hold_is_refused_before_allocating() {
    let (_tmp, st) = storage();
    // 100 years at 1 ms would be 3e12 steps.
    let err = Engine::default()
        .instant_query(
            st.querier(),
            "count_over_time(req_total[100y:1ms])",
            600_000,
        )
        .unwrap_err();
    assert!(matches!(err, Error::TooManySamples { .. }), "{err:?}");
}
