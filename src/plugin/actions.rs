//! The control actions as merge patches (pure). These are the public contract (DESIGN.md "control
//! actions"): the same fields Argo Rollouts' plugin writes, on the `status` subresource unless noted,
//! so `kubectl sluice promote` and a plain `kubectl patch --subresource=status` do the same thing.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::api::rollout::Rollout;
use crate::plugin::cli::ContainerImage;
use crate::plugin::error::PluginError;

/// What one control action writes: a merge patch of the spec, of the status subresource, or both.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Patches {
    pub spec: Option<Value>,
    pub status: Option<Value>,
}

impl Patches {
    pub fn is_empty(&self) -> bool {
        self.spec.is_none() && self.status.is_none()
    }
}

/// Promote one step: clear `status.pauseConditions`, and `spec.paused: false` when it is set.
/// Empty when the Rollout is not paused (there is nothing to promote).
pub fn promote(rollout: &Rollout) -> Patches {
    let status = rollout.status.clone().unwrap_or_default();
    Patches {
        spec: rollout
            .spec
            .paused()
            .then(|| json!({"spec": {"paused": false}})),
        status: (!status.pause_conditions.is_empty())
            .then(|| json!({"status": {"pauseConditions": null}})),
    }
}

/// Promote fully: `status.promoteFull: true` skips the remaining steps, pauses and analysis.
/// A manual pause is lifted too, or the Rollout would stay where it is.
pub fn promote_full(rollout: &Rollout) -> Patches {
    Patches {
        spec: rollout
            .spec
            .paused()
            .then(|| json!({"spec": {"paused": false}})),
        status: Some(json!({"status": {"promoteFull": true}})),
    }
}

/// Abort: `status.abort: true`.
pub fn abort() -> Patches {
    Patches {
        spec: None,
        status: Some(json!({"status": {"abort": true}})),
    }
}

/// Abort and ask for the Git revert of the commit behind the current revision (L5): `status.abort:
/// true` with `status.revert: {sha, phase: Pending}`, which the revert loop acts on. An error when
/// the current revision was not applied from Git.
pub fn abort_and_revert(rollout: &Rollout) -> Result<Patches, String> {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let record = rollout
        .status
        .as_ref()
        .and_then(crate::revert::plan::current_record);
    let (Some(sha), Some(_)) = (
        record.and_then(|r| r.git_revision.clone()),
        record.and_then(|r| r.application.clone()),
    ) else {
        return Err(format!(
            "rollout {name:?}: its current revision was not applied by an Application from Git, so \
             there is no commit to revert; abort without --revert"
        ));
    };
    Ok(Patches {
        spec: None,
        status: Some(
            json!({"status": {"abort": true, "revert": {"sha": sha, "phase": "Pending"}}}),
        ),
    })
}

/// Retry an aborted update: `status.abort: false`.
pub fn retry() -> Patches {
    Patches {
        spec: None,
        status: Some(json!({"status": {"abort": false}})),
    }
}

/// Pause: `spec.paused: true`.
pub fn pause() -> Patches {
    Patches {
        spec: Some(json!({"spec": {"paused": true}})),
        status: None,
    }
}

/// Resume a paused Rollout: `spec.paused: false` (Argo's `resume`).
pub fn resume() -> Patches {
    Patches {
        spec: Some(json!({"spec": {"paused": false}})),
        status: None,
    }
}

/// Restart: `spec.restartAt` = `now`, in whole seconds (never later than now, so the controller
/// acts at once).
pub fn restart(now: Timestamp) -> Patches {
    let at = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    Patches {
        spec: Some(json!({"spec": {"restartAt": at}})),
        status: None,
    }
}

/// `set image`: the whole `containers` list with the image changed (a merge patch replaces lists),
/// guarded by the `resourceVersion` read, so a concurrent change is refused instead of undone.
pub fn set_image(rollout: &Rollout, change: &ContainerImage) -> Result<Value, PluginError> {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let Some(template) = rollout.spec.template.as_ref() else {
        let workload = rollout
            .spec
            .workload_ref
            .as_ref()
            .map(|w| format!(" on {} {}", w.kind, w.name))
            .unwrap_or_default();
        return Err(PluginError::Unsupported(format!(
            "Rollout {name:?} has no spec.template (it uses spec.workloadRef); set the image{workload} instead"
        )));
    };
    let mut containers = template
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let mut changed = 0;
    for container in &mut containers {
        if change.container == "*" || container.name == change.container {
            container.image = Some(change.image.clone());
            changed += 1;
        }
    }
    if changed == 0 {
        let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
        return Err(PluginError::Invalid(format!(
            "Rollout {name:?} has no container {:?} (containers: {})",
            change.container,
            names.join(", ")
        )));
    }
    Ok(json!({
        "metadata": {"resourceVersion": rollout.metadata.resource_version},
        "spec": {"template": {"spec": {"containers": containers}}}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(yaml: &str) -> Rollout {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const PAUSED_AT_STEP: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: web, resourceVersion: "42"}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - {name: web, image: "example/web:1.0"}
        - {name: sidecar, image: "example/proxy:1"}
  strategy: {canary: {steps: [{setWeight: 20}, {pause: {}}]}}
status:
  currentStepIndex: 1
  pauseConditions: [{reason: CanaryPauseStep, startTime: "2025-03-01T10:00:00Z"}]
  controllerPause: true
"#;

    #[test]
    fn promote_clears_the_pause_conditions_and_a_manual_pause() {
        let mut ro = rollout(PAUSED_AT_STEP);
        assert_eq!(
            promote(&ro),
            Patches {
                spec: None,
                status: Some(json!({"status": {"pauseConditions": null}}))
            }
        );
        ro.spec.paused = Some(true);
        assert_eq!(promote(&ro).spec, Some(json!({"spec": {"paused": false}})));
        ro.status = None;
        ro.spec.paused = None;
        assert!(
            promote(&ro).is_empty(),
            "nothing paused, nothing to promote"
        );
    }

    #[test]
    fn the_other_actions_write_argos_fields() {
        let ro = rollout(PAUSED_AT_STEP);
        let cases = [
            (
                promote_full(&ro),
                None,
                Some(json!({"status": {"promoteFull": true}})),
            ),
            (abort(), None, Some(json!({"status": {"abort": true}}))),
            (retry(), None, Some(json!({"status": {"abort": false}}))),
            (pause(), Some(json!({"spec": {"paused": true}})), None),
            (resume(), Some(json!({"spec": {"paused": false}})), None),
        ];
        for (patches, spec, status) in cases {
            assert_eq!(patches, Patches { spec, status });
        }
    }

    #[test]
    fn restart_sets_restart_at_to_now_in_whole_seconds() {
        let now: Timestamp = "2025-03-01T10:00:05.789Z".parse().unwrap();
        assert_eq!(
            restart(now).spec,
            Some(json!({"spec": {"restartAt": "2025-03-01T10:00:05Z"}}))
        );
    }

    #[test]
    fn set_image_changes_one_container_and_keeps_the_others() {
        let ro = rollout(PAUSED_AT_STEP);
        let change = ContainerImage {
            container: "web".into(),
            image: "example/web:2.0".into(),
        };
        let patch = set_image(&ro, &change).unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        let containers = &patch["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "example/web:2.0");
        assert_eq!(containers[1]["image"], "example/proxy:1");
        let all = ContainerImage {
            container: "*".into(),
            image: "x:1".into(),
        };
        let patch = set_image(&ro, &all).unwrap();
        assert_eq!(
            patch["spec"]["template"]["spec"]["containers"][1]["image"],
            "x:1"
        );
    }

    #[test]
    fn set_image_names_the_containers_when_the_one_given_is_missing() {
        let ro = rollout(PAUSED_AT_STEP);
        let change = ContainerImage {
            container: "api".into(),
            image: "x:1".into(),
        };
        let err = set_image(&ro, &change).unwrap_err().to_string();
        assert_eq!(
            err,
            "Rollout \"web\" has no container \"api\" (containers: web, sidecar)"
        );
    }

    #[test]
    fn l5_abort_revert_names_the_commit_of_the_current_revision() {
        let from_git = rollout(
            r#"
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: web}
spec: {strategy: {canary: {}}}
status:
  currentPodHash: h2
  revisions:
    - {podTemplateHash: h1, revision: 1, gitRevision: aaaa, application: shop/app}
    - {podTemplateHash: h2, revision: 2, gitRevision: bbbb, application: shop/app}
"#,
        );
        let patches = abort_and_revert(&from_git).unwrap();
        assert_eq!(patches.spec, None);
        assert_eq!(
            patches.status,
            Some(json!({"status": {"abort": true, "revert": {"sha": "bbbb", "phase": "Pending"}}}))
        );
        let by_hand = rollout(
            r#"
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: web}
spec: {strategy: {canary: {}}}
status:
  currentPodHash: h2
  revisions: [{podTemplateHash: h2, revision: 2}]
"#,
        );
        let refused = abort_and_revert(&by_hand).unwrap_err();
        assert!(
            refused.contains("not applied by an Application from Git"),
            "{refused}"
        );
    }
}
