//! `app list|get|sync|diff|history|rollback`: Applications, with Argo CD's verbs. Sync and rollback
//! are requests in the Application's top-level `operation` field, which the controller carries out
//! and records in `status.operationState`; the commands wait for that outcome unless `--async`.

pub mod operation;
pub mod render;

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

use crate::api::application::{Application, OperationPhase};
use crate::plugin::cli::{AppCommand, OperationWait};
use crate::plugin::client::{Kube, retry_on_conflict};
use crate::plugin::control::FIELD_MANAGER;
use crate::plugin::error::{EXIT_DEGRADED, EXIT_OK, EXIT_TIMEOUT, PluginError};
use crate::plugin::style::Style;

pub async fn run(
    kube: &Kube,
    command: AppCommand,
    style: Style,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, PluginError> {
    match command {
        AppCommand::List(args) => {
            let api: Api<Application> = if args.all_namespaces {
                Api::all(kube.client.clone())
            } else {
                kube.namespaced()
            };
            let apps = api
                .list(&ListParams::default())
                .await
                .map_err(|e| kube.error(e, "Application", "", "list Applications"))?;
            let text = render::render_app_list(&apps.items, args.all_namespaces, style);
            out.write_all(text.as_bytes())?;
            Ok(EXIT_OK)
        }
        AppCommand::Get(args) => {
            let app = get(kube, &args.name).await?;
            out.write_all(render::render_app(&app, style).as_bytes())?;
            Ok(EXIT_OK)
        }
        AppCommand::History(args) => {
            let app = get(kube, &args.name).await?;
            out.write_all(render::render_history(&app, Timestamp::now()).as_bytes())?;
            Ok(EXIT_OK)
        }
        AppCommand::Diff(args) => {
            let app = get(kube, &args.name).await?;
            // As `argocd app diff`: exit 1 when there are differences.
            match render::render_diff(&app, style) {
                Some(diff) => {
                    out.write_all(diff.as_bytes())?;
                    Ok(EXIT_DEGRADED)
                }
                None => Ok(EXIT_OK),
            }
        }
        AppCommand::Sync(args) => {
            let user = username(kube).await;
            let build = |app: &Application| operation::sync_request(app, args.prune, &user);
            request(kube, &args.name, build, "sync", args.wait, out, err).await
        }
        AppCommand::Rollback(args) => {
            let user = username(kube).await;
            let build = |app: &Application| operation::rollback_request(app, args.id, &user);
            let what = format!("rollback to history entry {}", args.id);
            request(kube, &args.name, build, &what, args.wait, out, err).await
        }
    }
}

async fn get(kube: &Kube, name: &str) -> Result<Application, PluginError> {
    kube.get::<Application>("Application", name).await
}

/// Who the cluster says the user is (a SelfSubjectReview), for `operation.initiatedBy`.
async fn username(kube: &Kube) -> String {
    let api: Api<SelfSubjectReview> = Api::all(kube.client.clone());
    api.create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()
        .and_then(|r| r.status?.user_info?.username)
        .unwrap_or_else(|| FIELD_MANAGER.to_string())
}

/// Writes the operation request (built from the Application as read, so a conflict with a status
/// write is retried on a fresh read) and, unless `--async`, waits for its outcome: exit 0 when it
/// succeeded, 1 when it failed, 2 when the wait timed out.
async fn request(
    kube: &Kube,
    name: &str,
    build: impl Fn(&Application) -> Result<Value, PluginError>,
    what: &str,
    wait: OperationWait,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, PluginError> {
    let requested_at = Timestamp::now();
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let build = &build;
    let params = &params;
    retry_on_conflict(|| async move {
        let app = get(kube, name).await?;
        let patch = build(&app)?;
        kube.namespaced::<Application>()
            .patch(name, params, &Patch::Merge(patch))
            .await
            .map_err(|e| {
                kube.error(
                    e,
                    "Application",
                    name,
                    &format!("request a {what} of Application {name:?}"),
                )
            })
    })
    .await?;
    writeln!(out, "application '{name}': {what} requested")?;
    if wait.no_wait {
        return Ok(EXIT_OK);
    }
    match wait_for_outcome(kube, name, requested_at, wait.timeout).await? {
        Some((phase, message)) => {
            writeln!(out, "application '{name}': {what} {phase:?}: {message}")?;
            Ok(if phase == OperationPhase::Succeeded {
                EXIT_OK
            } else {
                EXIT_DEGRADED
            })
        }
        None => {
            writeln!(
                err,
                "error: timed out after {} waiting for the {what} of Application {name:?}",
                humantime::format_duration(wait.timeout)
            )?;
            Ok(EXIT_TIMEOUT)
        }
    }
}

/// Watches the Application until the operation is finished; `None` on timeout.
async fn wait_for_outcome(
    kube: &Kube,
    name: &str,
    requested_at: Timestamp,
    timeout: Duration,
) -> Result<Option<(OperationPhase, String)>, PluginError> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut apps = watcher(kube.namespaced::<Application>(), config)
        .default_backoff()
        .applied_objects()
        .boxed();
    let outcome = tokio::time::timeout(timeout, async {
        while let Some(next) = apps.next().await {
            if let Ok(app) = next
                && let Some(done) = operation::finished_operation(&app, requested_at)
            {
                return Some(done);
            }
        }
        None
    })
    .await;
    match outcome {
        Ok(Some(done)) => Ok(Some(done)),
        Ok(None) => Err(PluginError::Api {
            action: format!("watch Application {name:?}"),
            message: "the watch ended".to_string(),
        }),
        Err(_) => Ok(None),
    }
}
