//! Table tests of the ApplicationSet planner.

use super::*;
use crate::api::applicationset::ApplicationSetSpec;
use crate::appset::generators::ParamSet;
use serde_json::json;

const UID: &str = "uid-1";

fn appset(spec: Value) -> ApplicationSet {
    let spec: ApplicationSetSpec = serde_json::from_value(spec).unwrap();
    let mut set = ApplicationSet::new("guestbook", spec);
    set.metadata.namespace = Some("argocd".into());
    set.metadata.uid = Some(UID.into());
    set
}

fn template() -> Value {
    json!({"metadata": {"name": "{{path.basename}}", "labels": {"team": "a"}},
           "spec": {"project": "default",
                    "source": {"repoURL": "https://example.com/r.git", "targetRevision": "HEAD",
                               "path": "{{path}}"},
                    "destination": {"server": "https://kubernetes.default.svc",
                                    "namespace": "{{path.basename}}"}}})
}

fn sets_of(dirs: &[&str]) -> Vec<Generated> {
    vec![Generated {
        sets: dirs
            .iter()
            .map(|d| {
                let mut set = ParamSet::new();
                set.insert("path".into(), json!(format!("apps/{d}")));
                set.insert("path.basename".into(), json!(d));
                set
            })
            .collect(),
        template: None,
    }]
}

fn now() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn run(
    set: &ApplicationSet,
    generated: Result<Vec<Generated>, String>,
    owned: &[Application],
) -> Plan {
    plan(&Observed {
        appset: set,
        generated,
        owned,
        now: now(),
    })
}

fn names(objects: &[Value]) -> Vec<&str> {
    objects
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect()
}

fn condition_of<'a>(plan: &'a Plan, type_: &str) -> &'a Condition {
    plan.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap()
}

/// The live Application as the API server would hold it after applying `object`.
fn live(object: &Value) -> Application {
    serde_json::from_value(object.clone()).unwrap()
}

#[test]
fn creates_one_owned_application_per_set() {
    let set = appset(json!({"generators": [], "template": template()}));
    let plan = run(&set, Ok(sets_of(&["a", "b"])), &[]);
    assert_eq!(names(&plan.apply), ["a", "b"]);
    let a = &plan.apply[0];
    assert_eq!(a["apiVersion"], "sluice.dev/v1alpha1");
    assert_eq!(a["metadata"]["namespace"], "argocd");
    assert_eq!(a["spec"]["source"]["path"], "apps/a");
    assert_eq!(a["spec"]["destination"]["namespace"], "a");
    assert_eq!(a["metadata"]["labels"]["team"], "a");
    assert_eq!(a["metadata"]["labels"][APPLICATION_SET_LABEL], "guestbook");
    assert_eq!(a["metadata"]["finalizers"], json!([RESOURCES_FINALIZER]));
    assert_eq!(a["metadata"]["ownerReferences"][0]["uid"], UID);
    assert_eq!(a["metadata"]["ownerReferences"][0]["controller"], true);
    assert!(plan.delete.is_empty());
    assert_eq!(
        condition_of(&plan, "ErrorOccurred").status.as_deref(),
        Some("False")
    );
    assert_eq!(
        condition_of(&plan, "ResourcesUpToDate").status.as_deref(),
        Some("True")
    );
    assert_eq!(
        condition_of(&plan, "ParametersGenerated").reason.as_deref(),
        Some("ParametersGenerated")
    );
}

#[test]
fn up_to_date_applications_are_not_applied_and_stale_ones_are_deleted() {
    let set = appset(json!({"generators": [], "template": template()}));
    let first = run(&set, Ok(sets_of(&["a", "b"])), &[]);
    let owned: Vec<Application> = first.apply.iter().map(live).collect();
    let again = run(&set, Ok(sets_of(&["a", "b"])), &owned);
    assert!(again.apply.is_empty(), "{:?}", again.apply);
    assert_eq!(again.status.resources.len(), 2);
    assert_eq!(again.status.resources[0].kind, "Application");
    let removed = run(&set, Ok(sets_of(&["a", "c"])), &owned);
    assert_eq!(names(&removed.apply), ["c"]);
    assert_eq!(removed.delete, ["b"]);
    let mut changed = owned.clone();
    changed[0].spec.source.path = Some("elsewhere".into());
    assert_eq!(
        names(&run(&set, Ok(sets_of(&["a", "b"])), &changed).apply),
        ["a"]
    );
}

#[test]
fn applications_sync_policies() {
    let base = run(
        &appset(json!({"template": template()})),
        Ok(sets_of(&["a", "b"])),
        &[],
    );
    let mut owned: Vec<Application> = base.apply.iter().map(live).collect();
    owned[0].spec.source.path = Some("drifted".into());
    let cases = [
        ("create-only", vec![], vec![]),
        ("create-update", vec!["a"], vec![]),
        ("create-delete", vec![], vec!["b"]),
        ("sync", vec!["a"], vec!["b"]),
    ];
    for (policy, applied, deleted) in cases {
        let set =
            appset(json!({"template": template(), "syncPolicy": {"applicationsSync": policy}}));
        let plan = run(&set, Ok(sets_of(&["a", "c"])), &owned);
        let mut want_apply = applied.clone();
        want_apply.push("c");
        assert_eq!(names(&plan.apply), want_apply, "{policy}");
        assert_eq!(plan.delete, deleted, "{policy}");
    }
    let bad = appset(json!({"template": template(), "syncPolicy": {"applicationsSync": "nope"}}));
    let plan = run(&bad, Ok(sets_of(&["a"])), &[]);
    assert!(plan.apply.is_empty());
    assert!(
        condition_of(&plan, "ErrorOccurred")
            .message
            .as_deref()
            .unwrap()
            .contains("applicationsSync")
    );
}

#[test]
fn whole_set_errors_create_and_delete_nothing() {
    let owned: Vec<Application> = run(
        &appset(json!({"template": template()})),
        Ok(sets_of(&["a"])),
        &[],
    )
    .apply
    .iter()
    .map(live)
    .collect();
    let cases = [
        (
            appset(
                json!({"template": template(), "generators": [{"scmProvider": {"github": {}}}]}),
            ),
            Ok(sets_of(&["b"])),
            "spec.generators[0].scmProvider is not supported by Sluice",
        ),
        (
            appset(json!({"template": template()})),
            Err("spec.generators[0].git: cannot fetch".to_string()),
            "cannot fetch",
        ),
        (
            appset(json!({"template": {"metadata": {"name": "same"}, "spec": template()["spec"]}})),
            Ok(sets_of(&["b", "c"])),
            "duplicate name: same",
        ),
        (
            appset(json!({"template": template(), "goTemplate": true, "goTemplateOptions": ["x"]})),
            Ok(sets_of(&["b"])),
            "goTemplateOptions",
        ),
        (
            appset(json!({"template": template(), "templatePatch": "spec: {}"})),
            Ok(sets_of(&["b"])),
            "templatePatch needs spec.goTemplate",
        ),
        (
            appset(
                json!({"template": template(), "strategy": {"type": "RollingSync", "rollingSync": {"steps": []}}}),
            ),
            Ok(sets_of(&["b"])),
            "spec.strategy.rollingSync",
        ),
    ];
    for (set, generated, want) in cases {
        let plan = run(&set, generated, &owned);
        assert!(plan.apply.is_empty(), "{want}");
        assert!(plan.delete.is_empty(), "{want}");
        let error = condition_of(&plan, "ErrorOccurred");
        assert_eq!(error.status.as_deref(), Some("True"), "{want}");
        assert!(
            error.message.as_deref().unwrap().contains(want),
            "{want}: {:?}",
            error.message
        );
        assert_eq!(
            condition_of(&plan, "ResourcesUpToDate").status.as_deref(),
            Some("False")
        );
    }
}

#[test]
fn invalid_applications_are_skipped_but_not_deleted() {
    let set = appset(json!({"template": template()}));
    let owned: Vec<Application> = run(&set, Ok(sets_of(&["a", "b"])), &[])
        .apply
        .iter()
        .map(live)
        .collect();
    // `B_Bad` is not a DNS name; `b` stays generated-but-unchanged.
    let mut generated = sets_of(&["a", "b", "B_Bad"]);
    generated[0].sets[1].insert("path".into(), json!("apps/b"));
    let plan = run(&set, Ok(generated), &owned);
    assert!(plan.apply.is_empty());
    assert!(plan.delete.is_empty());
    let error = condition_of(&plan, "ErrorOccurred");
    assert_eq!(error.reason.as_deref(), Some(REASON_VALIDATION_ERROR));
    assert!(
        error
            .message
            .as_deref()
            .unwrap()
            .contains("\"B_Bad\" is not a valid Application name")
    );
    let elsewhere = appset(
        json!({"template": {"metadata": {"name": "x", "namespace": "other"},
                                               "spec": template()["spec"]}}),
    );
    let plan = run(&elsewhere, Ok(sets_of(&["a"])), &[]);
    assert!(plan.apply.is_empty());
    assert!(
        condition_of(&plan, "ErrorOccurred")
            .message
            .as_deref()
            .unwrap()
            .contains("namespace")
    );
}

#[test]
fn go_template_patch_and_generator_template_override() {
    let set = appset(json!({
        "goTemplate": true,
        "template": {"metadata": {"name": "{{ .name }}"},
                     "spec": {"source": {"repoURL": "https://example.com/r.git", "path": "{{ .name }}"},
                              "destination": {"namespace": "x"}}},
        "templatePatch": "spec:\n  syncPolicy:\n    automated:\n      prune: true\n  source:\n    targetRevision: '{{ .rev | default \"main\" }}'\n",
        "syncPolicy": {"preserveResourcesOnDeletion": true}
    }));
    let mut set_a = ParamSet::new();
    set_a.insert("name".into(), json!("a"));
    let generated = vec![Generated {
        sets: vec![set_a],
        template: Some(json!({"metadata": {"labels": {"from": "generator"}}})),
    }];
    let plan = run(&set, Ok(generated), &[]);
    assert_eq!(plan.apply.len(), 1, "{:?}", plan.status.conditions);
    let app = &plan.apply[0];
    assert_eq!(app["spec"]["source"]["targetRevision"], "main");
    assert_eq!(app["spec"]["syncPolicy"]["automated"]["prune"], true);
    assert_eq!(app["metadata"]["labels"]["from"], "generator");
    assert_eq!(
        app["metadata"]["finalizers"],
        json!([]),
        "preserveResourcesOnDeletion"
    );
}

#[test]
fn ignore_application_differences_and_preserved_fields_keep_live_values() {
    let set = appset(json!({"template": template(),
        "ignoreApplicationDifferences": [{"jsonPointers": ["/spec/source/targetRevision"]}],
        "preservedFields": {"annotations": ["note"]}}));
    let mut owned: Vec<Application> = run(&set, Ok(sets_of(&["a"])), &[])
        .apply
        .iter()
        .map(live)
        .collect();
    owned[0].spec.source.target_revision = Some("pinned".into());
    owned[0]
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("note".into(), "by hand".into());
    assert!(run(&set, Ok(sets_of(&["a"])), &owned).apply.is_empty());
    owned[0].spec.source.path = Some("drift".into());
    let plan = run(&set, Ok(sets_of(&["a"])), &owned);
    assert_eq!(plan.apply[0]["spec"]["source"]["targetRevision"], "pinned");
    assert_eq!(plan.apply[0]["spec"]["source"]["path"], "apps/a");
    assert_eq!(plan.apply[0]["metadata"]["annotations"]["note"], "by hand");
}

#[test]
fn conditions_keep_their_transition_time_when_unchanged() {
    let mut set = appset(json!({"template": template()}));
    let first = run(&set, Ok(sets_of(&["a"])), &[]);
    let mut earlier = first.status.clone();
    for c in &mut earlier.conditions {
        c.last_transition_time = Some(Time("2025-01-01T00:00:00Z".parse().unwrap()));
    }
    set.status = Some(earlier.clone());
    let again = run(&set, Ok(sets_of(&["a"])), &[]);
    assert_eq!(again.status.conditions, earlier.conditions);
    let failed = run(&set, Err("boom".into()), &[]);
    assert_eq!(
        condition_of(&failed, "ErrorOccurred").last_transition_time,
        Some(Time(now()))
    );
}

#[test]
fn names_must_be_dns_subdomains() {
    for ok in ["a", "a-b.c", "x1"] {
        assert!(check_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", "A", "a_b", "-a", "a.", &"a".repeat(254)] {
        assert!(check_name(bad).is_err(), "{bad}");
    }
}
