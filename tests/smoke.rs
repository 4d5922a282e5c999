//! Smoke test of the local cluster (`e2e/cluster/up`): the real API server accepts our CRDs and
//! validates them, workloads run on the KWOK node, Gateway API is served, and Prometheus scrapes the
//! traffic emulator, which follows the live HTTPRoute split.

mod common;

use std::time::Duration;

use common::{
    E2eEnv, TestNamespace, apply_crds, prometheus_query, wait_for, wait_replica_sets_ready,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Api, Client, Resource};
use serde_json::json;
use sluice::api::Rollout;

const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn local_cluster_runs_workloads_validates_crds_and_feeds_prometheus() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "smoke").await;

    deployment_pods_follow_scale(&client, &ns.name).await;
    create_services_and_route(&client, &ns.name).await;
    let rollout = rollout_is_accepted_and_read_back(&client, &ns.name).await;
    invalid_rollout_is_rejected(&client, &ns.name).await;
    traffic_follows_the_route_into_prometheus(&client, &env, &ns.name, &rollout).await;

    ns.delete().await;
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("valid object")
}

async fn ready_pods(pods: &Api<Pod>, selector: &str) -> usize {
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list pods");
    list.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count()
}

async fn deployment_pods_follow_scale(client: &Client, ns: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deployment: Deployment = from_json(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "example/web:1.0"}]}
            }
        }
    }));
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    wait_for("3 ready pods", TIMEOUT, || async {
        (ready_pods(&pods, "app=web").await == 3).then_some(())
    })
    .await;

    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("scale deployment");
    wait_for("2 of 3 pods gone", TIMEOUT, || async {
        let all = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .expect("list pods");
        (all.items.len() == 1).then_some(())
    })
    .await;
}

fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ))
}

async fn create_services_and_route(client: &Client, ns: &str) {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    for (name, hash) in [
        ("smoke-stable", "stablehash"),
        ("smoke-canary", "canaryhash"),
    ] {
        let svc: Service = from_json(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name},
            "spec": {
                "selector": {"app": "smoke", "rollouts-pod-template-hash": hash},
                "ports": [{"port": 80, "targetPort": 8080}]
            }
        }));
        services
            .create(&PostParams::default(), &svc)
            .await
            .expect("create service");
    }
    let routes: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &http_route_resource());
    let route: DynamicObject = from_json(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "smoke"},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [{"backendRefs": [
                {"name": "smoke-stable", "port": 80, "weight": 70},
                {"name": "smoke-canary", "port": 80, "weight": 30}
            ]}]
        }
    }));
    let created = routes
        .create(&PostParams::default(), &route)
        .await
        .expect("API server serves HTTPRoute");
    assert_eq!(
        created.data["spec"]["rules"][0]["backendRefs"][1]["weight"],
        30
    );
}

async fn rollout_is_accepted_and_read_back(client: &Client, ns: &str) -> Rollout {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let rollout: Rollout = from_json(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "smoke"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "smoke"}},
            "template": {
                "metadata": {"labels": {"app": "smoke"}},
                "spec": {"containers": [{"name": "web", "image": "example/web:1.0"}]}
            },
            "strategy": {"canary": {
                "stableService": "smoke-stable",
                "canaryService": "smoke-canary",
                "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "smoke"}}},
                "steps": [{"setWeight": 30}, {"pause": {}}, {"setWeight": 100}]
            }}
        }
    }));
    let created = rollouts
        .create(&PostParams::default(), &rollout)
        .await
        .expect("API server accepts a valid Rollout");
    let read = rollouts.get("smoke").await.expect("read rollout back");
    assert_eq!(
        serde_json::to_value(&read.spec).unwrap(),
        serde_json::to_value(&rollout.spec).unwrap(),
        "the API server must keep every field of the spec"
    );
    assert_eq!(read.metadata.uid, created.metadata.uid);
    read
}

async fn invalid_rollout_is_rejected(client: &Client, ns: &str) {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let bad: Rollout = from_json(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "bad-weight"},
        "spec": {
            "selector": {"matchLabels": {"app": "bad"}},
            "template": {
                "metadata": {"labels": {"app": "bad"}},
                "spec": {"containers": [{"name": "web", "image": "example/web:1.0"}]}
            },
            "strategy": {"canary": {"steps": [{"setWeight": 150}]}}
        }
    }));
    match rollouts.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(status.message.contains("setWeight"), "{}", status.message);
        }
        other => panic!("setWeight 150 must be rejected by the schema, got {other:?}"),
    }
}

/// Two ReplicaSets owned by the Rollout back the stable and canary Services; the canary runs a `:bad`
/// image. The emulator splits requests 70/30 per the HTTPRoute, and Prometheus sees both revisions,
/// with 5xx only on the bad one.
async fn traffic_follows_the_route_into_prometheus(
    client: &Client,
    env: &E2eEnv,
    ns: &str,
    rollout: &Rollout,
) {
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let owner = rollout.controller_owner_ref(&()).expect("owner reference");
    for (hash, image) in [
        ("stablehash", "example/web:1.0"),
        ("canaryhash", "example/web:bad"),
    ] {
        let labels = json!({"app": "smoke", "rollouts-pod-template-hash": hash});
        let rs: ReplicaSet = from_json(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("smoke-{hash}"), "labels": labels, "ownerReferences": [owner]},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": image}]}
                }
            }
        }));
        replicasets
            .create(&PostParams::default(), &rs)
            .await
            .expect("create replicaset");
    }

    // Start counting only once both revisions' pods are Ready: until the emulator sees a Ready pod
    // behind a Service it answers 503 for that revision ("no endpoints"), which is start-up timing,
    // not the revision's behaviour.
    wait_replica_sets_ready(client, ns, &["smoke-stablehash", "smoke-canaryhash"], 1).await;

    let prometheus = env.get("PROMETHEUS_URL");
    let query = format!(
        "sum by (revision, code) (http_requests_total{{namespace=\"{ns}\", rollout=\"smoke\"}})"
    );
    // The emulator routes to a revision only once it has seen that revision's Ready pod, and never
    // goes back: from the first scrape where both revisions answered 200, every later request of the
    // healthy revision is served.
    let baseline = wait_for(
        "Prometheus to scrape a 200 from both revisions",
        TIMEOUT,
        || async {
            let result = prometheus_query(prometheus, &query).await;
            (count(&result, "stablehash", "200") > 0.0 && count(&result, "canaryhash", "200") > 0.0)
                .then_some(result)
        },
    )
    .await;
    let series = wait_for(
        "more traffic on both revisions, with errors on the bad one",
        TIMEOUT,
        || async {
            let result = prometheus_query(prometheus, &query).await;
            let grew = |revision: &str, code: &str| {
                count(&result, revision, code) > count(&baseline, revision, code)
            };
            (grew("stablehash", "200") && grew("canaryhash", "200") && grew("canaryhash", "500"))
                .then_some(result)
        },
    )
    .await;
    assert_eq!(
        server_errors(&series, "stablehash"),
        server_errors(&baseline, "stablehash"),
        "the healthy revision must not answer 5xx once its pod is Ready: before {baseline:?}, after {series:?}"
    );
    // Every revision has its 5xx series from its first request (at 0, so rate() sees the first
    // errors).
    assert!(
        series
            .iter()
            .any(|s| s["metric"]["revision"] == "stablehash" && s["metric"]["code"] == "500"),
        "the healthy revision's 500 series exists: {series:?}"
    );
}

/// The value of the `revision`/`code` series of a `sum by (revision, code)` result (0 when absent).
fn count(result: &[serde_json::Value], revision: &str, code: &str) -> f64 {
    result
        .iter()
        .filter(|s| s["metric"]["revision"] == revision && s["metric"]["code"] == code)
        .map(sample_value)
        .sum()
}

/// All 5xx answers of `revision` in a `sum by (revision, code)` result.
fn server_errors(result: &[serde_json::Value], revision: &str) -> f64 {
    result
        .iter()
        .filter(|s| {
            s["metric"]["revision"] == revision
                && s["metric"]["code"]
                    .as_str()
                    .is_some_and(|c| c.starts_with('5'))
        })
        .map(sample_value)
        .sum()
}

fn sample_value(series: &serde_json::Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
