//! Users' health rules: the ConfigMap `sluice-health` of the control namespace says how healthy a
//! kind is, so that kinds Sluice does not know (operators' CRDs) become Healthy, Progressing or
//! Degraded without a release — Argo CD's health customizations, written in the expression
//! language of the analysis conditions instead of Lua.
//!
//! One key per kind, `<group>_<Kind>` (`cert-manager.io_Certificate`; the core group is `_Kind` or
//! `Kind`; Argo CD's `resource.customizations.health.` prefix may be kept), whose value is a YAML
//! list of cases tried in order; the first whose `when` holds (no `when`: always) gives the
//! health:
//!
//! ```yaml
//! cert-manager.io_Certificate: |
//!   - when: 'any(status.conditions ?? [], {#.type == "Ready" && #.status == "True"})'
//!     status: Healthy
//!   - when: 'any(status.conditions ?? [], {#.type == "Ready" && #.status == "False"})'
//!     status: Degraded
//!     message: the certificate is not ready
//!   - status: Progressing
//! ```
//!
//! Expressions see the live object's `metadata`, `spec` and `status` (an empty map when absent)
//! and the whole object as `obj`. A user's rule wins over the built-in one of the kind. A rule
//! that cannot be read or evaluated makes the kind's health `Unknown` with a message naming the
//! key: never a silently ignored rule.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector::Store;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::object::gvk;
use crate::analysis::condition::eval_bool;
use crate::api::application::{HealthStatus, HealthStatusCode};

/// The ConfigMap of the control namespace holding the rules.
pub const HEALTH_CONFIG_MAP: &str = "sluice-health";
/// Argo CD's key prefix, accepted as is.
const ARGO_PREFIX: &str = "resource.customizations.health.";
/// Cases per kind and bytes per rule read at most: the ConfigMap is user input.
const MAX_CASES: usize = 32;
const MAX_RULE_BYTES: usize = 64 * 1024;

/// The rules of one `sluice-health` ConfigMap, by group and kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthRules {
    by_kind: HashMap<(String, String), KindRule>,
}

/// A kind's cases, or why its rule cannot be used (shown as the kind's `Unknown` health).
type KindRule = Result<Vec<Case>, String>;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    when: Option<String>,
    status: HealthStatusCode,
    #[serde(default)]
    message: Option<String>,
}

impl HealthRules {
    /// The rules of `data` (the ConfigMap's data); a key that names no kind or a value that is no
    /// list of cases is kept as that kind's error.
    pub fn parse(data: &std::collections::BTreeMap<String, String>) -> Self {
        let by_kind = data
            .iter()
            .filter_map(|(key, value)| {
                let (group, kind) = group_kind(key)?;
                Some(((group, kind), parse_cases(key, value)))
            })
            .collect();
        Self { by_kind }
    }

    /// The health `obj` has by a user's rule, `None` when no rule names its kind.
    pub fn health_of(&self, obj: &Value) -> Option<HealthStatus> {
        let gvk = gvk(obj)?;
        let rule = self.by_kind.get(&(gvk.group.clone(), gvk.kind.clone()))?;
        let key = format!("{HEALTH_CONFIG_MAP} {}_{}", gvk.group, gvk.kind);
        Some(match rule {
            Ok(cases) => evaluate(&key, cases, obj),
            Err(message) => unknown(format!("{key}: {message}")),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }
}

/// `group_Kind` (Argo CD's prefix dropped); the kind is the part after the last `_`, so groups with
/// dots and dashes read as written.
fn group_kind(key: &str) -> Option<(String, String)> {
    let key = key.strip_prefix(ARGO_PREFIX).unwrap_or(key);
    let (group, kind) = key.rsplit_once('_').unwrap_or(("", key));
    let kind_ok = kind.starts_with(|c: char| c.is_ascii_uppercase())
        && kind.chars().all(|c| c.is_ascii_alphanumeric());
    kind_ok.then(|| (group.to_string(), kind.to_string()))
}

fn parse_cases(key: &str, value: &str) -> KindRule {
    if value.len() > MAX_RULE_BYTES {
        return Err(format!("the rule is longer than {MAX_RULE_BYTES} bytes"));
    }
    let cases: Vec<Case> = serde_saphyr::from_str(value)
        .map_err(|e| format!("{key} is not a list of cases (when, status, message): {e}"))?;
    if cases.len() > MAX_CASES {
        return Err(format!("more than {MAX_CASES} cases"));
    }
    if cases.is_empty() {
        return Err("the rule has no case".to_string());
    }
    Ok(cases)
}

fn evaluate(key: &str, cases: &[Case], obj: &Value) -> HealthStatus {
    let field = |name: &str| {
        obj.get(name)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new()))
    };
    let variables: Map<String, Value> = [
        ("metadata", field("metadata")),
        ("spec", field("spec")),
        ("status", field("status")),
        ("obj", obj.clone()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    for (i, case) in cases.iter().enumerate() {
        let holds = match case.when.as_deref().filter(|w| !w.trim().is_empty()) {
            None => true,
            Some(when) => match eval_bool(when, &variables) {
                Ok(holds) => holds,
                Err(e) => return unknown(format!("{key}: case {i}: {e}")),
            },
        };
        if holds {
            return HealthStatus {
                status: case.status,
                message: case.message.clone(),
                last_transition_time: None,
            };
        }
    }
    HealthStatus {
        status: HealthStatusCode::Progressing,
        message: Some(format!("{key}: no case holds yet")),
        last_transition_time: None,
    }
}

fn unknown(message: String) -> HealthStatus {
    HealthStatus {
        status: HealthStatusCode::Unknown,
        message: Some(message),
        last_transition_time: None,
    }
}

/// The rules of the `sluice-health` ConfigMap a watch keeps in `store` (none when it is absent),
/// parsed once per version of the ConfigMap.
#[derive(Clone)]
pub struct HealthRulesSource {
    store: Option<Store<ConfigMap>>,
    parsed: Arc<std::sync::Mutex<Option<ParsedVersion>>>,
}

/// The rules parsed from one `resourceVersion` of the ConfigMap.
type ParsedVersion = (String, Arc<HealthRules>);

impl HealthRulesSource {
    pub fn new(store: Store<ConfigMap>) -> Self {
        Self {
            store: Some(store),
            parsed: Arc::default(),
        }
    }

    /// No rules at all (tests, tools).
    pub fn none() -> Self {
        Self {
            store: None,
            parsed: Arc::default(),
        }
    }

    /// The rules now.
    pub fn current(&self) -> Arc<HealthRules> {
        let Some(config_map) = self
            .store
            .as_ref()
            .and_then(|s| s.state().into_iter().next())
        else {
            return Arc::default();
        };
        let version = config_map
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let mut parsed = self
            .parsed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seen, rules)) = parsed.as_ref()
            && *seen == version
        {
            return rules.clone();
        }
        let rules = Arc::new(HealthRules::parse(
            &config_map.data.clone().unwrap_or_default(),
        ));
        *parsed = Some((version, rules.clone()));
        rules
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn rules(entries: &[(&str, &str)]) -> HealthRules {
        let data: BTreeMap<String, String> = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HealthRules::parse(&data)
    }

    fn certificate(ready: Option<&str>) -> Value {
        let mut obj = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                             "metadata": {"name": "web"}, "spec": {"secretName": "web-tls"}});
        if let Some(ready) = ready {
            obj["status"] = json!({"conditions": [{"type": "Ready", "status": ready}]});
        }
        obj
    }

    const CERTIFICATE_RULE: &str = r#"
- when: 'any(status.conditions ?? [], {#.type == "Ready" && #.status == "True"})'
  status: Healthy
- when: 'any(status.conditions ?? [], {#.type == "Ready" && #.status == "False"})'
  status: Degraded
  message: the certificate is not ready
- status: Progressing
  message: waiting for the certificate
"#;

    #[test]
    fn the_first_case_that_holds_gives_the_health() {
        let rules = rules(&[("cert-manager.io_Certificate", CERTIFICATE_RULE)]);
        let status = |obj: &Value| rules.health_of(obj).map(|h| (h.status, h.message));
        assert_eq!(
            status(&certificate(Some("True"))),
            Some((HealthStatusCode::Healthy, None))
        );
        assert_eq!(
            status(&certificate(Some("False"))),
            Some((
                HealthStatusCode::Degraded,
                Some("the certificate is not ready".into())
            ))
        );
        assert_eq!(
            status(&certificate(None)),
            Some((
                HealthStatusCode::Progressing,
                Some("waiting for the certificate".into())
            ))
        );
        let other = json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "x"}});
        assert_eq!(rules.health_of(&other), None, "no rule for the kind");
    }

    #[test]
    fn keys_name_group_and_kind_as_argo_cd_writes_them() {
        assert_eq!(
            group_kind("resource.customizations.health.cert-manager.io_Certificate"),
            Some(("cert-manager.io".into(), "Certificate".into()))
        );
        assert_eq!(
            group_kind("_ConfigMap"),
            Some(("".into(), "ConfigMap".into()))
        );
        assert_eq!(
            group_kind("ConfigMap"),
            Some(("".into(), "ConfigMap".into()))
        );
        assert_eq!(group_kind("example.com_lowercase"), None);
        assert_eq!(group_kind("notes"), None);
    }

    #[test]
    fn a_rule_that_cannot_be_read_or_evaluated_is_unknown_naming_its_key() {
        let rules = rules(&[
            ("cert-manager.io_Certificate", "status: Healthy"),
            (
                "cert-manager.io_Issuer",
                "- when: 'status.ready +'\n  status: Healthy\n",
            ),
            ("cert-manager.io_ClusterIssuer", "- status: Fine\n"),
        ]);
        for (kind, want) in [
            ("Certificate", "is not a list of cases"),
            ("Issuer", "case 0"),
            ("ClusterIssuer", "is not a list of cases"),
        ] {
            let obj = json!({"apiVersion": "cert-manager.io/v1", "kind": kind, "metadata": {"name": "x"}});
            let health = rules.health_of(&obj).unwrap();
            assert_eq!(health.status, HealthStatusCode::Unknown, "{kind}");
            let message = health.message.unwrap();
            assert!(
                message.contains(&format!("sluice-health cert-manager.io_{kind}")),
                "{message}"
            );
            assert!(message.contains(want), "{kind}: {message}");
        }
    }

    #[test]
    fn no_case_holding_is_progressing() {
        let rules = rules(&[(
            "example.com_Widget",
            "- when: 'spec.size > 3'\n  status: Healthy\n",
        )]);
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                            "spec": {"size": 1}});
        let health = rules.health_of(&widget).unwrap();
        assert_eq!(health.status, HealthStatusCode::Progressing);
    }
}
