//! Helm charts in OCI registries (the distribution API): a chart `charts/podinfo` of registry
//! `127.0.0.1:5000` is the repository `charts/podinfo`; its versions are the tags (Helm writes `+`
//! as `_`), and a version's archive is the manifest's layer of Helm's chart media type.
//!
//! A registry that answers 401 is asked again as its challenge says: Basic with the repository
//! Secret's credentials, or Bearer with a token from the challenge's realm (the credentials are sent
//! to a realm only over HTTPS or on the registry's own origin).

use reqwest::{Client, Url};
use serde::Deserialize;

use super::fetch::{self, Answer, Auth, sha256_hex};

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const CHART_LAYER_TYPES: [&str; 2] = [
    "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
    // Helm before 3.8 pushed this.
    "application/tar+gzip",
];
/// Pages of a tag list followed at most (`Link: rel="next"`).
const MAX_TAG_PAGES: usize = 20;
/// Manifests and token answers are small; the archive has its own bound.
const MAX_SMALL_ANSWER: u64 = 4 << 20;

/// A chart's repository in a registry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OciRepository {
    /// `http://host:port` or `https://host:port`.
    pub base: String,
    /// The repository path: the repoURL's path and the chart's name.
    pub name: String,
}

impl OciRepository {
    /// `repo_url` is `oci://host[:port]/path` or `host[:port]/path`; `plain_http` says whether the
    /// registry speaks HTTP rather than HTTPS.
    pub fn new(repo_url: &str, chart: &str, plain_http: bool) -> Result<Self, String> {
        let bare = repo_url
            .strip_prefix("oci://")
            .unwrap_or(repo_url)
            .trim_end_matches('/');
        let (host, path) = bare.split_once('/').unwrap_or((bare, ""));
        let valid_name = |s: &str| {
            !s.is_empty()
                && s.split('/').all(|part| {
                    part.starts_with(|c: char| c.is_ascii_alphanumeric())
                        && part.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                        })
                })
        };
        if host.is_empty() || host.contains('@') || host.starts_with('-') {
            return Err(format!("{repo_url:?} names no registry host"));
        }
        let name = if path.is_empty() {
            chart.to_string()
        } else {
            format!("{path}/{chart}")
        };
        if !valid_name(&name) {
            return Err(format!(
                "{name:?} is not an OCI repository name (lower-case letters, digits, '.', '_', '-' and '/')"
            ));
        }
        let scheme = if plain_http { "http" } else { "https" };
        let base = format!("{scheme}://{host}");
        Url::parse(&base).map_err(|e| format!("{repo_url:?}: {e}"))?;
        Ok(Self { base, name })
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.name)
    }
}

/// Requests to one repository, keeping the token a challenge gave.
pub struct Session<'a> {
    client: &'a Client,
    repo: &'a OciRepository,
    basic: Option<(String, String)>,
    auth: Auth,
}

impl<'a> Session<'a> {
    pub fn new(
        client: &'a Client,
        repo: &'a OciRepository,
        basic: Option<(String, String)>,
    ) -> Self {
        Self {
            client,
            repo,
            basic,
            auth: Auth::Anonymous,
        }
    }

    /// The chart's versions (its tags, `_` read as `+`).
    pub async fn versions(&mut self) -> Result<Vec<String>, String> {
        let mut versions = Vec::new();
        let mut next = Some(self.repo.url("tags/list"));
        for _ in 0..MAX_TAG_PAGES {
            let Some(url) = next.take() else { break };
            let answer = self.get(&url, None, MAX_SMALL_ANSWER).await?;
            next = next_page(&self.repo.base, &answer);
            let body = fetch::ok_body(&url, answer)?;
            let list: TagList = serde_json::from_slice(&body)
                .map_err(|e| format!("GET {url}: not a tag list: {e}"))?;
            versions.extend(
                list.tags
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| t.replace('_', "+")),
            );
        }
        Ok(versions)
    }

    /// The archive of `version`, checked against the digest its manifest names.
    pub async fn chart_archive(
        &mut self,
        version: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, String> {
        let manifest_url = self
            .repo
            .url(&format!("manifests/{}", version.replace('+', "_")));
        let answer = self
            .get(&manifest_url, Some(MANIFEST_TYPES), MAX_SMALL_ANSWER)
            .await?;
        let body = fetch::ok_body(&manifest_url, answer)?;
        let manifest: Manifest = serde_json::from_slice(&body)
            .map_err(|e| format!("GET {manifest_url}: not an image manifest: {e}"))?;
        let layer = manifest
            .layers
            .iter()
            .find(|l| CHART_LAYER_TYPES.contains(&l.media_type.as_str()))
            .ok_or_else(|| {
                format!(
                    "{}:{version} is not a Helm chart (no layer of Helm's chart media type)",
                    self.repo.name
                )
            })?;
        let expected = layer
            .digest
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("layer digest {:?} is not sha256", layer.digest))?
            .to_ascii_lowercase();
        if layer.size.is_some_and(|size| size > max_bytes) {
            return Err(format!(
                "the chart archive is larger than {max_bytes} bytes"
            ));
        }
        let blob_url = self.repo.url(&format!("blobs/{}", layer.digest));
        let answer = self.get(&blob_url, None, max_bytes).await?;
        let blob = fetch::ok_body(&blob_url, answer)?;
        let actual = sha256_hex(&blob);
        if actual != expected {
            return Err(format!(
                "the archive of {}:{version} has digest sha256:{actual}, its manifest says {}",
                self.repo.name, layer.digest
            ));
        }
        Ok(blob)
    }

    /// A GET that answers a 401 challenge once.
    async fn get(&mut self, url: &str, accept: Option<&str>, max: u64) -> Result<Answer, String> {
        let answer = fetch::get(self.client, url, &self.auth, accept, max).await?;
        let Some(challenge) = answer.challenge().map(str::to_string) else {
            return Ok(answer);
        };
        let Some(auth) = self.answer_challenge(&challenge).await? else {
            return Ok(answer);
        };
        self.auth = auth;
        fetch::get(self.client, url, &self.auth, accept, max).await
    }

    /// What to send after `challenge`, or `None` when nothing would help.
    async fn answer_challenge(&self, challenge: &str) -> Result<Option<Auth>, String> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Ok(self
                .basic
                .clone()
                .map(|(username, password)| Auth::Basic { username, password }));
        }
        if !scheme.eq_ignore_ascii_case("bearer") || matches!(self.auth, Auth::Bearer(_)) {
            return Ok(None);
        }
        let params = challenge_params(params);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| "the registry's Bearer challenge names no realm".to_string())?;
        let mut realm_url =
            Url::parse(&realm).map_err(|e| format!("the registry's token realm {realm:?}: {e}"))?;
        for (key, value) in params
            .iter()
            .filter(|(k, _)| k == "service" || k == "scope")
        {
            realm_url.query_pairs_mut().append_pair(key, value);
        }
        if !params.iter().any(|(k, _)| k == "scope") {
            let scope = format!("repository:{}:pull", self.repo.name);
            realm_url.query_pairs_mut().append_pair("scope", &scope);
        }
        let trusted = realm_url.scheme() == "https"
            || Url::parse(&self.repo.base).is_ok_and(|b| b.origin() == realm_url.origin());
        let auth = match (&self.basic, trusted) {
            (Some((username, password)), true) => Auth::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            _ => Auth::Anonymous,
        };
        let body = fetch::get_ok(
            self.client,
            realm_url.as_str(),
            &auth,
            None,
            MAX_SMALL_ANSWER,
        )
        .await?;
        let token: Token = serde_json::from_slice(&body)
            .map_err(|e| format!("the registry's token answer: {e}"))?;
        token
            .token
            .or(token.access_token)
            .filter(|t| !t.is_empty())
            .map(|t| Some(Auth::Bearer(t)))
            .ok_or_else(|| "the registry's token answer holds no token".to_string())
    }
}

/// `key="value", key=value` pairs of a challenge.
fn challenge_params(params: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = params.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((value, remaining)) => (value, remaining),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        pairs.push((key, value.to_string()));
        rest = remaining.trim_start().trim_start_matches(',');
    }
    pairs
}

/// The next page of a tag list, from `Link: </v2/...?last=x>; rel="next"`, on the same registry.
fn next_page(base: &str, answer: &Answer) -> Option<String> {
    let link = answer.headers.get("link")?.to_str().ok()?;
    if !link.contains("rel=\"next\"") {
        return None;
    }
    let target = link.split_once('<')?.1.split_once('>')?.0;
    let url = Url::parse(&format!("{base}/")).ok()?.join(target).ok()?;
    url.as_str().starts_with(base).then(|| url.to_string())
}

#[derive(Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layer {
    media_type: String,
    digest: String,
    size: Option<u64>,
}

#[derive(Deserialize)]
struct Token {
    token: Option<String>,
    access_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_named_from_the_url_path_and_the_chart() {
        let repo = OciRepository::new("oci://127.0.0.1:5000/charts/", "podinfo", true).unwrap();
        assert_eq!(repo.base, "http://127.0.0.1:5000");
        assert_eq!(repo.name, "charts/podinfo");
        assert_eq!(
            repo.url("tags/list"),
            "http://127.0.0.1:5000/v2/charts/podinfo/tags/list"
        );
        let repo = OciRepository::new("registry.example.com", "nginx", false).unwrap();
        assert_eq!(repo.base, "https://registry.example.com");
        assert_eq!(repo.name, "nginx");
    }

    #[test]
    fn malformed_repositories_are_refused() {
        for (url, chart) in [
            ("oci://", "x"),
            ("oci://user@host/charts", "x"),
            ("oci://host/Charts", "x"),
            ("oci://host/charts", "../x"),
            ("oci://host//x", "y"),
            ("oci://-host/x", "y"),
        ] {
            assert!(
                OciRepository::new(url, chart, true).is_err(),
                "{url} {chart}"
            );
        }
    }

    #[test]
    fn challenges_are_parsed_with_and_without_quotes() {
        let params = challenge_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(
            params,
            vec![
                ("realm".into(), "https://auth.example/token".into()),
                ("service".into(), "registry.example".into()),
                ("scope".into(), "repository:a/b:pull".into()),
            ]
        );
        assert_eq!(
            challenge_params("realm=https://x/t, service=s"),
            vec![
                ("realm".into(), "https://x/t".into()),
                ("service".into(), "s".into())
            ]
        );
    }

    #[test]
    fn tag_pages_are_followed_on_the_same_registry_only() {
        let answer = |link: &str| Answer {
            status: reqwest::StatusCode::OK,
            headers: [(
                http::header::LINK,
                http::HeaderValue::from_str(link).unwrap(),
            )]
            .into_iter()
            .collect(),
            body: Vec::new(),
        };
        let base = "http://127.0.0.1:5000";
        assert_eq!(
            next_page(
                base,
                &answer(r#"</v2/c/p/tags/list?last=1.0.0&n=100>; rel="next""#)
            ),
            Some("http://127.0.0.1:5000/v2/c/p/tags/list?last=1.0.0&n=100".to_string())
        );
        assert_eq!(
            next_page(base, &answer(r#"<http://evil.example/v2/x>; rel="next""#)),
            None
        );
    }
}
