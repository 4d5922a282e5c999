//! The chart cache against real HTTP servers on 127.0.0.1 (axum), serving a Helm repository's
//! files and an OCI registry's distribution API from memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::archive::tests::tgz;
use super::*;

/// What the server answers per path (with query), who asked, and the credentials it wants.
#[derive(Default)]
struct Served {
    files: HashMap<String, (String, Vec<u8>)>,
    /// `Authorization` values accepted; empty means anonymous access.
    accepted: Vec<String>,
    /// Challenge sent with a 401.
    challenge: String,
    /// Paths answered only after this long.
    slow: HashMap<String, Duration>,
    requests: Mutex<Vec<(String, Option<String>)>>,
}

impl Served {
    fn file(mut self, path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.files
            .insert(path.to_string(), (content_type.to_string(), body.into()));
        self
    }

    fn requests(&self) -> Vec<(String, Option<String>)> {
        self.requests.lock().unwrap().clone()
    }
}

async fn answer(State(served): State<Arc<Served>>, request: Request) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let auth = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_string());
    served
        .requests
        .lock()
        .unwrap()
        .push((path.clone(), auth.clone()));
    if let Some(delay) = served.slow.get(&path) {
        tokio::time::sleep(*delay).await;
    }
    let open = path.starts_with("/token");
    if !open && !served.accepted.is_empty() && !auth.is_some_and(|a| served.accepted.contains(&a)) {
        let mut headers = HeaderMap::new();
        headers.insert(header::WWW_AUTHENTICATE, served.challenge.parse().unwrap());
        return (StatusCode::UNAUTHORIZED, headers).into_response();
    }
    match served.files.get(&path) {
        Some((content_type, body)) => (
            [(header::CONTENT_TYPE, content_type.clone())],
            Bytes::from(body.clone()),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn serve(served: Served) -> (String, Arc<Served>) {
    let served = Arc::new(served);
    let app = Router::new().fallback(answer).with_state(served.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), served)
}

fn cache(dir: &Path) -> ChartCache {
    let limits = GitLimits {
        fetch_wait: Duration::from_millis(500),
        ..GitLimits::default()
    };
    ChartCache::new(dir.to_path_buf(), limits)
}

fn chart_archive(name: &str, version: &str) -> Vec<u8> {
    let chart_yaml = format!("apiVersion: v2\nname: {name}\nversion: {version}\n");
    tgz(&[
        (&format!("{name}/Chart.yaml"), chart_yaml.as_bytes()),
        (&format!("{name}/templates/cm.yaml"), b"kind: ConfigMap\n"),
    ])
}

fn index_yaml(entries: &[(&str, &str, Option<&str>)]) -> String {
    let mut text = String::from("apiVersion: v1\nentries:\n  podinfo:\n");
    for (version, url, digest) in entries {
        text.push_str(&format!("  - version: {version}\n    urls: [{url}]\n"));
        if let Some(digest) = digest {
            text.push_str(&format!("    digest: {digest}\n"));
        }
    }
    text
}

fn location(repo_url: &str, access: ChartAccess) -> ChartLocation {
    ChartLocation::new(repo_url, "podinfo", access, false, false).unwrap()
}

#[tokio::test]
async fn a_range_resolves_to_the_highest_version_and_its_archive_is_unpacked() {
    let v1 = chart_archive("podinfo", "1.2.0");
    let v2 = chart_archive("podinfo", "1.4.0");
    let digest = fetch::sha256_hex(&v2);
    let index = index_yaml(&[
        ("1.2.0", "podinfo-1.2.0.tgz", None),
        ("1.4.0", "charts/podinfo-1.4.0.tgz", Some(&digest)),
        ("2.0.0", "podinfo-2.0.0.tgz", None),
    ]);
    let served = Served::default()
        .file("/repo/index.yaml", "text/yaml", index)
        .file("/repo/podinfo-1.2.0.tgz", "application/gzip", v1)
        .file("/repo/charts/podinfo-1.4.0.tgz", "application/gzip", v2);
    let (base, served) = serve(served).await;
    let dir = tempfile::tempdir().unwrap();
    let charts = cache(dir.path());
    let location = location(&format!("{base}/repo/"), ChartAccess::default());
    let now = Timestamp::now();

    assert_eq!(
        charts.resolve(&location, "^1.0", now).await.unwrap(),
        "1.4.0"
    );
    assert_eq!(
        charts.resolve(&location, "1.2.0", now).await.unwrap(),
        "1.2.0"
    );
    assert_eq!(
        charts.resolve(&location, "v1.2", now).await.unwrap(),
        "1.2.0"
    );
    assert_eq!(charts.fetch_count(), 1, "one listing per tick");
    let error = charts.resolve(&location, "~3.0", now).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no version matches targetRevision \"~3.0\" (versions: 2.0.0, 1.4.0, 1.2.0)"),
        "{error}"
    );

    let chart = charts.checkout(&location, "1.4.0").await.unwrap();
    assert!(chart.ends_with("podinfo"));
    let chart_yaml = std::fs::read_to_string(chart.join("Chart.yaml")).unwrap();
    assert!(chart_yaml.contains("version: 1.4.0"), "{chart_yaml}");
    // Unpacked once: a second checkout downloads nothing.
    assert_eq!(charts.checkout(&location, "1.4.0").await.unwrap(), chart);
    let downloads = served
        .requests()
        .iter()
        .filter(|(path, _)| path.ends_with(".tgz"))
        .count();
    assert_eq!(downloads, 1);

    let error = charts.checkout(&location, "2.0.0").await.unwrap_err();
    assert!(error.to_string().contains("HTTP 404"), "{error}");

    // A later tick fetches the listing again.
    charts
        .resolve(&location, "^1.0", Timestamp::now())
        .await
        .unwrap();
    assert_eq!(charts.fetch_count(), 2);
}

#[tokio::test]
async fn an_archive_that_does_not_match_the_index_digest_is_refused() {
    let archive = chart_archive("podinfo", "1.0.0");
    let index = index_yaml(&[("1.0.0", "podinfo-1.0.0.tgz", Some(&"0".repeat(64)))]);
    let served = Served::default()
        .file("/index.yaml", "text/yaml", index)
        .file("/podinfo-1.0.0.tgz", "application/gzip", archive);
    let (base, _served) = serve(served).await;
    let dir = tempfile::tempdir().unwrap();
    let charts = cache(dir.path());
    let location = location(&base, ChartAccess::default());
    charts
        .resolve(&location, "1.0.0", Timestamp::now())
        .await
        .unwrap();
    let error = charts.checkout(&location, "1.0.0").await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the repository's index says 0000"),
        "{error}"
    );
    let left_behind = std::fs::read_dir(dir.path().join("charts")).map_or(0, Iterator::count);
    assert_eq!(left_behind, 0, "nothing unpacked");
}

#[tokio::test]
async fn credentials_go_to_the_repository_only_and_a_refusal_says_what_to_check() {
    let archive = chart_archive("podinfo", "1.0.0");
    let (other, other_served) =
        serve(Served::default().file("/podinfo-1.0.0.tgz", "application/gzip", archive)).await;
    let index = index_yaml(&[("1.0.0", &format!("{other}/podinfo-1.0.0.tgz"), None)]);
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "u:p")
    );
    let served = Served {
        accepted: vec![basic.clone()],
        challenge: "Basic realm=\"charts\"".into(),
        ..Served::default()
    }
    .file("/index.yaml", "text/yaml", index);
    let (base, _served) = serve(served).await;
    let dir = tempfile::tempdir().unwrap();
    let charts = cache(dir.path());

    let anonymous = location(&base, ChartAccess::default());
    let error = charts
        .resolve(&anonymous, "1.0.0", Timestamp::now())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("HTTP 401"), "{error}");
    assert!(
        error.to_string().contains("username and password"),
        "{error}"
    );

    let access = ChartAccess {
        basic: Some(("u".into(), "p".into())),
        ..ChartAccess::default()
    };
    let with_creds = location(&base, access.clone());
    charts
        .resolve(&with_creds, "1.0.0", Timestamp::now())
        .await
        .unwrap();
    charts.checkout(&with_creds, "1.0.0").await.unwrap();
    assert_eq!(
        other_served.requests()[0].1,
        None,
        "no credentials to another host"
    );

    let passing = ChartLocation::new(&base, "podinfo", access, true, false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let charts = cache(dir.path());
    charts
        .resolve(&passing, "1.0.0", Timestamp::now())
        .await
        .unwrap();
    charts.checkout(&passing, "1.0.0").await.unwrap();
    assert_eq!(
        other_served.requests()[1].1.as_deref(),
        Some(basic.as_str()),
        "passCredentials"
    );
}

fn oci_registry(archive: &[u8], layer_digest: &str) -> Served {
    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:00","size":1}},"layers":[{{"mediaType":"application/vnd.cncf.helm.chart.content.v1.tar+gzip","digest":"sha256:{layer_digest}","size":{}}}]}}"#,
        archive.len()
    );
    Served::default()
        .file(
            "/v2/charts/podinfo/tags/list",
            "application/json",
            r#"{"name":"charts/podinfo","tags":["1.0.0","1.1.0_build.1","latest"]}"#,
        )
        .file(
            "/v2/charts/podinfo/manifests/1.1.0_build.1",
            "application/vnd.oci.image.manifest.v1+json",
            manifest,
        )
        .file(
            &format!("/v2/charts/podinfo/blobs/sha256:{layer_digest}"),
            "application/octet-stream",
            archive.to_vec(),
        )
}

#[tokio::test]
async fn an_oci_chart_is_listed_by_tags_and_pulled_by_its_manifest() {
    let archive = chart_archive("podinfo", "1.1.0+build.1");
    let digest = fetch::sha256_hex(&archive);
    let (base, _served) = serve(oci_registry(&archive, &digest)).await;
    let host = base.trim_start_matches("http://");
    let dir = tempfile::tempdir().unwrap();
    let charts = cache(dir.path());
    let location = location(&format!("oci://{host}/charts"), ChartAccess::default());
    let version = charts
        .resolve(&location, ">=1.0.0", Timestamp::now())
        .await
        .unwrap();
    assert_eq!(version, "1.1.0+build.1");
    let chart = charts.checkout(&location, &version).await.unwrap();
    assert!(chart.join("Chart.yaml").is_file());
}

#[tokio::test]
async fn an_oci_blob_that_does_not_match_its_manifest_is_refused() {
    let archive = chart_archive("podinfo", "1.1.0");
    let (base, _served) = serve(oci_registry(&archive, &"ab".repeat(32))).await;
    let host = base.trim_start_matches("http://");
    let dir = tempfile::tempdir().unwrap();
    let charts = cache(dir.path());
    let location = location(&format!("oci://{host}/charts"), ChartAccess::default());
    let error = charts
        .checkout(&location, "1.1.0+build.1")
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("its manifest says sha256:abab"),
        "{error}"
    );
}

#[tokio::test]
async fn a_bearer_challenge_is_answered_with_a_token_from_the_realm() {
    let archive = chart_archive("podinfo", "1.1.0");
    let digest = fetch::sha256_hex(&archive);
    let mut served = oci_registry(&archive, &digest);
    served.accepted = vec!["Bearer t0k3n".into()];
    let (base, served) = {
        // The realm is the registry itself: its address is only known once it listens.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        served.challenge = format!(
            "Bearer realm=\"http://{addr}/token\",service=\"registry\",scope=\"repository:charts/podinfo:pull\""
        );
        let served = Arc::new(served.file(
            "/token?service=registry&scope=repository%3Acharts%2Fpodinfo%3Apull",
            "application/json",
            r#"{"token":"t0k3n"}"#,
        ));
        let app = Router::new().fallback(answer).with_state(served.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), served)
    };
    let host = base.trim_start_matches("http://");
    let dir = tempfile::tempdir().unwrap();
    let charts = cache(dir.path());
    let access = ChartAccess {
        basic: Some(("robot".into(), "secret".into())),
        ..ChartAccess::default()
    };
    let location = location(&format!("oci://{host}/charts"), access);
    let version = charts
        .resolve(&location, "^1", Timestamp::now())
        .await
        .unwrap();
    assert_eq!(version, "1.1.0+build.1");
    let token_requests: Vec<_> = served
        .requests()
        .into_iter()
        .filter(|(path, _)| path.starts_with("/token"))
        .collect();
    assert_eq!(token_requests.len(), 1);
    assert!(
        token_requests[0]
            .1
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))
    );
}

#[tokio::test]
async fn a_hanging_repository_frees_the_caller_and_the_fetch_goes_on() {
    let mut served = Served::default().file(
        "/index.yaml",
        "text/yaml",
        index_yaml(&[("1.0.0", "x.tgz", None)]),
    );
    served
        .slow
        .insert("/index.yaml".into(), Duration::from_millis(1500));
    let (base, _served) = serve(served).await;
    let dir = tempfile::tempdir().unwrap();
    let charts = cache(dir.path());
    let location = location(&base, ChartAccess::default());
    let since = Timestamp::now();
    let error = charts.resolve(&location, "1.0.0", since).await.unwrap_err();
    assert!(matches!(error, ChartError::InProgress { .. }), "{error}");
    // The same fetch finishes in the background; a later caller gets its result.
    let resolved = async {
        loop {
            match charts.resolve(&location, "1.0.0", since).await {
                Err(ChartError::InProgress { .. }) => continue,
                other => return other,
            }
        }
    };
    let version = tokio::time::timeout(Duration::from_secs(10), resolved)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(version, "1.0.0");
    assert_eq!(charts.fetch_count(), 1);
}

#[test]
fn repository_urls_are_checked_before_anything_is_fetched() {
    let access = ChartAccess::default;
    let refused = |url: &str, chart: &str, access: ChartAccess| {
        ChartLocation::new(url, chart, access, false, false)
            .unwrap_err()
            .to_string()
    };
    assert!(
        refused("http://charts.example.com", "x", access()).contains("--git-allow-insecure-http")
    );
    assert!(ChartLocation::new("http://charts.example.com", "x", access(), false, true).is_ok());
    assert!(
        ChartLocation::new("http://127.0.0.1:8080/charts", "x", access(), false, false).is_ok()
    );
    assert!(ChartLocation::new("http://localhost:8080", "x", access(), false, false).is_ok());
    assert!(refused("charts.example.com/stable", "x", access()).contains("needs https://"));
    assert!(refused("file:///etc", "x", access()).contains("https://, http:// or oci://"));
    assert!(refused("https://u:p@charts.example.com", "x", access()).contains("repository Secret"));
    for chart in ["", "../x", "a/b", ".hidden"] {
        assert!(
            refused("https://charts.example.com", chart, access()).contains("not a chart name")
        );
    }
    let oci = ChartAccess {
        enable_oci: true,
        ..ChartAccess::default()
    };
    let location =
        ChartLocation::new("registry.example.com/charts", "x", oci, false, false).unwrap();
    assert_eq!(
        location.registry,
        Registry::Oci(OciRepository {
            base: "https://registry.example.com".into(),
            name: "charts/x".into()
        })
    );
    let location =
        ChartLocation::new("oci://127.0.0.1:5000/charts", "x", access(), false, false).unwrap();
    assert!(matches!(location.registry, Registry::Oci(ref r) if r.base == "http://127.0.0.1:5000"));
}

#[test]
fn loopback_hosts_are_recognised() {
    for host in [
        "127.0.0.1",
        "127.9.9.9:80",
        "localhost:5000",
        "[::1]:5000",
        "LOCALHOST",
    ] {
        assert!(is_loopback(host), "{host}");
    }
    for host in [
        "10.0.0.1",
        "example.com",
        "128.0.0.1:80",
        "localhost.example.com",
    ] {
        assert!(!is_loopback(host), "{host}");
    }
}
