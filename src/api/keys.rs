//! Every label, annotation, field manager and finalizer name other tools and tests depend on, in one
//! place (the public contract: DESIGN.md). The modules that read or write them use these constants;
//! names that only one module knows stay there.

// The hand-off from the GitOps core to the Rollout engine and the revert.

/// Annotation of every object the GitOps core applies: the Application (`<namespace>/<name>`).
pub const APPLICATION_ANNOTATION: &str = "sluice.dev/application";
/// Annotation of every object the GitOps core applies: the Git commit it was applied from (the
/// Rollout engine records it per ReplicaSet revision; the revert reverts it).
pub const GIT_REVISION_ANNOTATION: &str = "sluice.dev/revision";
/// Label of every object the GitOps core applies, with the value [`TRACKING_LABEL_VALUE`]: the live
/// cache watches only objects carrying it (a fixed value, since an Application's
/// `<namespace>/<name>` is not a valid label value).
pub const TRACKING_LABEL: &str = "sluice.dev/tracked";
pub const TRACKING_LABEL_VALUE: &str = "true";

// The Rollout engine.

/// Annotation of a Rollout's ReplicaSet: its revision number within the Rollout (1, 2, ...). Not
/// the Git commit ([`GIT_REVISION_ANNOTATION`]).
pub const ROLLOUT_REVISION_ANNOTATION: &str = "rollout.sluice.dev/revision";
/// Argo Rollouts' name of [`ROLLOUT_REVISION_ANNOTATION`], also written so that tools made for
/// Argo read the revision.
pub const ARGO_ROLLOUT_REVISION_ANNOTATION: &str = "rollout.argoproj.io/revision";
/// Label of an AnalysisRun (and Experiment) a Rollout created: the Rollout's name.
pub const ROLLOUT_LABEL: &str = "sluice.dev/rollout";
/// Label of an AnalysisRun a Rollout created: `step`, `background`, `prePromotion` or
/// `postPromotion`.
pub const ANALYSIS_TYPE_LABEL: &str = "sluice.dev/analysis-type";
/// Label of a step AnalysisRun: the index of its step.
pub const STEP_INDEX_LABEL: &str = "sluice.dev/step-index";

// Server-side apply field managers: one per component.

pub const GITOPS_FIELD_MANAGER: &str = "sluice-gitops";
pub const APPLICATIONSET_FIELD_MANAGER: &str = "sluice-applicationset";
pub const ROLLOUT_FIELD_MANAGER: &str = "sluice-rollout";
pub const ANALYSIS_FIELD_MANAGER: &str = "sluice-analysis";
pub const EXPERIMENT_FIELD_MANAGER: &str = "sluice-experiment";
pub const REVERT_FIELD_MANAGER: &str = "sluice-revert";
pub const NOTIFICATIONS_FIELD_MANAGER: &str = "sluice-notifications";
pub const PLUGIN_FIELD_MANAGER: &str = "kubectl-sluice";

// Finalizers.

/// Argo CD's finalizer that makes deleting an Application (or an ApplicationSet's) delete what it
/// deployed first.
pub const ARGO_RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";
/// Sluice's name of [`ARGO_RESOURCES_FINALIZER`].
pub const RESOURCES_FINALIZER: &str = "sluice.dev/resources-finalizer";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_managers_differ() {
        let managers = [
            GITOPS_FIELD_MANAGER,
            APPLICATIONSET_FIELD_MANAGER,
            ROLLOUT_FIELD_MANAGER,
            ANALYSIS_FIELD_MANAGER,
            EXPERIMENT_FIELD_MANAGER,
            REVERT_FIELD_MANAGER,
            NOTIFICATIONS_FIELD_MANAGER,
            PLUGIN_FIELD_MANAGER,
        ];
        let distinct: std::collections::BTreeSet<_> = managers.iter().collect();
        assert_eq!(distinct.len(), managers.len());
    }
}
