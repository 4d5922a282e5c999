//! What a plugin command can fail with, each as one line a user can act on, and the exit codes.

use thiserror::Error;

/// Exit code of a command that did what was asked (`status`: the Rollout is Healthy).
pub const EXIT_OK: u8 = 0;
/// `status`: the Rollout is Degraded. `lint`: problems were found.
pub const EXIT_DEGRADED: u8 = 1;
/// `status`: the timeout passed before the Rollout was Healthy or Degraded.
pub const EXIT_TIMEOUT: u8 = 2;
/// Any error: bad arguments, not found, forbidden, cluster unreachable, ... Distinct from 1 and 2 so
/// that a CI pipeline never takes a typo for a Degraded Rollout.
pub const EXIT_ERROR: u8 = 3;

#[derive(Debug, Error)]
pub enum PluginError {
    #[error("cannot load the kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("cannot reach the cluster at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("cannot authenticate to the cluster at {server}: {reason}")]
    Unauthorized { server: String, reason: String },
    #[error("{kind} {name:?} not found in namespace {namespace:?}")]
    NotFound {
        kind: &'static str,
        name: String,
        namespace: String,
    },
    #[error("{name:?} in namespace {namespace:?} is a {actual}, not a {expected}")]
    WrongKind {
        name: String,
        namespace: String,
        actual: &'static str,
        expected: &'static str,
    },
    #[error("the {kind} kind is not installed in the cluster (apply crds/ first)")]
    CrdMissing { kind: &'static str },
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{kind} {name:?} changed while it was being updated; run the command again")]
    Conflict { kind: &'static str, name: String },
    #[error("cannot {action}: {message}")]
    Api { action: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl PluginError {
    /// The error as the single line printed on stderr: no newlines, whatever the API server said.
    pub fn one_line(&self) -> String {
        self.to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_line_with_the_object_named() {
        let err = PluginError::NotFound {
            kind: "Rollout",
            name: "web".to_string(),
            namespace: "shop".to_string(),
        };
        assert_eq!(
            err.one_line(),
            "Rollout \"web\" not found in namespace \"shop\""
        );
        let multi = PluginError::Api {
            action: "patch Rollout \"web\"".to_string(),
            message: "first\nsecond".to_string(),
        };
        assert_eq!(
            multi.one_line(),
            "cannot patch Rollout \"web\": first second"
        );
    }

    #[test]
    fn exit_codes_are_distinct() {
        let codes = [EXIT_OK, EXIT_DEGRADED, EXIT_TIMEOUT, EXIT_ERROR];
        let mut sorted = codes.to_vec();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
    }
}
