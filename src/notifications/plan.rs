//! What to send for one object (PURE): its subscriptions, each trigger's conditions, the object's
//! record and `now` give the deliveries to make and the record without the conditions that turned
//! false. No client, no clock of its own: the caller passes `now`, and marks what it delivered
//! ([`Record::mark_sent`]).
//!
//! Transition rule (Argo's): a condition that is true sends once per service and recipient; when
//! it is false again its entry is cleared, so the next true sends again. A condition with
//! `oncePer` sends once per distinct value and its entries are never cleared (only pruned, oldest
//! first). A condition that cannot be evaluated neither sends nor clears; nor does one about an
//! event that is no news any more ([`Freshness`](super::config::Freshness)).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::config::NotificationsConfig;
use super::record::{self, Record};
use super::services::{self, Payload};
use super::triggers::{self, ContextNames, ObjectKind, Outcome, Resolved};

/// Annotation prefix of subscriptions: `notifications.sluice.dev/subscribe.<trigger>.<service>`.
pub const SUBSCRIBE_PREFIX: &str = "notifications.sluice.dev/subscribe.";

/// A subscription of an object to a trigger through a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subscription {
    pub trigger: String,
    pub service: String,
    /// At least one; `""` when the annotation names none (a webhook needs none).
    pub recipients: Vec<String>,
}

/// The subscriptions in `annotations` (the value is a `;`-separated list of recipients).
pub fn subscriptions(annotations: &BTreeMap<String, String>) -> Vec<Subscription> {
    annotations
        .iter()
        .filter_map(|(key, value)| {
            let rest = key.strip_prefix(SUBSCRIBE_PREFIX)?;
            let (trigger, service) = rest.split_once('.')?;
            if trigger.is_empty() || service.is_empty() {
                return None;
            }
            let mut recipients: Vec<String> = value
                .split(';')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect();
            recipients.sort();
            recipients.dedup();
            if recipients.is_empty() {
                recipients.push(String::new());
            }
            Some(Subscription {
                trigger: trigger.to_string(),
                service: service.to_string(),
                recipients,
            })
        })
        .collect()
}

/// One notification to deliver: every template of a condition, to one service and recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub trigger: String,
    pub service: String,
    pub recipient: String,
    /// The record key to mark once every payload is delivered.
    pub key: String,
    pub payloads: Vec<Payload>,
}

/// Something that stops a subscription from working, for the log and the metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub trigger: String,
    pub service: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub deliveries: Vec<Delivery>,
    /// The record after clearing the entries of conditions that are false.
    pub record: Record,
    pub problems: Vec<Problem>,
}

/// What the planner reads.
pub struct Input<'a> {
    pub kind: ObjectKind,
    pub object: &'a Value,
    pub subscriptions: &'a [Subscription],
    pub config: &'a NotificationsConfig,
    pub record: &'a Record,
    /// Unix seconds.
    pub now: i64,
}

pub fn plan(input: &Input<'_>) -> Plan {
    let mut out = Plan {
        record: input.record.clone(),
        ..Plan::default()
    };
    let variables = triggers::variables(input.kind, input.object);
    let mut current = BTreeSet::new();
    for subscription in input.subscriptions {
        let problem = |message: String| Problem {
            trigger: subscription.trigger.clone(),
            service: subscription.service.clone(),
            message,
        };
        let conditions = match triggers::resolve(input.config, &subscription.trigger, input.kind) {
            Resolved::Conditions(conditions) => conditions,
            Resolved::OtherKind => continue,
            Resolved::Unknown => {
                out.problems.push(problem(format!(
                    "no trigger {:?} in the ConfigMap and none built in",
                    subscription.trigger
                )));
                continue;
            }
        };
        let Some(service) = input.config.services.get(&subscription.service) else {
            out.problems.push(problem(format!(
                "no service {:?} in the ConfigMap",
                subscription.service
            )));
            continue;
        };
        let results = triggers::evaluate(&conditions, &variables);
        for (condition, result) in conditions.iter().zip(results) {
            let stale = condition
                .fresh_within
                .is_some_and(|f| f.is_stale(input.object, input.now));
            for recipient in &subscription.recipients {
                let key = |once_per: Option<&str>| {
                    record::key(
                        &subscription.trigger,
                        &result.key,
                        once_per,
                        &subscription.service,
                        recipient,
                    )
                };
                match &result.outcome {
                    Outcome::NotTriggered => out.record.clear(&key(None)),
                    Outcome::Error(message) => {
                        out.problems.push(problem(message.clone()));
                    }
                    Outcome::Triggered { once_per } => {
                        let key = key(once_per.as_deref());
                        current.insert(key.clone());
                        if stale || input.record.contains(&key) {
                            continue;
                        }
                        let names = ContextNames {
                            trigger: &subscription.trigger,
                            service: &subscription.service,
                            recipient,
                        };
                        let ctx = triggers::template_context(
                            input.kind,
                            input.object,
                            &names,
                            input.config,
                        );
                        match payloads(input.config, &result.templates, &names, service, &ctx) {
                            Ok(payloads) => out.deliveries.push(Delivery {
                                trigger: subscription.trigger.clone(),
                                service: subscription.service.clone(),
                                recipient: recipient.clone(),
                                key,
                                payloads,
                            }),
                            Err(message) => out.problems.push(problem(message)),
                        }
                    }
                }
            }
        }
    }
    // The entries of conditions true now are never pruned away (they would send again).
    out.record.prune(&current);
    out
}

fn payloads(
    config: &NotificationsConfig,
    templates: &[String],
    names: &ContextNames<'_>,
    service: &super::config::Service,
    ctx: &Value,
) -> Result<Vec<Payload>, String> {
    templates
        .iter()
        .map(|name| {
            let template = triggers::template(config, name).ok_or_else(|| {
                format!("no template {name:?} in the ConfigMap and none built in")
            })?;
            services::build(names.service, service, template, ctx, names.recipient)
                .map_err(|e| format!("template {name:?}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifications::config::parse;
    use serde_json::json;

    /// 2026-12-07T12:00:00Z.
    const NOW: i64 = 1_796_644_800;

    fn config(extra: &[(&str, &str)]) -> NotificationsConfig {
        let mut data: BTreeMap<String, String> = BTreeMap::from([
            (
                "service.webhook.ops".to_string(),
                "url: http://127.0.0.1:1/hook\n".to_string(),
            ),
            (
                "service.slack".to_string(),
                "webhookUrl: $slack-url\n".to_string(),
            ),
        ]);
        for (k, v) in extra {
            data.insert(k.to_string(), v.to_string());
        }
        let (config, problems) = parse(&data);
        assert!(problems.is_empty(), "{problems:?}");
        config
    }

    fn subs(pairs: &[(&str, &str)]) -> Vec<Subscription> {
        let annotations: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("{SUBSCRIBE_PREFIX}{k}"), v.to_string()))
            .collect();
        subscriptions(&annotations)
    }

    fn reverted(revert_commit: &str, phase: &str) -> Value {
        json!({"metadata": {"name": "web", "namespace": "shop"}, "status": {"phase": "Healthy",
            "revert": {"sha": "a".repeat(40), "revertCommit": revert_commit, "phase": phase}}})
    }

    fn run_plan(
        object: &Value,
        subscriptions: &[Subscription],
        config: &NotificationsConfig,
        record: &Record,
    ) -> Plan {
        plan(&Input {
            kind: ObjectKind::Rollout,
            object,
            subscriptions,
            config,
            record,
            now: NOW,
        })
    }

    #[test]
    fn subscriptions_are_read_from_annotations() {
        let annotations = BTreeMap::from([
            (
                format!("{SUBSCRIBE_PREFIX}on-git-reverted.slack"),
                "#a; #b;#a".to_string(),
            ),
            (
                format!("{SUBSCRIBE_PREFIX}on-rollout-aborted.ops"),
                "".to_string(),
            ),
            (format!("{SUBSCRIBE_PREFIX}no-service"), "x".to_string()),
            (
                "notifications.argoproj.io/subscribe.on-x.slack".to_string(),
                "x".to_string(),
            ),
            ("other".to_string(), "x".to_string()),
        ]);
        assert_eq!(
            subscriptions(&annotations),
            vec![
                Subscription {
                    trigger: "on-git-reverted".into(),
                    service: "slack".into(),
                    recipients: vec!["#a".into(), "#b".into()]
                },
                Subscription {
                    trigger: "on-rollout-aborted".into(),
                    service: "ops".into(),
                    recipients: vec![String::new()]
                },
            ]
        );
    }

    /// The whole life of one revert: sent once, not again while true (also after a restart, which
    /// only has the record), and again for the next revert commit.
    #[test]
    fn a_transition_sends_once_and_the_record_stops_repeats() {
        let config = config(&[]);
        let subs = subs(&[("on-git-reverted.ops", ""), ("on-git-reverted.", "x")]);
        let first = reverted(&"b".repeat(40), "Pushed");
        let p = run_plan(&first, &subs, &config, &Record::default());
        assert_eq!(p.deliveries.len(), 1, "{p:?}");
        let delivery = &p.deliveries[0];
        assert_eq!(
            delivery.key.split(':').next(),
            Some("b".repeat(40).as_str())
        );
        let Payload::Webhook { body, .. } = &delivery.payloads[0] else {
            panic!("webhook")
        };
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["revertCommit"], "b".repeat(40));
        assert_eq!(body["revertedCommit"], "a".repeat(40));
        assert_eq!(body["name"], "web");

        // Delivered: marked. The same state, or Synced later, sends nothing; a record read back
        // from the annotation (a restarted controller) neither.
        let mut record = p.record.clone();
        record.mark_sent(&delivery.key, 100);
        let again = run_plan(&first, &subs, &config, &record);
        assert!(again.deliveries.is_empty());
        assert_eq!(again.record, record);
        let synced = reverted(&"b".repeat(40), "Synced");
        let restarted = Record::parse(Some(&record.to_annotation()));
        assert!(
            run_plan(&synced, &subs, &config, &restarted)
                .deliveries
                .is_empty()
        );
        // oncePer: a false condition keeps the entry, a new revert commit sends once more.
        let cleared = run_plan(&json!({"status": {}}), &subs, &config, &record);
        assert_eq!(cleared.record, record);
        let second = reverted(&"c".repeat(40), "Pushed");
        assert_eq!(
            run_plan(&second, &subs, &config, &record).deliveries.len(),
            1
        );
    }

    #[test]
    fn without_once_per_a_false_condition_clears_and_the_next_true_sends_again() {
        let config = config(&[(
            "trigger.on-paused",
            "- when: rollout.status.phase == 'Paused'\n  send: [rollout-aborted]\n",
        )]);
        let subs = subs(&[("on-paused.ops", "")]);
        let paused = json!({"status": {"phase": "Paused"}});
        let progressing = json!({"status": {"phase": "Progressing"}});
        let p = run_plan(&paused, &subs, &config, &Record::default());
        assert_eq!(p.deliveries.len(), 1);
        let mut record = p.record;
        record.mark_sent(&p.deliveries[0].key, 1);
        assert!(
            run_plan(&paused, &subs, &config, &record)
                .deliveries
                .is_empty()
        );
        let off = run_plan(&progressing, &subs, &config, &record);
        assert!(off.deliveries.is_empty());
        assert!(off.record.is_empty());
        assert_eq!(
            run_plan(&paused, &subs, &config, &off.record)
                .deliveries
                .len(),
            1
        );
        // An expression error is neither true nor false: the entry stays.
        let broken = run_plan(&json!({}), &subs, &config, &record);
        assert_eq!(broken.record, record);
        assert_eq!(broken.problems.len(), 1, "{:?}", broken.problems);
    }

    #[test]
    fn each_recipient_and_service_is_its_own_notification() {
        let config = config(&[]);
        let subs = subs(&[
            ("on-git-reverted.ops", "a;b"),
            ("on-git-reverted.slack", ""),
        ]);
        let p = run_plan(
            &reverted(&"b".repeat(40), "Pushed"),
            &subs,
            &config,
            &Record::default(),
        );
        let who: Vec<(&str, &str)> = p
            .deliveries
            .iter()
            .map(|d| (d.service.as_str(), d.recipient.as_str()))
            .collect();
        assert_eq!(who, vec![("ops", "a"), ("ops", "b"), ("slack", "")]);
        let keys: BTreeSet<&String> = p.deliveries.iter().map(|d| &d.key).collect();
        assert_eq!(keys.len(), 3);
        let Payload::Slack { body } = &p.deliveries[2].payloads[0] else {
            panic!("slack")
        };
        assert!(body["text"].as_str().unwrap().contains(&"b".repeat(40)));
    }

    #[test]
    fn problems_are_reported_and_the_other_subscriptions_still_work() {
        let config = config(&[
            (
                "trigger.on-missing-template",
                "- when: 'true'\n  send: [nope]\n",
            ),
            (
                "template.bad-slack",
                "message: x\nslack:\n  attachments: '{{.name}}'\n",
            ),
            (
                "trigger.on-bad-slack",
                "- when: 'true'\n  send: [bad-slack]\n",
            ),
        ]);
        let subs = subs(&[
            ("on-nothing.ops", ""),
            ("on-git-reverted.pager", ""),
            ("on-missing-template.ops", ""),
            ("on-bad-slack.slack", ""),
            ("on-git-reverted.ops", ""),
            // Built in for AnalysisRuns only: quietly nothing on a Rollout.
            ("on-analysis-run-failed.ops", ""),
        ]);
        let p = run_plan(
            &reverted(&"b".repeat(40), "Pushed"),
            &subs,
            &config,
            &Record::default(),
        );
        assert_eq!(p.deliveries.len(), 1);
        assert_eq!(p.deliveries[0].trigger, "on-git-reverted");
        let messages: Vec<String> = p
            .problems
            .iter()
            .map(|p| format!("{}/{}: {}", p.trigger, p.service, p.message))
            .collect();
        assert_eq!(messages.len(), 4, "{messages:#?}");
        let all = messages.join("\n");
        for expected in [
            "on-nothing/ops: no trigger \"on-nothing\"",
            "on-git-reverted/pager: no service \"pager\"",
            "on-missing-template/ops: no template \"nope\"",
            "on-bad-slack/slack: template \"bad-slack\": slack.attachments is not a JSON list",
        ] {
            assert!(all.contains(expected), "{expected} in {all}");
        }
    }

    #[test]
    fn analysis_runs_report_their_failed_metric() {
        let config = config(&[]);
        let subs = subs(&[("on-analysis-run-failed.ops", "")]);
        let run = json!({"metadata": {"name": "web-1", "namespace": "shop",
            "labels": {"sluice.dev/rollout": "web"}},
            "status": {"phase": "Failed", "metricResults": [{"name": "success-rate", "phase": "Failed"}]}});
        let p = plan(&Input {
            kind: ObjectKind::AnalysisRun,
            object: &run,
            subscriptions: &subs,
            config: &config,
            record: &Record::default(),
            now: NOW,
        });
        let Payload::Webhook { body, .. } = &p.deliveries[0].payloads[0] else {
            panic!("webhook")
        };
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["failedMetrics"], "success-rate");
        assert_eq!(body["rollout"], "web");
        assert_eq!(body["kind"], "AnalysisRun");
        assert!(body["message"].as_str().unwrap().contains("success-rate"));
    }

    /// A run that failed long ago (a Rollout subscribed today keeps its old runs) is no news; one
    /// that failed within the hour is, also if the controller was down in between.
    #[test]
    fn an_analysis_run_that_failed_long_ago_is_not_told() {
        let config = config(&[]);
        let subs = subs(&[("on-analysis-run-failed.ops", "")]);
        let failed_at = |at: &str| {
            json!({"metadata": {"name": "web-1", "namespace": "shop"},
                   "status": {"phase": "Failed", "completedAt": at}})
        };
        let deliveries = |run: &Value| {
            plan(&Input {
                kind: ObjectKind::AnalysisRun,
                object: run,
                subscriptions: &subs,
                config: &config,
                record: &Record::default(),
                now: NOW,
            })
            .deliveries
            .len()
        };
        assert_eq!(deliveries(&failed_at("2026-12-07T11:59:00Z")), 1);
        assert_eq!(deliveries(&failed_at("2026-12-07T11:01:00Z")), 1);
        assert_eq!(deliveries(&failed_at("2026-12-07T10:59:59Z")), 0);
        assert_eq!(deliveries(&failed_at("2026-11-01T00:00:00Z")), 0);
        assert_eq!(deliveries(&failed_at("not a time")), 1);
    }
}
