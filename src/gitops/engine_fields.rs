//! The fields the Rollout engine moves at run time (DESIGN "The hand-off", docs/behaviour.md G15):
//! a sync never resets them and they never show as drift, because the objects Git declares are
//! given the live values before they are compared or applied.
//!
//! Field ownership alone does not do it: an HTTPRoute's `spec.rules`, an Istio VirtualService's
//! route lists, a DestinationRule's `spec.subsets`, a TraefikService's weighted services, an
//! ApisixRoute's `spec.http` and a Service's `spec.selector` are atomic, so applying Git's version would replace the engine's
//! weights, subset hashes and selector hash; and `replicas` of a Deployment or ReplicaSet a
//! Rollout scales would be reset by an apply that declares them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::object::{ResourceKey, gvk, key_of, str_at};
use crate::api::rollout::{POD_TEMPLATE_HASH_LABEL, Rollout};
use crate::rollout::traffic::gateway::{carry_over_live_weights, managed_backends_of_route};
use crate::rollout::traffic::gateway_routes::carry_over_managed_rules;
use crate::rollout::traffic::{apisix, istio, traefik};

/// Gives `desired` the live values of the engine's fields. `live` holds the live objects by key;
/// the Rollouts considered are those among `desired`.
pub fn carry_over_engine_fields(desired: &mut [Value], live: &BTreeMap<ResourceKey, Value>) {
    let rollouts: Vec<Rollout> = desired
        .iter()
        .filter(|o| is_kind(o, &["sluice.dev"], "Rollout"))
        .filter_map(|o| serde_json::from_value(o.clone()).ok())
        .collect();
    for obj in desired.iter_mut() {
        let Some(key) = key_of(obj) else {
            continue;
        };
        let Some(live_obj) = live.get(&key) else {
            continue;
        };
        if is_kind(obj, &["gateway.networking.k8s.io"], "HTTPRoute") {
            if let Some(backends) = managed_backends_of_route(&rollouts, &key.namespace, &key.name)
            {
                *obj = carry_over_live_weights(obj, live_obj, &backends);
            }
            *obj = carry_over_managed_rules(obj, live_obj, &rollouts, &key.namespace, &key.name);
        } else if is_kind(obj, &["networking.istio.io"], "VirtualService")
            || is_kind(obj, &["networking.istio.io"], "DestinationRule")
        {
            if let Some(router) =
                istio::router_managing(&rollouts, &key.kind, &key.namespace, &key.name)
            {
                *obj = router.carry_over_live(obj, live_obj);
            }
        } else if is_kind(obj, &["traefik.io"], "TraefikService") {
            if let Some(router) = traefik::router_managing(&rollouts, &key.namespace, &key.name) {
                *obj = router.carry_over_live(obj, live_obj);
            }
        } else if is_kind(obj, &["apisix.apache.org"], "ApisixRoute") {
            if let Some(router) = apisix::router_managing(&rollouts, &key.namespace, &key.name) {
                *obj = router.carry_over_live(obj, live_obj);
            }
        } else if is_kind(obj, &[""], "Service") {
            carry_over_selector_hash(obj, live_obj);
        } else if (is_kind(obj, &["apps"], "Deployment") && is_workload_of(&key, &rollouts))
            || (is_kind(obj, &["apps"], "ReplicaSet") && is_controlled_by_rollout(live_obj))
        {
            carry_over_replicas(obj, live_obj);
        }
    }
}

fn is_kind(obj: &Value, groups: &[&str], kind: &str) -> bool {
    gvk(obj).is_some_and(|g| g.kind == kind && groups.contains(&g.group.as_str()))
}

/// Whether a Rollout of the same namespace names the Deployment as its `workloadRef`.
fn is_workload_of(key: &ResourceKey, rollouts: &[Rollout]) -> bool {
    rollouts.iter().any(|r| {
        r.metadata.namespace.as_deref().unwrap_or_default() == key.namespace
            && r.spec
                .workload_ref
                .as_ref()
                .is_some_and(|w| w.kind == "Deployment" && w.name == key.name)
    })
}

fn is_controlled_by_rollout(live: &Value) -> bool {
    live.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|owners| {
            owners.iter().any(|o| {
                o.get("controller").and_then(Value::as_bool) == Some(true)
                    && str_at(o, "/kind") == Some("Rollout")
            })
        })
}

/// The engine points Services at a revision with the `rollouts-pod-template-hash` selector key.
fn carry_over_selector_hash(desired: &mut Value, live: &Value) {
    let Some(hash) = live
        .pointer("/spec/selector")
        .and_then(|s| s.get(POD_TEMPLATE_HASH_LABEL))
        .cloned()
    else {
        return;
    };
    if let Some(selector) = desired
        .pointer_mut("/spec/selector")
        .and_then(Value::as_object_mut)
    {
        selector.entry(POD_TEMPLATE_HASH_LABEL).or_insert(hash);
    }
}

fn carry_over_replicas(desired: &mut Value, live: &Value) {
    let Some(replicas) = live.pointer("/spec/replicas").cloned() else {
        return;
    };
    if let Some(spec) = desired.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("replicas".into(), replicas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::diff::diff;
    use serde_json::json;

    fn rollout() -> Value {
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "strategy": {"canary": {"stableService": "web-stable", "canaryService": "web-canary",
                "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}}},
                "steps": [{"setWeight": 20}]}}}})
    }

    fn route(stable: i64, canary: i64) -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [
                {"name": "web-stable", "port": 80, "weight": stable},
                {"name": "web-canary", "port": 80, "weight": canary}]}]}})
    }

    fn live_of(objects: &[Value]) -> BTreeMap<ResourceKey, Value> {
        objects
            .iter()
            .map(|o| (key_of(o).unwrap(), o.clone()))
            .collect()
    }

    #[test]
    fn g15_route_weights_selector_hash_and_workload_replicas_keep_their_live_values() {
        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web-canary", "namespace": "shop"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": 3}});
        let mut live_service = service.clone();
        live_service["spec"]["selector"][POD_TEMPLATE_HASH_LABEL] = json!("abc123");
        let mut live_deployment = deployment.clone();
        live_deployment["spec"]["replicas"] = json!(0);
        let live = live_of(&[route(80, 20), live_service.clone(), live_deployment.clone()]);

        let mut desired = vec![rollout(), route(100, 0), service, deployment];
        carry_over_engine_fields(&mut desired, &live);
        assert_eq!(desired[1], route(80, 20));
        assert_eq!(
            desired[2]["spec"]["selector"][POD_TEMPLATE_HASH_LABEL],
            "abc123"
        );
        assert_eq!(desired[3]["spec"]["replicas"], 0);
        assert_eq!(diff(&desired[1], &route(80, 20)), []);
        assert_eq!(diff(&desired[2], &live_service), []);
        assert_eq!(diff(&desired[3], &live_deployment), []);
    }

    #[test]
    fn g15_virtual_service_weights_keep_their_live_values() {
        let mut istio_rollout = rollout();
        istio_rollout["spec"]["strategy"]["canary"]["trafficRouting"] =
            json!({"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}});
        let vs = |stable: i64, canary: i64| {
            json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
                    {"destination": {"host": "web-stable"}, "weight": stable},
                    {"destination": {"host": "web-canary"}, "weight": canary}]}]}})
        };
        let live = live_of(&[vs(80, 20)]);
        let mut desired = vec![istio_rollout, vs(100, 0)];
        carry_over_engine_fields(&mut desired, &live);
        assert_eq!(desired[1], vs(80, 20));
        assert_eq!(diff(&desired[1], &vs(80, 20)), []);
    }

    #[test]
    fn g15_apisix_route_weights_keep_their_live_values() {
        let mut apisix_rollout = rollout();
        apisix_rollout["spec"]["strategy"]["canary"]["trafficRouting"] =
            json!({"apisix": {"route": {"name": "web", "rules": ["main"]}}});
        let route = |stable: i64, canary: i64| {
            json!({"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"http": [
                    {"name": "main", "match": {"paths": ["/*"]}, "backends": [
                        {"serviceName": "web-stable", "servicePort": 80, "weight": stable},
                        {"serviceName": "web-canary", "servicePort": 80, "weight": canary}]},
                    {"name": "other", "match": {"paths": ["/x"]}, "backends": [
                        {"serviceName": "x", "servicePort": 80, "weight": 100}]}]}})
        };
        let live = live_of(&[route(70, 30)]);
        let mut desired = vec![apisix_rollout, route(100, 0)];
        carry_over_engine_fields(&mut desired, &live);
        assert_eq!(desired[1], route(70, 30));
        assert_eq!(diff(&desired[1], &route(70, 30)), []);

        // What Git changes beside the managed weights still shows.
        let mut changed = route(100, 0);
        changed["spec"]["http"][1]["backends"][0]["weight"] = json!(5);
        let mut desired = vec![desired[0].clone(), changed];
        carry_over_engine_fields(&mut desired, &live);
        assert_eq!(desired[1]["spec"]["http"][0]["backends"][1]["weight"], 30);
        assert_eq!(desired[1]["spec"]["http"][1]["backends"][0]["weight"], 5);
    }

    #[test]
    fn objects_no_rollout_manages_keep_gits_values() {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "api", "namespace": "shop"}, "spec": {"replicas": 3}});
        let mut live_deployment = deployment.clone();
        live_deployment["spec"]["replicas"] = json!(1);
        let mut other_route = route(100, 0);
        other_route["metadata"]["name"] = json!("other");
        let mut live_route = other_route.clone();
        live_route["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(50);
        let live = live_of(&[live_deployment.clone(), live_route.clone()]);
        let mut desired = vec![rollout(), deployment.clone(), other_route.clone()];
        carry_over_engine_fields(&mut desired, &live);
        assert_eq!(desired[1], deployment);
        assert_eq!(desired[2], other_route);
        assert_eq!(diff(&desired[1], &live_deployment).len(), 1);
    }
}
