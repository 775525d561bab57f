//! The PromQL function table: every function of Prometheus 3, with its
//! argument types, how many arguments are optional, its return type, and
//! whether it is stable, experimental, or only meaningful for native
//! histograms.
//!
//! The parser checks every call against this table (`Call::func` points into
//! it); the evaluator dispatches on `Function::name`.

use crate::ast::ValueType;

/// How many arguments beyond the fixed ones a function accepts.
///
/// With `UpTo(n)` or `Unbounded`, the last entry of `arg_types` is optional
/// and repeatable: a call takes `arg_types.len() - 1` arguments at least and
/// `arg_types.len() - 1 + n` at most, the extra ones of the last type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variadic {
    /// Exactly `arg_types.len()` arguments.
    None,
    UpTo(usize),
    Unbounded,
}

/// Whether a function is part of stable PromQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stability {
    Stable,
    /// Behind `--enable-feature=promql-experimental-functions` in Prometheus.
    /// Cairn's parser accepts them unless `ParseOptions` says otherwise, as
    /// Prometheus's own test scripts do.
    Experimental,
}

/// One entry of the function table.
#[derive(Debug, PartialEq)]
pub struct Function {
    pub name: &'static str,
    pub arg_types: &'static [ValueType],
    pub variadic: Variadic,
    pub return_type: ValueType,
    pub stability: Stability,
    /// Only meaningful on native histograms (returns nothing for floats).
    pub native_histogram: bool,
}

impl Function {
    /// The least number of arguments a call needs.
    pub fn min_args(&self) -> usize {
        match self.variadic {
            Variadic::None => self.arg_types.len(),
            Variadic::UpTo(_) | Variadic::Unbounded => self.arg_types.len() - 1,
        }
    }

    /// The most arguments a call may have (`None`: unbounded).
    pub fn max_args(&self) -> Option<usize> {
        match self.variadic {
            Variadic::None => Some(self.arg_types.len()),
            Variadic::UpTo(n) => Some(self.arg_types.len() - 1 + n),
            Variadic::Unbounded => None,
        }
    }

    /// The type expected for argument `i` (0-based), if the function takes
    /// that many arguments.
    pub fn arg_type(&self, i: usize) -> Option<ValueType> {
        if i < self.arg_types.len() {
            return Some(self.arg_types[i]);
        }
        match self.variadic {
            Variadic::None => None,
            _ => self.arg_types.last().copied(),
        }
    }
}

/// Looks a function up by its exact (case-sensitive) name.
pub fn lookup(name: &str) -> Option<&'static Function> {
    FUNCTIONS
        .binary_search_by(|f| f.name.cmp(name))
        .ok()
        .map(|i| &FUNCTIONS[i])
}

/// All functions, sorted by name.
pub fn all() -> &'static [Function] {
    FUNCTIONS
}

use ValueType as V;

const fn f(
    name: &'static str,
    arg_types: &'static [ValueType],
    variadic: Variadic,
    return_type: ValueType,
    stability: Stability,
    native_histogram: bool,
) -> Function {
    Function {
        name,
        arg_types,
        variadic,
        return_type,
        stability,
        native_histogram,
    }
}

static FUNCTIONS: &[Function] = &[
    f(
        "abs",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "absent",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "absent_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "acos",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "acosh",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "asin",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "asinh",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "atan",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "atanh",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "avg_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "ceil",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "changes",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "clamp",
        &[V::Vector, V::Scalar, V::Scalar],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "clamp_max",
        &[V::Vector, V::Scalar],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "clamp_min",
        &[V::Vector, V::Scalar],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "cos",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "cosh",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "count_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "day_of_month",
        &[V::Vector],
        Variadic::UpTo(1),
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "day_of_week",
        &[V::Vector],
        Variadic::UpTo(1),
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "day_of_year",
        &[V::Vector],
        Variadic::UpTo(1),
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "days_in_month",
        &[V::Vector],
        Variadic::UpTo(1),
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "deg",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "delta",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "deriv",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "double_exponential_smoothing",
        &[V::Matrix, V::Scalar, V::Scalar],
        Variadic::None,
        V::Vector,
        Stability::Experimental,
        false,
    ),
    f(
        "end",
        &[],
        Variadic::None,
        V::Scalar,
        Stability::Experimental,
        false,
    ),
    f(
        "exp",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "first_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "floor",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "histogram_avg",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        true,
    ),
    f(
        "histogram_count",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        true,
    ),
    f(
        "histogram_fraction",
        &[V::Scalar, V::Scalar, V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "histogram_quantile",
        &[V::Scalar, V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "histogram_quantiles",
        &[V::Vector, V::String, V::Scalar, V::Scalar],
        Variadic::UpTo(9),
        V::Vector,
        Stability::Experimental,
        false,
    ),
    f(
        "histogram_stddev",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        true,
    ),
    f(
        "histogram_stdvar",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        true,
    ),
    f(
        "histogram_sum",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        true,
    ),
    f(
        "hour",
        &[V::Vector],
        Variadic::UpTo(1),
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "idelta",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "increase",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "info",
        &[V::Vector, V::Vector],
        Variadic::UpTo(1),
        V::Vector,
        Stability::Experimental,
        false,
    ),
    f(
        "irate",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "label_join",
        &[V::Vector, V::String, V::String, V::String],
        Variadic::Unbounded,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "label_replace",
        &[V::Vector, V::String, V::String, V::String, V::String],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "last_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "ln",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "log10",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "log2",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "mad_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Experimental,
        false,
    ),
    f(
        "max_of",
        &[V::Scalar, V::Scalar],
        Variadic::None,
        V::Scalar,
        Stability::Experimental,
        false,
    ),
    f(
        "max_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "min_of",
        &[V::Scalar, V::Scalar],
        Variadic::None,
        V::Scalar,
        Stability::Experimental,
        false,
    ),
    f(
        "min_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "minute",
        &[V::Vector],
        Variadic::UpTo(1),
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "month",
        &[V::Vector],
        Variadic::UpTo(1),
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "pi",
        &[],
        Variadic::None,
        V::Scalar,
        Stability::Stable,
        false,
    ),
    f(
        "predict_linear",
        &[V::Matrix, V::Scalar],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "present_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "quantile_over_time",
        &[V::Scalar, V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "rad",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "range",
        &[],
        Variadic::None,
        V::Scalar,
        Stability::Experimental,
        false,
    ),
    f(
        "rate",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "resets",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "round",
        &[V::Vector, V::Scalar],
        Variadic::UpTo(1),
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "scalar",
        &[V::Vector],
        Variadic::None,
        V::Scalar,
        Stability::Stable,
        false,
    ),
    f(
        "sgn",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "sin",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "sinh",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "sort",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "sort_by_label",
        &[V::Vector, V::String],
        Variadic::Unbounded,
        V::Vector,
        Stability::Experimental,
        false,
    ),
    f(
        "sort_by_label_desc",
        &[V::Vector, V::String],
        Variadic::Unbounded,
        V::Vector,
        Stability::Experimental,
        false,
    ),
    f(
        "sort_desc",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "sqrt",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "start",
        &[],
        Variadic::None,
        V::Scalar,
        Stability::Experimental,
        false,
    ),
    f(
        "start_timestamp",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Experimental,
        false,
    ),
    f(
        "stddev_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "stdvar_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "step",
        &[],
        Variadic::None,
        V::Scalar,
        Stability::Experimental,
        false,
    ),
    f(
        "sum_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "tan",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "tanh",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "time",
        &[],
        Variadic::None,
        V::Scalar,
        Stability::Stable,
        false,
    ),
    f(
        "timestamp",
        &[V::Vector],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "ts_of_first_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Experimental,
        false,
    ),
    f(
        "ts_of_last_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Experimental,
        false,
    ),
    f(
        "ts_of_max_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Experimental,
        false,
    ),
    f(
        "ts_of_min_over_time",
        &[V::Matrix],
        Variadic::None,
        V::Vector,
        Stability::Experimental,
        false,
    ),
    f(
        "vector",
        &[V::Scalar],
        Variadic::None,
        V::Vector,
        Stability::Stable,
        false,
    ),
    f(
        "year",
        &[V::Vector],
        Variadic::UpTo(1),
        V::Vector,
        Stability::Stable,
        false,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in FUNCTIONS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
    }

    #[test]
    fn lookup_and_arity() {
        let check = |name: &str, min: usize, max: Option<usize>| {
            let f = lookup(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!((f.min_args(), f.max_args()), (min, max), "{name}");
        };
        check("rate", 1, Some(1));
        check("time", 0, Some(0));
        check("round", 1, Some(2));
        check("label_join", 3, None);
        check("histogram_quantiles", 3, Some(12));
        check("year", 0, Some(1));
        assert!(lookup("Rate").is_none());
        assert!(lookup("nope").is_none());
        let hq = lookup("histogram_quantiles").unwrap();
        assert_eq!(hq.arg_type(7), Some(ValueType::Scalar));
        assert_eq!(lookup("abs").unwrap().arg_type(1), None);
    }
}
