//! Lint of an ApplicationSet: the typed parse, unknown fields, the Argo fields Sluice does not
//! implement (the list the controller reports in `ErrorOccurred`), `goTemplateOptions` and
//! `syncPolicy.applicationsSync`.

use serde_json::Value;

use crate::api::applicationset::ApplicationSet;
use crate::api::unsupported;
use crate::appset::template::Dialect;
use crate::plugin::lint::unknown::unknown_fields;
use crate::plugin::lint::{Document, LineIndex};

pub(super) fn check(doc: &mut Document<'_>, generic: &Value, index: &LineIndex) {
    let Some(appset) = doc.typed::<ApplicationSet>() else {
        return;
    };
    if let Ok(understood) = serde_json::to_value(&appset) {
        for path in unknown_fields(generic, &understood) {
            doc.at(index, &path, format!("{path}: unknown field"));
        }
    }
    for path in appset.spec.unsupported_fields() {
        let message = unsupported::message(std::slice::from_ref(&path));
        doc.at(index, &path, message);
    }
    if let Err(error) = Dialect::new(appset.spec.go_template(), &appset.spec.go_template_options) {
        doc.at(
            index,
            "spec.goTemplateOptions",
            format!("spec.goTemplateOptions: {error}"),
        );
    }
    if let Some(Err(value)) = appset
        .spec
        .sync_policy
        .as_ref()
        .map(|p| p.applications_sync())
    {
        doc.at(
            index,
            "spec.syncPolicy.applicationsSync",
            format!(
                "spec.syncPolicy.applicationsSync: {value:?} is not one of create-only, create-update, create-delete, sync"
            ),
        );
    }
    if appset.spec.generators.is_empty() {
        doc.at(
            index,
            "spec.generators",
            "spec.generators: at least one generator is required",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::plugin::lint::lint;

    #[test]
    fn refused_generators_and_options_are_reported_at_their_lines() {
        let text = "\
apiVersion: sluice.dev/v1alpha1
kind: ApplicationSet
metadata:
  name: prs
spec:
  goTemplate: true
  goTemplateOptions: [\"missingkey=nope\"]
  generators:
  - pullRequest:
      github: {owner: o, repo: r}
  template:
    metadata: {name: '{{ .branch }}'}
    spec: {project: default}
";
        let report = lint(text);
        assert_eq!(report.checked, 1);
        let messages: Vec<(u64, &str)> = report
            .findings
            .iter()
            .map(|f| (f.line, f.message.as_str()))
            .collect();
        assert!(
            messages
                .iter()
                .any(|(l, m)| *l == 9
                    && m.contains("spec.generators[0].pullRequest is not supported")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|(_, m)| m.contains("missingkey=nope")),
            "{messages:?}"
        );
    }
}
