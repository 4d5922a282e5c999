//! Types shared by several kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A status condition, shaped like Argo Rollouts' `RolloutCondition` (Argo CD's application
/// conditions use the subset `type`, `message`, `lastTransitionTime`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Available`, `Progressing`, `InvalidSpec`, `SyncError`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Last time the status changed; kept as is when a write changes nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Last time the condition was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
}

/// Gives a unit-only API enum, whose variants serialize under their own names, `as_str` (the name as
/// written in the API) and `Display`.
macro_rules! api_enum_names {
    ($ty:ident { $($variant:ident),+ $(,)? }) => {
        impl $ty {
            /// The name as written in the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => stringify!($variant),)+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use api_enum_names;

/// Kubernetes' qualified name (`IsQualifiedName`): an optional DNS subdomain prefix and `/`, then
/// a name of at most 63 characters.
pub fn qualified_name(key: &str) -> Result<(), &'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        dns_subdomain(prefix)?;
    }
    if name.is_empty() {
        return Err("the name part is empty");
    }
    name_part(name)
}

/// At most 63 of `[A-Za-z0-9_.-]`, starting and ending alphanumeric.
pub fn name_part(name: &str) -> Result<(), &'static str> {
    if name.len() > 63 {
        return Err("longer than 63 characters");
    }
    let alphanumeric_ends = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let alphabet = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if alphanumeric_ends && alphabet {
        Ok(())
    } else {
        Err("must be alphanumeric, '-', '_' or '.', starting and ending alphanumeric")
    }
}

/// A DNS-1123 subdomain: at most 253 characters, lowercase labels of `[a-z0-9-]` joined by `.`.
fn dns_subdomain(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() || prefix.len() > 253 {
        return Err("the prefix must be a DNS subdomain of 1 to 253 characters");
    }
    let valid = prefix.split('.').all(|label| {
        !label.is_empty()
            && label.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && label.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    if valid {
        Ok(())
    } else {
        Err("the prefix must be a lowercase DNS subdomain")
    }
}
