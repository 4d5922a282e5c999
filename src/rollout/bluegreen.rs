//! Blue-green: the new revision runs beside the active one behind the preview Service, then the
//! active Service is switched to it in one write (docs/behaviour.md B1–B6).
//!
//! Progress is kept in the status: `blueGreen.scaleUpPreviewCheckPoint` marks that the gates before
//! the switch (pre-promotion analysis, the `BlueGreenPause`) are passed; `blueGreen.activeSelector`
//! is the revision the active Service selects; `stableRS` moves to the new revision only once the
//! post-promotion analysis has passed, so that a failure can switch back to a revision still
//! running.

use std::time::Duration;

use crate::api::rollout::{BlueGreenStatus, BlueGreenStrategy, PauseReason};
use crate::rollout::action::EventReason;
use crate::rollout::plan::{Ctx, Gate, RunSlot, Verdict};

/// Plans a blue-green Rollout.
pub(crate) fn plan_blue_green(ctx: &mut Ctx<'_>, blue_green: &BlueGreenStrategy) {
    ctx.adopt_first_revision_as_stable();
    let stable = ctx.status.stable_rs.clone().unwrap_or_default();
    if stable == ctx.new_hash() {
        plan_steady(ctx, blue_green);
        return;
    }
    ctx.terminate_runs_of_other_revisions();
    if !ctx.status.aborted() {
        plan_update(ctx, blue_green, &stable);
    }
    if ctx.status.aborted() {
        plan_abort(ctx, blue_green, &stable);
    }
    // B6: a revision between the stable and the current one (e.g. an aborted one) goes at once,
    // unless the active Service still selects it (an update arrived during post-promotion
    // analysis): that one serves until the current revision is promoted. One already waiting for
    // its scale-down deadline waits it out within `scaleDownDelayRevisionLimit`, as in Argo.
    let new_hash = ctx.new_hash();
    let active = ctx
        .status
        .blue_green
        .as_ref()
        .and_then(|b| b.active_selector.clone())
        .unwrap_or_default();
    ctx.scale_down_others_after(&[stable.as_str(), new_hash, active.as_str()], 0);
}

fn bg_status<'s>(ctx: &'s mut Ctx<'_>) -> &'s mut BlueGreenStatus {
    ctx.status.blue_green.get_or_insert_with(Default::default)
}

/// Points `service` at `hash` (when it can serve) and records it in the status.
fn point(ctx: &mut Ctx<'_>, service: Option<&str>, hash: &str, active: bool) {
    let Some(service) = service else {
        return;
    };
    ctx.select(Some(service), hash);
    let selects = ctx.obs.service_hash(service) == Some(hash);
    let can_serve = ctx
        .obs
        .replica_set(hash)
        .is_some_and(|rs| rs.ready_replicas > 0);
    if !(selects || can_serve) {
        return;
    }
    let status = bg_status(ctx);
    let slot = if active {
        &mut status.active_selector
    } else {
        &mut status.preview_selector
    };
    *slot = Some(hash.to_string());
}

/// No update in progress (first deploy, promotion done, or rollback to the stable): both Services
/// select the stable, which runs `replicas`; other revisions go after `scaleDownDelaySeconds` (B3).
fn plan_steady(ctx: &mut Ctx<'_>, blue_green: &BlueGreenStrategy) {
    let stable = ctx.new_hash();
    ctx.status.abort = None;
    ctx.status.aborted_at = None;
    ctx.status.promote_full = None;
    ctx.status.pause_conditions.clear();
    ctx.status.controller_pause = None;
    bg_status(ctx).scale_up_preview_check_point = None;
    ctx.terminate_running_runs(|_| true);
    ctx.scale_to(stable, ctx.replicas());
    point(ctx, Some(&blue_green.active_service), stable, true);
    point(ctx, blue_green.preview_service.as_deref(), stable, false);
    ctx.scale_down_others_after(&[stable], blue_green.scale_down_delay_seconds());
}

/// Before the switch: preview at `previewReplicaCount` (B1), pre-promotion analysis (B4), the pause
/// (B2), scale to full, switch (B3). After it: post-promotion analysis (B5).
fn plan_update(ctx: &mut Ctx<'_>, blue_green: &BlueGreenStrategy, stable: &str) {
    let new_hash = ctx.new_hash();
    let replicas = ctx.replicas();
    let active = ctx
        .status
        .blue_green
        .as_ref()
        .and_then(|b| b.active_selector.clone())
        .unwrap_or_else(|| stable.to_string());
    ctx.scale_to(stable, replicas);
    if active == new_hash {
        ctx.scale_to(new_hash, replicas);
        post_promotion(ctx, blue_green);
        return;
    }
    // `promote --full`, or a rollback within the window, goes straight to the switch without the
    // pauses and analysis (Argo's fast track).
    let fast_track = ctx.status.promote_full() || ctx.rollback_within_window();
    if fast_track {
        ctx.status.pause_conditions.clear();
        ctx.status.controller_pause = None;
    }
    let gates_passed = fast_track
        || ctx
            .status
            .blue_green
            .as_ref()
            .and_then(|b| b.scale_up_preview_check_point)
            == Some(true);
    let target = if gates_passed {
        replicas
    } else {
        blue_green.preview_replica_count(replicas)
    };
    ctx.scale_to(new_hash, target);
    // The preview shows the stable until the new revision can serve (e.g. right after an update
    // replaced the revision it showed).
    let serving = ctx
        .obs
        .new_replica_set()
        .is_some_and(|rs| rs.ready_replicas > 0);
    let preview = if serving { new_hash } else { stable };
    point(ctx, blue_green.preview_service.as_deref(), preview, false);
    let ready = ctx
        .obs
        .new_replica_set()
        .is_some_and(|rs| rs.spec_replicas == target && rs.available_replicas >= target);
    if !ready {
        return;
    }
    if !gates_passed {
        if pre_promotion_gates(ctx, blue_green) == Gate::Wait {
            return;
        }
        bg_status(ctx).scale_up_preview_check_point = Some(true);
        if target < replicas {
            ctx.scale_to(new_hash, replicas);
            return;
        }
    }
    switch_active(ctx, blue_green);
}

/// Pre-promotion analysis must succeed (B4), then the pause: until promoted when
/// `autoPromotionEnabled` is false, for `autoPromotionSeconds` otherwise (B2).
fn pre_promotion_gates(ctx: &mut Ctx<'_>, blue_green: &BlueGreenStrategy) -> Gate {
    if let Some(pre) = &blue_green.pre_promotion_analysis {
        match ctx.analysis_gate(RunSlot::PrePromotion, None, pre) {
            Verdict::Successful => {}
            Verdict::Running => return Gate::Wait,
            Verdict::Failed => {
                ctx.status.abort = Some(true);
                return Gate::Wait;
            }
            Verdict::Inconclusive => {
                if ctx.pause_gate(PauseReason::InconclusiveAnalysisRun, None) == Gate::Wait {
                    return Gate::Wait;
                }
            }
        }
    }
    if ctx.spec().paused() {
        return Gate::Wait;
    }
    if !blue_green.auto_promotion_enabled() {
        return ctx.pause_gate(PauseReason::BlueGreenPause, None);
    }
    let seconds = u64::try_from(blue_green.auto_promotion_seconds()).unwrap_or(0);
    if seconds > 0 {
        return ctx.pause_gate(
            PauseReason::BlueGreenPause,
            Some(Duration::from_secs(seconds)),
        );
    }
    Gate::Pass
}

/// B3: the active Service is switched to the new revision in one write.
fn switch_active(ctx: &mut Ctx<'_>, blue_green: &BlueGreenStrategy) {
    let new_hash = ctx.new_hash();
    point(ctx, Some(&blue_green.active_service), new_hash, true);
    ctx.event(
        EventReason::SwitchService,
        format!(
            "Switched selector for service '{}' to '{new_hash}'",
            blue_green.active_service
        ),
    );
    ctx.progressed = true;
    post_promotion(ctx, blue_green);
}

/// B5: after the switch, the post-promotion analysis decides; the previous revision keeps running
/// until it passes. Failure aborts, which switches the active Service back.
fn post_promotion(ctx: &mut Ctx<'_>, blue_green: &BlueGreenStrategy) {
    let analysed = !(ctx.status.promote_full() || ctx.rollback_within_window());
    if let Some(post) = blue_green
        .post_promotion_analysis
        .as_ref()
        .filter(|_| analysed)
    {
        match ctx.analysis_gate(RunSlot::PostPromotion, None, post) {
            Verdict::Successful => {}
            Verdict::Running => return,
            Verdict::Failed => {
                ctx.status.abort = Some(true);
                return;
            }
            Verdict::Inconclusive => {
                if ctx.pause_gate(PauseReason::InconclusiveAnalysisRun, None) == Gate::Wait {
                    return;
                }
            }
        }
    }
    let new_hash = ctx.new_hash();
    ctx.status.stable_rs = Some(new_hash.to_string());
    ctx.event(
        EventReason::RolloutCompleted,
        format!(
            "Rollout completed update to revision {} ({new_hash})",
            ctx.new_revision()
        ),
    );
    plan_steady(ctx, blue_green);
}

/// B4/B5/B6: both Services back on the stable (switching the active back if it had moved), the
/// stable at full size, the new revision scaled down after `abortScaleDownDelaySeconds` (0 keeps
/// it).
fn plan_abort(ctx: &mut Ctx<'_>, blue_green: &BlueGreenStrategy, stable: &str) {
    ctx.acknowledge_abort();
    bg_status(ctx).scale_up_preview_check_point = None;
    let replicas = ctx.replicas();
    ctx.scale_to(stable, replicas);
    let switched = ctx
        .status
        .blue_green
        .as_ref()
        .and_then(|b| b.active_selector.as_deref())
        != Some(stable);
    point(ctx, Some(&blue_green.active_service), stable, true);
    if switched {
        ctx.event(
            EventReason::SwitchService,
            format!(
                "Switched selector for service '{}' back to '{stable}'",
                blue_green.active_service
            ),
        );
    }
    point(ctx, blue_green.preview_service.as_deref(), stable, false);
    if let Some(rs) = ctx.obs.new_replica_set() {
        let delay = blue_green.abort_scale_down_delay_seconds();
        ctx.scale_down_after(rs, (delay > 0).then_some(delay));
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::api::analysis::AnalysisPhase;
    use crate::api::rollout::RolloutPhase;
    use crate::rollout::action::{Action, Plan};
    use crate::rollout::observed::{AnalysisType, Observed};
    use crate::rollout::plan::plan;
    use crate::rollout::plan::testkit::*;

    fn active_switches(plans: &[Plan]) -> Vec<String> {
        plans
            .iter()
            .flat_map(|p| &p.actions)
            .filter_map(|a| match a {
                Action::SetServiceSelector { service, hash } if service == "web-active" => {
                    Some(hash.clone())
                }
                _ => None,
            })
            .collect()
    }

    fn deployed_bg(edit: impl FnOnce(&mut BlueGreenStrategy)) -> Observed {
        let mut rollout = blue_green(4);
        edit(bg_spec(&mut rollout));
        deployed(rollout)
    }

    #[test]
    fn b1_new_revision_scaled_to_preview_count_preview_selects_it_active_keeps_old() {
        let mut obs = deployed_bg(|bg| {
            bg.preview_replica_count = Some(2);
            bg.auto_promotion_enabled = Some(false);
        });
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(spec_replicas(&obs, "h2"), 2);
        assert_eq!(spec_replicas(&obs, "h1"), 4);
        assert_eq!(obs.service_hash("web-preview"), Some("h2"));
        assert_eq!(obs.service_hash("web-active"), Some("h1"));
        let s = status(&obs);
        assert_eq!(
            s.blue_green.unwrap().preview_selector.as_deref(),
            Some("h2")
        );
        assert_eq!(phase(&obs), RolloutPhase::Paused);
    }

    #[test]
    fn b2_auto_promotion_disabled_waits_for_promote_with_reason_blue_green_pause() {
        let mut obs = deployed_bg(|bg| bg.auto_promotion_enabled = Some(false));
        update(&mut obs, "h2");
        settle(&mut obs);
        let reasons: Vec<_> = status(&obs)
            .pause_conditions
            .iter()
            .map(|c| c.reason)
            .collect();
        assert_eq!(reasons, vec![PauseReason::BlueGreenPause]);
        advance(&mut obs, 3600);
        assert!(active_switches(&[plan(&obs)]).is_empty());
        user_promotes(&mut obs);
        let plans = settle(&mut obs);
        assert_eq!(active_switches(&plans), vec!["h2"]);
        assert_eq!(status(&obs).stable_rs.as_deref(), Some("h2"));
    }

    #[test]
    fn b2_promote_full_skips_the_pause_and_the_analysis_and_switches() {
        let mut obs = deployed_bg(|bg| {
            bg.auto_promotion_enabled = Some(false);
            bg.pre_promotion_analysis = Some(analysis("pre"));
            bg.post_promotion_analysis = Some(analysis("post"));
        });
        update(&mut obs, "h2");
        settle(&mut obs);
        assert!(
            obs.analysis_runs
                .iter()
                .any(|r| r.analysis_type == AnalysisType::PrePromotion)
        );
        edit_status(&mut obs, |s| s.promote_full = Some(true));
        let plans = settle(&mut obs);
        assert_eq!(active_switches(&plans), vec!["h2"]);
        let s = status(&obs);
        assert_eq!(s.stable_rs.as_deref(), Some("h2"));
        assert_eq!(s.promote_full, None);
        assert!(s.pause_conditions.is_empty());
        assert!(
            obs.analysis_runs
                .iter()
                .all(|r| r.analysis_type != AnalysisType::PostPromotion)
        );
        assert_eq!(phase(&obs), RolloutPhase::Healthy);
    }

    #[test]
    fn b2_auto_promotion_seconds_promotes_after_that_delay_and_not_before() {
        let mut obs = deployed_bg(|bg| bg.auto_promotion_seconds = Some(60));
        update(&mut obs, "h2");
        let plans = settle(&mut obs);
        assert!(
            plans
                .iter()
                .any(|p| p.requeue_after == Some(Duration::from_secs(60)))
        );
        advance(&mut obs, 59);
        assert!(active_switches(&settle(&mut obs)).is_empty());
        advance(&mut obs, 1);
        assert_eq!(active_switches(&settle(&mut obs)), vec!["h2"]);
    }

    #[test]
    fn b3_promotion_switches_active_in_one_write_and_scales_old_down_after_delay() {
        let mut obs = deployed_bg(|bg| bg.preview_replica_count = Some(1));
        update(&mut obs, "h2");
        let plans = settle(&mut obs);
        assert_eq!(active_switches(&plans), vec!["h2"]);
        assert_eq!(
            spec_replicas(&obs, "h2"),
            4,
            "scaled to full before the switch"
        );
        assert_eq!(phase(&obs), RolloutPhase::Healthy);
        assert_eq!(
            spec_replicas(&obs, "h1"),
            4,
            "kept for scaleDownDelaySeconds"
        );
        advance(&mut obs, 29);
        settle(&mut obs);
        assert_eq!(spec_replicas(&obs, "h1"), 4);
        advance(&mut obs, 1);
        settle(&mut obs);
        assert_eq!(spec_replicas(&obs, "h1"), 0);
        assert_eq!(obs.service_hash("web-preview"), Some("h2"));
        assert_eq!(
            status(&obs).current_step_index,
            None,
            "blue-green has no steps"
        );
    }

    /// Two promotions within `scaleDownDelaySeconds`: without a limit both old revisions wait; with
    /// `scaleDownDelayRevisionLimit: 1` only the newest old one does, the older goes at once.
    #[test]
    fn b3_scale_down_delay_revision_limit_keeps_only_the_newest_old_revisions_waiting() {
        for (limit, h1_after_second_promotion) in [(None, 4), (Some(1), 0), (Some(2), 4)] {
            let mut obs = deployed_bg(|bg| bg.scale_down_delay_revision_limit = limit);
            update(&mut obs, "h2");
            settle(&mut obs);
            assert_eq!(spec_replicas(&obs, "h1"), 4, "limit {limit:?}");
            advance(&mut obs, 10);
            update(&mut obs, "h3");
            settle(&mut obs);
            assert_eq!(status(&obs).stable_rs.as_deref(), Some("h3"));
            assert_eq!(spec_replicas(&obs, "h2"), 4, "limit {limit:?}");
            assert_eq!(
                spec_replicas(&obs, "h1"),
                h1_after_second_promotion,
                "limit {limit:?}"
            );
        }
    }

    #[test]
    fn b3_a_limit_above_the_revision_history_limit_is_invalid_spec() {
        let mut rollout = blue_green(2);
        bg_spec(&mut rollout).scale_down_delay_revision_limit = Some(3);
        rollout.spec.revision_history_limit = Some(2);
        let error = rollout.spec.validate().unwrap_err().to_string();
        assert_eq!(
            error,
            "spec.strategy.blueGreen.scaleDownDelayRevisionLimit is invalid: This rollout's revision history limit can not be smaller than the rollout's scale down limit"
        );
        rollout.spec.revision_history_limit = Some(3);
        assert_eq!(rollout.spec.validate(), Ok(()));
    }

    #[test]
    fn b4_pre_promotion_analysis_must_succeed_before_the_switch() {
        for (result, switched) in [
            (AnalysisPhase::Successful, true),
            (AnalysisPhase::Failed, false),
        ] {
            let mut obs = deployed_bg(|bg| bg.pre_promotion_analysis = Some(analysis("smoke")));
            update(&mut obs, "h2");
            let plans = settle(&mut obs);
            assert!(
                active_switches(&plans).is_empty(),
                "not before the analysis"
            );
            assert_eq!(
                obs.analysis_runs[0].analysis_type,
                AnalysisType::PrePromotion
            );
            finish_run(&mut obs, AnalysisType::PrePromotion, result);
            let plans = settle(&mut obs);
            if switched {
                assert_eq!(active_switches(&plans), vec!["h2"]);
                assert_eq!(phase(&obs), RolloutPhase::Healthy);
            } else {
                assert!(active_switches(&plans).is_empty(), "active untouched");
                assert_eq!(obs.service_hash("web-active"), Some("h1"));
                assert_eq!(phase(&obs), RolloutPhase::Degraded);
                assert!(status(&obs).aborted());
            }
        }
    }

    #[test]
    fn b5_post_promotion_failure_switches_active_back_and_degrades() {
        let mut obs = deployed_bg(|bg| bg.post_promotion_analysis = Some(analysis("slo")));
        update(&mut obs, "h2");
        let plans = settle(&mut obs);
        assert_eq!(active_switches(&plans), vec!["h2"]);
        assert_eq!(
            status(&obs).stable_rs.as_deref(),
            Some("h1"),
            "not stable before the analysis"
        );
        assert_eq!(
            spec_replicas(&obs, "h1"),
            4,
            "the previous revision keeps running"
        );
        finish_run(&mut obs, AnalysisType::PostPromotion, AnalysisPhase::Failed);
        let plans = settle(&mut obs);
        assert_eq!(active_switches(&plans), vec!["h1"]);
        assert_eq!(phase(&obs), RolloutPhase::Degraded);
        assert!(status(&obs).message.unwrap().contains("success-rate"));
    }

    #[test]
    fn b5_an_update_during_post_promotion_analysis_keeps_the_active_revision_serving() {
        let mut obs = deployed_bg(|bg| {
            bg.post_promotion_analysis = Some(analysis("slo"));
            bg.auto_promotion_enabled = Some(false);
        });
        update(&mut obs, "h2");
        settle(&mut obs);
        user_promotes(&mut obs);
        settle(&mut obs);
        assert_eq!(obs.service_hash("web-active"), Some("h2"));
        update(&mut obs, "h3");
        settle(&mut obs);
        assert_eq!(obs.service_hash("web-active"), Some("h2"));
        assert_eq!(
            spec_replicas(&obs, "h2"),
            4,
            "the active revision keeps serving"
        );
        assert_eq!(obs.service_hash("web-preview"), Some("h3"));
        user_promotes(&mut obs);
        settle(&mut obs);
        finish_run(
            &mut obs,
            AnalysisType::PostPromotion,
            AnalysisPhase::Successful,
        );
        settle(&mut obs);
        assert_eq!(status(&obs).stable_rs.as_deref(), Some("h3"));
        assert_eq!(obs.service_hash("web-active"), Some("h3"));
        advance(&mut obs, 30);
        settle(&mut obs);
        assert_eq!(
            (spec_replicas(&obs, "h1"), spec_replicas(&obs, "h2")),
            (0, 0)
        );
    }

    #[test]
    fn b6_abort_scales_preview_down_after_delay_and_a_later_revision_proceeds() {
        let mut obs = deployed_bg(|bg| bg.auto_promotion_enabled = Some(false));
        update(&mut obs, "h2");
        settle(&mut obs);
        edit_status(&mut obs, |s| s.abort = Some(true));
        let plans = settle(&mut obs);
        assert_eq!(obs.service_hash("web-preview"), Some("h1"));
        assert_eq!(
            spec_replicas(&obs, "h2"),
            4,
            "kept for abortScaleDownDelaySeconds"
        );
        assert!(
            plans
                .iter()
                .any(|p| p.requeue_after == Some(Duration::from_secs(30)))
        );
        advance(&mut obs, 30);
        settle(&mut obs);
        assert_eq!(spec_replicas(&obs, "h2"), 0);
        assert_eq!(phase(&obs), RolloutPhase::Degraded);

        update(&mut obs, "h3");
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Paused);
        user_promotes(&mut obs);
        settle(&mut obs);
        assert_eq!(status(&obs).stable_rs.as_deref(), Some("h3"));
        assert_eq!(obs.service_hash("web-active"), Some("h3"));
        assert_eq!(spec_replicas(&obs, "h2"), 0);
    }
}
