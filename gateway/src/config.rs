//! Gateway configuration: one TOML file with documented defaults, every setting
//! overridable from the environment (`GATEWAY_*`), and the command line on top.
//!
//! Without a configuration file the defaults are dev mode: certificates and
//! keys are generated on first run under `certs/dev/`, so `gateway serve` works
//! on a fresh checkout. Dev mode is safe only on this machine, so it serves only
//! on a loopback address, and a configuration file must state `dev_mode`: a
//! production file that forgot it would otherwise fall into dev mode and
//! generate certificates and keys where missing ones must be an error.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value in environment variable {var}: {message}")]
    Env { var: &'static str, message: String },
    #[error(
        "no certificate revocation source: with dev_mode = false, list the CA's CRLs in \
         [tls] crls (GATEWAY_TLS_CRLS), or set [tls] revocation = \"none\" \
         (GATEWAY_TLS_REVOCATION) to run without revocation checking"
    )]
    NoRevocationSource,
    #[error("[tls] revocation = \"none\" but [tls] crls lists CRLs: remove one or the other")]
    RevocationConflict,
    #[error(
        "configuration file {path} does not state `dev_mode`: set `dev_mode = false` for real data \
         (certificates and keys must then exist), or `dev_mode = true` for a trial on this machine"
    )]
    DevModeUnstated { path: PathBuf },
    #[error(
        "refusing to start: dev mode only on a loopback address, not {listen} (its certificates \
         and keys are generated, not issued); listen on 127.0.0.1 or [::1], or set \
         `dev_mode = false` with real certificates and keys"
    )]
    DevModeNotLoopback { listen: SocketAddr },
    #[error(
        "[telemetry] metrics_listen = {addr}: dev mode serves metrics on a loopback address only \
         (e.g. 127.0.0.1:9464); set dev_mode = false to listen elsewhere"
    )]
    MetricsListenNotLoopback { addr: SocketAddr },
}

/// The whole configuration. Field docs are the reference documentation
/// (also rendered in `gateway.example.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on. Env: `GATEWAY_LISTEN`. Default `127.0.0.1:7443`.
    pub listen: SocketAddr,
    /// Where the embedded store keeps its files. Env: `GATEWAY_DATA_DIR`. Default `data`.
    pub data_dir: PathBuf,
    /// A shared PostgreSQL store instead of the embedded one (`[store]`).
    pub store: crate::store::StoreConfig,
    /// Trust domain of the SPIFFE-style certificate URIs. Env: `GATEWAY_TRUST_DOMAIN`.
    /// Default `exchange.wuhu.example`.
    pub trust_domain: String,
    /// Generate missing dev certificates and keys, and say so loudly; only on a
    /// loopback `listen` address. Env: `GATEWAY_DEV_MODE`. A configuration file
    /// must state it; `true` without a file.
    pub dev_mode: bool,
    /// Directory of the union consumers' policy files. Env: `GATEWAY_POLICIES_DIR`.
    /// Default `policies/shipped`.
    pub policies_dir: PathBuf,
    /// The gateway's secret keys (pseudonymisation, encryption at rest, keyed index).
    /// Env: `GATEWAY_KEYS_FILE`. Default `certs/dev/keys.toml` (generated in dev mode).
    pub keys_file: PathBuf,
    pub tls: TlsConfig,
    pub telemetry: TelemetryConfig,
    pub limits: crate::limits::LimitsConfig,
    /// When the audit log's checkpoints are signed (`[audit]`).
    pub audit: crate::audit::CheckpointPolicy,
    /// What union callers may type into requests (`[exchange]`).
    pub exchange: ExchangeConfig,
}

/// Caller-typed values that end up in the audit log (`[exchange]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeConfig {
    /// The form of a case number in `Lookup` and `Reidentify`. Env:
    /// `GATEWAY_CASE_NUMBER_PATTERN`. Default `[A-Za-z0-9./-]{1,64}`.
    pub case_number_pattern: CaseNumberPattern,
}

/// The form every case number must have: a regular expression (Rust `regex`
/// syntax) that must match the whole case number. A case number is recorded
/// verbatim in the append-only audit log, which can never be edited, so only
/// text of this form gets there: not a name, an address or a paragraph typed
/// into the wrong field. A pattern is refused unless its longest match is
/// bounded (at most [`CaseNumberPattern::MAX_BYTES`] bytes).
#[derive(Clone)]
pub struct CaseNumberPattern {
    source: String,
    regex: regex::Regex,
}

/// A configured case-number pattern that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("case_number_pattern is not a valid regular expression: {0}")]
    Syntax(String),
    #[error(
        "case_number_pattern must bound the length of a case number to at most {max} bytes (e.g. `{{1,64}}`)"
    )]
    Unbounded { max: usize },
    #[error("case_number_pattern must not match an empty case number")]
    MatchesEmpty,
}

impl CaseNumberPattern {
    /// Letters (ASCII), digits, `-`, `/` and `.`, 1 to 64 of them.
    pub const DEFAULT: &'static str = "[A-Za-z0-9./-]{1,64}";
    /// The longest case number any pattern may admit, in UTF-8 bytes.
    pub const MAX_BYTES: usize = 256;

    pub fn new(source: &str) -> Result<CaseNumberPattern, PatternError> {
        let anchored = format!("^(?:{source})$");
        let hir = regex_syntax::Parser::new()
            .parse(&anchored)
            .map_err(|e| PatternError::Syntax(e.to_string()))?;
        if hir
            .properties()
            .maximum_len()
            .is_none_or(|max| max > Self::MAX_BYTES)
        {
            return Err(PatternError::Unbounded {
                max: Self::MAX_BYTES,
            });
        }
        let regex =
            regex::Regex::new(&anchored).map_err(|e| PatternError::Syntax(e.to_string()))?;
        if regex.is_match("") {
            return Err(PatternError::MatchesEmpty);
        }
        Ok(CaseNumberPattern {
            source: source.to_string(),
            regex,
        })
    }

    /// Whether `case` (already trimmed) has the configured form.
    pub fn admits(&self, case: &str) -> bool {
        case.len() <= Self::MAX_BYTES && self.regex.is_match(case)
    }

    /// The pattern as configured (operator text, never a caller's).
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl Default for CaseNumberPattern {
    fn default() -> Self {
        CaseNumberPattern::new(Self::DEFAULT).expect("the default case-number pattern is valid")
    }
}

impl std::fmt::Debug for CaseNumberPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CaseNumberPattern")
            .field(&self.source)
            .finish()
    }
}

impl<'de> Deserialize<'de> for CaseNumberPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        CaseNumberPattern::new(&source).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// CA bundle that client certificates must chain to. Env: `GATEWAY_TLS_CA`.
    pub ca: PathBuf,
    /// Server certificate chain. Env: `GATEWAY_TLS_CERT`.
    pub cert: PathBuf,
    /// Server private key. Env: `GATEWAY_TLS_KEY`.
    pub key: PathBuf,
    /// Certificate revocation lists (PEM). Env: `GATEWAY_TLS_CRLS` (comma-separated).
    pub crls: Vec<PathBuf>,
    /// Seconds a client has to finish the TLS handshake. Env: `GATEWAY_TLS_HANDSHAKE_TIMEOUT`.
    pub handshake_timeout_secs: u64,
    /// `crl` (default): client certificates are checked against `crls`, and
    /// with `dev_mode = false` starting without any is an error. `none`: no
    /// revocation checking, stated explicitly. Env: `GATEWAY_TLS_REVOCATION`.
    pub revocation: Revocation,
    /// A CRL past its `nextUpdate`: `refuse` (default) the certificates of its
    /// issuer until a fresh one is loaded, or `accept` them; either way logged
    /// and audited. Env: `GATEWAY_TLS_STALE_CRL`.
    pub stale_crl: crate::tls::StaleCrl,
}

/// Whether client certificates are checked for revocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Revocation {
    /// Against the CRLs in `[tls] crls` (reloaded on SIGHUP).
    #[default]
    Crl,
    /// Not at all.
    None,
}

impl std::str::FromStr for Revocation {
    type Err = String;
    fn from_str(s: &str) -> Result<Revocation, String> {
        match s {
            "crl" => Ok(Revocation::Crl),
            "none" => Ok(Revocation::None),
            other => Err(format!("`{other}`: expected `crl` or `none`")),
        }
    }
}

impl TlsConfig {
    /// The files the server's TLS material is read from.
    pub fn files(&self) -> crate::tls::TlsFiles {
        crate::tls::TlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            crls: self.crls.clone(),
            stale_crl: self.stale_crl,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC collector endpoint for spans and metrics, e.g. `http://127.0.0.1:4317`. Empty = no export,
    /// readable logs only. Env: `GATEWAY_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp_endpoint: String,
    /// Log filter in `tracing` syntax. Env: `GATEWAY_LOG` (or `RUST_LOG`). Default `info`.
    pub log: String,
    /// `pretty` (human-readable) or `json`. Env: `GATEWAY_LOG_FORMAT`.
    pub log_format: String,
    /// Address of the Prometheus scrape endpoint (`GET /metrics`), e.g.
    /// `127.0.0.1:9464`. Empty (the default) = none. In dev mode a loopback
    /// address only. Env: `GATEWAY_METRICS_LISTEN`.
    #[serde(deserialize_with = "optional_address")]
    pub metrics_listen: Option<SocketAddr>,
}

/// An address, or none for an empty string.
fn optional_address<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    match text.trim() {
        "" => Ok(None),
        addr => addr.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

impl TelemetryConfig {
    /// Metrics name no person, but they tell who is busy with what: a dev
    /// gateway, with its generated keys and certificates, keeps them on the
    /// machine it runs on.
    pub fn check(&self, dev_mode: bool) -> Result<(), ConfigError> {
        match self.metrics_listen {
            Some(addr) if dev_mode && !addr.ip().is_loopback() => {
                Err(ConfigError::MetricsListenNotLoopback { addr })
            }
            _ => Ok(()),
        }
    }
}

pub const DEV_CERTS_DIR: &str = "certs/dev";

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7443".parse().expect("valid default address"),
            data_dir: PathBuf::from("data"),
            trust_domain: "exchange.wuhu.example".to_string(),
            dev_mode: true,
            policies_dir: PathBuf::from("policies/shipped"),
            keys_file: Path::new(DEV_CERTS_DIR).join("keys.toml"),
            tls: TlsConfig::default(),
            telemetry: TelemetryConfig::default(),
            limits: crate::limits::LimitsConfig::default(),
            audit: crate::audit::CheckpointPolicy::default(),
            exchange: ExchangeConfig::default(),
            store: crate::store::StoreConfig::default(),
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        let dev = Path::new(DEV_CERTS_DIR);
        TlsConfig {
            ca: dev.join("ca.pem"),
            cert: dev.join("server.pem"),
            key: dev.join("server.key"),
            crls: Vec::new(),
            handshake_timeout_secs: 10,
            revocation: Revocation::Crl,
            stale_crl: crate::tls::StaleCrl::Refuse,
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: String::new(),
            log: "info".to_string(),
            log_format: "pretty".to_string(),
            metrics_listen: None,
        }
    }
}

impl Config {
    /// Defaults, then the file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// A production gateway checks revocation unless told, in so many words,
    /// not to: without CRLs, a revoked certificate would keep its access
    /// silently. Dev mode may run without (it says so at start).
    pub fn check_revocation(&self) -> Result<(), ConfigError> {
        match (self.tls.revocation, self.tls.crls.is_empty()) {
            (Revocation::None, false) => Err(ConfigError::RevocationConflict),
            (Revocation::Crl, true) if !self.dev_mode => Err(ConfigError::NoRevocationSource),
            _ => Ok(()),
        }
    }

    /// The file over the defaults; it must state `dev_mode`.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let parse = |e: toml::de::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let config: Config = toml::from_str(&text).map_err(parse)?;
        let table: toml::Table = toml::from_str(&text).map_err(parse)?;
        if !table.contains_key("dev_mode") {
            return Err(ConfigError::DevModeUnstated {
                path: path.to_path_buf(),
            });
        }
        Ok(config)
    }

    /// Dev mode only where it is safe: on a loopback address. Checked once
    /// every source (file, environment, command line) has had its say, and
    /// before anything is generated.
    pub fn check_dev_mode(&self) -> Result<(), ConfigError> {
        if self.dev_mode && !self.listen.ip().to_canonical().is_loopback() {
            return Err(ConfigError::DevModeNotLoopback {
                listen: self.listen,
            });
        }
        Ok(())
    }

    /// Overlays environment variables; `get` abstracts the environment for tests.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(var: &'static str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.trim().parse().map_err(|e: T::Err| ConfigError::Env {
                var,
                message: e.to_string(),
            })
        }
        if let Some(v) = get("GATEWAY_LISTEN") {
            self.listen = parse("GATEWAY_LISTEN", &v)?;
        }
        if let Some(v) = get("GATEWAY_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("GATEWAY_STORE_URL") {
            self.store.url = Some(v).filter(|v| !v.trim().is_empty());
        }
        if let Some(v) = get("GATEWAY_STORE_CA_FILE") {
            self.store.ca_file = Some(v.into());
        }
        if let Some(v) = get("GATEWAY_TRUST_DOMAIN") {
            self.trust_domain = v;
        }
        if let Some(v) = get("GATEWAY_DEV_MODE") {
            self.dev_mode = parse("GATEWAY_DEV_MODE", &v)?;
        }
        if let Some(v) = get("GATEWAY_POLICIES_DIR") {
            self.policies_dir = v.into();
        }
        if let Some(v) = get("GATEWAY_KEYS_FILE") {
            self.keys_file = v.into();
        }
        if let Some(v) = get("GATEWAY_TLS_CA") {
            self.tls.ca = v.into();
        }
        if let Some(v) = get("GATEWAY_TLS_CERT") {
            self.tls.cert = v.into();
        }
        if let Some(v) = get("GATEWAY_TLS_KEY") {
            self.tls.key = v.into();
        }
        if let Some(v) = get("GATEWAY_TLS_CRLS") {
            self.tls.crls = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        if let Some(v) = get("GATEWAY_TLS_HANDSHAKE_TIMEOUT") {
            self.tls.handshake_timeout_secs = parse("GATEWAY_TLS_HANDSHAKE_TIMEOUT", &v)?;
        }
        if let Some(v) = get("GATEWAY_TLS_REVOCATION") {
            self.tls.revocation = parse("GATEWAY_TLS_REVOCATION", &v)?;
        }
        if let Some(v) = get("GATEWAY_TLS_STALE_CRL") {
            self.tls.stale_crl = parse("GATEWAY_TLS_STALE_CRL", &v)?;
        }
        if let Some(v) = get("GATEWAY_OTLP_ENDPOINT").or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        {
            self.telemetry.otlp_endpoint = v;
        }
        if let Some(v) = get("GATEWAY_LOG").or_else(|| get("RUST_LOG")) {
            self.telemetry.log = v;
        }
        if let Some(v) = get("GATEWAY_LOG_FORMAT") {
            self.telemetry.log_format = v;
        }
        if let Some(v) = get("GATEWAY_METRICS_LISTEN") {
            self.telemetry.metrics_listen = match v.trim() {
                "" => None,
                addr => Some(parse("GATEWAY_METRICS_LISTEN", addr)?),
            };
        }
        if let Some(v) = get("GATEWAY_LIMITS_RATE") {
            self.limits.rate_per_second = parse("GATEWAY_LIMITS_RATE", &v)?;
        }
        if let Some(v) = get("GATEWAY_LIMITS_BURST") {
            self.limits.burst = parse("GATEWAY_LIMITS_BURST", &v)?;
        }
        if let Some(v) = get("GATEWAY_LIMITS_CONCURRENCY") {
            self.limits.max_concurrent = parse("GATEWAY_LIMITS_CONCURRENCY", &v)?;
        }
        if let Some(v) = get("GATEWAY_LIMITS_TIMEOUT") {
            self.limits.request_timeout_secs = parse("GATEWAY_LIMITS_TIMEOUT", &v)?;
        }
        if let Some(v) = get("GATEWAY_LIMITS_MAX_MESSAGE") {
            self.limits.max_message_bytes = parse("GATEWAY_LIMITS_MAX_MESSAGE", &v)?;
        }
        if let Some(v) = get("GATEWAY_LIMITS_MAX_REQUEST") {
            self.limits.max_request_bytes = parse("GATEWAY_LIMITS_MAX_REQUEST", &v)?;
        }
        if let Some(v) = get("GATEWAY_LIMITS_MAX_PUSH_STREAMS") {
            self.limits.max_push_streams = parse("GATEWAY_LIMITS_MAX_PUSH_STREAMS", &v)?;
        }
        if let Some(v) = get("GATEWAY_LIMITS_MAX_ROWS") {
            self.limits.max_rows_per_batch = parse("GATEWAY_LIMITS_MAX_ROWS", &v)?;
        }
        if let Some(v) = get("GATEWAY_LIMITS_MAX_ROW_BYTES") {
            self.limits.max_row_bytes = parse("GATEWAY_LIMITS_MAX_ROW_BYTES", &v)?;
        }
        if let Some(v) = get("GATEWAY_LIMITS_MAX_REJECTIONS") {
            self.limits.max_rejections_listed = parse("GATEWAY_LIMITS_MAX_REJECTIONS", &v)?;
        }
        if let Some(v) = get("GATEWAY_LIMITS_BATCH_RATE") {
            self.limits.batch_rate_per_second = parse("GATEWAY_LIMITS_BATCH_RATE", &v)?;
        }
        if let Some(v) = get("GATEWAY_LIMITS_BATCH_BURST") {
            self.limits.batch_burst = parse("GATEWAY_LIMITS_BATCH_BURST", &v)?;
        }
        if let Some(v) = get("GATEWAY_LIMITS_REFUSAL_WINDOW") {
            self.limits.refusal_window_secs = parse("GATEWAY_LIMITS_REFUSAL_WINDOW", &v)?;
        }
        if let Some(v) = get("GATEWAY_LIMITS_MAX_HANDSHAKES") {
            self.limits.max_handshakes = parse("GATEWAY_LIMITS_MAX_HANDSHAKES", &v)?;
        }
        if let Some(v) = get("GATEWAY_LIMITS_SHUTDOWN_GRACE") {
            self.limits.shutdown_grace_secs = parse("GATEWAY_LIMITS_SHUTDOWN_GRACE", &v)?;
        }
        if let Some(v) = get("GATEWAY_AUDIT_CHECKPOINT_ENTRIES") {
            self.audit.checkpoint_every_entries = parse("GATEWAY_AUDIT_CHECKPOINT_ENTRIES", &v)?;
        }
        if let Some(v) = get("GATEWAY_AUDIT_CHECKPOINT_SECS") {
            self.audit.checkpoint_every_secs = parse("GATEWAY_AUDIT_CHECKPOINT_SECS", &v)?;
        }
        if let Some(v) = get("GATEWAY_CASE_NUMBER_PATTERN") {
            self.exchange.case_number_pattern =
                CaseNumberPattern::new(&v).map_err(|e| ConfigError::Env {
                    var: "GATEWAY_CASE_NUMBER_PATTERN",
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_file_values() {
        let mut c: Config =
            toml::from_str("listen = \"127.0.0.1:9000\"\n[tls]\ncrls = [\"a.pem\"]").unwrap();
        assert_eq!(c.listen.port(), 9000);
        c.apply_env(|k| match k {
            "GATEWAY_LISTEN" => Some("0.0.0.0:8443".into()),
            "GATEWAY_TLS_CRLS" => Some("x.pem, y.pem".into()),
            "GATEWAY_DEV_MODE" => Some("false".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.listen.port(), 8443);
        assert_eq!(
            c.tls.crls,
            vec![PathBuf::from("x.pem"), PathBuf::from("y.pem")]
        );
        assert!(!c.dev_mode);
        assert_eq!(c.tls.cert, PathBuf::from("certs/dev/server.pem"));
    }

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway.example.toml");
        let example = Config::from_file(&path).unwrap();
        assert_eq!(format!("{example:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn case_numbers_have_the_configured_form() {
        let default = CaseNumberPattern::default();
        for ok in ["KN-2026-0042", "a", "2026/17.3", &"A".repeat(64)] {
            assert!(default.admits(ok), "{ok}");
        }
        for refused in [
            "",
            "张三 case",
            "KN 2026",
            "KN-2026\n",
            "Ｋ",
            "KN_1",
            &"A".repeat(65),
        ] {
            assert!(!default.admits(refused), "{refused}");
        }
        // A stricter form; the whole case number must match.
        let strict: Config =
            toml::from_str("[exchange]\ncase_number_pattern = 'KN-\\d{4}-\\d{4}'").unwrap();
        let strict = strict.exchange.case_number_pattern;
        assert!(strict.admits("KN-2026-0042"));
        assert!(!strict.admits("xKN-2026-0042") && !strict.admits("KN-2026-00421"));
        // Unbounded, empty-matching and broken patterns are refused up front.
        for bad in [".*", "[A-Z]+", "x{1,300}", "[A-Z]{0,4}", "(", ""] {
            assert!(CaseNumberPattern::new(bad).is_err(), "{bad}");
        }
        let mut c = Config::default();
        let err = c
            .apply_env(|k| (k == "GATEWAY_CASE_NUMBER_PATTERN").then(|| ".+".into()))
            .unwrap_err();
        assert!(err.to_string().contains("bound the length"), "{err}");
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_configuration_file_must_state_dev_mode() {
        let (_dir, path) = file("listen = \"127.0.0.1:9000\"\n[tls]\ncrls = []\n");
        let err = Config::from_file(&path).unwrap_err();
        assert!(
            matches!(&err, ConfigError::DevModeUnstated { path: p } if *p == path),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains("`dev_mode`"),
            "{message}"
        );
        // Stated either way, it loads; the environment still overrides it.
        let (_dir, path) = file("dev_mode = false\nlisten = \"0.0.0.0:9000\"\n");
        let mut c = Config::from_file(&path).unwrap();
        assert!(!c.dev_mode);
        c.apply_env(|k| (k == "GATEWAY_DEV_MODE").then(|| "true".into()))
            .unwrap();
        assert!(c.dev_mode);
        let (_dir, path) = file("dev_mode = true\n");
        assert!(Config::from_file(&path).unwrap().dev_mode);
        // `dev_mode` inside a table is not the setting.
        let (_dir, path) = file("[telemetry]\ndev_mode = false\n");
        assert!(Config::from_file(&path).is_err());
        // A broken file is reported as broken first.
        let (_dir, path) = file("listen = 7\n");
        assert!(matches!(
            Config::from_file(&path).unwrap_err(),
            ConfigError::Parse { .. }
        ));
    }

    #[test]
    fn dev_mode_serves_only_on_a_loopback_address() {
        assert!(Config::default().dev_mode);
        Config::default().check_dev_mode().unwrap();
        let at = |listen: &str, dev_mode: bool| Config {
            listen: listen.parse().unwrap(),
            dev_mode,
            ..Config::default()
        };
        for ok in [
            "127.0.0.1:7443",
            "127.0.0.2:1",
            "[::1]:7443",
            "[::ffff:127.0.0.1]:7443",
        ] {
            at(ok, true).check_dev_mode().unwrap();
        }
        for refused in [
            "0.0.0.0:7443",
            "[::]:7443",
            "10.1.2.3:7443",
            "[::ffff:10.1.2.3]:7443",
            "[2001:db8::1]:7443",
        ] {
            let err = at(refused, true).check_dev_mode().unwrap_err();
            assert!(
                err.to_string().contains(&format!(
                    "dev mode only on a loopback address, not {refused}"
                )),
                "{err}"
            );
            at(refused, false).check_dev_mode().unwrap();
        }
    }

    #[test]
    fn production_without_a_revocation_source_is_refused_unless_stated() {
        let production = |toml: &str| {
            let mut c: Config = toml::from_str(toml).unwrap();
            c.dev_mode = false;
            c.check_revocation()
        };
        let err = production("").unwrap_err();
        assert!(matches!(err, ConfigError::NoRevocationSource));
        assert!(err.to_string().contains("revocation = \"none\""), "{err}");
        production("[tls]\nrevocation = \"none\"").unwrap();
        production("[tls]\ncrls = [\"crl.pem\"]").unwrap();
        assert!(matches!(
            production("[tls]\nrevocation = \"none\"\ncrls = [\"crl.pem\"]"),
            Err(ConfigError::RevocationConflict)
        ));
        // Dev mode may run without.
        Config::default().check_revocation().unwrap();
        // From the environment as well.
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "GATEWAY_DEV_MODE" => Some("false".into()),
            "GATEWAY_TLS_REVOCATION" => Some("none".into()),
            "GATEWAY_TLS_STALE_CRL" => Some("accept".into()),
            _ => None,
        })
        .unwrap();
        c.check_revocation().unwrap();
        assert_eq!(c.tls.stale_crl, crate::tls::StaleCrl::Accept);
        assert!(
            c.apply_env(|k| (k == "GATEWAY_TLS_REVOCATION").then(|| "maybe".into()))
                .is_err()
        );
        assert!(toml::from_str::<Config>("[tls]\nstale_crl = \"ignore\"").is_err());
    }

    #[test]
    fn the_metrics_endpoint_is_off_by_default_and_on_loopback_in_dev_mode() {
        assert_eq!(Config::default().telemetry.metrics_listen, None);
        let c: Config = toml::from_str("[telemetry]\nmetrics_listen = \"127.0.0.1:9464\"").unwrap();
        assert_eq!(
            c.telemetry.metrics_listen,
            Some("127.0.0.1:9464".parse().unwrap())
        );
        c.telemetry.check(true).unwrap();
        let mut c: Config = toml::from_str("[telemetry]\nmetrics_listen = \"\"").unwrap();
        assert_eq!(c.telemetry.metrics_listen, None);
        assert!(toml::from_str::<Config>("[telemetry]\nmetrics_listen = \"anywhere\"").is_err());
        // From the environment; a dev gateway refuses every other address.
        for addr in ["0.0.0.0:9464", "10.1.2.3:9464", "[::]:9464"] {
            c.apply_env(|k| (k == "GATEWAY_METRICS_LISTEN").then(|| addr.into()))
                .unwrap();
            let err = c.telemetry.check(true).unwrap_err();
            assert!(
                matches!(err, ConfigError::MetricsListenNotLoopback { .. }),
                "{addr}"
            );
            assert!(err.to_string().contains("loopback"), "{err}");
            c.telemetry.check(false).unwrap();
        }
        c.apply_env(|k| (k == "GATEWAY_METRICS_LISTEN").then(|| "[::1]:9464".into()))
            .unwrap();
        c.telemetry.check(true).unwrap();
        c.apply_env(|k| (k == "GATEWAY_METRICS_LISTEN").then(String::new))
            .unwrap();
        assert_eq!(c.telemetry.metrics_listen, None);
        assert!(
            c.apply_env(|k| (k == "GATEWAY_METRICS_LISTEN").then(|| "x".into()))
                .is_err()
        );
    }

    #[test]
    fn unknown_settings_and_bad_env_values_are_errors() {
        assert!(toml::from_str::<Config>("listne = \"x\"").is_err());
        let mut c = Config::default();
        let err = c
            .apply_env(|k| (k == "GATEWAY_LISTEN").then(|| "not an address".into()))
            .unwrap_err();
        assert!(err.to_string().contains("GATEWAY_LISTEN"));
    }
}
