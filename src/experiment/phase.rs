//! The phase and conditions of an Experiment (part of its planner), as Argo's `calculateStatus`
//! and `calculateExperimentConditions`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::analysis::AnalysisPhase;
use crate::api::common::Condition;
use crate::api::experiment::TemplateStatusCode;
use crate::experiment::plan::{
    Ctx, REQUIRED_ANALYSIS_COMPLETED, required_runs_successful, run_status, template_status,
};

const PROGRESSING: &str = "Progressing";

impl Ctx<'_> {
    /// Argo's `calculateStatus`: the worse of the templates' and the analyses' verdicts, the
    /// analyses deciding once the templates ran their duration or a required analysis finished.
    pub(super) fn calculate_phase(&mut self) {
        if self.old.phase.is_some_and(AnalysisPhase::is_completed) {
            return;
        }
        let (templates, template_message) = self.assess_templates();
        let (analyses, analysis_message) = self.assess_analyses();
        if templates == AnalysisPhase::Running && self.status.available_at.is_none() {
            self.status.available_at = Some(Time(self.now()));
            if let Some(duration) = self.spec.duration().ok().flatten() {
                self.requeue_within(duration);
            }
        }
        let has_required = self
            .spec
            .analyses
            .iter()
            .any(|a| a.required_for_completion());
        let (phase, message) = if templates.is_completed() {
            if templates == AnalysisPhase::Successful && (analyses.is_completed() || has_required) {
                (analyses, analysis_message)
            } else {
                (templates, template_message)
            }
        } else if (analyses.is_completed() && analyses != AnalysisPhase::Successful)
            || required_runs_successful(self.spec, &self.status)
        {
            (analyses, analysis_message)
        } else {
            (templates, template_message)
        };
        if phase.is_completed() && self.old.phase != Some(phase) {
            self.event(
                phase != AnalysisPhase::Successful,
                format!("Experiment{phase}"),
                format!(
                    "Experiment {phase}{}",
                    message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            );
        }
        self.status.phase = Some(phase);
        self.status.message = message;
    }

    /// Argo's `Progressing` condition: `True` while the templates come up (`ReplicaSetUpdated`)
    /// and while they run (`NewReplicaSetAvailable`), `False` once Successful
    /// (`ExperimentCompleted`). `lastTransitionTime` changes only with the condition's status.
    pub(super) fn progressing_condition(&mut self) {
        let name = self.name().to_string();
        let (status, reason, message) = match self.status.phase {
            Some(AnalysisPhase::Successful) => (
                "False",
                "ExperimentCompleted",
                format!("Experiment {name:?} has successfully ran and completed."),
            ),
            Some(AnalysisPhase::Running) => (
                "True",
                "NewReplicaSetAvailable",
                format!("Experiment {name:?} is running."),
            ),
            Some(AnalysisPhase::Pending) | None => (
                "True",
                "ReplicaSetUpdated",
                format!("Experiment {name:?} is progressing."),
            ),
            // Failed, Error, Inconclusive: the phase and message say why; the condition stays.
            Some(_) => return,
        };
        let now = Time(self.now());
        let previous = self
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == PROGRESSING)
            .cloned();
        if previous.as_ref().is_some_and(|p| {
            p.status.as_deref() == Some(status) && p.reason.as_deref() == Some(reason)
        }) {
            return;
        }
        let transition = match &previous {
            Some(p) if p.status.as_deref() == Some(status) => p.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
        self.status.conditions.retain(|c| c.type_ != PROGRESSING);
        self.status.conditions.push(Condition {
            type_: PROGRESSING.to_string(),
            status: Some(status.to_string()),
            reason: Some(reason.to_string()),
            message: Some(message),
            last_transition_time: transition,
            last_update_time: Some(now),
        });
    }

    /// The worst template status as an experiment phase (Progressing is Pending).
    fn assess_templates(&self) -> (AnalysisPhase, Option<String>) {
        let mut worst = TemplateStatusCode::Successful;
        let mut message = None;
        for template in &self.spec.templates {
            let status = template_status(&self.status, &template.name);
            let code = status
                .and_then(|t| t.status)
                .unwrap_or(TemplateStatusCode::Progressing);
            if code.badness() > worst.badness() {
                worst = code;
                message = status.and_then(|t| t.message.clone());
            }
        }
        let phase = match worst {
            TemplateStatusCode::Progressing => AnalysisPhase::Pending,
            TemplateStatusCode::Running => AnalysisPhase::Running,
            TemplateStatusCode::Successful => AnalysisPhase::Successful,
            TemplateStatusCode::Failed => AnalysisPhase::Failed,
            TemplateStatusCode::Error => AnalysisPhase::Error,
        };
        (phase, message)
    }

    /// The worst analysis phase (Successful with none); Pending counts as Running.
    fn assess_analyses(&self) -> (AnalysisPhase, Option<String>) {
        let mut worst = AnalysisPhase::Successful;
        let mut message = None;
        for analysis in &self.spec.analyses {
            let status = run_status(&self.status, &analysis.name);
            let phase = status.map_or(AnalysisPhase::Pending, |s| s.phase);
            if phase.severity() > worst.severity() {
                worst = phase;
                message = status.and_then(|s| s.message.clone());
            }
        }
        if worst == AnalysisPhase::Successful && required_runs_successful(self.spec, &self.status) {
            return (
                AnalysisPhase::Successful,
                Some(REQUIRED_ANALYSIS_COMPLETED.to_string()),
            );
        }
        if worst == AnalysisPhase::Pending {
            worst = AnalysisPhase::Running;
        }
        (worst, message)
    }
}
