//! Traefik router (`trafficRouting.traefik.weightedTraefikServiceName`), as Argo Rollouts v1.10 does
//! it: in the TraefikService of that name (the Rollout's namespace), the entries of
//! `spec.weighted.services` named after the `canaryService` and the `stableService` get weights `W`
//! and `100 − W`; every other entry and field stays as it is. Both entries must exist (Argo fails
//! the weight change otherwise; Sluice names the missing one).
//!
//! `spec.weighted.services` is an atomic list (Traefik's CRD declares no keys), so, as for Istio,
//! the apply body carries the whole live list with only the two weights changed and the live
//! `resourceVersion` (Argo reads, edits and `Update`s the object). API version
//! `traefik.io/v1alpha1`, Argo's default.

use serde::Deserialize;
use serde_json::{Value, json};

use super::gateway::canary_percent;
use super::{
    LiveObjects, ObjectKey, RouterKind, TrafficError, TrafficRouter, TrafficWrite, check_weight,
    invalid_rollout, namespace, services,
};
use crate::api::rollout::Rollout;

/// The TraefikService API version Sluice reads and writes (Argo Rollouts' default).
pub const TRAEFIK_SERVICE_API_VERSION: &str = "traefik.io/v1alpha1";
/// The TraefikService kind.
pub const TRAEFIK_SERVICE_KIND: &str = "TraefikService";

/// `trafficRouting.traefik` as Argo defines it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TraefikConfig {
    weighted_traefik_service_name: String,
}

/// The Traefik router of one Rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraefikRouter {
    key: ObjectKey,
    stable: String,
    canary: String,
}

/// The key of a TraefikService.
pub fn traefik_service_key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: TRAEFIK_SERVICE_API_VERSION.to_string(),
        kind: TRAEFIK_SERVICE_KIND.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

impl TraefikRouter {
    /// The router for `rollout` with `trafficRouting.traefik` = `config`.
    pub fn from_rollout(rollout: &Rollout, config: &Value) -> Result<Self, TrafficError> {
        let config: TraefikConfig = serde_json::from_value(config.clone()).map_err(|e| {
            invalid_rollout(
                rollout,
                format!("spec.strategy.canary.trafficRouting.traefik: {e}"),
            )
        })?;
        if config.weighted_traefik_service_name.is_empty() {
            return Err(invalid_rollout(
                rollout,
                "trafficRouting.traefik.weightedTraefikServiceName is empty".to_string(),
            ));
        }
        let (stable, canary) = services(rollout)?;
        Ok(Self {
            key: traefik_service_key(&namespace(rollout)?, &config.weighted_traefik_service_name),
            stable,
            canary,
        })
    }

    /// The live `spec.weighted.services`, checked to name both managed Services.
    fn weighted<'a>(&self, live: &'a LiveObjects) -> Result<&'a [Value], TrafficError> {
        let object = live.get(&self.key).ok_or_else(|| TrafficError::NotFound {
            key: Box::new(self.key.clone()),
        })?;
        let malformed = |reason: String| TrafficError::Malformed {
            key: Box::new(self.key.clone()),
            reason,
        };
        let entries = object
            .pointer("/spec/weighted/services")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("spec.weighted.services was not found".to_string()))?;
        for (name, field) in [
            (&self.canary, "canaryService"),
            (&self.stable, "stableService"),
        ] {
            if !entries.iter().any(|e| is_named(e, name)) {
                return Err(malformed(format!(
                    "spec.weighted.services has no service named {name:?} (the Rollout's {field})"
                )));
            }
        }
        Ok(entries)
    }
}

/// The Traefik router of the first Rollout among `rollouts` that weights the TraefikService
/// `namespace/name` (for the GitOps side, docs/behaviour.md G15).
pub fn router_managing<'a>(
    rollouts: impl IntoIterator<Item = &'a Rollout>,
    namespace: &str,
    name: &str,
) -> Option<TraefikRouter> {
    rollouts.into_iter().find_map(|rollout| {
        let config = rollout
            .spec
            .canary()?
            .traffic_routing
            .as_ref()?
            .traefik
            .as_ref()?;
        let router = TraefikRouter::from_rollout(rollout, config).ok()?;
        (router.key.namespace == namespace && router.key.name == name).then_some(router)
    })
}

impl TraefikRouter {
    /// For the GitOps apply and diff (docs/behaviour.md G15): `desired` (from Git) with the canary
    /// and stable entries' weights taken from `live`; unchanged when `live` lacks them.
    pub fn carry_over_live(&self, desired: &Value, live: &Value) -> Value {
        let mut objects = LiveObjects::new();
        objects.insert(self.key.clone(), live.clone());
        let Ok(entries) = self.weighted(&objects) else {
            return desired.clone();
        };
        let live_weight = |name: &str| {
            entries
                .iter()
                .find(|e| is_named(e, name))
                .and_then(|e| e.get("weight"))
                .cloned()
        };
        let mut out = desired.clone();
        if let Some(services) = out
            .pointer_mut("/spec/weighted/services")
            .and_then(Value::as_array_mut)
        {
            for entry in services.iter_mut() {
                let name = entry
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if (name == self.canary || name == self.stable)
                    && let (Some(weight), Some(fields)) = (live_weight(name), entry.as_object_mut())
                {
                    fields.insert("weight".to_string(), weight);
                }
            }
        }
        out
    }
}

fn is_named(entry: &Value, name: &str) -> bool {
    entry.get("name").and_then(Value::as_str) == Some(name)
}

impl TrafficRouter for TraefikRouter {
    fn kind(&self) -> RouterKind {
        RouterKind::Traefik
    }

    fn reads(&self) -> Vec<ObjectKey> {
        vec![self.key.clone()]
    }

    fn desired(
        &self,
        live: &LiveObjects,
        canary_weight: i32,
    ) -> Result<Vec<TrafficWrite>, TrafficError> {
        let weight = i64::from(check_weight(canary_weight)?);
        let entries = self.weighted(live)?;
        let updated: Vec<Value> = entries
            .iter()
            .map(|entry| {
                let value = if is_named(entry, &self.canary) {
                    weight
                } else if is_named(entry, &self.stable) {
                    100 - weight
                } else {
                    return entry.clone();
                };
                let mut entry = entry.clone();
                if let Some(fields) = entry.as_object_mut() {
                    fields.insert("weight".to_string(), json!(value));
                }
                entry
            })
            .collect();
        if updated.as_slice() == entries {
            return Ok(Vec::new());
        }
        Ok(vec![TrafficWrite::Apply {
            key: self.key.clone(),
            body: super::guarded_apply_body(
                &self.key,
                live.get(&self.key),
                json!({"weighted": {"services": updated}}),
            ),
        }])
    }

    fn live_weight(&self, live: &LiveObjects) -> Result<Option<i32>, TrafficError> {
        let entries = self.weighted(live)?;
        let weight_of = |name: &str| {
            entries
                .iter()
                .find(|e| is_named(e, name))
                .and_then(|e| e.get("weight"))
                .and_then(Value::as_i64)
                .unwrap_or(0)
        };
        Ok(Some(canary_percent(
            weight_of(&self.stable),
            weight_of(&self.canary),
        )))
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::rollout::traffic::router_for;

    fn rollout(traefik: Value) -> Rollout {
        crate::rollout::traffic::fixture_routed_by(|routing| routing.traefik = Some(traefik))
    }

    fn config() -> Value {
        json!({"weightedTraefikServiceName": "web-wrr"})
    }

    fn live_service(services: Value) -> LiveObjects {
        let mut live = LiveObjects::new();
        live.insert(
            traefik_service_key("shop", "web-wrr"),
            json!({
                "apiVersion": TRAEFIK_SERVICE_API_VERSION, "kind": TRAEFIK_SERVICE_KIND,
                "metadata": {"name": "web-wrr", "namespace": "shop", "resourceVersion": "4"},
                "spec": {"weighted": {"sticky": {"cookie": {}}, "services": services}},
            }),
        );
        live
    }

    fn standard() -> Value {
        json!([
            {"name": "web-stable", "port": 80, "weight": 100},
            {"name": "web-canary", "port": 80, "weight": 0},
            {"name": "maintenance", "kind": "TraefikService", "weight": 1},
        ])
    }

    #[test]
    fn weights_follow_every_step_and_other_entries_stay() {
        let r = TraefikRouter::from_rollout(&rollout(config()), &config()).unwrap();
        assert_eq!(
            router_for(&rollout(config())).unwrap().kind(),
            RouterKind::Traefik
        );
        assert_eq!(r.reads(), vec![traefik_service_key("shop", "web-wrr")]);
        let mut live = live_service(standard());
        for weight in [20, 50, 100, 0] {
            let writes = r.desired(&live, weight).unwrap();
            let TrafficWrite::Apply { key, body } = &writes[0] else {
                panic!("an apply")
            };
            assert_eq!(body["metadata"]["resourceVersion"], json!("4"));
            let services = body["spec"]["weighted"]["services"].clone();
            assert_eq!(
                services,
                json!([
                    {"name": "web-stable", "port": 80, "weight": 100 - weight},
                    {"name": "web-canary", "port": 80, "weight": weight},
                    {"name": "maintenance", "kind": "TraefikService", "weight": 1},
                ])
            );
            live.get_mut(key).unwrap()["spec"]["weighted"]["services"] = services;
            assert_eq!(r.live_weight(&live), Ok(Some(weight)));
            assert_eq!(r.desired(&live, weight), Ok(vec![]), "no churn");
        }
    }

    #[test]
    fn gitops_keeps_the_live_weights() {
        let ro = rollout(config());
        let r = router_managing([&ro], "shop", "web-wrr").unwrap();
        assert!(router_managing([&ro], "shop", "other").is_none());
        let live = live_service(json!([
            {"name": "web-stable", "port": 80, "weight": 70},
            {"name": "web-canary", "port": 80, "weight": 30},
        ]));
        let live = live.values().next().unwrap();
        let mut git = live.clone();
        git["spec"]["weighted"]["services"] = standard();
        let kept = r.carry_over_live(&git, live);
        assert_eq!(kept["spec"]["weighted"]["services"][0]["weight"], json!(70));
        assert_eq!(kept["spec"]["weighted"]["services"][1]["weight"], json!(30));
        assert_eq!(kept["spec"]["weighted"]["services"][2], standard()[2]);
        assert_eq!(r.carry_over_live(&git, &json!({})), git);
    }

    #[test]
    fn missing_objects_and_entries_are_named() {
        let r = TraefikRouter::from_rollout(&rollout(config()), &config()).unwrap();
        assert_eq!(
            r.desired(&LiveObjects::new(), 10).unwrap_err().to_string(),
            "TraefikService shop/web-wrr not found"
        );
        assert_eq!(
            r.desired(&live_service(json!([{"name": "web-stable"}])), 10)
                .unwrap_err()
                .to_string(),
            "TraefikService shop/web-wrr: spec.weighted.services has no service named \"web-canary\" (the Rollout's canaryService)"
        );
        let mut no_weighted = live_service(json!([]));
        no_weighted
            .values_mut()
            .for_each(|o| o["spec"] = json!({"mirroring": {}}));
        assert!(
            r.desired(&no_weighted, 10)
                .unwrap_err()
                .to_string()
                .contains("spec.weighted.services was not found")
        );
        let err = TraefikRouter::from_rollout(&rollout(json!({})), &json!({}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("weightedTraefikServiceName"), "{err}");
    }
}
