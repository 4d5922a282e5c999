//! `app list|get|sync|diff|history|rollback`: Applications, with Argo CD's verbs. Sync and rollback
//! are requests in the Application's top-level `operation` field, which the controller carries out
//! and records in `status.operationState`; the commands wait for that outcome unless `--async`.

pub mod manage;
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
use crate::plugin::cli::{AppCommand, AppCreateArgs, OperationWait};
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
            let request_for = operation::SyncRequest {
                prune: args.prune,
                revision: args.revision.as_deref(),
                resources: &args.resources,
                dry_run: args.dry_run,
            };
            let build = |app: &Application| operation::sync_request(app, &request_for, &user);
            request(kube, &args.name, build, "sync", args.wait, out, err).await
        }
        AppCommand::Wait(args) => {
            let wanted = manage::WaitFor::new(args.health, args.sync, args.operation);
            wait_until(kube, &args.name, wanted, args.timeout, out, err).await
        }
        AppCommand::Create(args) => create(kube, args, out).await,
        AppCommand::Set(args) => {
            let params = patch_params();
            retry_on_conflict(|| async {
                let app = get(kube, &args.name).await?;
                let spec = manage::spec_patch(&args.spec, Some(&app))?;
                if spec.as_object().is_some_and(|s| s.is_empty()) {
                    return Err(PluginError::Invalid(
                        "app set: nothing to set (give --repo, --path, --revision, --dest-namespace, --sync-policy, --helm-set, ...)"
                            .into(),
                    ));
                }
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": app.metadata.resource_version},
                    "spec": spec
                });
                kube.namespaced::<Application>()
                    .patch(&args.name, &params, &Patch::Merge(patch))
                    .await
                    .map_err(|e| kube.error(e, "Application", &args.name, "update Application"))
            })
            .await?;
            writeln!(out, "application '{}' updated", args.name)?;
            Ok(EXIT_OK)
        }
        AppCommand::Delete(args) => {
            delete(kube, &args.name, args.cascade, args.wait, out, err).await
        }
        AppCommand::TerminateOp(args) => terminate(kube, &args.name, out).await,
        AppCommand::Rollback(args) => {
            let user = username(kube).await;
            let build = |app: &Application| operation::rollback_request(app, args.id, &user);
            let what = format!("rollback to history entry {}", args.id);
            request(kube, &args.name, build, &what, args.wait, out, err).await
        }
    }
}

/// `app terminate-op`: asks the controller to stop the operation in progress.
async fn terminate(kube: &Kube, name: &str, out: &mut dyn Write) -> Result<u8, PluginError> {
    let params = patch_params();
    retry_on_conflict(|| async {
        let app = get(kube, name).await?;
        let patch = operation::terminate_request(&app)?;
        kube.namespaced::<Application>()
            .patch_status(name, &params, &Patch::Merge(patch))
            .await
            .map_err(|e| kube.error(e, "Application", name, "terminate the operation"))
    })
    .await?;
    writeln!(out, "Application '{name}' operation terminating")?;
    Ok(EXIT_OK)
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

/// `app create`: from a manifest file, or from the flags.
async fn create(kube: &Kube, args: AppCreateArgs, out: &mut dyn Write) -> Result<u8, PluginError> {
    let app = match (&args.file, &args.name) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                PluginError::Invalid(format!("cannot read {}: {e}", file.display()))
            })?;
            manage::application_from_manifest(&text, &kube.namespace)?
        }
        (None, Some(name)) => manage::new_application(name, &kube.namespace, &args.spec)?,
        (None, None) => {
            return Err(PluginError::Invalid(
                "app create: give the Application's name and flags, or -f FILE".into(),
            ));
        }
    };
    let app: Application = serde_json::from_value(app)
        .map_err(|e| PluginError::Invalid(format!("not a valid Application: {e}")))?;
    let name = app.metadata.name.clone().unwrap_or_default();
    let namespace = app
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| kube.namespace.clone());
    Api::<Application>::namespaced(kube.client.clone(), &namespace)
        .create(&PostParams::default(), &app)
        .await
        .map_err(|e| kube.error(e, "Application", &name, "create Application"))?;
    writeln!(out, "application '{name}' created")?;
    Ok(EXIT_OK)
}

/// `app delete`: the finalizers `--cascade` asks for, the delete, and unless `--async` the wait
/// until the Application (and with it, for a cascade, what it deployed) is gone.
async fn delete(
    kube: &Kube,
    name: &str,
    cascade: bool,
    wait: OperationWait,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, PluginError> {
    let api = kube.namespaced::<Application>();
    let params = patch_params();
    let params = &params;
    let api_ref = &api;
    retry_on_conflict(|| async move {
        let app = get(kube, name).await?;
        let Some(finalizers) = manage::finalizers_for_delete(&app, cascade) else {
            return Ok(());
        };
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": app.metadata.resource_version, "finalizers": finalizers}
        });
        api_ref
            .patch(name, params, &Patch::Merge(patch))
            .await
            .map(|_| ())
            .map_err(|e| kube.error(e, "Application", name, "set the Application's finalizers"))
    })
    .await?;
    api.delete(name, &kube::api::DeleteParams::default())
        .await
        .map_err(|e| kube.error(e, "Application", name, "delete Application"))?;
    writeln!(
        out,
        "application '{name}' deleted{}",
        if cascade {
            " (with what it deployed)"
        } else {
            " (what it deployed stays)"
        }
    )?;
    if wait.no_wait {
        return Ok(EXIT_OK);
    }
    let gone = tokio::time::timeout(wait.timeout, async {
        loop {
            match api.get_opt(name).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(500)).await,
                Err(e) => return Err(kube.error(e, "Application", name, "read Application")),
            }
        }
    })
    .await;
    match gone {
        Ok(result) => result.map(|()| EXIT_OK),
        Err(_) => {
            writeln!(
                err,
                "error: timed out after {} waiting for Application {name:?} to be gone",
                humantime::format_duration(wait.timeout)
            )?;
            Ok(EXIT_TIMEOUT)
        }
    }
}

/// `app wait`: watches the Application until what is waited for holds (exit 0), it is Degraded
/// while health is waited for (exit 1), or the timeout (exit 2).
async fn wait_until(
    kube: &Kube,
    name: &str,
    wanted: manage::WaitFor,
    timeout: Duration,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, PluginError> {
    get(kube, name).await?;
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut apps = watcher(kube.namespaced::<Application>(), config)
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut last = String::from("not read yet");
    let outcome = tokio::time::timeout(timeout, async {
        while let Some(next) = apps.next().await {
            let Ok(app) = next else { continue };
            match manage::wait_state(&app, wanted) {
                manage::WaitState::Waiting(now) => last = now,
                done => return Some(done),
            }
        }
        None
    })
    .await;
    match outcome {
        Ok(Some(manage::WaitState::Done(summary))) => {
            writeln!(out, "application '{name}': {summary}")?;
            Ok(EXIT_OK)
        }
        Ok(Some(manage::WaitState::Degraded(summary))) => {
            writeln!(err, "error: application '{name}' is Degraded: {summary}")?;
            Ok(EXIT_DEGRADED)
        }
        Ok(_) => Err(PluginError::Api {
            action: format!("watch Application {name:?}"),
            message: "the watch ended".to_string(),
        }),
        Err(_) => {
            writeln!(
                err,
                "error: timed out after {} waiting for Application {name:?} (now {last})",
                humantime::format_duration(timeout)
            )?;
            Ok(EXIT_TIMEOUT)
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
