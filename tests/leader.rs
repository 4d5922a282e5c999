//! Leader election between real `sluice controller` processes on the local cluster: one leads, the
//! other stands by; a killed leader is replaced once its lease expires, and a leader stopped with
//! SIGTERM hands over at once by releasing the lease.

mod common;

use std::time::Duration;

use common::{ControllerProcess, E2eEnv, TestNamespace, sole_leader, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("sluice-controller")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

#[tokio::test]
async fn one_leader_at_a_time_and_the_standby_takes_over() {
    let env = E2eEnv::load();
    let client = env.client().await;
    let ns = TestNamespace::create(&client, "leader").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let flags = [
        "--leader-elect".to_string(),
        format!("--namespace={}", ns.name),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();

    let a = ControllerProcess::start(&env, &flags);
    let b = ControllerProcess::start(&env, &flags);
    let first = sole_leader(&[&a, &b], Duration::from_secs(30)).await;
    let first_holder = holder(&leases).await.expect("lease held");
    let (leader, standby) = if first == 0 { (a, b) } else { (b, a) };
    assert!(
        first_holder.contains('_'),
        "holderIdentity is <hostname>_<random>: {first_holder}"
    );

    // A killed leader cannot release: the standby waits for the 15 s lease to expire, then leads.
    leader.signal("KILL");
    drop(leader);
    wait_for(
        "the standby to lead after the lease expired",
        Duration::from_secs(30),
        || async { (standby.metric("sluice_leader").await == Some(1.0)).then_some(()) },
    )
    .await;
    let second_holder = holder(&leases).await.expect("lease held");
    assert_ne!(second_holder, first_holder);

    // A leader stopped gracefully releases the lease, so a new standby leads well within 15 s.
    let third = ControllerProcess::start(&env, &flags);
    wait_for(
        "the third process to stand by",
        Duration::from_secs(30),
        || async { (third.metric("sluice_leader").await == Some(0.0)).then_some(()) },
    )
    .await;
    // A standby has no caches to sync: it is ready, able to take over at any moment.
    let ready = common::http_get(&format!("{}/readyz", third.metrics_url)).await;
    assert_eq!(ready.map(|(status, _)| status), Some(200));
    standby.signal("TERM");
    wait_for(
        "the released lease to be taken at once",
        Duration::from_secs(8),
        || async { (third.metric("sluice_leader").await == Some(1.0)).then_some(()) },
    )
    .await;
    assert_ne!(holder(&leases).await.expect("lease held"), second_holder);
    drop(third);
    ns.delete().await;
}
