//! The AppProjects of the control namespace, read from a watch cache: which project an Application
//! belongs to, and the permissive `default` project that the controller creates when it is missing
//! (as Argo CD does), so that a single-team install works with no project written.

use std::sync::Arc;

use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use thiserror::Error;

use super::project::{Project, ProjectViolation};
use crate::api::application::Application;
use crate::api::project::{
    AppProject, AppProjectSpec, DEFAULT_PROJECT_NAME, ProjectDestination, ProjectResource,
};

/// Why an Application cannot use its project.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProjectError {
    #[error(
        "Application references project {project}, which does not exist in the control namespace {namespace}"
    )]
    Missing { project: String, namespace: String },
    #[error(transparent)]
    Violation(#[from] ProjectViolation),
}

/// The projects of the control namespace.
#[derive(Clone)]
pub struct Projects {
    store: Store<AppProject>,
    control_namespace: String,
}

impl Projects {
    pub fn new(store: Store<AppProject>, control_namespace: String) -> Self {
        Self {
            store,
            control_namespace,
        }
    }

    /// Where projects, repository Secrets and cluster Secrets live.
    pub fn control_namespace(&self) -> &str {
        &self.control_namespace
    }

    /// The project named `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<AppProject>> {
        self.store
            .get(&ObjectRef::new(name).within(&self.control_namespace))
    }

    /// The project of `app`, when it exists and the Application's namespace may use it.
    pub fn of(&self, app: &Application) -> Result<Arc<AppProject>, ProjectError> {
        let name = app.spec.project();
        let project = self.get(name).ok_or_else(|| ProjectError::Missing {
            project: name.to_owned(),
            namespace: self.control_namespace.clone(),
        })?;
        let app_namespace = app.namespace().unwrap_or_default();
        as_rules(&project).check_source_namespace(&app_namespace, &self.control_namespace)?;
        Ok(project)
    }
}

/// A project's rules, named.
pub fn as_rules(project: &AppProject) -> Project<'_> {
    Project {
        name: project.metadata.name.as_deref().unwrap_or_default(),
        spec: &project.spec,
    }
}

/// Argo CD's `default` project: any repository, any namespace of this cluster, any kind; no source
/// namespaces, so Applications outside the control namespace cannot use it.
pub fn default_project_spec() -> AppProjectSpec {
    AppProjectSpec {
        description: Some("Created by Sluice: any repository, namespace and kind".to_owned()),
        source_repos: vec!["*".to_owned()],
        destinations: vec![ProjectDestination {
            server: Some("*".to_owned()),
            name: None,
            namespace: Some("*".to_owned()),
        }],
        cluster_resource_whitelist: Some(vec![ProjectResource {
            group: "*".to_owned(),
            kind: "*".to_owned(),
            name: None,
        }]),
        ..AppProjectSpec::default()
    }
}

/// Creates the `default` project in `namespace` unless a project of that name exists (a user's
/// edits to it are never overwritten).
pub async fn ensure_default_project(client: &Client, namespace: &str) -> Result<bool, kube::Error> {
    let api: Api<AppProject> = Api::namespaced(client.clone(), namespace);
    if api.get_opt(DEFAULT_PROJECT_NAME).await?.is_some() {
        return Ok(false);
    }
    let project = AppProject::new(DEFAULT_PROJECT_NAME, default_project_spec());
    match api.create(&PostParams::default(), &project).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::project::ObjectKind;
    use serde_json::json;

    fn project(name: &str, spec: serde_json::Value) -> AppProject {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AppProject",
            "metadata": {"name": name, "namespace": "sluice"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn app(namespace: &str, project: Option<&str>) -> Application {
        let mut spec = json!({"source": {"repoURL": "https://git.example/a.git"},
                              "destination": {"namespace": "shop"}});
        if let Some(p) = project {
            spec["project"] = json!(p);
        }
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "a", "namespace": namespace}, "spec": spec,
        }))
        .unwrap()
    }

    fn projects(list: Vec<AppProject>) -> Projects {
        let (store, mut writer) = kube::runtime::reflector::store();
        for p in list {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(p));
        }
        Projects::new(store, "sluice".to_owned())
    }

    #[test]
    fn an_application_without_project_uses_default() {
        let default = project(
            "default",
            serde_json::to_value(default_project_spec()).unwrap(),
        );
        let found = projects(vec![default]).of(&app("sluice", None)).unwrap();
        assert_eq!(found.name_any(), "default");
    }

    #[test]
    fn a_missing_project_is_named() {
        let err = projects(vec![])
            .of(&app("sluice", Some("team-a")))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Application references project team-a, which does not exist in the control namespace sluice"
        );
    }

    #[test]
    fn outside_the_control_namespace_the_project_must_list_the_namespace() {
        let default = project(
            "default",
            serde_json::to_value(default_project_spec()).unwrap(),
        );
        let team = project("team", json!({"sourceNamespaces": ["team-*"]}));
        let registry = projects(vec![default, team]);
        let refused = registry.of(&app("team-a", None)).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("namespace team-a may not use project default"),
            "{refused}"
        );
        assert!(registry.of(&app("team-a", Some("team"))).is_ok());
        assert!(registry.of(&app("other", Some("team"))).is_err());
    }

    #[test]
    fn the_default_project_permits_any_repository_namespace_and_kind() {
        let spec = default_project_spec();
        let rules = Project {
            name: "default",
            spec: &spec,
        };
        rules
            .check_application(
                &app("sluice", None),
                "sluice",
                crate::gitops::project::ClusterRef::in_cluster(),
            )
            .unwrap();
        for (kind, namespaced) in [("ClusterRoleBinding", false), ("ConfigMap", true)] {
            let object = ObjectKind {
                group: "rbac.authorization.k8s.io",
                kind,
                name: "x",
                namespaced,
            };
            rules
                .check_object(
                    object,
                    "kube-system",
                    crate::gitops::project::ClusterRef::in_cluster(),
                )
                .unwrap();
        }
    }
}
