//! Destination clusters, as Argo CD's cluster Secrets declare them: a Secret of the control namespace
//! labelled `sluice.dev/secret-type: cluster` (or Argo CD's `argocd.argoproj.io/secret-type: cluster`)
//! holding `name`, `server` and `config` (JSON: `bearerToken`, or `username` + `password`, and
//! `tlsClientConfig` with `insecure`, `serverName`, `caData`, `certData`, `keyData`), and optionally
//! `namespaces` (comma-separated: the only namespaces Sluice manages there) with `clusterResources`
//! (`true`: cluster-scoped kinds too).
//!
//! An Application's `spec.destination` is resolved to one cluster with Argo CD's rules
//! ([`resolve_destination`], pure): `in-cluster` / `https://kubernetes.default.svc` (or nothing) is the
//! cluster the controller talks to; any other name or server is the cluster Secret with that name or
//! server; name and server together must name the same cluster. [`Clusters`] keeps one connection per
//! cluster Secret ([`ClusterConn`]: clients, API discovery, watch caches), built again when the
//! Secret's `resourceVersion` changes. Remote clients have connect and request timeouts, so a dead
//! cluster fails its Applications' reconciles in bounded time instead of holding them.
//!
//! Nothing here logs or prints a credential: [`ClusterConfig`]'s `Debug` redacts them, and a `config`
//! that does not parse is reported by line and column only (serde's messages quote values).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{ObjectRef, Store};
use serde::Deserialize;
use serde_json::{Value, json};
use thiserror::Error;

use super::credentials::SECRET_TYPE_LABELS;
use super::impersonation::{ImpersonationError, Impersonator, SyncIdentity, account_label};
use super::kinds::KindResolver;
use super::live::LiveCache;
use crate::api::application::{
    Application, ApplicationDestination, IN_CLUSTER_NAME, IN_CLUSTER_SERVER,
};
use crate::kube_requests::KubeRequestCounter;

/// The secret-type label's value on a cluster Secret.
pub const CLUSTER_SECRET_TYPE: &str = "cluster";
const NAME_KEY: &str = "name";
const SERVER_KEY: &str = "server";
const CONFIG_KEY: &str = "config";
const NAMESPACES_KEY: &str = "namespaces";
const CLUSTER_RESOURCES_KEY: &str = "clusterResources";
/// How long a remote API server may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a remote API server may take to answer one request (watches excepted: the watcher has
/// its own idle timeout, and a watch is quiet for minutes).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Which cluster, as project `destinations` and `destinationServiceAccounts` match it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterIdentity {
    pub server: String,
    pub name: String,
}

impl ClusterIdentity {
    /// The cluster the controller talks to.
    pub fn in_cluster() -> Self {
        Self {
            server: IN_CLUSTER_SERVER.to_owned(),
            name: IN_CLUSTER_NAME.to_owned(),
        }
    }

    pub fn is_in_cluster(&self) -> bool {
        self.server == IN_CLUSTER_SERVER
    }
}

impl fmt::Display for ClusterIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "{}", self.server)
        } else {
            write!(f, "{} ({})", self.name, self.server)
        }
    }
}

/// What of a cluster Secret selects it: its name and server (read leniently, so that a Secret with
/// a broken `config` is still found, and its error shown, rather than "no such cluster").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// `namespace/name` of the Secret.
    pub secret: String,
    pub name: String,
    /// Without a trailing `/`.
    pub server: String,
}

/// Why a destination names no usable cluster.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DestinationError {
    #[error(
        "there are no clusters with this name: {name} (no cluster Secret labelled sluice.dev/secret-type: cluster in namespace {namespace} has name {name:?}); nothing is applied"
    )]
    NoClusterNamed { name: String, namespace: String },
    #[error(
        "there is no cluster with server {server} (no cluster Secret labelled sluice.dev/secret-type: cluster in namespace {namespace} has this server); nothing is applied"
    )]
    NoClusterServer { server: String, namespace: String },
    #[error(
        "there are {} clusters with the same {what} {value}: Secrets {}; nothing is applied", secrets.len(), secrets.join(", ")
    )]
    Ambiguous {
        what: &'static str,
        value: String,
        secrets: Vec<String>,
    },
    #[error(
        "application destination can't have both name and server defined: {name} {server} (cluster {name}'s server is {actual}); nothing is applied"
    )]
    NameServerMismatch {
        name: String,
        server: String,
        actual: String,
    },
}

/// The cluster `dest` names among the cluster Secrets `candidates` (of the control namespace
/// `namespace`): `Ok(None)` for the controller's own cluster.
pub fn resolve_destination<'a>(
    dest: &ApplicationDestination,
    candidates: &'a [Candidate],
    namespace: &str,
) -> Result<Option<&'a Candidate>, DestinationError> {
    let name = dest.name.as_deref().filter(|n| !n.is_empty());
    let server = dest
        .server
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(normalize_server);
    match (name, server) {
        (None, None) => Ok(None),
        (Some(name), server) if name == IN_CLUSTER_NAME => match server {
            None => Ok(None),
            Some(s) if s == IN_CLUSTER_SERVER => Ok(None),
            Some(s) => Err(DestinationError::NameServerMismatch {
                name: name.to_owned(),
                server: s.to_owned(),
                actual: IN_CLUSTER_SERVER.to_owned(),
            }),
        },
        (Some(name), server) => {
            let found = unique(candidates, "name", name, |c| c.name == name)?.ok_or_else(|| {
                DestinationError::NoClusterNamed {
                    name: name.to_owned(),
                    namespace: namespace.to_owned(),
                }
            })?;
            match server {
                Some(s) if s != found.server => Err(DestinationError::NameServerMismatch {
                    name: name.to_owned(),
                    server: s.to_owned(),
                    actual: found.server.clone(),
                }),
                _ => Ok(Some(found)),
            }
        }
        (None, Some(server)) if server == IN_CLUSTER_SERVER => Ok(None),
        (None, Some(server)) => unique(candidates, "server", server, |c| c.server == server)?
            .map(Some)
            .ok_or_else(|| DestinationError::NoClusterServer {
                server: server.to_owned(),
                namespace: namespace.to_owned(),
            }),
    }
}

/// The one candidate matching, `None` when none does; several is an error naming them.
fn unique<'a>(
    candidates: &'a [Candidate],
    what: &'static str,
    value: &str,
    matches: impl Fn(&Candidate) -> bool,
) -> Result<Option<&'a Candidate>, DestinationError> {
    let found: Vec<&Candidate> = candidates.iter().filter(|c| matches(c)).collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(DestinationError::Ambiguous {
            what,
            value: value.to_owned(),
            secrets: many.iter().map(|c| c.secret.clone()).collect(),
        }),
    }
}

fn normalize_server(server: &str) -> &str {
    server.trim_end_matches('/')
}

/// Why a cluster Secret cannot be used. Never quotes a credential.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ClusterSecretError {
    #[error("cluster Secret {secret} has no `server`")]
    NoServer { secret: String },
    #[error("cluster Secret {secret}: `server` {server:?} is not an https:// or http:// URL")]
    BadServer { secret: String, server: String },
    #[error("cluster Secret {secret}: `{key}` is not UTF-8")]
    NotUtf8 { secret: String, key: &'static str },
    #[error("cluster Secret {secret}: `config` is not Argo CD's cluster config JSON: {reason}")]
    BadConfig { secret: String, reason: String },
    #[error("cluster Secret {secret}: config.tlsClientConfig.{field} is not base64")]
    NotBase64 { secret: String, field: &'static str },
    #[error(
        "cluster Secret {secret}: config.tlsClientConfig needs both certData and keyData for a client certificate"
    )]
    HalfClientCertificate { secret: String },
    #[error(
        "cluster Secret {secret}: config.{field} is not supported by Sluice (use bearerToken, username/password or tlsClientConfig certData/keyData)"
    )]
    Unsupported { secret: String, field: &'static str },
    #[error("cluster Secret {secret}: `clusterResources` is {value:?}, not true or false")]
    BadClusterResources { secret: String, value: String },
}

/// Argo CD's cluster `config`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub tls_client_config: TlsClientConfig,
    #[serde(default)]
    pub disable_compression: bool,
    /// Argo CD's, not implemented: refused by name when set.
    #[serde(default)]
    aws_auth_config: Option<Value>,
    #[serde(default)]
    exec_provider_config: Option<Value>,
    #[serde(default)]
    proxy_url: Option<String>,
}

/// Argo CD's `tlsClientConfig`; the data fields are base64 of PEM, as Argo CD's JSON writes bytes.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsClientConfig {
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub ca_data: Option<String>,
    #[serde(default)]
    pub cert_data: Option<String>,
    #[serde(default)]
    pub key_data: Option<String>,
}

/// Says which credentials are set, never their values.
impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tls = &self.tls_client_config;
        f.debug_struct("ClusterConfig")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "***"))
            .field("insecure", &tls.insecure)
            .field("server_name", &tls.server_name)
            .field("ca_data", &tls.ca_data.is_some())
            .field("cert_data", &tls.cert_data.is_some())
            .field("key_data", &tls.key_data.as_ref().map(|_| "***"))
            .finish()
    }
}

impl fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientConfig")
            .field("insecure", &self.insecure)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// A cluster Secret, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSecret {
    /// `namespace/name`.
    pub secret: String,
    pub resource_version: String,
    pub identity: ClusterIdentity,
    pub config: ClusterConfig,
    /// Argo CD's `namespaces`: when set, the only namespaces managed there.
    pub namespaces: Vec<String>,
    /// Argo CD's `clusterResources`: with `namespaces`, whether cluster-scoped kinds are managed.
    pub cluster_resources: bool,
}

/// Whether `secret` is a cluster Secret (either label, value `cluster`).
pub fn is_cluster_secret(secret: &Secret) -> bool {
    let Some(labels) = secret.metadata.labels.as_ref() else {
        return false;
    };
    SECRET_TYPE_LABELS
        .iter()
        .filter_map(|label| labels.get(*label))
        .any(|v| v == CLUSTER_SECRET_TYPE)
}

fn secret_label(secret: &Secret) -> String {
    format!(
        "{}/{}",
        secret.metadata.namespace.as_deref().unwrap_or_default(),
        secret.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A key of `data` (as read back from the API server), else of `stringData` (objects built in memory).
fn value(secret: &Secret, key: &'static str) -> Result<Option<String>, ClusterSecretError> {
    let bytes = match secret.data.as_ref().and_then(|d| d.get(key)) {
        Some(v) => v.0.clone(),
        None => match secret.string_data.as_ref().and_then(|d| d.get(key)) {
            Some(s) => s.clone().into_bytes(),
            None => return Ok(None),
        },
    };
    String::from_utf8(bytes)
        .map(|s| Some(s.trim().to_owned()).filter(|s| !s.is_empty()))
        .map_err(|_| ClusterSecretError::NotUtf8 {
            secret: secret_label(secret),
            key,
        })
}

/// The name and server of a cluster Secret, for [`resolve_destination`] (`None` without a server).
pub fn candidate(secret: &Secret) -> Option<Candidate> {
    let server = value(secret, SERVER_KEY).ok().flatten()?;
    Some(Candidate {
        secret: secret_label(secret),
        name: value(secret, NAME_KEY).ok().flatten().unwrap_or_default(),
        server: normalize_server(&server).to_owned(),
    })
}

/// Reads a cluster Secret completely.
pub fn parse_cluster_secret(secret: &Secret) -> Result<ClusterSecret, ClusterSecretError> {
    let label = secret_label(secret);
    let server = value(secret, SERVER_KEY)?.ok_or_else(|| ClusterSecretError::NoServer {
        secret: label.clone(),
    })?;
    if !(server.starts_with("https://") || server.starts_with("http://"))
        || server.parse::<http::Uri>().is_err()
    {
        return Err(ClusterSecretError::BadServer {
            secret: label,
            server,
        });
    }
    let config = match value(secret, CONFIG_KEY)? {
        Some(text) => parse_config(&text, &label)?,
        None => ClusterConfig::default(),
    };
    let namespaces: Vec<String> = value(secret, NAMESPACES_KEY)?
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    let cluster_resources = match value(secret, CLUSTER_RESOURCES_KEY)?.as_deref() {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            return Err(ClusterSecretError::BadClusterResources {
                secret: label,
                value: v.to_owned(),
            });
        }
    };
    Ok(ClusterSecret {
        secret: label,
        resource_version: secret.metadata.resource_version.clone().unwrap_or_default(),
        identity: ClusterIdentity {
            server: normalize_server(&server).to_owned(),
            name: value(secret, NAME_KEY)?.unwrap_or_default(),
        },
        config,
        namespaces,
        cluster_resources,
    })
}

fn parse_config(text: &str, secret: &str) -> Result<ClusterConfig, ClusterSecretError> {
    let config: ClusterConfig =
        serde_json::from_str(text).map_err(|e| ClusterSecretError::BadConfig {
            secret: secret.to_owned(),
            // Where, not what: serde's message quotes the value, which may be a token.
            reason: format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ),
        })?;
    let unsupported = |field| ClusterSecretError::Unsupported {
        secret: secret.to_owned(),
        field,
    };
    if config.aws_auth_config.as_ref().is_some_and(is_set) {
        return Err(unsupported("awsAuthConfig"));
    }
    if config.exec_provider_config.as_ref().is_some_and(is_set) {
        return Err(unsupported("execProviderConfig"));
    }
    if config.proxy_url.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(unsupported("proxyUrl"));
    }
    let tls = &config.tls_client_config;
    for (field, data) in [
        ("caData", &tls.ca_data),
        ("certData", &tls.cert_data),
        ("keyData", &tls.key_data),
    ] {
        if let Some(data) = data
            && base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .is_err()
        {
            return Err(ClusterSecretError::NotBase64 {
                secret: secret.to_owned(),
                field,
            });
        }
    }
    if tls.cert_data.is_some() != tls.key_data.is_some() {
        return Err(ClusterSecretError::HalfClientCertificate {
            secret: secret.to_owned(),
        });
    }
    Ok(config)
}

fn is_set(value: &Value) -> bool {
    !(value.is_null() || value.as_object().is_some_and(serde_json::Map::is_empty))
}

/// The cluster as a kubeconfig (in memory only), so that kube reads the PEM data, the token and
/// the TLS options exactly as it reads a user's kubeconfig.
fn kubeconfig(cluster: &ClusterSecret) -> Result<Kubeconfig, serde_json::Error> {
    let config = &cluster.config;
    let tls = &config.tls_client_config;
    let mut named_cluster = json!({"server": cluster.identity.server});
    if tls.insecure {
        named_cluster["insecure-skip-tls-verify"] = json!(true);
    }
    if let Some(name) = tls.server_name.as_deref().filter(|n| !n.is_empty()) {
        named_cluster["tls-server-name"] = json!(name);
    }
    if let Some(ca) = &tls.ca_data {
        named_cluster["certificate-authority-data"] = json!(ca.trim());
    }
    if config.disable_compression {
        named_cluster["disable-compression"] = json!(true);
    }
    let mut user = json!({});
    if let Some(token) = config.bearer_token.as_deref().filter(|t| !t.is_empty()) {
        user["token"] = json!(token);
    }
    if let Some(name) = config.username.as_deref().filter(|u| !u.is_empty()) {
        user["username"] = json!(name);
        user["password"] = json!(config.password.clone().unwrap_or_default());
    }
    if let (Some(cert), Some(key)) = (&tls.cert_data, &tls.key_data) {
        user["client-certificate-data"] = json!(cert.trim());
        user["client-key-data"] = json!(key.trim());
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": named_cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }))
}

/// Why a destination cannot be used now.
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error(transparent)]
    Destination(#[from] DestinationError),
    #[error("{0}; nothing is applied")]
    Secret(#[from] ClusterSecretError),
    #[error(
        "cluster {cluster}: cannot build a client from its Secret {secret}: {reason}; nothing is applied"
    )]
    Client {
        cluster: String,
        secret: String,
        reason: String,
    },
}

impl ClusterError {
    /// The destination names no cluster at all (rather than a broken or unreachable one): what
    /// it deployed there cannot be reached to delete it.
    pub fn is_unknown(&self) -> bool {
        matches!(
            self,
            Self::Destination(
                DestinationError::NoClusterNamed { .. } | DestinationError::NoClusterServer { .. }
            )
        )
    }
}

/// Argo CD's `namespaces` / `clusterResources` of a cluster Secret: what Sluice may manage there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedScope {
    /// Empty: every namespace.
    pub namespaces: Vec<String>,
    pub cluster_resources: bool,
}

impl ManagedScope {
    /// Why an object of `namespace` (`None`: cluster-scoped) may not be managed there, if not.
    pub fn refusal(&self, cluster: &ClusterIdentity, namespace: Option<&str>) -> Option<String> {
        if self.namespaces.is_empty() {
            return None;
        }
        match namespace {
            None if !self.cluster_resources => Some(format!(
                "cluster-scoped objects are not managed on cluster {cluster}: its Secret lists namespaces without clusterResources: \"true\""
            )),
            Some(ns) if !self.namespaces.iter().any(|n| n == ns) => Some(format!(
                "namespace {ns:?} is not managed on cluster {cluster}: its Secret lists only namespaces {}",
                self.namespaces.join(",")
            )),
            _ => None,
        }
    }
}

/// One cluster, connected: where an Application's reads, diffs, syncs and health go.
pub struct ClusterConn {
    pub identity: ClusterIdentity,
    /// The Secret and the `resourceVersion` it was built from (`None`: the controller's own cluster).
    pub secret: Option<(String, String)>,
    /// The controller's own identity there (reads, and writes without impersonation).
    pub client: Client,
    pub kinds: KindResolver,
    pub live: LiveCache,
    impersonator: Option<Impersonator>,
    pub scope: ManagedScope,
}

impl ClusterConn {
    /// The controller's own cluster.
    pub fn local(
        client: Client,
        kinds: KindResolver,
        live: LiveCache,
        impersonator: Option<Impersonator>,
    ) -> Self {
        Self {
            identity: ClusterIdentity::in_cluster(),
            secret: None,
            client,
            kinds,
            live,
            impersonator,
            scope: ManagedScope::default(),
        }
    }

    /// The client that writes as `identity` on this cluster.
    pub fn client_as(&self, identity: &SyncIdentity) -> Result<Client, ImpersonationError> {
        match (identity, &self.impersonator) {
            (SyncIdentity::Controller, _) => Ok(self.client.clone()),
            (SyncIdentity::ServiceAccount(account), Some(impersonator)) => {
                impersonator.client_for(account)
            }
            (SyncIdentity::ServiceAccount(account), None) => {
                Err(ImpersonationError::Disabled(account_label(account)))
            }
            (SyncIdentity::Missing(why), _) => {
                Err(ImpersonationError::NoServiceAccount(why.clone()))
            }
        }
    }
}

/// What remote connections are built with.
#[derive(Clone)]
pub struct RemoteSettings {
    pub requests: KubeRequestCounter,
    /// `--sync-impersonation`.
    pub impersonation: bool,
    /// Changes of objects Sluice applied there queue their Application.
    pub trigger: UnboundedSender<ObjectRef<Application>>,
}

/// Every destination cluster: the controller's own, and one connection per cluster Secret used.
#[derive(Clone)]
pub struct Clusters {
    local: Arc<ClusterConn>,
    secrets: Vec<Store<Secret>>,
    control_namespace: String,
    settings: RemoteSettings,
    built: Arc<Mutex<BTreeMap<String, Arc<ClusterConn>>>>,
}

impl Clusters {
    /// `secrets` are the stores of the secret-type labels (the cluster Secrets of
    /// `control_namespace` among them).
    pub fn new(
        local: ClusterConn,
        secrets: Vec<Store<Secret>>,
        control_namespace: String,
        settings: RemoteSettings,
    ) -> Self {
        Self {
            local: Arc::new(local),
            secrets,
            control_namespace,
            settings,
            built: Arc::default(),
        }
    }

    pub fn local(&self) -> &Arc<ClusterConn> {
        &self.local
    }

    pub fn control_namespace(&self) -> &str {
        &self.control_namespace
    }

    /// The cluster Secrets of the control namespace (each once, whichever labels it has).
    fn cluster_secrets(&self) -> Vec<Arc<Secret>> {
        let mut by_name = BTreeMap::new();
        for secret in self.secrets.iter().flat_map(Store::state) {
            if secret.metadata.namespace.as_deref() == Some(self.control_namespace.as_str())
                && is_cluster_secret(&secret)
            {
                by_name.insert(secret_label(&secret), secret);
            }
        }
        by_name.into_values().collect()
    }

    /// The cluster `dest` names, connected.
    pub async fn resolve(
        &self,
        dest: &ApplicationDestination,
    ) -> Result<Arc<ClusterConn>, ClusterError> {
        // Most Applications: no Secret to look at (the same answer resolve_destination gives).
        if dest.is_in_cluster() {
            return Ok(self.local.clone());
        }
        let secrets = self.cluster_secrets();
        let candidates: Vec<Candidate> = secrets.iter().filter_map(|s| candidate(s)).collect();
        let Some(chosen) = resolve_destination(dest, &candidates, &self.control_namespace)? else {
            return Ok(self.local.clone());
        };
        let secret = secrets
            .iter()
            .find(|s| secret_label(s) == chosen.secret)
            .ok_or_else(|| DestinationError::NoClusterServer {
                server: chosen.server.clone(),
                namespace: self.control_namespace.clone(),
            })?;
        let parsed = parse_cluster_secret(secret)?;
        if let Some(conn) = self.cached(&parsed) {
            return Ok(conn);
        }
        let conn = Arc::new(self.connect(&parsed).await?);
        tracing::info!(cluster = %parsed.identity, secret = %parsed.secret, "connected a destination cluster");
        let mut built = self.lock();
        // Another reconcile may have connected the same version meanwhile: one set of watches.
        let kept = match built.get(&parsed.secret) {
            Some(existing) if existing.secret == conn.secret => existing.clone(),
            _ => {
                built.insert(parsed.secret.clone(), conn.clone());
                conn
            }
        };
        Ok(kept)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<ClusterConn>>> {
        // Holds only handles; a panic elsewhere leaves it usable.
        self.built.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cached(&self, parsed: &ClusterSecret) -> Option<Arc<ClusterConn>> {
        let version = Some((parsed.secret.clone(), parsed.resource_version.clone()));
        self.lock()
            .get(&parsed.secret)
            .filter(|c| c.secret == version)
            .cloned()
    }

    /// Drops the connections (and their watches) of cluster Secrets that are gone or changed.
    pub fn forget_stale(&self) {
        let current: BTreeMap<String, String> = self
            .cluster_secrets()
            .iter()
            .map(|s| {
                (
                    secret_label(s),
                    s.metadata.resource_version.clone().unwrap_or_default(),
                )
            })
            .collect();
        self.lock()
            .retain(|name, conn| conn.secret.as_ref().map(|(_, rv)| rv) == current.get(name));
    }

    async fn connect(&self, cluster: &ClusterSecret) -> Result<ClusterConn, ClusterError> {
        let failed = |reason: String| ClusterError::Client {
            cluster: cluster.identity.to_string(),
            secret: cluster.secret.clone(),
            reason,
        };
        let kubeconfig = kubeconfig(cluster)
            .map_err(|e| failed(format!("{:?} error in the kubeconfig built", e.classify())))?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| failed(e.to_string()))?;
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        // Watches: no read timeout (the watcher's own idle timeout covers them).
        let watch_client = self
            .build_client(config.clone())
            .map_err(|e| failed(e.to_string()))?;
        config.read_timeout = Some(REQUEST_TIMEOUT);
        config.write_timeout = Some(REQUEST_TIMEOUT);
        config.reset_reader_on_write = true;
        let client = self
            .build_client(config.clone())
            .map_err(|e| failed(e.to_string()))?;
        let impersonator = self
            .settings
            .impersonation
            .then(|| Impersonator::new(config, self.settings.requests.clone()));
        // Argo CD's `namespaces`: the credentials may be good for those only; one watch each.
        let live = LiveCache::new(
            watch_client,
            cluster.namespaces.clone(),
            self.settings.trigger.clone(),
        )
        .with_get_client(client.clone());
        Ok(ClusterConn {
            identity: cluster.identity.clone(),
            secret: Some((cluster.secret.clone(), cluster.resource_version.clone())),
            kinds: KindResolver::for_cluster(client.clone(), &cluster.identity.to_string()),
            client,
            live,
            impersonator,
            scope: ManagedScope {
                namespaces: cluster.namespaces.clone(),
                cluster_resources: cluster.cluster_resources,
            },
        })
    }

    fn build_client(&self, config: kube::Config) -> Result<Client, kube::Error> {
        Ok(kube::client::ClientBuilder::try_from(config)?
            .with_layer(&self.settings.requests)
            .build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(name: &str, label: (&str, &str), data: &[(&str, &str)]) -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ctl", "resourceVersion": "7",
                         "labels": {label.0: label.1}},
        }))
        .map(|mut s: Secret| {
            s.data = Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            );
            s
        })
        .unwrap()
    }

    fn cluster(name: &str, data: &[(&str, &str)]) -> Secret {
        secret(name, ("sluice.dev/secret-type", "cluster"), data)
    }

    fn dest(v: Value) -> ApplicationDestination {
        serde_json::from_value(v).unwrap()
    }

    fn candidates() -> Vec<Candidate> {
        [
            ("c-prod", "prod", "https://prod:6443"),
            ("c-dev", "dev", "https://dev:6443/"),
            ("c-dup1", "dup", "https://dup1:6443"),
            ("c-dup2", "dup", "https://dup2:6443"),
        ]
        .iter()
        .map(|(secret, name, server)| {
            candidate(&cluster(secret, &[("name", name), ("server", server)])).unwrap()
        })
        .collect()
    }

    fn resolved(v: Value) -> Result<Option<String>, DestinationError> {
        let all = candidates();
        resolve_destination(&dest(v), &all, "ctl").map(|c| c.map(|c| c.secret.clone()))
    }

    #[test]
    fn the_controllers_own_cluster_needs_no_secret() {
        for d in [
            json!({}),
            json!({"name": "in-cluster"}),
            json!({"server": "https://kubernetes.default.svc/"}),
            json!({"name": "in-cluster", "server": "https://kubernetes.default.svc"}),
            json!({"name": "", "server": ""}),
        ] {
            assert_eq!(resolved(d.clone()), Ok(None), "{d}");
        }
    }

    #[test]
    fn a_destination_selects_its_cluster_secret_by_name_or_server() {
        assert_eq!(
            resolved(json!({"name": "prod", "namespace": "x"})),
            Ok(Some("ctl/c-prod".into()))
        );
        assert_eq!(
            resolved(json!({"server": "https://dev:6443"})),
            Ok(Some("ctl/c-dev".into())),
            "servers compare without a trailing slash"
        );
        assert_eq!(
            resolved(json!({"name": "prod", "server": "https://prod:6443/"})),
            Ok(Some("ctl/c-prod".into())),
            "name and server of the same cluster are consistent"
        );
    }

    #[test]
    fn unknown_inconsistent_and_ambiguous_destinations_are_named() {
        let err = resolved(json!({"name": "staging"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "there are no clusters with this name: staging (no cluster Secret labelled sluice.dev/secret-type: cluster in namespace ctl has name \"staging\"); nothing is applied"
        );
        let err = resolved(json!({"server": "https://gone:6443"})).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("there is no cluster with server https://gone:6443 "),
            "{err}"
        );
        let err = resolved(json!({"name": "prod", "server": "https://dev:6443"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "application destination can't have both name and server defined: prod https://dev:6443 (cluster prod's server is https://prod:6443); nothing is applied"
        );
        let err =
            resolved(json!({"name": "in-cluster", "server": "https://dev:6443"})).unwrap_err();
        assert!(matches!(err, DestinationError::NameServerMismatch { .. }));
        let err = resolved(json!({"name": "dup"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "there are 2 clusters with the same name dup: Secrets ctl/c-dup1, ctl/c-dup2; nothing is applied"
        );
    }

    #[test]
    fn argo_cd_cluster_secrets_parse() {
        let config = json!({
            "bearerToken": "t0ken",
            "tlsClientConfig": {"insecure": false, "serverName": "kubernetes",
                                "caData": "Y2E=", "certData": "Y2VydA==", "keyData": "a2V5"}
        })
        .to_string();
        let s = secret(
            "c2",
            ("argocd.argoproj.io/secret-type", "cluster"),
            &[
                ("name", "two"),
                ("server", "https://127.0.0.1:6443/"),
                ("config", &config),
                ("namespaces", "a, b"),
                ("clusterResources", "true"),
            ],
        );
        assert!(is_cluster_secret(&s));
        let parsed = parse_cluster_secret(&s).unwrap();
        assert_eq!(parsed.secret, "ctl/c2");
        assert_eq!(parsed.resource_version, "7");
        assert_eq!(
            parsed.identity,
            ClusterIdentity {
                server: "https://127.0.0.1:6443".into(),
                name: "two".into()
            }
        );
        assert_eq!(parsed.config.bearer_token.as_deref(), Some("t0ken"));
        assert_eq!(
            parsed.config.tls_client_config.server_name.as_deref(),
            Some("kubernetes")
        );
        assert_eq!(parsed.namespaces, ["a", "b"]);
        assert!(parsed.cluster_resources);
        let shown = format!("{parsed:?}");
        assert!(
            !shown.contains("t0ken") && !shown.contains("a2V5"),
            "Debug shows no credential: {shown}"
        );
        let kc = serde_json::to_value(kubeconfig(&parsed).unwrap()).unwrap();
        assert_eq!(
            kc["clusters"][0]["cluster"]["tls-server-name"],
            "kubernetes"
        );
        assert_eq!(
            kc["clusters"][0]["cluster"]["certificate-authority-data"],
            "Y2E="
        );
        assert_eq!(
            kc["users"][0]["user"]["client-certificate-data"],
            "Y2VydA=="
        );
    }

    #[test]
    fn repository_secrets_are_not_clusters() {
        let repo = secret(
            "r",
            ("sluice.dev/secret-type", "repository"),
            &[("url", "x")],
        );
        assert!(!is_cluster_secret(&repo));
    }

    #[test]
    fn broken_cluster_secrets_say_what_is_wrong_without_quoting_credentials() {
        let parse = |data: &[(&str, &str)]| {
            parse_cluster_secret(&cluster("bad", data))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            parse(&[("name", "x")]),
            "cluster Secret ctl/bad has no `server`"
        );
        assert!(parse(&[("server", "prod:6443")]).contains("is not an https:// or http:// URL"));
        let broken = parse(&[
            ("server", "https://x"),
            ("config", "{\"bearerToken\": \"s3cret"),
        ]);
        assert!(
            broken.contains("`config` is not Argo CD's cluster config JSON"),
            "{broken}"
        );
        assert!(!broken.contains("s3cret"), "{broken}");
        let wrong_type = parse(&[
            ("server", "https://x"),
            ("config", "{\"bearerToken\": 12345}"),
        ]);
        assert!(!wrong_type.contains("12345"), "{wrong_type}");
        assert_eq!(
            parse(&[
                ("server", "https://x"),
                (
                    "config",
                    r#"{"tlsClientConfig": {"caData": "not base64!"}}"#
                )
            ]),
            "cluster Secret ctl/bad: config.tlsClientConfig.caData is not base64"
        );
        assert!(
            parse(&[
                ("server", "https://x"),
                ("config", r#"{"tlsClientConfig": {"certData": "Y2VydA=="}}"#)
            ])
            .contains("needs both certData and keyData")
        );
        assert!(
            parse(&[
                ("server", "https://x"),
                ("config", r#"{"execProviderConfig": {"command": "aws"}}"#)
            ])
            .contains("config.execProviderConfig is not supported by Sluice")
        );
        assert!(
            parse(&[("server", "https://x"), ("clusterResources", "yes")])
                .contains("`clusterResources` is \"yes\"")
        );
    }

    #[test]
    fn only_unknown_clusters_count_as_gone() {
        let unknown = ClusterError::from(DestinationError::NoClusterNamed {
            name: "x".into(),
            namespace: "ctl".into(),
        });
        assert!(unknown.is_unknown());
        let broken = ClusterError::from(ClusterSecretError::NoServer { secret: "s".into() });
        assert!(!broken.is_unknown());
        assert_eq!(
            broken.to_string(),
            "cluster Secret s has no `server`; nothing is applied"
        );
    }

    #[test]
    fn a_secrets_namespaces_limit_what_is_managed_there() {
        let cluster = ClusterIdentity {
            server: "https://x".into(),
            name: "x".into(),
        };
        let all = ManagedScope::default();
        assert_eq!(all.refusal(&cluster, None), None);
        let some = ManagedScope {
            namespaces: vec!["a".into(), "b".into()],
            cluster_resources: false,
        };
        assert_eq!(some.refusal(&cluster, Some("a")), None);
        assert_eq!(
            some.refusal(&cluster, Some("c")).as_deref(),
            Some(
                "namespace \"c\" is not managed on cluster x (https://x): its Secret lists only namespaces a,b"
            )
        );
        assert!(some.refusal(&cluster, None).is_some());
        let with_cluster = ManagedScope {
            cluster_resources: true,
            ..some
        };
        assert_eq!(with_cluster.refusal(&cluster, None), None);
    }
}
