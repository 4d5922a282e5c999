//! APISIX router (`trafficRouting.apisix.route`), as Argo Rollouts v1.10 does it: in the
//! ApisixRoute of that name (the Rollout's namespace), each `spec.http` rule named in `rules` (by
//! default the rule named like the route) has its backends whose `serviceName` is the
//! `canaryService` and the `stableService` weighted `W` and `100 − W`; every other backend, rule and
//! field stays as it is. A missing rule or backend fails the weight change with Argo's message.
//!
//! `spec.http` is an atomic list (a CRD list without keys), so, as for Traefik, the apply body
//! carries the whole live list with only the weights changed and the live `resourceVersion` (Argo
//! reads, edits and `Update`s the object). API version `apisix.apache.org/v2`, Argo's default.
//! Argo's APISIX header routes (a second ApisixRoute) are not implemented: `setHeaderRoute` is
//! refused with this router.

use serde_json::{Value, json};

use super::gateway::canary_percent;
use super::{
    LiveObjects, ObjectKey, RouterKind, TrafficError, TrafficRouter, TrafficWrite, check_weight,
    invalid_rollout, namespace, services,
};
use crate::api::rollout::{ApisixTrafficRouting, Rollout};

/// The ApisixRoute API version Sluice reads and writes (Argo Rollouts' default).
pub const APISIX_ROUTE_API_VERSION: &str = "apisix.apache.org/v2";
/// The ApisixRoute kind.
pub const APISIX_ROUTE_KIND: &str = "ApisixRoute";

/// The key of an ApisixRoute.
pub fn apisix_route_key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: APISIX_ROUTE_API_VERSION.to_string(),
        kind: APISIX_ROUTE_KIND.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// The APISIX router of one Rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApisixRouter {
    key: ObjectKey,
    rules: Vec<String>,
    stable: String,
    canary: String,
}

impl ApisixRouter {
    /// The router for `rollout` with `trafficRouting.apisix` = `config`.
    pub fn from_rollout(
        rollout: &Rollout,
        config: &ApisixTrafficRouting,
    ) -> Result<Self, TrafficError> {
        let route = config
            .route
            .as_ref()
            .filter(|r| !r.name.is_empty())
            .ok_or_else(|| {
                invalid_rollout(
                    rollout,
                    "trafficRouting.apisix.route.name is not set".to_string(),
                )
            })?;
        let (stable, canary) = services(rollout)?;
        Ok(Self {
            key: apisix_route_key(&namespace(rollout)?, &route.name),
            rules: route
                .rules
                .clone()
                .unwrap_or_else(|| vec![route.name.clone()]),
            stable,
            canary,
        })
    }

    /// The live `spec.http`.
    fn http<'a>(&self, live: &'a LiveObjects) -> Result<&'a [Value], TrafficError> {
        let object = live.get(&self.key).ok_or_else(|| TrafficError::NotFound {
            key: Box::new(self.key.clone()),
        })?;
        object
            .pointer("/spec/http")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .ok_or_else(|| self.malformed("spec.http was not found in Apisix Route manifest"))
    }

    fn malformed(&self, reason: impl Into<String>) -> TrafficError {
        TrafficError::Malformed {
            key: Box::new(self.key.clone()),
            reason: reason.into(),
        }
    }

    /// `http` with the managed rules' canary and stable backends at `weight` and `100 − weight`.
    fn weighted(&self, http: &[Value], weight: i64) -> Result<Vec<Value>, TrafficError> {
        let mut updated = http.to_vec();
        for name in &self.rules {
            let rule = updated
                .iter_mut()
                .find(|r| r.get("name").and_then(Value::as_str) == Some(name.as_str()))
                .ok_or_else(|| {
                    self.malformed(format!("Apisix http route rule {name} not found"))
                })?;
            let backends = rule
                .get_mut("backends")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| self.malformed("Apisix http route backends not found"))?;
            for (service, value) in [(&self.canary, weight), (&self.stable, 100 - weight)] {
                let backend = backends
                    .iter_mut()
                    .find(|b| b.get("serviceName").and_then(Value::as_str) == Some(service))
                    .and_then(Value::as_object_mut)
                    .ok_or_else(|| {
                        self.malformed(format!("apisix route {service} backend was not found"))
                    })?;
                backend.insert("weight".to_string(), json!(value));
            }
        }
        Ok(updated)
    }

    /// `(stable, canary)` weights of the first managed rule (a backend without `weight` weighs
    /// 100, APISIX's default).
    fn weights(&self, http: &[Value]) -> Option<(i64, i64)> {
        let name = self.rules.first()?;
        let rule = http
            .iter()
            .find(|r| r.get("name").and_then(Value::as_str) == Some(name.as_str()))?;
        let backends = rule.get("backends").and_then(Value::as_array)?;
        let weight = |service: &str| {
            backends
                .iter()
                .find(|b| b.get("serviceName").and_then(Value::as_str) == Some(service))
                .map(|b| b.get("weight").and_then(Value::as_i64).unwrap_or(100))
        };
        Some((weight(&self.stable)?, weight(&self.canary)?))
    }
}

/// The APISIX router of the Rollout among `rollouts` that manages the ApisixRoute
/// `namespace/name`, if one does.
pub fn router_managing<'a>(
    rollouts: impl IntoIterator<Item = &'a Rollout>,
    namespace: &str,
    name: &str,
) -> Option<ApisixRouter> {
    rollouts.into_iter().find_map(|rollout| {
        let config = rollout
            .spec
            .canary()?
            .traffic_routing
            .as_ref()?
            .apisix
            .as_ref()?;
        let router = ApisixRouter::from_rollout(rollout, config).ok()?;
        (router.key.namespace == namespace && router.key.name == name).then_some(router)
    })
}

fn rule_named<'a>(http: &'a [Value], name: &str) -> Option<&'a Value> {
    http.iter()
        .find(|r| r.get("name").and_then(Value::as_str) == Some(name))
}

fn backend_of<'a>(rule: &'a Value, service: &str) -> Option<&'a Value> {
    rule.get("backends")?
        .as_array()?
        .iter()
        .find(|b| b.get("serviceName").and_then(Value::as_str) == Some(service))
}

impl ApisixRouter {
    /// For the GitOps apply and diff (docs/behaviour.md G15): `desired` (from Git) with the managed
    /// rules' canary and stable backend weights taken from `live`, so a sync never resets the split
    /// and it never shows as drift; unchanged where `live` lacks them.
    pub fn carry_over_live(&self, desired: &Value, live: &Value) -> Value {
        let mut out = desired.clone();
        let Some(live_http) = live.pointer("/spec/http").and_then(Value::as_array) else {
            return out;
        };
        let Some(http) = out.pointer_mut("/spec/http").and_then(Value::as_array_mut) else {
            return out;
        };
        for name in &self.rules {
            let Some(live_rule) = rule_named(live_http, name) else {
                continue;
            };
            let Some(backends) = http
                .iter_mut()
                .find(|r| r.get("name").and_then(Value::as_str) == Some(name.as_str()))
                .and_then(|r| r.get_mut("backends"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for service in [&self.canary, &self.stable] {
                let live_weight = backend_of(live_rule, service).and_then(|b| b.get("weight"));
                let backend = backends
                    .iter_mut()
                    .find(|b| b.get("serviceName").and_then(Value::as_str) == Some(service))
                    .and_then(Value::as_object_mut);
                if let (Some(weight), Some(backend)) = (live_weight, backend) {
                    backend.insert("weight".to_string(), weight.clone());
                }
            }
        }
        out
    }
}

impl TrafficRouter for ApisixRouter {
    fn kind(&self) -> RouterKind {
        RouterKind::Apisix
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
        let http = self.http(live)?;
        let updated = self.weighted(http, weight)?;
        if updated.as_slice() == http {
            return Ok(Vec::new());
        }
        Ok(vec![TrafficWrite::Apply {
            key: self.key.clone(),
            body: super::guarded_apply_body(
                &self.key,
                live.get(&self.key),
                json!({"http": updated}),
            ),
        }])
    }

    fn live_weight(&self, live: &LiveObjects) -> Result<Option<i32>, TrafficError> {
        let http = self.http(live)?;
        Ok(Some(self.weights(http).map_or(0, |(stable, canary)| {
            canary_percent(stable, canary)
        })))
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::api::rollout::ApisixRouteRef;
    use crate::rollout::traffic::router_for;

    fn rollout(rules: Option<Vec<&str>>) -> Rollout {
        crate::rollout::traffic::fixture_routed_by(|routing| {
            routing.apisix = Some(ApisixTrafficRouting {
                route: Some(ApisixRouteRef {
                    name: "web".into(),
                    rules: rules.map(|r| r.into_iter().map(String::from).collect()),
                }),
            })
        })
    }

    fn router(rules: Option<Vec<&str>>) -> ApisixRouter {
        let r = rollout(rules);
        let config = r
            .spec
            .canary()
            .and_then(|c| c.traffic_routing.as_ref())
            .and_then(|t| t.apisix.clone())
            .unwrap();
        ApisixRouter::from_rollout(&r, &config).unwrap()
    }

    fn live_route(http: Value) -> LiveObjects {
        LiveObjects::from([(
            apisix_route_key("shop", "web"),
            json!({
                "apiVersion": APISIX_ROUTE_API_VERSION, "kind": APISIX_ROUTE_KIND,
                "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "9"},
                "spec": {"http": http},
            }),
        )])
    }

    fn standard() -> Value {
        json!([
            {"name": "web", "match": {"paths": ["/*"]}, "backends": [
                {"serviceName": "web-stable", "servicePort": 80},
                {"serviceName": "web-canary", "servicePort": 80, "weight": 0},
                {"serviceName": "maintenance", "servicePort": 80, "weight": 1},
            ]},
            {"name": "admin", "match": {"paths": ["/admin"]}, "backends": [
                {"serviceName": "web-stable", "servicePort": 80},
            ]},
        ])
    }

    #[test]
    fn weights_follow_every_step_and_other_backends_and_rules_stay() {
        assert_eq!(
            router_for(&rollout(None)).unwrap().kind(),
            RouterKind::Apisix
        );
        let r = router(None);
        assert_eq!(r.reads(), vec![apisix_route_key("shop", "web")]);
        let mut live = live_route(standard());
        for weight in [20, 50, 100, 0] {
            let writes = r.desired(&live, weight).unwrap();
            let [TrafficWrite::Apply { key, body }] = writes.as_slice() else {
                panic!("{writes:?}")
            };
            assert_eq!(body["metadata"]["resourceVersion"], json!("9"));
            let http = body["spec"]["http"].clone();
            let mut expected = standard();
            expected[0]["backends"][0]["weight"] = json!(100 - weight);
            expected[0]["backends"][1]["weight"] = json!(weight);
            assert_eq!(http, expected);
            live.get_mut(key).unwrap()["spec"]["http"] = http;
            assert_eq!(r.live_weight(&live), Ok(Some(weight)));
            assert_eq!(r.desired(&live, weight), Ok(vec![]), "no churn");
        }
    }

    #[test]
    fn named_rules_and_argos_errors() {
        let r = router(Some(vec!["web", "admin"]));
        assert_eq!(
            r.desired(&live_route(standard()), 10)
                .unwrap_err()
                .to_string(),
            "ApisixRoute shop/web: apisix route web-canary backend was not found"
        );
        let r = router(Some(vec!["api"]));
        assert_eq!(
            r.desired(&live_route(standard()), 10)
                .unwrap_err()
                .to_string(),
            "ApisixRoute shop/web: Apisix http route rule api not found"
        );
        assert_eq!(
            r.desired(&LiveObjects::new(), 10).unwrap_err().to_string(),
            "ApisixRoute shop/web not found"
        );
        let mut no_http = live_route(json!([]));
        no_http.values_mut().for_each(|o| o["spec"] = json!({}));
        assert_eq!(
            r.desired(&no_http, 10).unwrap_err().to_string(),
            "ApisixRoute shop/web: spec.http was not found in Apisix Route manifest"
        );
    }
}
