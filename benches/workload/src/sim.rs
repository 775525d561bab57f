//! The values: a simulation of each instance's counters, histograms and
//! gauges, scrape by scrape, and the driver that replays every scrape of the
//! fleet in time order into the output sinks.
//!
//! Realism that matters for storage and query engines:
//! - counters grow by variable increments (integers for requests, errors,
//!   tokens; noisy floats for dollars and latency sums), start from a
//!   non-zero value (the process has been up for a while), and reset to zero
//!   when an instance restarts (rare) or is redeployed (churn);
//! - histogram buckets are cumulative (`le` buckets never decrease along
//!   `le`, `+Inf` equals `_count`);
//! - gauges wander (mean-reverting walks around a load level);
//! - every target is scraped every interval at its own phase, with
//!   millisecond jitter; all series of one scrape share its timestamp.
//!
//! Every instance has its own random stream, so the data is a pure function
//! of the seed and the parameters.

use crate::Error;
use crate::fleet::{
    self, GPUS_PER_INSTANCE, GROUP_SERIES, InstanceId, LATENCY_BUCKETS_MS, MODELS, ROUTES,
    SeriesLabels, Slot, TTFT_BUCKETS_MS, Topology,
};
use crate::rng::Rng;

/// Everything that determines the generated data.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadConfig {
    pub seed: u64,
    /// Target number of active series.
    pub series: usize,
    pub adapters: usize,
    /// Hashed `user_cohort` values per (adapter, route); 0 for none.
    pub cohorts: usize,
    /// First millisecond of the window (inclusive).
    pub start_ms: i64,
    pub duration_ms: i64,
    pub scrape_interval_ms: i64,
    /// Scrape timestamps deviate from the target's schedule by up to this.
    pub jitter_ms: i64,
    /// Expected redeploys (new `version`) per instance per hour.
    pub churn_per_hour: f64,
    /// Probability that an instance restarts (counters reset) at a scrape.
    pub restart_probability: f64,
}

impl WorkloadConfig {
    pub fn new(seed: u64, series: usize, start_ms: i64, duration_ms: i64) -> WorkloadConfig {
        WorkloadConfig {
            seed,
            series,
            adapters: 10,
            cohorts: 0,
            start_ms,
            duration_ms,
            scrape_interval_ms: 15_000,
            jitter_ms: 20,
            churn_per_hour: 0.0,
            restart_probability: 1.0 / 4000.0,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let bad = |what: &'static str, value: String| Err(Error::BadArgument { what, value });
        if self.series == 0 {
            return bad("series", "0".into());
        }
        if self.duration_ms <= 0 {
            return bad("duration", self.duration_ms.to_string());
        }
        if self.scrape_interval_ms < 1000
            || self.jitter_ms < 0
            || self.jitter_ms * 4 >= self.scrape_interval_ms
        {
            return bad(
                "scrape interval / jitter",
                format!("{} / {}", self.scrape_interval_ms, self.jitter_ms),
            );
        }
        if !(0.0..=1000.0).contains(&self.churn_per_hour) {
            return bad("churn", self.churn_per_hour.to_string());
        }
        Ok(())
    }
}

/// One scrape of one target, handed to the sinks: all series share `t_ms`.
pub struct Scrape<'a> {
    pub t_ms: i64,
    pub series: &'a [SeriesLabels],
    /// Stable hash of each series (for sharding), parallel to `series`.
    pub hashes: &'a [u64],
    pub values: &'a [f64],
}

/// Where generated samples go: an output format. Sinks receive the scrapes
/// of the whole fleet in time order.
///
/// **Extension point:** OTLP output is a third implementation of this trait
/// (an `ExportMetricsServiceRequest` per batch of scrapes, counters as
/// cumulative monotonic sums, histograms as explicit-bucket histogram points
/// rebuilt from the `_bucket`/`_sum`/`_count` series of a scrape); it needs
/// only the OTLP types in cairn-proto.
pub trait Sink {
    fn scrape(&mut self, scrape: &Scrape<'_>) -> Result<(), Error>;
    /// Flushes what is buffered and writes any index; called once at the end.
    fn finish(&mut self) -> Result<(), Error>;
}

/// What was generated.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub seed: u64,
    pub instances: usize,
    pub active_series: usize,
    /// Distinct series over the whole window (grows with churn).
    pub total_series: usize,
    pub samples: u64,
    pub scrapes: u64,
    pub restarts: u64,
    pub redeploys: u64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub first_sample_ms: i64,
    pub last_sample_ms: i64,
    pub scrape_interval_ms: i64,
}

/// Latent state of one instance between scrapes.
struct Instance {
    id: InstanceId,
    rng: Rng,
    groups: usize,
    version: u32,
    series: Vec<SeriesLabels>,
    hashes: Vec<u64>,
    values: Vec<f64>,
    /// Requests per second of each group at load 1.
    group_rate: Vec<f64>,
    /// ln of the median latency (ms) of each group at load 1.
    group_latency_mu: Vec<f64>,
    group_hit_rate: Vec<f64>,
    group_route: Vec<usize>,
    load: f64,
    kv_cache_gib: Vec<f64>,
    phase_ms: i64,
    last_scrape_ms: i64,
    next_redeploy_ms: i64,
}

const LATENCY_SIGMA: f64 = 0.55;
const TTFT_SIGMA: f64 = 0.5;
const GPU_MEMORY_GIB: f64 = 80.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

impl Instance {
    fn new(config: &WorkloadConfig, topology: &Topology, index: usize) -> Instance {
        let mut rng = Rng::new(config.seed, index as u64 + 1);
        let id = topology.instance(index);
        let groups = topology.groups_per_instance[index];
        let model = &MODELS[id.model];
        let mut group_rate = Vec::with_capacity(groups);
        let mut group_latency_mu = Vec::with_capacity(groups);
        let mut group_hit_rate = Vec::with_capacity(groups);
        let mut group_route = Vec::with_capacity(groups);
        for g in 0..groups {
            let group = topology.group(g);
            let route = &ROUTES[group.route];
            // Adapter popularity falls off like Zipf; traffic per model varies.
            let adapter_rank = (g / topology.cohorts.max(1) / ROUTES.len()) as f64 + 1.0;
            let rate =
                6.0 * model.traffic * route.share / adapter_rank / topology.cohorts.max(1) as f64
                    * rng.lognormal(0.0, 0.4);
            group_rate.push(rate);
            group_latency_mu
                .push((route.median_latency_ms * model.speed).ln() + 0.15 * rng.normal());
            group_hit_rate.push(0.2 + 0.5 * rng.f64());
            group_route.push(group.route);
        }
        let phase_ms = rng.range_i64(
            config.jitter_ms,
            config.scrape_interval_ms - 1 - config.jitter_ms,
        );
        let version = rng.range_i64(0, 20) as u32;
        let next_redeploy_ms = next_redeploy(&mut rng, config, config.start_ms);
        let mut instance = Instance {
            series: Vec::new(),
            hashes: Vec::new(),
            values: Vec::new(),
            kv_cache_gib: (0..GPUS_PER_INSTANCE)
                .map(|_| 2.0 + 4.0 * rng.f64())
                .collect(),
            id,
            rng,
            groups,
            version,
            group_rate,
            group_latency_mu,
            group_hit_rate,
            group_route,
            load: 1.0,
            phase_ms,
            last_scrape_ms: config.start_ms,
            next_redeploy_ms,
        };
        instance.relabel(topology);
        instance.values = vec![0.0; instance.series.len()];
        // The process has been up for a while: counters start high.
        let uptime_s = 3600.0 * (1.0 + 71.0 * instance.rng.f64());
        instance.advance(uptime_s);
        instance
    }

    fn version_label(&self) -> String {
        let (major, minor) = MODELS[self.id.model].version_line;
        format!("v{major}.{minor}.{}", self.version)
    }

    fn relabel(&mut self, topology: &Topology) {
        self.series =
            fleet::instance_series(topology, &self.id, &self.version_label(), self.groups);
        self.hashes = self.series.iter().map(SeriesLabels::stable_hash).collect();
    }

    fn reset_counters(&mut self) {
        for g in 0..self.groups {
            self.values[g * GROUP_SERIES..(g + 1) * GROUP_SERIES].fill(0.0);
        }
    }

    /// Advances every series by `dt_s` seconds of traffic.
    fn advance(&mut self, dt_s: f64) {
        let rng = &mut self.rng;
        // Load: a mean-reverting walk around 1, shared by the instance.
        self.load = (1.0 + 0.92 * (self.load - 1.0) + 0.06 * rng.normal()).clamp(0.3, 3.0);
        let load = self.load;
        let model = &MODELS[self.id.model];
        let mut requests_total = 0u64;
        for g in 0..self.groups {
            let route = &ROUTES[self.group_route[g]];
            let v = &mut self.values[g * GROUP_SERIES..(g + 1) * GROUP_SERIES];
            let n = rng.poisson(self.group_rate[g] * load * dt_s);
            requests_total += n;
            v[Slot::REQUESTS] += n as f64;
            for (i, (_, base_rate)) in fleet::ERROR_CODES.iter().enumerate() {
                let p = if i == 0 {
                    base_rate * load * load
                } else {
                    *base_rate
                };
                v[Slot::ERRORS + i] += rng.binomial(n, p) as f64;
            }
            let prompt = (n as f64 * route.prompt_tokens * rng.lognormal(0.0, 0.15)).round();
            let completion = (n as f64 * route.completion_tokens * rng.lognormal(0.0, 0.2)).round();
            v[Slot::TOKENS_PROMPT] += prompt;
            v[Slot::TOKENS_COMPLETION] += completion;
            v[Slot::COST] +=
                prompt * model.price_in / 1000.0 + completion * model.price_out / 1000.0;
            let mu = self.group_latency_mu[g] + 0.35 * (load - 1.0);
            observe_histogram(
                rng,
                v,
                Slot::LATENCY_BUCKETS,
                &LATENCY_BUCKETS_MS,
                n,
                mu,
                LATENCY_SIGMA,
            );
            v[Slot::LATENCY_SUM] += n as f64
                * (mu + LATENCY_SIGMA * LATENCY_SIGMA / 2.0).exp()
                * rng.lognormal(0.0, 0.05);
            v[Slot::LATENCY_COUNT] = v[Slot::LATENCY_BUCKETS + LATENCY_BUCKETS_MS.len()];
            let ttft_mu = mu - 1.6;
            observe_histogram(
                rng,
                v,
                Slot::TTFT_BUCKETS,
                &TTFT_BUCKETS_MS,
                n,
                ttft_mu,
                TTFT_SIGMA,
            );
            v[Slot::TTFT_SUM] += n as f64
                * (ttft_mu + TTFT_SIGMA * TTFT_SIGMA / 2.0).exp()
                * rng.lognormal(0.0, 0.05);
            v[Slot::TTFT_COUNT] = v[Slot::TTFT_BUCKETS + TTFT_BUCKETS_MS.len()];
            v[Slot::CACHE_HITS] += rng.binomial(n, self.group_hit_rate[g]) as f64;
            v[Slot::SAFETY] += rng.poisson(n as f64 * 0.0003) as f64;
        }
        let gauges = self.groups * GROUP_SERIES;
        for gpu in 0..GPUS_PER_INSTANCE {
            let util = &mut self.values[gauges + gpu];
            let target = 30.0 + 45.0 * load + 6.0 * rng.normal();
            *util = (0.7 * *util + 0.3 * target).clamp(0.0, 100.0).round();
            let kv = &mut self.kv_cache_gib[gpu];
            let headroom = (GPU_MEMORY_GIB - model.weights_gib / 2.0).max(4.0);
            *kv = (*kv + 0.4 * rng.normal() + 0.05 * (load - 1.0)).clamp(0.5, headroom - 1.0);
            let used = (model.weights_gib / 2.0 + *kv) * GIB;
            self.values[gauges + GPUS_PER_INSTANCE + gpu] = (used / MIB).round() * MIB;
        }
        let queue_mean =
            4.0 * load * load * load * (1.0 + requests_total as f64 / (dt_s * 100.0)).min(3.0);
        self.values[gauges + 2 * GPUS_PER_INSTANCE] = rng.poisson(queue_mean) as f64;
    }
}

/// Adds `n` observations drawn from a log-normal(mu, sigma) to the
/// cumulative buckets `v[first..=first + bounds.len()]` (the last is `+Inf`).
fn observe_histogram(
    rng: &mut Rng,
    v: &mut [f64],
    first: usize,
    bounds: &[f64],
    n: u64,
    mu: f64,
    sigma: f64,
) {
    let mut remaining = n;
    let mut mass_left = 1.0;
    let mut below = 0.0;
    let mut cumulative = 0u64;
    for (i, bound) in bounds.iter().enumerate() {
        let cdf = normal_cdf((bound.ln() - mu) / sigma);
        let p_bin = (cdf - below).max(0.0);
        below = cdf;
        let in_bin = if mass_left > 1e-12 {
            rng.binomial(remaining, (p_bin / mass_left).min(1.0))
        } else {
            0
        };
        mass_left -= p_bin;
        remaining -= in_bin;
        cumulative += in_bin;
        v[first + i] += cumulative as f64;
    }
    v[first + bounds.len()] += n as f64;
}

/// Standard normal CDF via the Abramowitz-Stegun 7.1.26 erf approximation
/// (absolute error below 1.5e-7: plenty for a workload).
fn normal_cdf(x: f64) -> f64 {
    let z = x / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    let erf = if z >= 0.0 { erf } else { -erf };
    0.5 * (1.0 + erf)
}

fn next_redeploy(rng: &mut Rng, config: &WorkloadConfig, after_ms: i64) -> i64 {
    if config.churn_per_hour <= 0.0 {
        return i64::MAX;
    }
    let hours = -(1.0 - rng.f64()).ln() / config.churn_per_hour;
    after_ms.saturating_add((hours * 3_600_000.0) as i64 + 1)
}

/// Generates the whole window into `sinks`, scrape by scrape in time order.
pub fn generate(config: &WorkloadConfig, sinks: &mut [&mut dyn Sink]) -> Result<Summary, Error> {
    config.validate()?;
    let topology = Topology::for_series(config.series, config.adapters, config.cohorts);
    let mut instances: Vec<Instance> = (0..topology.instances())
        .map(|i| Instance::new(config, &topology, i))
        .collect();
    let end_ms = config.start_ms + config.duration_ms;
    let rounds = (config.duration_ms + config.scrape_interval_ms - 1) / config.scrape_interval_ms;
    let mut summary = Summary {
        seed: config.seed,
        instances: instances.len(),
        active_series: topology.active_series(),
        total_series: topology.active_series(),
        start_ms: config.start_ms,
        end_ms,
        first_sample_ms: i64::MAX,
        last_sample_ms: i64::MIN,
        scrape_interval_ms: config.scrape_interval_ms,
        ..Summary::default()
    };
    let mut order: Vec<(i64, usize)> = Vec::with_capacity(instances.len());
    for round in 0..rounds {
        order.clear();
        for (i, inst) in instances.iter_mut().enumerate() {
            let jitter = inst.rng.range_i64(-config.jitter_ms, config.jitter_ms);
            let t = config.start_ms + round * config.scrape_interval_ms + inst.phase_ms + jitter;
            if t < end_ms {
                order.push((t, i));
            }
        }
        order.sort_unstable();
        for &(t, i) in &order {
            let inst = &mut instances[i];
            if t >= inst.next_redeploy_ms {
                inst.version += 1;
                inst.relabel(&topology);
                inst.reset_counters();
                inst.next_redeploy_ms = next_redeploy(&mut inst.rng, config, t);
                summary.redeploys += 1;
                summary.total_series += inst.series.len();
            } else if inst.rng.f64() < config.restart_probability {
                inst.reset_counters();
                summary.restarts += 1;
            }
            let dt_s = (t - inst.last_scrape_ms).max(1) as f64 / 1000.0;
            inst.last_scrape_ms = t;
            inst.advance(dt_s);
            let scrape = Scrape {
                t_ms: t,
                series: &inst.series,
                hashes: &inst.hashes,
                values: &inst.values,
            };
            for sink in sinks.iter_mut() {
                sink.scrape(&scrape)?;
            }
            summary.samples += inst.values.len() as u64;
            summary.scrapes += 1;
            summary.first_sample_ms = summary.first_sample_ms.min(t);
            summary.last_sample_ms = summary.last_sample_ms.max(t);
        }
    }
    for sink in sinks.iter_mut() {
        sink.finish()?;
    }
    Ok(summary)
}
