//! The fleet's topology: which scrape targets exist, which series each one
//! exposes, and with which labels.
//!
//! An LLM-serving fleet is a set of inference servers ("instances"). Each
//! serves one model at one deployed version in one region, and answers on a
//! few HTTP routes for a set of LoRA adapters (optionally split further by a
//! hashed user cohort). For every (adapter, route[, cohort]) *group* an
//! instance exposes [`GROUP_SERIES`] series (request, error, token and cost
//! counters, two classic histograms, cache hits, safety violations); per
//! instance it also exposes [`INSTANCE_SERIES`] GPU and queue gauges.
//!
//! The number of instances, and of groups on the last instance, is chosen so
//! that the fleet has (within one group) the requested number of active
//! series: 10k series is 8 instances, 100k is 75, 1M is 748.

use std::sync::Arc;

/// Routes served by every instance, with the share of traffic each takes,
/// the mean prompt and completion tokens per request, and the median
/// latency in ms (the log-normal's median).
pub const ROUTES: [Route; 4] = [
    Route {
        path: "/v1/chat/completions",
        share: 0.60,
        prompt_tokens: 900.0,
        completion_tokens: 350.0,
        median_latency_ms: 900.0,
    },
    Route {
        path: "/v1/completions",
        share: 0.20,
        prompt_tokens: 400.0,
        completion_tokens: 180.0,
        median_latency_ms: 450.0,
    },
    Route {
        path: "/v1/embeddings",
        share: 0.15,
        prompt_tokens: 250.0,
        completion_tokens: 0.0,
        median_latency_ms: 40.0,
    },
    Route {
        path: "/v1/batch",
        share: 0.05,
        prompt_tokens: 2200.0,
        completion_tokens: 800.0,
        median_latency_ms: 3500.0,
    },
];

/// Models in the fleet, with their serving job, price per 1k tokens (input,
/// output), weight memory in GiB, relative traffic weight and version line.
pub const MODELS: [Model; 6] = [
    Model {
        name: "llama-3-70b-instruct",
        job: "vllm",
        price_in: 0.00059,
        price_out: 0.00079,
        weights_gib: 70.0,
        traffic: 1.0,
        speed: 1.3,
        version_line: (3, 4),
    },
    Model {
        name: "llama-3-8b-instruct",
        job: "vllm",
        price_in: 0.00005,
        price_out: 0.00008,
        weights_gib: 16.0,
        traffic: 2.0,
        speed: 0.6,
        version_line: (3, 1),
    },
    Model {
        name: "mixtral-8x7b-instruct",
        job: "vllm",
        price_in: 0.00024,
        price_out: 0.00024,
        weights_gib: 48.0,
        traffic: 1.0,
        speed: 1.0,
        version_line: (2, 7),
    },
    Model {
        name: "mistral-7b-instruct",
        job: "tgi",
        price_in: 0.00005,
        price_out: 0.00005,
        weights_gib: 15.0,
        traffic: 1.5,
        speed: 0.5,
        version_line: (1, 9),
    },
    Model {
        name: "qwen2-72b-instruct",
        job: "vllm",
        price_in: 0.00056,
        price_out: 0.00077,
        weights_gib: 72.0,
        traffic: 0.7,
        speed: 1.4,
        version_line: (2, 2),
    },
    Model {
        name: "gemma-2-27b-it",
        job: "tgi",
        price_in: 0.00027,
        price_out: 0.00027,
        weights_gib: 54.0,
        traffic: 0.8,
        speed: 0.9,
        version_line: (1, 3),
    },
];

/// Adapter names; the first is the base model without an adapter. Fleets
/// with more adapters than names get numbered variants.
const ADAPTER_NAMES: [&str; 12] = [
    "base",
    "support-bot",
    "code-assist",
    "summarize",
    "translate-es",
    "sql-gen",
    "legal-draft",
    "med-notes",
    "sales-email",
    "rag-qa",
    "moderation",
    "search-rerank",
];

const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1"];

/// Error codes counted by `infer_errors_total{code}`, with their base rate
/// per request.
pub const ERROR_CODES: [(&str, f64); 3] = [("429", 0.004), ("500", 0.001), ("503", 0.0005)];

/// Upper bounds (ms) of `infer_latency_ms_bucket`, without `+Inf`.
pub const LATENCY_BUCKETS_MS: [f64; 10] = [
    10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];
/// Upper bounds (ms) of `ttft_ms_bucket`, without `+Inf`.
pub const TTFT_BUCKETS_MS: [f64; 8] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// GPUs per instance (one series each of utilisation and memory).
pub const GPUS_PER_INSTANCE: usize = 8;

/// Series per (adapter, route[, cohort]) group; the layout is in [`Slot`].
pub const GROUP_SERIES: usize = 33;
/// Series per instance outside the groups: GPU utilisation and memory per
/// GPU, and the queue depth.
pub const INSTANCE_SERIES: usize = 2 * GPUS_PER_INSTANCE + 1;

/// Offsets of the series inside a group, in exposition order.
pub struct Slot;
impl Slot {
    pub const REQUESTS: usize = 0;
    pub const ERRORS: usize = 1; // 3 codes
    pub const TOKENS_PROMPT: usize = 4;
    pub const TOKENS_COMPLETION: usize = 5;
    pub const COST: usize = 6;
    pub const LATENCY_BUCKETS: usize = 7; // 10 bounds + +Inf
    pub const LATENCY_SUM: usize = 18;
    pub const LATENCY_COUNT: usize = 19;
    pub const TTFT_BUCKETS: usize = 20; // 8 bounds + +Inf
    pub const TTFT_SUM: usize = 29;
    pub const TTFT_COUNT: usize = 30;
    pub const CACHE_HITS: usize = 31;
    pub const SAFETY: usize = 32;
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub path: &'static str,
    pub share: f64,
    pub prompt_tokens: f64,
    pub completion_tokens: f64,
    pub median_latency_ms: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub name: &'static str,
    pub job: &'static str,
    pub price_in: f64,
    pub price_out: f64,
    pub weights_gib: f64,
    pub traffic: f64,
    /// Latency multiplier relative to the route's median.
    pub speed: f64,
    pub version_line: (u32, u32),
}

/// Shape of the fleet, before values.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Adapters served per instance.
    pub adapters: usize,
    /// Hashed user cohorts per (adapter, route); 0 means no `user_cohort` label.
    pub cohorts: usize,
    /// Groups on each instance (all full but possibly the last).
    pub groups_per_instance: Vec<usize>,
}

impl Topology {
    /// The fleet whose active series count is closest to `series` (at least
    /// one instance with one group).
    pub fn for_series(series: usize, adapters: usize, cohorts: usize) -> Topology {
        let adapters = adapters.max(1);
        let full_groups = adapters * ROUTES.len() * cohorts.max(1);
        let full = full_groups * GROUP_SERIES + INSTANCE_SERIES;
        let mut groups_per_instance = Vec::new();
        let mut remaining = series;
        // Bounded: one iteration per instance, at most series / full + 1.
        while remaining >= full {
            groups_per_instance.push(full_groups);
            remaining -= full;
        }
        if remaining > INSTANCE_SERIES + GROUP_SERIES / 2 || groups_per_instance.is_empty() {
            let groups = ((remaining.saturating_sub(INSTANCE_SERIES) + GROUP_SERIES / 2)
                / GROUP_SERIES)
                .clamp(1, full_groups);
            groups_per_instance.push(groups);
        }
        Topology {
            adapters,
            cohorts,
            groups_per_instance,
        }
    }

    pub fn instances(&self) -> usize {
        self.groups_per_instance.len()
    }

    /// Active series at any moment (churn replaces series, it does not add
    /// to the active count).
    pub fn active_series(&self) -> usize {
        self.groups_per_instance
            .iter()
            .map(|g| g * GROUP_SERIES + INSTANCE_SERIES)
            .sum()
    }

    /// Identity of instance `index`: model, region, address.
    pub fn instance(&self, index: usize) -> InstanceId {
        // Spread models by traffic weight: a fixed cycle in which heavier
        // models appear more often.
        const MODEL_CYCLE: [usize; 10] = [0, 1, 2, 3, 1, 4, 3, 5, 0, 1];
        let model = MODEL_CYCLE[index % MODEL_CYCLE.len()];
        let region = REGIONS[(index / 3) % REGIONS.len()];
        InstanceId {
            index,
            model,
            region,
            address: Arc::from(format!(
                "10.{}.{}.{}:8000",
                16 + index / 65536,
                (index / 256) % 256,
                index % 256
            )),
            cluster: Arc::from(format!("prod-{region}-{}", ["a", "b"][index % 2])),
        }
    }

    /// The (adapter, route, cohort) of group `g` of an instance.
    pub fn group(&self, g: usize) -> GroupId {
        let cohorts = self.cohorts.max(1);
        let cohort = g % cohorts;
        let route = (g / cohorts) % ROUTES.len();
        let adapter = g / cohorts / ROUTES.len();
        GroupId {
            adapter: adapter_name(adapter),
            route,
            cohort: (self.cohorts > 0).then(|| cohort_name(cohort)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct InstanceId {
    pub index: usize,
    pub model: usize,
    pub region: &'static str,
    pub address: Arc<str>,
    pub cluster: Arc<str>,
}

#[derive(Debug, Clone)]
pub struct GroupId {
    pub adapter: Arc<str>,
    pub route: usize,
    pub cohort: Option<Arc<str>>,
}

fn adapter_name(i: usize) -> Arc<str> {
    let base = ADAPTER_NAMES[i % ADAPTER_NAMES.len()];
    match i / ADAPTER_NAMES.len() {
        0 => Arc::from(base),
        n => Arc::from(format!("{base}-{n}")),
    }
}

/// Cohorts look like hashed user ids: 8 hex digits, stable per index.
fn cohort_name(i: usize) -> Arc<str> {
    let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    Arc::from(format!("{h:08x}"))
}

/// A series' labels, sorted by name (`__name__` first), as remote-write
/// requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesLabels(pub Vec<(&'static str, Arc<str>)>);

impl SeriesLabels {
    fn build(mut pairs: Vec<(&'static str, Arc<str>)>) -> SeriesLabels {
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        SeriesLabels(pairs)
    }

    pub fn metric_name(&self) -> &str {
        self.0
            .iter()
            .find(|(n, _)| *n == "__name__")
            .map(|(_, v)| &**v)
            .unwrap_or("")
    }

    /// FNV-1a over names and values: a stable hash for sharding.
    pub fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (n, v) in &self.0 {
            for b in n.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    }
}

/// The series of one instance at one version, in the order of [`Slot`] per
/// group, then GPU utilisation, GPU memory and queue depth.
pub fn instance_series(
    topology: &Topology,
    id: &InstanceId,
    version: &str,
    groups: usize,
) -> Vec<SeriesLabels> {
    let model = &MODELS[id.model];
    let common: Vec<(&'static str, Arc<str>)> = vec![
        ("job", Arc::from(model.job)),
        ("instance", id.address.clone()),
        ("cluster", id.cluster.clone()),
        ("namespace", Arc::from("inference")),
        ("region", Arc::from(id.region)),
        ("model", Arc::from(model.name)),
        ("version", Arc::from(version)),
    ];
    let name = |n: &'static str| ("__name__", Arc::<str>::from(n));
    let mut out = Vec::with_capacity(groups * GROUP_SERIES + INSTANCE_SERIES);
    let le_values = |bounds: &[f64]| -> Vec<Arc<str>> {
        bounds
            .iter()
            .map(|b| Arc::from(format_le(*b)))
            .chain([Arc::from("+Inf")])
            .collect()
    };
    let latency_le = le_values(&LATENCY_BUCKETS_MS);
    let ttft_le = le_values(&TTFT_BUCKETS_MS);
    for g in 0..groups {
        let group = topology.group(g);
        let mut base = common.clone();
        base.push(("adapter", group.adapter.clone()));
        base.push(("route", Arc::from(ROUTES[group.route].path)));
        if let Some(c) = &group.cohort {
            base.push(("user_cohort", c.clone()));
        }
        let with = |extra: Vec<(&'static str, Arc<str>)>| {
            let mut v = base.clone();
            v.extend(extra);
            SeriesLabels::build(v)
        };
        out.push(with(vec![name("infer_requests_total")]));
        for (code, _) in ERROR_CODES {
            out.push(with(vec![
                name("infer_errors_total"),
                ("code", Arc::from(code)),
            ]));
        }
        out.push(with(vec![
            name("infer_tokens_total"),
            ("direction", Arc::from("prompt")),
        ]));
        out.push(with(vec![
            name("infer_tokens_total"),
            ("direction", Arc::from("completion")),
        ]));
        out.push(with(vec![name("infer_cost_usd_total")]));
        for le in &latency_le {
            out.push(with(vec![
                name("infer_latency_ms_bucket"),
                ("le", le.clone()),
            ]));
        }
        out.push(with(vec![name("infer_latency_ms_sum")]));
        out.push(with(vec![name("infer_latency_ms_count")]));
        for le in &ttft_le {
            out.push(with(vec![name("ttft_ms_bucket"), ("le", le.clone())]));
        }
        out.push(with(vec![name("ttft_ms_sum")]));
        out.push(with(vec![name("ttft_ms_count")]));
        out.push(with(vec![name("cache_hits_total")]));
        out.push(with(vec![name("safety_violations_total")]));
    }
    for metric in ["gpu_utilization_percent", "gpu_memory_used_bytes"] {
        for gpu in 0..GPUS_PER_INSTANCE {
            let mut v = common.clone();
            v.push(name(metric));
            v.push(("gpu", Arc::from(gpu.to_string())));
            out.push(SeriesLabels::build(v));
        }
    }
    let mut v = common;
    v.push(name("queue_depth"));
    out.push(SeriesLabels::build(v));
    out
}

/// `le` values as Prometheus client libraries print them (`10`, `2.5`).
fn format_le(bound: f64) -> String {
    format!("{bound}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_reaches_the_requested_series_count() {
        for (series, cohorts) in [
            (10_000, 0),
            (100_000, 0),
            (1_000_000, 0),
            (500, 0),
            (20_000, 8),
            (1, 0),
        ] {
            let t = Topology::for_series(series, 10, cohorts);
            let got = t.active_series();
            let tolerance = GROUP_SERIES.max(INSTANCE_SERIES + GROUP_SERIES);
            assert!(got.abs_diff(series) <= tolerance, "{series}: got {got}");
        }
        assert_eq!(Topology::for_series(100_000, 10, 0).instances(), 75);
    }

    #[test]
    fn series_are_unique_sorted_and_about_ten_labels() {
        let t = Topology::for_series(3_000, 10, 2);
        let id = t.instance(3);
        let series = instance_series(&t, &id, "v1.2.3", t.groups_per_instance[0]);
        assert_eq!(
            series.len(),
            t.groups_per_instance[0] * GROUP_SERIES + INSTANCE_SERIES
        );
        let mut seen = std::collections::HashSet::new();
        for s in &series {
            assert!(s.0.windows(2).all(|w| w[0].0 < w[1].0), "unsorted {s:?}");
            assert!(
                (8..=12).contains(&s.0.len()),
                "{} labels in {s:?}",
                s.0.len()
            );
            assert!(seen.insert(s.clone()), "duplicate {s:?}");
        }
        assert_eq!(
            series[Slot::LATENCY_BUCKETS].metric_name(),
            "infer_latency_ms_bucket"
        );
        assert_eq!(
            series[Slot::LATENCY_SUM].metric_name(),
            "infer_latency_ms_sum"
        );
        assert_eq!(series[Slot::TTFT_COUNT].metric_name(), "ttft_ms_count");
        assert_eq!(
            series[Slot::SAFETY].metric_name(),
            "safety_violations_total"
        );
    }
}
