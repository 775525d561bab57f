//! Tests of delete requests: their JSON form, and a querier hiding their
//! samples against a plain filter of the same data as the reference.

use super::*;

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

/// A querier over fixed series, filtering by matchers and range.
struct Fixed(Vec<(Labels, Vec<Sample>)>);

impl Querier for Fixed {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>> {
        Ok(self
            .0
            .iter()
            .filter(|(l, _)| {
                matchers
                    .iter()
                    .all(|m| m.matches(l.get(&m.name).unwrap_or("")))
            })
            .filter_map(|(l, s)| {
                let v: Vec<Sample> = s
                    .iter()
                    .copied()
                    .filter(|x| x.t >= mint && x.t <= maxt)
                    .collect();
                (!v.is_empty()).then(|| Series::from_samples(l.clone(), v))
            })
            .collect())
    }
    fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Labels>> {
        Ok(self
            .select(matchers, mint, maxt)?
            .into_iter()
            .map(|s| s.labels)
            .collect())
    }
    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let mut v: Vec<String> = self
            .select(matchers, mint, maxt)?
            .iter()
            .flat_map(|s| {
                s.labels
                    .iter()
                    .map(|l| l.name.to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let mut v: Vec<String> = self
            .select(matchers, mint, maxt)?
            .iter()
            .filter_map(|s| s.labels.get(name).map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }
}

fn data() -> Vec<(Labels, Vec<Sample>)> {
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let mut pairs = vec![("__name__", "up".to_string()), ("job", job.to_string())];
            if i == 2 {
                pairs.push(("extra", "yes".to_string()));
            }
            let l = Labels::from_pairs(pairs);
            let s = (0..10)
                .map(|t| Sample::new(t * 10, (i * 100) as f64 + t as f64))
                .collect();
            (l, s)
        })
        .collect()
}

fn dump(q: &dyn Querier, mint: i64, maxt: i64) -> Vec<(String, Vec<i64>)> {
    q.select(&[m(MatchOp::RegexMatch, "__name__", ".*")], mint, maxt)
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples().iter().map(|x| x.t).collect(),
            )
        })
        .collect()
}

#[test]
fn requests_round_trip_through_json() {
    let r = DeleteRequest::new(
        vec![
            m(MatchOp::Equal, "__name__", "up"),
            m(MatchOp::NotEqual, "job", "x"),
            m(MatchOp::RegexMatch, "instance", "10\\..*"),
            m(MatchOp::RegexNoMatch, "env", "prod|staging"),
        ],
        -5,
        i64::MAX,
    );
    let back = DeleteRequest::from_json(&r.to_json().unwrap(), "t").unwrap();
    assert_eq!(format!("{back:?}"), format!("{r:?}"));
    assert!(r.created_ms() > 1_700_000_000_000);
    for bad in [&b"{"[..], br#"{"version":2,"id":"x","matchers":[],"min_time":0,"max_time":1}"#, br#"{"version":1,"id":"x","matchers":[{"type":"==","name":"a","value":"b"}],"min_time":0,"max_time":1}"#] {
        assert!(DeleteRequest::from_json(bad, "t").is_err());
    }
}

#[test]
fn requests_are_stored_listed_and_removed() {
    let store = BlockStore::from_url("memory://").unwrap();
    let a = DeleteRequest::new(vec![m(MatchOp::Equal, "job", "a")], 0, 10);
    let b = DeleteRequest::new(vec![m(MatchOp::Equal, "job", "b")], 5, 6);
    b.save(&store).unwrap();
    a.save(&store).unwrap();
    let ids: Vec<String> = load(&store).unwrap().into_iter().map(|r| r.id).collect();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(ids, want);
    a.remove(&store).unwrap();
    let ids: Vec<String> = load(&store).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![b.id.clone()]);
    // Not a block directory: block listing and clean-up leave it alone.
    assert!(crate::block::list_blocks(&store).unwrap().is_empty());
    assert!(
        crate::block::clean_partial_blocks(&store)
            .unwrap()
            .is_empty()
    );
    assert_eq!(load(&store).unwrap().len(), 1);
}

#[test]
fn deleted_samples_are_hidden_from_every_read() {
    let inner: Arc<dyn Querier> = Arc::new(Fixed(data()));
    let tomb: Tombstones = Arc::new(vec![
        // Part of a.
        DeleteRequest::new(vec![m(MatchOp::Equal, "job", "a")], 20, 45),
        // All of c (the only series with `extra`).
        DeleteRequest::new(vec![m(MatchOp::Equal, "extra", "yes")], 0, 90),
    ]);
    let q = TombstonedQuerier::wrap(Arc::clone(&inner), &tomb);
    let got = dump(&*q, 0, 100);
    assert_eq!(
        got,
        vec![
            ("up{job=\"a\"}".to_string(), vec![0, 10, 50, 60, 70, 80, 90]),
            (
                "up{job=\"b\"}".to_string(),
                (0..10).map(|t| t * 10).collect()
            ),
        ]
    );
    // A range where `a` has only deleted samples: `a` is not selected.
    assert_eq!(dump(&*q, 20, 45).len(), 1);
    // Series and label look-ups answer from the index, as Prometheus's
    // do: deleted series are still listed.
    let all = [m(MatchOp::RegexMatch, "__name__", ".*")];
    assert_eq!(
        q.series(&all, 20, 45).unwrap(),
        inner.series(&all, 20, 45).unwrap()
    );
    assert_eq!(
        q.label_values("job", &all, 0, 100).unwrap(),
        vec!["a", "b", "c"]
    );
    assert_eq!(
        q.label_names(&all, 0, 100).unwrap(),
        vec!["__name__", "extra", "job"]
    );
    // Outside every request: the inner querier's answers, untouched.
    assert_eq!(dump(&*q, 91, 1000), dump(&*inner, 91, 1000));
    // No requests: the inner querier itself.
    let none = TombstonedQuerier::wrap(Arc::clone(&inner), &Tombstones::default());
    assert!(Arc::ptr_eq(&none, &inner));
}
