//! The analyses of an Experiment (part of its planner): each one's template verified before the
//! templates are available, its AnalysisRun created once they are (built by the same template merge
//! as a Rollout's runs), followed, and terminated when the Experiment ends.

use crate::analysis::args::{ArgContext, build_analysis_run};
use crate::api::analysis::{AnalysisPhase, AnalysisRunSpec};
use crate::api::experiment::{ExperimentAnalysisRunStatus, ExperimentAnalysisTemplateRef};
use crate::api::rollout::{AnalysisRunArgument, RolloutAnalysis, RolloutAnalysisTemplate};
use crate::api::unsupported;
use crate::experiment::plan::{
    Action, Ctx, analysis_run_name, replica_set_name, run_status, template_status,
};
use crate::rollout::analysis_runs::named_templates;
use crate::rollout::templates::TemplateRef;

impl Ctx<'_> {
    pub(super) fn reconcile_analysis(&mut self, analysis: &ExperimentAnalysisTemplateRef) {
        let prev = run_status(&self.old, &analysis.name).cloned();
        let mut status = prev.clone().unwrap_or_else(|| ExperimentAnalysisRunStatus {
            name: analysis.name.clone(),
            ..ExperimentAnalysisRunStatus::default()
        });
        self.follow_analysis(analysis, &mut status);
        let changed = prev.as_ref().map(|p| p.phase) != Some(status.phase);
        if changed && (prev.is_some() || status.phase != AnalysisPhase::Pending) {
            self.analysis_event(&status);
        }
        match self
            .status
            .analysis_runs
            .iter_mut()
            .find(|r| r.name == status.name)
        {
            Some(slot) => *slot = status,
            None => self.status.analysis_runs.push(status),
        }
    }

    fn follow_analysis(
        &mut self,
        analysis: &ExperimentAnalysisTemplateRef,
        status: &mut ExperimentAnalysisRunStatus,
    ) {
        if self.old.available_at.is_none() {
            // Not started before every template is available; a template that cannot be found
            // fails the Experiment at once, as Argo's verification does.
            if let Err(reason) = self.verify(analysis) {
                status.phase = AnalysisPhase::Error;
                status.message = Some(format!(
                    "AnalysisTemplate verification failed for analysis '{}': {reason}",
                    analysis.name
                ));
            }
            return;
        }
        if status.analysis_run.is_empty() {
            if self.terminating {
                return;
            }
            match self.run_spec(analysis) {
                Ok(spec) => {
                    let name = analysis_run_name(self.name(), &analysis.name);
                    self.actions.push(Action::CreateAnalysisRun {
                        name: name.clone(),
                        analysis: analysis.name.clone(),
                        spec: Box::new(spec),
                    });
                    status.analysis_run = name;
                    status.phase = AnalysisPhase::Pending;
                }
                Err(reason) => {
                    status.phase = AnalysisPhase::Error;
                    status.message = Some(format!(
                        "Failed to create AnalysisRun for analysis '{}': {reason}",
                        analysis.name
                    ));
                }
            }
            return;
        }
        if status.phase.is_completed() {
            return;
        }
        match self.obs.analysis_runs.get(&status.analysis_run) {
            // Named by the status and not in the cache: not there yet, or its create failed after
            // the status write; creating it again is a no-op or heals.
            None => {
                if !self.terminating
                    && let Ok(spec) = self.run_spec(analysis)
                {
                    self.actions.push(Action::CreateAnalysisRun {
                        name: status.analysis_run.clone(),
                        analysis: analysis.name.clone(),
                        spec: Box::new(spec),
                    });
                }
            }
            Some(run) => {
                if self.terminating && !run.phase.is_completed() && !run.terminating {
                    self.actions.push(Action::TerminateAnalysisRun {
                        name: status.analysis_run.clone(),
                    });
                }
                status.phase = run.phase;
                status.message = run.message.clone();
            }
        }
    }

    fn analysis_event(&mut self, status: &ExperimentAnalysisRunStatus) {
        let mut message = format!(
            "AnalysisRun '{}' transitioned to {}",
            status.name, status.phase
        );
        if let Some(m) = &status.message {
            message.push_str(": ");
            message.push_str(m);
        }
        let warning = matches!(
            status.phase,
            AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
        );
        self.event(warning, format!("AnalysisRun{}", status.phase), message);
    }

    fn template_ref(analysis: &ExperimentAnalysisTemplateRef) -> TemplateRef {
        TemplateRef {
            name: analysis.template_name.clone(),
            cluster_scope: analysis.cluster_scope(),
        }
    }

    /// The template exists and uses no Argo field Sluice does not implement.
    fn verify(&self, analysis: &ExperimentAnalysisTemplateRef) -> Result<(), String> {
        let reference = Self::template_ref(analysis);
        let Some(template) = self.obs.templates.get(&reference) else {
            return Err(format!(
                "{} {:?} not found",
                reference.kind(),
                reference.name
            ));
        };
        let unsupported = template.unsupported_fields();
        if unsupported.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} {:?}: {}",
                reference.kind(),
                reference.name,
                unsupported::message(&unsupported)
            ))
        }
    }

    /// The run spec of `analysis`: its template with the Experiment's arguments (a `value` may
    /// name a template's hash or ReplicaSet), dry-run and retention, built by the same merge as a
    /// Rollout's runs.
    fn run_spec(
        &self,
        analysis: &ExperimentAnalysisTemplateRef,
    ) -> Result<AnalysisRunSpec, String> {
        self.verify(analysis)?;
        let reference = Self::template_ref(analysis);
        let literal_args = analysis
            .args
            .iter()
            .filter(|a| a.value.is_some())
            .map(|a| {
                Ok(AnalysisRunArgument {
                    name: a.name.clone(),
                    value: a
                        .value
                        .as_deref()
                        .map(|v| self.template_placeholders(v))
                        .transpose()?,
                    value_from: None,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let rollout_like = RolloutAnalysis {
            templates: vec![RolloutAnalysisTemplate {
                template_name: reference.name,
                cluster_scope: analysis.cluster_scope,
            }],
            args: literal_args,
            dry_run: self.spec.dry_run.clone(),
            measurement_retention: self.spec.measurement_retention.clone(),
            analysis_run_metadata: None,
        };
        let templates =
            named_templates(&self.obs.templates, &rollout_like).map_err(|e| e.to_string())?;
        let mut spec = build_analysis_run(&templates, &rollout_like, &ArgContext::default())
            .map_err(|e| e.to_string())?;
        // Secret arguments stay references, read by the analysis controller when it measures.
        for given in analysis.args.iter().filter(|a| a.value.is_none()) {
            match spec.args.iter_mut().find(|a| a.name == given.name) {
                Some(existing) => *existing = given.clone(),
                None => spec.args.push(given.clone()),
            }
        }
        Ok(spec)
    }

    /// Argo's experiment argument placeholders: `{{templates.NAME.podTemplateHash}}` and
    /// `{{templates.NAME.replicaset.name}}`.
    fn template_placeholders(&self, value: &str) -> Result<String, String> {
        let mut out = value.to_string();
        for template in &self.spec.templates {
            let hash_key = format!("{{{{templates.{}.podTemplateHash}}}}", template.name);
            let rs_key = format!("{{{{templates.{}.replicaset.name}}}}", template.name);
            if out.contains(&hash_key) {
                let hash = template_status(&self.status, &template.name)
                    .and_then(|t| t.pod_template_hash.clone())
                    .ok_or_else(|| format!("template {} has no ReplicaSet yet", template.name))?;
                out = out.replace(&hash_key, &hash);
            }
            out = out.replace(&rs_key, &replica_set_name(self.name(), &template.name));
        }
        Ok(out)
    }
}
