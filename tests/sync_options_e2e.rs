//! Argo CD's sync options end to end: for each option that changes what is applied, a real
//! `sluice controller` (scoped to the test's namespace) syncs a repository of the local git daemon
//! into the local cluster with and (where the contrast shows the option) without it. Also: an
//! option Sluice does not know, and an Argo CD field it does not implement, are named in a
//! condition and nothing is applied.

mod common;

use common::gitops::{
    GitRepo, GitopsHarness, condition, config_map, deployment, operation_message, sync_status,
};
use common::wait_for;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use sluice::api::application::{Application, OperationPhase, ResultCode, SyncStatusCode};

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// Creates Application `name` syncing `path` of `repo` into the test namespace, automated with
/// prune; `spec` is merged over that (e.g. `{"syncPolicy": {"syncOptions": [...]}}`).
async fn create_app(h: &GitopsHarness, name: &str, repo: &GitRepo, path: &str, spec: Value) {
    let mut full = json!({
        "source": {"repoURL": repo.url, "targetRevision": "main", "path": path},
        "destination": {"namespace": h.ns.name},
        "syncPolicy": {"automated": {"prune": true}}
    });
    merge(&mut full, spec);
    let app: Application = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": name}, "spec": full
    }))
    .expect("application");
    h.apps()
        .create(&PostParams::default(), &app)
        .await
        .expect("create application");
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn options(list: &[&str]) -> Value {
    json!({"syncPolicy": {"syncOptions": list}})
}

/// A ConfigMap manifest with `data.v` and the per-object sync options `sync_options`.
fn cm(name: &str, value: &str, sync_options: &str) -> String {
    let mut obj: Value = serde_json::from_str(&config_map(name, value)).expect("json");
    if !sync_options.is_empty() {
        obj["metadata"]["annotations"] = json!({"argocd.argoproj.io/sync-options": sync_options});
    }
    obj.to_string()
}

async fn revision_annotation(h: &GitopsHarness, name: &str) -> Option<String> {
    let cm = h.config_maps().get(name).await.expect("read ConfigMap");
    cm.annotations().get("sluice.dev/revision").cloned()
}

#[tokio::test]
async fn prune_false_keeps_what_git_removed_unless_the_object_opts_back_in() {
    let h = GitopsHarness::start("so-prune", "60s").await;
    let repo = GitRepo::create(&h.env, "so-prune");
    let sha = repo.commit(
        "three",
        &[
            ("app/a.yaml", Some(&cm("a", "1", ""))),
            ("app/keep.yaml", Some(&cm("keep", "1", ""))),
            ("app/gone.yaml", Some(&cm("gone", "1", "Prune=true"))),
        ],
    );
    create_app(&h, "web", &repo, "app", options(&["Prune=false"])).await;
    h.wait_synced("web", &sha).await;

    repo.commit(
        "remove two",
        &[
            ("app/a.yaml", Some(&cm("a", "2", ""))),
            ("app/keep.yaml", None),
            ("app/gone.yaml", None),
        ],
    );
    h.push_event(&repo, true).await;
    h.wait_config("gone", None).await;
    h.wait_config("a", Some("2")).await;
    assert_eq!(h.config_value("keep").await.as_deref(), Some("1"));
    let app = h.wait_operation("web", OperationPhase::Succeeded).await;
    let result = app
        .status
        .unwrap()
        .operation_state
        .unwrap()
        .sync_result
        .unwrap();
    let skipped: Vec<&str> = result
        .resources
        .iter()
        .filter(|r| r.status == Some(ResultCode::PruneSkipped))
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(skipped, ["keep"]);
}

#[tokio::test]
async fn prune_last_prunes_only_after_what_was_applied_is_healthy() {
    let h = GitopsHarness::start("so-prunelast", "60s").await;
    let repo = GitRepo::create(&h.env, "so-prunelast");
    let sha = repo.commit("old", &[("app/old.yaml", Some(&cm("old", "1", "")))]);
    create_app(&h, "web", &repo, "app", options(&["PruneLast=true"])).await;
    h.wait_synced("web", &sha).await;

    // A claim that stays Pending (Progressing) until the test provides its volume.
    let pv_name = format!("{}-pv", h.ns.name);
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv_name,
                 "resources": {"requests": {"storage": "1Mi"}}}});
    let sha2 = repo.commit(
        "claim instead of old",
        &[
            ("app/old.yaml", None),
            ("app/claim.yaml", Some(&claim.to_string())),
        ],
    );
    h.push_event(&repo, true).await;
    let waiting = h
        .wait_app("web", "waiting for the claim before pruning", |a| {
            operation_message(a).contains("waiting for sync wave")
        })
        .await;
    assert_eq!(
        waiting.status.unwrap().operation_state.unwrap().phase,
        OperationPhase::Running
    );
    assert_eq!(
        h.config_value("old").await.as_deref(),
        Some("1"),
        "pruned before the applied objects were healthy"
    );

    let pvs: Api<PersistentVolume> = Api::all(h.client.clone());
    let pv: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "", "hostPath": {"path": "/tmp/sluice-e2e-pv"},
                 "claimRef": {"namespace": h.ns.name, "name": "data"}}
    }))
    .expect("pv");
    pvs.create(&PostParams::default(), &pv)
        .await
        .expect("create volume");
    h.wait_config("old", None).await;
    h.wait_synced("web", &sha2).await;
    pvs.delete(&pv_name, &DeleteParams::default())
        .await
        .expect("delete volume");
}

#[tokio::test]
async fn apply_out_of_sync_only_leaves_synced_objects_alone() {
    let h = GitopsHarness::start("so-oos", "60s").await;
    let repo = GitRepo::create(&h.env, "so-oos");
    let sha = repo.commit(
        "two",
        &[
            ("app/a.yaml", Some(&cm("a", "1", ""))),
            ("app/b.yaml", Some(&cm("b", "1", ""))),
        ],
    );
    create_app(
        &h,
        "web",
        &repo,
        "app",
        options(&["ApplyOutOfSyncOnly=true"]),
    )
    .await;
    h.wait_synced("web", &sha).await;
    let sha2 = repo.commit("a only", &[("app/a.yaml", Some(&cm("a", "2", "")))]);
    h.push_event(&repo, true).await;
    let app = h.wait_synced("web", &sha2).await;
    assert_eq!(revision_annotation(&h, "a").await, Some(sha2.clone()));
    assert_eq!(
        revision_annotation(&h, "b").await,
        Some(sha),
        "b was in sync: not applied again"
    );
    let result = app
        .status
        .unwrap()
        .operation_state
        .unwrap()
        .sync_result
        .unwrap();
    let applied: Vec<&str> = result.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(applied, ["a"]);
}

#[tokio::test]
async fn prune_propagation_policy_orphan_keeps_the_replica_sets_of_a_pruned_deployment() {
    let h = GitopsHarness::start("so-orphan", "60s").await;
    let repo = GitRepo::create(&h.env, "so-orphan");
    let sha = repo.commit(
        "deployment",
        &[
            (
                "app/web.yaml",
                Some(&deployment("web", 1, "example/web:1.0")),
            ),
            ("app/c.yaml", Some(&config_map("c", "1"))),
        ],
    );
    create_app(
        &h,
        "web",
        &repo,
        "app",
        options(&["PrunePropagationPolicy=orphan"]),
    )
    .await;
    h.wait_synced("web", &sha).await;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(h.client.clone(), &h.ns.name);
    let owned = || async {
        let list = replica_sets
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?;
        list.items.into_iter().next()
    };
    wait_for("the Deployment's ReplicaSet", TIMEOUT, owned).await;

    repo.commit("remove the deployment", &[("app/web.yaml", None)]);
    h.push_event(&repo, true).await;
    wait_for("the Deployment pruned", TIMEOUT, || async {
        h.deployments()
            .get_opt("web")
            .await
            .ok()
            .and_then(|d| d.is_none().then_some(()))
    })
    .await;
    let orphan = wait_for("the ReplicaSet orphaned", TIMEOUT, || async {
        owned().await.filter(|rs| {
            rs.metadata
                .owner_references
                .as_ref()
                .is_none_or(Vec::is_empty)
        })
    })
    .await;
    assert!(orphan.metadata.deletion_timestamp.is_none());
}

#[tokio::test]
async fn replace_true_replaces_the_whole_object() {
    let h = GitopsHarness::start("so-replace", "60s").await;
    let repo = GitRepo::create(&h.env, "so-replace");
    let sha = repo.commit(
        "two",
        &[
            (
                "app/replaced.yaml",
                Some(&cm("replaced", "1", "Replace=true")),
            ),
            ("app/applied.yaml", Some(&cm("applied", "1", ""))),
        ],
    );
    create_app(&h, "web", &repo, "app", json!({})).await;
    h.wait_synced("web", &sha).await;
    for name in ["replaced", "applied"] {
        h.config_maps()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"added-by": "someone"}}})),
            )
            .await
            .expect("label");
    }
    let sha2 = repo.commit(
        "v2",
        &[
            (
                "app/replaced.yaml",
                Some(&cm("replaced", "2", "Replace=true")),
            ),
            ("app/applied.yaml", Some(&cm("applied", "2", ""))),
        ],
    );
    h.push_event(&repo, true).await;
    h.wait_synced("web", &sha2).await;
    let label = |cm: k8s_openapi::api::core::v1::ConfigMap| cm.labels().get("added-by").cloned();
    let replaced = h.config_maps().get("replaced").await.expect("replaced");
    let applied = h.config_maps().get("applied").await.expect("applied");
    assert_eq!(replaced.data.as_ref().unwrap()["v"], "2");
    assert_eq!(
        label(replaced),
        None,
        "a replace drops what Git does not declare"
    );
    assert_eq!(
        label(applied).as_deref(),
        Some("someone"),
        "an apply keeps it"
    );
}

#[tokio::test]
async fn force_true_deletes_and_creates_an_object_an_apply_cannot_change() {
    let h = GitopsHarness::start("so-force", "60s").await;
    let repo = GitRepo::create(&h.env, "so-force");
    let immutable = |name: &str, value: &str, options: &str| {
        let mut obj: Value = serde_json::from_str(&cm(name, value, options)).expect("json");
        obj["immutable"] = json!(true);
        obj.to_string()
    };
    let sha = repo.commit(
        "immutable",
        &[
            ("forced/f.yaml", Some(&immutable("f", "1", "Force=true"))),
            ("plain/p.yaml", Some(&immutable("p", "1", ""))),
        ],
    );
    create_app(&h, "forced", &repo, "forced", json!({})).await;
    create_app(&h, "plain", &repo, "plain", json!({})).await;
    h.wait_synced("forced", &sha).await;
    h.wait_synced("plain", &sha).await;
    let h = &h;
    let uid = |name: &'static str| async move {
        h.config_maps()
            .get(name)
            .await
            .expect("read")
            .metadata
            .uid
            .expect("uid")
    };
    let before = uid("f").await;
    let sha2 = repo.commit(
        "change both",
        &[
            ("forced/f.yaml", Some(&immutable("f", "2", "Force=true"))),
            ("plain/p.yaml", Some(&immutable("p", "2", ""))),
        ],
    );
    h.push_event(&repo, true).await;
    h.wait_synced("forced", &sha2).await;
    assert_eq!(h.config_value("f").await.as_deref(), Some("2"));
    assert_ne!(uid("f").await, before, "deleted and created again");
    let plain = h.wait_operation("plain", OperationPhase::Failed).await;
    assert!(
        operation_message(&plain).contains("immutable"),
        "{}",
        operation_message(&plain)
    );
    assert_eq!(h.config_value("p").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn validate_false_accepts_fields_the_schema_does_not_know() {
    let h = GitopsHarness::start("so-validate", "60s").await;
    let repo = GitRepo::create(&h.env, "so-validate");
    let with_unknown = |name: &str, options: &str| {
        let mut obj: Value = serde_json::from_str(&cm(name, "1", options)).expect("json");
        obj["unknownField"] = json!("x");
        obj.to_string()
    };
    repo.commit(
        "unknown field",
        &[
            (
                "lenient/l.yaml",
                Some(&with_unknown("l", "Replace=true,Validate=false")),
            ),
            ("strict/s.yaml", Some(&with_unknown("s", "Replace=true"))),
        ],
    );
    create_app(&h, "lenient", &repo, "lenient", json!({})).await;
    create_app(&h, "strict", &repo, "strict", json!({})).await;
    h.wait_operation("lenient", OperationPhase::Succeeded).await;
    assert_eq!(h.config_value("l").await.as_deref(), Some("1"));
    let strict = h.wait_operation("strict", OperationPhase::Failed).await;
    assert!(
        operation_message(&strict).contains("unknownField"),
        "{}",
        operation_message(&strict)
    );
    assert_eq!(h.config_value("s").await, None);
}

#[tokio::test]
async fn skip_dry_run_on_missing_resource_applies_a_kind_served_during_the_sync() {
    let h = GitopsHarness::start("so-skipdry", "60s").await;
    let repo = GitRepo::create(&h.env, "so-skipdry");
    let group = format!("{}.sluice-e2e.example", h.ns.name);
    let widget = |name: &str, options: &str| {
        let mut obj = json!({"apiVersion": format!("{group}/v1"), "kind": "Widget",
            "metadata": {"name": name}, "spec": {"size": 1}});
        if !options.is_empty() {
            obj["metadata"]["annotations"] = json!({"argocd.argoproj.io/sync-options": options});
        }
        obj.to_string()
    };
    repo.commit(
        "widgets",
        &[
            (
                "skip/w.yaml",
                Some(&widget("w", "SkipDryRunOnMissingResource=true")),
            ),
            ("strict/w.yaml", Some(&widget("v", ""))),
        ],
    );
    // A kind no CRD of the sync defines fails the attempt at once (as in Argo CD): retried until the
    // test has created the CRD.
    let retry =
        json!({"syncPolicy": {"retry": {"limit": 30, "backoff": {"duration": "2s", "factor": 1}}}});
    create_app(&h, "skip", &repo, "skip", retry.clone()).await;
    create_app(&h, "strict", &repo, "strict", retry).await;
    let strict = h
        .wait_app("strict", "ComparisonError", |a| {
            condition(a, "ComparisonError").is_some()
        })
        .await;
    assert!(
        condition(&strict, "ComparisonError")
            .unwrap()
            .contains("unknown kind Widget")
    );
    let skip = h
        .wait_app("skip", "compared", |a| {
            sync_status(a) == SyncStatusCode::OutOfSync
        })
        .await;
    assert_eq!(condition(&skip, "ComparisonError"), None);

    let crds: Api<CustomResourceDefinition> = Api::all(h.client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                   "schema": {"openAPIV3Schema": {"type": "object",
                     "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .expect("crd");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("create CRD");
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, "v1", "Widget"));
    let widgets: Api<DynamicObject> = Api::namespaced_with(h.client.clone(), &h.ns.name, &resource);
    wait_for("the Widget applied", TIMEOUT, || async {
        widgets.get_opt("w").await.ok().flatten()
    })
    .await;
    crds.delete(&format!("widgets.{group}"), &DeleteParams::default())
        .await
        .expect("delete CRD");
}

#[tokio::test]
async fn respect_ignore_differences_keeps_the_replicas_someone_else_set() {
    let h = GitopsHarness::start("so-respect", "60s").await;
    let repo = GitRepo::create(&h.env, "so-respect");
    let commit = |image: &str| {
        repo.commit(
            image,
            &[
                ("respect/d.yaml", Some(&deployment("respected", 1, image))),
                ("plain/d.yaml", Some(&deployment("plain", 1, image))),
            ],
        )
    };
    let sha = commit("example/web:1.0");
    let ignore = json!({"ignoreDifferences": [
        {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}]});
    let mut respect = ignore.clone();
    merge(&mut respect, options(&["RespectIgnoreDifferences=true"]));
    create_app(&h, "respect", &repo, "respect", respect).await;
    create_app(&h, "plain", &repo, "plain", ignore).await;
    h.wait_synced("respect", &sha).await;
    h.wait_synced("plain", &sha).await;
    for name in ["respected", "plain"] {
        h.kubectl(&["scale", "deployment", name, "--replicas=3"]);
    }
    let sha2 = commit("example/web:2.0");
    h.push_event(&repo, true).await;
    h.wait_synced("respect", &sha2).await;
    h.wait_synced("plain", &sha2).await;
    let h = &h;
    let spec = |name: &'static str| async move {
        let d = h.deployments().get(name).await.expect("deployment");
        let spec = d.spec.expect("spec");
        let image = spec.template.spec.expect("pod spec").containers[0]
            .image
            .clone();
        (spec.replicas, image)
    };
    assert_eq!(
        spec("respected").await,
        (Some(3), Some("example/web:2.0".into()))
    );
    assert_eq!(
        spec("plain").await,
        (Some(1), Some("example/web:2.0".into()))
    );
}

#[tokio::test]
async fn create_namespace_applies_the_managed_namespace_metadata() {
    let h = GitopsHarness::start("so-nsmeta", "60s").await;
    let repo = GitRepo::create(&h.env, "so-nsmeta");
    let sha = repo.commit("one", &[("app/a.yaml", Some(&config_map("a", "1")))]);
    create_app(
        &h,
        "web",
        &repo,
        "app",
        json!({"syncPolicy": {"syncOptions": ["CreateNamespace=true"],
            "managedNamespaceMetadata": {"labels": {"team": "shop"},
                                         "annotations": {"owner": "team-shop"}}}}),
    )
    .await;
    h.wait_synced("web", &sha).await;
    let ns = Api::<Namespace>::all(h.client.clone())
        .get(&h.ns.name)
        .await
        .expect("namespace");
    assert_eq!(ns.labels().get("team").map(String::as_str), Some("shop"));
    assert_eq!(
        ns.annotations().get("owner").map(String::as_str),
        Some("team-shop")
    );
}

#[tokio::test]
async fn delete_false_objects_stay_when_the_application_is_deleted() {
    let h = GitopsHarness::start("so-delete", "60s").await;
    let repo = GitRepo::create(&h.env, "so-delete");
    let sha = repo.commit(
        "two",
        &[
            ("app/keep.yaml", Some(&cm("keep", "1", "Delete=false"))),
            ("app/drop.yaml", Some(&cm("drop", "1", ""))),
        ],
    );
    create_app(&h, "web", &repo, "app", json!({})).await;
    h.wait_synced("web", &sha).await;
    h.apps()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"finalizers": ["resources-finalizer.argocd.argoproj.io"]}}),
            ),
        )
        .await
        .expect("finalizer");
    h.apps()
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete application");
    wait_for("the Application gone", TIMEOUT, || async {
        h.apps()
            .get_opt("web")
            .await
            .ok()
            .and_then(|a| a.is_none().then_some(()))
    })
    .await;
    assert_eq!(h.config_value("drop").await, None);
    assert_eq!(h.config_value("keep").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn unknown_options_and_unimplemented_fields_are_named_and_nothing_is_applied() {
    let h = GitopsHarness::start("so-refused", "60s").await;
    let repo = GitRepo::create(&h.env, "so-refused");
    repo.commit(
        "four",
        &[
            ("app-option/a.yaml", Some(&cm("a", "1", ""))),
            (
                "object-option/b.yaml",
                Some(&cm("b", "1", "Prune=false,Bogus=1")),
            ),
            ("sources/c.yaml", Some(&cm("c", "1", ""))),
            ("patches/d.yaml", Some(&cm("d", "1", ""))),
        ],
    );
    create_app(
        &h,
        "app-option",
        &repo,
        "app-option",
        options(&["CreateNamespace=true", "PruneFirst=true"]),
    )
    .await;
    create_app(&h, "object-option", &repo, "object-option", json!({})).await;
    create_app(
        &h,
        "sources",
        &repo,
        "sources",
        json!({"sources": [{"repoURL": repo.url, "path": "app-option"}]}),
    )
    .await;
    create_app(
        &h,
        "patches",
        &repo,
        "patches",
        json!({"source": {"plugin": {"name": "envsubst"}}}),
    )
    .await;
    let cases = [
        (
            "app-option",
            "InvalidSpecError",
            "sync option \"PruneFirst=true\" in spec.syncPolicy.syncOptions[1]: unknown sync option PruneFirst".to_string(),
        ),
        (
            "object-option",
            "ComparisonError",
            format!(
                "sync option \"Bogus=1\" in ConfigMap {}/b annotation argocd.argoproj.io/sync-options: unknown sync option Bogus",
                h.ns.name
            ),
        ),
        (
            "sources",
            "InvalidSpecError",
            "spec.sources is not supported by Sluice: multiple sources".to_string(),
        ),
        (
            "patches",
            "InvalidSpecError",
            "spec.source.plugin is not supported by Sluice: config management plugins".to_string(),
        ),
    ];
    for (name, type_, message) in &cases {
        let app = h
            .wait_app(name, &format!("{type_} condition"), |a| {
                condition(a, type_).is_some()
            })
            .await;
        let written = condition(&app, type_).unwrap();
        assert!(written.starts_with(message.as_str()), "{name}: {written}");
        assert_eq!(sync_status(&app), SyncStatusCode::Unknown, "{name}");
        assert!(
            app.status.as_ref().unwrap().operation_state.is_none(),
            "{name}: no sync ran"
        );
    }
    for name in ["a", "b", "c", "d"] {
        assert_eq!(h.config_value(name).await, None, "{name} applied");
    }
    // The spec fixed: the Application syncs.
    h.apps()
        .patch(
            "app-option",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"syncPolicy": {"syncOptions": ["CreateNamespace=true"]}}}),
            ),
        )
        .await
        .expect("fix the options");
    h.wait_config("a", Some("1")).await;
}

const CHART: &str = "apiVersion: v2\nname: shop\nversion: 0.1.0\n";
const CHART_CONFIG: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-capabilities
data:
  kube: {{ .Capabilities.KubeVersion.Version | quote }}
  thing: {{ .Capabilities.APIVersions.Has "example.com/v1/Thing" | quote }}
"#;
const CHART_TEST: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-test
  annotations:
    helm.sh/hook: test
data:
  v: "1"
"#;

/// Argo CD's source options Sluice renders: Helm `skipTests`, `kubeVersion`, `apiVersions`;
/// Kustomize `replicas` and `labelWithoutSelector`.
#[tokio::test]
async fn argo_source_options_change_what_is_rendered() {
    let h = GitopsHarness::start("so-source", "60s").await;
    let repo = GitRepo::create(&h.env, "so-source");
    let sha = repo.commit(
        "chart and kustomization",
        &[
            ("chart/Chart.yaml", Some(CHART)),
            ("chart/templates/config.yaml", Some(CHART_CONFIG)),
            ("chart/templates/tests/test.yaml", Some(CHART_TEST)),
            ("kz/kustomization.yaml", Some("resources:\n- web.yaml\n")),
            (
                "kz/web.yaml",
                Some(&deployment("web", 1, "example/web:1.0")),
            ),
        ],
    );
    create_app(
        &h,
        "chart",
        &repo,
        "chart",
        json!({"source": {"helm": {"releaseName": "shop", "skipTests": true,
            "kubeVersion": "1.29.4", "apiVersions": ["example.com/v1/Thing"]}}}),
    )
    .await;
    create_app(
        &h,
        "kz",
        &repo,
        "kz",
        json!({"source": {"kustomize": {"replicas": [{"name": "web", "count": 2}],
            "commonLabels": {"team": "shop"}, "labelWithoutSelector": true}}}),
    )
    .await;
    h.wait_synced("chart", &sha).await;
    h.wait_synced("kz", &sha).await;
    let capabilities = h
        .config_maps()
        .get("shop-capabilities")
        .await
        .expect("capabilities")
        .data
        .expect("data");
    assert_eq!(capabilities["kube"], "v1.29.4");
    assert_eq!(capabilities["thing"], "true");
    assert_eq!(
        h.config_maps().get_opt("shop-test").await.expect("read"),
        None,
        "helm test hooks skipped"
    );
    let web = h.deployments().get("web").await.expect("web");
    assert_eq!(web.labels().get("team").map(String::as_str), Some("shop"));
    let spec = web.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let selector = spec.selector.match_labels.expect("selector");
    assert_eq!(selector.get("team"), None, "labels without selector");
}
