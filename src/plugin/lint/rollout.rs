//! Lint of a Rollout: the typed parse, unknown fields, and the checks the controller itself makes
//! (`RolloutSpec::validate`, the pod template check), each at the line of the field concerned.

use serde_json::Value;

use crate::api::rollout::{Rollout, RolloutSpecError};
use crate::api::unsupported;
use crate::plugin::lint::unknown::unknown_fields;
use crate::plugin::lint::{Document, LineIndex};
use crate::rollout::plan::{TemplateError, validate_template};
use crate::rollout::pod_metadata;

pub(super) fn check(doc: &mut Document<'_>, generic: &Value, index: &LineIndex) {
    let Some(rollout) = doc.typed::<Rollout>() else {
        return;
    };
    if let Ok(understood) = serde_json::to_value(&rollout) {
        for path in unknown_fields(generic, &understood) {
            doc.at(index, &path, format!("{path}: unknown field"));
        }
    }
    for path in rollout.spec.unsupported_fields() {
        let message = unsupported::message(std::slice::from_ref(&path));
        doc.at(index, &path, message);
    }
    if let Err(error) = rollout.spec.validate_values() {
        let path = spec_error_path(&error);
        doc.at(index, &path, located(&path, &error.to_string()));
    }
    if let Err(error) = pod_metadata::validate(&rollout.spec) {
        doc.at(index, &error.field_path(), error);
    }
    if let Err(error) = validate_template(&rollout.spec) {
        let path = template_error_path(&rollout, &error);
        doc.at(index, &path, error);
    }
}

/// The message, prefixed with the field when it does not already name it.
fn located(path: &str, message: &str) -> String {
    if message.starts_with("spec.") || message.contains(path) {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

/// The field a spec error is about.
pub(super) fn spec_error_path(error: &RolloutSpecError) -> String {
    match error {
        RolloutSpecError::InvalidStep { index, .. } => {
            format!("spec.strategy.canary.steps[{index}]")
        }
        RolloutSpecError::InvalidAnalysis { field, .. }
        | RolloutSpecError::InvalidField { field, .. }
        | RolloutSpecError::OutOfRange { field, .. }
        | RolloutSpecError::InvalidIntOrPercent { field, .. } => field.clone(),
        RolloutSpecError::TemplateAndWorkloadRef => "spec.workloadRef".to_string(),
        RolloutSpecError::NoTemplate => "spec".to_string(),
        RolloutSpecError::MissingSelector => "spec.selector".to_string(),
        RolloutSpecError::Strategy => "spec.strategy".to_string(),
        RolloutSpecError::InvalidDuration { .. } => "spec.strategy".to_string(),
        RolloutSpecError::Required(field) | RolloutSpecError::Invalid { field, .. } => {
            (*field).to_string()
        }
        RolloutSpecError::Unsupported(paths) => paths.first().cloned().unwrap_or_default(),
    }
}

fn template_error_path(rollout: &Rollout, error: &TemplateError) -> String {
    let TemplateError::InvalidQuantity {
        containers,
        container,
        kind,
        resource,
        ..
    } = error;
    let pod = rollout.spec.template.as_ref().and_then(|t| t.spec.as_ref());
    let list = pod.map(|p| match *containers {
        "initContainers" => p.init_containers.clone().unwrap_or_default(),
        _ => p.containers.clone(),
    });
    let position = list
        .unwrap_or_default()
        .iter()
        .position(|c| &c.name == container)
        .unwrap_or(0);
    format!("spec.template.spec.{containers}[{position}].resources.{kind}.{resource}")
}
