//! What the chart's ServiceAccount may do, read from the rendered (Cluster)Roles and their bindings, and
//! what the controllers call, listed from the code.

use std::collections::BTreeSet;

use serde_json::Value;

/// Where a grant applies: every namespace (ClusterRoleBinding) or one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Cluster,
    Namespace(String),
}

/// One (group, resource, verb) the ServiceAccount is granted, possibly limited to one object name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub scope: Scope,
    pub group: String,
    pub resource: String,
    pub verb: String,
    pub name: Option<String>,
}

/// A call the controllers make: API group, resource (or `resource/subresource`), verbs, and where.
pub struct Need {
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub source: &'static str,
}

const fn need(
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
    source: &'static str,
) -> Need {
    Need {
        group,
        resource,
        verbs,
        source,
    }
}

/// The Rollout and analysis controllers' calls on namespaced resources. Watches (`watcher`,
/// `reflector`, `Controller::new/owns/watches`) are list + watch; `Patch::Apply` and `Patch::Merge`
/// are patch; `replace_status` is update on the status subresource; kube's event `Recorder` creates
/// events.k8s.io Events and patches them when they repeat.
pub const CONTROLLERS: &[Need] = &[
    need(
        "sluice.dev",
        "rollouts",
        &["list", "watch"],
        "src/rollout/controller.rs: Controller::new(Api<Rollout>)",
    ),
    need(
        "sluice.dev",
        "rollouts/status",
        &["update"],
        "src/rollout/act.rs: write_status -> replace_status",
    ),
    need(
        "sluice.dev",
        "rollouts/finalizers",
        &["update"],
        "src/rollout/replicasets.rs: rollout_owner_reference sets blockOwnerDeletion (OwnerReferencesPermissionEnforcement)",
    ),
    need(
        "apps",
        "replicasets",
        &["list", "watch"],
        "src/rollout/controller.rs: reflector(watcher(ReplicaSet))",
    ),
    need(
        "apps",
        "replicasets",
        &["create", "patch", "delete"],
        "src/rollout/act.rs: create_replica_set, scale_replica_set (apply), SetScaleDownDeadline/SetReplicaSetRevision (merge), DeleteReplicaSet",
    ),
    need(
        "apps",
        "replicasets",
        &["get"],
        "src/rollout/act.rs: stable_replica_set (an experiment step's specRef: stable template)",
    ),
    need(
        "sluice.dev",
        "experiments",
        &["list", "watch"],
        "src/rollout/controller.rs: reflector(watcher(Experiment)); src/experiment/controller.rs: Controller::for_stream",
    ),
    need(
        "sluice.dev",
        "experiments",
        &["create", "patch"],
        "src/rollout/act.rs: CreateExperiment, TerminateExperiment (merge)",
    ),
    need(
        "sluice.dev",
        "experiments/status",
        &["update"],
        "src/experiment/act.rs: write_status -> replace_status",
    ),
    need(
        "",
        "services",
        &["create", "delete"],
        "src/experiment/act.rs: CreateService, DeleteService (templates[].service)",
    ),
    need(
        "sluice.dev",
        "experiments/finalizers",
        &["update"],
        "src/experiment/act.rs: ownerReferences with blockOwnerDeletion on ReplicaSets and AnalysisRuns",
    ),
    need(
        "apps",
        "deployments",
        &["get"],
        "src/rollout/controller.rs: current_template reads the workloadRef",
    ),
    need(
        "apps",
        "deployments",
        &["list", "watch"],
        "src/rollout/controller.rs: .watches(Api<Deployment>)",
    ),
    need(
        "apps",
        "deployments",
        &["patch"],
        "src/rollout/act.rs: scale_workload (apply)",
    ),
    need(
        "",
        "services",
        &["list", "watch"],
        "src/rollout/controller.rs: reflector(watcher(Service))",
    ),
    need(
        "",
        "services",
        &["get", "patch"],
        "src/rollout/act.rs: set_service_selector (get, then apply of the whole selector)",
    ),
    need(
        "",
        "pods",
        &["list", "watch"],
        "src/rollout/controller.rs: reflector(watcher(Pod)) with the hash label",
    ),
    need(
        "",
        "pods/eviction",
        &["create"],
        "src/rollout/act.rs: evict_pod",
    ),
    need(
        "gateway.networking.k8s.io",
        "httproutes",
        &["get", "patch"],
        "src/rollout/act.rs: set_canary_weight read_live + write_traffic Apply (traffic/gateway.rs)",
    ),
    need(
        "networking.k8s.io",
        "ingresses",
        &["get", "patch", "delete"],
        "src/rollout/act.rs: set_canary_weight read_live + write_traffic Apply/Delete (traffic/nginx.rs)",
    ),
    need(
        "networking.k8s.io",
        "ingresses",
        &["create"],
        "src/rollout/traffic/nginx.rs: the canary Ingress is created by that apply",
    ),
    need(
        "networking.istio.io",
        "virtualservices",
        &["get", "patch"],
        "src/rollout/act.rs: set_canary_weight read_live + write_traffic Apply (traffic/istio.rs; also controller.rs traffic_reference_error)",
    ),
    need(
        "networking.istio.io",
        "destinationrules",
        &["get", "patch"],
        "src/rollout/act.rs: set_canary_weight read_live + write_traffic Apply (traffic/istio.rs subsets)",
    ),
    need(
        "split.smi-spec.io",
        "trafficsplits",
        &["get", "patch", "create"],
        "src/rollout/act.rs: set_canary_weight read_live + write_traffic Apply, which creates it (traffic/smi.rs)",
    ),
    need(
        "traefik.io",
        "traefikservices",
        &["get", "patch"],
        "src/rollout/act.rs: set_canary_weight read_live + write_traffic Apply (traffic/traefik.rs)",
    ),
    need(
        "getambassador.io",
        "mappings",
        &["get", "create", "patch", "delete"],
        "src/rollout/act.rs: set_canary_weight read_live + write_traffic Apply (which creates the canary Mapping) / Delete (traffic/ambassador.rs)",
    ),
    need(
        "apisix.apache.org",
        "apisixroutes",
        &["get", "patch"],
        "src/rollout/act.rs: set_canary_weight read_live + write_traffic Apply (traffic/apisix.rs)",
    ),
    need(
        "sluice.dev",
        "analysisruns",
        &["list", "watch"],
        "src/rollout/controller.rs: reflector(watcher(AnalysisRun)); src/analysis/controller.rs: Controller::new",
    ),
    need(
        "sluice.dev",
        "analysisruns",
        &["create", "patch", "delete"],
        "src/rollout/act.rs: CreateAnalysisRun, TerminateAnalysisRun (merge), DeleteAnalysisRun",
    ),
    need(
        "sluice.dev",
        "analysisruns/status",
        &["patch"],
        "src/analysis/controller.rs: write_status -> patch_status (apply)",
    ),
    need(
        "batch",
        "jobs",
        &["create", "get", "delete"],
        "src/analysis/provider/job.rs: start (create, get on a name clash), observe (get), delete (terminate, collect_garbage)",
    ),
    need(
        "batch",
        "jobs",
        &["list", "watch"],
        "src/analysis/controller.rs: metadata_watcher(Job) labelled analysisrun.argoproj.io/uid; src/analysis/provider/job.rs: collect_garbage (list_metadata)",
    ),
    need(
        "sluice.dev",
        "analysisruns/finalizers",
        &["update"],
        "src/analysis/provider/job.rs: build_job sets blockOwnerDeletion on the Job's owner reference (OwnerReferencesPermissionEnforcement)",
    ),
    need(
        "sluice.dev",
        "analysistemplates",
        &["list", "watch"],
        "src/rollout/template_stores.rs: reflector(watcher(AnalysisTemplate))",
    ),
    need(
        "",
        "secrets",
        &["get"],
        "src/analysis/controller.rs: observe_args (secretKeyRef); src/analysis/provider/prometheus.rs: secret",
    ),
    need(
        "events.k8s.io",
        "events",
        &["create", "patch"],
        "src/rollout/act.rs: record -> kube Recorder::publish",
    ),
    need(
        "sluice.dev",
        "rollouts",
        &["patch"],
        "src/notifications/controller.rs: write_record (merge patch of the record annotation)",
    ),
    need(
        "",
        "configmaps",
        &["list", "watch"],
        "src/notifications/controller.rs: watcher(ConfigMap sluice-notifications) of the control namespace",
    ),
];

/// Cluster-scoped reads, granted cluster-wide even when the controller watches one namespace.
pub const CLUSTER_SCOPED: &[Need] = &[need(
    "sluice.dev",
    "clusteranalysistemplates",
    &["list", "watch"],
    "src/rollout/template_stores.rs: reflector(watcher(ClusterAnalysisTemplate)), cluster-wide",
)];

/// The GitOps core without cluster admin (`gitops.clusterAdmin: false`), before the kinds the user lists
/// (what Applications apply, prune and watch: dynamic, so listed by the user).
pub const GITOPS: &[Need] = &[
    need(
        "sluice.dev",
        "applications",
        &["list", "watch"],
        "src/gitops/controller.rs: Controller::new(Api<Application>)",
    ),
    need(
        "sluice.dev",
        "applications",
        &["get", "patch"],
        "src/gitops/app_writes.rs: re-read after a status conflict; operation, automated, finalizers (merge/json patch); src/revert/controller.rs: get, refresh annotation",
    ),
    need(
        "sluice.dev",
        "applications/status",
        &["patch"],
        "src/gitops/app_writes.rs: patch_status; src/revert/controller.rs: revert, quarantinedRevisions, RevertFailed",
    ),
    need(
        "sluice.dev",
        "applicationsets",
        &["get", "list", "watch"],
        "src/appset/controller.rs: Controller::for_stream(watcher(Api<ApplicationSet>)) of the control namespace",
    ),
    need(
        "sluice.dev",
        "applicationsets/status",
        &["patch"],
        "src/appset/controller.rs: write_status (Patch::Apply on the status)",
    ),
    need(
        "sluice.dev",
        "applicationsets/finalizers",
        &["update"],
        "src/appset/plan.rs: generated Applications' blockOwnerDeletion ownerReference",
    ),
    need(
        "sluice.dev",
        "applications",
        &["create", "delete"],
        "src/appset/controller.rs: act (Patch::Apply creating generated Applications, delete when no longer generated)",
    ),
    need(
        "sluice.dev",
        "appprojects",
        &["get", "list", "watch", "create"],
        "src/gitops/controller.rs: watcher(Api<AppProject>) of the control namespace; src/gitops/projects.rs: ensure_default_project",
    ),
    need(
        "",
        "secrets",
        &["list", "watch"],
        "src/gitops/controller.rs: watcher(Secret) labelled sluice.dev/secret-type (repository credentials); src/revert/controller.rs: list for the push",
    ),
    need(
        "",
        "configmaps",
        &["list", "watch"],
        "src/gitops/controller.rs: watcher(ConfigMap sluice-health) of the control namespace (health rules)",
    ),
];

/// The GitOps core's own calls under sync impersonation (`gitops.syncImpersonation`, the default):
/// reads for its caches, and every write of a sync as the project's ServiceAccount.
pub const GITOPS_IMPERSONATION: &[Need] = &[
    need(
        "*",
        "*",
        &["get", "list", "watch"],
        "src/gitops/live.rs: watch caches of the kinds Applications deploy; src/gitops/apply.rs: a wave's health, CRD Established, whether a namespace exists (Applier::reader)",
    ),
    need(
        "",
        "serviceaccounts",
        &["impersonate"],
        "src/gitops/impersonation.rs: Impersonator::client_for (dry run, apply, prune, CreateNamespace, cascade delete)",
    ),
];

/// src/leader.rs: `leases.create` when the Lease is missing, else `get_opt` + `replace` by name.
pub const LEASE_NAME: &str = "sluice-controller";

/// Every grant the ServiceAccount `namespace/name` receives through the rendered bindings.
pub fn grants(objects: &[Value], namespace: &str, name: &str) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for binding in objects
        .iter()
        .filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some("RoleBinding" | "ClusterRoleBinding")
            )
        })
        .filter(|b| binds(b, namespace, name))
    {
        let scope = match binding["kind"].as_str() {
            Some("ClusterRoleBinding") => Scope::Cluster,
            _ => Scope::Namespace(str_of(&binding["metadata"]["namespace"])),
        };
        let role = role_of(objects, binding);
        for rule in role["rules"].as_array().into_iter().flatten() {
            add_rule(&mut out, &scope, rule);
        }
    }
    out
}

fn binds(binding: &Value, namespace: &str, name: &str) -> bool {
    binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["kind"] == "ServiceAccount" && s["name"] == name && s["namespace"] == namespace)
}

/// The (Cluster)Role a binding refers to; a RoleBinding's Role is in the binding's namespace.
fn role_of<'a>(objects: &'a [Value], binding: &Value) -> &'a Value {
    let kind = &binding["roleRef"]["kind"];
    let name = &binding["roleRef"]["name"];
    objects
        .iter()
        .find(|o| {
            &o["kind"] == kind
                && &o["metadata"]["name"] == name
                && (kind == "ClusterRole"
                    || o["metadata"]["namespace"] == binding["metadata"]["namespace"])
        })
        .unwrap_or_else(|| {
            panic!(
                "binding {} refers to a {kind} {name} the chart does not render",
                binding["metadata"]["name"]
            )
        })
}

fn add_rule(out: &mut BTreeSet<Grant>, scope: &Scope, rule: &Value) {
    let list = |key: &str| -> Vec<String> {
        rule[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(str_of)
            .collect()
    };
    let names: Vec<Option<String>> = match list("resourceNames") {
        names if names.is_empty() => vec![None],
        names => names.into_iter().map(Some).collect(),
    };
    for group in list("apiGroups") {
        for resource in list("resources") {
            for verb in list("verbs") {
                for name in &names {
                    out.insert(Grant {
                        scope: scope.clone(),
                        group: group.clone(),
                        resource: resource.clone(),
                        verb: verb.clone(),
                        name: name.clone(),
                    });
                }
            }
        }
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Whether some grant in `scope` allows `verb` on every object of `group`/`resource` (wildcards count).
pub fn allows(
    grants: &BTreeSet<Grant>,
    scope: &Scope,
    group: &str,
    resource: &str,
    verb: &str,
) -> bool {
    grants.iter().any(|g| {
        &g.scope == scope
            && g.name.is_none()
            && (g.group == group || g.group == "*")
            && (g.resource == resource || g.resource == "*")
            && (g.verb == verb || g.verb == "*")
    })
}

/// The exact grants `needs` make in `scope` (no wildcard, no name).
pub fn expected(scope: &Scope, needs: &[&[Need]]) -> BTreeSet<Grant> {
    needs
        .iter()
        .flat_map(|list| list.iter())
        .flat_map(|n| {
            n.verbs.iter().map(move |verb| Grant {
                scope: scope.clone(),
                group: n.group.to_string(),
                resource: n.resource.to_string(),
                verb: verb.to_string(),
                name: None,
            })
        })
        .collect()
}

/// Fails with each missing need and where the code makes that call.
pub fn assert_allowed(grants: &BTreeSet<Grant>, scope: &Scope, needs: &[&[Need]]) {
    let missing: Vec<String> = needs
        .iter()
        .flat_map(|list| list.iter())
        .flat_map(|n| n.verbs.iter().map(move |v| (n, *v)))
        .filter(|(n, verb)| !allows(grants, scope, n.group, n.resource, verb))
        .map(|(n, verb)| format!("{verb} {}/{} ({})", n.group, n.resource, n.source))
        .collect();
    assert!(
        missing.is_empty(),
        "the chart does not grant, in {scope:?}:\n{}",
        missing.join("\n")
    );
}

/// The grants in `scope`.
pub fn in_scope(grants: &BTreeSet<Grant>, scope: &Scope) -> BTreeSet<Grant> {
    grants
        .iter()
        .filter(|g| &g.scope == scope)
        .cloned()
        .collect()
}

/// The Lease grants src/leader.rs needs in `namespace`.
pub fn lease_grants(namespace: &str) -> BTreeSet<Grant> {
    let grant = |verb: &str, name: Option<&str>| Grant {
        scope: Scope::Namespace(namespace.to_string()),
        group: "coordination.k8s.io".into(),
        resource: "leases".into(),
        verb: verb.into(),
        name: name.map(str::to_string),
    };
    BTreeSet::from([
        grant("create", None),
        grant("get", Some(LEASE_NAME)),
        grant("update", Some(LEASE_NAME)),
    ])
}
