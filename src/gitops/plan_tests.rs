//! Planner tests, one or more per line of docs/behaviour.md G1–G12 that the planner decides.

use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::api::application::{HealthStatusCode, ResultCode, SyncPhase};
use crate::gitops::conditions::message_of;
use crate::gitops::project::ServiceAccountRef;

const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const T0: i64 = 1_750_000_000;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap()
}

fn app(sync_policy: Value) -> Application {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": "shop", "namespace": "argocd"},
        "spec": {"source": {"repoURL": "git://git.example/shop.git", "targetRevision": "main"},
                 "destination": {"namespace": "shop"},
                 "syncPolicy": sync_policy}
    }))
    .unwrap()
}

fn automated(options: Value) -> Application {
    app(json!({"automated": options}))
}

fn cm(name: &str, value: &str, revision: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "shop", "annotations": {
               "sluice.dev/application": "argocd/shop", "sluice.dev/revision": revision}},
           "data": {"v": value}})
}

fn desired(revision: &str, objects: Vec<Value>) -> Desired {
    Desired {
        revision: revision.to_string(),
        source: app(json!({})).spec.source,
        source_type: Some(ApplicationSourceType::Directory),
        objects,
        hooks: Vec::new(),
        not_permitted: Vec::new(),
    }
}

/// An observation of `app` whose Git holds `target`, with `live` the Application's objects.
fn observed(app: Application, target: Desired, live: Vec<Value>) -> Observed {
    Observed {
        requested: operation_request(&app).map(|_| Ok(target.clone())),
        app,
        now: at(T0),
        refreshed: true,
        live: live
            .iter()
            .map(|o| (key_of(o).unwrap(), o.clone()))
            .collect(),
        tracked: live,
        tracked_hooks: Vec::new(),
        target: Ok(target),
        next_refresh_in: Duration::from_secs(60),
        invalid_spec: None,
        sync_identity: SyncIdentity::Controller,
        cluster: crate::gitops::clusters::ClusterIdentity::in_cluster(),
        sync_windows: Vec::new(),
        health_rules: std::sync::Arc::default(),
    }
}

fn succeeded(revision: &str, finished: i64, heal_attempts: i64) -> OperationState {
    OperationState {
        operation: Operation {
            sync: Some(SyncOperation {
                revision: Some(revision.to_string()),
                auto_heal_attempts_count: heal_attempts,
                ..SyncOperation::default()
            }),
            initiated_by: Some(OperationInitiator {
                username: None,
                automated: true,
            }),
            ..Operation::default()
        },
        phase: OperationPhase::Succeeded,
        message: None,
        sync_result: Some(SyncOperationResult {
            revision: revision.to_string(),
            ..SyncOperationResult::default()
        }),
        started_at: Time(at(finished - 1)),
        finished_at: Some(Time(at(finished))),
        retry_count: 0,
    }
}

fn failed(revision: &str, finished: i64, retry_count: i64) -> OperationState {
    OperationState {
        phase: OperationPhase::Failed,
        message: Some("ConfigMap shop/a: admission webhook denied it".into()),
        retry_count,
        ..succeeded(revision, finished, 0)
    }
}

fn with_state(mut app: Application, state: OperationState) -> Application {
    app.status
        .get_or_insert_with(Default::default)
        .operation_state = Some(state);
    app
}

fn kind(plan: &Plan) -> Option<SyncKind> {
    plan.sync.as_ref().map(|t| t.kind)
}

fn names(objects: &[Value]) -> Vec<&str> {
    objects
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect()
}

fn condition<'a>(plan: &'a Plan, type_: &str) -> Option<&'a str> {
    message_of(&plan.status.conditions, type_)
}

#[test]
fn g1_first_sync_of_an_automated_application_applies_everything() {
    let target = desired(SHA_A, vec![cm("a", "1", SHA_A), cm("b", "2", SHA_A)]);
    let plan = plan(&observed(automated(json!({})), target, vec![]));
    let task = plan.sync.as_ref().expect("sync");
    assert_eq!(task.kind, SyncKind::Automated);
    assert_eq!(task.revision, SHA_A);
    assert_eq!(names(&task.apply), ["a", "b"]);
    assert!(task.prune.is_empty());
    let op = task.operation.sync.as_ref().unwrap();
    assert_eq!(op.revision.as_deref(), Some(SHA_A));
    assert!(task.operation.initiated_by.as_ref().unwrap().automated);
    let sync = plan.status.sync.as_ref().unwrap();
    assert_eq!(sync.status, SyncStatusCode::OutOfSync);
    assert_eq!(sync.revision.as_deref(), Some(SHA_A));
    assert_eq!(plan.status.health_status(), HealthStatusCode::Missing);
    assert_eq!(plan.status.reconciled_at, Some(Time(at(T0))));
    assert!(!plan.clear_operation);
}

#[test]
fn g1_in_sync_means_nothing_to_do() {
    let objects = vec![cm("a", "1", SHA_A)];
    let plan = plan(&observed(
        automated(json!({"selfHeal": true})),
        desired(SHA_A, objects.clone()),
        objects,
    ));
    assert_eq!(plan.sync, None);
    assert_eq!(plan.status.sync_status(), SyncStatusCode::Synced);
    assert_eq!(plan.status.health_status(), HealthStatusCode::Healthy);
    assert!(plan.status.conditions.is_empty());
    assert_eq!(plan.requeue_after, Duration::from_secs(60));
}

#[test]
fn g3_manual_policy_shows_the_diff_and_applies_nothing() {
    let live = vec![cm("a", "1", SHA_A)];
    let plan = plan(&observed(
        app(json!({})),
        desired(SHA_B, vec![cm("a", "2", SHA_B)]),
        live,
    ));
    assert_eq!(plan.sync, None);
    assert_eq!(plan.status.sync_status(), SyncStatusCode::OutOfSync);
    assert_eq!(
        plan.status.resources[0].diff,
        [
            "@@ -1,6 +1,6 @@",
            " apiVersion: v1",
            " data:",
            "-  v: \"1\"",
            "+  v: \"2\"",
            " kind: ConfigMap",
            " metadata:",
            "   annotations:",
        ]
    );
}

#[test]
fn g3_a_requested_sync_runs_once_and_is_recorded() {
    let mut a = app(json!({}));
    a.operation = Some(
        serde_json::from_value(
            json!({"sync": {"prune": true}, "initiatedBy": {"username": "alice"}}),
        )
        .unwrap(),
    );
    let plan = plan(&observed(
        a,
        desired(SHA_B, vec![cm("a", "2", SHA_B)]),
        vec![cm("a", "1", SHA_A), cm("old", "x", SHA_A)],
    ));
    assert!(plan.clear_operation);
    let task = plan.sync.as_ref().unwrap();
    assert_eq!(task.kind, SyncKind::Manual);
    assert_eq!(names(&task.prune), ["old"]);
    let status = finish_sync(
        plan.status.clone(),
        &app(json!({})).spec,
        task,
        &SyncOutcome::default(),
        at(T0),
        at(T0 + 2),
    );
    let state = status.operation_state.as_ref().unwrap();
    assert_eq!(state.phase, OperationPhase::Succeeded);
    assert_eq!(
        state
            .operation
            .initiated_by
            .as_ref()
            .unwrap()
            .username
            .as_deref(),
        Some("alice")
    );
    assert_eq!(status.history.len(), 1);
    assert_eq!(status.history[0].revision, SHA_B);
}

/// A manual sync requested with `sync` (the operation's `sync` field).
fn requesting(sync: Value) -> Application {
    let mut a = app(json!({}));
    a.operation = Some(
        serde_json::from_value(json!({"sync": sync, "initiatedBy": {"username": "alice"}}))
            .unwrap(),
    );
    a
}

#[test]
fn a_selective_sync_applies_and_prunes_only_the_named_objects_runs_no_hook_and_adds_no_history() {
    let mut target = desired(SHA_B, vec![cm("a", "2", SHA_B), cm("b", "2", SHA_B)]);
    target.hooks = vec![json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "migrate", "namespace": "shop",
                     "annotations": {"argocd.argoproj.io/hook": "PreSync"}}})];
    let live = vec![
        cm("a", "1", SHA_A),
        cm("b", "1", SHA_A),
        cm("old", "x", SHA_A),
        cm("older", "x", SHA_A),
    ];
    let a = requesting(json!({"prune": true, "resources": [
        {"kind": "ConfigMap", "name": "a"},
        {"kind": "ConfigMap", "name": "old", "namespace": "shop"},
        {"kind": "ConfigMap", "name": "older", "namespace": "elsewhere"}
    ]}));
    let p = plan(&observed(a.clone(), target, live));
    let task = p.sync.as_ref().unwrap();
    assert!(task.selective && !task.dry_run);
    assert_eq!(names(&task.apply), ["a"]);
    assert_eq!(
        names(&task.prune),
        ["old"],
        "`older` is in another namespace"
    );
    assert!(task.hooks.is_empty(), "no hook runs in a selective sync");
    let status = finish_sync(
        p.status.clone(),
        &a.spec,
        task,
        &SyncOutcome::default(),
        at(T0),
        at(T0 + 1),
    );
    assert_eq!(
        status.operation_state.as_ref().unwrap().phase,
        OperationPhase::Succeeded
    );
    assert!(status.history.is_empty(), "Argo CD records full syncs only");
}

#[test]
fn a_dry_run_sync_is_reported_without_history_and_does_not_stand_for_the_revision() {
    let a = requesting(json!({"dryRun": true}));
    let p = plan(&observed(
        a.clone(),
        desired(SHA_B, vec![cm("a", "2", SHA_B)]),
        vec![cm("a", "1", SHA_A)],
    ));
    let task = p.sync.as_ref().unwrap();
    assert!(task.dry_run && !task.selective);
    let status = finish_sync(
        p.status.clone(),
        &a.spec,
        task,
        &SyncOutcome::default(),
        at(T0),
        at(T0 + 1),
    );
    let state = status.operation_state.clone().unwrap();
    assert_eq!(state.phase, OperationPhase::Succeeded);
    assert_eq!(
        state.message.as_deref(),
        Some("successfully synced (dry run: nothing was changed)")
    );
    assert!(status.history.is_empty());

    // Automated sync still applies the revision the dry run looked at.
    let mut auto = automated(json!({}));
    auto.status = Some(status);
    let p = plan(&observed(
        auto,
        desired(SHA_B, vec![cm("a", "2", SHA_B)]),
        vec![cm("a", "1", SHA_A)],
    ));
    assert_eq!(kind(&p), Some(SyncKind::Automated));
    assert!(!p.sync.unwrap().is_partial());
}

#[test]
fn refresh_only_operation_is_cleared_without_a_sync() {
    let mut a = app(json!({}));
    a.operation = Some(serde_json::from_value(json!({"refresh": "normal"})).unwrap());
    let plan = plan(&observed(a, desired(SHA_A, vec![]), vec![]));
    assert!(plan.clear_operation);
    assert_eq!(plan.sync, None);
}

#[test]
fn g4_self_heal_reapplies_drift_with_backoff() {
    let live = vec![cm("a", "edited", SHA_A)];
    let target = || desired(SHA_A, vec![cm("a", "1", SHA_A)]);
    let heal = automated(json!({"selfHeal": true}));

    // Right after a regular sync: immediate.
    let a = with_state(heal.clone(), succeeded(SHA_A, T0 - 1, 0));
    let p = plan(&observed(a, target(), live.clone()));
    assert_eq!(kind(&p), Some(SyncKind::SelfHeal));
    assert_eq!(
        p.sync
            .as_ref()
            .unwrap()
            .operation
            .sync
            .as_ref()
            .unwrap()
            .auto_heal_attempts_count,
        1
    );

    // Drift again 1 s after the first heal: wait until 2 s after it.
    let a = with_state(heal.clone(), succeeded(SHA_A, T0 - 1, 1));
    let p = plan(&observed(a, target(), live.clone()));
    assert_eq!(p.sync, None);
    assert_eq!(p.requeue_after, Duration::from_secs(1));

    // Backoff grows 2, 6, 18, 54, 162 s, capped at 300 s.
    let delays: Vec<u64> = (1..=7).map(|n| self_heal_backoff(n).as_secs()).collect();
    assert_eq!(delays, [2, 6, 18, 54, 162, 300, 300]);
    let a = with_state(heal.clone(), succeeded(SHA_A, T0 - 20, 3));
    assert_eq!(
        kind(&plan(&observed(a, target(), live.clone()))),
        Some(SyncKind::SelfHeal)
    );

    // Quiet for longer than the cooldown: immediate again.
    let a = with_state(heal, succeeded(SHA_A, T0 - 400, 6));
    let p = plan(&observed(a, target(), live));
    assert_eq!(
        p.sync
            .as_ref()
            .unwrap()
            .operation
            .sync
            .as_ref()
            .unwrap()
            .auto_heal_attempts_count,
        1
    );
}

#[test]
fn g4_without_self_heal_drift_stays_out_of_sync() {
    let a = with_state(automated(json!({})), succeeded(SHA_A, T0 - 1, 0));
    let p = plan(&observed(
        a,
        desired(SHA_A, vec![cm("a", "1", SHA_A)]),
        vec![cm("a", "edited", SHA_A)],
    ));
    assert_eq!(p.sync, None);
    assert_eq!(p.status.sync_status(), SyncStatusCode::OutOfSync);
    assert!(!p.status.resources[0].diff.is_empty());
}

#[test]
fn g5_prune_only_with_prune_on_and_warn_otherwise() {
    let live = vec![cm("a", "1", SHA_A), cm("old", "x", SHA_A)];
    let target = || desired(SHA_B, vec![cm("a", "1", SHA_B)]);

    let p = plan(&observed(
        automated(json!({"prune": true})),
        target(),
        live.clone(),
    ));
    let task = p.sync.as_ref().unwrap();
    assert_eq!(names(&task.prune), ["old"]);
    assert_eq!(condition(&p, ORPHANED_RESOURCE_WARNING), None);

    // Prune off and nothing else to change: no sync, the object is reported.
    let p = plan(&observed(automated(json!({})), target(), live.clone()));
    assert_eq!(p.sync, None);
    let old = p.status.resources.iter().find(|r| r.name == "old").unwrap();
    assert!(old.requires_pruning);
    assert!(
        condition(&p, ORPHANED_RESOURCE_WARNING)
            .unwrap()
            .contains("ConfigMap shop/old")
    );

    // Prune off with another change: synced, the object kept.
    let p = plan(&observed(
        automated(json!({})),
        desired(SHA_B, vec![cm("a", "2", SHA_B)]),
        live.clone(),
    ));
    let task = p.sync.as_ref().unwrap();
    assert!(task.prune.is_empty());
    assert_eq!(names(&task.prune_skipped), ["old"]);

    // Prune=false on the object keeps it even with prune on.
    let mut keep = cm("old", "x", SHA_A);
    keep["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] = json!("Prune=false");
    let p = plan(&observed(
        automated(json!({"prune": true})),
        target(),
        vec![cm("a", "1", SHA_A), keep],
    ));
    let task = p.sync.as_ref().unwrap();
    assert!(task.prune.is_empty());
    assert_eq!(names(&task.prune_skipped), ["old"]);
}

#[test]
fn g5_an_automated_sync_that_would_delete_everything_needs_allow_empty() {
    let live = vec![cm("a", "1", SHA_A)];
    let p = plan(&observed(
        automated(json!({"prune": true})),
        desired(SHA_B, vec![]),
        live.clone(),
    ));
    assert_eq!(p.sync, None);
    assert!(
        condition(&p, SYNC_ERROR)
            .unwrap()
            .contains("allowEmpty: true")
    );
    let p = plan(&observed(
        automated(json!({"prune": true, "allowEmpty": true})),
        desired(SHA_B, vec![]),
        live,
    ));
    assert_eq!(names(&p.sync.as_ref().unwrap().prune), ["a"]);
}

#[test]
fn g7_create_namespace_option() {
    let a = app(json!({"automated": {}, "syncOptions": ["CreateNamespace=true"]}));
    let p = plan(&observed(
        a,
        desired(SHA_A, vec![cm("a", "1", SHA_A)]),
        vec![],
    ));
    assert_eq!(
        p.sync.as_ref().unwrap().create_namespace.as_deref(),
        Some("shop")
    );
    let p = plan(&observed(
        automated(json!({})),
        desired(SHA_A, vec![cm("a", "1", SHA_A)]),
        vec![],
    ));
    assert_eq!(p.sync.as_ref().unwrap().create_namespace, None);
}

#[test]
fn g9_history_is_appended_per_sync_and_capped_but_not_for_self_heal() {
    let mut a = automated(json!({}));
    a.spec.revision_history_limit = Some(2);
    let mut status = ApplicationStatus::default();
    for (n, sha) in [SHA_A, SHA_B, SHA_A].iter().enumerate() {
        let p = plan(&observed(
            a.clone(),
            desired(sha, vec![cm("a", &n.to_string(), sha)]),
            vec![],
        ));
        status = finish_sync(
            status,
            &a.spec,
            p.sync.as_ref().unwrap(),
            &SyncOutcome::default(),
            at(T0),
            at(T0 + 1),
        );
    }
    let ids: Vec<i64> = status.history.iter().map(|h| h.id).collect();
    assert_eq!(ids, [1, 2]);
    // The same automated sync recorded twice (a stale read) makes one entry.
    let again = plan(&observed(
        a.clone(),
        desired(SHA_A, vec![cm("a", "9", SHA_A)]),
        vec![],
    ));
    let same = finish_sync(
        status.clone(),
        &a.spec,
        again.sync.as_ref().unwrap(),
        &SyncOutcome::default(),
        at(T0),
        at(T0 + 2),
    );
    assert_eq!(same.history, status.history);
    assert_eq!(status.history[1].revision, SHA_A);
    assert_eq!(status.history[1].deployed_at, Time(at(T0 + 1)));

    let heal = SyncTask {
        kind: SyncKind::SelfHeal,
        ..plan(&observed(
            a.clone(),
            desired(SHA_A, vec![cm("a", "1", SHA_A)]),
            vec![],
        ))
        .sync
        .unwrap()
    };
    let after = finish_sync(
        status.clone(),
        &a.spec,
        &heal,
        &SyncOutcome::default(),
        at(T0),
        at(T0),
    );
    assert_eq!(after.history, status.history);
}

fn with_history(mut a: Application) -> Application {
    let status = a.status.get_or_insert_with(Default::default);
    for (id, sha) in [SHA_A, SHA_B].iter().enumerate() {
        status.history.push(RevisionHistory {
            id: i64::try_from(id).unwrap(),
            revision: sha.to_string(),
            deployed_at: Time(at(T0 - 100)),
            deploy_started_at: None,
            source: None,
            initiated_by: None,
        });
    }
    a
}

#[test]
fn g9_rollback_applies_the_history_revision_and_suspends_automated_sync() {
    let mut a = with_history(automated(json!({"prune": true})));
    a.operation = Some(serde_json::from_value(json!({"rollback": {"id": 0}})).unwrap());
    assert_eq!(
        operation_request(&a),
        Some(OperationRequest {
            revision: SHA_A.into(),
            source: a.spec.source.clone()
        })
    );
    let mut obs = observed(a, desired(SHA_B, vec![cm("a", "2", SHA_B)]), vec![]);
    obs.requested = Some(Ok(desired(SHA_A, vec![cm("a", "1", SHA_A)])));
    let p = plan(&obs);
    let task = p.sync.as_ref().unwrap();
    assert_eq!(task.kind, SyncKind::Rollback);
    assert_eq!(task.revision, SHA_A);
    assert_eq!(task.apply[0]["data"]["v"], "1");
    assert!(p.disable_automated);
    assert!(p.clear_operation);
    assert_eq!(
        task.operation.sync.as_ref().unwrap().revision.as_deref(),
        Some(SHA_A)
    );
    assert_eq!(task.operation.rollback.as_ref().unwrap().id, 0);

    // Once automated sync is off, the rolled-back Application stays OutOfSync.
    let mut after = app(json!({"automated": {"enabled": false, "prune": true}}));
    after = with_state(after, succeeded(SHA_A, T0, 0));
    let p = plan(&observed(
        after,
        desired(SHA_B, vec![cm("a", "2", SHA_B)]),
        vec![cm("a", "1", SHA_A)],
    ));
    assert_eq!(p.sync, None);
    assert_eq!(p.status.sync_status(), SyncStatusCode::OutOfSync);
}

#[test]
fn g9_rollback_to_an_unknown_id_is_an_error() {
    let mut a = with_history(app(json!({})));
    a.operation = Some(serde_json::from_value(json!({"rollback": {"id": 9}})).unwrap());
    assert_eq!(operation_request(&a), None);
    let mut obs = observed(a, desired(SHA_B, vec![]), vec![]);
    obs.requested = None;
    let p = plan(&obs);
    assert_eq!(p.sync, None);
    assert!(p.clear_operation);
    let state = p.status.operation_state.as_ref().unwrap();
    assert_eq!(state.phase, OperationPhase::Error);
    assert!(state.message.as_deref().unwrap().contains("ids: 0, 1"));
    assert!(condition(&p, SYNC_ERROR).is_some());
}

#[test]
fn g10_a_failed_revision_is_not_retried_but_a_new_commit_is() {
    let live = vec![cm("a", "1", SHA_A)];
    let a = with_state(
        automated(json!({"selfHeal": true})),
        failed(SHA_B, T0 - 1, 0),
    );
    let p = plan(&observed(
        a.clone(),
        desired(SHA_B, vec![cm("a", "2", SHA_B)]),
        live.clone(),
    ));
    assert_eq!(p.sync, None);
    assert!(
        condition(&p, SYNC_ERROR)
            .unwrap()
            .starts_with("sync of bbbbbbb failed: ConfigMap shop/a")
    );
    let p = plan(&observed(
        a,
        desired(SHA_A, vec![cm("a", "3", SHA_A)]),
        live,
    ));
    assert_eq!(kind(&p), Some(SyncKind::Automated));
}

#[test]
fn g10_retry_backs_off_and_gives_up_after_the_limit() {
    let mut a = automated(json!({}));
    a.spec.sync_policy.as_mut().unwrap().retry =
        Some(serde_json::from_value(json!({"limit": 2})).unwrap());
    let target = || desired(SHA_B, vec![cm("a", "2", SHA_B)]);
    let live = vec![cm("a", "1", SHA_A)];
    let p = plan(&observed(a.clone(), target(), live.clone()));
    let first = p.sync.clone().unwrap();
    let failure = SyncOutcome {
        results: vec![],
        error: Some("apply failed".into()),
        waiting: None,
    };

    // First failure: Running, retry #1 in 5 s.
    let status = finish_sync(p.status.clone(), &a.spec, &first, &failure, at(T0), at(T0));
    let state = status.operation_state.clone().unwrap();
    assert_eq!(state.phase, OperationPhase::Running);
    assert_eq!(
        state.message.as_deref(),
        Some("apply failed; retrying attempt #1 in 5s")
    );
    let mut waiting = a.clone();
    waiting.status = Some(status);
    let mut obs = observed(waiting.clone(), target(), live.clone());
    obs.now = at(T0 + 2);
    let p = plan(&obs);
    assert_eq!(p.sync, None);
    assert_eq!(p.requeue_after, Duration::from_secs(3));

    obs.now = at(T0 + 5);
    let p = plan(&obs);
    let second = p.sync.clone().unwrap();
    assert_eq!((second.kind, second.retry_count), (SyncKind::Retry, 1));

    // Second failure: retry #2 in 10 s; the third attempt fails for good.
    let status = finish_sync(
        p.status.clone(),
        &a.spec,
        &second,
        &failure,
        at(T0 + 5),
        at(T0 + 5),
    );
    assert_eq!(
        status.operation_state.as_ref().unwrap().phase,
        OperationPhase::Running
    );
    let third = SyncTask {
        retry_count: 2,
        ..second
    };
    let status = finish_sync(status, &a.spec, &third, &failure, at(T0 + 15), at(T0 + 15));
    assert_eq!(
        status.operation_state.as_ref().unwrap().phase,
        OperationPhase::Failed
    );
    assert!(message_of(&status.conditions, SYNC_ERROR).is_some());
    waiting.status = Some(status);
    assert_eq!(plan(&observed(waiting, target(), live)).sync, None);
}

#[test]
fn g10_a_pending_automated_retry_gives_way_to_a_new_commit() {
    let mut a = automated(json!({}));
    a.spec.sync_policy.as_mut().unwrap().retry = Some(RetryStrategy::default());
    let mut state = failed(SHA_A, T0, 0);
    state.phase = OperationPhase::Running;
    let a = with_state(a, state);
    let p = plan(&observed(
        a,
        desired(SHA_B, vec![cm("a", "2", SHA_B)]),
        vec![],
    ));
    let task = p.sync.unwrap();
    assert_eq!(
        (task.kind, task.revision.as_str()),
        (SyncKind::Automated, SHA_B)
    );
}

#[test]
fn g11_comparison_errors_apply_nothing() {
    let mut obs = observed(
        automated(json!({"prune": true})),
        desired(SHA_A, vec![]),
        vec![],
    );
    obs.target = Err(ComparisonFailure {
        revision: Some(SHA_B.into()),
        message: "apps/web.yaml:3:1: invalid YAML: mapping values are not allowed".into(),
    });
    let p = plan(&obs);
    assert_eq!(p.sync, None);
    assert_eq!(p.status.sync_status(), SyncStatusCode::Unknown);
    assert_eq!(
        p.status.sync.as_ref().unwrap().revision.as_deref(),
        Some(SHA_B)
    );
    assert!(
        condition(&p, COMPARISON_ERROR)
            .unwrap()
            .contains("invalid YAML")
    );
}

#[test]
fn g12_child_applications_are_synced_objects_whose_health_does_not_count_by_default() {
    let child = |name: &str, health: &str| {
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
               "metadata": {"name": name, "namespace": "shop"},
               "spec": {"source": {"repoURL": "r"}, "destination": {}},
               "status": {"health": {"status": health}}})
    };
    let declared = |name: &str| {
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
               "metadata": {"name": name, "namespace": "shop"},
               "spec": {"source": {"repoURL": "r"}, "destination": {}}})
    };
    let p = plan(&observed(
        automated(json!({})),
        desired(SHA_A, vec![declared("one"), declared("two")]),
        vec![child("one", "Healthy"), child("two", "Degraded")],
    ));
    assert_eq!(p.sync, None);
    assert_eq!(p.status.sync_status(), SyncStatusCode::Synced);
    // Argo CD (since 1.8): a Degraded child does not make the parent Degraded.
    assert_eq!(p.status.health_status(), HealthStatusCode::Healthy);
}

#[test]
fn quarantined_revisions_are_never_synced_automatically() {
    let mut a = automated(json!({}));
    a.status = Some(ApplicationStatus {
        quarantined_revisions: vec![SHA_B.into()],
        ..ApplicationStatus::default()
    });
    let p = plan(&observed(
        a,
        desired(SHA_B, vec![cm("a", "2", SHA_B)]),
        vec![],
    ));
    assert_eq!(p.sync, None);
    assert!(condition(&p, SYNC_ERROR).unwrap().contains("quarantined"));
}

#[test]
fn a_destination_on_another_cluster_syncs_and_sync_windows_match_that_cluster() {
    let mut a = automated(json!({}));
    a.spec.destination.name = Some("prod".into());
    let mut obs = observed(a, desired(SHA_A, vec![cm("a", "1", SHA_A)]), vec![]);
    obs.cluster = crate::gitops::clusters::ClusterIdentity {
        server: "https://prod.example.com:6443".into(),
        name: "prod".into(),
    };
    assert!(plan(&obs).sync.is_some());
    for clusters in [json!(["prod"]), json!(["https://prod.example.com:6443"])] {
        obs.sync_windows = vec![
            serde_json::from_value(json!({"kind": "deny", "schedule": "* * * * *",
                                          "duration": "1h", "clusters": clusters}))
            .unwrap(),
        ];
        assert_eq!(plan(&obs).sync, None, "a deny window for {clusters}");
    }
    obs.sync_windows = vec![
        serde_json::from_value(json!({"kind": "deny", "schedule": "* * * * *",
                                      "duration": "1h", "clusters": ["in-cluster"]}))
        .unwrap(),
    ];
    assert!(plan(&obs).sync.is_some(), "the window of another cluster");
}

#[test]
fn deleting_with_the_resources_finalizer_deletes_the_objects_first() {
    let mut a = automated(json!({}));
    a.metadata.deletion_timestamp = Some(Time(at(T0)));
    a.metadata.finalizers = Some(vec!["resources-finalizer.argocd.argoproj.io".into()]);
    let live = vec![cm("a", "1", SHA_A)];
    let p = plan(&observed(a.clone(), desired(SHA_A, vec![]), live));
    assert_eq!(
        p.finalize,
        Some(Finalize::Delete(vec![cm("a", "1", SHA_A)]))
    );
    assert_eq!(p.sync, None);
    let p = plan(&observed(a.clone(), desired(SHA_A, vec![]), vec![]));
    assert_eq!(p.finalize, Some(Finalize::RemoveFinalizers));
    a.metadata.finalizers = None;
    assert_eq!(
        plan(&observed(a, desired(SHA_A, vec![]), vec![])).finalize,
        None
    );
}

#[test]
fn failed_objects_are_recorded_in_the_sync_result() {
    let a = automated(json!({}));
    let p = plan(&observed(
        a.clone(),
        desired(SHA_A, vec![cm("a", "1", SHA_A)]),
        vec![],
    ));
    let outcome = SyncOutcome {
        results: vec![ResourceResult {
            kind: "ConfigMap".into(),
            name: "a".into(),
            status: Some(ResultCode::SyncFailed),
            ..ResourceResult::default()
        }],
        error: Some("ConfigMap shop/a: denied".into()),
        waiting: None,
    };
    let status = finish_sync(
        p.status,
        &a.spec,
        p.sync.as_ref().unwrap(),
        &outcome,
        at(T0),
        at(T0),
    );
    let state = status.operation_state.unwrap();
    assert_eq!(state.phase, OperationPhase::Failed);
    assert_eq!(state.sync_result.unwrap().resources, outcome.results);
    assert!(status.history.is_empty());
}

fn applied(obj: &Value) -> ResourceResult {
    ResourceResult {
        group: String::new(),
        version: "v1".into(),
        kind: obj["kind"].as_str().unwrap().into(),
        namespace: obj["metadata"]["namespace"].as_str().unwrap().into(),
        name: obj["metadata"]["name"].as_str().unwrap().into(),
        status: Some(ResultCode::Synced),
        message: Some("applied".into()),
        sync_phase: Some(SyncPhase::Sync),
        ..ResourceResult::default()
    }
}

fn running_hook(name: &str, phase: SyncPhase) -> ResourceResult {
    ResourceResult {
        hook_type: Some(phase),
        hook_phase: Some(HookPhase::Running),
        sync_phase: Some(phase),
        message: Some("created".into()),
        ..applied(&cm(name, "hook", SHA_A))
    }
}

#[test]
fn g7_a_sync_waiting_for_a_wave_goes_on_where_it_was_in_the_next_reconcile() {
    let a = automated(json!({}));
    let target = || desired(SHA_A, vec![cm("a", "1", SHA_A), cm("b", "1", SHA_A)]);
    let p = plan(&observed(a.clone(), target(), vec![]));
    let task = p.sync.clone().unwrap();
    assert!(!task.resumed);
    assert!(task.done.is_empty());
    let done = vec![applied(&cm("a", "1", SHA_A))];
    let waiting = sync_in_progress(
        p.status,
        &task,
        "waiting for sync wave -1".into(),
        done.clone(),
    );
    let state = waiting.operation_state.as_ref().unwrap();
    assert_eq!(state.phase, OperationPhase::Running);
    assert_eq!(state.finished_at, None);
    assert_eq!(state.started_at.0, at(T0));

    // The next reconcile, or a restarted controller, later: the same operation, from its results.
    let mut next = a;
    next.status = Some(waiting);
    let mut obs = observed(next, target(), vec![]);
    obs.now = at(T0 + 30);
    let p = plan(&obs);
    let resumed = p.sync.unwrap();
    assert!(resumed.resumed);
    assert_eq!(resumed.done, done);
    assert_eq!((resumed.kind, resumed.retry_count), (SyncKind::Retry, 0));
    assert_eq!(resumed.operation, task.operation);
    // Its hooks keep the names they were created with.
    assert_eq!(resumed.started_at, T0);
}

/// `app` after the sync its first plan starts against `target` (and `live`) went under way,
/// having done `done`; and that sync.
fn under_way(
    app: &Application,
    target: Desired,
    live: Vec<Value>,
    message: &str,
    done: Vec<ResourceResult>,
) -> (Application, SyncTask) {
    let p = plan(&observed(app.clone(), target, live));
    let task = p.sync.clone().unwrap();
    let mut next = app.clone();
    next.status = Some(sync_in_progress(p.status, &task, message.into(), done));
    (next, task)
}

#[test]
fn an_automated_sync_that_waited_adds_no_second_history_entry_for_its_revision() {
    let target = || desired(SHA_A, vec![cm("a", "1", SHA_A)]);
    let (mut next, _) = under_way(
        &automated(json!({})),
        target(),
        vec![],
        "waiting",
        vec![applied(&cm("a", "1", SHA_A))],
    );
    next.status.as_mut().unwrap().history = vec![RevisionHistory {
        id: 0,
        revision: SHA_A.into(),
        deployed_at: Time(at(T0 - 100)),
        deploy_started_at: None,
        source: None,
        initiated_by: None,
    }];
    let p = plan(&observed(next.clone(), target(), vec![]));
    let resumed = p.sync.clone().unwrap();
    let done = SyncOutcome {
        results: resumed.done.clone(),
        ..SyncOutcome::default()
    };
    let status = finish_sync(p.status, &next.spec, &resumed, &done, at(T0), at(T0 + 5));
    assert_eq!(
        status.operation_state.unwrap().phase,
        OperationPhase::Succeeded
    );
    assert_eq!(status.history.len(), 1);
}

#[test]
fn a_sync_under_way_is_not_stopped_by_a_sync_window() {
    let target = || desired(SHA_A, vec![cm("a", "1", SHA_A)]);
    let (mut next, _) = under_way(
        &automated(json!({})),
        target(),
        vec![],
        "waiting",
        vec![applied(&cm("a", "1", SHA_A))],
    );
    let mut obs = observed(next.clone(), target(), vec![]);
    obs.sync_windows = vec![deny_always(false)];
    assert!(plan(&obs).sync.is_some_and(|t| t.resumed));

    // Held by the window before it did anything: it starts afresh once the window allows it.
    let status = next.status.as_mut().unwrap();
    status.operation_state.as_mut().unwrap().sync_result = None;
    let obs = observed(next, target(), vec![]);
    assert!(plan(&obs).sync.is_some_and(|t| !t.resumed));
}

#[test]
fn apply_out_of_sync_only_keeps_what_the_operation_applied_for_its_waves() {
    let target = || desired(SHA_B, vec![cm("a", "2", SHA_B), cm("b", "2", SHA_B)]);
    // `a` applied (in sync now), `b` not yet: both stay in the operation.
    let (next, task) = under_way(
        &with_options(&["ApplyOutOfSyncOnly=true"]),
        target(),
        vec![cm("a", "1", SHA_A)],
        "waiting",
        vec![applied(&cm("a", "2", SHA_B))],
    );
    assert_eq!(names(&task.apply), ["a", "b"]);
    let p = plan(&observed(next, target(), vec![cm("a", "2", SHA_B)]));
    assert_eq!(names(&p.sync.unwrap().apply), ["a", "b"]);
}

#[test]
fn terminating_an_operation_fails_it_and_deletes_its_running_hooks() {
    let target = || desired(SHA_A, vec![cm("a", "1", SHA_A)]);
    let (mut next, _) = under_way(
        &automated(json!({})),
        target(),
        vec![],
        "waiting for PreSync hook shop/migrate to complete",
        vec![running_hook("migrate", SyncPhase::PreSync)],
    );
    let status = next.status.as_mut().unwrap();
    status.operation_state.as_mut().unwrap().phase = OperationPhase::Terminating;
    let p = plan(&observed(next.clone(), target(), vec![]));
    assert_eq!(p.sync, None);
    assert_eq!(
        p.delete,
        [json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "migrate", "namespace": "shop"}})]
    );
    let state = p.status.operation_state.clone().unwrap();
    assert_eq!(state.phase, OperationPhase::Failed);
    assert_eq!(state.message.as_deref(), Some(TERMINATED));
    assert_eq!(state.finished_at, Some(Time(at(T0))));
    let hook_result = &state.sync_result.unwrap().resources[0];
    assert_eq!(hook_result.hook_phase, Some(HookPhase::Failed));
    assert_eq!(hook_result.message.as_deref(), Some("Terminated"));
    assert!(condition(&p, SYNC_ERROR).unwrap().contains(TERMINATED));

    // A request held by a sync window is the operation terminated: it is removed too.
    let mut held = next.clone();
    held.operation = Some(serde_json::from_value(json!({"sync": {}})).unwrap());
    assert!(plan(&observed(held, target(), vec![])).clear_operation);

    // Not retried, and the same revision is not synced again automatically.
    next.status = Some(p.status);
    let p = plan(&observed(next, target(), vec![]));
    assert_eq!(p.sync, None);
    assert!(p.delete.is_empty());
}

#[test]
fn objects_another_application_applied_are_reported() {
    let mut theirs = cm("a", "1", SHA_A);
    theirs["metadata"]["annotations"]["sluice.dev/application"] = json!("argocd/other");
    let p = plan(&observed(
        app(json!({})),
        desired(SHA_A, vec![cm("a", "1", SHA_A)]),
        vec![theirs],
    ));
    assert!(
        condition(&p, crate::gitops::conditions::SHARED_RESOURCE_WARNING)
            .unwrap()
            .contains("ConfigMap shop/a (applied by argocd/other)")
    );
}

fn owned_by(mut obj: Value, app: &str) -> Value {
    obj["metadata"]["annotations"]["sluice.dev/application"] = json!(app);
    obj
}

#[test]
fn objects_the_project_does_not_permit_fail_the_sync_before_anything_is_applied() {
    let a = automated(json!({"prune": true}));
    let mut target = desired(SHA_A, vec![cm("a", "1", SHA_A)]);
    target.not_permitted = vec![
        "ClusterRoleBinding admin: cluster-scoped kind ClusterRoleBinding.rbac.authorization.k8s.io (admin) is not permitted by project team-a's clusterResourceWhitelist".to_string(),
    ];
    let p = plan(&observed(a, target, vec![]));
    assert_eq!(p.sync, None, "nothing is applied");
    let state = p.status.operation_state.as_ref().unwrap();
    assert_eq!(state.phase, OperationPhase::Failed);
    let message = state.message.as_deref().unwrap();
    assert!(
        message.contains("not permitted by the project, nothing was applied"),
        "{message}"
    );
    assert!(message.contains("ClusterRoleBinding admin"), "{message}");
    assert!(
        condition(&p, SYNC_ERROR)
            .unwrap()
            .contains("clusterResourceWhitelist")
    );
}

#[test]
fn a_refused_application_reads_nothing_and_fails_its_operation() {
    let mut a = app(json!(null));
    a.operation = Some(Operation {
        sync: Some(SyncOperation::default()),
        ..Operation::default()
    });
    let why = "Applications in namespace argocd may not use project default: it is not the control namespace and not in the project's sourceNamespaces";
    let p = plan(&Observed::refused(
        &a,
        at(T0),
        why.to_string(),
        vec![],
        Duration::from_secs(60),
        SyncIdentity::Controller,
    ));
    assert_eq!(p.sync, None);
    assert_eq!(condition(&p, INVALID_SPEC_ERROR), Some(why));
    let state = p.status.operation_state.as_ref().unwrap();
    assert_eq!(state.phase, OperationPhase::Error);
    assert_eq!(
        state.message.as_deref(),
        Some(format!("operation refused: {why}").as_str())
    );
    assert!(p.clear_operation);
}

#[test]
fn an_object_another_application_tracks_is_neither_applied_nor_taken_over() {
    let a = automated(json!({"prune": true}));
    let theirs = owned_by(cm("shared", "theirs", SHA_B), "team-b/other");
    let p = plan(&observed(
        a,
        desired(
            SHA_A,
            vec![cm("mine", "1", SHA_A), cm("shared", "mine", SHA_A)],
        ),
        vec![theirs],
    ));
    let task = p.sync.as_ref().unwrap();
    assert_eq!(names(&task.apply), ["mine"]);
    assert_eq!(names(&task.shared), ["shared"]);
    assert!(
        task.prune.is_empty(),
        "never pruned: it is not this Application's"
    );
    assert!(
        condition(&p, SHARED_RESOURCE_WARNING)
            .unwrap()
            .contains("ConfigMap shop/shared (applied by team-b/other)")
    );
}

#[test]
fn fail_on_shared_resource_fails_the_sync_instead() {
    let a = app(json!({"automated": {}, "syncOptions": ["FailOnSharedResource=true"]}));
    let theirs = owned_by(cm("shared", "theirs", SHA_B), "team-b/other");
    let p = plan(&observed(
        a,
        desired(
            SHA_A,
            vec![cm("mine", "1", SHA_A), cm("shared", "mine", SHA_A)],
        ),
        vec![theirs],
    ));
    assert_eq!(p.sync, None);
    let state = p.status.operation_state.as_ref().unwrap();
    assert_eq!(state.phase, OperationPhase::Failed);
    assert!(
        state.message.as_deref().unwrap().starts_with(
            "FailOnSharedResource=true: 1 object(s) are tracked by another Application"
        )
    );
}

#[test]
fn an_existing_object_this_application_did_not_apply_is_adopted_without_force() {
    let a = automated(json!({}));
    let mut by_hand = cm("by-hand", "x", SHA_A);
    by_hand["metadata"]["annotations"] = json!({});
    let mine = cm("mine", "old", SHA_A);
    let p = plan(&observed(
        a,
        desired(
            SHA_B,
            vec![
                cm("by-hand", "y", SHA_B),
                cm("mine", "new", SHA_B),
                cm("new", "1", SHA_B),
            ],
        ),
        vec![by_hand, mine],
    ));
    let adopted: Vec<String> = p
        .sync
        .unwrap()
        .adopted
        .iter()
        .map(|k| k.name.clone())
        .collect();
    assert_eq!(
        adopted,
        ["by-hand"],
        "only the existing object without tracking"
    );
}

fn deployer() -> ServiceAccountRef {
    ServiceAccountRef {
        namespace: "shop".into(),
        name: "deployer".into(),
    }
}

#[test]
fn a_sync_runs_as_the_projects_service_account_under_impersonation() {
    let mut obs = observed(
        automated(json!({"prune": true})),
        desired(SHA_A, vec![cm("a", "1", SHA_A)]),
        vec![cm("old", "1", SHA_B)],
    );
    obs.sync_identity = SyncIdentity::ServiceAccount(deployer());
    let p = plan(&obs);
    let task = p.sync.as_ref().expect("a sync");
    assert_eq!(task.run_as.service_account(), Some(&deployer()));
    assert_eq!(names(&task.apply), ["a"]);
    assert_eq!(names(&task.prune), ["old"], "pruned as the account too");
}

#[test]
fn a_requested_sync_runs_as_the_service_account_too() {
    let mut a = app(json!(null));
    a.operation = Some(Operation {
        sync: Some(SyncOperation::default()),
        ..Operation::default()
    });
    let mut obs = observed(a, desired(SHA_A, vec![cm("a", "1", SHA_A)]), vec![]);
    obs.sync_identity = SyncIdentity::ServiceAccount(deployer());
    let task = plan(&obs).sync.expect("the requested sync");
    assert_eq!(task.kind, SyncKind::Manual);
    assert_eq!(task.run_as.service_account(), Some(&deployer()));
}

#[test]
fn without_impersonation_the_controller_syncs() {
    let p = plan(&observed(
        automated(json!({})),
        desired(SHA_A, vec![cm("a", "1", SHA_A)]),
        vec![],
    ));
    let task = p.sync.as_ref().expect("a sync");
    assert_eq!(task.run_as, SyncIdentity::Controller);
    assert_eq!(task.run_as.service_account(), None);
}

#[test]
fn no_service_account_to_sync_as_fails_the_sync_before_anything_is_applied() {
    let why = "sync impersonation is on (--sync-impersonation) and project team-a has no destinationServiceAccounts";
    let mut obs = observed(
        automated(json!({"prune": true})),
        desired(SHA_A, vec![cm("a", "1", SHA_A)]),
        vec![cm("old", "1", SHA_B)],
    );
    obs.sync_identity = SyncIdentity::Missing(why.to_string());
    let p = plan(&obs);
    assert_eq!(p.sync, None, "nothing is applied nor pruned");
    let state = p.status.operation_state.as_ref().unwrap();
    assert_eq!(state.phase, OperationPhase::Failed);
    assert_eq!(
        state.message.as_deref(),
        Some(format!("no ServiceAccount to sync as, nothing was applied: {why}").as_str())
    );
    assert!(condition(&p, SYNC_ERROR).unwrap().contains(why));
    // Recorded like any failed sync: automated sync does not try the revision again by itself.
    let mut again = obs.clone();
    again.app.status = Some(p.status.clone());
    assert_eq!(plan(&again).sync, None);
    assert!(condition(&plan(&again), SYNC_ERROR).unwrap().contains(why));
}

#[test]
fn objects_not_permitted_are_reported_before_a_missing_service_account() {
    let mut target = desired(SHA_A, vec![cm("a", "1", SHA_A)]);
    target.not_permitted = vec!["ClusterRoleBinding admin: not permitted".to_string()];
    let mut obs = observed(automated(json!({})), target, vec![]);
    obs.sync_identity = SyncIdentity::Missing("no account".to_string());
    let p = plan(&obs);
    let message = p.status.operation_state.unwrap().message.unwrap();
    assert!(
        message.contains("not permitted by the project"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// Argo CD fields Sluice does not implement, and sync options.
// ---------------------------------------------------------------------------------------------

fn with_options(options: &[&str]) -> Application {
    app(json!({"automated": {"prune": true}, "syncOptions": options}))
}

fn annotated(mut obj: Value, options: &str) -> Value {
    obj["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] = json!(options);
    obj
}

#[test]
fn an_unimplemented_argo_field_refuses_the_application_by_its_path() {
    let mut a: Application = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": "shop", "namespace": "argocd"},
        "spec": {"source": {"repoURL": "git://git.example/shop.git",
                            "plugin": {"name": "cmp"}},
                 "sources": [{"repoURL": "git://git.example/values.git", "ref": "values"}],
                 "destination": {"namespace": "shop"}, "syncPolicy": {"automated": {}}},
        "operation": {"sync": {"revision": "main"}}
    }))
    .unwrap();
    a.status = Some(ApplicationStatus {
        sync: Some(SyncStatus {
            status: SyncStatusCode::Synced,
            ..SyncStatus::default()
        }),
        ..ApplicationStatus::default()
    });
    let p = plan(&observed(
        a,
        desired(SHA_A, vec![cm("a", "1", SHA_A)]),
        vec![],
    ));
    assert_eq!(p.sync, None, "nothing applied");
    let message = condition(&p, INVALID_SPEC_ERROR).unwrap();
    assert!(
        message.starts_with("spec.sources is not supported by Sluice: multiple sources"),
        "{message}"
    );
    assert!(message.contains("; spec.source.plugin is not supported by Sluice"));
    assert_eq!(p.status.sync_status(), SyncStatusCode::Unknown);
    let op = p.status.operation_state.as_ref().unwrap();
    assert_eq!(op.phase, OperationPhase::Error);
    assert!(op.message.as_deref().unwrap().contains("spec.sources"));
}

#[test]
fn an_unknown_or_unimplemented_application_option_is_named_and_nothing_is_applied() {
    for (option, reason) in [
        ("PruneFirst=true", "unknown sync option PruneFirst"),
        ("Prune=confirm", "Prune=confirm"),
        ("ServerSideApply=false", "always applies server-side"),
    ] {
        let p = plan(&observed(
            with_options(&["CreateNamespace=true", option]),
            desired(SHA_A, vec![cm("a", "1", SHA_A)]),
            vec![],
        ));
        assert_eq!(p.sync, None, "{option}");
        let message = condition(&p, INVALID_SPEC_ERROR).unwrap();
        assert!(
            message.starts_with(&format!(
                "sync option {option:?} in spec.syncPolicy.syncOptions[1]: "
            )),
            "{message}"
        );
        assert!(message.contains(reason), "{message}");
    }
    // A manual sync's own options are checked too.
    let mut a = app(json!({}));
    a.operation = Some(Operation {
        sync: Some(SyncOperation {
            sync_options: vec!["Replace=maybe".into()],
            ..SyncOperation::default()
        }),
        ..Operation::default()
    });
    let p = plan(&observed(
        a,
        desired(SHA_A, vec![cm("a", "1", SHA_A)]),
        vec![],
    ));
    assert_eq!(p.sync, None);
    assert!(
        condition(&p, INVALID_SPEC_ERROR)
            .unwrap()
            .starts_with("sync option \"Replace=maybe\" in operation.sync.syncOptions[0]")
    );
}

#[test]
fn prune_false_at_application_level_keeps_objects_unless_one_says_otherwise() {
    let live = vec![
        cm("a", "1", SHA_A),
        cm("old", "x", SHA_A),
        annotated(cm("gone", "x", SHA_A), "Prune=true"),
    ];
    let p = plan(&observed(
        with_options(&["Prune=false"]),
        desired(SHA_B, vec![cm("a", "2", SHA_B)]),
        live,
    ));
    let task = p.sync.as_ref().unwrap();
    assert_eq!(names(&task.prune), ["gone"]);
    assert_eq!(names(&task.prune_skipped), ["old"]);
}

#[test]
fn prune_last_moves_pruning_after_the_healthy_waves() {
    let live = || {
        vec![
            cm("a", "1", SHA_A),
            cm("old", "x", SHA_A),
            annotated(cm("older", "x", SHA_A), "PruneLast=true"),
        ]
    };
    let target = || desired(SHA_B, vec![cm("a", "2", SHA_B)]);
    let p = plan(&observed(with_options(&[]), target(), live()));
    let task = p.sync.as_ref().unwrap();
    assert_eq!(names(&task.prune), ["old"]);
    assert_eq!(names(&task.prune_last), ["older"]);
    let p = plan(&observed(
        with_options(&["PruneLast=true"]),
        target(),
        live(),
    ));
    let task = p.sync.as_ref().unwrap();
    assert!(task.prune.is_empty());
    assert_eq!(names(&task.prune_last).len(), 2);
}

#[test]
fn apply_out_of_sync_only_applies_what_differs() {
    let live = vec![cm("a", "1", SHA_A), cm("b", "1", SHA_A)];
    let target = || {
        desired(
            SHA_B,
            vec![
                cm("a", "1", SHA_B),
                cm("b", "2", SHA_B),
                cm("c", "3", SHA_B),
            ],
        )
    };
    let p = plan(&observed(
        with_options(&["ApplyOutOfSyncOnly=true"]),
        target(),
        live.clone(),
    ));
    assert_eq!(names(&p.sync.as_ref().unwrap().apply), ["b", "c"]);
    let p = plan(&observed(with_options(&[]), target(), live));
    assert_eq!(names(&p.sync.as_ref().unwrap().apply), ["a", "b", "c"]);
}

#[test]
fn respect_ignore_differences_applies_the_live_value_of_ignored_fields() {
    let mut a = with_options(&["RespectIgnoreDifferences=true"]);
    a.spec.ignore_differences = serde_json::from_value(json!([
        {"kind": "ConfigMap", "jsonPointers": ["/data/replicas"]}
    ]))
    .unwrap();
    let with_replicas = |obj: Value, replicas: &str| {
        let mut obj = obj;
        obj["data"]["replicas"] = json!(replicas);
        obj
    };
    let live = vec![with_replicas(cm("a", "1", SHA_A), "5")];
    let target = || desired(SHA_B, vec![with_replicas(cm("a", "2", SHA_B), "1")]);
    let p = plan(&observed(a.clone(), target(), live.clone()));
    let applied = &p.sync.as_ref().unwrap().apply[0];
    assert_eq!(applied["data"], json!({"v": "2", "replicas": "5"}));
    // Without the option Git's value is applied (the comparison still ignores it).
    a.spec.sync_policy.as_mut().unwrap().sync_options.clear();
    let p = plan(&observed(a.clone(), target(), live));
    assert_eq!(p.sync.as_ref().unwrap().apply[0]["data"]["replicas"], "1");
    // A new object is applied as Git declares it.
    a.spec.sync_policy.as_mut().unwrap().sync_options =
        vec!["RespectIgnoreDifferences=true".into()];
    let p = plan(&observed(a, target(), vec![]));
    assert_eq!(p.sync.as_ref().unwrap().apply[0]["data"]["replicas"], "1");
}

#[test]
fn the_applier_gets_the_options_of_the_spec_and_the_operation() {
    let mut a = with_options(&[
        "Replace=true",
        "Validate=false",
        "PrunePropagationPolicy=orphan",
        "ServerSideApply=true",
    ]);
    let p = plan(&observed(
        a.clone(),
        desired(SHA_A, vec![cm("a", "1", SHA_A)]),
        vec![],
    ));
    let options = &p.sync.as_ref().unwrap().options;
    assert!(options.replaces() && !options.validates());
    assert_eq!(
        options.propagation(),
        crate::gitops::sync_options::Propagation::Orphan
    );
    a.spec.sync_policy.as_mut().unwrap().automated = None;
    a.operation = Some(Operation {
        sync: Some(SyncOperation {
            sync_options: vec!["Replace=false".into(), "Force=true".into()],
            ..SyncOperation::default()
        }),
        ..Operation::default()
    });
    let p = plan(&observed(
        a,
        desired(SHA_A, vec![cm("a", "1", SHA_A)]),
        vec![],
    ));
    let options = &p.sync.as_ref().unwrap().options;
    assert!(!options.replaces() && options.forces() && !options.validates());
}

#[test]
fn managed_namespace_metadata_goes_with_create_namespace() {
    let mut a = with_options(&["CreateNamespace=true"]);
    a.spec
        .sync_policy
        .as_mut()
        .unwrap()
        .managed_namespace_metadata =
        Some(serde_json::from_value(json!({"labels": {"team": "shop"}})).unwrap());
    let p = plan(&observed(
        a.clone(),
        desired(SHA_A, vec![cm("a", "1", SHA_A)]),
        vec![],
    ));
    let task = p.sync.as_ref().unwrap();
    assert_eq!(task.create_namespace.as_deref(), Some("shop"));
    assert_eq!(
        task.namespace_metadata.as_ref().unwrap().labels["team"],
        "shop"
    );
    a.spec.sync_policy.as_mut().unwrap().sync_options.clear();
    let p = plan(&observed(
        a,
        desired(SHA_A, vec![cm("a", "1", SHA_A)]),
        vec![],
    ));
    assert_eq!(p.sync.as_ref().unwrap().namespace_metadata, None);
}

#[test]
fn delete_false_objects_stay_when_the_application_is_deleted() {
    let mut a = with_options(&[]);
    a.metadata.deletion_timestamp = Some(Time(at(T0)));
    a.metadata.finalizers = Some(vec!["resources-finalizer.argocd.argoproj.io".into()]);
    let keep = annotated(cm("pvc", "1", SHA_A), "Delete=false");
    let p = plan(&observed(
        a.clone(),
        desired(SHA_A, vec![]),
        vec![cm("a", "1", SHA_A), keep.clone()],
    ));
    assert_eq!(
        p.finalize,
        Some(Finalize::Delete(vec![cm("a", "1", SHA_A)]))
    );
    let p = plan(&observed(
        a.clone(),
        desired(SHA_A, vec![]),
        vec![keep.clone()],
    ));
    assert_eq!(p.finalize, Some(Finalize::RemoveFinalizers));
    // At application level, with an object saying otherwise.
    a.spec.sync_policy.as_mut().unwrap().sync_options = vec!["Delete=false".into()];
    let p = plan(&observed(
        a,
        desired(SHA_A, vec![]),
        vec![
            cm("a", "1", SHA_A),
            annotated(cm("b", "1", SHA_A), "Delete=true"),
        ],
    ));
    assert_eq!(
        p.finalize,
        Some(Finalize::Delete(vec![annotated(
            cm("b", "1", SHA_A),
            "Delete=true"
        )]))
    );
}

#[test]
fn retry_refresh_retries_with_the_latest_commit_of_the_branch() {
    let mut a = automated(json!({}));
    a.spec.sync_policy.as_mut().unwrap().retry =
        Some(serde_json::from_value(json!({"limit": 2, "refresh": true})).unwrap());
    let mut state = failed(SHA_A, T0, 0);
    state.phase = OperationPhase::Running;
    let waiting = with_state(a.clone(), state.clone());
    assert_eq!(operation_request(&waiting).unwrap().revision, "main");
    // Without refresh the failed commit is retried; an interrupted sync resumes its own commit.
    a.spec.sync_policy.as_mut().unwrap().retry =
        Some(serde_json::from_value(json!({"limit": 2})).unwrap());
    assert_eq!(
        operation_request(&with_state(a.clone(), state.clone()))
            .unwrap()
            .revision,
        SHA_A
    );
    state.finished_at = None;
    a.spec.sync_policy.as_mut().unwrap().retry =
        Some(serde_json::from_value(json!({"refresh": true})).unwrap());
    assert_eq!(
        operation_request(&with_state(a, state)).unwrap().revision,
        SHA_A
    );
}

fn hook(name: &str, phases: &str, revision: &str) -> Value {
    let mut obj = cm(name, "hook", revision);
    obj["metadata"]["annotations"]["argocd.argoproj.io/hook"] = json!(phases);
    obj
}

#[test]
fn hooks_are_neither_compared_nor_pruned_and_go_to_the_sync() {
    let objects = vec![cm("a", "1", SHA_A)];
    let mut target = desired(SHA_A, objects.clone());
    target.hooks = vec![hook("migrate", "PreSync", SHA_A)];
    let mut obs = observed(automated(json!({"prune": true})), target, objects);
    // A hook of an earlier sync is still there, tracked: not "requires pruning".
    obs.tracked_hooks = vec![hook("migrate-old", "PostSync", SHA_A)];
    let p = plan(&obs);
    assert_eq!(p.sync, None, "an in-sync app with hooks needs no sync");
    assert_eq!(p.status.sync_status(), SyncStatusCode::Synced);
    assert!(
        p.status.resources.iter().all(|r| r.name == "a"),
        "{:?}",
        p.status.resources
    );

    // A new revision syncs: the hooks go with it, the old hook is not pruned.
    let mut target = desired(SHA_B, vec![cm("a", "2", SHA_B)]);
    target.hooks = vec![hook("migrate", "PreSync", SHA_B)];
    obs.target = Ok(target);
    let p = plan(&obs);
    let task = p.sync.as_ref().expect("sync");
    assert_eq!(names(&task.hooks), ["migrate"]);
    assert!(task.prune.is_empty(), "{:?}", task.prune);
    assert_eq!(task.started_at, at(T0).as_second());
}

#[test]
fn deleting_the_application_deletes_its_hooks_too() {
    let objects = vec![cm("a", "1", SHA_A)];
    let mut app = automated(json!({}));
    app.metadata.finalizers = Some(vec!["resources-finalizer.argocd.argoproj.io".into()]);
    app.metadata.deletion_timestamp = Some(Time(at(T0)));
    let mut obs = observed(app, desired(SHA_A, objects.clone()), objects);
    obs.tracked_hooks = vec![hook("migrate", "PreSync", SHA_A)];
    let p = plan(&obs);
    let Some(Finalize::Delete(objects)) = p.finalize else {
        panic!("expected a cascade delete: {:?}", p.finalize);
    };
    let mut deleted: Vec<String> = objects
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    deleted.sort();
    assert_eq!(deleted, ["a", "migrate"]);
}

fn deny_always(manual_sync: bool) -> crate::api::project::SyncWindow {
    serde_json::from_value(
        json!({"kind": "deny", "schedule": "* * * * *", "duration": "1h",
                                  "applications": ["*"], "manualSync": manual_sync}),
    )
    .unwrap()
}

#[test]
fn an_active_deny_window_holds_automated_syncs_and_looks_again_at_the_next_minute() {
    let target = desired(SHA_A, vec![cm("a", "1", SHA_A)]);
    let mut obs = observed(automated(json!({})), target, vec![]);
    obs.sync_windows = vec![deny_always(true)];
    let p = plan(&obs);
    assert_eq!(p.sync, None);
    assert_eq!(p.status.sync_status(), SyncStatusCode::OutOfSync);
    assert_eq!(condition(&p, SYNC_ERROR), None);
    assert!(
        p.requeue_after <= Duration::from_secs(61),
        "{:?}",
        p.requeue_after
    );
    obs.sync_windows = Vec::new();
    assert!(plan(&obs).sync.is_some());
}

#[test]
fn a_blocked_manual_sync_waits_running_and_passes_with_manual_sync() {
    let mut a = app(json!({}));
    a.operation = Some(
        serde_json::from_value(json!({"sync": {}, "initiatedBy": {"username": "alice"}})).unwrap(),
    );
    let mut obs = observed(a, desired(SHA_B, vec![cm("a", "2", SHA_B)]), vec![]);
    obs.sync_windows = vec![deny_always(false)];
    let p = plan(&obs);
    assert_eq!(p.sync, None);
    assert!(!p.clear_operation, "the request must wait, not vanish");
    let state = p.status.operation_state.as_ref().unwrap();
    assert_eq!(state.phase, OperationPhase::Running);
    let message = state.message.as_deref().unwrap_or_default();
    assert!(
        message.starts_with("Sync operation blocked by sync window")
            && message.contains("spec.syncWindows[0]"),
        "{message}"
    );
    // Planned again later: the same status, nothing to write.
    obs.app.status = Some(p.status.clone());
    obs.now = at(T0 + 30);
    obs.refreshed = false;
    assert_eq!(plan(&obs).status, p.status);

    obs.sync_windows = vec![deny_always(true)];
    let p = plan(&obs);
    assert!(p.sync.is_some(), "manualSync lets a user's sync through");
}

#[test]
fn a_window_sluice_cannot_read_refuses_the_sync_by_name() {
    let target = desired(SHA_A, vec![cm("a", "1", SHA_A)]);
    let mut obs = observed(automated(json!({})), target, vec![]);
    obs.sync_windows = vec![
        serde_json::from_value(
            json!({"kind": "allow", "schedule": "at night", "duration": "1h",
                                      "applications": ["*"]}),
        )
        .unwrap(),
    ];
    let p = plan(&obs);
    assert_eq!(p.sync, None);
    let message = condition(&p, SYNC_ERROR).unwrap_or_default();
    assert!(
        message.contains("spec.syncWindows[0]") && message.contains("at night"),
        "{message}"
    );
}
