//! Which managed routes (`setHeaderRoute` / `setMirrorRoute`) are in force, decided purely from
//! the spec and the step reached (as Argo Rollouts' `reconcileTrafficRouting`).
//!
//! The routes are not remembered anywhere but in the router's objects: the planner derives the
//! wanted set from the steps already completed, the router compares it with the live objects and
//! writes the difference. So a restarted controller finds the same set, and a route step never
//! runs twice. As in Argo the set is empty once the update ends (fully promoted, `promote --full`),
//! on abort, and while the canary has no available pod (a route to it would answer 503).

use crate::api::rollout::{CanaryStepKind, CanaryStrategy};
use crate::api::routes::{SetHeaderRoute, SetMirrorRoute};
use crate::rollout::action::Action;
use crate::rollout::plan::Ctx;

/// A managed route in force: what the last step naming it asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActiveRoute {
    /// Requests matching the headers go to the canary only.
    Header(SetHeaderRoute),
    /// A share of the requests matching is copied to the canary.
    Mirror(SetMirrorRoute),
}

impl ActiveRoute {
    /// The route's name (an entry of `managedRoutes`).
    pub fn name(&self) -> &str {
        match self {
            ActiveRoute::Header(r) => &r.name,
            ActiveRoute::Mirror(r) => &r.name,
        }
    }
}

/// The routes set by the first `completed` steps, in `managedRoutes` order (their precedence). A
/// step without `match` removes its route; a later step of the same name replaces it.
pub fn routes_after(canary: &CanaryStrategy, completed: i32) -> Vec<ActiveRoute> {
    let Some(managed) = canary
        .traffic_routing
        .as_ref()
        .and_then(|t| t.managed_routes.as_ref())
    else {
        return Vec::new();
    };
    let end = usize::try_from(completed)
        .unwrap_or(0)
        .min(canary.steps.len());
    let mut in_force: Vec<ActiveRoute> = Vec::new();
    for step in &canary.steps[..end] {
        let (name, route) = match step.kind() {
            Some(CanaryStepKind::SetHeaderRoute(r)) => (
                &r.name,
                (!r.matches.is_empty()).then(|| ActiveRoute::Header(r.clone())),
            ),
            Some(CanaryStepKind::SetMirrorRoute(r)) => (
                &r.name,
                (!r.matches.is_empty()).then(|| ActiveRoute::Mirror(r.clone())),
            ),
            _ => continue,
        };
        in_force.retain(|r| r.name() != name);
        in_force.extend(route);
    }
    managed
        .iter()
        .filter_map(|m| in_force.iter().find(|r| r.name() == m.name).cloned())
        .collect()
}

/// Asks the router for the routes wanted now, when the Rollout has managed routes. Nothing
/// records what the router last wrote, so the request is repeated on every reconcile of an update
/// (and of the one that ends it); the router writes only what differs from its live objects. A
/// Rollout that was and stays fully promoted has none to ask for.
pub(crate) fn set_routes(ctx: &mut Ctx<'_>, canary: &CanaryStrategy, routes: Vec<ActiveRoute>) {
    let has_managed = canary
        .traffic_routing
        .as_ref()
        .and_then(|t| t.managed_routes.as_ref())
        .is_some_and(|m| !m.is_empty());
    let current = Some(ctx.new_hash());
    // A template reverted to the stable one mid-update (R7) was not promoted before: its routes go.
    let stays_promoted = ctx.old.stable_rs.as_deref() == current
        && ctx.old.current_pod_hash.as_deref() == current
        && ctx.status.stable_rs.as_deref() == current;
    if has_managed && canary.has_traffic_routing() && !(stays_promoted && routes.is_empty()) {
        ctx.actions.push(Action::SetManagedRoutes { routes });
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::api::rollout::Rollout;

    fn canary(yaml_steps: &str, managed: &str) -> CanaryStrategy {
        let yaml = format!(
            r#"
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {{name: web}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template: {{metadata: {{labels: {{app: web}}}}, spec: {{containers: [{{name: c, image: i}}]}}}}
  strategy:
    canary:
      stableService: s
      canaryService: c
      trafficRouting:
        managedRoutes: {managed}
        plugins:
          argoproj-labs/gatewayAPI: {{httpRoute: r}}
      steps: {yaml_steps}
"#
        );
        let r: Rollout = serde_saphyr::from_str(&yaml).unwrap();
        r.spec.strategy.canary.unwrap()
    }

    fn names(routes: &[ActiveRoute]) -> Vec<&str> {
        routes.iter().map(ActiveRoute::name).collect()
    }

    const STEPS: &str = r#"
        - setWeight: 10
        - setHeaderRoute: {name: h, match: [{headerName: x, headerValue: {exact: "1"}}]}
        - setMirrorRoute: {name: m, percentage: 30, match: [{method: {exact: GET}}]}
        - pause: {}
        - setHeaderRoute: {name: h}
        - setWeight: 50
"#;

    #[test]
    fn routes_follow_the_completed_steps_in_managed_order() {
        let c = canary(STEPS, "[{name: m}, {name: h}]");
        assert_eq!(names(&routes_after(&c, 0)), Vec::<&str>::new());
        assert_eq!(names(&routes_after(&c, 1)), Vec::<&str>::new());
        assert_eq!(names(&routes_after(&c, 2)), vec!["h"]);
        // Precedence is managedRoutes' order, not the steps'.
        assert_eq!(names(&routes_after(&c, 3)), vec!["m", "h"]);
        assert_eq!(names(&routes_after(&c, 4)), vec!["m", "h"]);
        // A header step without match removes its route.
        assert_eq!(names(&routes_after(&c, 5)), vec!["m"]);
        assert_eq!(names(&routes_after(&c, 99)), vec!["m"]);
        let ActiveRoute::Mirror(m) = &routes_after(&c, 3)[0] else {
            panic!("mirror expected");
        };
        assert_eq!(m.percentage(), 30);
    }

    #[test]
    fn a_later_step_replaces_a_route_of_the_same_name() {
        let c = canary(
            r#"
        - setHeaderRoute: {name: h, match: [{headerName: x, headerValue: {exact: "1"}}]}
        - setHeaderRoute: {name: h, match: [{headerName: y, headerValue: {prefix: "a"}}]}
"#,
            "[{name: h}]",
        );
        let routes = routes_after(&c, 2);
        let [ActiveRoute::Header(h)] = routes.as_slice() else {
            panic!("{routes:?}");
        };
        assert_eq!(h.matches[0].header_name, "y");
    }

    mod planned {
        use pretty_assertions::assert_eq;

        use crate::api::rollout::{CanaryStep, RolloutPhase};
        use crate::api::routes::{
            HeaderRoutingMatch, ManagedRoute, SetHeaderRoute, SetMirrorRoute, StringMatch,
        };
        use crate::rollout::action::{Action, Plan};
        use crate::rollout::observed::Observed;
        use crate::rollout::plan::testkit::*;

        fn header_step(name: &str) -> CanaryStep {
            CanaryStep {
                set_header_route: Some(SetHeaderRoute {
                    name: name.into(),
                    matches: vec![HeaderRoutingMatch {
                        header_name: "x-canary".into(),
                        header_value: Some(StringMatch {
                            exact: Some("yes".into()),
                            ..StringMatch::default()
                        }),
                    }],
                }),
                ..CanaryStep::default()
            }
        }

        fn mirror_step(name: &str) -> CanaryStep {
            CanaryStep {
                set_mirror_route: Some(SetMirrorRoute {
                    name: name.into(),
                    matches: vec![Default::default()],
                    percentage: Some(40),
                }),
                ..CanaryStep::default()
            }
        }

        /// setWeight 20, header route, pause, mirror route, pause, setWeight 50, pause.
        fn rollout_at_first_pause() -> Observed {
            let steps = vec![
                weight(20),
                header_step("h"),
                pause(),
                mirror_step("m"),
                pause(),
                weight(50),
                pause(),
            ];
            let mut r = canary_with_router(4, steps);
            let routing = canary_spec(&mut r).traffic_routing.as_mut().unwrap();
            routing.managed_routes = Some(vec![
                ManagedRoute { name: "m".into() },
                ManagedRoute { name: "h".into() },
            ]);
            assert_eq!(r.spec.validate(), Ok(()));
            let mut obs = deployed(r);
            update(&mut obs, "h2");
            settle(&mut obs);
            obs
        }

        /// The routes asked of the router by the last plan that asked.
        fn routes_asked(plans: &[Plan]) -> Option<Vec<String>> {
            plans.iter().rev().find_map(|p| {
                p.actions.iter().rev().find_map(|a| match a {
                    Action::SetManagedRoutes { routes } => {
                        Some(routes.iter().map(|r| r.name().to_string()).collect())
                    }
                    _ => None,
                })
            })
        }

        #[test]
        fn routes_are_added_step_by_step_and_removed_at_promotion() {
            let mut obs = rollout_at_first_pause();
            assert_eq!(status(&obs).current_step_index, Some(2));
            assert_eq!(routes_asked(&[step(&mut obs)]), Some(vec!["h".into()]));
            user_promotes(&mut obs);
            let plans = settle(&mut obs);
            assert_eq!(status(&obs).current_step_index, Some(4));
            assert_eq!(routes_asked(&plans), Some(vec!["m".into(), "h".into()]));
            // Planning again (a restarted controller) asks for the same routes.
            assert_eq!(
                routes_asked(&[step(&mut obs)]),
                Some(vec!["m".into(), "h".into()])
            );
            user_promotes(&mut obs);
            settle(&mut obs);
            user_promotes(&mut obs);
            let plans = settle(&mut obs);
            assert_eq!(phase(&obs), RolloutPhase::Healthy);
            assert_eq!(routes_asked(&plans), Some(vec![]));
        }

        #[test]
        fn routes_are_removed_on_abort_and_on_promote_full() {
            let mut obs = rollout_at_first_pause();
            edit_status(&mut obs, |s| s.abort = Some(true));
            assert_eq!(routes_asked(&[step(&mut obs)]), Some(vec![]));

            let mut obs = rollout_at_first_pause();
            edit_status(&mut obs, |s| s.promote_full = Some(true));
            assert_eq!(routes_asked(&[step(&mut obs)]), Some(vec![]));
        }

        #[test]
        fn reverting_to_the_stable_template_removes_the_routes() {
            let mut obs = rollout_at_first_pause();
            update(&mut obs, "h1");
            let plans = settle(&mut obs);
            assert_eq!(phase(&obs), RolloutPhase::Healthy);
            assert_eq!(routes_asked(&plans), Some(vec![]));
            // Then nothing more to ask.
            assert_eq!(routes_asked(&[step(&mut obs)]), None);
        }

        #[test]
        fn no_route_points_at_a_canary_without_available_pods() {
            let mut obs = rollout_at_first_pause();
            for rs in obs
                .replica_sets
                .iter_mut()
                .filter(|rs| rs.pod_template_hash == "h2")
            {
                rs.available_replicas = 0;
            }
            assert_eq!(routes_asked(&[step(&mut obs)]), Some(vec![]));
        }

        #[test]
        fn rollouts_without_managed_routes_ask_nothing() {
            let mut obs = deployed(canary_with_router(2, vec![weight(50), pause()]));
            update(&mut obs, "h2");
            assert_eq!(routes_asked(&settle(&mut obs)), None);
        }
    }

    #[test]
    fn without_managed_routes_nothing_is_in_force() {
        let mut c = canary(STEPS, "[{name: m}, {name: h}]");
        c.traffic_routing.as_mut().unwrap().managed_routes = None;
        assert_eq!(routes_after(&c, 3), vec![]);
    }
}
