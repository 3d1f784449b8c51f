//! THE starter of the real `falco-responder` binary, for every suite: a command with an empty
//! environment, or the binary serving on a free loopback port with its stderr in a log file,
//! killed on drop. Tests only: `CARGO_BIN_EXE_*` does not exist for the examples.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use http::HeaderMap;
use serde_json::Value;

use super::sender::{Envelope, HttpReply, http, terminal_shell, wrap};

/// The binary with an empty environment but `PATH` and an empty private `HOME` (so no
/// kubeconfig is found, and no `KUBERNETES_SERVICE_HOST`: not in a pod), stdin closed.
pub fn command() -> std::process::Command {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_falco-responder"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .stdin(Stdio::null());
    cmd
}

/// Starts the binary (DRY_RUN) with `var=value`, which must stop the start: exit code 2 and an
/// error naming `var`. Its stderr.
pub fn refused_start(var: &str, value: &str) -> String {
    let out = command()
        .env("DRY_RUN", "true")
        .env(var, value)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
    assert!(err.contains(var), "{var}={value}: {err}");
    err
}

/// The binary serving on a free loopback port (dual stack: `[::]`), its stderr in a log file.
/// Killed on drop.
pub struct Responder {
    child: tokio::process::Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Responder {
    /// Starts [`command`] with a private `HOME` and `PORT`, then `env` (later entries win);
    /// waits for `/readyz`.
    pub async fn start(env: &[(&str, &str)]) -> Responder {
        Responder::start_until(env, "/readyz").await
    }

    /// The same, waiting only for `/healthz`: a process that may not become ready (the deletion
    /// breaker's records cannot be checked against a broken API server).
    pub async fn start_live(env: &[(&str, &str)]) -> Responder {
        Responder::start_until(env, "/healthz").await
    }

    /// `GET /readyz`.
    pub async fn readyz(&self) -> HttpReply {
        http(self.addr, "GET", "/readyz", &HeaderMap::new(), b"").await
    }

    async fn start_until(env: &[(&str, &str)], probe: &str) -> Responder {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("responder.log");
        let mut cmd = tokio::process::Command::from(command());
        let child = cmd
            .env("HOME", dir.path())
            .env("PORT", port.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn falco-responder");
        let r = Responder {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            log,
            _dir: dir,
        };
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(r.addr).await.is_ok()
                && http(r.addr, "GET", probe, &HeaderMap::new(), b"")
                    .await
                    .status
                    == 200
            {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("falco-responder did not answer {probe}:\n{}", r.logs());
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it contains `needle`, or as it is after 2 s: a worker thread writes its INFO
    /// lines when it runs out of work, which can be a moment after its reply reached us.
    pub async fn logs_with(&self, needle: &str) -> String {
        for _ in 0..80 {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.logs()
    }

    /// The log line of the event `reply` answered: the last "event handled" line about its pod
    /// with its outcome. The details a reply leaves out (the whole reason, the live uid, the
    /// workload) are there.
    pub async fn line_of(&self, reply: &Value) -> String {
        self.line_with(reply, "").await
    }

    /// [`Responder::line_of`], waiting for a line that also contains `needle`: when an earlier
    /// event of the same pod had the same outcome, its line may be the last one until this
    /// event's line is flushed.
    pub async fn line_with(&self, reply: &Value, needle: &str) -> String {
        let pod = format!(
            "pod={}/{}",
            reply["pod"]["namespace"].as_str().unwrap_or_default(),
            reply["pod"]["name"].as_str().unwrap_or_default()
        );
        let outcome = format!("outcome={} ", reply["outcome"].as_str().unwrap_or_default());
        for _ in 0..80 {
            let logs = self.logs();
            let line = logs.lines().rev().find(|l| {
                l.contains(" event handled ")
                    && l.contains(&outcome)
                    && l.contains(&pod)
                    && l.contains(needle)
            });
            if let Some(line) = line {
                return line.to_string();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no line for {reply} with {needle:?} in:\n{}", self.logs())
    }

    /// Sends SIGTERM, as the kubelet does.
    pub fn sigterm(&self) {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    }

    /// The exit code once it exited; panics if it still runs after `within`.
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running after {within:?}:\n{}", self.logs()))
            .unwrap()
            .code()
    }

    /// Stops it (SIGTERM) and returns everything it logged.
    pub async fn stop(&mut self) -> String {
        self.sigterm();
        let _ = self.exit_code(Duration::from_secs(30)).await;
        self.logs()
    }

    /// POST / with `falco` in `envelope`.
    pub async fn send(&self, envelope: Envelope, falco: &str) -> HttpReply {
        let (headers, body) = wrap(envelope, falco);
        http(self.addr, "POST", "/", &headers, &body).await
    }

    /// The Terminal-shell event for `ns/pod` in container `cid`, as a plain body without any
    /// header; the reply.
    pub async fn shell(&self, ns: &str, pod: &str, cid: &str) -> HttpReply {
        let body = terminal_shell(ns, pod, cid);
        http(self.addr, "POST", "/", &HeaderMap::new(), body.as_bytes()).await
    }

    /// The result, whichever form it came in (CloudEvent reply or JSON).
    pub fn result(&self, r: &HttpReply) -> Value {
        if r.headers.contains_key("ce-specversion") {
            let ce = cloudevents::binding::http::to_event(&r.headers, r.body.clone()).unwrap();
            Value::try_from(ce.data().unwrap().clone()).unwrap()
        } else {
            serde_json::from_slice(&r.body).unwrap_or_else(|e| {
                panic!(
                    "{e}: {}\nlogs:\n{}",
                    String::from_utf8_lossy(&r.body),
                    self.logs()
                )
            })
        }
    }

    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> String {
        String::from_utf8(
            http(self.addr, "GET", "/metrics", &HeaderMap::new(), b"")
                .await
                .body,
        )
        .unwrap()
    }
}

/// A kubeconfig in `dir` for a plain-HTTP API server at `addr` (a fake one, or a closed port).
pub fn kubeconfig_for(dir: &Path, addr: SocketAddr) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n\
             current-context: c\n"
        ),
    )
    .unwrap();
    path
}

/// A loopback address nothing listens on: every connection is refused, as when the API server
/// is down.
pub fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
