//! The Git write-back: when a Rollout that an Application manages aborts on a failed analysis, the
//! commit that introduced the failed revision is reverted on the Application's branch and pushed, so
//! Git and the cluster agree again without a human.
//!
//! - [`message`] (PURE): the revert commit's message and its trailers;
//! - [`git`]: revert and push (blocking git2), retried on refusal, idempotent by trailer.

pub mod controller;
pub mod git;
pub mod message;
pub mod plan;

#[cfg(test)]
mod git_tests;
