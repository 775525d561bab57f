//! A runner for Prometheus's promqltest script language (`load`, `clear`,
//! `eval instant|range`, `expect ...` lines, the expanding series
//! notation), run against Cairn's evaluator over any [`TestStorage`].
//!
//! Each `eval` is one case; its outcome is passed, failed (with expected
//! versus got), or not supported (with why: native histograms, which Cairn
//! cannot store yet). As Prometheus's own runner does, every instant eval
//! is also checked with `@ <t>` set on its selectors at other evaluation
//! times, and as the middle step of a range query.
//!
//! The notations (series lines, durations) are in [`notation`], public so
//! that the rules unit-test runner can reuse them.

pub mod notation;
mod script;
mod storage;

pub use script::{Case, Outcome, run_script};
pub use storage::{DbStorage, TestStorage};
