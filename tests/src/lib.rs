//! Shared test utilities: a throw-away CA tree (good, expired, revoked and
//! foreign-CA certificates), the gateway started in-process through the same
//! `gateway::serve` that `main` uses, or as a real child process that can be
//! killed with SIGKILL, and the agency fixtures with their labels.
//!
//! One suite, two backends. The end-to-end tests are compiled into two test
//! binaries: `e2e` (tests/e2e.rs) and `e2e_postgres` (tests/e2e_postgres.rs,
//! the same files included by path). The binary's name picks the store
//! ([`Backend::current`]): in `e2e_postgres`, every [`ServerState`] gets a
//! fresh PostgreSQL database (`gw_test_…` on the machine's server, dropped
//! with the state) and every server a test starts, in-process or as a child
//! process, uses it; in `e2e`, the SQLite store in the state's data dir. The
//! tests themselves name no backend: they open stores through
//! [`ServerState::open_store`] and pass [`ServerState::store_env`] to the
//! processes they start. `cargo test --workspace` runs both.

#![forbid(unsafe_code)]

pub mod console;
pub mod held_audit;
pub mod raw;

use gateway::client::{self, ClientTls};
use gateway::pki::{Ca, Issued, Validity};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tonic::transport::Channel;

pub const TRUST_DOMAIN: &str = "exchange.wuhu.example";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The agencies' sample exports (byte-identical copies of the specification's samples).
pub fn sample(name: &str) -> PathBuf {
    repo_root()
        .join("tests/fixtures/agencies/samples")
        .join(name)
}

pub fn shipped_policies() -> PathBuf {
    repo_root().join("policies/shipped")
}

/// One line of `labels.jsonl`.
#[derive(Debug, Clone)]
pub struct Label {
    pub agency: String,
    pub row: u64,
    pub accept: bool,
    pub field: Option<String>,
    pub code: Option<String>,
}

pub fn labels(agency: &str) -> Vec<Label> {
    let text = std::fs::read_to_string(sample("labels.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Label {
                agency: v["agency"].as_str().unwrap().to_string(),
                row: v["row"].as_u64().unwrap(),
                accept: v["accept"].as_bool().unwrap(),
                field: v["field"].as_str().map(str::to_string),
                code: v["code"].as_str().map(str::to_string),
            }
        })
        .filter(|l| l.agency == agency)
        .collect()
}

/// Raw personal values of a sample file's rows (identity numbers in both the
/// 15- and 18-digit forms they appear in, and names), decoded from GBK for CSV.
pub fn hrss_personal_values() -> (Vec<String>, Vec<String>) {
    let bytes = std::fs::read(sample("hrss.csv")).unwrap();
    let (text, _, _) = encoding_rs::GBK.decode(&bytes);
    let mut ids = Vec::new();
    let mut names = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() < 3 {
            continue;
        }
        let id = cols[1].trim().trim_matches('\u{3000}').to_string();
        if id.len() >= 15 {
            ids.push(id);
        }
        names.push(cols[2].trim().to_string());
    }
    ids.sort();
    ids.dedup();
    names.sort();
    names.dedup();
    (ids, names)
}

/// A CA tree in a temporary directory.
pub struct TestPki {
    pub dir: TempDir,
    ca: Ca,
}

impl TestPki {
    /// CA, server certificate and an empty CRL.
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca = Ca::new("test CA").unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        ca.issue_server(&["localhost", "127.0.0.1"])
            .unwrap()
            .write(dir.path(), "server")
            .unwrap();
        let pki = TestPki { dir, ca };
        pki.write_crl(&[]);
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues `role/name` (valid for a year) and writes it under the tree.
    pub fn issue(&mut self, identity: &str) -> Issued {
        self.issue_with(identity, Validity::Days(365))
    }

    pub fn issue_with(&mut self, identity: &str, validity: Validity) -> Issued {
        let uri = format!("spiffe://{TRUST_DOMAIN}/{identity}");
        let issued = self.ca.issue_client(&uri, validity).unwrap();
        issued.write(self.dir.path(), identity).unwrap();
        issued
    }

    /// Writes `crl.pem` revoking the given certificates.
    pub fn write_crl(&self, revoked: &[&Issued]) {
        let serials: Vec<&[u8]> = revoked.iter().map(|i| i.serial.as_slice()).collect();
        std::fs::write(self.path("crl.pem"), self.ca.crl(&serials).unwrap()).unwrap();
    }

    /// Writes `crl.pem` revoking the given certificates, with the given
    /// `nextUpdate` (in the past: a stale CRL).
    pub fn write_crl_until(&self, revoked: &[&Issued], next_update: time::OffsetDateTime) {
        let serials: Vec<&[u8]> = revoked.iter().map(|i| i.serial.as_slice()).collect();
        let crl = self.ca.crl_until(&serials, next_update).unwrap();
        std::fs::write(self.path("crl.pem"), crl).unwrap();
    }

    /// Issues a new server certificate (rotation) and writes it over
    /// `server.pem`/`server.key`.
    pub fn rotate_server(&mut self) -> Issued {
        let issued = self.ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        issued.write(self.dir.path(), "server").unwrap();
        issued
    }

    /// Client TLS files for an identity issued by [`TestPki::issue`].
    pub fn client(&self, identity: &str) -> ClientTls {
        ClientTls::dev(self.dir.path(), identity).unwrap()
    }

    /// An identity from a different CA that the server does not trust.
    pub fn foreign_client(&self, identity: &str) -> ClientTls {
        let mut other = Ca::new("foreign CA").unwrap();
        let dir = self.path("foreign");
        let uri = format!("spiffe://{TRUST_DOMAIN}/{identity}");
        other
            .issue_client(&uri, Validity::Days(365))
            .unwrap()
            .write(&dir, identity)
            .unwrap();
        let mut tls = ClientTls::dev(&dir, identity).unwrap();
        tls.ca = self.path("ca.pem");
        tls
    }

    /// No client certificate at all.
    pub fn anonymous_client(&self) -> ClientTls {
        ClientTls {
            ca: self.path("ca.pem"),
            identity: None,
            server_name: "localhost".into(),
        }
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// A gateway served in-process by `gateway::serve` on 127.0.0.1:0.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The gateway served (e.g. to reload its policies as SIGHUP does).
    pub gateway: Arc<gateway::Gateway>,
    /// Its TLS material (see [`TestServer::reload_tls`]).
    pub tls: Arc<gateway::tls::ServerTls>,
    pub data_dir: PathBuf,
    pub keys_file: PathBuf,
    /// The metrics scrape endpoint, when started with one
    /// ([`TestServer::start_with_metrics`]).
    pub metrics_addr: Option<SocketAddr>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    scrape: Option<tokio::task::JoinHandle<()>>,
}

/// The store the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// PostgreSQL in the `e2e_postgres` test binary, SQLite elsewhere.
    pub fn current() -> Backend {
        static CURRENT: std::sync::OnceLock<Backend> = std::sync::OnceLock::new();
        *CURRENT.get_or_init(|| {
            let exe = std::env::current_exe().unwrap_or_default();
            let name = exe.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with("e2e_postgres") {
                Backend::Postgres
            } else {
                Backend::Sqlite
            }
        })
    }
}

/// Where a test server keeps its state (survives restarts of the server):
/// keys and files in `dir`, and the store of the suite's backend.
pub struct ServerState {
    /// The PostgreSQL database, on that backend (dropped before `dir`).
    database: Option<gateway::store::postgres::testing::TestDatabase>,
    pub dir: TempDir,
}

impl ServerState {
    pub fn new() -> ServerState {
        Self::on(Backend::current())
    }

    /// A state on the given backend, whichever the binary (the benchmark
    /// runs both stores in one process, to compare them under one load).
    pub fn on(backend: Backend) -> ServerState {
        ServerState {
            database: (backend == Backend::Postgres)
                .then(gateway::store::postgres::testing::TestDatabase::create),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A state on the embedded store, whatever the suite's backend (the
    /// source of a move to PostgreSQL).
    pub fn sqlite() -> ServerState {
        ServerState {
            database: None,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The same keys and data directory, with a new, empty PostgreSQL
    /// database as the store (where `gateway store copy` moves a store).
    pub fn with_new_database(mut self) -> ServerState {
        self.database = Some(gateway::store::postgres::testing::TestDatabase::create());
        self
    }

    /// Opens the state's store (the suite's backend).
    pub fn open_store(&self) -> Arc<dyn gateway::store::Store> {
        gateway::store::open(&self.store_config(), &self.data_dir()).unwrap()
    }

    /// The `[store]` section naming the state's store.
    pub fn store_config(&self) -> gateway::store::StoreConfig {
        gateway::store::StoreConfig {
            url: self.database.as_ref().map(|db| db.url().to_string()),
            ca_file: None,
        }
    }

    /// The environment a gateway process needs to use the state's store
    /// (nothing on SQLite, whose store is in `GATEWAY_DATA_DIR`).
    pub fn store_env(&self) -> Vec<(&'static str, String)> {
        self.database
            .iter()
            .map(|db| ("GATEWAY_STORE_URL", db.url().to_string()))
            .collect()
    }

    /// Accepted records of each of these batches, read from the store at
    /// rest (the gateway stopped, or killed).
    pub fn records_of_batches(&self, agency: &str, batch_ids: &[String]) -> Vec<u64> {
        match &self.database {
            Some(db) => batch_ids
                .iter()
                .map(|id| {
                    let rows = db.query_text(&format!(
                        "SELECT count(*) FROM records WHERE agency = '{agency}' AND batch_id = '{id}'"
                    ));
                    rows[0][0].as_deref().unwrap_or("0").parse().unwrap()
                })
                .collect(),
            None => {
                let store = gateway::store::sqlite::SqliteStore::open(&self.data_dir()).unwrap();
                batch_ids
                    .iter()
                    .map(|id| store.records_of_batch(agency, id).unwrap())
                    .collect()
            }
        }
    }

    /// The PostgreSQL database, on that backend.
    pub fn database(&self) -> Option<&gateway::store::postgres::testing::TestDatabase> {
        self.database.as_ref()
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    /// The data dir of replica `name` (see [`ProcessServer::start_replica`]).
    pub fn replica_data_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("replicas").join(name)
    }
    pub fn keys_file(&self) -> PathBuf {
        self.dir.path().join("keys.toml")
    }
}

impl Default for ServerState {
    fn default() -> Self {
        Self::new()
    }
}

impl TestServer {
    pub async fn start(pki: &TestPki, state: &ServerState) -> TestServer {
        Self::start_with_limits(pki, state, gateway::limits::LimitsConfig::default()).await
    }

    /// As [`TestServer::start`], with the given limits.
    pub async fn start_with_limits(
        pki: &TestPki,
        state: &ServerState,
        limits: gateway::limits::LimitsConfig,
    ) -> TestServer {
        Self::start_with_store(pki, state, limits, state.open_store()).await
    }

    /// As [`TestServer::start_with_limits`], on the given store (the real
    /// store of `state`, perhaps wrapped, e.g. in [`held_audit::HeldAudit`]).
    pub async fn start_with_store(
        pki: &TestPki,
        state: &ServerState,
        limits: gateway::limits::LimitsConfig,
        store: Arc<dyn gateway::store::Store>,
    ) -> TestServer {
        Self::start_serving(pki, state, limits, store, &shipped_policies()).await
    }

    /// As [`TestServer::start`], serving the policies in `dir`, which
    /// `server.gateway.reload_policies()` reloads (as SIGHUP does).
    pub async fn start_with_policies(pki: &TestPki, state: &ServerState, dir: &Path) -> TestServer {
        let limits = gateway::limits::LimitsConfig::default();
        Self::start_serving(pki, state, limits, state.open_store(), dir).await
    }

    /// As [`TestServer::start`], with metrics as `metrics` says; with
    /// `metrics.scrape`, the scrape endpoint listens on `metrics_addr`.
    pub async fn start_with_metrics(
        pki: &TestPki,
        state: &ServerState,
        metrics: gateway::metrics::MetricsOptions,
    ) -> TestServer {
        let limits = gateway::limits::LimitsConfig::default();
        let (store, policies) = (state.open_store(), shipped_policies());
        let stale_crl = gateway::tls::StaleCrl::Refuse;
        Self::start_serving_tls(pki, state, limits, store, &policies, stale_crl, metrics).await
    }

    /// As [`TestServer::start`], treating a CRL past its `nextUpdate` as `stale_crl` says.
    pub async fn start_with_stale_crl(
        pki: &TestPki,
        state: &ServerState,
        stale_crl: gateway::tls::StaleCrl,
    ) -> TestServer {
        let limits = gateway::limits::LimitsConfig::default();
        Self::start_serving_tls(
            pki,
            state,
            limits,
            state.open_store(),
            &shipped_policies(),
            stale_crl,
            Default::default(),
        )
        .await
    }

    async fn start_serving(
        pki: &TestPki,
        state: &ServerState,
        limits: gateway::limits::LimitsConfig,
        store: Arc<dyn gateway::store::Store>,
        policies_dir: &Path,
    ) -> TestServer {
        Self::start_serving_tls(
            pki,
            state,
            limits,
            store,
            policies_dir,
            gateway::tls::StaleCrl::Refuse,
            Default::default(),
        )
        .await
    }

    async fn start_serving_tls(
        pki: &TestPki,
        state: &ServerState,
        limits: gateway::limits::LimitsConfig,
        store: Arc<dyn gateway::store::Store>,
        policies_dir: &Path,
        stale_crl: gateway::tls::StaleCrl,
        metrics: gateway::metrics::MetricsOptions,
    ) -> TestServer {
        gateway::tls::install_crypto_provider();
        let keys = gateway::keys::Keys::load(&state.keys_file(), true).unwrap();
        let policies = policies::PolicySet::load_dir(policies_dir).unwrap();
        let gw = Arc::new(
            gateway::Gateway::new(
                TRUST_DOMAIN.to_string(),
                false,
                store,
                Arc::new(keys),
                policies,
            )
            .unwrap()
            .with_limits(limits)
            .with_policies_dir(policies_dir.to_path_buf())
            .with_metrics(Arc::new(gateway::metrics::Metrics::new(&metrics).unwrap())),
        );
        let (metrics_addr, scrape) = if metrics.scrape {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let served = gateway::metrics::serve_scrape(listener, gw.metrics.clone());
            (Some(addr), Some(tokio::spawn(served)))
        } else {
            (None, None)
        };
        let served = gw.clone();
        let tls = gateway::tls::ServerTls::load(gateway::tls::TlsFiles {
            ca: pki.path("ca.pem"),
            cert: pki.path("server.pem"),
            key: pki.path("server.key"),
            crls: vec![pki.path("crl.pem")],
            stale_crl,
        })
        .unwrap();
        let served_tls = tls.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            gateway::serve(
                listener,
                served,
                served_tls,
                Duration::from_secs(5),
                async {
                    let _ = rx.await;
                },
            )
            .await
            .unwrap();
        });
        TestServer {
            addr,
            gateway: gw,
            tls,
            data_dir: state.data_dir(),
            keys_file: state.keys_file(),
            metrics_addr,
            shutdown: Some(tx),
            task: Some(task),
            scrape,
        }
    }

    /// Whether the server task is still serving (it ends only on `stop` or
    /// an error).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    pub async fn connect(&self, tls: &ClientTls) -> anyhow::Result<Channel> {
        client::connect(&self.addr.to_string(), tls).await
    }

    /// Reloads the TLS material from the PKI's files, as SIGHUP does.
    pub fn reload_tls(&self) -> Result<gateway::tls::Reloaded, gateway::tls::TlsError> {
        gateway::reload_tls(&self.gateway, &self.tls)
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        if let Some(scrape) = self.scrape.take() {
            scrape.abort();
        }
        // The last export over OTLP, if any (it needs this runtime's thread).
        let metrics = self.gateway.metrics.clone();
        let _ = tokio::task::spawn_blocking(move || metrics.shutdown()).await;
    }

    /// The scrape endpoint's answer to `GET path` (status line and body), over
    /// plain HTTP/1.1.
    pub async fn scrape_path(&self, path: &str) -> (String, String) {
        http_get(
            self.metrics_addr.expect("started with a scrape endpoint"),
            path,
        )
        .await
    }

    /// The metrics in the Prometheus text format, as a scraper gets them.
    pub async fn scrape(&self) -> String {
        let (status, body) = self.scrape_path("/metrics").await;
        assert!(status.contains(" 200 "), "{status}: {body}");
        body
    }
}

/// `gateway serve` configured (through its environment) with the PKI, state
/// and policies given, listening on `addr`; the key file is created if
/// missing.
pub fn serve_command(
    binary: &Path,
    pki: &TestPki,
    state: &ServerState,
    policies_dir: &Path,
    addr: SocketAddr,
) -> std::process::Command {
    if !state.keys_file().exists() {
        gateway::keys::Keys::generate_file(&state.keys_file()).unwrap();
    }
    let mut command = std::process::Command::new(binary);
    command
        .arg("serve")
        .env("GATEWAY_LISTEN", addr.to_string())
        .env("GATEWAY_DATA_DIR", state.data_dir())
        .envs(state.store_env())
        .env("GATEWAY_KEYS_FILE", state.keys_file())
        .env("GATEWAY_DEV_MODE", "false")
        .env("GATEWAY_TRUST_DOMAIN", TRUST_DOMAIN)
        .env("GATEWAY_POLICIES_DIR", policies_dir)
        .env("GATEWAY_TLS_CA", pki.path("ca.pem"))
        .env("GATEWAY_TLS_CERT", pki.path("server.pem"))
        .env("GATEWAY_TLS_KEY", pki.path("server.key"))
        .env("GATEWAY_TLS_CRLS", pki.path("crl.pem"))
        .env("GATEWAY_LOG", "warn");
    command
}

/// The answer to `GET path` at `addr` (status line and body), over plain
/// HTTP/1.1: the metrics scrape endpoint and the compliance console.
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let body = &response[split + 4..];
    let status = head.lines().next().unwrap_or_default().to_string();
    // Chunked transfer encoding: the chunks' bodies, without their sizes
    // (in bytes: a chunk may end inside a character).
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        let mut rest = body;
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&rest[..eol]).unwrap_or_default();
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let after = &rest[eol + 2..];
            out.extend_from_slice(&after[..size]);
            rest = after[size..]
                .strip_prefix(b"\r\n")
                .unwrap_or(&after[size..]);
        }
        out
    } else {
        body.to_vec()
    };
    (status, String::from_utf8(body).expect("a UTF-8 answer"))
}

/// A loopback address with a port free at the time of the call.
fn free_local_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The real `gateway serve` as a child process (for crash tests).
pub struct ProcessServer {
    pub child: std::process::Child,
    pub addr: SocketAddr,
}

impl ProcessServer {
    /// Starts `gateway serve` with the PKI and state given, on a free port, and
    /// waits until it accepts connections.
    pub fn start(binary: &Path, pki: &TestPki, state: &ServerState) -> ProcessServer {
        Self::start_with_policies(binary, pki, state, &shipped_policies())
    }

    /// As [`ProcessServer::start`], serving the policies in `policies_dir`.
    pub fn start_with_policies(
        binary: &Path,
        pki: &TestPki,
        state: &ServerState,
        policies_dir: &Path,
    ) -> ProcessServer {
        let addr = free_local_addr();
        Self::spawn(serve_command(binary, pki, state, policies_dir, addr), addr)
    }

    /// One of several `gateway serve` processes on `state`'s one store
    /// (PostgreSQL: replicas share a database, never a data dir, which each
    /// process locks): replica `name` keeps its own data dir under the
    /// state's directory and shares the key file and the database, reached
    /// at `store_url` when given (e.g. through a proxy a test can cut),
    /// else at the state's.
    pub fn start_replica(
        binary: &Path,
        pki: &TestPki,
        state: &ServerState,
        name: &str,
        store_url: Option<&str>,
    ) -> ProcessServer {
        assert!(
            state.database().is_some(),
            "replicas share a PostgreSQL database; the SQLite store belongs to one process"
        );
        let addr = free_local_addr();
        let mut command = serve_command(binary, pki, state, &shipped_policies(), addr);
        // Later settings of a variable replace earlier ones.
        command.env("GATEWAY_DATA_DIR", state.replica_data_dir(name));
        if let Some(url) = store_url {
            command.env("GATEWAY_STORE_URL", url);
        }
        Self::spawn(command, addr)
    }

    /// Spawns `command` (a `gateway serve` listening on `addr`) and waits
    /// until it accepts connections.
    fn spawn(mut command: std::process::Command, addr: SocketAddr) -> ProcessServer {
        let child = command
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start gateway");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "gateway did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ProcessServer { child, addr }
    }

    /// Sends SIGHUP (policy and TLS reload).
    pub fn hangup(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP failed");
    }

    /// SIGTERM: a clean shutdown (drain, then flush). Returns how the
    /// process ended, waiting at most `within` for it.
    pub fn terminate(mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGKILL: no shutdown, no flush, no destructor.
    pub fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ProcessServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Audit entries with the given action, read as a compliance officer over mTLS
/// (the PKI must have issued `auditor/compliance`).
pub async fn audit_entries(
    server: &TestServer,
    pki: &TestPki,
    action: &str,
) -> Vec<gateway::proto::AuditEntry> {
    let channel = server
        .connect(&pki.client("auditor/compliance"))
        .await
        .unwrap();
    let mut client = gateway::proto::audit_client::AuditClient::new(channel);
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .query(gateway::proto::AuditQuery {
                action: action.into(),
                after_seq: after,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        entries.extend(page.entries);
        if page.next_after_seq == 0 {
            return entries;
        }
        after = page.next_after_seq;
    }
}

/// A valid 18-digit identity number (GB 11643 check character), for generated rows.
pub fn valid_identity_number(area: &str, birth: &str, sequence: u32) -> String {
    let body = format!("{area}{birth}{:03}", sequence % 1000);
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body
        .bytes()
        .zip(W)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{body}{check}")
}

/// `n` valid hrss rows (GBK CSV, no header) with unique source keys, numbered from `start`.
pub fn synthetic_hrss_rows(start: u64, n: u64) -> Vec<Vec<u8>> {
    (start..start + n)
        .map(|i| synthetic_hrss_row(i, '1', "20250101120000"))
        .collect()
}

/// Row `i` of [`synthetic_hrss_rows`] with the given change type (`BGLX`) and
/// change timestamp (`BGSJ`): the same source key, so a later one supersedes it.
pub fn synthetic_hrss_row(i: u64, change: char, changed_at: &str) -> Vec<u8> {
    synthetic_hrss_row_with_status(i, '1', change, changed_at)
}

/// A copy of the shipped policies in a directory of its own, for a test
/// that edits and reloads them.
pub fn shipped_policies_copy() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(shipped_policies()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// Row `i` of [`synthetic_hrss_rows`] with the given contribution status
/// (`JFZT`: 1 paying, 2 suspended, 3 terminated) as well.
pub fn synthetic_hrss_row_with_status(
    i: u64,
    status: char,
    change: char,
    changed_at: &str,
) -> Vec<u8> {
    let line = format!(
        "{:012},{},测试{},91340207Y2L8WFB30P,芜湖埃夫特新材料有限公司,310,\"5,{:03}.50\",202501,{status},{change},{changed_at}",
        340_200_000_000u64 + i,
        valid_identity_number("340202", "19850315", i as u32),
        ["甲", "乙", "丙", "丁"][(i % 4) as usize],
        i % 1000
    );
    encoding_rs::GBK.encode(&line).0.into_owned()
}

/// Pushes `batches` in one stream as the agency on `channel` and returns
/// every receipt, in order, until the server ends the stream.
pub async fn push_batches(
    channel: &Channel,
    batches: Vec<gateway::proto::PushBatch>,
) -> Vec<gateway::proto::BatchReceipt> {
    let mut receipts =
        gateway::proto::agency_ingest_client::AgencyIngestClient::new(channel.clone())
            .push(tokio_stream::iter(batches))
            .await
            .unwrap()
            .into_inner();
    let mut got = Vec::new();
    while let Some(r) = receipts.message().await.unwrap() {
        got.push(r);
    }
    got
}

/// Pushes one batch of hrss rows (GBK CSV) as the agency on `channel` and
/// returns its receipt.
pub async fn push_hrss_rows(
    channel: &Channel,
    batch_id: &str,
    rows: Vec<Vec<u8>>,
) -> gateway::proto::BatchReceipt {
    let batch = gateway::proto::PushBatch {
        batch_id: batch_id.into(),
        format: gateway::proto::NativeFormat::CsvGbk as i32,
        header: hrss_header(),
        rows,
        first_row: 1,
    };
    let mut receipts =
        gateway::proto::agency_ingest_client::AgencyIngestClient::new(channel.clone())
            .push(tokio_stream::iter(vec![batch]))
            .await
            .unwrap()
            .into_inner();
    receipts.message().await.unwrap().unwrap()
}

/// The GBK header line of the hrss export.
pub fn hrss_header() -> Vec<u8> {
    let bytes = std::fs::read(sample("hrss.csv")).unwrap();
    let end = bytes.iter().position(|&b| b == b'\n').unwrap();
    let line = &bytes[..end];
    line.strip_suffix(b"\r").unwrap_or(line).to_vec()
}

/// One TLS handshake with the server at `addr`, without gRPC: the server's
/// certificate (DER) if the server accepted the client's certificate, an
/// error if it refused it. With TLS 1.3 the client finishes its side before
/// the server has verified the client, so a refusal shows as an alert on the
/// first read; an accepted client gets the server's HTTP/2 SETTINGS.
pub async fn tls_handshake(addr: SocketAddr, tls: &ClientTls) -> std::io::Result<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&tls.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(gateway::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match &tls.identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(tls.server_name.clone()).unwrap();
    let mut stream = connector.connect(name, tcp).await?;
    let server_cert = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    // The HTTP/2 connection preface and an empty SETTINGS frame.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await?;
    let mut first = [0u8; 1];
    if stream.read(&mut first).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(server_cert)
}
