//! Lint of an Experiment: the typed parse, unknown fields, the Argo fields Sluice does not
//! implement (the list the controller reports as `InvalidSpec`), and a duration that does not
//! parse.

use serde_json::Value;

use crate::api::experiment::Experiment;
use crate::api::unsupported;
use crate::plugin::lint::unknown::unknown_fields;
use crate::plugin::lint::{Document, LineIndex};

pub(super) fn check(doc: &mut Document<'_>, generic: &Value, index: &LineIndex) {
    let Some(experiment) = doc.typed::<Experiment>() else {
        return;
    };
    if let Ok(understood) = serde_json::to_value(&experiment) {
        for path in unknown_fields(generic, &understood) {
            doc.at(index, &path, format!("{path}: unknown field"));
        }
    }
    for path in experiment.spec.unsupported_fields() {
        let message = unsupported::message(std::slice::from_ref(&path));
        doc.at(index, &path, message);
    }
    if let Err(error) = experiment.spec.duration() {
        doc.at(index, "spec.duration", format!("spec.duration: {error}"));
    }
    if experiment.spec.templates.is_empty() {
        doc.at(
            index,
            "spec.templates",
            "spec.templates: at least one template is required",
        );
    }
}
