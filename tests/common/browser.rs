//! A real headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`,
//! installed by `e2e/cluster/up`): the browser the dashboard's users have, with nothing mocked.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use super::{free_local_addr, wait_for};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver on a free loopback port and one headless Chromium session. The flags
    /// keep Chromium off the network: this machine allows 127.0.0.0/8 only.
    pub async fn start() -> Self {
        let port = free_local_addr().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e} (e2e/cluster/up installs it)"));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http,
            _profile: profile,
        };
        wait_for("ChromeDriver to answer", Duration::from_secs(30), || {
            let http = browser.http.clone();
            let url = format!("{}/status", browser.base);
            async move {
                let status: Value = http.get(url).send().await.ok()?.json().await.ok()?;
                status["value"]["ready"].as_bool().filter(|r| *r)
            }
        })
        .await;
        let args = json!([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--window-size=1280,1500",
            format!("--user-data-dir={}", browser._profile.path().display()),
        ]);
        let session = browser
            .send(
                reqwest::Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
                }}}),
            )
            .await;
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"));
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.try_send(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    /// A WebDriver command; its error (`stale element reference`, ...) as text.
    async fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if method != reqwest::Method::GET {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or_default();
        if status.is_success() {
            Ok(answer["value"].clone())
        } else {
            Err(format!("{status} {answer}"))
        }
    }

    pub async fn goto(&self, url: &str) {
        self.send(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// Runs `script` (a function body; `return` its value) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        self.send(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Waits until `script` returns something `accept` takes, and returns that.
    pub async fn wait_eval<T>(
        &self,
        what: &str,
        script: &str,
        accept: impl Fn(&Value) -> Option<T>,
    ) -> T {
        wait_for(what, Duration::from_secs(120), || async {
            accept(&self.eval(script).await)
        })
        .await
    }

    /// The text of the first element matching `css`, empty when there is none.
    pub async fn text(&self, css: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.textContent : '';",
            Value::String(css.to_string())
        );
        self.eval(&script)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until an element matching `css` exists, then clicks it as a user does (again if the
    /// page redrew it between finding and clicking).
    pub async fn click(&self, css: &str) {
        wait_for(
            &format!("a click on {css}"),
            Duration::from_secs(30),
            || async {
                let found = self
                    .try_send(
                        reqwest::Method::POST,
                        "/element",
                        json!({"using": "css selector", "value": css}),
                    )
                    .await
                    .ok()?;
                let id = found[ELEMENT].as_str()?.to_string();
                self.try_send(
                    reqwest::Method::POST,
                    &format!("/element/{id}/click"),
                    json!({}),
                )
                .await
                .ok()
            },
        )
        .await;
    }

    /// Saves a PNG of the window in `dir` (created) as `name`, and returns its path.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let encoded = self
            .send(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        std::fs::create_dir_all(dir).expect("artefact dir");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }
}

impl Drop for Browser {
    /// ChromeDriver and the Chromium it started share a process group: end them all.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}

/// Where tests leave their screenshots: `e2e/.run/artifacts/<test>` (ignored by Git, kept after
/// the run for people and CI to look at).
pub fn artifact_dir(test: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("e2e/.run/artifacts")
        .join(test)
}
