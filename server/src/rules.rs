//! Recording and alerting rules, evaluated natively (issue 10).
//!
//! Rule files are Prometheus's format exactly. This module holds:
//! - [`file`]: loading and validating rule files (`cairn rules check`), with
//!   messages that name the file, the line, the group and the rule, as
//!   promtool's do.
//! - [`template`]: the subset of Go's text/template that rule labels and
//!   annotations use (`{{ $labels.x }}`, `humanize`, `if`, `range`, ...).
//! - [`group`]: one group's evaluation at one timestamp: recording rules
//!   (with staleness markers), the alert state machine, `ALERTS` and
//!   `ALERTS_FOR_STATE`, `limit`, `query_offset`; output appended through a
//!   [`group::RuleSink`] (the server's storage, or a `Db`).
//! - [`manager`]: `rule_files` globs, one task per group on its interval,
//!   the `/api/v1/rules` and `/api/v1/alerts` JSON.
//! - [`notifier`]: alerts to Alertmanager's v2 API, a bounded queue,
//!   resends as Prometheus's notifier.
//! - [`reload`]: start-up of rules and notifier, reload on SIGHUP and
//!   `POST /-/reload`.
//! - [`unittest`]: `cairn rules test`, promtool's unit-test format.
//!
//! See `docs/rules.md` for what exists and what does not yet.

pub mod file;
pub mod group;
pub mod manager;
pub mod notifier;
pub mod reload;
pub mod template;
pub mod unittest;
