//! `app create|set|delete|wait` (pure parts): the Application or merge patch the flags describe,
//! the finalizers a cascading or non-cascading delete needs, and whether what `app wait` waits
//! for has come.

use serde_json::{Map, Value, json};

use crate::api::application::{Application, HealthStatusCode, OperationPhase, SyncStatusCode};
use crate::gitops::plan::RESOURCES_FINALIZERS;
use crate::plugin::cli::AppSpecFlags;
use crate::plugin::error::PluginError;

const API_VERSION: &str = "sluice.dev/v1alpha1";
const ARGO_API_VERSION: &str = "argoproj.io/v1alpha1";
/// The finalizer `app delete --cascade` sets, as Argo CD's CLI does.
const CASCADE_FINALIZER: &str = crate::api::keys::ARGO_RESOURCES_FINALIZER;

fn invalid(message: impl Into<String>) -> PluginError {
    PluginError::Invalid(message.into())
}

/// The merge patch of `spec` the flags ask for; `current` is the Application `app set` changes
/// (`None` for `app create`). Lists (Helm parameters) are written whole, merged by name.
pub fn spec_patch(
    flags: &AppSpecFlags,
    current: Option<&Application>,
) -> Result<Value, PluginError> {
    let mut source = Map::new();
    let mut put = |key: &str, value: &Option<String>| {
        if let Some(value) = value {
            source.insert(key.to_string(), json!(value));
        }
    };
    put("repoURL", &flags.repo);
    put("path", &flags.path);
    put("chart", &flags.chart);
    put("targetRevision", &flags.revision);
    if !flags.helm_set.is_empty() {
        let parameters = helm_parameters(flags, current)?;
        source.insert("helm".into(), json!({"parameters": parameters}));
    }
    let mut spec = Map::new();
    if !source.is_empty() {
        spec.insert("source".into(), Value::Object(source));
    }
    let mut destination = Map::new();
    if let Some(ns) = &flags.dest_namespace {
        destination.insert("namespace".into(), json!(ns));
    }
    if let Some(server) = &flags.dest_server {
        destination.insert("server".into(), json!(server));
    }
    if !destination.is_empty() {
        spec.insert("destination".into(), Value::Object(destination));
    }
    if let Some(project) = &flags.project {
        spec.insert("project".into(), json!(project));
    }
    if let Some(policy) = sync_policy_patch(flags, current)? {
        spec.insert("syncPolicy".into(), policy);
    }
    Ok(Value::Object(spec))
}

/// `syncPolicy` as `--sync-policy`, `--auto-prune` and `--self-heal` set it.
fn sync_policy_patch(
    flags: &AppSpecFlags,
    current: Option<&Application>,
) -> Result<Option<Value>, PluginError> {
    let automated_now = current.is_some_and(|a| a.spec.is_automated());
    let tuning = flags.auto_prune || flags.self_heal;
    let automated = || {
        let mut automated = Map::new();
        if flags.auto_prune {
            automated.insert("prune".into(), json!(true));
        }
        if flags.self_heal {
            automated.insert("selfHeal".into(), json!(true));
        }
        Value::Object(automated)
    };
    match flags.sync_policy.as_deref() {
        Some("automated") => Ok(Some(json!({"automated": automated()}))),
        Some(_) if tuning => Err(invalid(
            "--auto-prune and --self-heal need --sync-policy automated",
        )),
        // Merge patch: null removes the automated policy.
        Some(_) => Ok(Some(json!({"automated": null}))),
        None if tuning && automated_now => Ok(Some(json!({"automated": automated()}))),
        None if tuning => Err(invalid(
            "--auto-prune and --self-heal need an automated sync policy (--sync-policy automated)",
        )),
        None => Ok(None),
    }
}

/// The Helm parameters after `--helm-set NAME=VALUE`: the current ones, each named one replaced.
fn helm_parameters(
    flags: &AppSpecFlags,
    current: Option<&Application>,
) -> Result<Vec<Value>, PluginError> {
    let mut parameters: Vec<Value> = current
        .and_then(|a| a.spec.source.helm.as_ref())
        .map(|h| {
            h.parameters
                .iter()
                .filter_map(|p| serde_json::to_value(p).ok())
                .collect()
        })
        .unwrap_or_default();
    for pair in &flags.helm_set {
        let (name, value) = pair
            .split_once('=')
            .filter(|(name, _)| !name.is_empty())
            .ok_or_else(|| invalid(format!("--helm-set {pair:?}: expected NAME=VALUE")))?;
        parameters.retain(|p| p.get("name").and_then(Value::as_str) != Some(name));
        parameters.push(json!({"name": name, "value": value}));
    }
    Ok(parameters)
}

/// A new Application `name` in `namespace` from the flags: a repository, a path or chart, and a
/// destination namespace are required.
pub fn new_application(
    name: &str,
    namespace: &str,
    flags: &AppSpecFlags,
) -> Result<Value, PluginError> {
    let mut missing = Vec::new();
    if flags.repo.is_none() {
        missing.push("--repo");
    }
    if flags.path.is_none() && flags.chart.is_none() {
        missing.push("--path (or --chart)");
    }
    if flags.dest_namespace.is_none() {
        missing.push("--dest-namespace");
    }
    if !missing.is_empty() {
        return Err(invalid(format!(
            "app create {name}: {} required",
            missing.join(", ")
        )));
    }
    Ok(json!({
        "apiVersion": API_VERSION, "kind": "Application",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec_patch(flags, None)?,
    }))
}

/// The Application of a manifest file (one YAML document): Argo CD's `apiVersion` is taken as
/// Sluice's, server-set metadata and `status` are dropped; the file's namespace wins over
/// `namespace`.
pub fn application_from_manifest(text: &str, namespace: &str) -> Result<Value, PluginError> {
    let mut app: Value = serde_saphyr::from_str(text)
        .map_err(|e| invalid(format!("the file is not one YAML document: {e}")))?;
    let Some(object) = app.as_object_mut() else {
        return Err(invalid("the file does not hold an object"));
    };
    if object.get("kind").and_then(Value::as_str) != Some("Application") {
        return Err(invalid(
            "the file does not hold an Application (kind: Application)",
        ));
    }
    match object.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION | ARGO_API_VERSION) => {
            object.insert("apiVersion".into(), json!(API_VERSION));
        }
        other => {
            return Err(invalid(format!(
                "apiVersion {other:?}: expected {API_VERSION} (or Argo CD's {ARGO_API_VERSION})"
            )));
        }
    }
    object.remove("status");
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| invalid("metadata is not an object"))?;
    for server_set in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "generation",
        "managedFields",
    ] {
        metadata.remove(server_set);
    }
    if metadata
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(invalid("the Application has no metadata.name"));
    }
    if metadata
        .get("namespace")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        metadata.insert("namespace".into(), json!(namespace));
    }
    Ok(app)
}

/// The finalizers before `app delete`: a resources finalizer added for `--cascade` (Argo CD's),
/// every resources finalizer removed without; `None` when they are right already.
pub fn finalizers_for_delete(app: &Application, cascade: bool) -> Option<Vec<String>> {
    let current = app.metadata.finalizers.clone().unwrap_or_default();
    let has_resources = current
        .iter()
        .any(|f| RESOURCES_FINALIZERS.contains(&f.as_str()));
    match (cascade, has_resources) {
        (true, true) | (false, false) => None,
        (true, false) => {
            let mut with = current;
            with.push(CASCADE_FINALIZER.to_string());
            Some(with)
        }
        (false, true) => Some(
            current
                .into_iter()
                .filter(|f| !RESOURCES_FINALIZERS.contains(&f.as_str()))
                .collect(),
        ),
    }
}

/// What `app wait` waits for (all three when no flag is given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitFor {
    pub health: bool,
    pub sync: bool,
    pub operation: bool,
}

impl WaitFor {
    pub fn new(health: bool, sync: bool, operation: bool) -> Self {
        if health || sync || operation {
            Self {
                health,
                sync,
                operation,
            }
        } else {
            Self {
                health: true,
                sync: true,
                operation: true,
            }
        }
    }
}

/// Where an Application stands against what `app wait` waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitState {
    Done(String),
    /// Waiting for health and the Application is Degraded: waiting longer is pointless.
    Degraded(String),
    Waiting(String),
}

pub fn wait_state(app: &Application, wanted: WaitFor) -> WaitState {
    let status = app.status.clone().unwrap_or_default();
    let sync = status.sync_status();
    let health = status.health_status();
    let health_message = status
        .health
        .as_ref()
        .and_then(|h| h.message.clone())
        .unwrap_or_default();
    let running = app.operation.is_some()
        || status.operation_state.as_ref().is_some_and(|s| {
            matches!(
                s.phase,
                OperationPhase::Running | OperationPhase::Terminating
            )
        });
    let summary = format!(
        "{sync:?}, {health:?}{}",
        if running {
            ", operation in progress"
        } else {
            ""
        }
    );
    if wanted.health && health == HealthStatusCode::Degraded {
        let why = if health_message.is_empty() {
            String::new()
        } else {
            format!(": {health_message}")
        };
        return WaitState::Degraded(format!("{summary}{why}"));
    }
    let done = (!wanted.sync || sync == SyncStatusCode::Synced)
        && (!wanted.health || health == HealthStatusCode::Healthy)
        && (!wanted.operation || !running);
    if done {
        WaitState::Done(summary)
    } else {
        WaitState::Waiting(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> AppSpecFlags {
        AppSpecFlags::default()
    }

    fn app(extra: Value) -> Application {
        let mut base = json!({
            "apiVersion": API_VERSION, "kind": "Application",
            "metadata": {"name": "shop", "namespace": "apps"},
            "spec": {"source": {"repoURL": "git://h/r.git", "path": "shop",
                                "helm": {"parameters": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}},
                     "destination": {"namespace": "shop"}}
        });
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn create_builds_an_application_from_the_flags_and_names_what_is_missing() {
        let mut f = flags();
        f.repo = Some("git://127.0.0.1/shop.git".into());
        f.path = Some("deploy".into());
        f.dest_namespace = Some("shop".into());
        f.sync_policy = Some("automated".into());
        f.auto_prune = true;
        let app = new_application("shop", "apps", &f).unwrap();
        assert_eq!(
            app,
            json!({"apiVersion": API_VERSION, "kind": "Application",
                   "metadata": {"name": "shop", "namespace": "apps"},
                   "spec": {"source": {"repoURL": "git://127.0.0.1/shop.git", "path": "deploy"},
                            "destination": {"namespace": "shop"},
                            "syncPolicy": {"automated": {"prune": true}}}})
        );
        let error = new_application("shop", "apps", &flags())
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "app create shop: --repo, --path (or --chart), --dest-namespace required"
        );
    }

    #[test]
    fn set_patches_only_what_is_given_and_merges_helm_parameters_by_name() {
        let mut f = flags();
        f.revision = Some("v2".into());
        f.helm_set = vec!["b=20".into(), "c=3".into()];
        let patch = spec_patch(&f, Some(&app(json!({})))).unwrap();
        assert_eq!(
            patch,
            json!({"source": {"targetRevision": "v2", "helm": {"parameters": [
                {"name": "a", "value": "1"}, {"name": "b", "value": "20"}, {"name": "c", "value": "3"}]}}})
        );
        f.helm_set = vec!["novalue".into()];
        assert!(spec_patch(&f, None).is_err());
    }

    #[test]
    fn sync_policy_flags_switch_automation_on_and_off() {
        let mut off = flags();
        off.sync_policy = Some("none".into());
        assert_eq!(
            spec_patch(&off, None).unwrap(),
            json!({"syncPolicy": {"automated": null}})
        );
        let mut tune = flags();
        tune.self_heal = true;
        assert!(
            spec_patch(&tune, Some(&app(json!({})))).is_err(),
            "not automated"
        );
        let automated = app(json!({"spec": {"source": {"repoURL": "git://h/r.git"},
            "destination": {"namespace": "shop"}, "syncPolicy": {"automated": {}}}}));
        assert_eq!(
            spec_patch(&tune, Some(&automated)).unwrap(),
            json!({"syncPolicy": {"automated": {"selfHeal": true}}})
        );
    }

    #[test]
    fn manifests_of_argo_cd_are_taken_as_sluices() {
        let text = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: shop\n  uid: x\nspec:\n  destination: {namespace: shop}\nstatus: {}\n";
        let app = application_from_manifest(text, "apps").unwrap();
        assert_eq!(app["apiVersion"], API_VERSION);
        assert_eq!(
            app["metadata"],
            json!({"name": "shop", "namespace": "apps"})
        );
        assert!(app.get("status").is_none());
        for bad in [
            "kind: Deployment\napiVersion: apps/v1\nmetadata: {name: x}\n",
            "apiVersion: example.com/v1\nkind: Application\nmetadata: {name: x}\n",
            "apiVersion: sluice.dev/v1alpha1\nkind: Application\nmetadata: {}\n",
            "- a\n- b\n",
        ] {
            assert!(application_from_manifest(bad, "apps").is_err(), "{bad}");
        }
    }

    #[test]
    fn delete_sets_or_removes_the_resources_finalizer() {
        let plain = app(json!({}));
        assert_eq!(
            finalizers_for_delete(&plain, true),
            Some(vec![CASCADE_FINALIZER.to_string()])
        );
        assert_eq!(finalizers_for_delete(&plain, false), None);
        let mut finalized = plain.clone();
        finalized.metadata.finalizers = Some(vec![
            "sluice.dev/resources-finalizer".into(),
            "other".into(),
        ]);
        assert_eq!(finalizers_for_delete(&finalized, true), None);
        assert_eq!(
            finalizers_for_delete(&finalized, false),
            Some(vec!["other".to_string()])
        );
    }

    #[test]
    fn wait_is_done_when_every_wanted_condition_holds_and_stops_on_degraded() {
        let with = |sync: &str, health: &str, operation: Option<&str>| {
            let mut status = json!({"sync": {"status": sync}, "health": {"status": health, "message": "bad pod"}});
            if let Some(phase) = operation {
                status["operationState"] = json!({"operation": {"sync": {}}, "phase": phase, "startedAt": "2026-01-01T00:00:00Z"});
            }
            app(json!({"status": status}))
        };
        let all = WaitFor::new(false, false, false);
        assert!(matches!(
            wait_state(&with("Synced", "Healthy", Some("Succeeded")), all),
            WaitState::Done(_)
        ));
        assert!(matches!(
            wait_state(&with("Synced", "Healthy", Some("Running")), all),
            WaitState::Waiting(_)
        ));
        assert!(matches!(
            wait_state(&with("OutOfSync", "Healthy", None), all),
            WaitState::Waiting(_)
        ));
        assert_eq!(
            wait_state(&with("Synced", "Degraded", None), all),
            WaitState::Degraded("Synced, Degraded: bad pod".into())
        );
        let sync_only = WaitFor::new(false, true, false);
        assert!(matches!(
            wait_state(&with("Synced", "Degraded", Some("Running")), sync_only),
            WaitState::Done(_)
        ));
    }
}
