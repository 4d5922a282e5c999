//! Bounded HTTP GETs for chart repositories and OCI registries: every answer is read in chunks and
//! cut off past a byte limit, every request bounded in time by the client, and credentials are
//! sent only where the caller says (never into a message).

use http::header::{ACCEPT, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Client, StatusCode};

use crate::gitops::credentials::scrub_url;

/// How a request authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    Anonymous,
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::Anonymous => "Anonymous",
            Auth::Basic { .. } => "Basic(***)",
            Auth::Bearer(_) => "Bearer(***)",
        })
    }
}

/// An answer read whole (within the limit).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The `WWW-Authenticate` challenge of a 401.
    pub fn challenge(&self) -> Option<&str> {
        (self.status == StatusCode::UNAUTHORIZED)
            .then(|| self.headers.get(WWW_AUTHENTICATE))
            .flatten()
            .and_then(|v| v.to_str().ok())
    }
}

/// GETs `url` with `auth`, reading at most `max_bytes` of body; an error names the URL (never
/// the credentials) and why.
pub async fn get(
    client: &Client,
    url: &str,
    auth: &Auth,
    accept: Option<&str>,
    max_bytes: u64,
) -> Result<Answer, String> {
    let shown = scrub_url(url);
    let mut request = client.get(url);
    if let Some(accept) = accept {
        request = request.header(ACCEPT, accept);
    }
    request = match auth {
        Auth::Anonymous => request,
        Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
        Auth::Bearer(token) => request.bearer_auth(token),
    };
    let mut response = request
        .send()
        .await
        .map_err(|e| format!("GET {shown}: {}", describe(e)))?;
    let status = response.status();
    let headers = response.headers().clone();
    if response.content_length().is_some_and(|n| n > max_bytes) {
        return Err(format!(
            "GET {shown}: the answer is larger than {max_bytes} bytes"
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("GET {shown}: {}", describe(e)))?
    {
        if body.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(format!(
                "GET {shown}: the answer is larger than {max_bytes} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// GETs `url` and requires a 2xx answer.
pub async fn get_ok(
    client: &Client,
    url: &str,
    auth: &Auth,
    accept: Option<&str>,
    max_bytes: u64,
) -> Result<Vec<u8>, String> {
    let answer = get(client, url, auth, accept, max_bytes).await?;
    ok_body(url, answer)
}

/// The body of a 2xx answer, else an error naming the status.
pub fn ok_body(url: &str, answer: Answer) -> Result<Vec<u8>, String> {
    if answer.status.is_success() {
        return Ok(answer.body);
    }
    let hint = match answer.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            " (check the repository Secret's username and password)"
        }
        StatusCode::NOT_FOUND => " (no such repository, chart or version)",
        _ => "",
    };
    Err(format!(
        "GET {}: HTTP {}{hint}",
        scrub_url(url),
        answer.status
    ))
}

/// reqwest's message and its causes, without the URL it repeats (the caller names the URL once).
fn describe(error: reqwest::Error) -> String {
    let timed_out = error.is_timeout();
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if timed_out {
        text = format!("timed out ({text})");
    }
    text
}

/// The SHA-256 of `bytes` as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
