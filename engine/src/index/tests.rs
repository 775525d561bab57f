//! Tests of the label index: matcher semantics as a table, a property test
//! of `Postings::select` against a brute-force reference, removal, label
//! look-ups, cardinality and concurrent use.

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use roaring::RoaringBitmap;

use super::*;
use crate::labels::Labels;
use crate::matcher::{MatchOp, Matcher};

/// Parses `name<op>value` with op one of `=`, `!=`, `=~`, `!~`.
fn matcher(spec: &str) -> Matcher {
    let at = spec.find(['=', '!']).expect("matcher spec has an operator");
    let (name, rest) = spec.split_at(at);
    let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
        (MatchOp::RegexMatch, v)
    } else if let Some(v) = rest.strip_prefix("!~") {
        (MatchOp::RegexNoMatch, v)
    } else if let Some(v) = rest.strip_prefix("!=") {
        (MatchOp::NotEqual, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (MatchOp::Equal, v)
    } else {
        panic!("bad matcher spec {spec:?}")
    };
    Matcher::new(op, name, value).expect("test matcher compiles")
}

fn fixture() -> (Interner, Postings, Vec<Labels>) {
    let sets = [
        Labels::from_pairs([("__name__", "up"), ("job", "api"), ("instance", "a")]),
        Labels::from_pairs([
            ("__name__", "up"),
            ("job", "api"),
            ("instance", "b"),
            ("env", "prod"),
        ]),
        Labels::from_pairs([("__name__", "up"), ("job", "web"), ("instance", "a")]),
        Labels::from_pairs([
            ("__name__", "req"),
            ("job", "web"),
            ("instance", "c"),
            ("env", "dev"),
        ]),
        Labels::from_pairs([("__name__", "req"), ("job", "batch")]),
        Labels::from_pairs([("__name__", "req_total"), ("job", "apis")]),
    ];
    let interner = Interner::new();
    let postings = Postings::new();
    let sets: Vec<Labels> = sets.iter().map(|l| interner.intern_labels(l)).collect();
    for (i, l) in sets.iter().enumerate() {
        postings.add(SeriesRef(i as u32), l);
    }
    (interner, postings, sets)
}

fn refs(b: &RoaringBitmap) -> Vec<u32> {
    b.iter().collect()
}

#[test]
fn matcher_semantics_table() {
    let (_, p, _) = fixture();
    let table: &[(&[&str], &[u32])] = &[
        (&[], &[]),
        (&["job=api"], &[0, 1]),
        (&["job=nope"], &[]),
        (&["nolabel=x"], &[]),
        (&["job!=api"], &[2, 3, 4, 5]),
        (&["env!=prod"], &[0, 2, 3, 4, 5]),
        (&["env="], &[0, 2, 4, 5]),
        (&["env!="], &[1, 3]),
        (&["nolabel="], &[0, 1, 2, 3, 4, 5]),
        (&["nolabel!="], &[]),
        (&["env=~.*"], &[0, 1, 2, 3, 4, 5]),
        (&["env=~.+"], &[1, 3]),
        (&["env!~.+"], &[0, 2, 4, 5]),
        (&["env!~.*"], &[]),
        (&["env=~prod|"], &[0, 1, 2, 4, 5]),
        (&["env!~prod|"], &[3]),
        (&["job=~api|web"], &[0, 1, 2, 3]),
        (&["job=~ap.*"], &[0, 1, 5]),
        (&["job=~(api|web).*"], &[0, 1, 2, 3, 5]),
        (&["job=~a.+"], &[0, 1, 5]),
        (&["job=~.*b.*"], &[2, 3, 4]),
        (&["job!~a.*"], &[2, 3, 4]),
        (&["job=~API"], &[]),
        (&["job=~(?i)API"], &[0, 1]),
        (&["__name__=~req.*", "job!=batch"], &[3, 5]),
        (&["__name__=up", "instance=a"], &[0, 2]),
        (&["__name__=up", "instance=a", "job=~w.*"], &[2]),
        (&["__name__=up", "env="], &[0, 2]),
        (&["instance=", "env="], &[4, 5]),
        (&["job=api", "job!=api"], &[]),
        (&["job=api", "job=web"], &[]),
        (&["__name__=~.+", "job=~api|batch"], &[0, 1, 4]),
        (&["instance!~a|b"], &[3, 4, 5]),
        (&["instance=~a|b|"], &[0, 1, 2, 4, 5]),
    ];
    for (specs, want) in table {
        let ms: Vec<Matcher> = specs.iter().map(|s| matcher(s)).collect();
        assert_eq!(refs(&p.select(&ms)), *want, "matchers {specs:?}");
    }
}

#[test]
fn remove_drops_series_values_and_names() {
    let (interner, p, sets) = fixture();
    p.remove(SeriesRef(1), &sets[1]);
    p.remove(SeriesRef(3), &sets[3]);
    assert_eq!(refs(&p.all()), vec![0, 2, 4, 5]);
    assert_eq!(refs(&p.select(&[matcher("job=api")])), vec![0]);
    // `env` only existed on the removed series: the name is gone.
    assert!(!p.label_names(None).contains(&"env".to_string()));
    assert_eq!(refs(&p.select(&[matcher("env=")])), vec![0, 2, 4, 5]);
    assert_eq!(refs(&p.select(&[matcher("env=~.+")])), Vec::<u32>::new());
    assert_eq!(p.label_values("instance", None), vec!["a"]);
    // Removing an absent series changes nothing.
    p.remove(SeriesRef(1), &sets[1]);
    assert_eq!(p.len(), 4);
    // The strings of removed series are released once the labels are gone.
    drop(sets);
    let before = interner.len();
    let purged = interner.purge();
    assert!(purged > 0 && interner.len() == before - purged);
    // Strings still indexed survive the purge.
    assert_eq!(
        p.label_values("job", None),
        vec!["api", "apis", "batch", "web"]
    );
    // Everything removed: an empty index.
    let (_, p, sets) = fixture();
    for (i, l) in sets.iter().enumerate() {
        p.remove(SeriesRef(i as u32), l);
    }
    assert!(p.is_empty());
    assert!(p.label_names(None).is_empty());
    assert_eq!(p.cardinality(10).num_label_pairs, 0);
}

#[test]
fn label_names_and_values_restricted_to_series() {
    let (_, p, _) = fixture();
    assert_eq!(
        p.label_names(None),
        vec!["__name__", "env", "instance", "job"]
    );
    let web = p.select(&[matcher("job=web")]);
    assert_eq!(
        p.label_names(Some(&web)),
        vec!["__name__", "env", "instance", "job"]
    );
    let batch = p.select(&[matcher("job=batch")]);
    assert_eq!(p.label_names(Some(&batch)), vec!["__name__", "job"]);
    assert_eq!(
        p.label_values("__name__", None),
        vec!["req", "req_total", "up"]
    );
    assert_eq!(p.label_values("instance", Some(&web)), vec!["a", "c"]);
    assert_eq!(
        p.label_values("instance", Some(&batch)),
        Vec::<String>::new()
    );
    assert_eq!(p.label_values("nolabel", None), Vec::<String>::new());
    let all = p.all();
    assert_eq!(p.label_values("env", Some(&all)), vec!["dev", "prod"]);
    assert!(p.label_names(Some(&RoaringBitmap::new())).is_empty());
}

#[test]
fn cardinality_counts_series_values_and_bytes() {
    let (_, p, _) = fixture();
    let c = p.cardinality(2);
    assert_eq!(c.num_series, 6);
    assert_eq!(c.num_label_names, 4);
    // __name__: up req req_total; job: api web batch apis; instance: a b c;
    // env: prod dev.
    assert_eq!(c.num_label_pairs, 12);
    let pairs = |v: &[Stat]| -> Vec<(String, u64)> {
        v.iter().map(|s| (s.name.clone(), s.count)).collect()
    };
    assert_eq!(
        pairs(&c.series_count_by_metric_name),
        vec![("up".into(), 3), ("req".into(), 2)]
    );
    assert_eq!(
        pairs(&c.label_value_count_by_label_name),
        vec![("job".into(), 4), ("__name__".into(), 3)]
    );
    // job: "api" "web" "batch" "apis" = 3 + 3 + 5 + 4 bytes.
    assert_eq!(
        pairs(&c.memory_in_bytes_by_label_name),
        vec![("job".into(), 15), ("__name__".into(), 14)]
    );
    assert_eq!(
        pairs(&c.series_count_by_label_value_pair),
        vec![("__name__=up".into(), 3), ("__name__=req".into(), 2)]
    );
    assert_eq!(
        pairs(&c.series_count_by_label_name),
        vec![("__name__".into(), 6), ("job".into(), 6)]
    );
}

#[test]
fn memory_estimates_grow_with_content() {
    let interner = Interner::new();
    let p = Postings::new();
    let empty = p.memory_bytes();
    for i in 0..1000u32 {
        let l = interner.intern_labels(&Labels::from_pairs([
            ("__name__", "req".to_string()),
            ("instance", format!("i{}", i % 70)),
            ("id", format!("{i}")),
        ]));
        p.add(SeriesRef(i), &l);
    }
    // 1 + 1 + 70 + 1000 values plus 3 names.
    assert_eq!(interner.len(), 1 + 3 + 70 + 1000);
    let full = p.memory_bytes();
    assert!(full > empty + 1000 * 2, "postings {full} bytes");
    assert!(full < 1000 * 200, "postings {full} bytes for 1000 series");
    let strings = interner.memory_bytes();
    assert!(strings > 1000 * 16 && strings < 1000 * 200, "{strings}");
}

#[test]
fn concurrent_writers_and_readers() {
    let interner = Arc::new(Interner::new());
    let p = Arc::new(Postings::new());
    let writers: Vec<_> = (0..4u32)
        .map(|w| {
            let (interner, p) = (Arc::clone(&interner), Arc::clone(&p));
            std::thread::spawn(move || {
                for i in 0..2000u32 {
                    let id = w * 2000 + i;
                    let l = interner.intern_labels(&Labels::from_pairs([
                        ("__name__", "req".to_string()),
                        ("writer", format!("w{w}")),
                        ("n", format!("{}", i % 10)),
                    ]));
                    p.add(SeriesRef(id), &l);
                }
            })
        })
        .collect();
    let reader = {
        let p = Arc::clone(&p);
        std::thread::spawn(move || {
            let ms = [matcher("n=~1|2"), matcher("writer!=w0")];
            for _ in 0..200 {
                // A series being added may be visible under some names and
                // not yet others, but the positive matcher's set is exact.
                for r in p.select(&ms) {
                    assert!(r < 8000 && [1, 2].contains(&(r % 2000 % 10)), "ref {r}");
                }
            }
        })
    };
    for h in writers {
        h.join().expect("writer panicked");
    }
    reader.join().expect("reader panicked");
    assert_eq!(p.len(), 8000);
    assert_eq!(
        p.select(&[matcher("n=~1|2"), matcher("writer!=w0")]).len(),
        3 * 400
    );
    assert_eq!(p.label_values("writer", None), vec!["w0", "w1", "w2", "w3"]);
}

#[test]
fn concurrent_adds_and_removes_leave_exactly_the_live_series() {
    // Every thread churns its own refs through a few shared label names, so
    // names and values keep disappearing and reappearing under contention.
    const THREADS: u32 = 4;
    const ROUNDS: u32 = 300;
    let p = Arc::new(Postings::new());
    let labels_of = |id: u32| {
        Labels::from_pairs([
            ("__name__", "req".to_string()),
            ("shared", format!("v{}", id % 3)),
            (
                "rare",
                if id.is_multiple_of(7) { "yes" } else { "" }.to_string(),
            ),
        ])
    };
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let id = t * ROUNDS + round;
                    let l = labels_of(id);
                    p.add(SeriesRef(id), &l);
                    // Remove every other series again at once.
                    if !id.is_multiple_of(2) {
                        p.remove(SeriesRef(id), &l);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("churn thread panicked");
    }
    let live: Vec<(u32, Labels)> = (0..THREADS * ROUNDS)
        .filter(|id| id.is_multiple_of(2))
        .map(|id| (id, labels_of(id)))
        .collect();
    for specs in [
        &["__name__=req"][..],
        &["shared=v1"],
        &["rare=yes"],
        &["rare="],
        &["shared!~v0|v2", "rare!="],
    ] {
        let ms: Vec<Matcher> = specs.iter().map(|s| matcher(s)).collect();
        assert_eq!(refs(&p.select(&ms)), brute_force(&live, &ms), "{specs:?}");
    }
    assert_eq!(p.label_values("shared", None), vec!["v0", "v1", "v2"]);
    let c = p.cardinality(100);
    assert_eq!(c.num_series, live.len() as u64);
    assert_eq!(c.num_label_pairs, 1 + 3 + 1);
}

// ---- property test against a brute-force reference ----

const NAMES: &[&str] = &["__name__", "a", "b", "c"];
const VALUES: &[&str] = &[
    "", "", "x", "y", "xy", "foo", "foobar", "bar", "fo", "FOO", "x\ny", "é",
];
const PATTERNS: &[&str] = &[
    "",
    "x",
    "x|y",
    "x|y|",
    "foo.*",
    "fo.*|x",
    ".*",
    ".+",
    "f.*r",
    "(foo|bar)",
    "(foo|bar).*",
    "foo.+",
    "[xy]",
    "(?i)foo",
    "fo+",
    "x.*y",
    "x.y",
    "é|x",
    "a)|(b",
    "xy?",
    ".*o.*",
    "(?-s:.*)",
];

fn arb_labels() -> impl Strategy<Value = Labels> {
    prop::collection::vec((0..NAMES.len(), 0..VALUES.len()), 0..NAMES.len())
        .prop_map(|pairs| Labels::from_pairs(pairs.into_iter().map(|(n, v)| (NAMES[n], VALUES[v]))))
}

fn arb_matcher() -> impl Strategy<Value = Matcher> {
    let names = prop_oneof![Just("d"), (0..NAMES.len()).prop_map(|i| NAMES[i])];
    (names, 0..4usize, 0..PATTERNS.len(), 0..VALUES.len()).prop_map(|(name, op, p, v)| {
        let op = [
            MatchOp::Equal,
            MatchOp::NotEqual,
            MatchOp::RegexMatch,
            MatchOp::RegexNoMatch,
        ][op];
        let value = match op {
            MatchOp::Equal | MatchOp::NotEqual => VALUES[v],
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => PATTERNS[p],
        };
        Matcher::new(op, name, value).expect("test patterns compile")
    })
}

fn brute_force(live: &[(u32, Labels)], ms: &[Matcher]) -> Vec<u32> {
    if ms.is_empty() {
        return Vec::new();
    }
    live.iter()
        .filter(|(_, l)| ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
        .map(|(r, _)| *r)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn select_agrees_with_brute_force(
        sets in prop::collection::vec(arb_labels(), 0..40),
        removed in prop::collection::btree_set(0usize..40, 0..10),
        ms in prop::collection::vec(arb_matcher(), 0..4),
    ) {
        let interner = Interner::new();
        let p = Postings::new();
        for (i, l) in sets.iter().enumerate() {
            p.add(SeriesRef(i as u32), &interner.intern_labels(l));
        }
        for &i in removed.iter().filter(|&&i| i < sets.len()) {
            p.remove(SeriesRef(i as u32), &sets[i]);
        }
        let live: Vec<(u32, Labels)> = sets
            .iter()
            .enumerate()
            .filter(|(i, _)| !removed.contains(i))
            .map(|(i, l)| (i as u32, l.clone()))
            .collect();
        prop_assert_eq!(refs(&p.select(&ms)), brute_force(&live, &ms), "matchers {:?}", ms);

        // Label look-ups restricted to the selection agree too.
        let within = p.select(&ms);
        let selected: Vec<&Labels> = live
            .iter()
            .filter(|(r, _)| within.contains(*r))
            .map(|(_, l)| l)
            .collect();
        let want_names: BTreeSet<String> = selected
            .iter()
            .flat_map(|l| l.iter().map(|x| x.name.to_string()))
            .collect();
        prop_assert_eq!(p.label_names(Some(&within)), want_names.into_iter().collect::<Vec<_>>());
        let want_values: BTreeSet<String> = selected
            .iter()
            .filter_map(|l| l.get("a").map(str::to_string))
            .collect();
        prop_assert_eq!(p.label_values("a", Some(&within)), want_values.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(p.len(), live.len() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `add_batch` builds the same index as `add` one series at a time, in
    /// one batch or several, with interned labels or not.
    #[test]
    fn add_batch_equals_add(
        sets in prop::collection::vec(arb_labels(), 0..40),
        split in 0usize..40,
        intern in any::<bool>(),
        ms in prop::collection::vec(arb_matcher(), 1..4),
    ) {
        let interner = Interner::new();
        let sets: Vec<Labels> = if intern {
            sets.iter().map(|l| interner.intern_labels(l)).collect()
        } else {
            sets
        };
        let one_by_one = Postings::new();
        for (i, l) in sets.iter().enumerate() {
            one_by_one.add(SeriesRef(i as u32), l);
        }
        let batched = Postings::new();
        let split = split.min(sets.len());
        let numbered: Vec<(SeriesRef, &Labels)> =
            sets.iter().enumerate().map(|(i, l)| (SeriesRef(i as u32), l)).collect();
        // The second batch first, so refs arrive out of order overall.
        batched.add_batch(numbered[split..].iter().copied());
        batched.add_batch(numbered[..split].iter().copied());
        prop_assert_eq!(refs(&batched.select(&ms)), refs(&one_by_one.select(&ms)));
        prop_assert_eq!(refs(&batched.all()), refs(&one_by_one.all()));
        prop_assert_eq!(batched.label_names(None), one_by_one.label_names(None));
        for name in NAMES {
            prop_assert_eq!(batched.label_values(name, None), one_by_one.label_values(name, None));
        }
        prop_assert_eq!(batched.cardinality(100), one_by_one.cardinality(100));
    }
}
