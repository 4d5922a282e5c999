//! The chart rendered by the real `helm template`: RBAC against what the code calls, the Deployment's
//! flags against what the binary accepts, CRDs against `crds/`, and the dashboard.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::common::E2eEnv;
use crate::helm::{chart_dir, documents, helm, of_kind, only, repo_dir, success, template};
use crate::promql::metric_names;
use crate::rbac::{
    CLUSTER_SCOPED, CONTROLLERS, GITOPS, GITOPS_IMPERSONATION, Grant, Scope, allows,
    assert_allowed, expected, grants, in_scope, lease_grants,
};

const NS: &str = "sluice-system";
const SA: &str = "rel-sluice";

/// The cluster-wide grants of an install with `values` are exactly `needs`, and only the leader Lease
/// is namespaced.
fn assert_grants_exactly(values: &[&str], needs: &[&[crate::rbac::Need]]) {
    let objects = template(NS, values, &[]);
    let granted = grants(&objects, NS, SA);
    let cluster = Scope::Cluster;
    assert_allowed(&granted, &cluster, needs);
    let want = expected(&cluster, needs);
    let cluster_wide = in_scope(&granted, &cluster);
    let extra: Vec<&Grant> = cluster_wide.difference(&want).collect();
    assert!(
        extra.is_empty(),
        "{values:?}: granted but never called (least privilege): {extra:#?}"
    );
    let missing: Vec<&Grant> = want.difference(&cluster_wide).collect();
    assert!(missing.is_empty(), "{values:?}: not granted: {missing:#?}");
    let namespaced = in_scope(&granted, &Scope::Namespace(NS.into()));
    assert_eq!(
        namespaced,
        lease_grants(NS),
        "only the leader Lease is namespaced"
    );
}

#[test]
fn cluster_role_grants_exactly_what_the_controllers_call() {
    // The default: sync impersonation, the GitOps core not cluster admin.
    assert_grants_exactly(
        &[],
        &[CONTROLLERS, CLUSTER_SCOPED, GITOPS, GITOPS_IMPERSONATION],
    );
    assert_grants_exactly(
        &[
            "gitops.syncImpersonation=false",
            "gitops.clusterAdmin=false",
        ],
        &[CONTROLLERS, CLUSTER_SCOPED, GITOPS],
    );
}

/// Under sync impersonation the GitOps core's own role writes nothing but Sluice's objects: every
/// other write goes through `impersonate`.
#[test]
fn with_sync_impersonation_the_gitops_role_writes_only_sluices_objects() {
    let objects = template(NS, &[], &[]);
    let gitops_role: Vec<Value> = objects
        .iter()
        .filter(|o| o["metadata"]["name"] == "rel-sluice-gitops")
        .cloned()
        .collect();
    assert_eq!(gitops_role.len(), 2, "the ClusterRole and its binding");
    let granted = grants(&gitops_role, NS, SA);
    assert!(!granted.is_empty());
    let writes: Vec<&Grant> = granted
        .iter()
        .filter(|g| !["get", "list", "watch"].contains(&g.verb.as_str()))
        .filter(|g| g.group != "sluice.dev")
        .filter(|g| !(g.resource == "serviceaccounts" && g.verb == "impersonate"))
        .collect();
    assert!(
        writes.is_empty(),
        "writes outside Sluice's objects: {writes:#?}"
    );
    let cluster = Scope::Cluster;
    assert!(allows(
        &granted,
        &cluster,
        "anything.example",
        "widgets",
        "watch"
    ));
    assert!(!allows(&granted, &cluster, "", "configmaps", "patch"));
    assert!(allows(
        &granted,
        &cluster,
        "",
        "serviceaccounts",
        "impersonate"
    ));
    let args = container(&objects)["args"].clone();
    assert!(
        args.as_array()
            .into_iter()
            .flatten()
            .any(|a| a == "--sync-impersonation"),
        "{args}"
    );
}

#[test]
fn gitops_cluster_admin_follows_sync_impersonation_unless_set() {
    let cluster = Scope::Cluster;
    let admin = |values: &[&str]| {
        allows(
            &grants(&template(NS, values, &[]), NS, SA),
            &cluster,
            "anything.example",
            "widgets",
            "deletecollection",
        )
    };
    assert!(!admin(&[]), "not cluster admin with sync impersonation");
    assert!(admin(&["gitops.clusterAdmin=true"]), "asked for");
    assert!(
        admin(&["gitops.syncImpersonation=false"]),
        "without impersonation, cluster admin by default as before"
    );
    let without = template(NS, &["gitops.syncImpersonation=false"], &[]);
    assert_allowed(
        &grants(&without, NS, SA),
        &cluster,
        &[CONTROLLERS, CLUSTER_SCOPED, GITOPS],
    );
    assert!(
        !container(&without)["args"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a == "--sync-impersonation")
    );

    let listed = grants(
        &template(
            NS,
            &[
                "gitops.syncImpersonation=false",
                "gitops.clusterAdmin=false",
                "gitops.resources[0].apiGroups={apps}",
                "gitops.resources[0].resources={deployments,statefulsets}",
                "gitops.resources[1].apiGroups={}",
                "gitops.resources[1].resources={configmaps}",
                "gitops.resources[1].verbs={get,list,watch}",
            ],
            &[],
        ),
        NS,
        SA,
    );
    for verb in ["get", "list", "watch", "create", "patch", "delete"] {
        assert!(
            allows(&listed, &cluster, "apps", "statefulsets", verb),
            "{verb} statefulsets"
        );
    }
    assert!(allows(&listed, &cluster, "", "configmaps", "watch"));
    assert!(
        !allows(&listed, &cluster, "", "configmaps", "delete"),
        "per-entry verbs win"
    );
    // (Not batch/jobs: the analysis controller creates Jobs for `job` metrics.)
    assert!(
        !allows(&listed, &cluster, "", "persistentvolumeclaims", "create"),
        "kinds not listed"
    );
    assert!(
        !allows(&listed, &cluster, "", "serviceaccounts", "impersonate"),
        "no impersonation without it"
    );
}

#[test]
fn watch_namespace_turns_the_rules_into_roles_in_it() {
    let objects = template(NS, &["watchNamespace=team-a"], &[]);
    let granted = grants(&objects, NS, SA);
    let team = Scope::Namespace("team-a".into());
    let needs = [CONTROLLERS, GITOPS, GITOPS_IMPERSONATION];
    assert_allowed(&granted, &team, &needs);
    let mut want = expected(&team, &needs);
    want.extend(lease_grants("team-a"));
    assert_eq!(
        in_scope(&granted, &team),
        want,
        "the watched namespace's Roles"
    );
    assert_eq!(
        in_scope(&granted, &Scope::Cluster),
        expected(&Scope::Cluster, &[CLUSTER_SCOPED]),
        "only cluster-scoped reads stay cluster-wide"
    );
    assert!(in_scope(&granted, &Scope::Namespace(NS.into())).is_empty());

    let admin = grants(
        &template(
            NS,
            &["watchNamespace=team-a", "gitops.clusterAdmin=true"],
            &[],
        ),
        NS,
        SA,
    );
    assert!(allows(&admin, &team, "apps", "deployments", "delete"));
    assert!(!allows(
        &admin,
        &Scope::Cluster,
        "apps",
        "deployments",
        "delete"
    ));
}

#[test]
fn without_leader_election_there_is_no_lease_role() {
    let objects = template(NS, &["replicaCount=1", "leaderElect=false"], &[]);
    let granted = grants(&objects, NS, SA);
    assert!(in_scope(&granted, &Scope::Namespace(NS.into())).is_empty());
    let args = container(&objects)["args"].clone();
    assert!(
        !args
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a == "--leader-elect")
    );
}

fn container(objects: &[Value]) -> &Value {
    &only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

#[test]
fn deployment_runs_the_controller_as_documented() {
    let objects = template(NS, &[], &[]);
    let deployment = only(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], SA);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    let c = container(&objects);
    assert_eq!(c["image"], format!("sluice:{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(
        c["args"],
        json!([
            "controller",
            "--leader-elect",
            "--metrics-addr=0.0.0.0:8090",
            "--webhook-addr=0.0.0.0:8091",
            "--git-cache-dir=/var/cache/sluice",
            "--git-author=Sluice <sluice@localhost>",
            "--repo-poll-interval=60s",
            "--sync-impersonation"
        ])
    );
    assert_eq!(
        env_value(c, "POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    // The Git cache and HOME (helm's caches) are the only writable paths, both emptyDirs.
    let mounts: BTreeSet<(String, String)> = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().into(),
                m["mountPath"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        BTreeSet::from([
            ("git-cache".into(), "/var/cache/sluice".into()),
            ("tmp".into(), "/tmp".into())
        ])
    );
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        assert!(volume["emptyDir"].is_object(), "{volume}");
    }
}

#[test]
fn values_become_flags_env_and_scheduling() {
    let objects = template(
        NS,
        &[
            "prometheusUrl=http://prometheus.monitoring:9090",
            "gitAuthor=Release Bot <bot@example.org>",
            "repoPollInterval=2m",
            "watchNamespace=team-a",
            "logLevel=debug",
            "logFormat=text",
            "image.repository=registry.example/sluice",
            "image.tag=9.9.9",
            "nodeSelector.pool=system",
            "tolerations[0].key=dedicated",
            "tolerations[0].operator=Exists",
            "resources.limits.memory=1Gi",
            "webhook.secret.name=hooks",
        ],
        &[],
    );
    let c = container(&objects);
    let args: Vec<&str> = c["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for flag in [
        "--prometheus-url=http://prometheus.monitoring:9090",
        "--git-author=Release Bot <bot@example.org>",
        "--repo-poll-interval=2m",
        "--namespace=team-a",
    ] {
        assert!(args.contains(&flag), "{flag} missing from {args:?}");
    }
    assert_eq!(env_value(c, "RUST_LOG")["value"], "debug");
    assert_eq!(env_value(c, "SLUICE_LOG_FORMAT")["value"], "text");
    for (var, key) in [
        ("SLUICE_WEBHOOK_GITHUB_SECRET", "github"),
        ("SLUICE_WEBHOOK_GITLAB_SECRET", "gitlab"),
    ] {
        let from = &env_value(c, var)["valueFrom"]["secretKeyRef"];
        assert_eq!(
            (&from["name"], &from["key"]),
            (&json!("hooks"), &json!(key)),
            "{var}"
        );
    }
    assert_eq!(c["image"], "registry.example/sluice:9.9.9");
    assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
    let pod = &only(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"], json!({"pool": "system"}));
    assert_eq!(
        pod["tolerations"],
        json!([{"key": "dedicated", "operator": "Exists"}])
    );
}

/// Each flag and SLUICE_ variable the chart sets is one `sluice controller` knows.
#[test]
fn the_binary_accepts_every_flag_and_variable_the_chart_sets() {
    let objects = template(
        NS,
        &["prometheusUrl=http://p:9090", "watchNamespace=team-a"],
        &[],
    );
    let c = container(&objects);
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["controller", "--help"])
        .output()
        .expect("run sluice controller --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let args = c["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    for flag in args.filter(|a| a.starts_with("--")) {
        let name = flag.split('=').next().unwrap_or(flag);
        assert!(
            mentions_flag(&help, name),
            "{name} is not a flag of sluice controller:\n{help}"
        );
    }
    let global_help = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--help")
        .output()
        .expect("run sluice --help");
    let all_help = format!("{help}{}", String::from_utf8_lossy(&global_help.stdout));
    for var in c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
    {
        if var.starts_with("SLUICE_") {
            assert!(
                all_help.contains(&format!("env: {var}")),
                "{var} is not read by sluice"
            );
        }
    }
}

/// `name` appears in `help` as a whole flag (not as the prefix of a longer one).
fn mentions_flag(help: &str, name: &str) -> bool {
    help.match_indices(name).any(|(at, _)| {
        let next = help[at + name.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

#[test]
fn services_monitor_and_webhook_ingress() {
    let objects = template(
        NS,
        &[
            "metrics.serviceMonitor.enabled=true",
            "webhook.ingress.enabled=true",
            "webhook.ingress.host=hooks.example.org",
        ],
        &[],
    );
    let services = of_kind(&objects, "Service");
    let port_of = |name: &str| {
        services
            .iter()
            .find(|s| s["metadata"]["name"] == name)
            .map(|s| s["spec"]["ports"][0]["port"].clone())
            .unwrap_or_else(|| panic!("no Service {name}"))
    };
    assert_eq!(port_of("rel-sluice-metrics"), 8090);
    assert_eq!(port_of("rel-sluice-webhook"), 8091);
    let monitor = only(&objects, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let ingress = only(&objects, "Ingress");
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "hooks.example.org");
    assert_eq!(rule["http"]["paths"][0]["path"], "/api/webhook");
    assert_eq!(
        rule["http"]["paths"][0]["backend"]["service"]["name"],
        "rel-sluice-webhook"
    );

    let defaults = template(NS, &[], &[]);
    assert!(
        of_kind(&defaults, "ServiceMonitor").is_empty(),
        "ServiceMonitor is off by default"
    );
    assert!(
        of_kind(&defaults, "Ingress").is_empty(),
        "Ingress is off by default"
    );
    assert!(
        of_kind(&defaults, "ConfigMap").is_empty(),
        "dashboard is off by default"
    );
}

#[test]
fn helm_lint_is_clean_with_defaults_and_every_option() {
    let env = E2eEnv::load();
    let chart = chart_dir().display().to_string();
    for sets in [
        vec![],
        vec!["--set", "gitops.syncImpersonation=false"],
        vec![
            "--set",
            "watchNamespace=team-a",
            "--set",
            "gitops.clusterAdmin=true",
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "webhook.ingress.enabled=true",
            "--set",
            "dashboards.enabled=true",
            "--set",
            "prometheusUrl=http://p:9090",
        ],
    ] {
        let mut args = vec!["lint", "--strict", chart.as_str()];
        args.extend(sets);
        let out = success("helm lint", helm(&env, &args));
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "{out}"
        );
    }
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let text = std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("read Chart.yaml");
    let chart: Value = serde_saphyr::from_str(&text).expect("parse Chart.yaml");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

fn yaml_files(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, std::fs::read_to_string(&p).expect("read CRD"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn chart_crds_equal_the_repository_crds() {
    let repo = yaml_files(&repo_dir().join("crds"));
    let chart = yaml_files(&chart_dir().join("crds"));
    assert!(!repo.is_empty());
    assert!(
        chart == repo,
        "charts/sluice/crds/ differs from crds/: run `make crds`"
    );

    // And what helm installs from them is the same objects.
    let rendered: Vec<Value> = of_kind(
        &template(NS, &[], &["--include-crds"]),
        "CustomResourceDefinition",
    )
    .into_iter()
    .cloned()
    .collect();
    let mut want: Vec<Value> = repo.iter().flat_map(|(_, text)| documents(text)).collect();
    let key = |v: &Value| {
        v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let mut got = rendered;
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!(g == w, "rendered CRD {} differs from crds/", key(w));
    }
}

/// Every metric family the dashboard may show, as the controller exposes them.
const FAMILIES: &[&str] = &[
    "sluice_rollout_info",
    "sluice_rollout_reconcile_duration_seconds",
    "sluice_analysis_run_metric_phase",
    "sluice_analysis_measurement_value",
    "sluice_application_info",
    "sluice_application_sync_total",
    "sluice_git_requests_total",
    "sluice_git_request_duration_seconds",
    "sluice_git_reverts_total",
    "sluice_notifications_total",
    "sluice_kube_requests_total",
    "sluice_leader",
    "sluice_build_info",
];
const HISTOGRAMS: &[&str] = &[
    "sluice_rollout_reconcile_duration_seconds",
    "sluice_git_request_duration_seconds",
];

/// The family a sample name belongs to: itself, or a histogram's `_bucket`/`_sum`/`_count` series.
fn family_of(name: &str) -> Option<&'static str> {
    FAMILIES.iter().copied().find(|f| *f == name).or_else(|| {
        HISTOGRAMS.iter().copied().find(|h| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name == format!("{h}{s}"))
        })
    })
}

/// Every PromQL expression of the dashboard: panel targets and the query variables.
fn expressions(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_exprs(&dashboard["panels"], &mut out);
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] == "query" {
            let query = var["query"]["query"]
                .as_str()
                .or(var["query"].as_str())
                .unwrap_or_default();
            // Grafana's label_values(metric, label): only the first argument is PromQL.
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map_or(query, |(metric, _)| metric);
            out.push(inner.to_string());
        }
    }
    out
}

fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(expr) = map.get("expr").and_then(Value::as_str) {
                out.push(expr.to_string());
            }
            map.values().for_each(|v| collect_exprs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn dashboard_queries_only_sluice_metric_families_and_shows_them_all() {
    let path = chart_dir().join("dashboards/sluice.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "sluice");
    let exprs = expressions(&dashboard);
    assert!(exprs.len() > 10, "{exprs:?}");
    let mut shown = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr} selects no metric");
        for name in names {
            let family = family_of(&name)
                .unwrap_or_else(|| panic!("{expr}: {name} is not a Sluice metric family"));
            shown.insert(family);
        }
    }
    let missing: Vec<&&str> = FAMILIES.iter().filter(|f| !shown.contains(**f)).collect();
    assert!(
        missing.is_empty(),
        "families the dashboard never shows: {missing:?}"
    );
}

#[test]
fn dashboard_config_map_carries_the_dashboard_for_grafana() {
    let objects = template(NS, &["dashboards.enabled=true"], &[]);
    let config_map = only(&objects, "ConfigMap");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped =
        std::fs::read_to_string(chart_dir().join("dashboards/sluice.json")).expect("read");
    let data = config_map["data"]["sluice.json"]
        .as_str()
        .expect("dashboard data");
    let parsed: Value = serde_json::from_str(data).expect("the ConfigMap holds JSON");
    assert_eq!(
        parsed,
        serde_json::from_str::<Value>(&shipped).expect("JSON")
    );
}
