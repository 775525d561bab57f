//! Recording and alerting rules, evaluated natively (issue 10).
//!
//! Rule files are Prometheus's format exactly. This module holds:
//! - [`file`]: loading and validating rule files (`cairn rules check`), with
//!   messages that name the file, the line, the group and the rule, as
//!   promtool's do.
//! - [`template`]: the subset of Go's text/template that rule labels and
//!   annotations use (`{{ $labels.x }}`, `humanize`, `if`, `range`, ...).
//!
//! Evaluation of groups on their interval, the `ALERTS` series and the API
//! build on these two (see `docs/rules.md` for what exists).

pub mod file;
pub mod group;
pub mod manager;
pub mod template;
