//! SMI router (`trafficRouting.smi`), as Argo Rollouts v1.10 does it: the Rollout owns a
//! TrafficSplit (`trafficSplitName`, default the Rollout's name) for the root Service
//! (`rootService`, default the `stableService`), with two backends, the `canaryService` at weight
//! `W` then the `stableService` at `100 − W`. It is created on the first weight, kept at weight 0
//! after promotion (Argo does not delete it either) and garbage-collected with the Rollout through
//! its owner reference. A TrafficSplit of that name that the Rollout does not control is never taken
//! over (Argo: "Rollout does not own TrafficSplit").
//!
//! API version: `split.smi-spec.io/v1alpha1`, Argo's default (Argo chooses the version by a
//! controller flag, not per Rollout; the Rollout has no field for it). The TrafficSplit is entirely
//! Sluice's, so a server-side apply of its `spec` is all it takes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Deserialize;
use serde_json::{Value, json};

use super::gateway::canary_percent;
use super::{
    LiveObjects, ObjectKey, RouterKind, TrafficError, TrafficRouter, TrafficWrite, check_weight,
    invalid_rollout, namespace, services,
};
use crate::api::rollout::Rollout;
use crate::rollout::replicasets::rollout_owner_reference;

/// The TrafficSplit API version Sluice writes (Argo Rollouts' default).
pub const TRAFFIC_SPLIT_API_VERSION: &str = "split.smi-spec.io/v1alpha1";
/// The TrafficSplit kind.
pub const TRAFFIC_SPLIT_KIND: &str = "TrafficSplit";

/// `trafficRouting.smi` as Argo defines it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SmiConfig {
    #[serde(default)]
    root_service: Option<String>,
    #[serde(default)]
    traffic_split_name: Option<String>,
}

/// The SMI router of one Rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct SmiRouter {
    key: ObjectKey,
    rollout: String,
    root: String,
    stable: String,
    canary: String,
    owner: OwnerReference,
}

/// The key of a TrafficSplit.
pub fn traffic_split_key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: TRAFFIC_SPLIT_API_VERSION.to_string(),
        kind: TRAFFIC_SPLIT_KIND.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.is_empty())
}

impl SmiRouter {
    /// The router for `rollout` with `trafficRouting.smi` = `config`.
    pub fn from_rollout(rollout: &Rollout, config: &Value) -> Result<Self, TrafficError> {
        let config: SmiConfig = serde_json::from_value(config.clone()).map_err(|e| {
            invalid_rollout(
                rollout,
                format!("spec.strategy.canary.trafficRouting.smi: {e}"),
            )
        })?;
        let ns = namespace(rollout)?;
        let (stable, canary) = services(rollout)?;
        let name = rollout.metadata.name.clone().unwrap_or_default();
        let owner = rollout_owner_reference(rollout).ok_or_else(|| {
            invalid_rollout(
                rollout,
                "metadata.name or metadata.uid is not set; the TrafficSplit needs an owner"
                    .to_string(),
            )
        })?;
        let split = non_empty(config.traffic_split_name).unwrap_or_else(|| name.clone());
        Ok(Self {
            key: traffic_split_key(&ns, &split),
            rollout: name,
            root: non_empty(config.root_service).unwrap_or_else(|| stable.clone()),
            stable,
            canary,
            owner,
        })
    }

    /// The live TrafficSplit, when it exists; an error when it is not this Rollout's.
    fn live_split<'a>(&self, live: &'a LiveObjects) -> Result<Option<&'a Value>, TrafficError> {
        let Some(split) = live.get(&self.key) else {
            return Ok(None);
        };
        let owned = split
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|o| {
                o.get("controller").and_then(Value::as_bool) == Some(true)
                    && o.get("uid").and_then(Value::as_str) == Some(self.owner.uid.as_str())
            });
        if !owned {
            return Err(TrafficError::NotOwned {
                key: Box::new(self.key.clone()),
                rollout: self.rollout.clone(),
            });
        }
        Ok(Some(split))
    }

    fn spec(&self, weight: i64) -> Value {
        json!({
            "service": self.root,
            "backends": [
                {"service": self.canary, "weight": weight},
                {"service": self.stable, "weight": 100 - weight},
            ],
        })
    }
}

impl TrafficRouter for SmiRouter {
    fn kind(&self) -> RouterKind {
        RouterKind::Smi
    }

    fn reads(&self) -> Vec<ObjectKey> {
        vec![self.key.clone()]
    }

    fn desired(
        &self,
        live: &LiveObjects,
        canary_weight: i32,
    ) -> Result<Vec<TrafficWrite>, TrafficError> {
        let spec = self.spec(i64::from(check_weight(canary_weight)?));
        if let Some(split) = self.live_split(live)?
            && split.get("spec") == Some(&spec)
        {
            return Ok(Vec::new());
        }
        Ok(vec![TrafficWrite::Apply {
            key: self.key.clone(),
            body: json!({
                "apiVersion": TRAFFIC_SPLIT_API_VERSION,
                "kind": TRAFFIC_SPLIT_KIND,
                "metadata": {
                    "name": self.key.name,
                    "namespace": self.key.namespace,
                    "ownerReferences": [self.owner],
                },
                "spec": spec,
            }),
        }])
    }

    /// The canary's share among the canary and stable backends; `None` before the TrafficSplit
    /// exists (nothing routes by it yet).
    fn live_weight(&self, live: &LiveObjects) -> Result<Option<i32>, TrafficError> {
        let Some(split) = self.live_split(live)? else {
            return Ok(None);
        };
        let weight_of = |service: &str| {
            split
                .pointer("/spec/backends")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|b| b.get("service").and_then(Value::as_str) == Some(service))
                .and_then(|b| b.get("weight"))
                .map_or(Ok(0), |w| parse_weight(w, &self.key))
        };
        Ok(Some(canary_percent(
            weight_of(&self.stable)?,
            weight_of(&self.canary)?,
        )))
    }
}

/// A backend weight: an integer (v1alpha2/3) or, in v1alpha1, a Kubernetes quantity, which Argo
/// writes as a whole-number string (`"20"`).
fn parse_weight(weight: &Value, key: &ObjectKey) -> Result<i64, TrafficError> {
    let parsed = match weight {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| TrafficError::Malformed {
        key: Box::new(key.clone()),
        reason: format!("backend weight {weight} is not a whole number"),
    })
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::rollout::traffic::router_for;

    fn rollout(smi: Value) -> Rollout {
        crate::rollout::traffic::fixture_routed_by(|routing| routing.smi = Some(smi))
    }

    fn router(smi: Value) -> SmiRouter {
        SmiRouter::from_rollout(&rollout(smi.clone()), &smi).unwrap()
    }

    fn body(write: &TrafficWrite) -> Value {
        match write {
            TrafficWrite::Apply { body, .. } => body.clone(),
            TrafficWrite::Delete { key } => panic!("unexpected delete of {key}"),
        }
    }

    #[test]
    fn the_rollout_owns_a_traffic_split_weighted_per_step() {
        let r = router(json!({}));
        assert_eq!(
            router_for(&rollout(json!({}))).unwrap().kind(),
            RouterKind::Smi
        );
        assert_eq!(r.reads(), vec![traffic_split_key("shop", "web")]);
        let mut live = LiveObjects::new();
        assert_eq!(r.live_weight(&live), Ok(None));
        for weight in [20, 50, 0] {
            let writes = r.desired(&live, weight).unwrap();
            assert_eq!(writes.len(), 1);
            let split = body(&writes[0]);
            assert_eq!(
                split,
                json!({
                    "apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit",
                    "metadata": {"name": "web", "namespace": "shop", "ownerReferences": [{
                        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "name": "web",
                        "uid": "uid-1", "controller": true, "blockOwnerDeletion": true,
                    }]},
                    "spec": {"service": "web-stable", "backends": [
                        {"service": "web-canary", "weight": weight},
                        {"service": "web-stable", "weight": 100 - weight},
                    ]},
                })
            );
            live.insert(r.key.clone(), split);
            assert_eq!(r.live_weight(&live), Ok(Some(weight)));
            assert_eq!(r.desired(&live, weight), Ok(vec![]), "no churn");
        }
    }

    #[test]
    fn names_and_root_service_are_taken_from_the_spec() {
        let r = router(json!({"rootService": "web", "trafficSplitName": "web-split"}));
        assert_eq!(r.reads(), vec![traffic_split_key("shop", "web-split")]);
        let split = body(&r.desired(&LiveObjects::new(), 10).unwrap()[0]);
        assert_eq!(split["spec"]["service"], json!("web"));
    }

    #[test]
    fn a_split_of_someone_else_is_not_taken_over() {
        let r = router(json!({}));
        let mut live = LiveObjects::new();
        live.insert(
            r.key.clone(),
            json!({"metadata": {"name": "web", "ownerReferences": [{"uid": "other", "controller": true}]}}),
        );
        assert_eq!(
            r.desired(&live, 10).unwrap_err().to_string(),
            "TrafficSplit shop/web exists and is not controlled by Rollout web; refusing to take it over"
        );
    }

    #[test]
    fn quantity_weights_are_read_and_bad_ones_reported() {
        let r = router(json!({}));
        let mut live = LiveObjects::new();
        let owner = json!([{"uid": "uid-1", "controller": true}]);
        live.insert(
            r.key.clone(),
            json!({"metadata": {"ownerReferences": owner}, "spec": {"backends": [
                {"service": "web-canary", "weight": "30"}, {"service": "web-stable", "weight": "70"}]}}),
        );
        assert_eq!(r.live_weight(&live), Ok(Some(30)));
        live.insert(
            r.key.clone(),
            json!({"metadata": {"ownerReferences": owner}, "spec": {"backends": [
                {"service": "web-canary", "weight": "300m"}]}}),
        );
        assert!(
            r.live_weight(&live)
                .unwrap_err()
                .to_string()
                .contains("not a whole number")
        );
    }

    #[test]
    fn bad_configurations_are_refused() {
        let err = SmiRouter::from_rollout(&rollout(json!({})), &json!({"apiVersion": "v1alpha3"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `apiVersion`"), "{err}");
        let mut no_uid = rollout(json!({}));
        no_uid.metadata.uid = None;
        assert!(
            SmiRouter::from_rollout(&no_uid, &json!({}))
                .unwrap_err()
                .to_string()
                .contains("needs an owner")
        );
    }
}
