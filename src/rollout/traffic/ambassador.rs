//! Ambassador router (`trafficRouting.ambassador.mappings`), as Argo Rollouts v1.10 does it.
//!
//! Ambassador splits traffic between Mappings of the same prefix by their `weight`. For each
//! Mapping the Rollout names (the stable one, which must not set a weight of its own), Sluice keeps
//! a canary Mapping `<name>-canary` (the name cut to 246 characters first): a copy of its `spec`
//! whose `service` names the canary Service instead of the stable one (first occurrence, so
//! `web-stable:80` or `web-stable.shop:80` keep their port and namespace), with `weight` the canary
//! weight. It exists only while the weight is above 0: created on the first weight, deleted when
//! the weight goes back to 0 (an abort) and once the Rollout is fully promoted. Argo sets the
//! weight to 0 and deletes the Mapping 5 s later, for Ambassador to propagate; Sluice deletes it at
//! once, which Ambassador reads the same way (no canary Mapping: all traffic on the stable one).
//! Unlike Argo, the canary Mapping is owned by the Rollout (garbage-collected with it), and one
//! owned by someone else is never taken over. API version `getambassador.io/v2`, Argo's default.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use super::{
    LiveObjects, ObjectKey, RouterKind, TrafficError, TrafficRouter, TrafficWrite, check_weight,
    invalid_rollout, namespace, services,
};
use crate::api::rollout::{AmbassadorTrafficRouting, Rollout};
use crate::rollout::replicasets::rollout_owner_reference;

/// The Mapping API version Sluice reads and writes (Argo Rollouts' default).
pub const MAPPING_API_VERSION: &str = "getambassador.io/v2";
/// The Mapping kind.
pub const MAPPING_KIND: &str = "Mapping";
/// Argo cuts the stable Mapping's name to this length before adding `-canary`.
const MAX_BASE_NAME: usize = 246;

/// The key of a Mapping.
pub fn mapping_key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: MAPPING_API_VERSION.to_string(),
        kind: MAPPING_KIND.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// The canary Mapping's name: `<name>-canary`, `name` cut to 246 characters (Argo's name).
pub fn canary_mapping_name(name: &str) -> String {
    let cut = name
        .char_indices()
        .nth(MAX_BASE_NAME)
        .map_or(name, |(i, _)| &name[..i]);
    format!("{cut}-canary")
}

/// A stable Mapping and its canary copy.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MappingPair {
    stable: ObjectKey,
    canary: ObjectKey,
}

/// The Ambassador router of one Rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct AmbassadorRouter {
    rollout: String,
    owner: OwnerReference,
    pairs: Vec<MappingPair>,
    stable_service: String,
    canary_service: String,
}

impl AmbassadorRouter {
    /// The router for `rollout` with `trafficRouting.ambassador` = `config`.
    pub fn from_rollout(
        rollout: &Rollout,
        config: &AmbassadorTrafficRouting,
    ) -> Result<Self, TrafficError> {
        let ns = namespace(rollout)?;
        let (stable_service, canary_service) = services(rollout)?;
        let owner = rollout_owner_reference(rollout).ok_or_else(|| {
            invalid_rollout(
                rollout,
                "metadata.name or metadata.uid is not set; the canary Mapping needs an owner"
                    .to_string(),
            )
        })?;
        if config.mappings.is_empty() {
            return Err(invalid_rollout(
                rollout,
                "trafficRouting.ambassador.mappings names no Mapping".to_string(),
            ));
        }
        let mut pairs: Vec<MappingPair> = Vec::new();
        for name in &config.mappings {
            let pair = MappingPair {
                stable: mapping_key(&ns, name),
                canary: mapping_key(&ns, &canary_mapping_name(name)),
            };
            if !pairs.contains(&pair) {
                pairs.push(pair);
            }
        }
        Ok(Self {
            rollout: kube::ResourceExt::name_any(rollout),
            owner,
            pairs,
            stable_service,
            canary_service,
        })
    }

    /// The canary Mapping of `pair` as it exists, `None` when absent; an error when it is not
    /// this Rollout's.
    fn live_canary<'a>(
        &self,
        pair: &MappingPair,
        live: &'a LiveObjects,
    ) -> Result<Option<&'a Value>, TrafficError> {
        let Some(mapping) = live.get(&pair.canary) else {
            return Ok(None);
        };
        let owned = mapping
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|owners| {
                owners.iter().any(|o| {
                    o.get("controller") == Some(&json!(true))
                        && o.get("uid").and_then(Value::as_str) == Some(self.owner.uid.as_str())
                })
            });
        if !owned {
            return Err(TrafficError::NotOwned {
                key: Box::new(pair.canary.clone()),
                rollout: self.rollout.clone(),
            });
        }
        Ok(Some(mapping))
    }

    /// The canary Mapping's `spec` at `weight`, from the stable Mapping's.
    fn canary_spec(
        &self,
        pair: &MappingPair,
        live: &LiveObjects,
        weight: i32,
    ) -> Result<Value, TrafficError> {
        let stable = live
            .get(&pair.stable)
            .ok_or_else(|| TrafficError::NotFound {
                key: Box::new(pair.stable.clone()),
            })?;
        let malformed = |reason: String| TrafficError::Malformed {
            key: Box::new(pair.stable.clone()),
            reason,
        };
        let mut spec = stable
            .get("spec")
            .filter(|s| s.is_object())
            .cloned()
            .ok_or_else(|| malformed("has no spec".to_string()))?;
        // Argo's rule: the stable Mapping's weight would fight the canary's.
        if spec.get("weight").and_then(Value::as_i64).unwrap_or(0) != 0 {
            return Err(malformed(format!(
                "Ambassador mapping {:?} can not define weight",
                pair.stable.name
            )));
        }
        let service = spec
            .get("service")
            .and_then(Value::as_str)
            .unwrap_or_default();
        spec["service"] = json!(service.replacen(&self.stable_service, &self.canary_service, 1));
        spec["weight"] = json!(weight);
        Ok(spec)
    }

    /// The write that puts `pair`'s canary Mapping at `weight`, none when it already is.
    fn write(
        &self,
        pair: &MappingPair,
        live: &LiveObjects,
        weight: i32,
    ) -> Result<Option<TrafficWrite>, TrafficError> {
        let current = self.live_canary(pair, live)?;
        if weight == 0 {
            return Ok(current.map(|_| TrafficWrite::Delete {
                key: pair.canary.clone(),
            }));
        }
        let spec = self.canary_spec(pair, live, weight)?;
        if current.and_then(|c| c.get("spec")) == Some(&spec) {
            return Ok(None);
        }
        Ok(Some(TrafficWrite::Apply {
            key: pair.canary.clone(),
            body: json!({
                "apiVersion": MAPPING_API_VERSION,
                "kind": MAPPING_KIND,
                "metadata": {
                    "name": pair.canary.name,
                    "namespace": pair.canary.namespace,
                    "ownerReferences": [self.owner],
                },
                "spec": spec,
            }),
        }))
    }
}

impl TrafficRouter for AmbassadorRouter {
    fn kind(&self) -> RouterKind {
        RouterKind::Ambassador
    }

    fn reads(&self) -> Vec<ObjectKey> {
        self.pairs
            .iter()
            .flat_map(|p| [p.stable.clone(), p.canary.clone()])
            .collect()
    }

    fn desired(
        &self,
        live: &LiveObjects,
        canary_weight: i32,
    ) -> Result<Vec<TrafficWrite>, TrafficError> {
        let weight = check_weight(canary_weight)?;
        let mut writes = Vec::new();
        for pair in &self.pairs {
            writes.extend(self.write(pair, live, weight)?);
        }
        Ok(writes)
    }

    /// The highest canary Mapping weight (0 without one).
    fn live_weight(&self, live: &LiveObjects) -> Result<Option<i32>, TrafficError> {
        let mut highest = 0;
        for pair in &self.pairs {
            let weight = self
                .live_canary(pair, live)?
                .and_then(|m| m.pointer("/spec/weight"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            highest = highest.max(i32::try_from(weight.clamp(0, 100)).unwrap_or(0));
        }
        Ok(Some(highest))
    }

    /// Deletes the canary Mappings of this Rollout (one owned by someone else is left alone).
    fn after_promotion(&self, live: &LiveObjects) -> Result<Vec<TrafficWrite>, TrafficError> {
        let mut writes = Vec::new();
        for pair in &self.pairs {
            match self.live_canary(pair, live) {
                Ok(Some(_)) => writes.push(TrafficWrite::Delete {
                    key: pair.canary.clone(),
                }),
                Ok(None) | Err(TrafficError::NotOwned { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(writes)
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    fn router(mappings: &[&str]) -> AmbassadorRouter {
        let rollout = super::super::fixture_routed_by(|t| {
            t.ambassador = Some(AmbassadorTrafficRouting {
                mappings: mappings.iter().map(|m| m.to_string()).collect(),
            });
        });
        AmbassadorRouter::from_rollout(
            &rollout,
            rollout
                .spec
                .canary()
                .and_then(|c| c.traffic_routing.as_ref())
                .and_then(|t| t.ambassador.as_ref())
                .expect("ambassador"),
        )
        .expect("a router")
    }

    fn stable_mapping(name: &str) -> Value {
        json!({
            "apiVersion": MAPPING_API_VERSION, "kind": MAPPING_KIND,
            "metadata": {"name": name, "namespace": "shop", "resourceVersion": "3",
                         "labels": {"team": "web"}},
            "spec": {"prefix": format!("/{name}"), "rewrite": "/", "service": "web-stable.shop:80",
                     "resolver": "endpoint"},
        })
    }

    fn live(mappings: &[&str]) -> LiveObjects {
        mappings
            .iter()
            .map(|m| (mapping_key("shop", m), stable_mapping(m)))
            .collect()
    }

    fn applied(writes: &[TrafficWrite]) -> Vec<(String, Value)> {
        writes
            .iter()
            .map(|w| match w {
                TrafficWrite::Apply { key, body } => (key.name.clone(), body.clone()),
                TrafficWrite::Delete { key } => (key.name.clone(), Value::Null),
            })
            .collect()
    }

    #[test]
    fn each_mapping_gets_a_weighted_canary_copy_pointing_at_the_canary_service() {
        let r = router(&["web", "web-grpc"]);
        assert_eq!(
            r.reads(),
            vec![
                mapping_key("shop", "web"),
                mapping_key("shop", "web-canary"),
                mapping_key("shop", "web-grpc"),
                mapping_key("shop", "web-grpc-canary"),
            ]
        );
        let mut state = live(&["web", "web-grpc"]);
        // Weight 0 and no canary Mapping: nothing to write.
        assert_eq!(r.desired(&state, 0), Ok(vec![]));
        let writes = r.desired(&state, 30).unwrap();
        let bodies = applied(&writes);
        assert_eq!(bodies.len(), 2);
        let (name, body) = &bodies[0];
        assert_eq!(name, "web-canary");
        assert_eq!(
            body,
            &json!({
                "apiVersion": "getambassador.io/v2", "kind": "Mapping",
                "metadata": {"name": "web-canary", "namespace": "shop", "ownerReferences": [{
                    "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "name": "web",
                    "uid": "uid-1", "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"prefix": "/web", "rewrite": "/", "service": "web-canary.shop:80",
                         "resolver": "endpoint", "weight": 30},
            })
        );
        for write in writes {
            if let TrafficWrite::Apply { key, body } = write {
                state.insert(key, body);
            }
        }
        assert_eq!(r.desired(&state, 30), Ok(vec![]));
        assert_eq!(r.live_weight(&state), Ok(Some(30)));
        assert_eq!(applied(&r.desired(&state, 60).unwrap()).len(), 2);
        // Back to 0 (an abort) or promoted: the canary Mappings go.
        let deletes = vec![
            TrafficWrite::Delete {
                key: mapping_key("shop", "web-canary"),
            },
            TrafficWrite::Delete {
                key: mapping_key("shop", "web-grpc-canary"),
            },
        ];
        assert_eq!(r.desired(&state, 0), Ok(deletes.clone()));
        assert_eq!(r.after_promotion(&state), Ok(deletes));
        assert_eq!(r.after_promotion(&live(&["web"])), Ok(vec![]));
    }

    #[test]
    fn argos_errors_and_names() {
        let r = router(&["web"]);
        assert_eq!(
            r.desired(&LiveObjects::new(), 10).unwrap_err().to_string(),
            "Mapping shop/web not found"
        );
        let mut weighted = live(&["web"]);
        weighted.get_mut(&mapping_key("shop", "web")).unwrap()["spec"]["weight"] = json!(10);
        assert_eq!(
            r.desired(&weighted, 10).unwrap_err().to_string(),
            "Mapping shop/web: Ambassador mapping \"web\" can not define weight"
        );
        let mut foreign = live(&["web"]);
        foreign.insert(
            mapping_key("shop", "web-canary"),
            json!({"metadata": {"name": "web-canary"}, "spec": {"weight": 5}}),
        );
        assert!(matches!(
            r.desired(&foreign, 10),
            Err(TrafficError::NotOwned { .. })
        ));
        assert_eq!(r.after_promotion(&foreign), Ok(vec![]));
        assert_eq!(canary_mapping_name("web"), "web-canary");
        assert_eq!(canary_mapping_name(&"x".repeat(300)).len(), 246 + 7);
    }
}
