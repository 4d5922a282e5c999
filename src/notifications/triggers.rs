//! Triggers (PURE): the built-in ones with their templates, and the evaluation of a trigger's
//! conditions against an object.
//!
//! A condition's `when` is an expression of the analysis conditions' language (expr, as Argo's),
//! over the object bound to `rollout`, `app` or `analysisRun` (Argo's names). A trigger of the
//! ConfigMap replaces the built-in one of the same name; a template of the ConfigMap replaces the
//! built-in template of the same name.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::config::{Freshness, NotificationTemplate, NotificationsConfig, TriggerCondition};
use super::template::Template;

/// The kinds notifications watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Rollout,
    AnalysisRun,
    Application,
}

impl ObjectKind {
    /// The variable conditions and templates read the object as (Argo's).
    pub fn variable(self) -> &'static str {
        match self {
            ObjectKind::Rollout => "rollout",
            ObjectKind::AnalysisRun => "analysisRun",
            ObjectKind::Application => "app",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Rollout => "Rollout",
            ObjectKind::AnalysisRun => "AnalysisRun",
            ObjectKind::Application => "Application",
        }
    }
}

/// A built-in trigger for one kind.
struct Builtin {
    trigger: &'static str,
    kind: ObjectKind,
    when: &'static str,
    once_per: Option<&'static str>,
    template: &'static str,
    fresh: Option<Freshness>,
}

/// The built-in triggers. Where a condition stays true for a while and could flap through states
/// the watch may not show one by one, `oncePer` names the revision, commit or operation it is about,
/// so each is told once.
const BUILTINS: &[Builtin] = &[
    Builtin {
        trigger: "on-rollout-completed",
        kind: ObjectKind::Rollout,
        when: "rollout.status?.phase == 'Healthy' && rollout.status?.stableRS != nil && rollout.status?.stableRS == rollout.status?.currentPodHash",
        once_per: Some("rollout.status?.currentPodHash"),
        template: "rollout-completed",
        fresh: None,
    },
    Builtin {
        trigger: "on-rollout-aborted",
        kind: ObjectKind::Rollout,
        when: "rollout.status?.abort == true",
        once_per: Some("rollout.status?.currentPodHash"),
        template: "rollout-aborted",
        fresh: None,
    },
    Builtin {
        trigger: "on-analysis-run-failed",
        kind: ObjectKind::AnalysisRun,
        when: "analysisRun.status?.phase == 'Failed'",
        once_per: None,
        template: "analysis-run-failed",
        fresh: Some(Freshness {
            pointer: "/status/completedAt",
            max_age_secs: 3600,
        }),
    },
    Builtin {
        trigger: "on-git-reverted",
        kind: ObjectKind::Rollout,
        when: "rollout.status?.revert?.phase in ['Pushed', 'Synced'] && rollout.status?.revert?.revertCommit != nil",
        once_per: Some("rollout.status?.revert?.revertCommit"),
        template: "git-reverted",
        fresh: None,
    },
    Builtin {
        trigger: "on-git-reverted",
        kind: ObjectKind::Application,
        when: "app.status?.revert?.phase in ['Pushed', 'Completed'] && app.status?.revert?.revertCommit != nil",
        once_per: Some("app.status?.revert?.revertCommit"),
        template: "git-reverted",
        fresh: None,
    },
    Builtin {
        trigger: "on-revert-failed",
        kind: ObjectKind::Rollout,
        when: "rollout.status?.revert?.phase == 'Failed'",
        once_per: Some("rollout.status?.revert?.sha"),
        template: "revert-failed",
        fresh: None,
    },
    Builtin {
        trigger: "on-revert-failed",
        kind: ObjectKind::Application,
        when: "app.status?.revert?.phase == 'Failed'",
        once_per: Some("app.status?.revert?.sha"),
        template: "revert-failed",
        fresh: None,
    },
    Builtin {
        trigger: "on-sync-failed",
        kind: ObjectKind::Application,
        when: "app.status?.operationState?.phase in ['Error', 'Failed']",
        once_per: Some("app.status?.operationState?.startedAt"),
        template: "app-sync-failed",
        fresh: None,
    },
    Builtin {
        trigger: "on-health-degraded",
        kind: ObjectKind::Application,
        when: "app.status?.health?.status == 'Degraded'",
        once_per: None,
        template: "app-health-degraded",
        fresh: None,
    },
];

/// The names of the built-in triggers.
pub fn builtin_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = BUILTINS.iter().map(|b| b.trigger).collect();
    names.dedup();
    names
}

/// A built-in template: its message and the fields of its JSON body / Slack attachment.
struct BuiltinTemplate {
    name: &'static str,
    message: &'static str,
    color: &'static str,
    fields: &'static [(&'static str, &'static str)],
}

const OBJECT: &str = "{{.kind}} {{.namespace}}/{{.name}}";

const BUILTIN_TEMPLATES: &[BuiltinTemplate] = &[
    BuiltinTemplate {
        name: "rollout-completed",
        message: "Rollout {{.namespace}}/{{.name}} completed: revision {{.object.status.currentPodHash}} is stable and receives all traffic.",
        color: "good",
        fields: &[
            ("revision", "{{.object.status.currentPodHash}}"),
            ("stableRS", "{{.object.status.stableRS}}"),
        ],
    },
    BuiltinTemplate {
        name: "rollout-aborted",
        message: "Rollout {{.namespace}}/{{.name}} aborted revision {{.object.status.currentPodHash}}; traffic is back on the stable revision {{.object.status.stableRS}}. {{.object.status.message}}",
        color: "danger",
        fields: &[
            ("revision", "{{.object.status.currentPodHash}}"),
            ("stableRS", "{{.object.status.stableRS}}"),
            ("reason", "{{.object.status.message}}"),
        ],
    },
    BuiltinTemplate {
        name: "analysis-run-failed",
        message: "AnalysisRun {{.namespace}}/{{.name}} of Rollout {{.rolloutName}} failed: metric {{.failedMetrics}}. {{.object.status.message}}",
        color: "danger",
        fields: &[
            ("rollout", "{{.rolloutName}}"),
            ("failedMetrics", "{{.failedMetrics}}"),
            ("phase", "{{.object.status.phase}}"),
            ("reason", "{{.object.status.message}}"),
        ],
    },
    BuiltinTemplate {
        name: "git-reverted",
        message: "Sluice reverted commit {{.object.status.revert.sha}} in Git with commit {{.object.status.revert.revertCommit}}: the release of {{.kind}} {{.namespace}}/{{.name}} failed its analysis.",
        color: "warning",
        fields: &[
            ("revertedCommit", "{{.object.status.revert.sha}}"),
            ("revertCommit", "{{.object.status.revert.revertCommit}}"),
            ("phase", "{{.object.status.revert.phase}}"),
        ],
    },
    BuiltinTemplate {
        name: "revert-failed",
        message: "Sluice could not revert commit {{.object.status.revert.sha}} in Git for {{.kind}} {{.namespace}}/{{.name}}: {{.object.status.revert.message}}",
        color: "danger",
        fields: &[
            ("revertedCommit", "{{.object.status.revert.sha}}"),
            ("reason", "{{.object.status.revert.message}}"),
        ],
    },
    BuiltinTemplate {
        name: "app-sync-failed",
        message: "Application {{.namespace}}/{{.name}}: the sync failed ({{.object.status.operationState.phase}}): {{.object.status.operationState.message}}",
        color: "danger",
        fields: &[
            (
                "revision",
                "{{.object.status.operationState.syncResult.revision}}",
            ),
            ("phase", "{{.object.status.operationState.phase}}"),
            ("reason", "{{.object.status.operationState.message}}"),
        ],
    },
    BuiltinTemplate {
        name: "app-health-degraded",
        message: "Application {{.namespace}}/{{.name}} is Degraded. {{.object.status.health.message}}",
        color: "danger",
        fields: &[
            ("health", "{{.object.status.health.status}}"),
            ("revision", "{{.object.status.sync.revision}}"),
            ("reason", "{{.object.status.health.message}}"),
        ],
    },
];

/// The built-in templates, parsed once (a unit test checks that each parses).
static TEMPLATES: LazyLock<BTreeMap<&'static str, NotificationTemplate>> = LazyLock::new(|| {
    BUILTIN_TEMPLATES
        .iter()
        .filter_map(|b| Some((b.name, builtin_template(b)?)))
        .collect()
});

fn builtin_template(b: &BuiltinTemplate) -> Option<NotificationTemplate> {
    let fields = b
        .fields
        .iter()
        .map(|(name, source)| Some((name.to_string(), Template::parse(source).ok()?)))
        .collect::<Option<Vec<_>>>()?;
    Some(NotificationTemplate {
        message: Template::parse(b.message).ok()?,
        title: Template::parse(OBJECT).ok()?,
        fields,
        color: Some(b.color.to_string()),
        ..NotificationTemplate::default()
    })
}

/// The template `name`: the ConfigMap's, else the built-in one.
pub fn template<'a>(
    config: &'a NotificationsConfig,
    name: &str,
) -> Option<&'a NotificationTemplate> {
    config.templates.get(name).or_else(|| TEMPLATES.get(name))
}

/// How a trigger applies to a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The ConfigMap's trigger, or the built-in one for this kind.
    Conditions(Vec<TriggerCondition>),
    /// A built-in trigger about another kind (an AnalysisRun inherits its Rollout's
    /// subscriptions, among them `on-rollout-completed`): nothing to do.
    OtherKind,
    Unknown,
}

/// The conditions of `trigger` for an object of `kind`.
pub fn resolve(config: &NotificationsConfig, trigger: &str, kind: ObjectKind) -> Resolved {
    if let Some(conditions) = config.triggers.get(trigger) {
        return if written_for_another_kind(conditions, kind) {
            Resolved::OtherKind
        } else {
            Resolved::Conditions(conditions.clone())
        };
    }
    let builtins: Vec<&Builtin> = BUILTINS.iter().filter(|b| b.trigger == trigger).collect();
    match builtins.iter().find(|b| b.kind == kind) {
        Some(b) => Resolved::Conditions(vec![TriggerCondition {
            when: b.when.to_string(),
            send: vec![b.template.to_string()],
            once_per: b.once_per.map(str::to_string),
            description: None,
            fresh_within: b.fresh,
        }]),
        None if builtins.is_empty() => Resolved::Unknown,
        None => Resolved::OtherKind,
    }
}

/// Whether no condition reads `kind`'s variable while one reads another kind's: a trigger written
/// for Rollouts, inherited by their AnalysisRuns, is not an error on each run.
fn written_for_another_kind(conditions: &[TriggerCondition], kind: ObjectKind) -> bool {
    let reads = |variable: &str| {
        conditions.iter().any(|c| {
            c.when
                .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .any(|token| token == variable)
        })
    };
    let mut others = [
        ObjectKind::Rollout,
        ObjectKind::AnalysisRun,
        ObjectKind::Application,
    ]
    .into_iter()
    .filter(|k| *k != kind);
    !reads(kind.variable()) && others.any(|k| reads(k.variable()))
}

/// The outcome of one condition on one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionResult {
    /// `[<index>].<hash of when>`: changing a condition starts its record afresh.
    pub key: String,
    pub outcome: Outcome,
    pub templates: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// True, with the `oncePer` value when the condition has one.
    Triggered {
        once_per: Option<String>,
    },
    NotTriggered,
    /// The expression could not be evaluated (e.g. a field of a kind it was not written for):
    /// neither a send nor a clear of the record.
    Error(String),
}

/// Evaluates each condition with `variables` (the object under its kind's name).
pub fn evaluate(
    conditions: &[TriggerCondition],
    variables: &Map<String, Value>,
) -> Vec<ConditionResult> {
    conditions
        .iter()
        .enumerate()
        .map(|(i, condition)| ConditionResult {
            key: format!("[{i}].{}", short_hash(&condition.when)),
            outcome: outcome(condition, variables),
            templates: condition.send.clone(),
        })
        .collect()
}

fn outcome(condition: &TriggerCondition, variables: &Map<String, Value>) -> Outcome {
    use crate::analysis::condition::{eval_bool, eval_json};
    match eval_bool(&condition.when, variables) {
        Ok(true) => {}
        Ok(false) => return Outcome::NotTriggered,
        Err(e) => return Outcome::Error(e.to_string()),
    }
    let Some(once_per) = &condition.once_per else {
        return Outcome::Triggered { once_per: None };
    };
    match eval_json(once_per, variables) {
        Ok(Value::String(s)) => Outcome::Triggered { once_per: Some(s) },
        Ok(Value::Null) => Outcome::Triggered {
            once_per: Some(String::new()),
        },
        Ok(other) => Outcome::Triggered {
            once_per: Some(other.to_string()),
        },
        Err(e) => Outcome::Error(e.to_string()),
    }
}

/// The first 8 hex digits of the SHA-256 of `text`: stable across builds and restarts.
fn short_hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The variables conditions see: the object under its kind's name.
pub fn variables(kind: ObjectKind, object: &Value) -> Map<String, Value> {
    let mut vars = Map::new();
    vars.insert(kind.variable().to_string(), object.clone());
    vars
}

/// What templates see: the object under its kind's name and as `object`, its `kind`, `namespace`
/// and `name`, the `trigger`, `service` and `recipient`, the ConfigMap's `context`, and for an
/// AnalysisRun its `rolloutName` and `failedMetrics` (names of the Failed metrics, comma-separated).
pub fn template_context(
    kind: ObjectKind,
    object: &Value,
    names: &ContextNames<'_>,
    config: &NotificationsConfig,
) -> Value {
    let metadata = &object["metadata"];
    let mut ctx = Map::new();
    ctx.insert(kind.variable().to_string(), object.clone());
    ctx.insert("object".to_string(), object.clone());
    ctx.insert("kind".to_string(), kind.name().into());
    ctx.insert("namespace".to_string(), metadata["namespace"].clone());
    ctx.insert("name".to_string(), metadata["name"].clone());
    ctx.insert("trigger".to_string(), names.trigger.into());
    ctx.insert("service".to_string(), names.service.into());
    ctx.insert("recipient".to_string(), names.recipient.into());
    ctx.insert(
        "context".to_string(),
        serde_json::to_value(&config.context).unwrap_or(Value::Null),
    );
    if kind == ObjectKind::AnalysisRun {
        ctx.insert("rolloutName".to_string(), rollout_of(object).into());
        ctx.insert("failedMetrics".to_string(), failed_metrics(object).into());
    }
    Value::Object(ctx)
}

/// The names a template is rendered for.
#[derive(Debug, Clone, Copy)]
pub struct ContextNames<'a> {
    pub trigger: &'a str,
    pub service: &'a str,
    pub recipient: &'a str,
}

/// An AnalysisRun's Rollout: its controller owner, else its `sluice.dev/rollout` label.
pub fn rollout_of(run: &Value) -> String {
    let metadata = &run["metadata"];
    let owner = metadata["ownerReferences"].as_array().and_then(|owners| {
        owners
            .iter()
            .find(|o| o["kind"] == "Rollout" && o["controller"] == true)
            .and_then(|o| o["name"].as_str())
    });
    owner
        .or_else(|| metadata["labels"][crate::rollout::observe::ROLLOUT_LABEL].as_str())
        .unwrap_or_default()
        .to_string()
}

fn failed_metrics(run: &Value) -> String {
    run["status"]["metricResults"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .filter(|m| m["phase"] == "Failed")
                .filter_map(|m| m["name"].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(trigger: &str, kind: ObjectKind, object: &Value) -> Vec<Outcome> {
        let Resolved::Conditions(conditions) =
            resolve(&NotificationsConfig::default(), trigger, kind)
        else {
            panic!("{trigger} is built in for {kind:?}");
        };
        evaluate(&conditions, &variables(kind, object))
            .into_iter()
            .map(|r| r.outcome)
            .collect()
    }

    fn fired(once_per: Option<&str>) -> Vec<Outcome> {
        vec![Outcome::Triggered {
            once_per: once_per.map(str::to_string),
        }]
    }

    const NOT: Outcome = Outcome::NotTriggered;

    #[test]
    fn built_in_rollout_triggers() {
        use ObjectKind::Rollout;
        let healthy =
            json!({"status": {"phase": "Healthy", "stableRS": "abc", "currentPodHash": "abc"}});
        let canary =
            json!({"status": {"phase": "Paused", "stableRS": "abc", "currentPodHash": "def"}});
        let aborted = json!({"status": {"phase": "Degraded", "abort": true, "stableRS": "abc", "currentPodHash": "def"}});
        let fresh = json!({"metadata": {"name": "web"}});
        assert_eq!(
            run("on-rollout-completed", Rollout, &healthy),
            fired(Some("abc"))
        );
        assert_eq!(run("on-rollout-completed", Rollout, &canary), vec![NOT]);
        assert_eq!(run("on-rollout-completed", Rollout, &fresh), vec![NOT]);
        assert_eq!(
            run("on-rollout-aborted", Rollout, &aborted),
            fired(Some("def"))
        );
        assert_eq!(run("on-rollout-aborted", Rollout, &canary), vec![NOT]);
        assert_eq!(run("on-rollout-aborted", Rollout, &fresh), vec![NOT]);
    }

    #[test]
    fn built_in_revert_triggers_on_rollouts_and_applications() {
        use ObjectKind::{Application, Rollout};
        let sha = "a".repeat(40);
        let revert = "b".repeat(40);
        let pending = json!({"status": {"revert": {"sha": sha, "phase": "Pending"}}});
        let pushed =
            json!({"status": {"revert": {"sha": sha, "phase": "Pushed", "revertCommit": revert}}});
        let synced =
            json!({"status": {"revert": {"sha": sha, "phase": "Synced", "revertCommit": revert}}});
        let completed = json!({"status": {"revert": {"sha": sha, "phase": "Completed", "revertCommit": revert}}});
        let failed =
            json!({"status": {"revert": {"sha": sha, "phase": "Failed", "message": "conflict"}}});
        assert_eq!(run("on-git-reverted", Rollout, &pending), vec![NOT]);
        assert_eq!(
            run("on-git-reverted", Rollout, &pushed),
            fired(Some(&revert))
        );
        assert_eq!(
            run("on-git-reverted", Rollout, &synced),
            fired(Some(&revert))
        );
        assert_eq!(
            run("on-git-reverted", Application, &completed),
            fired(Some(&revert))
        );
        assert_eq!(run("on-git-reverted", Application, &pending), vec![NOT]);
        assert_eq!(run("on-revert-failed", Rollout, &failed), fired(Some(&sha)));
        assert_eq!(
            run("on-revert-failed", Application, &failed),
            fired(Some(&sha))
        );
        assert_eq!(run("on-revert-failed", Rollout, &pushed), vec![NOT]);
        assert_eq!(run("on-git-reverted", Rollout, &json!({})), vec![NOT]);
    }

    #[test]
    fn built_in_analysis_and_application_triggers() {
        use ObjectKind::{AnalysisRun, Application};
        let failed = json!({"status": {"phase": "Failed"}});
        let running = json!({"status": {"phase": "Running"}});
        assert_eq!(
            run("on-analysis-run-failed", AnalysisRun, &failed),
            fired(None)
        );
        assert_eq!(
            run("on-analysis-run-failed", AnalysisRun, &running),
            vec![NOT]
        );
        assert_eq!(
            run("on-analysis-run-failed", AnalysisRun, &json!({})),
            vec![NOT]
        );
        let sync_failed = json!({"status": {"operationState": {"phase": "Failed", "startedAt": "2026-01-01T00:00:00Z"}}});
        let sync_error =
            json!({"status": {"operationState": {"phase": "Error", "startedAt": "t2"}}});
        let sync_ok =
            json!({"status": {"operationState": {"phase": "Succeeded", "startedAt": "t3"}}});
        assert_eq!(
            run("on-sync-failed", Application, &sync_failed),
            fired(Some("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            run("on-sync-failed", Application, &sync_error),
            fired(Some("t2"))
        );
        assert_eq!(run("on-sync-failed", Application, &sync_ok), vec![NOT]);
        let degraded = json!({"status": {"health": {"status": "Degraded"}}});
        assert_eq!(
            run("on-health-degraded", Application, &degraded),
            fired(None)
        );
        assert_eq!(
            run(
                "on-health-degraded",
                Application,
                &json!({"status": {"health": {"status": "Healthy"}}})
            ),
            vec![NOT]
        );
    }

    #[test]
    fn resolution_prefers_the_configmap_and_knows_other_kinds() {
        let config = NotificationsConfig::default();
        assert_eq!(
            resolve(&config, "on-rollout-completed", ObjectKind::AnalysisRun),
            Resolved::OtherKind
        );
        assert_eq!(
            resolve(&config, "on-nothing", ObjectKind::Rollout),
            Resolved::Unknown
        );
        let mut config = NotificationsConfig::default();
        let mine = vec![TriggerCondition {
            when: "rollout.status.phase == 'Paused'".to_string(),
            send: vec!["mine".to_string()],
            once_per: None,
            description: None,
            fresh_within: None,
        }];
        config
            .triggers
            .insert("on-rollout-completed".to_string(), mine.clone());
        assert_eq!(
            resolve(&config, "on-rollout-completed", ObjectKind::Rollout),
            Resolved::Conditions(mine)
        );
        // Written for Rollouts: nothing to do on the AnalysisRuns that inherit the subscription;
        // a condition naming no kind applies to every kind.
        assert_eq!(
            resolve(&config, "on-rollout-completed", ObjectKind::AnalysisRun),
            Resolved::OtherKind
        );
        let any_kind = vec![TriggerCondition {
            when: "true".to_string(),
            send: vec!["mine".to_string()],
            once_per: None,
            description: None,
            fresh_within: None,
        }];
        config
            .triggers
            .insert("on-always".to_string(), any_kind.clone());
        assert_eq!(
            resolve(&config, "on-always", ObjectKind::AnalysisRun),
            Resolved::Conditions(any_kind)
        );
        assert_eq!(
            builtin_names(),
            vec![
                "on-rollout-completed",
                "on-rollout-aborted",
                "on-analysis-run-failed",
                "on-git-reverted",
                "on-revert-failed",
                "on-sync-failed",
                "on-health-degraded"
            ]
        );
    }

    #[test]
    fn user_conditions_evaluate_with_argo_expressions_and_errors_stay_apart() {
        let conditions = vec![
            TriggerCondition {
                when: "app.status.operationState.phase in ['Error', 'Failed'] and app.metadata.name == 'demo'".to_string(),
                send: vec!["a".to_string()],
                once_per: Some("app.status.sync.revision".to_string()),
                description: None,
                fresh_within: None,
            },
            TriggerCondition {
                when: "app.status.health.status == 'Degraded'".to_string(),
                send: vec!["b".to_string()],
                once_per: None,
                description: None,
                fresh_within: None,
            },
            // Written for Rollouts: on an Application it cannot be evaluated.
            TriggerCondition {
                when: "rollout.status.phase == 'Healthy'".to_string(),
                send: vec!["c".to_string()],
                once_per: None,
                description: None,
                fresh_within: None,
            },
        ];
        let app = json!({"metadata": {"name": "demo"}, "status": {
            "operationState": {"phase": "Failed"}, "sync": {"revision": "abc"},
            "health": {"status": "Healthy"}}});
        let results = evaluate(&conditions, &variables(ObjectKind::Application, &app));
        assert_eq!(
            results[0].outcome,
            Outcome::Triggered {
                once_per: Some("abc".to_string())
            }
        );
        assert_eq!(results[1].outcome, Outcome::NotTriggered);
        assert!(
            matches!(results[2].outcome, Outcome::Error(_)),
            "{:?}",
            results[2]
        );
        assert_eq!(results[0].templates, vec!["a"]);
        // Keys: the index and a hash of the expression, stable across runs.
        assert!(results[0].key.starts_with("[0]."));
        assert_eq!(results[0].key.len(), "[0].".len() + 8);
        assert_eq!(
            results[1].key,
            evaluate(&conditions[1..2], &Map::new())[0]
                .key
                .replace("[0]", "[1]")
        );
    }

    #[test]
    fn every_built_in_template_parses_and_names_its_facts() {
        for b in BUILTIN_TEMPLATES {
            assert!(TEMPLATES.contains_key(b.name), "{} does not parse", b.name);
        }
        for b in BUILTINS {
            assert!(TEMPLATES.contains_key(b.template), "{}", b.template);
        }
        let run = json!({"metadata": {"name": "web-abc-2", "namespace": "shop",
            "ownerReferences": [{"kind": "Rollout", "name": "web", "controller": true}]},
            "status": {"phase": "Failed", "message": "metric \"success-rate\" assessed Failed",
                "metricResults": [{"name": "success-rate", "phase": "Failed"},
                                  {"name": "latency", "phase": "Successful"}]}});
        let names = ContextNames {
            trigger: "on-analysis-run-failed",
            service: "ops",
            recipient: "",
        };
        let ctx = template_context(
            ObjectKind::AnalysisRun,
            &run,
            &names,
            &NotificationsConfig::default(),
        );
        let t = &TEMPLATES["analysis-run-failed"];
        let message = t.message.render(&ctx);
        assert!(
            message.starts_with(
                "AnalysisRun shop/web-abc-2 of Rollout web failed: metric success-rate."
            ),
            "{message}"
        );
        let fields: BTreeMap<&str, String> = t
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.render(&ctx)))
            .collect();
        assert_eq!(fields["failedMetrics"], "success-rate");
        assert_eq!(fields["rollout"], "web");
        assert_eq!(t.title.render(&ctx), "AnalysisRun shop/web-abc-2");
    }

    #[test]
    fn an_analysis_run_without_owner_names_its_rollout_by_label() {
        let run = json!({"metadata": {"labels": {"sluice.dev/rollout": "api"}}});
        assert_eq!(rollout_of(&run), "api");
        assert_eq!(rollout_of(&json!({})), "");
    }
}
