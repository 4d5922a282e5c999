//! Notifications, in the spirit of Argo's notifications engine: a ConfigMap `sluice-notifications`
//! in the control namespace defines services (webhooks, Slack), templates and triggers; objects
//! subscribe by annotation (`notifications.sluice.dev/subscribe.<trigger>.<service>: <recipients>`);
//! built-in triggers tell of completed and aborted rollouts, failed analyses, Git reverts and
//! their failures, failed syncs and degraded Applications.
//!
//! - [`config`]: the ConfigMap's keys (PURE);
//! - [`template`]: `{{ .path.to.field }}` rendering (PURE);
//! - [`triggers`]: built-in triggers and templates, condition evaluation (PURE);
//! - [`record`]: the once-per-transition record kept in the object's annotation (PURE);
//! - [`plan`]: subscriptions + conditions + record → deliveries (PURE);
//! - [`services`]: requests for webhooks and Slack, and their delivery;
//! - [`controller`]: the watches and the act step.

pub mod config;
pub mod controller;
pub mod plan;
pub mod record;
pub mod services;
pub mod template;
pub mod triggers;
