//! What an `AppProject` allows, as pure functions with Argo CD's semantics: a source repository, a
//! destination, an Application's own namespace, a kind (cluster-scoped or namespaced), and the
//! ServiceAccount a sync impersonates. Every refusal names the rule that refused, so the Application's
//! condition can say why.

use globset::GlobBuilder;

use crate::api::application::{Application, IN_CLUSTER_NAME, IN_CLUSTER_SERVER};
use crate::api::project::{AppProjectSpec, DestinationServiceAccount, ProjectResource};

/// Why a project refuses something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectViolation {
    #[error("repository {repo} is not permitted by project {project}'s sourceRepos")]
    SourceRepo { project: String, repo: String },
    #[error(
        "destination server {server:?} name {name:?} namespace {namespace:?} is not permitted by project {project}'s destinations"
    )]
    Destination {
        project: String,
        server: String,
        name: String,
        namespace: String,
    },
    #[error(
        "Applications in namespace {namespace} may not use project {project}: it is not the control namespace and not in the project's sourceNamespaces"
    )]
    SourceNamespace { project: String, namespace: String },
    #[error("{scope} kind {group_kind} ({name}) is not permitted by project {project}'s {rule}")]
    Kind {
        project: String,
        scope: &'static str,
        group_kind: String,
        name: String,
        rule: &'static str,
    },
    #[error(
        "project {project} has destinationServiceAccounts but none matches server {server:?} namespace {namespace:?}"
    )]
    NoServiceAccount {
        project: String,
        server: String,
        namespace: String,
    },
}

/// A project by name, with its rules.
#[derive(Debug, Clone, Copy)]
pub struct Project<'a> {
    pub name: &'a str,
    pub spec: &'a AppProjectSpec,
}

/// The destination an Application (or one of its objects) is deployed to.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub server: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
}

/// A rendered object's kind, scope and name, as a project rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct ObjectKind<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub namespaced: bool,
}

/// A ServiceAccount to impersonate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

impl Project<'_> {
    /// Argo CD's `IsSourcePermitted`: some pattern allows the URL and no `!` pattern denies it. URLs
    /// compare normalised (case, `.git` suffix, trailing `/`); `*` does not cross a `/`, `**` does.
    pub fn check_source_repo(&self, repo: &str) -> Result<(), ProjectViolation> {
        let repo_normalized = normalize_repo_url(repo);
        let mut allowed = false;
        for pattern in &self.spec.source_repos {
            let (deny, body) = split_deny(pattern);
            let matched =
                pattern == "*" || glob_match(&normalize_repo_url(body), &repo_normalized, true);
            if deny && matched {
                return Err(self.source_repo_violation(repo));
            }
            allowed |= !deny && matched;
        }
        if allowed {
            Ok(())
        } else {
            Err(self.source_repo_violation(repo))
        }
    }

    fn source_repo_violation(&self, repo: &str) -> ProjectViolation {
        ProjectViolation::SourceRepo {
            project: self.name.to_owned(),
            repo: repo.to_owned(),
        }
    }

    /// Argo CD's destination rule: some entry matches the cluster (by server or name) and the
    /// namespace, and no entry denies either (`!` in front of `server`, `name` or `namespace`).
    pub fn check_destination(&self, dst: Destination<'_>) -> Result<(), ProjectViolation> {
        let mut allowed = false;
        for entry in &self.spec.destinations {
            let server = entry.server.as_deref().unwrap_or("");
            let name = entry.name.as_deref().unwrap_or("");
            let namespace = entry.namespace.as_deref().unwrap_or("");
            let server_matched = !dst.server.is_empty() && negatable_match(server, dst.server);
            let name_matched = !dst.name.is_empty() && negatable_match(name, dst.name);
            let cluster_matched = server_matched || name_matched;
            let namespace_matched = negatable_match(namespace, dst.namespace);
            let cluster_denied =
                (!server_matched && is_deny(server)) || (!name_matched && is_deny(name));
            if cluster_matched && namespace_matched {
                allowed = true;
            } else if (cluster_denied && namespace_matched)
                || (cluster_matched && !namespace_matched && is_deny(namespace))
            {
                return Err(self.destination_violation(dst));
            }
        }
        if allowed {
            Ok(())
        } else {
            Err(self.destination_violation(dst))
        }
    }

    fn destination_violation(&self, dst: Destination<'_>) -> ProjectViolation {
        ProjectViolation::Destination {
            project: self.name.to_owned(),
            server: dst.server.to_owned(),
            name: dst.name.to_owned(),
            namespace: dst.namespace.to_owned(),
        }
    }

    /// Applications in the control namespace may use any project; elsewhere only a project that
    /// lists their namespace in `sourceNamespaces` ("apps in any namespace").
    pub fn check_source_namespace(
        &self,
        app_namespace: &str,
        control_namespace: &str,
    ) -> Result<(), ProjectViolation> {
        let listed = namespace_listed(&self.spec.source_namespaces, app_namespace);
        if app_namespace == control_namespace || listed {
            Ok(())
        } else {
            Err(ProjectViolation::SourceNamespace {
                project: self.name.to_owned(),
                namespace: app_namespace.to_owned(),
            })
        }
    }

    /// Argo CD's `IsGroupKindPermitted`: a cluster-scoped kind needs an allow entry (none allowed by
    /// default); a namespaced kind is allowed unless an allow list exists without it; a deny entry
    /// always wins.
    pub fn check_kind(&self, object: ObjectKind<'_>) -> Result<(), ProjectViolation> {
        let spec = self.spec;
        let (scope, allow, deny, allow_rule, deny_rule) = if object.namespaced {
            (
                "namespaced",
                spec.namespace_resource_whitelist.as_deref(),
                spec.namespace_resource_blacklist.as_deref(),
                "namespaceResourceWhitelist",
                "namespaceResourceBlacklist",
            )
        } else {
            (
                "cluster-scoped",
                Some(spec.cluster_resource_whitelist.as_deref().unwrap_or(&[])),
                spec.cluster_resource_blacklist.as_deref(),
                "clusterResourceWhitelist",
                "clusterResourceBlacklist",
            )
        };
        let violation = |rule| ProjectViolation::Kind {
            project: self.name.to_owned(),
            scope,
            group_kind: group_kind(object.group, object.kind),
            name: object.name.to_owned(),
            rule,
        };
        if allow.is_some_and(|list| !list.iter().any(|r| resource_matches(r, object))) {
            return Err(violation(allow_rule));
        }
        if deny.is_some_and(|list| list.iter().any(|r| resource_matches(r, object))) {
            return Err(violation(deny_rule));
        }
        Ok(())
    }

    /// The ServiceAccount a sync to `server`/`namespace` impersonates: the first
    /// `destinationServiceAccounts` entry matching both (`None` when the project lists none).
    pub fn service_account_for(
        &self,
        server: &str,
        namespace: &str,
    ) -> Result<Option<ServiceAccountRef>, ProjectViolation> {
        let accounts = &self.spec.destination_service_accounts;
        if accounts.is_empty() {
            return Ok(None);
        }
        accounts
            .iter()
            .find(|a| account_matches(a, server, namespace))
            .map(|a| Some(service_account_ref(&a.default_service_account, namespace)))
            .ok_or_else(|| ProjectViolation::NoServiceAccount {
                project: self.name.to_owned(),
                server: server.to_owned(),
                namespace: namespace.to_owned(),
            })
    }
}

/// The controller's own cluster, as project rules see it.
pub fn in_cluster_destination(namespace: &str) -> Destination<'_> {
    Destination {
        server: IN_CLUSTER_SERVER,
        name: IN_CLUSTER_NAME,
        namespace,
    }
}

/// The cluster an Application's destination resolved to: its server and name, both matched by the
/// project's `destinations` (Argo CD matches the resolved cluster, whichever of the two the
/// Application wrote).
#[derive(Debug, Clone, Copy)]
pub struct ClusterRef<'a> {
    pub server: &'a str,
    pub name: &'a str,
}

impl<'a> ClusterRef<'a> {
    pub fn in_cluster() -> Self {
        Self {
            server: IN_CLUSTER_SERVER,
            name: IN_CLUSTER_NAME,
        }
    }

    /// A namespace of this cluster.
    pub fn at(self, namespace: &'a str) -> Destination<'a> {
        Destination {
            server: self.server,
            name: self.name,
            namespace,
        }
    }
}

impl Project<'_> {
    /// Argo CD's checks of an Application before anything is fetched: its namespace may use the
    /// project, its repository and its destination are permitted.
    pub fn check_application(
        &self,
        app: &Application,
        control_namespace: &str,
        cluster: ClusterRef<'_>,
    ) -> Result<(), ProjectViolation> {
        let app_namespace = app.metadata.namespace.as_deref().unwrap_or_default();
        self.check_source_namespace(app_namespace, control_namespace)?;
        self.check_source_repo(&app.spec.source.repo_url)?;
        let namespace = app
            .spec
            .destination
            .namespace
            .as_deref()
            .unwrap_or_default();
        self.check_destination(cluster.at(namespace))
    }

    /// Argo CD's check of each object a sync would apply: its kind against the allow and deny
    /// lists, and (namespaced kinds) its namespace against the destinations.
    pub fn check_object(
        &self,
        object: ObjectKind<'_>,
        namespace: &str,
        cluster: ClusterRef<'_>,
    ) -> Result<(), ProjectViolation> {
        self.check_kind(object)?;
        if object.namespaced {
            self.check_destination(cluster.at(namespace))?;
        }
        Ok(())
    }
}

/// Whether one of the `sourceNamespaces` globs lists `namespace`.
pub fn namespace_listed(patterns: &[String], namespace: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, namespace, false))
}

fn account_matches(account: &DestinationServiceAccount, server: &str, namespace: &str) -> bool {
    negatable_match(&account.server, server)
        && negatable_match(account.namespace.as_deref().unwrap_or(""), namespace)
}

/// `name` runs in the destination namespace; `ns:name` names both.
fn service_account_ref(value: &str, destination_namespace: &str) -> ServiceAccountRef {
    match value.split_once(':') {
        Some((namespace, name)) => ServiceAccountRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        },
        None => ServiceAccountRef {
            namespace: destination_namespace.to_owned(),
            name: value.to_owned(),
        },
    }
}

fn resource_matches(rule: &ProjectResource, object: ObjectKind<'_>) -> bool {
    glob_match(&rule.kind, object.kind, false)
        && glob_match(&rule.group, object.group, false)
        && rule
            .name
            .as_deref()
            .is_none_or(|n| n.is_empty() || glob_match(n, object.name, false))
}

/// `Kind.group` (`Kind` for the core group), as the refusals name kinds.
pub fn group_kind(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    }
}

fn is_deny(pattern: &str) -> bool {
    pattern.starts_with('!')
}

fn split_deny(pattern: &str) -> (bool, &str) {
    match pattern.strip_prefix('!') {
        Some(body) => (true, body),
        None => (false, pattern),
    }
}

/// A glob where `!pattern` matches what `pattern` does not.
fn negatable_match(pattern: &str, value: &str) -> bool {
    match pattern.strip_prefix('!') {
        Some(body) => !glob_match(body, value, false),
        None => pattern == "*" || glob_match(pattern, value, false),
    }
}

/// Glob matching as Argo CD's: an invalid pattern matches nothing.
pub(crate) fn glob_match(pattern: &str, value: &str, slash_is_separator: bool) -> bool {
    GlobBuilder::new(pattern)
        .literal_separator(slash_is_separator)
        .backslash_escape(true)
        .build()
        .is_ok_and(|glob| glob.compile_matcher().is_match(value))
}

/// Case, a trailing `/` and a `.git` suffix do not make another repository.
fn normalize_repo_url(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    let without_suffix = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    without_suffix.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> AppProjectSpec {
        serde_json::from_value(value).expect("valid AppProject spec")
    }

    fn check_repo(spec: &AppProjectSpec, repo: &str) -> bool {
        Project { name: "p", spec }.check_source_repo(repo).is_ok()
    }

    #[test]
    fn source_repos_match_globs_normalised_and_deny_wins() {
        let s = spec(json!({"sourceRepos": [
            "https://git.example.com/team-a/*", "!https://git.example.com/team-a/secret"
        ]}));
        assert!(check_repo(&s, "https://git.example.com/team-a/app.git"));
        assert!(check_repo(&s, "HTTPS://git.example.com/team-a/app/"));
        assert!(!check_repo(&s, "https://git.example.com/team-a/secret.git"));
        assert!(!check_repo(&s, "https://git.example.com/team-b/app"));
        // `*` stays within one path segment, as Argo's '/'-separated glob.
        assert!(!check_repo(&s, "https://git.example.com/team-a/nested/app"));
        assert!(check_repo(
            &spec(json!({"sourceRepos": ["*"]})),
            "git://127.0.0.1:9418/x.git"
        ));
        assert!(check_repo(
            &spec(json!({"sourceRepos": ["https://git.example.com/**"]})),
            "https://git.example.com/a/b/c"
        ));
        assert!(!check_repo(&spec(json!({})), "https://git.example.com/a"));
    }

    fn dst<'a>(server: &'a str, name: &'a str, namespace: &'a str) -> Destination<'a> {
        Destination {
            server,
            name,
            namespace,
        }
    }

    #[test]
    fn destinations_match_server_or_name_and_namespace_with_deny_entries() {
        let s = spec(json!({"destinations": [
            {"server": "https://kubernetes.default.svc", "namespace": "team-a-*"},
            {"name": "in-cluster", "namespace": "shared"},
            {"server": "*", "namespace": "!kube-system"}
        ]}));
        let p = Project {
            name: "team-a",
            spec: &s,
        };
        let local = "https://kubernetes.default.svc";
        assert!(p.check_destination(dst(local, "", "team-a-web")).is_ok());
        assert!(p.check_destination(dst("", "in-cluster", "shared")).is_ok());
        assert!(p.check_destination(dst(local, "", "anything-else")).is_ok());
        let refused = p
            .check_destination(dst(local, "", "kube-system"))
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "destination server \"https://kubernetes.default.svc\" name \"\" namespace \"kube-system\" is not permitted by project team-a's destinations"
        );
        let only_a = spec(json!({"destinations": [{"server": local, "namespace": "team-a"}]}));
        let p = Project {
            name: "a",
            spec: &only_a,
        };
        assert!(p.check_destination(dst(local, "", "team-b")).is_err());
        assert!(
            p.check_destination(dst("https://other:6443", "", "team-a"))
                .is_err()
        );
    }

    #[test]
    fn applications_and_objects_are_checked_on_the_cluster_their_destination_resolved_to() {
        let app: Application = serde_json::from_value(json!({
            "metadata": {"name": "shop", "namespace": "ctl"},
            "spec": {"source": {"repoURL": "https://git.example.com/shop"},
                     "destination": {"name": "prod", "namespace": "shop"}}
        }))
        .unwrap();
        let prod = ClusterRef {
            server: "https://prod:6443",
            name: "prod",
        };
        let by_name = spec(json!({"sourceRepos": ["*"],
                                  "destinations": [{"name": "prod", "namespace": "shop"}]}));
        let by_server = spec(json!({"sourceRepos": ["*"],
                                    "destinations": [{"server": "https://prod:*", "namespace": "*"}]}));
        let local_only = spec(json!({"sourceRepos": ["*"], "destinations": [
            {"server": "https://kubernetes.default.svc", "namespace": "*"}]}));
        let project = |spec| Project { name: "p", spec };
        for permits in [&by_name, &by_server] {
            assert!(
                project(permits)
                    .check_application(&app, "ctl", prod)
                    .is_ok()
            );
        }
        let refused = project(&local_only)
            .check_application(&app, "ctl", prod)
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "destination server \"https://prod:6443\" name \"prod\" namespace \"shop\" is not permitted by project p's destinations"
        );
        let cm = ObjectKind {
            group: "",
            kind: "ConfigMap",
            name: "x",
            namespaced: true,
        };
        assert!(project(&by_name).check_object(cm, "shop", prod).is_ok());
        assert!(project(&by_name).check_object(cm, "other", prod).is_err());
        assert!(
            project(&by_name)
                .check_object(cm, "shop", ClusterRef::in_cluster())
                .is_err()
        );
    }

    #[test]
    fn a_denied_server_refuses_even_when_another_entry_allows() {
        let s = spec(json!({"destinations": [
            {"server": "*", "namespace": "*"},
            {"server": "!https://prod:6443", "namespace": "*"}
        ]}));
        let p = Project {
            name: "p",
            spec: &s,
        };
        assert!(
            p.check_destination(dst("https://dev:6443", "", "x"))
                .is_ok()
        );
        assert!(
            p.check_destination(dst("https://prod:6443", "", "x"))
                .is_err()
        );
    }

    #[test]
    fn source_namespaces_open_a_project_to_other_namespaces() {
        let s = spec(json!({"sourceNamespaces": ["team-*"]}));
        let p = Project {
            name: "p",
            spec: &s,
        };
        assert!(p.check_source_namespace("sluice", "sluice").is_ok());
        assert!(p.check_source_namespace("team-a", "sluice").is_ok());
        assert_eq!(
            p.check_source_namespace("other", "sluice").unwrap_err(),
            ProjectViolation::SourceNamespace {
                project: "p".into(),
                namespace: "other".into()
            }
        );
        let closed = spec(json!({}));
        let p = Project {
            name: "default",
            spec: &closed,
        };
        assert!(p.check_source_namespace("team-a", "sluice").is_err());
    }

    fn kind<'a>(group: &'a str, kind: &'a str, name: &'a str, namespaced: bool) -> ObjectKind<'a> {
        ObjectKind {
            group,
            kind,
            name,
            namespaced,
        }
    }

    #[test]
    fn cluster_scoped_kinds_need_an_allow_entry() {
        let none = spec(json!({}));
        let p = Project {
            name: "team-a",
            spec: &none,
        };
        let err = p
            .check_kind(kind(
                "rbac.authorization.k8s.io",
                "ClusterRoleBinding",
                "admin",
                false,
            ))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cluster-scoped kind ClusterRoleBinding.rbac.authorization.k8s.io (admin) is not permitted by project team-a's clusterResourceWhitelist"
        );
        let ns_only = spec(json!({
            "clusterResourceWhitelist": [{"group": "", "kind": "Namespace"}],
            "clusterResourceBlacklist": [{"group": "", "kind": "Namespace", "name": "kube-*"}]
        }));
        let p = Project {
            name: "p",
            spec: &ns_only,
        };
        assert!(p.check_kind(kind("", "Namespace", "team-a", false)).is_ok());
        assert!(
            p.check_kind(kind("", "Namespace", "kube-public", false))
                .is_err()
        );
        let all = spec(json!({"clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}));
        let p = Project {
            name: "p",
            spec: &all,
        };
        assert!(
            p.check_kind(kind(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                "x",
                false
            ))
            .is_ok()
        );
    }

    #[test]
    fn namespaced_kinds_are_allowed_unless_listed_out() {
        let open = spec(json!({}));
        let p = Project {
            name: "p",
            spec: &open,
        };
        assert!(
            p.check_kind(kind("apps", "Deployment", "web", true))
                .is_ok()
        );
        let no_secrets =
            spec(json!({"namespaceResourceBlacklist": [{"group": "", "kind": "Secret"}]}));
        let p = Project {
            name: "p",
            spec: &no_secrets,
        };
        assert!(p.check_kind(kind("", "Secret", "s", true)).is_err());
        assert!(p.check_kind(kind("", "ConfigMap", "c", true)).is_ok());
        let only_apps =
            spec(json!({"namespaceResourceWhitelist": [{"group": "apps", "kind": "*"}]}));
        let p = Project {
            name: "p",
            spec: &only_apps,
        };
        assert!(
            p.check_kind(kind("apps", "Deployment", "web", true))
                .is_ok()
        );
        let err = p.check_kind(kind("", "ConfigMap", "c", true)).unwrap_err();
        assert!(
            err.to_string().contains("namespaceResourceWhitelist"),
            "{err}"
        );
        let nothing = spec(json!({"namespaceResourceWhitelist": []}));
        let p = Project {
            name: "p",
            spec: &nothing,
        };
        assert!(
            p.check_kind(kind("apps", "Deployment", "web", true))
                .is_err()
        );
    }

    #[test]
    fn service_accounts_first_match_wins_in_the_destination_namespace() {
        let s = spec(json!({"destinationServiceAccounts": [
            {"server": "https://kubernetes.default.svc", "namespace": "team-a", "defaultServiceAccount": "deployer"},
            {"server": "*", "namespace": "*", "defaultServiceAccount": "sluice:fallback"}
        ]}));
        let p = Project {
            name: "p",
            spec: &s,
        };
        assert_eq!(
            p.service_account_for("https://kubernetes.default.svc", "team-a"),
            Ok(Some(ServiceAccountRef {
                namespace: "team-a".into(),
                name: "deployer".into()
            }))
        );
        assert_eq!(
            p.service_account_for("https://kubernetes.default.svc", "team-b"),
            Ok(Some(ServiceAccountRef {
                namespace: "sluice".into(),
                name: "fallback".into()
            }))
        );
        let none = spec(json!({}));
        assert_eq!(
            Project {
                name: "p",
                spec: &none
            }
            .service_account_for("s", "n"),
            Ok(None)
        );
        let narrow = spec(json!({"destinationServiceAccounts": [
            {"server": "*", "namespace": "team-a", "defaultServiceAccount": "deployer"}]}));
        assert!(
            Project {
                name: "p",
                spec: &narrow
            }
            .service_account_for("s", "team-b")
            .is_err()
        );
    }

    #[test]
    fn an_invalid_glob_matches_nothing() {
        assert!(!glob_match("[", "[", false));
        assert!(glob_match("team-[ab]", "team-a", false));
    }
}
