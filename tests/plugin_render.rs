//! The plugin's text output from fixture objects (no cluster): the `get rollout` tree, `list
//! rollouts`, and the `app` views, compared with golden text.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use pretty_assertions::assert_eq;
use serde_json::Value;
use sluice::api::analysis::AnalysisRun;
use sluice::api::application::Application;
use sluice::api::rollout::Rollout;
use sluice::plugin::app::render::{render_app, render_app_list, render_diff, render_history};
use sluice::plugin::info::{RolloutObjects, StrategyInfo, rollout_info};
use sluice::plugin::list::render_rollout_list;
use sluice::plugin::style::Style;
use sluice::plugin::tree::render_rollout;

const CANARY_PAUSED: &str = include_str!("fixtures/plugin/canary-paused.yaml");
const APPLICATION: &str = include_str!("fixtures/application/with-status.yaml");

fn now() -> Timestamp {
    "2025-03-01T10:05:00Z".parse().unwrap()
}

/// The fixture's documents, sorted into what `get rollout` reads.
fn objects(yaml: &str) -> RolloutObjects {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    let of_kind = |kind: &'static str| docs.iter().filter(move |d| d["kind"] == kind).cloned();
    let rollout: Rollout = serde_json::from_value(of_kind("Rollout").next().unwrap()).unwrap();
    RolloutObjects {
        rollout,
        replica_sets: of_kind("ReplicaSet")
            .map(|d| serde_json::from_value::<ReplicaSet>(d).unwrap())
            .collect(),
        pods: of_kind("Pod")
            .map(|d| serde_json::from_value::<Pod>(d).unwrap())
            .collect(),
        analysis_runs: of_kind("AnalysisRun")
            .map(|d| serde_json::from_value::<AnalysisRun>(d).unwrap())
            .collect(),
    }
}

const CANARY_PAUSED_TREE: &str = "\
Name:            web
Namespace:       shop
Status:          ॥ Paused
Message:         CanaryPauseStep
Strategy:        Canary
  Step:          2/4
  SetWeight:     20
  ActualWeight:  20
Images:          example/web:1.0 (stable)
                 example/web:2.0 (canary)
Replicas:
  Desired:       3
  Current:       4
  Updated:       1
  Ready:         4
  Available:     4

NAME                            KIND         STATUS        AGE    INFO
⟳ web                           Rollout      ॥ Paused      65m
├──# revision:2                                                   canary  example/web:2.0  commit 89abcde (shop/web)
│  ├──⧉ web-7f9d8c6b5           ReplicaSet   ✔ Healthy     5m     ready:1/1
│  │  └──□ web-7f9d8c6b5-pqrst  Pod          ✔ Running     4m59s  ready:1/1
│  └──α web-7f9d8c6b5-1         AnalysisRun  ✔ Successful  4m30s  ✔ 4
│     ├──⊡ success-rate         Metric       ✔ Successful         last: [0.98] [0.99] [0.97]
│     └──⊡ latency              Metric       ✔ Successful         last: [0.12] (dry-run)
└──# revision:1                                                   stable  example/web:1.0  commit 0123456 (shop/web)
   └──⧉ web-6c5b7d9f8           ReplicaSet   ✔ Healthy     64m    ready:3/3
      ├──□ web-6c5b7d9f8-abcde  Pod          ✔ Running     64m    ready:1/1
      ├──□ web-6c5b7d9f8-fghij  Pod          ✔ Running     64m    ready:1/1,restarts:2
      └──□ web-6c5b7d9f8-klmno  Pod          ✔ Running     64m    ready:1/1
";

#[test]
fn get_rollout_tree_of_a_paused_canary() {
    let info = rollout_info(&objects(CANARY_PAUSED));
    let text = render_rollout(&info, now(), Style::PLAIN);
    assert_eq!(text, CANARY_PAUSED_TREE);
}

#[test]
fn the_tree_has_argos_step_and_weight_lines() {
    let text = render_rollout(&rollout_info(&objects(CANARY_PAUSED)), now(), Style::PLAIN);
    for line in [
        "  Step:          2/4",
        "  SetWeight:     20",
        "  ActualWeight:  20",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn colours_are_only_escape_codes_around_icons_and_roles() {
    let info = rollout_info(&objects(CANARY_PAUSED));
    let coloured = render_rollout(&info, now(), Style { color: true });
    assert!(coloured.contains("\x1b[33m॥\x1b[0m Paused"), "{coloured}");
    let stripped = strip_ansi(&coloured);
    let plain = render_rollout(&info, now(), Style::PLAIN);
    // Alignment ignores escape codes, so without them the text is the plain text.
    assert_eq!(stripped, plain);
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut escape = false;
    for c in text.chars() {
        match (escape, c) {
            (false, '\x1b') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

#[test]
fn weights_follow_argos_rules() {
    let mut objects = objects(CANARY_PAUSED);
    let weights = |objects: &RolloutObjects| match rollout_info(objects).strategy {
        StrategyInfo::Canary {
            step,
            set_weight,
            actual_weight,
        } => (step, set_weight, actual_weight),
        StrategyInfo::BlueGreen => panic!("canary expected"),
    };
    assert_eq!(weights(&objects), ("2/4".to_string(), 20, 20));
    let status = objects.rollout.status.as_mut().unwrap();
    status.abort = Some(true);
    status
        .canary
        .as_mut()
        .unwrap()
        .weights
        .as_mut()
        .unwrap()
        .canary
        .weight = 0;
    assert_eq!(weights(&objects), ("2/4".to_string(), 0, 0), "aborted");
    let status = objects.rollout.status.as_mut().unwrap();
    status.abort = None;
    status.current_step_index = Some(4);
    assert_eq!(
        weights(&objects),
        ("4/4".to_string(), 100, 100),
        "steps done"
    );
    // Without a router, the actual weight is the canary's share of the available pods.
    let canary = objects.rollout.spec.strategy.canary.as_mut().unwrap();
    canary.traffic_routing = None;
    objects.rollout.status.as_mut().unwrap().current_step_index = Some(1);
    assert_eq!(
        weights(&objects),
        ("1/4".to_string(), 20, 25),
        "replica ratio"
    );
}

#[test]
fn list_rollouts_with_and_without_namespaces() {
    let rollout = objects(CANARY_PAUSED).rollout;
    let mut healthy = rollout.clone();
    healthy.metadata.name = Some("api".to_string());
    healthy.metadata.namespace = Some("backend".to_string());
    let status = healthy.status.as_mut().unwrap();
    status.phase = Some(sluice::api::rollout::RolloutPhase::Healthy);
    status.message = None;
    status.current_step_index = Some(4);
    status.updated_replicas = Some(3);
    let rollouts = vec![rollout, healthy];
    assert_eq!(
        render_rollout_list(&rollouts, false, Style::PLAIN),
        "\
NAME  STRATEGY  STATUS     STEP  SET-WEIGHT  READY  DESIRED  UP-TO-DATE  AVAILABLE
api   Canary    ✔ Healthy  4/4   100         4      3        3           4
web   Canary    ॥ Paused   2/4   20          4      3        1           4
"
    );
    let all = render_rollout_list(&rollouts, true, Style::PLAIN);
    assert_eq!(
        all.lines().next().unwrap(),
        "NAMESPACE  NAME  STRATEGY  STATUS     STEP  SET-WEIGHT  READY  DESIRED  UP-TO-DATE  AVAILABLE"
    );
    assert_eq!(
        all.lines().nth(1).unwrap(),
        "backend    api   Canary    ✔ Healthy  4/4   100         4      3        3           4"
    );
    assert_eq!(
        render_rollout_list(&[], false, Style::PLAIN),
        "No Rollouts found.\n"
    );
}

fn application() -> Application {
    serde_saphyr::from_str(APPLICATION).unwrap()
}

#[test]
fn app_get_shows_sync_health_revision_and_resources() {
    assert_eq!(
        render_app(&application(), Style::PLAIN),
        "\
Name:               sluice/shop
Project:            default
Destination:        https://kubernetes.default.svc (shop)
Repo:               https://git.example.com/shop/deploy.git
Target:             main
Path:               apps/shop
SyncPolicy:         Automated (Prune, SelfHeal)
Sync Status:        ⚠ OutOfSync to main (4d1e2f3)
Health Status:      ✖ Degraded
Health Message:     Rollout \"shop\" aborted: metric \"success-rate\" value [0.71] does not satisfy result[0] >= 0.95
Last Operation:     Succeeded: successfully synced (all tasks run)
Git revert:         Pushed 9f2c4e1 reverted by 4d1e2f3
Conditions:         SyncError: automated sync of 9f2c4e1 skipped: revision is quarantined until its revert is synced

GROUP       KIND       NAMESPACE  NAME         STATUS       HEALTH      INFO
            Service    shop       shop         ✔ Synced     ✔ Healthy
sluice.dev  Rollout    shop       shop         ⚠ OutOfSync  ✖ Degraded  RolloutAborted
            ConfigMap  shop       shop-legacy  ⚠ OutOfSync              requires pruning
"
    );
}

#[test]
fn app_list_history_and_diff() {
    let app = application();
    assert_eq!(
        render_app_list(std::slice::from_ref(&app), false, Style::PLAIN),
        "\
NAME  SYNC         HEALTH      REVISION  SYNCPOLICY                   REPO                                     PATH       TARGET
shop  ⚠ OutOfSync  ✖ Degraded  4d1e2f3   Automated (Prune, SelfHeal)  https://git.example.com/shop/deploy.git  apps/shop  main
"
    );
    let history_now: Timestamp = "2025-03-04T10:00:00Z".parse().unwrap();
    assert_eq!(
        render_history(&app, history_now),
        "\
ID  DATE                  AGE   REVISION                                  INITIATED-BY
0   2025-03-03T09:00:10Z  24h   2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c  automated
1   2025-03-04T09:58:10Z  110s  9f2c4e1b7d3a5c6e8f0a1b2c3d4e5f6a7b8c9d0e  alice
"
    );
    assert_eq!(
        render_diff(&app, Style::PLAIN).unwrap(),
        "\
===== sluice.dev/Rollout shop/shop ======
--- live
+++ git
@@ -20,7 +20,7 @@
         app: shop
     spec:
       containers:
-      - image: ghcr.io/example/shop:1.4.3
+      - image: ghcr.io/example/shop:1.4.2
         name: shop
         ports:
         - containerPort: 8080
===== ConfigMap shop/shop-legacy ======
in the cluster, no longer in Git (requires pruning)
"
    );
    let mut synced = app.clone();
    synced
        .status
        .as_mut()
        .unwrap()
        .resources
        .iter_mut()
        .for_each(|r| {
            r.status = Some(sluice::api::application::SyncStatusCode::Synced);
            r.requires_pruning = false;
        });
    assert_eq!(render_diff(&synced, Style::PLAIN), None);
}

#[test]
fn app_diff_colours_only_changed_lines_and_hunk_headers() {
    let diff = render_diff(&application(), Style { color: true }).unwrap();
    let lines: Vec<&str> = diff.lines().collect();
    assert_eq!(
        lines[..6],
        [
            "===== sluice.dev/Rollout shop/shop ======",
            "\x1b[31m--- live\x1b[0m",
            "\x1b[32m+++ git\x1b[0m",
            "\x1b[36m@@ -20,7 +20,7 @@\x1b[0m",
            "         app: shop",
            "     spec:",
        ]
    );
    assert_eq!(
        lines[7..9],
        [
            "\x1b[31m-      - image: ghcr.io/example/shop:1.4.3\x1b[0m",
            "\x1b[32m+      - image: ghcr.io/example/shop:1.4.2\x1b[0m",
        ]
    );
}

#[test]
fn app_diff_of_an_object_without_recorded_lines_says_so() {
    let mut app = application();
    for r in &mut app.status.as_mut().unwrap().resources {
        r.diff.clear();
    }
    let diff = render_diff(&app, Style::PLAIN).unwrap();
    assert!(
        diff.starts_with(
            "===== sluice.dev/Rollout shop/shop ======\ndiffers from Git (no details recorded)\n"
        ),
        "{diff}"
    );
}

#[test]
fn a_replica_set_kept_for_its_scale_down_delay_shows_the_time_left() {
    let mut objects = objects(CANARY_PAUSED);
    let stable = objects
        .replica_sets
        .iter_mut()
        .find(|rs| rs.metadata.name.as_deref() == Some("web-6c5b7d9f8"))
        .unwrap();
    stable.metadata.annotations.get_or_insert_default().insert(
        "rollout.sluice.dev/scale-down-deadline".to_string(),
        "2025-03-01T10:05:25Z".to_string(),
    );
    let text = render_rollout(&rollout_info(&objects), now(), Style::PLAIN);
    let line = text
        .lines()
        .find(|l| l.contains("⧉ web-6c5b7d9f8"))
        .unwrap();
    assert!(line.ends_with("ready:3/3,delay:25s"), "{line}");
    let later: Timestamp = "2025-03-01T10:06:00Z".parse().unwrap();
    let text = render_rollout(&rollout_info(&objects), later, Style::PLAIN);
    let line = text
        .lines()
        .find(|l| l.contains("⧉ web-6c5b7d9f8"))
        .unwrap();
    assert!(line.ends_with("ready:3/3"), "past the deadline: {line}");
}

/// `proj list` and `proj get` from two projects and the Applications that name them.
mod proj {
    use super::*;
    use pretty_assertions::assert_eq;
    use sluice::api::project::AppProject;
    use sluice::plugin::proj::render::{project_apps, render_project, render_project_list};

    const PROJECTS: &str = include_str!("fixtures/plugin/projects.yaml");

    fn fixture() -> (Vec<AppProject>, Vec<Application>) {
        let docs: Vec<Value> = serde_saphyr::from_multiple(PROJECTS).unwrap();
        let of_kind = |kind: &'static str| docs.iter().filter(move |d| d["kind"] == kind).cloned();
        let projects = of_kind("AppProject")
            .map(|d| serde_json::from_value(d).unwrap())
            .collect();
        let apps = of_kind("Application")
            .map(|d| serde_json::from_value(d).unwrap())
            .collect();
        (projects, apps)
    }

    fn project(projects: &[AppProject], name: &str) -> AppProject {
        projects
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .unwrap()
            .clone()
    }

    #[test]
    fn proj_list_counts_the_applications_each_project_accepts() {
        let (projects, apps) = fixture();
        assert_eq!(
            render_project_list(&projects, &apps),
            "\
NAME     DESCRIPTION                               SOURCE-REPOS                                DESTINATIONS                                      CLUSTER-RESOURCE-WHITELIST  APPLICATIONS
default  -                                         *                                           * (*)                                             *.*                         2
team-a   Team A's services and their jobs, deplo…  git://127.0.0.1:9418/team-a-*.git, +3 more  https://kubernetes.default.svc (team-a), +2 more  Namespace named team-a-*    2
"
        );
        assert_eq!(render_project_list(&[], &apps), "No AppProjects found.\n");
    }

    #[test]
    fn proj_get_shows_what_is_allowed_and_denied_and_who_uses_it() {
        let (projects, apps) = fixture();
        assert_eq!(
            render_project(&project(&projects, "team-a"), &apps, Style::PLAIN),
            "\
Name:               sluice/team-a
Description:        Team A's services and their jobs, deployed from team A's repositories only
Source Repos:       git://127.0.0.1:9418/team-a-*.git
                    https://git.example.com/team-a/*
                    https://git.example.com/shared/charts
Denied Repos:       https://git.example.com/team-a/secrets
Destinations:       https://kubernetes.default.svc (team-a)
                    in-cluster (team-a-*)
                    * (not kube-system)
Source Namespaces:  team-a
                    team-a-*
Cluster Allowed:    Namespace named team-a-*
Cluster Denied:     none
Namespaced Allowed: all kinds
Namespaced Denied:  ResourceQuota
                    NetworkPolicy.networking.k8s.io
Service Accounts:   https://kubernetes.default.svc (team-a*) as deployer

APPLICATION     SYNC         HEALTH
team-a/web      ✔ Synced     ✔ Healthy
team-a-dev/api  ⚠ OutOfSync  ◌ Progressing

Refused (their namespace is not in sourceNamespaces, so they are not synced):
  other/intruder
"
        );
    }

    #[test]
    fn proj_get_spells_out_what_absent_and_empty_lists_mean() {
        let bare: AppProject = serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "AppProject",
            "metadata": {"name": "locked", "namespace": "sluice"},
            "spec": {
                "clusterResourceWhitelist": [],
                "clusterResourceBlacklist": [],
                "namespaceResourceWhitelist": []
            }
        }))
        .unwrap();
        assert_eq!(
            render_project(&bare, &[], Style::PLAIN),
            "\
Name:               sluice/locked
Description:        -
Source Repos:       none (no repository is allowed)
Denied Repos:       none
Destinations:       none (no destination is allowed)
Source Namespaces:  none (only Applications in namespace sluice)
Cluster Allowed:    no cluster-scoped kinds
Cluster Denied:     none
Namespaced Allowed: no namespaced kinds
Namespaced Denied:  none
Service Accounts:   none (syncs run as the controller)

No Applications use this project.
"
        );
    }

    #[test]
    fn an_empty_project_name_on_an_application_means_default() {
        let (projects, apps) = fixture();
        let default = project(&projects, "default");
        let users = project_apps(&default, &apps);
        let names: Vec<_> = users
            .permitted
            .iter()
            .map(|a| a.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["ops", "shop"]);
        assert!(users.refused.is_empty());
    }

    #[test]
    fn proj_get_colours_only_the_status_icons() {
        let (projects, apps) = fixture();
        let text = render_project(&project(&projects, "team-a"), &apps, Style { color: true });
        assert!(
            text.contains("team-a/web      \x1b[32m✔\x1b[0m Synced     \x1b[32m✔\x1b[0m Healthy\n"),
            "{text}"
        );
        assert_eq!(
            strip_ansi(&text),
            render_project(&project(&projects, "team-a"), &apps, Style::PLAIN)
        );
    }
}

#[test]
fn app_get_shows_argo_cds_info_notes() {
    let mut app = application();
    app.spec.info = serde_json::from_value(serde_json::json!([
        {"name": "Owner", "value": "team-shop"},
        {"name": "Runbook", "value": "https://runbooks.example.com/shop"}
    ]))
    .unwrap();
    let text = render_app(&app, Style::PLAIN);
    assert!(
        text.contains(
            "SyncPolicy:         Automated (Prune, SelfHeal)\nInfo:               Owner: team-shop\n                    Runbook: https://runbooks.example.com/shop\nSync Status:"
        ),
        "{text}"
    );
}
