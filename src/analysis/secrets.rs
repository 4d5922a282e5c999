//! The Secrets analysis may read: only those labelled [`ANALYSIS_SECRET_LABEL`]` = "true"`.
//!
//! Whoever can write an AnalysisTemplate could otherwise have any Secret of the namespace sent to
//! an address of their choosing (a `secretKeyRef` argument templated into a query, or a token sent
//! as credentials). Labelling a Secret is the owner's opt-in to its use by analysis.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

/// The label a Secret needs before analysis reads it (value `"true"`).
pub const ANALYSIS_SECRET_LABEL: &str = "sluice.dev/analysis-secret";

/// Why a Secret's key cannot be used by analysis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("Secret {namespace}/{name} cannot be read: {reason}")]
    Read {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error(
        "Secret {namespace}/{name} is not labelled {ANALYSIS_SECRET_LABEL}=true; analysis reads only \
         Secrets labelled for it (kubectl label secret -n {namespace} {name} {ANALYSIS_SECRET_LABEL}=true)"
    )]
    NotLabelled { namespace: String, name: String },
    #[error("Secret {namespace}/{name} has no key {key:?}")]
    NoKey {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("key {key:?} of Secret {namespace}/{name} is not UTF-8")]
    NotUtf8 {
        namespace: String,
        name: String,
        key: String,
    },
}

/// Whether the owner of `secret` allowed analysis to read it.
pub fn allows_analysis(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ANALYSIS_SECRET_LABEL))
        .is_some_and(|v| v == "true")
}

/// The value of `key` in `secret` (PURE), when the Secret is labelled for analysis.
pub fn value_of(secret: &Secret, namespace: &str, key: &str) -> Result<String, SecretError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    if !allows_analysis(secret) {
        return Err(SecretError::NotLabelled {
            namespace: namespace.to_string(),
            name,
        });
    }
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| SecretError::NoKey {
            namespace: namespace.to_string(),
            name: name.clone(),
            key: key.to_string(),
        })?;
    String::from_utf8(bytes.0.clone()).map_err(|_| SecretError::NotUtf8 {
        namespace: namespace.to_string(),
        name,
        key: key.to_string(),
    })
}

/// Reads `key` of the Secret `name` in `namespace`, when it is labelled for analysis.
pub async fn read(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<String, SecretError> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| SecretError::Read {
            namespace: namespace.to_string(),
            name: name.to_string(),
            reason: e.to_string(),
        })?;
    value_of(&secret, namespace, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(labels: serde_json::Value) -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": "creds", "labels": labels},
            "data": {"token": "dG9r", "bin": "/w=="}
        }))
        .unwrap()
    }

    #[test]
    fn only_secrets_labelled_for_analysis_are_read() {
        let labelled = secret(json!({ANALYSIS_SECRET_LABEL: "true"}));
        assert_eq!(value_of(&labelled, "ns", "token"), Ok("tok".to_string()));
        for labels in [
            json!({}),
            json!({ANALYSIS_SECRET_LABEL: "yes"}),
            json!({"other": "true"}),
        ] {
            let err = value_of(&secret(labels), "ns", "token").unwrap_err();
            assert_eq!(
                err,
                SecretError::NotLabelled {
                    namespace: "ns".into(),
                    name: "creds".into()
                }
            );
            let text = err.to_string();
            assert!(
                text.contains("ns/creds") && text.contains(ANALYSIS_SECRET_LABEL),
                "{text}"
            );
        }
        assert!(matches!(
            value_of(&labelled, "ns", "missing"),
            Err(SecretError::NoKey { .. })
        ));
        assert!(matches!(
            value_of(&labelled, "ns", "bin"),
            Err(SecretError::NotUtf8 { .. })
        ));
    }
}
