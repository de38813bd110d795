//! The compliance console as a child process, its standard error kept: the
//! console's browser tests start the `gateway-console` binary, and the
//! gateway's end-to-end tests `gateway console`, the same way, against a
//! [`TestServer`] with the auditor key pinned as an officer pins it.

use crate::{ServerState, TRUST_DOMAIN, TestPki, TestServer};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;

pub type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A running console: where it answers, and what it logged.
pub struct ConsoleProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`, as the console logged it.
    pub url: String,
    logs: Arc<Mutex<Vec<String>>>,
    /// The pinned key and the console's state file.
    pub dir: TempDir,
    program: PathBuf,
    leading_args: Vec<String>,
}

impl ConsoleProcess {
    /// Starts `program` with `leading_args` (e.g. `["console"]` for the
    /// gateway's binary) and the console's flags, on a free loopback port,
    /// as `auditor/compliance` of `pki`, against `server`.
    pub fn start(
        program: &Path,
        leading_args: &[&str],
        server: &TestServer,
        pki: &TestPki,
        state: &ServerState,
    ) -> Res<ConsoleProcess> {
        let leading_args = leading_args.iter().map(|a| a.to_string()).collect();
        Self::start_in(
            tempfile::tempdir()?,
            program.to_path_buf(),
            leading_args,
            server,
            pki,
            state,
        )
    }

    /// The console stopped and started again on the same state file.
    pub fn restart(&mut self, server: &TestServer, pki: &TestPki, state: &ServerState) -> Res {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir()?);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (program, leading_args) = (self.program.clone(), self.leading_args.clone());
        *self = Self::start_in(dir, program, leading_args, server, pki, state)?;
        Ok(())
    }

    fn start_in(
        dir: TempDir,
        program: PathBuf,
        leading_args: Vec<String>,
        server: &TestServer,
        pki: &TestPki,
        state: &ServerState,
    ) -> Res<ConsoleProcess> {
        // The key an officer pins, as the gateway writes it to <data_dir>/audit-log.vkey.
        let keys = gateway::keys::Keys::load(&state.keys_file(), false)?;
        let vkey = gateway::audit::log::vkey(TRUST_DOMAIN, keys.audit_log_seed())?;
        let vkey_file = dir.path().join("audit-log.vkey");
        std::fs::write(&vkey_file, format!("{vkey}\n"))?;
        let mut child = Command::new(&program)
            .args(&leading_args)
            .arg("--addr")
            .arg(server.addr.to_string())
            .arg("--identity")
            .arg("auditor/compliance")
            .arg("--certs-dir")
            .arg(pki.dir.path())
            .arg("--log-key")
            .arg(&vkey_file)
            .arg("--state")
            .arg(dir.path().join("state.json"))
            .args(["--listen", "127.0.0.1:0", "--refresh-secs", "3600"])
            .env("GATEWAY_CONSOLE_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("url=http://"))
                {
                    let _ = tx.send(format!("http://{}", url.trim_end_matches('/')));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the console did not say where it listens")?;
        Ok(ConsoleProcess {
            child,
            url,
            logs,
            dir,
            program,
            leading_args,
        })
    }

    /// Every line the console wrote to standard error so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for ConsoleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
