//! The browser tests' world: a real gateway (in-process, `TestServer`,
//! loaded with the six agencies' samples and some union and refused
//! traffic), the real console as its own process (`gateway-console`, its
//! standard error captured: `gateway_tests::console`), and headless Chromium driven through
//! chromedriver's WebDriver API (fantoccini over plain HTTP on loopback).
//!
//! Without chromium and chromedriver installed the tests say so and pass,
//! unless `CONSOLE_BROWSER_REQUIRED` is set (CI sets it: there a missing
//! browser is a failure, not a skip).

#![allow(dead_code)]

use fantoccini::{Client, ClientBuilder, Locator};
use gateway::client::{PushOptions, push_file};
use gateway::proto::{self, audit_client::AuditClient};
use gateway_tests::console::ConsoleProcess;
use gateway_tests::{ServerState, TestPki, TestServer, sample};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// 马伟红: accepted social-insurance rows in the hrss sample.
pub const PERSON: &str = "340207197607111133";

pub type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// What the gateway's own process logged (this test process, all tests):
/// captured at debug level, the driver's own crates left out (they carry
/// the keystrokes the tests type).
pub fn gateway_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::new(
            "debug,fantoccini=off,webdriver=off,hyper_util::client=info",
        );
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// chromium and chromedriver, or why the test cannot run.
fn browser_binaries() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("CHROME_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            ["chromium", "chromium-browser", "google-chrome"]
                .iter()
                .find_map(|n| on_path(n))
        });
    let driver = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| on_path("chromedriver"));
    match (chromium, driver) {
        (Some(c), Some(d)) => Ok((c, d)),
        _ => Err("chromium and chromedriver are not installed \
                  (apt-get install -y chromium chromium-driver; .ci/run does this)"
            .into()),
    }
}

/// The directory screenshots go to: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("console-screenshots")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// At most two browsers at a time: the machines have two cores.
fn browsers() -> &'static tokio::sync::Semaphore {
    static S: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    S.get_or_init(|| tokio::sync::Semaphore::new(2))
}

/// chromedriver in a process group of its own, with the Chromium it
/// starts: the whole group is killed when dropped, so that a test that fails
/// before closing its session leaves no browser behind.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Browser {
    pub client: Client,
    driver: Driver,
    pub downloads: TempDir,
    pub profile: TempDir,
    _permit: tokio::sync::SemaphorePermit<'static>,
}

impl Browser {
    async fn start(chromium: &Path, chromedriver: &Path) -> Res<Browser> {
        let permit = browsers().acquire().await?;
        let port = free_port();
        let driver = Driver(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("chromedriver did not start".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let downloads = tempfile::tempdir()?;
        let profile = tempfile::tempdir()?;
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", "--hide-scrollbars", "--lang=zh-CN",
                    format!("--user-data-dir={}", profile.path().display()),
                    "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                    "--disable-background-networking", "--disable-sync", "--disable-default-apps",
                    "--disable-component-update", "--metrics-recording-only",
                ],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                    "intl.accept_languages": "zh-CN,zh",
                },
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await?;
        Ok(Browser {
            client,
            driver,
            downloads,
            profile,
            _permit: permit,
        })
    }

    /// Ends the session (Chromium writes its profile out) and the driver.
    pub async fn close(self) -> Res<(TempDir, TempDir)> {
        self.client.clone().close().await?;
        // Chromium flushes its history database as it exits.
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(self.driver);
        Ok((self.downloads, self.profile))
    }
}

/// A gateway with the samples pushed and some traffic, the console on it,
/// and a browser.
pub struct Env {
    pub pki: TestPki,
    pub state: ServerState,
    pub server: TestServer,
    pub console: ConsoleProcess,
    pub browser: Option<Browser>,
    pub name: &'static str,
}

impl Env {
    /// `None` (after saying why) when no browser is installed.
    pub async fn start(name: &'static str) -> Option<Env> {
        let (chromium, driver) = match browser_binaries() {
            Ok(b) => b,
            Err(why) => {
                if std::env::var_os("CONSOLE_BROWSER_REQUIRED").is_some() {
                    panic!("{name}: {why}");
                }
                // Past the test harness's capture, so that it shows.
                let _ = writeln!(std::io::stderr(), "SKIPPED {name}: {why}");
                return None;
            }
        };
        capture_logs();
        let mut pki = TestPki::new();
        for id in [
            "agency/hrss",
            "agency/tax",
            "agency/housing",
            "agency/market_regulation",
            "agency/public_security",
            "agency/work_safety",
            "union/assistance",
            "union/rights",
            "auditor/compliance",
        ] {
            pki.issue(id);
        }
        let state = ServerState::new();
        let server = TestServer::start(&pki, &state).await;
        traffic(&server, &pki).await;
        let console = ConsoleProcess::start(
            Path::new(env!("CARGO_BIN_EXE_gateway-console")),
            &[],
            &server,
            &pki,
            &state,
        )
        .expect("start the console");
        let browser = Browser::start(&chromium, &driver)
            .await
            .expect("start chromium through chromedriver");
        Some(Env {
            pki,
            state,
            server,
            console,
            browser: Some(browser),
            name,
        })
    }

    pub fn b(&self) -> &Client {
        &self.browser.as_ref().expect("the browser is open").client
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.console.url)
    }

    pub async fn goto(&self, path: &str) -> Res {
        self.b().goto(&self.url(path)).await?;
        Ok(())
    }

    pub async fn find(&self, css: &str) -> Res<fantoccini::elements::Element> {
        match self
            .b()
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => Ok(e),
            Err(e) => {
                let url = self.b().current_url().await.map(|u| u.to_string());
                let text = match self.b().find(Locator::Css("body")).await {
                    Ok(b) => b.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                Err(format!("{css} not found ({e}) on {url:?}: {text}").into())
            }
        }
    }

    pub async fn text(&self, css: &str) -> Res<String> {
        Ok(self.find(css).await?.text().await?)
    }

    pub async fn attr(&self, css: &str, name: &str) -> Res<String> {
        Ok(self.find(css).await?.attr(name).await?.unwrap_or_default())
    }

    pub async fn click(&self, css: &str) -> Res {
        self.find(css).await?.click().await?;
        Ok(())
    }

    pub async fn type_into(&self, css: &str, text: &str) -> Res {
        let e = self.find(css).await?;
        e.clear().await?;
        e.send_keys(text).await?;
        Ok(())
    }

    /// Cells of the rows of a table, as text.
    pub async fn rows(&self, css: &str) -> Res<Vec<Vec<String>>> {
        let mut out = Vec::new();
        for tr in self
            .b()
            .find_all(Locator::Css(&format!("{css} tbody tr")))
            .await?
        {
            let mut cells = Vec::new();
            for td in tr.find_all(Locator::Css("td")).await? {
                cells.push(td.text().await?);
            }
            out.push(cells);
        }
        Ok(out)
    }

    /// The `data-seq` of a table's rows.
    pub async fn seqs(&self, css: &str) -> Res<Vec<u64>> {
        let mut out = Vec::new();
        for tr in self
            .b()
            .find_all(Locator::Css(&format!("{css} tbody tr")))
            .await?
        {
            out.push(tr.attr("data-seq").await?.unwrap_or_default().parse()?);
        }
        Ok(out)
    }

    /// A screenshot of the whole page into `target/console-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> Res {
        self.screenshot_width(name, 1280).await
    }

    /// The same, in a window `width` pixels wide.
    pub async fn screenshot_width(&self, name: &str, width: u32) -> Res {
        let b = self.b();
        b.set_window_size(width, 1000).await?;
        let height = b
            .execute("return document.documentElement.scrollHeight", vec![])
            .await?
            .as_u64()
            .unwrap_or(1000)
            .clamp(600, 4000);
        b.set_window_size(width, height as u32 + 140).await?;
        let png = b.screenshot().await?;
        b.set_window_size(1280, 1000).await?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{name}.png")), png)?;
        Ok(())
    }

    /// The part of the page a `width` × `height` window shows.
    pub async fn screenshot_window(&self, name: &str, width: u32, height: u32) -> Res {
        let b = self.b();
        b.set_window_size(width, height).await?;
        let png = b.screenshot().await?;
        b.set_window_size(1280, 1000).await?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{name}.png")), png)?;
        Ok(())
    }

    /// Renders the page for print (`@media print`) or, with `""`, for the screen.
    pub async fn emulate_media(&self, media: &'static str) -> Res {
        self.b()
            .issue_cmd(Cdp {
                cmd: "Emulation.setEmulatedMedia",
                params: serde_json::json!({ "media": media }),
            })
            .await?;
        Ok(())
    }

    pub async fn auditor(&self) -> AuditClient<tonic::transport::Channel> {
        AuditClient::new(
            self.server
                .connect(&self.pki.client("auditor/compliance"))
                .await
                .unwrap(),
        )
    }

    /// Every entry matching `q`, all pages, as the gateway answers an auditor.
    pub async fn query_all(&self, mut q: proto::AuditQuery) -> Vec<proto::AuditEntry> {
        let mut client = self.auditor().await;
        let mut out = Vec::new();
        loop {
            let page = client.query(q.clone()).await.unwrap().into_inner();
            out.extend(page.entries);
            if page.next_after_seq == 0 {
                return out;
            }
            q.after_seq = page.next_after_seq;
        }
    }

    /// The auditors' pseudonym of [`PERSON`].
    pub fn person_token(&self) -> String {
        let keys = gateway::keys::Keys::load(&self.state.keys_file(), false).unwrap();
        gateway::audit::auditor_pseudonyms(&keys).token(PERSON)
    }

    pub fn db(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(self.state.data_dir().join("gateway.db")).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    /// The console stopped and started again on the same state file.
    pub fn restart_console(&mut self) -> Res {
        self.console.restart(&self.server, &self.pki, &self.state)
    }

    /// One more audited call (a look-up of someone nobody pushed).
    pub async fn one_entry(&self) {
        let ch = self
            .server
            .connect(&self.pki.client("union/assistance"))
            .await
            .unwrap();
        proto::union_exchange_client::UnionExchangeClient::new(ch)
            .lookup(proto::LookupRequest {
                id_number: gateway_tests::valid_identity_number("340202", "19900101", 7),
                case_number: "KN-2026-0100".into(),
                purpose: "hardship_application".into(),
            })
            .await
            .unwrap();
    }

    pub async fn stop(mut self) {
        if let Some(b) = self.browser.take() {
            let _ = b.close().await;
        }
        self.server.stop().await;
    }
}

/// All six agencies' samples, a pull, look-ups of [`PERSON`], a denied call
/// and a refused connection.
async fn traffic(server: &TestServer, pki: &TestPki) {
    for (agency, file) in [
        ("hrss", "hrss.csv"),
        ("tax", "tax.csv"),
        ("housing", "housing.jsonl"),
        ("market_regulation", "market_regulation.jsonl"),
        ("public_security", "public_security.jsonl"),
        ("work_safety", "work_safety.jsonl"),
    ] {
        let ch = server
            .connect(&pki.client(&format!("agency/{agency}")))
            .await
            .unwrap();
        push_file(ch, &sample(file), &PushOptions::default(), |_| {})
            .await
            .unwrap();
    }
    let assistance = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    gateway::client::pull(
        assistance.clone(),
        proto::PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: "hardship_screening".into(),
            ..Default::default()
        },
        |_| Ok(()),
    )
    .await
    .unwrap();
    let mut union = proto::union_exchange_client::UnionExchangeClient::new(assistance.clone());
    for case in ["KN-2026-0001", "KN-2026-0002"] {
        union
            .lookup(proto::LookupRequest {
                id_number: PERSON.into(),
                case_number: case.into(),
                purpose: "hardship_application".into(),
            })
            .await
            .unwrap();
    }
    // A purpose outside the policy: denied and audited.
    let denied = gateway::client::pull(
        assistance,
        proto::PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: "marketing".into(),
            ..Default::default()
        },
        |_| Ok(()),
    )
    .await;
    assert!(denied.is_err());
    // A client without a certificate: refused at the handshake, audited.
    if let Ok(ch) = server.connect(&pki.anonymous_client()).await {
        let _ = proto::audit_client::AuditClient::new(ch)
            .get_checkpoint(proto::GetCheckpointRequest {})
            .await;
    }
}

/// A Chrome DevTools command through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        let body = serde_json::json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}
