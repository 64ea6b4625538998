//! A real browser for the console's tests: Debian's headless Chromium, driven over
//! WebDriver by its `chromedriver`, trusting exactly one gateway's server certificate,
//! with axe-core (installed by `tests/install-deps.sh test`) for accessibility checks.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::Gateway;

/// A headless Chromium session and the chromedriver that runs it.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    profile: PathBuf,
    /// Where the browser saves downloads.
    pub downloads: PathBuf,
}

/// How long [`Browser::wait_for`] waits by default.
pub const WAIT: Duration = Duration::from_secs(20);

fn require(tool: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(tool);
    assert!(
        path.exists(),
        "{tool} is missing: run tests/install-deps.sh test (make test does)"
    );
    path
}

/// The axe-core script `tests/install-deps.sh test` installs.
fn axe_source() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.node/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run tests/install-deps.sh test (make test does)",
            path.display()
        )
    })
}

/// The base64 SHA-256 of `gateway`'s server certificate's public key, which Chromium is
/// told to trust (and nothing else untrusted).
fn server_spki(gateway: &Gateway) -> String {
    let pem = std::fs::read(gateway.cert_path("server.pem")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    spki_of(&pem.contents)
}

/// The base64 SHA-256 of DER certificate `der`'s public key.
fn spki_of(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    base64::engine::general_purpose::STANDARD
        .encode(Sha256::digest(cert.tbs_certificate.subject_pki.raw))
}

impl Browser {
    /// A new browser (a profile of its own) for `gateway`'s console.
    pub async fn start(gateway: &Gateway) -> Self {
        Self::start_trusting(gateway, &[]).await
    }

    /// [`Browser::start`], also trusting the servers of certificates `also` (DER).
    pub async fn start_trusting(gateway: &Gateway, also: &[&[u8]]) -> Self {
        let mut trusted = vec![server_spki(gateway)];
        trusted.extend(also.iter().map(|der| spki_of(der)));
        let chromium = require("chromium");
        let chromedriver = require("chromedriver");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let profile = crate::temp_state_dir("chromium");
        let downloads = profile.join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        // Chromium's own scratch directories go in the profile too, so that they leave
        // with it even when the browser is killed.
        let scratch = profile.join("tmp");
        std::fs::create_dir_all(&scratch).unwrap();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .env("TMPDIR", &scratch)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--ignore-certificate-errors-spki-list={}", trusted.join(",")),
                ],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            },
        });
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps.as_object().unwrap().clone());
        let started = Instant::now();
        let client = loop {
            match builder.connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(client) => break client,
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver did not start a session: {e}"),
            }
        };
        Self {
            client,
            driver,
            profile,
            downloads,
        }
    }

    /// Opens `url`, again when the load was dropped by a network change on this host
    /// (other tests' VM networks come and go; Chromium then fails requests in flight
    /// with ERR_NETWORK_CHANGED). Only for loads that may be repeated: see
    /// [`Browser::goto_once`].
    pub async fn goto(&self, url: &str) {
        for _ in 0..5 {
            self.client.goto(url).await.unwrap();
            if !self.on_error_page().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!(
            "{url} did not load: {}",
            self.eval("document.body.innerText").await
        );
    }

    /// Signs in as `tenant` (with `roles`) with a new development link, again with a new
    /// link when the load was dropped on the way (the dropped one may have been used).
    pub async fn sign_in(&self, gw: &Gateway, tenant: &str, roles: &[&str]) {
        for _ in 0..5 {
            if self.goto_once(&console_link(gw, tenant, roles)).await
                && self.eval("location.pathname === '/console/'").await == json!(true)
            {
                return;
            }
        }
        panic!("could not sign in as {tenant}");
    }

    /// Opens `url`, clicks `css` there and waits until `expr` is truthy, and returns its
    /// value; all of it again from `url` when a load on the way was dropped by a network
    /// change. For a click that starts a chain of redirects that cannot be repeated one by
    /// one (a sign-in at an identity provider: its code is used once), which is why
    /// [`Browser::wait_for`]'s reload of a dropped page is not enough.
    pub async fn click_through(&self, url: &str, css: &str, expr: &str) -> Value {
        for _ in 0..5 {
            self.goto(url).await;
            self.click(css).await;
            let started = Instant::now();
            while started.elapsed() < WAIT {
                if self.on_error_page().await {
                    break;
                }
                if let Ok(v) = self
                    .client
                    .execute(&format!("return ({expr});"), vec![])
                    .await
                {
                    if !matches!(v, Value::Null | Value::Bool(false))
                        && v != json!("")
                        && v != json!(0)
                    {
                        return v;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !self.on_error_page().await {
                let text = self.eval("document.body.innerText").await;
                panic!(
                    "waited {WAIT:?} for `{expr}` after clicking {css}; the page reads:\n{text}"
                );
            }
        }
        panic!("clicking {css} on {url} never got past a dropped load");
    }

    /// Opens `url` once: whether the load was dropped on the way (`false`).
    pub async fn goto_once(&self, url: &str) -> bool {
        self.client.goto(url).await.unwrap();
        !self.on_error_page().await
    }

    /// Whether the page is Chromium's own error page (a load that failed).
    async fn on_error_page(&self) -> bool {
        self.client
            .current_url()
            .await
            .is_ok_and(|u| u.scheme() == "chrome-error")
    }

    /// The value of JavaScript expression `expr` in the page.
    pub async fn eval(&self, expr: &str) -> Value {
        self.client
            .execute(&format!("return ({expr});"), vec![])
            .await
            .unwrap_or_else(|e| panic!("evaluating {expr}: {e}"))
    }

    /// Waits until `expr` is truthy in the page, and returns its value; panics with the
    /// page's text after `timeout`.
    pub async fn wait_for_within(&self, expr: &str, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            if let Ok(v) = self
                .client
                .execute(&format!("return ({expr});"), vec![])
                .await
            {
                if !matches!(v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0)
                {
                    return v;
                }
            }
            if started.elapsed() > timeout {
                let text = self.eval("document.body.innerText").await;
                panic!("waited {timeout:?} for `{expr}`; the page reads:\n{text}");
            }
            if self.on_error_page().await {
                // A page load dropped by a network change: every console page is a GET.
                let _ = self.client.refresh().await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// [`Browser::wait_for_within`] [`WAIT`].
    pub async fn wait_for(&self, expr: &str) -> Value {
        self.wait_for_within(expr, WAIT).await
    }

    /// Clicks the element `css` selects (waiting for it to be there and enabled).
    pub async fn click(&self, css: &str) {
        self.wait_for(&format!(
            "document.querySelector({0}) && !document.querySelector({0}).disabled",
            json!(css)
        ))
        .await;
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Types `text` into the element `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.wait_for(&format!("document.querySelector({})", json!(css)))
            .await;
        let el = self.client.find(Locator::Css(css)).await.unwrap();
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// The status of `fetch(path)` from the page, as the page's own script would see it,
    /// with `init` (a JSON object of fetch options).
    pub async fn fetch_status(&self, path: &str, init: Value) -> u16 {
        self.client
            .execute_async(
                "const [path, init, done] = arguments; \
                 fetch(path, init).then(r => done(r.status), e => done(String(e)));",
                vec![json!(path), init],
            )
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(0) as u16
    }

    /// Makes the browser fail every request whose URL matches one of `patterns` (`*` is
    /// a wildcard) as a network error, as a dropped connection would; `&[]` lets all
    /// through again. Through the DevTools protocol, which chromedriver relays.
    pub async fn block_urls(&self, patterns: &[&str]) {
        self.devtools("Network.enable", json!({})).await;
        self.devtools("Network.setBlockedURLs", json!({ "urls": patterns }))
            .await;
    }

    /// Runs DevTools protocol command `cmd` with `params` in the page.
    async fn devtools(&self, cmd: &'static str, params: Value) {
        self.client
            .issue_cmd(DevTools { cmd, params })
            .await
            .unwrap_or_else(|e| panic!("DevTools {cmd}: {e}"));
    }

    /// axe-core's serious and critical violations on the current page (rule ids with the
    /// first offending element of each).
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let _: Value = self
            .client
            .execute(&format!("{};return true;", axe_source()), vec![])
            .await
            .unwrap();
        let found = self
            .client
            .execute_async(
                "const done = arguments[0]; \
                 axe.run(document, { resultTypes: ['violations'] }).then(r => done(r.violations.filter( \
                   v => v.impact === 'serious' || v.impact === 'critical').map( \
                   v => v.id + ': ' + v.help + ' at ' + (v.nodes[0] && v.nodes[0].html))), \
                   e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await
            .unwrap();
        serde_json::from_value(found).unwrap()
    }

    /// The file named `name` once the browser has finished saving it.
    pub async fn downloaded(&self, name: &str) -> String {
        let path = self.downloads.join(name);
        let started = Instant::now();
        while started.elapsed() < WAIT {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let saved: Vec<_> = std::fs::read_dir(&self.downloads)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        panic!("{name} was not downloaded; the directory holds {saved:?}");
    }

    /// Ends the session and the driver.
    pub async fn stop(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A one-time console sign-in link for `tenant` (with `roles`), as `skyport console`
/// prints it.
pub fn console_link(gw: &Gateway, tenant: &str, roles: &[&str]) -> String {
    let state_dir = gw.state_dir.display().to_string();
    let url = gw.url("");
    let mut args = vec![
        "console",
        "--tenant",
        tenant,
        "--state-dir",
        &state_dir,
        "--url",
        &url,
    ];
    let roles = roles.join(",");
    if !roles.is_empty() {
        args.extend(["--roles", &roles]);
    }
    let (code, out) = crate::run_cli(&args);
    assert_eq!(code, 0, "skyport console: {out}");
    let link = out.trim().to_string();
    assert!(
        link.starts_with(&gw.url("/console/signin?ticket=")),
        "{link}"
    );
    link
}

/// A DevTools protocol command, sent through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct DevTools {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}
