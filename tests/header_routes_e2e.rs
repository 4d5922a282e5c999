//! Header and mirror routes (`setHeaderRoute`, `setMirrorRoute`, `managedRoutes`) on the local
//! cluster: through the real Gateway API proxy (Traefik, `$GATEWAY_URL`) requests carrying the
//! header are answered by canary pods only while the others are split by weight; the emulator
//! (`$TRAFFIC_URL`) counts its header requests and mirrored copies; the routes are gone after an
//! abort and after promotion, and survive a controller restart without being duplicated.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;

use common::proxy::{count_by_pod, emulated_requests, ready_pods, through_gateway};
use common::rollouts::{Harness, TIMEOUT, current_hash, observed_current, phase, rollout_manifest};
use common::{E2eEnv, wait_for};
use serde_json::{Value, json};
use sluice::api::rollout::{Rollout, RolloutPhase};

/// The header the test's requests carry, and the emulator's default one (`--header`).
const HEADER: (&str, &str) = ("x-sluice-canary", "true");
/// The port every test pod declares and every Service targets.
const POD_PORT: u16 = 8080;
/// Requests sent in one measured sample.
const SAMPLE: usize = 200;

fn web_rollout(steps: Value, routes: &[&str]) -> Value {
    let managed: Vec<Value> = routes.iter().map(|r| json!({"name": r})).collect();
    let mut rollout = rollout_manifest(
        2,
        json!({"canary": {
            "stableService": "web-stable", "canaryService": "web-canary",
            "trafficRouting": {
                "managedRoutes": managed,
                "plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}},
            },
            "steps": steps,
        }}),
    );
    rollout["spec"]["template"]["spec"]["containers"][0]["ports"] =
        json!([{"containerPort": POD_PORT}]);
    rollout
}

async fn set_image(h: &Harness, image: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": image, "ports": [{"containerPort": POD_PORT}]}
    ]}}}});
    h.rollouts()
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(patch),
        )
        .await
        .expect("update image");
}

/// Services `web-stable`/`web-canary` and the HTTPRoute `web` (on the Gateway when `host` is
/// given), all traffic to stable.
async fn create_services_and_route(h: &Harness, host: Option<&str>) {
    for name in ["web-stable", "web-canary"] {
        h.create(
            &h.services(),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                   "spec": {"selector": {"app": "web"},
                            "ports": [{"port": 80, "targetPort": POD_PORT}]}}),
        )
        .await;
    }
    let mut spec = json!({"rules": [{"backendRefs": [
        {"name": "web-stable", "port": 80, "weight": 100},
        {"name": "web-canary", "port": 80, "weight": 0}
    ]}]});
    if let Some(host) = host {
        spec["parentRefs"] = json!([{"name": "e2e", "namespace": "e2e-gateway"}]);
        spec["hostnames"] = json!([host]);
    }
    h.create(
        &h.routes(),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "web"}, "spec": spec}),
    )
    .await;
}

async fn route_rules(h: &Harness) -> Vec<Value> {
    let route = h.routes().get("web").await.expect("route");
    route.data["spec"]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The names of the route's named rules (the managed ones).
async fn managed_rule_names(h: &Harness) -> Vec<String> {
    route_rules(h)
        .await
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect()
}

fn paused_at(index: i32) -> impl Fn(&Rollout) -> bool {
    move |r| {
        observed_current(r)
            && phase(r) == Some(RolloutPhase::Paused)
            && r.status.as_ref().and_then(|s| s.current_step_index) == Some(index)
    }
}

fn healthy_on(hash: String) -> impl Fn(&Rollout) -> bool {
    move |r| {
        observed_current(r)
            && phase(r) == Some(RolloutPhase::Healthy)
            && r.status.as_ref().and_then(|s| s.stable_rs.as_deref()) == Some(hash.as_str())
    }
}

/// Waits until `count` requests with `headers` through the Gateway all answer 200 from `pods`.
async fn wait_all_answered_by(
    gateway: &str,
    host: &str,
    headers: &[(&str, &str)],
    pods: &BTreeSet<String>,
    what: &str,
) {
    wait_for(what, TIMEOUT, || async {
        let answers = through_gateway(gateway, host, headers, 40).await;
        count_by_pod(&answers, pods).map(drop)
    })
    .await;
}

/// Requests that must reach `grows` in a row, none reaching `still`. Without the route in force
/// that would be chance: header requests split by weight reach the canary 20 times in a row with
/// probability 0.2^20; 20 requests without one of them mirrored at 50 %, 0.5^20.
const IN_A_ROW: u64 = 20;

/// Waits until the emulator's `grows` counter gained `IN_A_ROW` while `still` did not change (it
/// starts counting again whenever `still` moves): the emulator follows the route in force now.
async fn wait_emulator_window(
    traffic_url: &str,
    grows: &[(&str, &str)],
    still: &[(&str, &str)],
    what: &str,
) {
    let start: Mutex<Option<(u64, u64)>> = Mutex::new(None);
    wait_for(what, TIMEOUT, || async {
        let now = (
            emulated_requests(traffic_url, grows).await,
            emulated_requests(traffic_url, still).await,
        );
        let mut start = start.lock().expect("lock");
        match *start {
            Some((from, unchanged)) if now.1 == unchanged => {
                (now.0 >= from + IN_A_ROW).then_some(())
            }
            _ => {
                *start = Some(now);
                None
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_header_route_sends_header_requests_to_the_canary_only_until_abort_or_promotion() {
    let env = E2eEnv::load();
    let gateway = env.get("GATEWAY_URL").to_owned();
    let traffic = env.get("TRAFFIC_URL").to_owned();
    let mut h = Harness::start("hdr-route").await;
    let ns = h.ns.name.clone();
    let host = format!("{ns}.e2e.test");
    create_services_and_route(&h, Some(&host)).await;
    let steps = json!([
        {"setWeight": 20},
        {"setHeaderRoute": {"name": "beta", "match": [
            {"headerName": HEADER.0, "headerValue": {"exact": HEADER.1}}]}},
        {"pause": {}},
    ]);
    h.create(&h.rollouts(), web_rollout(steps, &["beta"])).await;
    let first = h
        .wait_rollout("first deploy Healthy", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
        })
        .await;
    let stable_hash = current_hash(&first);
    let stable = wait_for("2 Ready stable pods", TIMEOUT, || async {
        let pods = ready_pods(&h, &stable_hash).await;
        (pods.len() == 2).then_some(pods)
    })
    .await;
    assert_eq!(managed_rule_names(&h).await, Vec::<String>::new());

    // setWeight 20, then the header route: one canary pod, a rule for the header to it only.
    set_image(&h, "example/web:2.0").await;
    let paused = h.wait_rollout("paused at step 2", paused_at(2)).await;
    let canary_hash = current_hash(&paused);
    let canary = wait_for("1 Ready canary pod", TIMEOUT, || async {
        let pods = ready_pods(&h, &canary_hash).await;
        (pods.len() == 1).then_some(pods)
    })
    .await;
    let rules = route_rules(&h).await;
    assert_eq!(
        rules[0],
        json!({
            "name": "beta",
            "matches": [{"path": {"type": "PathPrefix", "value": "/"},
                         "headers": [{"type": "Exact", "name": HEADER.0, "value": HEADER.1}]}],
            "backendRefs": [{"group": "", "kind": "Service", "name": "web-canary", "port": 80, "weight": 1}],
        }),
        "{rules:?}"
    );
    assert_eq!(rules[1]["backendRefs"][1]["weight"], json!(20), "{rules:?}");

    // Through Traefik: every request with the header is answered by the canary pod ...
    wait_all_answered_by(
        &gateway,
        &host,
        &[HEADER],
        &canary,
        "header requests answered by the canary pod",
    )
    .await;
    let answers = through_gateway(&gateway, &host, &[HEADER], SAMPLE).await;
    let counts = count_by_pod(&answers, &canary).expect("only the canary answers");
    assert_eq!(counts.values().sum::<usize>(), SAMPLE, "{counts:?}");
    // ... and the others are split by weight (20 % canary: 200 draws fall within 3–37 %).
    let both: BTreeSet<String> = stable.union(&canary).cloned().collect();
    let answers = through_gateway(&gateway, &host, &[], SAMPLE).await;
    let counts = count_by_pod(&answers, &both).expect("stable and canary pods answer");
    let to_canary: usize = canary.iter().filter_map(|p| counts.get(p)).sum();
    eprintln!("without the header: {to_canary} of {SAMPLE} to the canary; {counts:?}");
    assert!((6..=74).contains(&to_canary), "{counts:?}");
    // Another value of the header is not the route's.
    let answers = through_gateway(&gateway, &host, &[(HEADER.0, "no")], SAMPLE).await;
    let counts = count_by_pod(&answers, &both).expect("stable and canary pods answer");
    assert!(stable.iter().any(|p| counts.contains_key(p)), "{counts:?}");

    // The emulator's header requests go to the canary Service only.
    let header_to_canary = [
        ("namespace", ns.as_str()),
        ("service", "web-canary"),
        ("traffic", "header"),
    ];
    let header_to_stable = [
        ("namespace", ns.as_str()),
        ("service", "web-stable"),
        ("traffic", "header"),
    ];
    wait_emulator_window(
        &traffic,
        &header_to_canary,
        &header_to_stable,
        "emulated header requests reaching the canary Service only",
    )
    .await;

    // Abort: the header route is removed with the weight; header requests reach the stable.
    h.patch_status(json!({"status": {"abort": true}})).await;
    h.wait_rollout("aborted", |r| {
        observed_current(r) && phase(r) == Some(RolloutPhase::Degraded)
    })
    .await;
    wait_for("no managed rule after the abort", TIMEOUT, || async {
        managed_rule_names(&h).await.is_empty().then_some(())
    })
    .await;
    wait_all_answered_by(
        &gateway,
        &host,
        &[HEADER],
        &stable,
        "header requests back on the stable pods after the abort",
    )
    .await;
    wait_emulator_window(
        &traffic,
        &header_to_stable,
        &header_to_canary,
        "emulated header requests back on the stable Service",
    )
    .await;

    // A new revision sets the route again; after promotion it is gone and everything reaches
    // the new revision.
    h.patch_status(json!({"status": {"abort": false}})).await;
    set_image(&h, "example/web:3.0").await;
    let paused = h.wait_rollout("v3 paused at step 2", paused_at(2)).await;
    let v3_hash = current_hash(&paused);
    assert_eq!(managed_rule_names(&h).await, vec!["beta".to_string()]);
    // A restarted controller finds the route in place (nothing added twice) and, never having
    // written it, still removes it at promotion: the route objects are the state.
    let before = route_rules(&h).await;
    h.restart_controller();
    wait_for(
        "the restarted controller seeing the paused Rollout",
        TIMEOUT,
        || async {
            let paused = [("name", "web"), ("phase", "Paused")];
            (h.controller
                .metric_with("sluice_rollout_info", &paused)
                .await
                == Some(1.0))
            .then_some(())
        },
    )
    .await;
    assert_eq!(route_rules(&h).await, before);
    h.promote().await;
    h.wait_rollout("v3 promoted and Healthy", healthy_on(v3_hash.clone()))
        .await;
    wait_for("no managed rule after promotion", TIMEOUT, || async {
        managed_rule_names(&h).await.is_empty().then_some(())
    })
    .await;
    let promoted = wait_for("2 Ready v3 pods", TIMEOUT, || async {
        let pods = ready_pods(&h, &v3_hash).await;
        (pods.len() == 2).then_some(pods)
    })
    .await;
    wait_all_answered_by(
        &gateway,
        &host,
        &[HEADER],
        &promoted,
        "header requests reaching the promoted pods",
    )
    .await;
    h.ns.delete().await;
}

#[tokio::test]
async fn a_mirror_route_copies_its_percentage_to_the_canary_until_promotion() {
    let env = E2eEnv::load();
    let traffic = env.get("TRAFFIC_URL").to_owned();
    let h = Harness::start("mirror-route").await;
    let ns = h.ns.name.clone();
    // Not attached to the Gateway: Traefik has no RequestMirror; the emulator reads the route.
    create_services_and_route(&h, None).await;
    let steps = json!([
        {"setWeight": 20},
        {"setMirrorRoute": {"name": "copy", "percentage": 50,
                            "match": [{"path": {"prefix": "/"}}]}},
        {"pause": {}},
    ]);
    h.create(&h.rollouts(), web_rollout(steps, &["copy"])).await;
    h.wait_rollout("first deploy Healthy", |r| {
        observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
    })
    .await;
    set_image(&h, "example/web:2.0").await;
    let paused = h.wait_rollout("paused at step 2", paused_at(2)).await;
    let canary_hash = current_hash(&paused);
    let rules = route_rules(&h).await;
    assert_eq!(rules[0]["name"], json!("copy"), "{rules:?}");
    assert_eq!(
        rules[0]["filters"],
        json!([{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"group": "", "kind": "Service", "name": "web-canary", "port": 80},
            "percent": 50}}]),
        "{rules:?}"
    );
    // The mirror rule keeps the split: the weights are set on it as on the user's rule.
    assert_eq!(
        rules[0]["backendRefs"], rules[1]["backendRefs"],
        "{rules:?}"
    );
    assert_eq!(rules[0]["backendRefs"][1]["weight"], json!(20), "{rules:?}");

    // The emulator copies half of the requests to the canary, counted as `traffic="mirror"`.
    let ns_only = [("namespace", ns.as_str())];
    let mirrored = [("namespace", ns.as_str()), ("traffic", "mirror")];
    wait_for("mirrored copies counted", TIMEOUT, || async {
        (emulated_requests(&traffic, &mirrored).await > 0).then_some(())
    })
    .await;
    let start = (
        emulated_requests(&traffic, &ns_only).await,
        emulated_requests(&traffic, &mirrored).await,
    );
    // Counted as increases between polls: a counter that starts again from 0 (the emulator
    // forgets a Rollout's series while it cannot read its split) never counts backwards.
    let seen = std::sync::Mutex::new((start, 0u64, 0u64));
    let (seen, traffic_url, all_lanes, copies_only) = (&seen, &traffic, &ns_only, &mirrored);
    // At 20 requests/s: 400 requests (≈ 20 s) give a share within ±0.1 with P > 1 − 1e-3.
    let (sent, copies) = wait_for("400 more emulated requests", TIMEOUT, move || async move {
        let now = (
            emulated_requests(traffic_url, all_lanes).await,
            emulated_requests(traffic_url, copies_only).await,
        );
        let increase = |now: u64, last: u64| now.checked_sub(last).unwrap_or(now);
        let mut state = seen.lock().expect("counts");
        let (last, sent, copies) = &mut *state;
        let new_copies = increase(now.1, last.1);
        *copies += new_copies;
        *sent += increase(now.0, last.0).saturating_sub(new_copies);
        *last = now;
        (*sent >= 400).then_some((*sent, *copies))
    })
    .await;
    #[allow(clippy::cast_precision_loss)]
    let share = copies as f64 / sent as f64;
    eprintln!("mirrored {copies} of {sent} requests ({share:.3})");
    assert!((0.4..=0.6).contains(&share), "{copies} of {sent}");
    let mirrored_to_stable = [
        ("namespace", ns.as_str()),
        ("traffic", "mirror"),
        ("service", "web-stable"),
    ];
    assert_eq!(emulated_requests(&traffic, &mirrored_to_stable).await, 0);

    // Promotion removes the mirror: no more copies.
    h.promote().await;
    h.wait_rollout("promoted and Healthy", healthy_on(canary_hash))
        .await;
    wait_for("no managed rule after promotion", TIMEOUT, || async {
        managed_rule_names(&h).await.is_empty().then_some(())
    })
    .await;
    wait_emulator_window(
        &traffic,
        &ns_only,
        &mirrored,
        "requests without mirrored copies after promotion",
    )
    .await;
    h.ns.delete().await;
}

/// The canary Ingress's annotations, when it exists.
async fn canary_ingress_annotations(
    h: &Harness,
) -> Option<std::collections::BTreeMap<String, String>> {
    let ingresses: kube::Api<k8s_openapi::api::networking::v1::Ingress> =
        kube::Api::namespaced(h.client.clone(), &h.ns.name);
    let ingress = ingresses.get_opt("web-web-canary").await.ok()??;
    Some(ingress.metadata.annotations.unwrap_or_default())
}

#[tokio::test]
async fn an_nginx_header_route_is_canary_by_header_until_promotion() {
    let env = E2eEnv::load();
    let traffic = env.get("TRAFFIC_URL").to_owned();
    let h = Harness::start("nginx-hdr").await;
    let ns = h.ns.name.clone();
    h.create_web_services(&["web-stable", "web-canary"]).await;
    let ingresses: kube::Api<k8s_openapi::api::networking::v1::Ingress> =
        kube::Api::namespaced(h.client.clone(), &ns);
    h.create(
        &ingresses,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": "web.example", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web-stable", "port": {"number": 80}}}}]}}]}
        }),
    )
    .await;
    // setWeight 0: only the header reaches the canary.
    let strategy = json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "trafficRouting": {"managedRoutes": [{"name": "beta"}], "nginx": {"stableIngress": "web"}},
        "steps": [
            {"setCanaryScale": {"replicas": 1}},
            {"setHeaderRoute": {"name": "beta", "match": [
                {"headerName": HEADER.0, "headerValue": {"prefix": "tr"}}]}},
            {"pause": {}},
        ]
    }});
    h.create(&h.rollouts(), rollout_manifest(2, strategy)).await;
    h.wait_rollout("first deploy Healthy", |r| {
        observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
    })
    .await;
    h.set_image("example/web:2.0").await;
    let paused = h.wait_rollout("paused at step 2", paused_at(2)).await;
    let canary_hash = current_hash(&paused);
    let annotations = canary_ingress_annotations(&h)
        .await
        .expect("a canary Ingress for the header route");
    let get = |key: &str| annotations.get(key).map(String::as_str);
    assert_eq!(get("nginx.ingress.kubernetes.io/canary"), Some("true"));
    assert_eq!(get("nginx.ingress.kubernetes.io/canary-weight"), Some("0"));
    assert_eq!(
        get("nginx.ingress.kubernetes.io/canary-by-header"),
        Some(HEADER.0)
    );
    assert_eq!(
        get("nginx.ingress.kubernetes.io/canary-by-header-pattern"),
        Some("^tr.*")
    );
    // The emulator sends its header requests to the canary, the rest to the stable.
    let header_to_canary = [
        ("namespace", ns.as_str()),
        ("service", "web-canary"),
        ("traffic", "header"),
    ];
    let to_canary_plain = [
        ("namespace", ns.as_str()),
        ("service", "web-canary"),
        ("traffic", "plain"),
    ];
    wait_emulator_window(
        &traffic,
        &header_to_canary,
        &to_canary_plain,
        "emulated header requests (only) reaching the canary",
    )
    .await;

    h.promote().await;
    h.wait_rollout("promoted", healthy_on(canary_hash)).await;
    wait_for("canary Ingress removed", TIMEOUT, || async {
        canary_ingress_annotations(&h).await.is_none().then_some(())
    })
    .await;
    h.ns.delete().await;
}
