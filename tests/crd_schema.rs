//! The CRDs on a real API server: every fixture manifest (Argo-style examples with only `apiVersion`
//! changed) is accepted and read back with its spec intact, and manifests the schema must refuse are
//! refused at create time with a message naming the problem.

mod common;

use std::path::PathBuf;

use common::{E2eEnv, TestNamespace, apply_crds};
use kube::api::{DynamicObject, GroupVersionKind, PostParams};
use kube::core::ApiResource;
use kube::{Api, Client};
use serde_json::{Value, json};

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("sluice.dev", "v1alpha1", kind))
}

fn api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    if kind == "ClusterAnalysisTemplate" {
        Api::all_with(client.clone(), &resource(kind))
    } else {
        Api::namespaced_with(client.clone(), ns, &resource(kind))
    }
}

fn fixtures() -> Vec<(PathBuf, Value)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    for group in ["rollout", "analysis", "application", "project"] {
        for entry in std::fs::read_dir(root.join(group)).expect("fixture dir") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read fixture");
            let value: Value =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path, value));
        }
    }
    assert!(
        out.len() >= 10,
        "expected the fixture set, found {}",
        out.len()
    );
    out
}

/// The object to create from a fixture: a fresh name (cluster-scoped names must not clash between
/// runs) and no status or owner references (those belong to controllers).
fn creatable(fixture: &Value, name: &str) -> DynamicObject {
    let mut object = fixture.clone();
    object["metadata"] = json!({ "name": name });
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    serde_json::from_value(object).expect("dynamic object")
}

#[tokio::test]
async fn every_fixture_is_accepted_and_read_back_unchanged() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "schema").await;

    for (i, (path, fixture)) in fixtures().into_iter().enumerate() {
        let kind = fixture["kind"].as_str().expect("kind").to_string();
        let name = format!("{}-fixture-{i}", ns.name);
        let api = api(&client, &ns.name, &kind);
        let created = api
            .create(&PostParams::default(), &creatable(&fixture, &name))
            .await
            .unwrap_or_else(|e| panic!("{}: API server refused it: {e}", path.display()));
        assert_eq!(
            created.data["spec"],
            fixture["spec"],
            "{}: the API server changed the spec (pruned or defaulted a field)",
            path.display()
        );
        if kind == "ClusterAnalysisTemplate" {
            api.delete(&name, &Default::default())
                .await
                .expect("delete cluster-scoped fixture");
        }
    }
    ns.delete().await;
}

fn pod_template() -> Value {
    json!({
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "x", "image": "example/x:1"}]}
    })
}

#[tokio::test]
async fn invalid_manifests_are_refused_with_a_message_naming_the_problem() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "schema-bad").await;

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "Rollout",
            json!({"selector": {"matchLabels": {"app": "x"}}, "template": pod_template(),
                   "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                   "strategy": {"canary": {}}}),
            "workloadRef",
        ),
        (
            "Rollout",
            json!({"selector": {"matchLabels": {"app": "x"}}, "template": pod_template(),
                   "strategy": {"canary": {"steps": [{"setWeight": 150}]}}}),
            "setWeight",
        ),
        (
            "Rollout",
            json!({"selector": {"matchLabels": {"app": "x"}}, "template": pod_template(),
                   "strategy": {"canary": {"steps": [{"setWeight": 10, "pause": {}}]}}}),
            "step",
        ),
        (
            "Rollout",
            json!({"selector": {"matchLabels": {"app": "x"}}, "template": pod_template(),
                   "strategy": {"canary": {}, "blueGreen": {"activeService": "a"}}}),
            "canary",
        ),
        (
            "AnalysisTemplate",
            json!({"metrics": [{"name": "m", "provider": {
                "prometheus": {"query": "up"}, "scrape": {"url": "http://127.0.0.1:1/metrics", "metric": "up"}}}]}),
            "provider",
        ),
        (
            "Application",
            json!({"source": {"repoURL": ""}, "destination": {"namespace": "x"}}),
            "repoURL",
        ),
        (
            "Application",
            json!({"sources": [{"repoURL": "https://git.example.com/a.git"}], "destination": {"namespace": "x"}}),
            "spec.source is required: Sluice syncs one source (spec.sources, Argo CD's multiple sources, is not supported by Sluice yet)",
        ),
        (
            "AppProject",
            json!({"sourceRepos": ["*"], "syncWindows": [{"kind": "sometimes", "schedule": "* * * * *", "duration": "1h"}]}),
            "spec.syncWindows[0].kind",
        ),
        (
            "AppProject",
            json!({"sourceRepos": ["*"], "syncWindows": [{"kind": "deny", "schedule": "* * * * *", "duration": "an hour"}]}),
            "spec.syncWindows[0].duration",
        ),
        (
            "AppProject",
            json!({"roles": [{"name": "ci", "policies": ["p, proj:x:ci, applications, sync, x/*, allow"]}]}),
            "spec.roles is not implemented",
        ),
        (
            "AppProject",
            json!({"permitOnlyProjectScopedClusters": true}),
            "permitOnlyProjectScopedClusters",
        ),
        (
            "AppProject",
            json!({"destinations": [{"namespace": "x"}]}),
            "a destination needs server or name",
        ),
    ];
    for (i, (kind, spec, expected)) in cases.into_iter().enumerate() {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": kind,
            "metadata": {"name": format!("bad-{i}")}, "spec": spec
        }))
        .expect("object");
        match api(&client, &ns.name, kind)
            .create(&PostParams::default(), &object)
            .await
        {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "case {i}: {status:?}");
                assert!(
                    status.message.contains(expected),
                    "case {i}: message should name {expected:?}: {}",
                    status.message
                );
            }
            other => panic!("case {i} ({kind}) must be refused, got {other:?}"),
        }
    }
    ns.delete().await;
}

/// Argo CD Applications setting every field of Argo CD's schema, those Sluice refuses by name
/// included, are stored as written: nothing pruned, in `spec` and in `operation` alike (the
/// controller can only name a field the API server kept).
#[tokio::test]
async fn argo_fields_sluice_does_not_implement_are_stored_unpruned() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "argo-fields").await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/application");
    for file in ["argo-every-field.yaml", "argo-directory-jsonnet.yaml"] {
        let text = std::fs::read_to_string(root.join(file)).expect("read fixture");
        let fixture: Value = serde_saphyr::from_str(&text).expect("fixture");
        let name = format!("{}-{}", ns.name, file.trim_end_matches(".yaml"));
        let api = api(&client, &ns.name, "Application");
        let created = api
            .create(&PostParams::default(), &creatable(&fixture, &name))
            .await
            .unwrap_or_else(|e| panic!("{file}: API server refused it: {e}"));
        assert_eq!(created.data["spec"], fixture["spec"], "{file}: spec pruned");
        assert_eq!(
            created.data.get("operation"),
            fixture.get("operation"),
            "{file}: operation pruned"
        );
        let read = api.get(&name).await.expect("read back");
        assert_eq!(read.data["spec"]["sources"], fixture["spec"]["sources"]);
    }
    ns.delete().await;
}
