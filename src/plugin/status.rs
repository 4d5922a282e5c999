//! `status NAME [--timeout D]`: follows the Rollout through a watch until it is Healthy (exit 0) or
//! Degraded (exit 1), or the timeout passes (exit 2), printing each change of phase or message.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::time::Instant;

use crate::api::rollout::{Rollout, RolloutPhase};
use crate::plugin::client::Kube;
use crate::plugin::error::{EXIT_DEGRADED, EXIT_OK, EXIT_TIMEOUT, PluginError};
use crate::rollout::phase::observed_phase;

/// One reading of a Rollout: the line to print and whether waiting is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reading {
    pub line: String,
    pub exit: Option<u8>,
}

/// What `status` says about the Rollout as it is now. The phase only counts once the controller
/// has seen the current generation, so a Rollout just edited is never reported Healthy too early.
pub fn assess(rollout: &Rollout) -> Reading {
    let (phase, message) = observed_phase(rollout);
    let line = if message.is_empty() {
        phase.to_string()
    } else {
        format!("{phase} - {message}")
    };
    let exit = match phase {
        RolloutPhase::Healthy => Some(EXIT_OK),
        RolloutPhase::Degraded => Some(EXIT_DEGRADED),
        RolloutPhase::Progressing | RolloutPhase::Paused => None,
    };
    Reading { line, exit }
}

/// Waits as described in the module documentation; returns the exit code.
pub async fn wait(
    kube: &Kube,
    name: &str,
    timeout: Option<Duration>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, PluginError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let first = kube.get_rollout(name).await?;
    let mut last = assess(&first);
    writeln!(out, "{}", last.line)?;
    if let Some(code) = last.exit {
        return Ok(code);
    }
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(kube.rollouts(), config).default_backoff().boxed();
    loop {
        let next = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, events.next()).await {
                Ok(next) => next,
                Err(_) => {
                    writeln!(
                        err,
                        "error: timed out after {} waiting for Rollout {name:?} to be Healthy (last: {})",
                        humantime::format_duration(timeout.unwrap_or_default()),
                        last.line
                    )?;
                    return Ok(EXIT_TIMEOUT);
                }
            },
            None => events.next().await,
        };
        let rollout = match next {
            Some(Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r))) => r,
            Some(Ok(watcher::Event::Delete(_))) => {
                return Err(PluginError::NotFound {
                    kind: "Rollout",
                    name: name.to_string(),
                    namespace: kube.namespace.clone(),
                });
            }
            // Init markers carry nothing; watch errors are retried with backoff by the stream.
            Some(Ok(_) | Err(_)) => continue,
            None => {
                return Err(PluginError::Api {
                    action: format!("watch Rollout {name:?}"),
                    message: "the watch ended".to_string(),
                });
            }
        };
        let reading = assess(&rollout);
        if reading.line != last.line {
            writeln!(out, "{}", reading.line)?;
        }
        if let Some(code) = reading.exit {
            return Ok(code);
        }
        last = reading;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout(generation: i64, observed: &str, phase: &str, message: &str) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "generation": generation},
            "spec": {"strategy": {"canary": {}}},
            "status": {"phase": phase, "message": message, "observedGeneration": observed}
        }))
        .unwrap()
    }

    #[test]
    fn healthy_and_degraded_end_the_wait_with_their_codes() {
        let cases = [
            (rollout(2, "2", "Healthy", ""), "Healthy", Some(EXIT_OK)),
            (
                rollout(
                    2,
                    "2",
                    "Degraded",
                    "RolloutAborted: Rollout aborted update to revision 2",
                ),
                "Degraded - RolloutAborted: Rollout aborted update to revision 2",
                Some(EXIT_DEGRADED),
            ),
            (
                rollout(2, "2", "Paused", "CanaryPauseStep"),
                "Paused - CanaryPauseStep",
                None,
            ),
            (
                rollout(2, "2", "Progressing", "more replicas need to be updated"),
                "Progressing - more replicas need to be updated",
                None,
            ),
        ];
        for (ro, line, exit) in cases {
            assert_eq!(
                assess(&ro),
                Reading {
                    line: line.to_string(),
                    exit
                }
            );
        }
    }

    #[test]
    fn a_phase_of_an_older_generation_does_not_count() {
        let reading = assess(&rollout(3, "2", "Healthy", ""));
        assert_eq!(reading.exit, None);
        assert_eq!(
            reading.line,
            "Progressing - waiting for rollout spec update to be observed"
        );
    }
}
