//! Health of kinds Sluice has no code for, end to end: cert-manager's `Certificate` (its CRD
//! installed by the test, its status written by the test as cert-manager would) is judged by the
//! built-in rule, and a rule in the `sluice-health` ConfigMap of the control namespace changes a
//! kind's health while the controller runs. An app-of-apps parent is not judged by its children's
//! health unless such a rule opts in, as in Argo CD.

mod common;

use std::time::Duration;

use common::gitops::{GitRepo, GitopsHarness, health};
use common::wait_for;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::json;
use sluice::api::application::{Application, HealthStatusCode};

const TIMEOUT: Duration = Duration::from_secs(90);

const CERTIFICATE: &str = "apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: web
spec:
  secretName: web-tls
  dnsNames: [web.example.com]
";

/// cert-manager's Certificate kind, as far as the API server needs it (schema left open).
async fn install_certificate_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "certificates.cert-manager.io"},
        "spec": {"group": "cert-manager.io", "scope": "Namespaced",
                 "names": {"plural": "certificates", "singular": "certificate", "kind": "Certificate"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                   "subresources": {"status": {}},
                   "schema": {"openAPIV3Schema": {"type": "object",
                     "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .expect("crd");
    crds.patch(
        "certificates.cert-manager.io",
        &PatchParams::apply("sluice-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the Certificate CRD");
    wait_for("the Certificate CRD established", TIMEOUT, || async {
        let crd = crds.get("certificates.cert-manager.io").await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}

/// The health the Application gives its Certificate, with the message.
fn certificate_health(app: &Application) -> Option<(HealthStatusCode, String)> {
    let status = app.status.as_ref()?;
    let resource = status.resources.iter().find(|r| r.kind == "Certificate")?;
    let health = resource.health.as_ref()?;
    Some((health.status, health.message.clone().unwrap_or_default()))
}

#[tokio::test]
async fn a_certificate_is_judged_by_the_built_in_rule_then_by_a_users_rule_without_a_restart() {
    let h = GitopsHarness::start("health", "60s").await;
    install_certificate_crd(&h.client).await;
    let repo = GitRepo::create(&h.env, "health");
    repo.commit("certificate", &[("app/cert.yaml", Some(CERTIFICATE))]);
    h.create_app(
        "tls",
        &repo,
        "app",
        json!({"syncPolicy": {"automated": {}}}),
    )
    .await;

    // No status yet: cert-manager has not issued it.
    h.wait_app("tls", "Progressing, waiting for the certificate", |a| {
        health(a) == HealthStatusCode::Progressing
            && certificate_health(a).is_some_and(|(s, m)| {
                s == HealthStatusCode::Progressing && m == "Waiting for the certificate"
            })
    })
    .await;

    // cert-manager says Ready.
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "cert-manager.io",
        "v1",
        "Certificate",
    ));
    let certificates: Api<DynamicObject> =
        Api::namespaced_with(h.client.clone(), &h.ns.name, &resource);
    certificates
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "Ready", "message": "issued"}]}})),
        )
        .await
        .expect("write the Certificate's status");
    h.wait_app("tls", "Healthy", |a| health(a) == HealthStatusCode::Healthy)
        .await;

    // A user's rule for the kind, in the control namespace's sluice-health: it wins at once.
    let rule = r#"- when: 'spec.secretName == "web-tls" && !any(status.conditions ?? [], {#.type == "Approved"})'
  status: Degraded
  message: web-tls needs an approval
- status: Healthy
"#;
    let config_maps: Api<ConfigMap> = Api::namespaced(h.client.clone(), &h.ns.name);
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "sluice-health"},
        "data": {"cert-manager.io_Certificate": rule}
    }))
    .expect("config map");
    config_maps
        .create(&PostParams::default(), &config_map)
        .await
        .expect("create sluice-health");
    h.wait_app("tls", "Degraded by the user's rule", |a| {
        health(a) == HealthStatusCode::Degraded
            && certificate_health(a).is_some_and(|(_, m)| m == "web-tls needs an approval")
    })
    .await;

    // The rule gone, the built-in one judges again.
    config_maps
        .delete("sluice-health", &DeleteParams::default())
        .await
        .expect("delete sluice-health");
    h.wait_app("tls", "Healthy again", |a| {
        health(a) == HealthStatusCode::Healthy
    })
    .await;
}

/// A child Application's manifest: `path` of `repo`, synced automatically into `namespace`.
fn child_application(name: &str, repo: &GitRepo, path: &str, namespace: &str) -> String {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
           "metadata": {"name": name},
           "spec": {"source": {"repoURL": repo.url, "targetRevision": "main", "path": path},
                    "destination": {"namespace": namespace},
                    "syncPolicy": {"automated": {}}}})
    .to_string()
}

/// A Deployment whose pod no node will ever run: Progressing for as long as the test lasts.
const NEVER_READY: &str = r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "stuck"},
 "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "stuck"}},
          "template": {"metadata": {"labels": {"app": "stuck"}},
                       "spec": {"nodeSelector": {"sluice.dev/no-such-node": "true"},
                                "containers": [{"name": "main", "image": "example/web:1.0"}]}}}}"#;

/// Argo CD's rule for assessing child Applications (its opt-in Lua rule), as README gives it.
const CHILD_APPLICATION_RULE: &str = r#"- when: 'status.health?.status == "Healthy"'
  status: Healthy
- when: 'status.health?.status == "Suspended"'
  status: Suspended
- when: 'status.health?.status == "Degraded"'
  status: Degraded
  message: a child Application is Degraded
- when: 'status.health?.status == "Missing"'
  status: Missing
- status: Progressing
"#;

#[tokio::test]
async fn a_parent_ignores_its_child_applications_health_unless_a_rule_opts_in() {
    let h = GitopsHarness::start("app-health", "60s").await;
    let repo = GitRepo::create(&h.env, "app-health");
    repo.commit(
        "a parent of one child that never becomes ready",
        &[
            (
                "parent/child.yaml",
                Some(&child_application("child", &repo, "child", &h.ns.name)),
            ),
            ("child/stuck.json", Some(NEVER_READY)),
        ],
    );
    h.create_app(
        "parent",
        &repo,
        "parent",
        json!({"syncPolicy": {"automated": {}}}),
    )
    .await;
    h.wait_app("child", "the child Progressing", |a| {
        health(a) == HealthStatusCode::Progressing
    })
    .await;
    let parent = h
        .wait_app("parent", "the parent Healthy, as in Argo CD", |a| {
            health(a) == HealthStatusCode::Healthy
        })
        .await;
    let child_entry = parent
        .status
        .as_ref()
        .and_then(|s| s.resources.iter().find(|r| r.kind == "Application"))
        .expect("the child is one of the parent's resources");
    assert_eq!(child_entry.health, None, "{child_entry:?}");

    let config_maps: Api<ConfigMap> = Api::namespaced(h.client.clone(), &h.ns.name);
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "sluice-health"},
        "data": {"sluice.dev_Application": CHILD_APPLICATION_RULE}
    }))
    .expect("config map");
    config_maps
        .create(&PostParams::default(), &config_map)
        .await
        .expect("create sluice-health");
    h.wait_app("parent", "Progressing once the rule opts in", |a| {
        health(a) == HealthStatusCode::Progressing
    })
    .await;
    h.ns.delete().await;
}
