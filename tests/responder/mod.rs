//! The real `falco-responder` binary for the end-to-end suites (`mod responder;`; they also
//! declare `mod common;`). Not shared with the examples: `CARGO_BIN_EXE_*` exists in tests only.

use http::HeaderMap;

use crate::common::http;
/// The real binary serving on a free loopback port, its stderr in a log file; killed on drop.
pub struct Responder {
    _child: tokio::process::Child,
    pub addr: std::net::SocketAddr,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Responder {
    /// Starts the binary with an empty environment but `HOME` (a private directory), `PATH`,
    /// `KUBECONFIG` and `PORT`, then `env` (later entries win); waits for `/readyz`.
    pub async fn spawn(kubeconfig: &std::path::Path, env: &[(&str, &str)]) -> Responder {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("responder.log");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_falco-responder"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("KUBECONFIG", kubeconfig)
            .env("PORT", port.to_string())
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn falco-responder");
        let r = Responder {
            _child: child,
            addr: ([127, 0, 0, 1], port).into(),
            log,
            _dir: dir,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(r.addr).await.is_ok()
                && http(r.addr, "GET", "/readyz", &HeaderMap::new(), b"")
                    .await
                    .status
                    == 200
            {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("falco-responder did not become ready:\n{}", r.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it contains `needle`, or as it is after 2 s: a worker thread writes its INFO
    /// lines when it runs out of work, which can be a moment after its reply reached us.
    #[allow(dead_code)] // Not every suite looks for an INFO line.
    pub async fn logs_with(&self, needle: &str) -> String {
        for _ in 0..80 {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        self.logs()
    }
}
