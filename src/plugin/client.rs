//! The connection to the cluster, as kubectl makes it (`--kubeconfig`, `--context`, `-n`), and the
//! translation of client errors into one line a user can act on.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Api, Client, Config};
use serde::de::DeserializeOwned;

use crate::api::rollout::Rollout;
use crate::plugin::cli::GlobalArgs;
use crate::plugin::error::PluginError;

/// Attempts of a read-modify-write refused because the object changed in between.
const CONFLICT_ATTEMPTS: usize = 5;

/// Runs a read-modify-write `attempt` again when it ends in a conflict: the controllers write
/// status all the time, which changes the `resourceVersion` a guarded write was based on.
pub async fn retry_on_conflict<T, F, Fut>(mut attempt: F) -> Result<T, PluginError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, PluginError>>,
{
    let mut attempts = 1;
    loop {
        match attempt().await {
            Err(PluginError::Conflict { .. }) if attempts < CONFLICT_ATTEMPTS => attempts += 1,
            other => return other,
        }
    }
}

/// How long to wait for a TCP connection to the API server before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for the cluster and namespace the user chose.
#[derive(Clone)]
pub struct Kube {
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    /// The API server's URL, for error messages.
    pub server: String,
}

impl Kube {
    /// Connects as kubectl would: `--kubeconfig` (else `$KUBECONFIG`, else `~/.kube/config`, else
    /// the in-cluster service account), `--context` (else the current context).
    pub async fn connect(args: &GlobalArgs) -> Result<Self, PluginError> {
        crate::tls::install_crypto_provider();
        let mut config = load_config(args).await?;
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        let server = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client =
            Client::try_from(config).map_err(|e| PluginError::Kubeconfig(root_cause(&e)))?;
        Ok(Self {
            client,
            namespace,
            server,
        })
    }

    /// An API for a namespaced kind in the chosen namespace.
    pub fn namespaced<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The Rollouts of the chosen namespace.
    pub fn rollouts(&self) -> Api<Rollout> {
        self.namespaced()
    }

    /// `error` as one line. `kind`/`name` say what was being read or written and `action` what for.
    pub fn error(
        &self,
        error: kube::Error,
        kind: &'static str,
        name: &str,
        action: &str,
    ) -> PluginError {
        classify(
            error,
            &Context {
                server: &self.server,
                namespace: &self.namespace,
                kind,
                name,
                action,
            },
        )
    }

    /// Reads a Rollout; when there is none, says whether the name is a Deployment instead (a
    /// common slip when moving from Deployments).
    pub async fn get_rollout(&self, name: &str) -> Result<Rollout, PluginError> {
        match self.rollouts().get(name).await {
            Ok(rollout) => Ok(rollout),
            Err(error) => Err(self.not_a_rollout(error, name).await),
        }
    }

    async fn not_a_rollout(&self, error: kube::Error, name: &str) -> PluginError {
        let classified = self.error(error, "Rollout", name, "read Rollout");
        if !matches!(classified, PluginError::NotFound { .. }) {
            return classified;
        }
        match self.namespaced::<Deployment>().get_opt(name).await {
            Ok(Some(_)) => PluginError::WrongKind {
                name: name.to_string(),
                namespace: self.namespace.clone(),
                actual: "Deployment",
                expected: "Rollout",
            },
            _ => classified,
        }
    }

    /// Reads a namespaced object of kind `K`, with a one-line error.
    pub async fn get<K>(&self, kind: &'static str, name: &str) -> Result<K, PluginError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        self.namespaced::<K>()
            .get(name)
            .await
            .map_err(|e| self.error(e, kind, name, &format!("read {kind}")))
    }
}

async fn load_config(args: &GlobalArgs) -> Result<Config, PluginError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|e| PluginError::Kubeconfig(e.to_string()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| PluginError::Kubeconfig(e.to_string()))
        }
        (None, Some(context)) => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| match e {
                KubeconfigError::LoadContext(_) => {
                    PluginError::Kubeconfig(format!("context {context:?} is not in the kubeconfig"))
                }
                other => PluginError::Kubeconfig(other.to_string()),
            }),
        // No flag at all: the kubeconfig, else the in-cluster service account (as kubectl does).
        (None, None) => Config::infer()
            .await
            .map_err(|e| PluginError::Kubeconfig(e.to_string())),
    }
}

/// What a failed request was about.
pub struct Context<'a> {
    pub server: &'a str,
    pub namespace: &'a str,
    pub kind: &'static str,
    pub name: &'a str,
    pub action: &'a str,
}

/// Turns a client error into the one-line error shown to the user.
pub fn classify(error: kube::Error, ctx: &Context<'_>) -> PluginError {
    match error {
        kube::Error::Api(status) => classify_status(status.code, &status.message, ctx),
        kube::Error::Auth(e) => PluginError::Unauthorized {
            server: ctx.server.to_string(),
            reason: root_cause(&e),
        },
        kube::Error::HyperError(e) => unreachable(ctx, &e),
        kube::Error::Service(e) => unreachable(ctx, e.as_ref()),
        other => PluginError::Api {
            action: ctx.action.to_string(),
            message: root_cause(&other),
        },
    }
}

fn unreachable(ctx: &Context<'_>, error: &(dyn std::error::Error + 'static)) -> PluginError {
    PluginError::Unreachable {
        server: ctx.server.to_string(),
        reason: root_cause(error),
    }
}

fn classify_status(code: u16, message: &str, ctx: &Context<'_>) -> PluginError {
    match code {
        // A missing kind answers 404 with this generic message; a missing object names itself.
        404 if message.contains("could not find the requested resource") => {
            PluginError::CrdMissing { kind: ctx.kind }
        }
        404 => PluginError::NotFound {
            kind: ctx.kind,
            name: ctx.name.to_string(),
            namespace: ctx.namespace.to_string(),
        },
        401 => PluginError::Unauthorized {
            server: ctx.server.to_string(),
            reason: message.to_string(),
        },
        403 => PluginError::Forbidden(message.to_string()),
        409 => PluginError::Conflict {
            kind: ctx.kind,
            name: ctx.name.to_string(),
        },
        _ => PluginError::Api {
            action: ctx.action.to_string(),
            message: message.to_string(),
        },
    }
}

/// The innermost cause of an error: "Connection refused (os error 111)" rather than "client error
/// (Connect)".
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        Context {
            server: "https://127.0.0.1:6443",
            namespace: "shop",
            kind: "Rollout",
            name: "web",
            action: "patch Rollout \"web\"",
        }
    }

    #[test]
    fn api_statuses_become_clear_errors() {
        let cases = [
            (
                404,
                "rollouts.sluice.dev \"web\" not found",
                "Rollout \"web\" not found in namespace \"shop\"",
            ),
            (
                404,
                "the server could not find the requested resource",
                "the Rollout kind is not installed in the cluster (apply crds/ first)",
            ),
            (
                403,
                "rollouts.sluice.dev \"web\" is forbidden: User \"bob\" cannot patch resource",
                "forbidden: rollouts.sluice.dev \"web\" is forbidden: User \"bob\" cannot patch resource",
            ),
            (
                409,
                "the object has been modified",
                "Rollout \"web\" changed while it was being updated; run the command again",
            ),
            (
                422,
                "spec.replicas: Invalid value",
                "cannot patch Rollout \"web\": spec.replicas: Invalid value",
            ),
            (
                401,
                "Unauthorized",
                "cannot authenticate to the cluster at https://127.0.0.1:6443: Unauthorized",
            ),
        ];
        for (code, message, want) in cases {
            assert_eq!(
                classify_status(code, message, &ctx()).to_string(),
                want,
                "{code}"
            );
        }
    }

    #[tokio::test]
    async fn conflicts_are_retried_a_few_times_other_errors_at_once() {
        let conflict = || PluginError::Conflict {
            kind: "Rollout",
            name: "web".to_string(),
        };
        let mut calls = 0;
        let result: Result<u8, _> = retry_on_conflict(|| {
            calls += 1;
            let outcome = if calls < 3 { Err(conflict()) } else { Ok(7) };
            async move { outcome }
        })
        .await;
        assert_eq!((result.unwrap(), calls), (7, 3));
        let mut calls = 0;
        let result: Result<u8, _> = retry_on_conflict(|| {
            calls += 1;
            async { Err(conflict()) }
        })
        .await;
        assert!(matches!(result, Err(PluginError::Conflict { .. })));
        assert_eq!(calls, CONFLICT_ATTEMPTS);
        let mut calls = 0;
        let result: Result<u8, _> = retry_on_conflict(|| {
            calls += 1;
            async { Err(PluginError::Invalid("no".to_string())) }
        })
        .await;
        assert!(matches!(result, Err(PluginError::Invalid(_))));
        assert_eq!(calls, 1);
    }

    #[test]
    fn the_root_cause_is_the_innermost_error() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let outer = PluginError::ReadFile {
            path: "x".to_string(),
            source: inner,
        };
        assert_eq!(root_cause(&outer), "connection refused");
    }
}
