//! Sync impersonation (`--sync-impersonation`, Argo CD's `destinationServiceAccounts`): who a sync
//! writes as, and Kubernetes clients that act as a project's ServiceAccount, so the API server's RBAC
//! has the last word on what an Application may change. Reads for the watch caches stay the
//! controller's own.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use kube::Client;
use thiserror::Error;

use super::project::ServiceAccountRef;
use super::projects::as_rules;
use super::render::names::{dns1123_label_error, dns1123_subdomain_error};
use crate::api::project::AppProject;
use crate::kube_requests::KubeRequestCounter;

/// Impersonating clients kept at once (one per ServiceAccount that synced recently); beyond it the
/// least recently used is dropped, so a cluster with many accounts does not keep a connection pool
/// for each.
const MAX_CLIENTS: usize = 64;

/// Who a sync writes as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncIdentity {
    /// The controller's own identity (sync impersonation is off).
    Controller,
    /// The project's ServiceAccount for the destination.
    ServiceAccount(ServiceAccountRef),
    /// Sync impersonation is on but no usable ServiceAccount is named: every sync fails, nothing is
    /// applied, and this says why.
    Missing(String),
}

impl SyncIdentity {
    /// Sync impersonation off, or the ServiceAccount `project` names for a sync to `namespace` of
    /// the cluster at `server` (the destination's, resolved). A project with no
    /// `destinationServiceAccounts` names none (as in Argo CD, the controller's identity is never a
    /// fallback).
    pub fn for_sync(
        impersonation: bool,
        project: &AppProject,
        server: &str,
        namespace: &str,
    ) -> Self {
        if !impersonation {
            return Self::Controller;
        }
        let rules = as_rules(project);
        match rules.service_account_for(server, namespace) {
            Ok(Some(account)) => match account_error(&account) {
                None => Self::ServiceAccount(account),
                Some(why) => Self::Missing(format!(
                    "project {}'s destinationServiceAccounts names {} for namespace {namespace:?}, which is not a ServiceAccount: {why}",
                    rules.name,
                    account_label(&account)
                )),
            },
            Ok(None) => Self::Missing(format!(
                "sync impersonation is on (--sync-impersonation) and project {} has no destinationServiceAccounts: add one for server {server} namespace {namespace:?}, nothing is applied as the controller itself",
                rules.name
            )),
            Err(violation) => Self::Missing(format!(
                "sync impersonation is on (--sync-impersonation) and {violation}: add a destinationServiceAccounts entry for it, nothing is applied as the controller itself"
            )),
        }
    }

    /// The ServiceAccount, when the sync impersonates one.
    pub fn service_account(&self) -> Option<&ServiceAccountRef> {
        match self {
            Self::ServiceAccount(account) => Some(account),
            Self::Controller | Self::Missing(_) => None,
        }
    }
}

/// `namespace/name`, as messages name a ServiceAccount.
pub fn account_label(account: &ServiceAccountRef) -> String {
    format!("{}/{}", account.namespace, account.name)
}

/// The user name the API server knows the ServiceAccount by.
pub fn impersonated_user(account: &ServiceAccountRef) -> String {
    format!(
        "system:serviceaccount:{}:{}",
        account.namespace, account.name
    )
}

/// Why `account` cannot be a ServiceAccount (its namespace is not a DNS-1123 label, or its name
/// not a DNS-1123 subdomain), `None` when it can. Both reach an HTTP header.
fn account_error(account: &ServiceAccountRef) -> Option<String> {
    if account.namespace.is_empty() {
        return Some(
            "no namespace: write `namespace:name`, or set spec.destination.namespace".to_string(),
        );
    }
    if let Some(why) = dns1123_label_error(&account.namespace) {
        return Some(format!("namespace {:?}: {why}", account.namespace));
    }
    dns1123_subdomain_error(&account.name).map(|why| format!("name {:?}: {why}", account.name))
}

#[derive(Debug, Error)]
pub enum ImpersonationError {
    #[error("{0}")]
    NoServiceAccount(String),
    #[error(
        "the sync was to run as ServiceAccount {0}, but the controller runs without --sync-impersonation"
    )]
    Disabled(String),
    #[error("building a client impersonating ServiceAccount {account}: {source}")]
    Client {
        account: String,
        #[source]
        source: kube::Error,
    },
}

/// Builds clients that impersonate ServiceAccounts from the controller's own configuration (its
/// server, CA and credentials), and keeps the recently used ones.
#[derive(Clone)]
pub struct Impersonator {
    base: kube::Config,
    requests: KubeRequestCounter,
    clients: Arc<Mutex<ClientCache>>,
}

/// Without the configuration: it holds the controller's credentials.
impl fmt::Debug for Impersonator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Impersonator")
            .field("cluster_url", &self.base.cluster_url.to_string())
            .finish_non_exhaustive()
    }
}

impl Impersonator {
    /// From the controller's configuration; `requests` counts the impersonated calls with the others.
    pub fn new(base: kube::Config, requests: KubeRequestCounter) -> Self {
        Self {
            base,
            requests,
            clients: Arc::new(Mutex::new(ClientCache::default())),
        }
    }

    /// A client acting as `account`, reused while it is valid.
    pub fn client_for(&self, account: &ServiceAccountRef) -> Result<Client, ImpersonationError> {
        let user = impersonated_user(account);
        let now = jiff::Timestamp::now();
        let mut cache = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = cache.get(&user, now) {
            return Ok(client);
        }
        let client = self
            .build(&user)
            .map_err(|source| ImpersonationError::Client {
                account: account_label(account),
                source,
            })?;
        cache.insert(user, client.clone());
        Ok(client)
    }

    fn build(&self, user: &str) -> Result<Client, kube::Error> {
        let mut config = self.base.clone();
        config.auth_info.impersonate = Some(user.to_owned());
        // Only the user: the API server adds the ServiceAccount's groups itself.
        config.auth_info.impersonate_groups = None;
        config.auth_info.impersonate_uid = None;
        config.auth_info.impersonate_user_extra = None;
        Ok(kube::client::ClientBuilder::try_from(config)?
            .with_layer(&self.requests)
            .build())
    }
}

/// The impersonating clients by user name, with when each was last used.
#[derive(Default)]
struct ClientCache {
    clients: BTreeMap<String, (Client, u64)>,
    uses: u64,
}

impl ClientCache {
    /// The client of `user`, unless it expired (exec credentials) by `now`.
    fn get(&mut self, user: &str, now: jiff::Timestamp) -> Option<Client> {
        self.uses += 1;
        let uses = self.uses;
        let (client, used) = self.clients.get_mut(user)?;
        if client.valid_until().is_some_and(|until| until <= now) {
            self.clients.remove(user);
            return None;
        }
        *used = uses;
        Some(client.clone())
    }

    fn insert(&mut self, user: String, client: Client) {
        while self.clients.len() >= MAX_CLIENTS {
            let oldest = self
                .clients
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(user, _)| user.clone());
            match oldest {
                Some(user) => self.clients.remove(&user),
                None => break,
            };
        }
        self.uses += 1;
        self.clients.insert(user, (client, self.uses));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::application::IN_CLUSTER_SERVER;
    use serde_json::json;

    fn project(spec: serde_json::Value) -> AppProject {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AppProject",
            "metadata": {"name": "team-a", "namespace": "sluice"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn deployer(namespace: &str) -> SyncIdentity {
        SyncIdentity::ServiceAccount(ServiceAccountRef {
            namespace: namespace.into(),
            name: "deployer".into(),
        })
    }

    #[test]
    fn without_the_flag_the_controller_syncs_even_when_the_project_names_accounts() {
        let p = project(json!({"destinationServiceAccounts": [
            {"server": "*", "namespace": "*", "defaultServiceAccount": "deployer"}]}));
        assert_eq!(
            SyncIdentity::for_sync(false, &p, IN_CLUSTER_SERVER, "team-a"),
            SyncIdentity::Controller
        );
        assert_eq!(
            SyncIdentity::for_sync(false, &project(json!({})), IN_CLUSTER_SERVER, "team-a"),
            SyncIdentity::Controller
        );
    }

    #[test]
    fn with_the_flag_the_projects_account_for_the_destination_syncs() {
        let p = project(json!({"destinationServiceAccounts": [
            {"server": "https://kubernetes.default.svc", "namespace": "team-a", "defaultServiceAccount": "deployer"},
            {"server": "*", "namespace": "shared-*", "defaultServiceAccount": "ops:shared-deployer"}]}));
        assert_eq!(
            SyncIdentity::for_sync(true, &p, IN_CLUSTER_SERVER, "team-a"),
            deployer("team-a")
        );
        let shared = SyncIdentity::for_sync(true, &p, IN_CLUSTER_SERVER, "shared-web");
        // Another cluster's syncs match entries by its server: only the `*` one here.
        assert_eq!(
            SyncIdentity::for_sync(true, &p, "https://10.0.0.2:6443", "shared-web"),
            shared
        );
        assert!(matches!(
            SyncIdentity::for_sync(true, &p, "https://10.0.0.2:6443", "team-a"),
            SyncIdentity::Missing(m) if m.contains("https://10.0.0.2:6443")
        ));
        assert_eq!(
            shared.service_account(),
            Some(&ServiceAccountRef {
                namespace: "ops".into(),
                name: "shared-deployer".into()
            })
        );
    }

    #[test]
    fn with_the_flag_a_project_without_a_matching_account_refuses_every_sync() {
        let Some(SyncIdentity::Missing(none)) = Some(SyncIdentity::for_sync(
            true,
            &project(json!({"sourceRepos": ["*"]})),
            IN_CLUSTER_SERVER,
            "team-a",
        )) else {
            panic!("a project with no accounts must refuse");
        };
        assert!(
            none.contains("project team-a has no destinationServiceAccounts")
                && none.contains("--sync-impersonation"),
            "{none}"
        );
        let narrow = project(json!({"destinationServiceAccounts": [
            {"server": "*", "namespace": "team-a", "defaultServiceAccount": "deployer"}]}));
        let SyncIdentity::Missing(unmatched) =
            SyncIdentity::for_sync(true, &narrow, IN_CLUSTER_SERVER, "kube-system")
        else {
            panic!("no entry matches kube-system");
        };
        assert!(
            unmatched.contains("none matches") && unmatched.contains("kube-system"),
            "{unmatched}"
        );
    }

    #[test]
    fn an_account_that_is_no_service_account_name_is_refused_before_any_request() {
        for (account, destination) in [
            ("deployer", ""),
            ("Deployer", "team-a"),
            ("de\nployer", "team-a"),
            ("ns:a:b", "team-a"),
            ("Team:deployer", "team-a"),
            (":deployer", "team-a"),
        ] {
            let p = project(json!({"destinationServiceAccounts": [
                {"server": "*", "namespace": "*", "defaultServiceAccount": account}]}));
            let identity = SyncIdentity::for_sync(true, &p, IN_CLUSTER_SERVER, destination);
            assert!(
                matches!(&identity, SyncIdentity::Missing(m) if m.contains("not a ServiceAccount")),
                "{account:?} in {destination:?}: {identity:?}"
            );
        }
    }

    #[test]
    fn the_impersonated_user_is_the_service_accounts() {
        let account = ServiceAccountRef {
            namespace: "team-a".into(),
            name: "deployer".into(),
        };
        assert_eq!(
            impersonated_user(&account),
            "system:serviceaccount:team-a:deployer"
        );
        assert_eq!(account_label(&account), "team-a/deployer");
    }

    fn client() -> Client {
        let config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        Impersonator::new(config, KubeRequestCounter::default())
            .build("system:serviceaccount:a:b")
            .unwrap()
    }

    #[tokio::test]
    async fn the_client_cache_is_bounded_and_keeps_the_recently_used() {
        let mut cache = ClientCache::default();
        let now = jiff::Timestamp::now();
        for i in 0..MAX_CLIENTS {
            cache.insert(format!("u{i}"), client());
        }
        assert!(cache.get("u0", now).is_some(), "u0 is now the most recent");
        cache.insert("new".into(), client());
        assert_eq!(cache.clients.len(), MAX_CLIENTS);
        assert!(
            cache.get("u1", now).is_none(),
            "the least recently used went"
        );
        assert!(cache.get("u0", now).is_some());
        assert!(cache.get("new", now).is_some());
    }

    #[tokio::test]
    async fn an_expired_client_is_built_again() {
        let mut cache = ClientCache::default();
        let now = jiff::Timestamp::now();
        let expired = client().with_valid_until(Some(now));
        cache.insert("u".into(), expired);
        assert!(cache.get("u", now).is_none());
        assert!(cache.clients.is_empty());
    }
}
