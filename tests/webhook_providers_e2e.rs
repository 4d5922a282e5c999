//! Push webhooks of every provider Argo CD takes, end to end: a real `sluice controller` polling
//! Git only once an hour refreshes its Application at once on a signed push of Gitea, Bitbucket
//! Server, Bitbucket Cloud and Azure DevOps (each provider's own signature or secret), and refuses
//! the same push forged.

mod common;

use common::gitops::{
    AZURE_DEVOPS_USER, BITBUCKET_HOOK_UUID, GitRepo, GitopsHarness, WEBHOOK_SECRET, config_map,
    github_signature,
};
use serde_json::{Value, json};

/// A provider's push of `repo_url`: its headers (signed or forged) and body.
fn push(provider: &str, repo_url: &str, forged: bool) -> (Vec<(&'static str, String)>, String) {
    let (mut headers, body): (Vec<(&'static str, String)>, Value) = match provider {
        "gitea" => (
            vec![("X-Gitea-Event", "push".into())],
            json!({"ref": "refs/heads/main", "repository": {"clone_url": repo_url}}),
        ),
        "bitbucket-server" => (
            vec![("X-Event-Key", "repo:refs_changed".into())],
            json!({"repository": {"links": {"clone": [{"href": repo_url, "name": "http"}]}},
                   "changes": [{"ref": {"id": "refs/heads/main"}}]}),
        ),
        "bitbucket-cloud" => (
            vec![("X-Event-Key", "repo:push".into())],
            json!({"repository": {"links": {"html": {"href": repo_url}}},
                   "push": {"changes": [{"new": {"type": "branch", "name": "main"}}]}}),
        ),
        "azure-devops" => (
            vec![("X-Vss-ActivityId", "e2e".into())],
            json!({"eventType": "git.push", "resource": {"repository": {"remoteUrl": repo_url},
                   "refUpdates": [{"name": "refs/heads/main"}]}}),
        ),
        other => panic!("no provider {other}"),
    };
    let body = body.to_string();
    // The same HMAC as GitHub's (`sha256=<hex>`), keyed by the shared test secret.
    let hmac = if forged {
        github_signature("something else")
    } else {
        github_signature(&body)
    };
    match provider {
        "gitea" => headers.push(("X-Gitea-Signature", hmac["sha256=".len()..].to_string())),
        "bitbucket-server" => headers.push(("X-Hub-Signature", hmac)),
        "bitbucket-cloud" => {
            let uuid = if forged {
                "{00000000-0000-0000-0000-000000000000}"
            } else {
                BITBUCKET_HOOK_UUID
            };
            headers.push(("X-Hook-UUID", uuid.into()));
        }
        _ => {
            let password = if forged { "guess" } else { WEBHOOK_SECRET };
            let basic = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{AZURE_DEVOPS_USER}:{password}"),
            );
            headers.push(("Authorization", format!("Basic {basic}")));
        }
    }
    (headers, body)
}

async fn post(url: &str, headers: Vec<(&'static str, String)>, body: String) -> u16 {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request
        .body(body)
        .send()
        .await
        .expect("webhook answers")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_signed_push_of_each_provider_refreshes_and_a_forged_one_is_refused() {
    sluice::tls::install_crypto_provider();
    let h = GitopsHarness::start("webhooks", "3600s").await;
    let repo = GitRepo::create(&h.env, "webhooks");
    let first = repo.commit(
        "v0",
        &[("app/config.yaml", Some(&config_map("config", "0")))],
    );
    h.create_app(
        "hooked",
        &repo,
        "app",
        json!({"syncPolicy": {"automated": {}}}),
    )
    .await;
    h.wait_synced("hooked", &first).await;

    for (i, provider) in [
        "gitea",
        "bitbucket-server",
        "bitbucket-cloud",
        "azure-devops",
    ]
    .into_iter()
    .enumerate()
    {
        let value = (i + 1).to_string();
        let sha = repo.commit(
            provider,
            &[("app/config.yaml", Some(&config_map("config", &value)))],
        );
        let (headers, body) = push(provider, &repo.url, false);
        let (forged_headers, forged_body) = push(provider, &repo.url, true);
        assert_eq!(
            post(&h.webhook_url, forged_headers, forged_body).await,
            401,
            "{provider}: a forged push is refused"
        );
        assert_eq!(
            post(&h.webhook_url, headers, body).await,
            200,
            "{provider}: a signed push is taken"
        );
        // Polling is an hour away: only the push can have brought the commit in.
        h.wait_synced("hooked", &sha).await;
        assert_eq!(
            h.config_value("config").await.as_deref(),
            Some(value.as_str()),
            "{provider}"
        );
    }
}
