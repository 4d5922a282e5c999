//! The Rollout control commands: promote, abort, retry, pause, resume, restart, undo, set image.

use std::io::Write;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{ListParams, Patch, PatchParams, PostParams};

use crate::plugin::actions::{self, Patches};
use crate::plugin::cli::{AbortArgs, PromoteArgs, SetImageArgs, UndoArgs};
use crate::plugin::client::{Kube, retry_on_conflict};
use crate::plugin::error::{EXIT_OK, PluginError};
use crate::plugin::undo::undo_target;

/// The field manager of everything the plugin writes, so `managedFields` shows who changed what.
pub const FIELD_MANAGER: &str = crate::api::keys::PLUGIN_FIELD_MANAGER;

// Generic over the writer (not `dyn Write`) so that the dashboard, which runs these from a
// multi-threaded server, gets `Send` futures when it writes into a buffer.
pub async fn promote<W: Write + ?Sized>(
    kube: &Kube,
    args: &PromoteArgs,
    out: &mut W,
) -> Result<u8, PluginError> {
    let rollout = kube.get_rollout(&args.name).await?;
    let patches = if args.full {
        actions::promote_full(&rollout)
    } else {
        actions::promote(&rollout)
    };
    if patches.is_empty() {
        writeln!(
            out,
            "rollout '{}' is not paused: nothing to promote (promote --full skips the remaining steps)",
            args.name
        )?;
        return Ok(EXIT_OK);
    }
    apply(kube, &args.name, &patches).await?;
    let how = if args.full {
        "fully promoted"
    } else {
        "promoted"
    };
    writeln!(out, "rollout '{}' {how}", args.name)?;
    Ok(EXIT_OK)
}

pub async fn abort<W: Write + ?Sized>(
    kube: &Kube,
    args: &AbortArgs,
    out: &mut W,
) -> Result<u8, PluginError> {
    let rollout = kube.get_rollout(&args.name).await?;
    if args.revert {
        // Checked before anything is written: a half-done `abort --revert` would be worse than none.
        let patches = actions::abort_and_revert(&rollout).map_err(PluginError::Unsupported)?;
        apply(kube, &args.name, &patches).await?;
        writeln!(
            out,
            "rollout '{}' aborted; Sluice will revert its commit in Git",
            args.name
        )?;
        return Ok(EXIT_OK);
    }
    apply(kube, &args.name, &actions::abort()).await?;
    writeln!(out, "rollout '{}' aborted", args.name)?;
    Ok(EXIT_OK)
}

/// Applies a control action that needs no more than the Rollout's existence: retry, pause, resume.
pub async fn simple<W: Write + ?Sized>(
    kube: &Kube,
    name: &str,
    patches: Patches,
    done: &str,
    out: &mut W,
) -> Result<u8, PluginError> {
    kube.get_rollout(name).await?;
    apply(kube, name, &patches).await?;
    writeln!(out, "rollout '{name}' {done}")?;
    Ok(EXIT_OK)
}

pub async fn restart<W: Write + ?Sized>(
    kube: &Kube,
    name: &str,
    out: &mut W,
) -> Result<u8, PluginError> {
    kube.get_rollout(name).await?;
    let now = Timestamp::now();
    apply(kube, name, &actions::restart(now)).await?;
    writeln!(
        out,
        "rollout '{name}' restarts its pods (restartAt {})",
        now.strftime("%Y-%m-%dT%H:%M:%SZ")
    )?;
    Ok(EXIT_OK)
}

pub async fn set_image(
    kube: &Kube,
    args: &SetImageArgs,
    out: &mut dyn Write,
) -> Result<u8, PluginError> {
    retry_on_conflict(|| async move {
        let rollout = kube.get_rollout(&args.name).await?;
        let patch = actions::set_image(&rollout, &args.container_image)?;
        kube.rollouts()
            .patch(&args.name, &patch_params(), &Patch::Merge(patch))
            .await
            .map_err(|e| {
                kube.error(
                    e,
                    "Rollout",
                    &args.name,
                    &format!("set the image of Rollout {:?}", args.name),
                )
            })
    })
    .await?;
    writeln!(
        out,
        "rollout '{}' image updated: {}={}",
        args.name, args.container_image.container, args.container_image.image
    )?;
    Ok(EXIT_OK)
}

/// Puts the template of an earlier revision back in `spec.template`. A replace (not a merge patch)
/// so that fields the old template lacks are removed, guarded by the `resourceVersion` read.
pub async fn undo(kube: &Kube, args: &UndoArgs, out: &mut dyn Write) -> Result<u8, PluginError> {
    let revision = retry_on_conflict(|| async move {
        let mut rollout = kube.get_rollout(&args.name).await?;
        let replica_sets = kube
            .namespaced::<ReplicaSet>()
            .list(&ListParams::default())
            .await
            .map_err(|e| kube.error(e, "ReplicaSet", "", "list ReplicaSets"))?;
        let target = undo_target(&rollout, &replica_sets.items, args.to_revision)?;
        rollout.spec.template = Some(target.template);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        kube.rollouts()
            .replace(&args.name, &params, &rollout)
            .await
            .map_err(|e| {
                kube.error(
                    e,
                    "Rollout",
                    &args.name,
                    &format!("undo Rollout {:?}", args.name),
                )
            })?;
        Ok(target.revision)
    })
    .await?;
    writeln!(
        out,
        "rollout '{}' rolled back to revision {revision}",
        args.name
    )?;
    Ok(EXIT_OK)
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

/// Writes the status patch (on the `status` subresource) and then the spec patch.
async fn apply(kube: &Kube, name: &str, patches: &Patches) -> Result<(), PluginError> {
    let api = kube.rollouts();
    let action = format!("patch Rollout {name:?}");
    if let Some(status) = &patches.status {
        api.patch_status(name, &patch_params(), &Patch::Merge(status))
            .await
            .map_err(|e| kube.error(e, "Rollout", name, &action))?;
    }
    if let Some(spec) = &patches.spec {
        api.patch(name, &patch_params(), &Patch::Merge(spec))
            .await
            .map_err(|e| kube.error(e, "Rollout", name, &action))?;
    }
    Ok(())
}
