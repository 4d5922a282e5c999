//! The plan of one ApplicationSet reconcile. Pure: the ApplicationSet, its generated parameter
//! sets (or why there are none), the Applications it owns and `now` in; the Applications to apply
//! and delete and the whole status out.
//!
//! Nothing is created or deleted when anything about the set as a whole is wrong (an unsupported
//! field, a generator or template error, duplicate names): a half-generated set would delete the
//! Applications of the half that failed. An Application that alone is invalid (its name, its
//! namespace, its spec) is skipped but not deleted, as Argo CD does.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};
use serde_json::{Map, Value, json};

use super::generators::{Generated, deep_merge};
use super::template::{Dialect, render_str, render_value};
use super::{APPLICATION_SET_LABEL, application_set_label_value};
use crate::api::application::{Application, ApplicationSpec};
use crate::api::applicationset::{
    ApplicationSet, ApplicationSetResource, ApplicationSetResourceHealth, ApplicationSetStatus,
    ApplicationsSyncPolicy, CONDITION_ERROR_OCCURRED, CONDITION_PARAMETERS_GENERATED,
    CONDITION_RESOURCES_UP_TO_DATE,
};
use crate::api::common::Condition;
use crate::api::unsupported;

/// The finalizer generated Applications get unless `preserveResourcesOnDeletion` (Argo CD's).
pub const RESOURCES_FINALIZER: &str = crate::api::keys::ARGO_RESOURCES_FINALIZER;
/// Most Applications one ApplicationSet may generate.
pub const MAX_APPLICATIONS: usize = 1000;
/// Longest `status.conditions[].message`.
const MAX_MESSAGE_CHARS: usize = 2000;

/// Condition reasons (Argo CD's).
pub const REASON_UP_TO_DATE: &str = "ApplicationSetUpToDate";
pub const REASON_PARAMETERS_GENERATED: &str = "ParametersGenerated";
pub const REASON_ERROR: &str = "ErrorOccurred";
pub const REASON_GENERATION_ERROR: &str = "ApplicationGenerationFromParamsError";
pub const REASON_RENDER_ERROR: &str = "RenderTemplateParamsError";
pub const REASON_VALIDATION_ERROR: &str = "ApplicationValidationError";
pub const REASON_UPDATE_ERROR: &str = "UpdateApplicationError";

/// What the planner looks at.
pub struct Observed<'a> {
    pub appset: &'a ApplicationSet,
    /// The parameter sets of each top-level generator, or why they could not be generated.
    pub generated: Result<Vec<Generated>, String>,
    /// The Applications this ApplicationSet controls.
    pub owned: &'a [Application],
    pub now: Timestamp,
}

/// What to do.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Applications to apply (server-side), whole, as JSON.
    pub apply: Vec<Value>,
    /// Names of Applications to delete.
    pub delete: Vec<String>,
    /// The status to have (written only when it differs from the one read).
    pub status: ApplicationSetStatus,
}

/// An Application to generate: its name and object, or why it is invalid.
#[derive(Debug, PartialEq)]
struct Rendered {
    name: String,
    object: Result<Value, String>,
}

pub fn plan(observed: &Observed<'_>) -> Plan {
    let previous = observed
        .appset
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let resources = resources(observed.owned, None);
    let fail = |generated: bool, reason: &str, message: String| Plan {
        status: ApplicationSetStatus {
            conditions: error_conditions(previous, generated, reason, &message, observed.now),
            resources: resources.clone(),
            application_status: None,
        },
        ..Plan::default()
    };
    let spec = &observed.appset.spec;
    let unsupported_fields = spec.unsupported_fields();
    if !unsupported_fields.is_empty() {
        return fail(
            false,
            REASON_ERROR,
            unsupported::message(&unsupported_fields),
        );
    }
    let policy = match spec
        .sync_policy
        .clone()
        .unwrap_or_default()
        .applications_sync()
    {
        Ok(policy) => policy,
        Err(value) => {
            return fail(
                false,
                REASON_ERROR,
                format!(
                    "spec.syncPolicy.applicationsSync {value:?} is not one of create-only, create-update, create-delete, sync"
                ),
            );
        }
    };
    let dialect = match Dialect::new(spec.go_template(), &spec.go_template_options) {
        Ok(d) => d,
        Err(e) => return fail(false, REASON_ERROR, format!("spec.goTemplateOptions: {e}")),
    };
    let generated = match &observed.generated {
        Ok(g) => g,
        Err(message) => return fail(false, REASON_GENERATION_ERROR, message.clone()),
    };
    let rendered = match render_all(observed.appset, generated, dialect) {
        Ok(r) => r,
        Err(message) => return fail(true, REASON_RENDER_ERROR, message),
    };
    let mut plan = Plan::default();
    let live: BTreeMap<String, &Application> =
        observed.owned.iter().map(|a| (a.name_any(), a)).collect();
    let mut invalid = Vec::new();
    for app in &rendered {
        match &app.object {
            Ok(object) => {
                if let Some(apply) = to_apply(observed.appset, object, live.get(&app.name), policy)
                {
                    plan.apply.push(apply);
                }
            }
            Err(why) => invalid.push(format!("{}: {why}", app.name)),
        }
    }
    let wanted: BTreeSet<&str> = rendered.iter().map(|r| r.name.as_str()).collect();
    if policy.delete {
        plan.delete = observed
            .owned
            .iter()
            .filter(|a| a.metadata.deletion_timestamp.is_none())
            .map(ResourceExt::name_any)
            .filter(|name| !wanted.contains(name.as_str()))
            .collect();
    }
    let conditions = if invalid.is_empty() {
        ok_conditions(previous, observed.now)
    } else {
        error_conditions(
            previous,
            true,
            REASON_VALIDATION_ERROR,
            &format!(
                "invalid Applications were not created or updated: {}",
                invalid.join("; ")
            ),
            observed.now,
        )
    };
    plan.status = ApplicationSetStatus {
        conditions,
        resources: resources_of(observed.owned, &wanted),
        application_status: None,
    };
    plan
}

/// `status.resources`: the owned Applications that are generated, by name.
fn resources_of(owned: &[Application], wanted: &BTreeSet<&str>) -> Vec<ApplicationSetResource> {
    resources(owned, Some(wanted))
}

fn resources(owned: &[Application], only: Option<&BTreeSet<&str>>) -> Vec<ApplicationSetResource> {
    let mut out: Vec<ApplicationSetResource> = owned
        .iter()
        .filter(|a| only.is_none_or(|names| names.contains(a.name_any().as_str())))
        .map(|a| {
            let status = a.status.as_ref();
            ApplicationSetResource {
                group: Application::group(&()).into_owned(),
                version: Application::version(&()).into_owned(),
                kind: Application::kind(&()).into_owned(),
                namespace: a.namespace().unwrap_or_default(),
                name: a.name_any(),
                status: status
                    .and_then(|s| s.sync.as_ref())
                    .map(|s| s.status.to_string()),
                health: status.and_then(|s| s.health.as_ref()).map(|h| {
                    ApplicationSetResourceHealth {
                        status: Some(h.status.to_string()),
                        message: h.message.clone(),
                    }
                }),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Every Application of every parameter set, or why the set as a whole cannot be rendered.
fn render_all(
    appset: &ApplicationSet,
    generated: &[Generated],
    dialect: Dialect,
) -> Result<Vec<Rendered>, String> {
    let spec = &appset.spec;
    if spec.template_patch.is_some() && dialect == Dialect::Fast {
        return Err("spec.templatePatch needs spec.goTemplate: true (as Argo CD)".to_string());
    }
    let base = serde_json::to_value(&spec.template).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, generator) in generated.iter().enumerate() {
        let mut template = base.clone();
        if let Some(over) = &generator.template {
            deep_merge(&mut template, over);
        }
        for set in &generator.sets {
            let mut app = render_value(&template, set, dialect)
                .map_err(|e| format!("spec.generators[{i}]: spec.template: {e}"))?;
            if let Some(patch) = &spec.template_patch {
                let text = render_str(patch, set, dialect)
                    .map_err(|e| format!("spec.templatePatch: {e}"))?;
                let patch: Value = serde_saphyr::from_str(&text)
                    .map_err(|e| format!("spec.templatePatch: not YAML once rendered: {e}"))?;
                merge_patch(&mut app, &patch);
            }
            let name = app
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if !names.insert(name.clone()) {
                return Err(format!(
                    "ApplicationSet {} contains applications with duplicate name: {name}",
                    appset.name_any()
                ));
            }
            if names.len() > MAX_APPLICATIONS {
                return Err(format!(
                    "more than {MAX_APPLICATIONS} Applications generated"
                ));
            }
            out.push(Rendered {
                object: application(appset, &name, app),
                name,
            });
        }
    }
    Ok(out)
}

/// RFC 7386 JSON merge patch (Argo applies `templatePatch` as a merge of the rendered patch).
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The Application to apply for a rendered template, or why it is invalid.
fn application(appset: &ApplicationSet, name: &str, rendered: Value) -> Result<Value, String> {
    check_name(name)?;
    let namespace = appset.namespace().unwrap_or_default();
    let meta = rendered.get("metadata").cloned().unwrap_or(Value::Null);
    if let Some(ns) = meta.get("namespace").and_then(Value::as_str)
        && !ns.is_empty()
        && ns != namespace
    {
        return Err(format!(
            "metadata.namespace {ns:?}: generated Applications live in the ApplicationSet's namespace {namespace:?}"
        ));
    }
    let spec_value = rendered.get("spec").cloned().unwrap_or(json!({}));
    let spec: ApplicationSpec = serde_json::from_value(spec_value.clone())
        .map_err(|e| format!("spec is not an Application spec: {e}"))?;
    if spec.source.repo_url.is_empty() && spec.sources.is_none() {
        return Err("spec.source.repoURL is required".to_string());
    }
    let mut labels = meta.get("labels").cloned().unwrap_or(json!({}));
    if !labels.is_object() {
        labels = json!({});
    }
    labels[APPLICATION_SET_LABEL] = Value::String(application_set_label_value(&appset.name_any()));
    let mut finalizers: Vec<String> = meta
        .get("finalizers")
        .and_then(|f| serde_json::from_value(f.clone()).ok())
        .unwrap_or_default();
    let preserve = appset
        .spec
        .sync_policy
        .as_ref()
        .is_some_and(|p| p.preserve_resources_on_deletion());
    if finalizers.is_empty() && !preserve {
        finalizers.push(RESOURCES_FINALIZER.to_string());
    }
    let mut metadata = json!({
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "finalizers": finalizers,
        "ownerReferences": [{
            "apiVersion": ApplicationSet::api_version(&()),
            "kind": ApplicationSet::kind(&()),
            "name": appset.name_any(),
            "uid": appset.uid().unwrap_or_default(),
            "controller": true,
            "blockOwnerDeletion": true,
        }],
    });
    if let Some(annotations) = meta.get("annotations").filter(|a| a.is_object()) {
        metadata["annotations"] = annotations.clone();
    }
    Ok(json!({
        "apiVersion": Application::api_version(&()),
        "kind": Application::kind(&()),
        "metadata": metadata,
        "spec": serde_json::to_value(&spec).map_err(|e| e.to_string())?,
    }))
}

/// Kubernetes' object name rule (a DNS-1123 subdomain).
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the name {name:?} is not a valid Application name (a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', at most 253 characters)"
        ))
    }
}

/// The object to apply for `desired`, or `None` when the live one is up to date or may not be
/// changed.
fn to_apply(
    appset: &ApplicationSet,
    desired: &Value,
    live: Option<&&Application>,
    policy: ApplicationsSyncPolicy,
) -> Option<Value> {
    let Some(live) = live else {
        return Some(desired.clone());
    };
    if !policy.update || live.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let mut desired = desired.clone();
    let live_value = serde_json::to_value(live).unwrap_or(Value::Null);
    keep_live_fields(appset, &mut desired, &live_value, &live.name_any());
    (!up_to_date(&desired, live, &live_value)).then_some(desired)
}

/// `ignoreApplicationDifferences` and `preservedFields`: the live values win.
fn keep_live_fields(appset: &ApplicationSet, desired: &mut Value, live: &Value, name: &str) {
    for rule in &appset.spec.ignore_application_differences {
        if rule
            .name
            .as_deref()
            .is_some_and(|n| !n.is_empty() && n != name)
        {
            continue;
        }
        for pointer in &rule.json_pointers {
            copy_pointer(desired, live, pointer);
        }
    }
    let preserved = appset.spec.preserved_fields.clone().unwrap_or_default();
    for (kind, keys) in [
        ("annotations", &preserved.annotations),
        ("labels", &preserved.labels),
    ] {
        for key in keys {
            if let Some(value) = live
                .pointer(&format!("/metadata/{kind}"))
                .and_then(|m| m.get(key))
            {
                desired["metadata"][kind][key] = value.clone();
            }
        }
    }
}

/// Sets `desired` at `pointer` to `live`'s value there (removes it when `live` has none).
fn copy_pointer(desired: &mut Value, live: &Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    let live_value = live.pointer(pointer).cloned();
    match (desired.pointer_mut(parent), live_value) {
        (Some(Value::Object(map)), Some(value)) => {
            map.insert(last, value);
        }
        (Some(Value::Object(map)), None) => {
            map.remove(&last);
        }
        _ => {}
    }
}

/// Whether applying `desired` would change nothing the controller owns: the same spec, and every
/// label, annotation, finalizer and the owner reference already there.
fn up_to_date(desired: &Value, live: &Application, live_value: &Value) -> bool {
    let spec_equal = serde_json::from_value::<ApplicationSpec>(desired["spec"].clone())
        .is_ok_and(|spec| spec == live.spec);
    let contains = |kind: &str| {
        desired["metadata"][kind].as_object().is_none_or(|want| {
            want.iter()
                .all(|(k, v)| live_value["metadata"][kind].get(k) == Some(v))
        })
    };
    let finalizers = desired["metadata"]["finalizers"]
        .as_array()
        .is_none_or(|want| {
            want.iter().all(|f| {
                live_value["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|l| l.contains(f))
            })
        });
    let owner = desired["metadata"]["ownerReferences"][0]["uid"].as_str();
    let owned = live
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(o.uid.as_str()) == owner && o.controller == Some(true));
    spec_equal && contains("labels") && contains("annotations") && finalizers && owned
}

fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let message: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    let before = previous.iter().find(|c| c.type_ == type_);
    let unchanged = before.is_some_and(|c| {
        c.status.as_deref() == Some(status.as_str())
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message.as_str())
    });
    Condition {
        type_: type_.to_string(),
        status: Some(status),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_transition_time: if unchanged {
            before.and_then(|c| c.last_transition_time.clone())
        } else {
            Some(Time(now))
        },
        last_update_time: None,
    }
}

/// Argo's conditions of a reconcile that went well.
pub fn ok_conditions(previous: &[Condition], now: Timestamp) -> Vec<Condition> {
    vec![
        condition(
            previous,
            CONDITION_ERROR_OCCURRED,
            false,
            REASON_UP_TO_DATE,
            "Successfully generated parameters for all Applications",
            now,
        ),
        condition(
            previous,
            CONDITION_PARAMETERS_GENERATED,
            true,
            REASON_PARAMETERS_GENERATED,
            "Successfully generated parameters for all Applications",
            now,
        ),
        condition(
            previous,
            CONDITION_RESOURCES_UP_TO_DATE,
            true,
            REASON_UP_TO_DATE,
            "All applications have been generated successfully",
            now,
        ),
    ]
}

/// Argo's conditions of a reconcile that failed with `reason`; `generated` says whether the
/// parameters were.
pub fn error_conditions(
    previous: &[Condition],
    generated: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Vec<Condition> {
    let parameters = if generated {
        condition(
            previous,
            CONDITION_PARAMETERS_GENERATED,
            true,
            REASON_PARAMETERS_GENERATED,
            "Successfully generated parameters for all Applications",
            now,
        )
    } else {
        condition(
            previous,
            CONDITION_PARAMETERS_GENERATED,
            false,
            reason,
            message,
            now,
        )
    };
    vec![
        condition(
            previous,
            CONDITION_ERROR_OCCURRED,
            true,
            reason,
            message,
            now,
        ),
        parameters,
        condition(
            previous,
            CONDITION_RESOURCES_UP_TO_DATE,
            false,
            reason,
            message,
            now,
        ),
    ]
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
