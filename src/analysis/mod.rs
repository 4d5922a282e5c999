//! The analysis engine: AnalysisRuns measured on schedule through providers (Prometheus, direct
//! scrape), judged by expr conditions, with verdicts that name the metric, its value and the condition.
//!
//! - [`condition`] (PURE): `successCondition` / `failureCondition` evaluation;
//! - [`verdict`] (PURE): measurements → metric phase → run phase, retention, scheduling;
//! - [`args`] (PURE): argument resolution, `{{args.x}}` templating, building a run from templates;
//! - [`provider`]: the [`provider::Provider`] trait, Prometheus and scrape;
//! - [`secrets`]: the Secrets analysis may read (labelled for it);
//! - [`controller`]: the AnalysisRun reconciler.

pub mod args;
pub mod condition;
pub mod controller;
pub mod metrics;
pub mod provider;
pub mod secrets;
pub mod verdict;
