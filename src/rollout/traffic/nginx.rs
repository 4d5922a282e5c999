//! NGINX Ingress router (`trafficRouting.nginx`), as Argo Rollouts does it.
//!
//! ingress-nginx splits traffic between an Ingress and a second "canary" Ingress for the same host
//! and path that carries `<prefix>/canary: "true"` and `<prefix>/canary-weight: "W"`. Sluice derives
//! one canary Ingress per stable Ingress (`stableIngress`, or each of `stableIngresses`, e.g. one
//! per NGINX controller), `<rollout>-<stableIngress>-canary`, from that stable Ingress: the paths
//! that route to the stable Service, pointed at the canary Service; other paths are dropped (they
//! are not the Rollout's to split). Every canary Ingress gets the same weight, as Argo applies each
//! step to all of them. The stable Ingresses themselves are never written. The canary Ingresses
//! are owned by the Rollout and removed once the Rollout is fully promoted (docs/behaviour.md C3).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressRule, IngressSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use serde_json::Value;

use super::{
    LiveObjects, ObjectKey, RouterKind, TrafficError, TrafficRouter, TrafficWrite,
    check_weight_out_of, invalid_rollout, max_traffic_weight, namespace, services,
};
use crate::api::rollout::DEFAULT_MAX_TRAFFIC_WEIGHT;
use crate::api::rollout::{NginxTrafficRouting, Rollout};
use crate::api::routes::ValueMatch;
use crate::rollout::FIELD_MANAGER;
use crate::rollout::managed_routes::ActiveRoute;
use crate::rollout::replicasets::rollout_owner_reference;

/// The Ingress API version Sluice reads and writes.
pub const INGRESS_API_VERSION: &str = "networking.k8s.io/v1";
/// The Ingress kind.
pub const INGRESS_KIND: &str = "Ingress";
/// The legacy class annotation: ingress-nginx picks Ingresses by class, so the canary must keep
/// the stable's (Argo does the same).
const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Longest object name the API server accepts (DNS subdomain).
const MAX_NAME_LENGTH: usize = 253;
/// On the canary Ingress, the name of the managed header route its `canary-by-header*`
/// annotations carry (rather than `additionalIngressAnnotations`'): the route's state, read back
/// by every write so that a weight change keeps the route and a route change keeps the weight.
pub const HEADER_ROUTE_ANNOTATION: &str = "rollout.sluice.dev/header-route";
/// ingress-nginx's header annotations (after the prefix): the header's name, then an exact value
/// or a regular expression (`canary-by-header-value` wins when both are set).
const HEADER_KEYS: [&str; 3] = [
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
];

/// The annotations of a managed header route on the canary Ingress (full keys, with
/// [`HEADER_ROUTE_ANNOTATION`]).
type HeaderAnnotations = BTreeMap<String, String>;

/// The name of the canary Ingress: `<rollout>-<stableIngress>-canary` (Argo's name).
pub fn canary_ingress_name(rollout: &str, stable_ingress: &str) -> String {
    format!("{rollout}-{stable_ingress}-canary")
}

/// The key of an Ingress.
pub fn ingress_key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: INGRESS_API_VERSION.to_string(),
        kind: INGRESS_KIND.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// A stable Ingress (read only) and the canary Ingress derived from it (created, updated,
/// deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressPair {
    /// The stable Ingress.
    pub stable: ObjectKey,
    /// Its canary Ingress.
    pub canary: ObjectKey,
}

/// The NGINX router of one Rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct NginxRouter {
    rollout: String,
    owner: OwnerReference,
    pairs: Vec<IngressPair>,
    prefix: String,
    additional_annotations: BTreeMap<String, String>,
    canary_annotations: BTreeMap<String, String>,
    stable_service: String,
    canary_service: String,
    /// `maxTrafficWeight` when set: written as `canary-weight-total`, as Argo does (ingress-nginx
    /// reads `canary-weight` out of it, 100 without).
    weight_total: Option<i32>,
}

impl NginxRouter {
    /// The router for `rollout` with its `trafficRouting.nginx` configuration.
    pub fn from_rollout(
        rollout: &Rollout,
        config: &NginxTrafficRouting,
    ) -> Result<Self, TrafficError> {
        let ns = namespace(rollout)?;
        let (stable_service, canary_service) = services(rollout)?;
        let owner = rollout_owner_reference(rollout).ok_or_else(|| {
            invalid_rollout(
                rollout,
                "metadata.name or metadata.uid is not set; the canary Ingress needs an owner"
                    .to_string(),
            )
        })?;
        let names = config.stable_ingress_names();
        if names.is_empty() {
            return Err(invalid_rollout(
                rollout,
                "trafficRouting.nginx.stableIngress is empty".to_string(),
            ));
        }
        let mut pairs = Vec::with_capacity(names.len());
        for stable in names {
            let canary_name = canary_ingress_name(&rollout.name_any(), stable);
            if canary_name.len() > MAX_NAME_LENGTH {
                return Err(invalid_rollout(
                    rollout,
                    format!(
                        "canary Ingress name {canary_name:?} is longer than {MAX_NAME_LENGTH} characters"
                    ),
                ));
            }
            pairs.push(IngressPair {
                stable: ingress_key(&ns, stable),
                canary: ingress_key(&ns, &canary_name),
            });
        }
        Ok(Self {
            rollout: rollout.name_any(),
            owner,
            pairs,
            prefix: config.annotation_prefix().to_string(),
            additional_annotations: config.additional_ingress_annotations.clone(),
            canary_annotations: config.canary_ingress_annotations.clone(),
            stable_service,
            canary_service,
            weight_total: max_traffic_weight(rollout),
        })
    }

    /// The total the weights are out of: `maxTrafficWeight`, else 100.
    fn max_weight(&self) -> i32 {
        self.weight_total.unwrap_or(DEFAULT_MAX_TRAFFIC_WEIGHT)
    }

    /// Each stable Ingress with its canary Ingress, in the order the Rollout names them.
    pub fn ingresses(&self) -> &[IngressPair] {
        &self.pairs
    }

    /// The canary Ingress of `pair` for `stable` at `canary_weight`.
    pub fn build_canary_ingress(
        &self,
        pair: &IngressPair,
        stable: &Ingress,
        canary_weight: i32,
    ) -> Result<Ingress, TrafficError> {
        self.build_canary_ingress_with(pair, stable, canary_weight, None)
    }

    /// The canary Ingress of `pair` for `stable` at `canary_weight`, with a managed header
    /// route's annotations when one is in force.
    fn build_canary_ingress_with(
        &self,
        pair: &IngressPair,
        stable: &Ingress,
        canary_weight: i32,
        header: Option<&HeaderAnnotations>,
    ) -> Result<Ingress, TrafficError> {
        let weight = check_weight_out_of(canary_weight, self.max_weight())?;
        let spec = self.canary_spec(pair, stable.spec.as_ref())?;
        Ok(Ingress {
            metadata: ObjectMeta {
                name: Some(pair.canary.name.clone()),
                namespace: Some(pair.canary.namespace.clone()),
                annotations: Some(self.canary_annotations(stable, weight, header)),
                owner_references: Some(vec![self.owner.clone()]),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: None,
        })
    }

    /// The stable spec with the stable Service's paths pointed at the canary Service and every
    /// other path dropped; an error when no path uses the stable Service.
    fn canary_spec(
        &self,
        pair: &IngressPair,
        stable: Option<&IngressSpec>,
    ) -> Result<IngressSpec, TrafficError> {
        let mut spec = stable.cloned().unwrap_or_default();
        spec.default_backend = spec.default_backend.take().and_then(|b| self.retarget(b));
        let rules: Vec<IngressRule> = spec
            .rules
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|rule| self.retarget_rule(rule))
            .collect();
        if rules.is_empty() && spec.default_backend.is_none() {
            return Err(TrafficError::Malformed {
                key: Box::new(pair.stable.clone()),
                reason: format!(
                    "no backend uses the stable Service {}, so there is nothing to split",
                    self.stable_service
                ),
            });
        }
        spec.rules = (!rules.is_empty()).then_some(rules);
        Ok(spec)
    }

    /// The rule with only its stable-Service paths, retargeted; `None` when it has none.
    fn retarget_rule(&self, mut rule: IngressRule) -> Option<IngressRule> {
        let mut http = rule.http.take()?;
        http.paths = http
            .paths
            .into_iter()
            .filter_map(|mut path| {
                path.backend = self.retarget(path.backend)?;
                Some(path)
            })
            .collect();
        if http.paths.is_empty() {
            return None;
        }
        rule.http = Some(http);
        Some(rule)
    }

    /// The backend pointed at the canary Service when it uses the stable Service.
    fn retarget(&self, mut backend: IngressBackend) -> Option<IngressBackend> {
        let service = backend.service.as_mut()?;
        if service.name != self.stable_service {
            return None;
        }
        service.name = self.canary_service.clone();
        Some(backend)
    }

    /// In Argo's order, each overriding the ones before: the stable's class annotation,
    /// `additionalIngressAnnotations` (prefixed unless they already carry the prefix),
    /// `canaryIngressAnnotations` as written, then a managed header route's annotations
    /// (replacing any other header ones), then `canary`, `canary-weight` and (with
    /// `maxTrafficWeight`) `canary-weight-total`, which nothing overrides.
    fn canary_annotations(
        &self,
        stable: &Ingress,
        weight: i32,
        header: Option<&HeaderAnnotations>,
    ) -> BTreeMap<String, String> {
        let mut annotations = BTreeMap::new();
        if let Some(class) = stable.annotations().get(INGRESS_CLASS_ANNOTATION) {
            annotations.insert(INGRESS_CLASS_ANNOTATION.to_string(), class.clone());
        }
        let prefixed = format!("{}/", self.prefix);
        for (key, value) in &self.additional_annotations {
            let key = if key.starts_with(&prefixed) {
                key.clone()
            } else {
                self.annotation(key)
            };
            annotations.insert(key, value.clone());
        }
        annotations.extend(self.canary_annotations.clone());
        if let Some(header) = header {
            for key in HEADER_KEYS {
                annotations.remove(&self.annotation(key));
            }
            annotations.extend(header.clone());
        }
        annotations.insert(self.annotation("canary"), "true".to_string());
        annotations.insert(self.annotation("canary-weight"), weight.to_string());
        if let Some(total) = self.weight_total {
            annotations.insert(self.annotation("canary-weight-total"), total.to_string());
        }
        annotations
    }

    /// The annotations of the header route in `routes` (validation allows one, with one match);
    /// a mirror route is refused, ingress-nginx has none for a canary.
    fn header_annotations(
        &self,
        routes: &[ActiveRoute],
    ) -> Result<Option<HeaderAnnotations>, TrafficError> {
        let unsupported = |route: &ActiveRoute| TrafficError::RouteUnsupported {
            router: "nginx".to_string(),
            route: route.name().to_string(),
        };
        let mut header = None;
        for route in routes {
            let ActiveRoute::Header(h) = route else {
                return Err(unsupported(route));
            };
            let ([m], None) = (h.matches.as_slice(), header.as_ref()) else {
                return Err(unsupported(route));
            };
            let value = m
                .header_value
                .as_ref()
                .ok_or_else(|| unsupported(route))?
                .resolve()
                .map_err(|_| unsupported(route))?;
            let (key, value) = match value {
                ValueMatch::Exact(v) => ("canary-by-header-value", v),
                ValueMatch::Prefix(p) => (
                    "canary-by-header-pattern",
                    format!("^{}.*", regex::escape(&p)),
                ),
                ValueMatch::Regex(r) => ("canary-by-header-pattern", r),
            };
            header = Some(HeaderAnnotations::from([
                (HEADER_ROUTE_ANNOTATION.to_string(), h.name.clone()),
                (self.annotation("canary-by-header"), m.header_name.clone()),
                (self.annotation(key), value),
            ]));
        }
        Ok(header)
    }

    /// The managed header route's annotations on a live canary Ingress, if it carries one.
    fn live_header(&self, ingress: &Ingress) -> Option<HeaderAnnotations> {
        let annotations = ingress.annotations();
        let name = annotations.get(HEADER_ROUTE_ANNOTATION)?;
        let mut header =
            HeaderAnnotations::from([(HEADER_ROUTE_ANNOTATION.to_string(), name.clone())]);
        for key in HEADER_KEYS.map(|k| self.annotation(k)) {
            if let Some(value) = annotations.get(&key) {
                header.insert(key, value.clone());
            }
        }
        Some(header)
    }

    fn annotation(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }

    fn decode(&self, key: &ObjectKey, value: &Value) -> Result<Ingress, TrafficError> {
        serde_json::from_value(value.clone()).map_err(|e| TrafficError::Malformed {
            key: Box::new(key.clone()),
            reason: format!("not an Ingress: {e}"),
        })
    }

    /// The stable Ingress of `pair`; an error when it does not exist.
    fn live_stable(&self, pair: &IngressPair, live: &LiveObjects) -> Result<Ingress, TrafficError> {
        let value = live
            .get(&pair.stable)
            .ok_or_else(|| TrafficError::NotFound {
                key: Box::new(pair.stable.clone()),
            })?;
        self.decode(&pair.stable, value)
    }

    /// The live canary Ingress of `pair`, when it exists; an error when it is not this
    /// Rollout's.
    fn live_canary(
        &self,
        pair: &IngressPair,
        live: &LiveObjects,
    ) -> Result<Option<Ingress>, TrafficError> {
        let Some(value) = live.get(&pair.canary) else {
            return Ok(None);
        };
        let ingress = self.decode(&pair.canary, value)?;
        if !self.owns(&ingress) {
            return Err(TrafficError::NotOwned {
                key: Box::new(pair.canary.clone()),
                rollout: self.rollout.clone(),
            });
        }
        Ok(Some(ingress))
    }

    fn owns(&self, ingress: &Ingress) -> bool {
        ingress
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && o.uid == self.owner.uid)
    }

    /// Whether the live canary already is `desired`: same spec, same values for the annotations
    /// Sluice writes, and no stale annotation of Sluice's left over (a `<prefix>/...` one, or one
    /// its last apply set, such as a key since removed from `canaryIngressAnnotations`).
    fn up_to_date(&self, live: &Ingress, desired: &Ingress) -> bool {
        let prefix = format!("{}/", self.prefix);
        let wanted = desired.annotations();
        let applied = applied_annotation_keys(live);
        let managed: BTreeMap<&String, &String> = live
            .annotations()
            .iter()
            .filter(|(k, _)| {
                k.starts_with(&prefix)
                    || *k == HEADER_ROUTE_ANNOTATION
                    || wanted.contains_key(*k)
                    || applied.contains(k.as_str())
            })
            .collect();
        live.spec == desired.spec && managed == wanted.iter().collect()
    }

    /// The write that makes `pair`'s canary Ingress `desired`; none when it already is.
    fn write(
        &self,
        pair: &IngressPair,
        current: Option<&Ingress>,
        desired: &Ingress,
    ) -> Result<Option<TrafficWrite>, TrafficError> {
        if current.is_some_and(|c| self.up_to_date(c, desired)) {
            return Ok(None);
        }
        let body = serde_json::to_value(desired).map_err(|e| TrafficError::Malformed {
            key: Box::new(pair.canary.clone()),
            reason: format!("cannot serialize: {e}"),
        })?;
        Ok(Some(TrafficWrite::Apply {
            key: pair.canary.clone(),
            body,
        }))
    }

    /// The write that puts `pair`'s canary Ingress at `canary_weight`, keeping its header route.
    fn desired_for(
        &self,
        pair: &IngressPair,
        live: &LiveObjects,
        canary_weight: i32,
    ) -> Result<Option<TrafficWrite>, TrafficError> {
        let stable = self.live_stable(pair, live)?;
        let current = self.live_canary(pair, live)?;
        let header = current.as_ref().and_then(|c| self.live_header(c));
        let desired =
            self.build_canary_ingress_with(pair, &stable, canary_weight, header.as_ref())?;
        // No canary Ingress already means weight 0: creating one to say so again would leave it
        // behind in the steady state, where it must not exist (C3).
        if current.is_none() && canary_weight == 0 {
            return Ok(None);
        }
        self.write(pair, current.as_ref(), &desired)
    }

    /// The write that leaves `header` (or none) on `pair`'s canary Ingress at its live weight.
    fn routes_for(
        &self,
        pair: &IngressPair,
        live: &LiveObjects,
        header: Option<&HeaderAnnotations>,
    ) -> Result<Option<TrafficWrite>, TrafficError> {
        let current = self.live_canary(pair, live)?;
        let live_header = current.as_ref().and_then(|c| self.live_header(c));
        if header.is_none() && live_header.is_none() {
            return Ok(None);
        }
        let stable = self.live_stable(pair, live)?;
        let weight = match &current {
            Some(ingress) => ingress_canary_weight(ingress, &self.prefix)?,
            None => 0,
        };
        if header.is_none() && weight == 0 {
            // It was there for the header only: at weight 0 no canary Ingress is the steady
            // state (C3), and a promotion at weight 0 writes no weight that would remove it.
            return Ok(Some(TrafficWrite::Delete {
                key: pair.canary.clone(),
            }));
        }
        let desired = self.build_canary_ingress_with(pair, &stable, weight, header)?;
        self.write(pair, current.as_ref(), &desired)
    }
}

/// The annotation keys of `ingress` that Sluice's last server-side apply set (its
/// `managedFields` entry), so that one no longer wanted is noticed and removed by the next apply.
fn applied_annotation_keys(ingress: &Ingress) -> BTreeSet<String> {
    ingress
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|f| f.manager.as_deref() == Some(FIELD_MANAGER))
        .filter_map(|f| f.fields_v1.as_ref())
        .filter_map(|fields| fields.0.pointer("/f:metadata/f:annotations")?.as_object())
        .flat_map(|annotations| annotations.keys())
        .filter_map(|key| key.strip_prefix("f:").map(str::to_owned))
        .collect()
}

impl TrafficRouter for NginxRouter {
    fn kind(&self) -> RouterKind {
        RouterKind::Nginx
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
        check_weight_out_of(canary_weight, self.max_weight())?;
        let mut writes = Vec::new();
        for pair in &self.pairs {
            writes.extend(self.desired_for(pair, live, canary_weight)?);
        }
        Ok(writes)
    }

    /// The highest weight of the canary Ingresses (0 for one that does not exist: all its
    /// traffic on its stable Ingress): what the canary receives at most through any of them.
    fn live_weight(&self, live: &LiveObjects) -> Result<Option<i32>, TrafficError> {
        let mut highest = 0;
        for pair in &self.pairs {
            if let Some(ingress) = self.live_canary(pair, live)? {
                highest = highest.max(ingress_canary_weight(&ingress, &self.prefix)?);
            }
        }
        Ok(Some(highest))
    }

    /// A header route is each canary Ingress's `canary-by-header*` annotations, at its live
    /// weight (0 when there is no canary Ingress yet: it is created for the header alone).
    fn managed_routes(
        &self,
        live: &LiveObjects,
        routes: &[ActiveRoute],
    ) -> Result<Vec<TrafficWrite>, TrafficError> {
        let header = self.header_annotations(routes)?;
        let mut writes = Vec::new();
        for pair in &self.pairs {
            writes.extend(self.routes_for(pair, live, header.as_ref())?);
        }
        Ok(writes)
    }

    /// Deletes the canary Ingresses: after promotion the stable Ingresses serve the new pods.
    fn after_promotion(&self, live: &LiveObjects) -> Result<Vec<TrafficWrite>, TrafficError> {
        let mut writes = Vec::new();
        for pair in &self.pairs {
            match self.live_canary(pair, live) {
                Ok(Some(_)) => writes.push(TrafficWrite::Delete {
                    key: pair.canary.clone(),
                }),
                // Absent, or someone else's Ingress: nothing of ours to remove.
                Ok(None) | Err(TrafficError::NotOwned { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(writes)
    }
}

/// The weight an Ingress receives as an NGINX canary, out of its `<prefix>/canary-weight-total`
/// (100 without): `<prefix>/canary-weight` when `<prefix>/canary` is `"true"`, 0 otherwise
/// (ingress-nginx's defaults).
pub fn ingress_canary_weight(ingress: &Ingress, prefix: &str) -> Result<i32, TrafficError> {
    let annotations = ingress.annotations();
    if annotations
        .get(&format!("{prefix}/canary"))
        .map(String::as_str)
        != Some("true")
    {
        return Ok(0);
    }
    let malformed = |key: &str, value: &str, expected: String| TrafficError::Malformed {
        key: Box::new(ingress_key(
            &ingress.namespace().unwrap_or_default(),
            &ingress.name_any(),
        )),
        reason: format!("annotation {key} is {value:?}, not {expected}"),
    };
    let total_key = format!("{prefix}/canary-weight-total");
    let total = match annotations.get(&total_key) {
        None => DEFAULT_MAX_TRAFFIC_WEIGHT,
        Some(value) => value
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| malformed(&total_key, value, "a positive total".to_string()))?,
    };
    let key = format!("{prefix}/canary-weight");
    let Some(value) = annotations.get(&key) else {
        return Ok(0);
    };
    value
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|w| (0..=total).contains(w))
        .ok_or_else(|| malformed(&key, value, format!("a weight between 0 and {total}")))
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    fn rollout() -> Rollout {
        let mut r: Rollout = serde_saphyr::from_str(include_str!(
            "../../../tests/fixtures/rollout/canary-nginx.yaml"
        ))
        .unwrap();
        r.metadata.namespace = Some("shop".into());
        r.metadata.uid = Some("uid-1".into());
        r
    }

    fn router() -> NginxRouter {
        let r = rollout();
        let config = r
            .spec
            .canary()
            .unwrap()
            .traffic_routing
            .as_ref()
            .unwrap()
            .nginx
            .clone()
            .unwrap();
        NginxRouter::from_rollout(&r, &config).unwrap()
    }

    /// The stable Ingress: two hosts, a path to another service, TLS, class, other annotations.
    fn stable() -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "web",
                "namespace": "shop",
                "resourceVersion": "7",
                "annotations": {
                    "kubernetes.io/ingress.class": "nginx",
                    "custom.nginx.org/rewrite-target": "/",
                },
            },
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["web.example.com"], "secretName": "web-tls"}],
                "rules": [
                    {"host": "web.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web-stable", "port": {"number": 80}}}},
                        {"path": "/static", "pathType": "Prefix",
                         "backend": {"service": {"name": "cdn", "port": {"number": 80}}}},
                    ]}},
                    {"host": "other.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "other", "port": {"name": "http"}}}},
                    ]}},
                    {"host": "www.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Exact",
                         "backend": {"service": {"name": "web-stable", "port": {"name": "http"}}}},
                    ]}},
                ],
            },
        })
    }

    fn expected_canary(weight: i32) -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "web-web-canary",
                "namespace": "shop",
                "annotations": {
                    "custom.nginx.org/canary": "true",
                    "custom.nginx.org/canary-weight": weight.to_string(),
                    "custom.nginx.org/canary-by-header": "X-Canary",
                    "custom.nginx.org/canary-by-header-value": "iwantsit",
                    "kubernetes.io/ingress.class": "nginx",
                },
                "ownerReferences": [{
                    "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "name": "web",
                    "uid": "uid-1", "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["web.example.com"], "secretName": "web-tls"}],
                "rules": [
                    {"host": "web.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web-canary", "port": {"number": 80}}}},
                    ]}},
                    {"host": "www.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Exact",
                         "backend": {"service": {"name": "web-canary", "port": {"name": "http"}}}},
                    ]}},
                ],
            },
        })
    }

    fn live_with(canary: Option<Value>) -> LiveObjects {
        let r = router();
        let mut live = LiveObjects::from([(r.ingresses()[0].stable.clone(), stable())]);
        if let Some(c) = canary {
            live.insert(r.ingresses()[0].canary.clone(), c);
        }
        live
    }

    #[test]
    fn names_and_reads() {
        let r = router();
        assert_eq!(canary_ingress_name("web", "web"), "web-web-canary");
        assert_eq!(
            r.reads(),
            vec![
                ingress_key("shop", "web"),
                ingress_key("shop", "web-web-canary")
            ]
        );
    }

    #[test]
    fn canary_ingress_per_weight() {
        // Without a canary Ingress the weight already is 0: nothing to create.
        assert_eq!(router().desired(&live_with(None), 0), Ok(vec![]));
        for weight in [0, 20, 50, 100] {
            let from = if weight == 0 {
                // Back to 0 (e.g. an abort) rewrites the existing canary Ingress.
                live_with(Some(expected_canary(20)))
            } else {
                live_with(None)
            };
            let writes = router().desired(&from, weight).unwrap();
            let [TrafficWrite::Apply { key, body }] = writes.as_slice() else {
                panic!("{weight}: {writes:?}");
            };
            assert_eq!(key, &ingress_key("shop", "web-web-canary"));
            assert_eq!(body, &expected_canary(weight), "weight {weight}");
            // Written as is, it reads back as the weight and needs no further write.
            let live = live_with(Some(body.clone()));
            assert_eq!(router().live_weight(&live), Ok(Some(weight)));
            assert_eq!(router().desired(&live, weight), Ok(vec![]));
            // Another weight rewrites it.
            assert_eq!(
                router().desired(&live, (weight + 10) % 100).unwrap().len(),
                1
            );
        }
    }

    #[test]
    fn the_stable_ingress_is_never_written_and_default_prefix_applies() {
        let mut r = router();
        r.prefix = "nginx.ingress.kubernetes.io".into();
        r.additional_annotations.clear();
        let writes = r.desired(&live_with(None), 30).unwrap();
        assert!(writes.iter().all(|w| matches!(w,
            TrafficWrite::Apply { key, .. } if key.name == "web-web-canary")));
        let [TrafficWrite::Apply { body, .. }] = writes.as_slice() else {
            panic!("{writes:?}");
        };
        assert_eq!(
            body["metadata"]["annotations"],
            json!({
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "30",
                "kubernetes.io/ingress.class": "nginx",
            })
        );
    }

    #[test]
    fn additional_annotations_cannot_override_the_weight() {
        let mut r = router();
        r.additional_annotations
            .insert("canary-weight".into(), "99".into());
        let stable: Ingress = serde_json::from_value(stable()).unwrap();
        let canary = r
            .build_canary_ingress(&r.ingresses()[0], &stable, 10)
            .unwrap();
        assert_eq!(ingress_canary_weight(&canary, "custom.nginx.org"), Ok(10));
    }

    #[test]
    fn stale_annotation_or_changed_spec_forces_a_write() {
        let mut stale = expected_canary(20);
        stale["metadata"]["annotations"]["custom.nginx.org/canary-by-cookie"] = json!("c");
        assert_eq!(
            router().desired(&live_with(Some(stale)), 20).unwrap().len(),
            1
        );
        let mut old_spec = expected_canary(20);
        old_spec["spec"]["tls"] = json!([]);
        assert_eq!(
            router()
                .desired(&live_with(Some(old_spec)), 20)
                .unwrap()
                .len(),
            1
        );
        // Annotations of other tools on the canary Ingress do not matter.
        let mut foreign = expected_canary(20);
        foreign["metadata"]["annotations"]["example.com/note"] = json!("x");
        assert_eq!(router().desired(&live_with(Some(foreign)), 20), Ok(vec![]));
    }

    #[test]
    fn errors_are_explicit() {
        let r = router();
        assert_eq!(
            r.desired(&LiveObjects::new(), 20).unwrap_err().to_string(),
            "Ingress shop/web not found"
        );
        let mut no_stable_backend = stable();
        no_stable_backend["spec"]["rules"] = json!([{"http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "x"}}}]}}]);
        let live = LiveObjects::from([(r.ingresses()[0].stable.clone(), no_stable_backend)]);
        assert_eq!(
            r.desired(&live, 20).unwrap_err().to_string(),
            "Ingress shop/web: no backend uses the stable Service web-stable, so there is nothing to split"
        );
        let mut foreign = expected_canary(20);
        foreign["metadata"]["ownerReferences"][0]["uid"] = json!("someone-else");
        let live = live_with(Some(foreign));
        assert_eq!(
            r.desired(&live, 20).unwrap_err().to_string(),
            "Ingress shop/web-web-canary exists and is not controlled by Rollout web; refusing to take it over"
        );
        // Never deleted either.
        assert_eq!(r.after_promotion(&live), Ok(vec![]));
        assert_eq!(
            r.desired(&live_with(None), -5),
            Err(TrafficError::WeightOutOfRange {
                weight: -5,
                max_weight: 100
            })
        );
    }

    #[test]
    fn default_backend_is_retargeted() {
        let mut only_default = stable();
        only_default["spec"] =
            json!({"defaultBackend": {"service": {"name": "web-stable", "port": {"number": 80}}}});
        let r = router();
        let stable: Ingress = serde_json::from_value(only_default).unwrap();
        let canary = r
            .build_canary_ingress(&r.ingresses()[0], &stable, 5)
            .unwrap();
        let spec = serde_json::to_value(canary.spec).unwrap();
        assert_eq!(
            spec,
            json!({"defaultBackend": {"service": {"name": "web-canary", "port": {"number": 80}}}})
        );
    }

    fn header_route(name: &str, value: crate::api::routes::StringMatch) -> ActiveRoute {
        ActiveRoute::Header(crate::api::routes::SetHeaderRoute {
            name: name.into(),
            matches: vec![crate::api::routes::HeaderRoutingMatch {
                header_name: "X-Beta".into(),
                header_value: Some(value),
            }],
        })
    }

    fn exact(v: &str) -> crate::api::routes::StringMatch {
        crate::api::routes::StringMatch {
            exact: Some(v.into()),
            ..Default::default()
        }
    }

    fn applied(writes: Result<Vec<TrafficWrite>, TrafficError>) -> Value {
        let writes = writes.unwrap();
        let [TrafficWrite::Apply { key, body }] = writes.as_slice() else {
            panic!("{writes:?}");
        };
        assert_eq!(key, &ingress_key("shop", "web-web-canary"));
        body.clone()
    }

    /// The canary Ingress at `weight` carrying the header route `beta` on `X-Beta: yes`.
    fn canary_with_header(weight: i32) -> Value {
        let mut canary = expected_canary(weight);
        let annotations = canary["metadata"]["annotations"].as_object_mut().unwrap();
        annotations.remove("custom.nginx.org/canary-by-header-value");
        annotations.insert("custom.nginx.org/canary-by-header".into(), json!("X-Beta"));
        annotations.insert(
            "custom.nginx.org/canary-by-header-value".into(),
            json!("yes"),
        );
        annotations.insert(HEADER_ROUTE_ANNOTATION.into(), json!("beta"));
        canary
    }

    #[test]
    fn a_header_route_is_the_canary_ingress_header_annotations() {
        let r = router();
        let route = [header_route("beta", exact("yes"))];
        // No canary Ingress yet: created at weight 0 for the header alone, the route's header
        // replacing additionalIngressAnnotations' one.
        let body = applied(r.managed_routes(&live_with(None), &route));
        assert_eq!(body, canary_with_header(0));
        // At the live weight, and nothing more to write once it is there.
        let body = applied(r.managed_routes(&live_with(Some(expected_canary(30))), &route));
        assert_eq!(body, canary_with_header(30));
        assert_eq!(
            r.managed_routes(&live_with(Some(canary_with_header(30))), &route),
            Ok(vec![])
        );
        // A weight change keeps the header route.
        let body = applied(r.desired(&live_with(Some(canary_with_header(30))), 60));
        assert_eq!(body, canary_with_header(60));
        assert_eq!(
            r.desired(&live_with(Some(canary_with_header(60))), 60),
            Ok(vec![])
        );
        // Removing it brings additionalIngressAnnotations' header back, at the weight in force.
        let body = applied(r.managed_routes(&live_with(Some(canary_with_header(60))), &[]));
        assert_eq!(body, expected_canary(60));
        assert_eq!(
            r.managed_routes(&live_with(Some(expected_canary(60))), &[]),
            Ok(vec![])
        );
        assert_eq!(r.managed_routes(&live_with(None), &[]), Ok(vec![]));
        // At weight 0 the canary Ingress was there for the header only: it goes with it.
        assert_eq!(
            r.managed_routes(&live_with(Some(canary_with_header(0))), &[]),
            Ok(vec![TrafficWrite::Delete {
                key: ingress_key("shop", "web-web-canary")
            }])
        );
        // Promotion deletes the canary Ingress, header and all.
        assert_eq!(
            r.after_promotion(&live_with(Some(canary_with_header(0)))),
            Ok(vec![TrafficWrite::Delete {
                key: ingress_key("shop", "web-web-canary")
            }])
        );
    }

    #[test]
    fn header_match_kinds_map_to_ingress_nginx_annotations() {
        let r = router();
        let prefix = crate::api::routes::StringMatch {
            prefix: Some("v1.".into()),
            ..Default::default()
        };
        let regex = crate::api::routes::StringMatch {
            regex: Some("^(a|b)$".into()),
            ..Default::default()
        };
        for (value, pattern) in [(prefix, "^v1\\..*"), (regex, "^(a|b)$")] {
            let body = applied(r.managed_routes(&live_with(None), &[header_route("beta", value)]));
            let annotations = &body["metadata"]["annotations"];
            assert_eq!(
                annotations["custom.nginx.org/canary-by-header-pattern"],
                json!(pattern)
            );
            // The additional exact value would win over the pattern: it is left out.
            assert_eq!(
                annotations.get("custom.nginx.org/canary-by-header-value"),
                None
            );
        }
    }

    #[test]
    fn mirror_routes_and_several_headers_are_refused() {
        let r = router();
        let mirror = ActiveRoute::Mirror(crate::api::routes::SetMirrorRoute {
            name: "m".into(),
            matches: vec![Default::default()],
            percentage: None,
        });
        assert_eq!(
            r.managed_routes(&live_with(None), &[mirror])
                .unwrap_err()
                .to_string(),
            "the nginx router cannot set managed route \"m\" (setHeaderRoute/setMirrorRoute)"
        );
        let two = [header_route("a", exact("1")), header_route("b", exact("2"))];
        assert!(matches!(
            r.managed_routes(&live_with(None), &two),
            Err(TrafficError::RouteUnsupported { .. })
        ));
    }

    #[test]
    fn removed_after_promotion() {
        let r = router();
        assert_eq!(
            r.after_promotion(&live_with(Some(expected_canary(100)))),
            Ok(vec![TrafficWrite::Delete {
                key: ingress_key("shop", "web-web-canary")
            }])
        );
        assert_eq!(r.after_promotion(&live_with(None)), Ok(vec![]));
        assert_eq!(r.live_weight(&live_with(None)), Ok(Some(0)));
    }

    #[test]
    fn live_weight_reads_ingress_nginx_annotations() {
        let ingress = |annotations: Value| -> Ingress {
            serde_json::from_value(json!({"metadata": {"name": "c", "annotations": annotations}}))
                .unwrap()
        };
        let p = "custom.nginx.org";
        let cases = [
            (
                json!({"custom.nginx.org/canary": "true", "custom.nginx.org/canary-weight": "35"}),
                35,
            ),
            (json!({"custom.nginx.org/canary": "true"}), 0),
            (
                json!({"custom.nginx.org/canary": "false", "custom.nginx.org/canary-weight": "35"}),
                0,
            ),
            (
                json!({"nginx.ingress.kubernetes.io/canary": "true",
                    "nginx.ingress.kubernetes.io/canary-weight": "35"}),
                0,
            ),
        ];
        for (annotations, weight) in cases {
            assert_eq!(
                ingress_canary_weight(&ingress(annotations.clone()), p),
                Ok(weight),
                "{annotations}"
            );
        }
        for bad in ["x", "101", "-1"] {
            let err = ingress_canary_weight(
                &ingress(json!({"custom.nginx.org/canary": "true", "custom.nginx.org/canary-weight": bad})),
                p,
            )
            .unwrap_err();
            assert!(
                err.to_string().contains("not a weight between 0 and 100"),
                "{err}"
            );
        }
    }

    #[test]
    fn from_rollout_needs_identity_and_services() {
        let config = NginxTrafficRouting {
            stable_ingress: "web".into(),
            ..Default::default()
        };
        let mut no_uid = rollout();
        no_uid.metadata.uid = None;
        assert!(
            NginxRouter::from_rollout(&no_uid, &config)
                .unwrap_err()
                .to_string()
                .contains("needs an owner")
        );
        let empty = NginxTrafficRouting::default();
        assert!(
            NginxRouter::from_rollout(&rollout(), &empty)
                .unwrap_err()
                .to_string()
                .contains("stableIngress is empty")
        );
        let long = NginxTrafficRouting {
            stable_ingress: "x".repeat(250),
            ..Default::default()
        };
        assert!(NginxRouter::from_rollout(&rollout(), &long).is_err());
    }

    /// The router of the fixture with `edit` applied to its `trafficRouting.nginx`.
    fn router_with(edit: impl FnOnce(&mut NginxTrafficRouting)) -> NginxRouter {
        let r = rollout();
        let mut config = r
            .spec
            .canary()
            .unwrap()
            .traffic_routing
            .as_ref()
            .unwrap()
            .nginx
            .clone()
            .unwrap();
        edit(&mut config);
        NginxRouter::from_rollout(&r, &config).unwrap()
    }

    /// `stable()` renamed `name`.
    fn stable_named(name: &str) -> Value {
        let mut ingress = stable();
        ingress["metadata"]["name"] = json!(name);
        ingress
    }

    fn several() -> NginxRouter {
        router_with(|c| {
            c.stable_ingress.clear();
            c.stable_ingresses = Some(vec!["web".into(), "web-internal".into(), "web".into()]);
        })
    }

    #[test]
    fn several_stable_ingresses_get_one_canary_ingress_each_at_the_same_weight() {
        let r = several();
        // Named once each, in order.
        assert_eq!(
            r.reads(),
            vec![
                ingress_key("shop", "web"),
                ingress_key("shop", "web-web-canary"),
                ingress_key("shop", "web-internal"),
                ingress_key("shop", "web-web-internal-canary"),
            ]
        );
        let mut live = LiveObjects::from([
            (ingress_key("shop", "web"), stable()),
            (
                ingress_key("shop", "web-internal"),
                stable_named("web-internal"),
            ),
        ]);
        assert_eq!(r.desired(&live, 0), Ok(vec![]));
        let writes = r.desired(&live, 30).unwrap();
        let names: Vec<&str> = writes
            .iter()
            .map(|w| match w {
                TrafficWrite::Apply { key, .. } | TrafficWrite::Delete { key } => key.name.as_str(),
            })
            .collect();
        assert_eq!(names, ["web-web-canary", "web-web-internal-canary"]);
        for write in &writes {
            let TrafficWrite::Apply { key, body } = write else {
                panic!("{write:?}");
            };
            assert_eq!(body["metadata"]["name"], json!(key.name));
            assert_eq!(
                body["metadata"]["annotations"]["custom.nginx.org/canary-weight"],
                json!("30")
            );
            assert_eq!(
                body["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
                json!("web-canary")
            );
            live.insert(key.clone(), body.clone());
        }
        assert_eq!(r.desired(&live, 30), Ok(vec![]));
        assert_eq!(r.live_weight(&live), Ok(Some(30)));
        // One canary Ingress behind (e.g. deleted by hand) is the only one rewritten.
        live.remove(&ingress_key("shop", "web-web-internal-canary"));
        let writes = r.desired(&live, 30).unwrap();
        assert!(
            matches!(writes.as_slice(), [TrafficWrite::Apply { key, .. }] if key.name == "web-web-internal-canary"),
            "{writes:?}"
        );
        // Promotion removes those that exist.
        assert_eq!(
            r.after_promotion(&live),
            Ok(vec![TrafficWrite::Delete {
                key: ingress_key("shop", "web-web-canary")
            }])
        );
        // A missing stable Ingress is named.
        live.remove(&ingress_key("shop", "web-internal"));
        assert_eq!(
            r.desired(&live, 50).unwrap_err().to_string(),
            "Ingress shop/web-internal not found"
        );
    }

    #[test]
    fn a_header_route_goes_on_every_canary_ingress() {
        let r = several();
        let live = LiveObjects::from([
            (ingress_key("shop", "web"), stable()),
            (
                ingress_key("shop", "web-internal"),
                stable_named("web-internal"),
            ),
        ]);
        let writes = r
            .managed_routes(&live, &[header_route("beta", exact("yes"))])
            .unwrap();
        assert_eq!(writes.len(), 2);
        for write in writes {
            let TrafficWrite::Apply { body, .. } = write else {
                panic!("{write:?}");
            };
            assert_eq!(
                body["metadata"]["annotations"][HEADER_ROUTE_ANNOTATION],
                json!("beta")
            );
        }
    }

    #[test]
    fn canary_ingress_annotations_are_written_as_is_over_additional_ones_never_over_the_weight() {
        let r = router_with(|c| {
            c.canary_ingress_annotations = BTreeMap::from([
                (
                    "my-custom-annotation.mygroup.com/key".into(),
                    "value".into(),
                ),
                // Wins over additionalIngressAnnotations' value.
                (
                    "custom.nginx.org/canary-by-header-value".into(),
                    "always".into(),
                ),
                // As in Argo, even the class (set first) may be overridden...
                (
                    "kubernetes.io/ingress.class".into(),
                    "nginx-internal".into(),
                ),
                // ...but never the canary annotations Sluice sets last.
                ("custom.nginx.org/canary-weight".into(), "99".into()),
                ("custom.nginx.org/canary".into(), "false".into()),
            ]);
            // Argo adds the prefix only to keys that lack it.
            c.additional_ingress_annotations
                .insert("custom.nginx.org/canary-by-cookie".into(), "beta".into());
        });
        let body = applied(r.desired(&live_with(None), 20));
        assert_eq!(
            body["metadata"]["annotations"],
            json!({
                "custom.nginx.org/canary": "true",
                "custom.nginx.org/canary-weight": "20",
                "custom.nginx.org/canary-by-header": "X-Canary",
                "custom.nginx.org/canary-by-header-value": "always",
                "custom.nginx.org/canary-by-cookie": "beta",
                "my-custom-annotation.mygroup.com/key": "value",
                "kubernetes.io/ingress.class": "nginx-internal",
            })
        );
        // Written as is, nothing more to write.
        assert_eq!(r.desired(&live_with(Some(body)), 20), Ok(vec![]));
    }

    #[test]
    fn a_canary_annotation_no_longer_declared_is_removed_by_a_new_apply() {
        let r = router();
        let mut live = expected_canary(20);
        live["metadata"]["annotations"]["my-custom-annotation.mygroup.com/key"] = json!("value");
        // Another tool's annotation is left alone...
        live["metadata"]["annotations"]["example.com/note"] = json!("x");
        assert_eq!(r.desired(&live_with(Some(live.clone())), 20), Ok(vec![]));
        // ...but one that Sluice's last apply set, and the spec no longer declares, is stale.
        live["metadata"]["managedFields"] = json!([{
            "manager": "sluice-rollout", "operation": "Apply", "apiVersion": "networking.k8s.io/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:annotations": {
                "f:custom.nginx.org/canary": {}, "f:my-custom-annotation.mygroup.com/key": {}}}},
        }, {
            "manager": "kubectl", "operation": "Update", "apiVersion": "networking.k8s.io/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:annotations": {"f:example.com/note": {}}}},
        }]);
        assert_eq!(
            applied(r.desired(&live_with(Some(live)), 20)),
            expected_canary(20)
        );
    }

    #[test]
    fn max_traffic_weight_is_written_as_canary_weight_total() {
        let mut r = router();
        r.weight_total = Some(1000);
        let body = applied(r.desired(&live_with(None), 250));
        let annotations = &body["metadata"]["annotations"];
        assert_eq!(annotations["custom.nginx.org/canary-weight"], json!("250"));
        assert_eq!(
            annotations["custom.nginx.org/canary-weight-total"],
            json!("1000")
        );
        let live = live_with(Some(body));
        assert_eq!(r.live_weight(&live), Ok(Some(250)));
        assert_eq!(r.desired(&live, 250), Ok(vec![]));
        assert_eq!(
            r.desired(&live_with(None), 1001),
            Err(TrafficError::WeightOutOfRange {
                weight: 1001,
                max_weight: 1000
            })
        );
        // Without maxTrafficWeight the total goes (a stale prefixed annotation forces a write).
        let mut without = router();
        without.weight_total = None;
        let writes = without.desired(&live, 25).unwrap();
        let [TrafficWrite::Apply { body, .. }] = writes.as_slice() else {
            panic!("{writes:?}");
        };
        assert_eq!(
            body["metadata"]["annotations"].get("custom.nginx.org/canary-weight-total"),
            None
        );
        // ingress-nginx reads the weight out of the total.
        let ingress: Ingress = serde_json::from_value(json!({"metadata": {"name": "c",
            "annotations": {"custom.nginx.org/canary": "true",
                "custom.nginx.org/canary-weight": "5000",
                "custom.nginx.org/canary-weight-total": "10000"}}}))
        .unwrap();
        assert_eq!(
            ingress_canary_weight(&ingress, "custom.nginx.org"),
            Ok(5000)
        );
    }
}
