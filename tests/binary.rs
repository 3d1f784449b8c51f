//! The binary's start-up contract: configuration errors, no cluster, DRY_RUN, JSON logs, SIGTERM.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn responder() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_falco-responder"));
    // No kubeconfig, not in a pod: an empty HOME and no KUBERNETES_SERVICE_HOST.
    let home = std::env::temp_dir().join(format!("falco-responder-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    cmd.env_clear().env("HOME", home).stdin(Stdio::null());
    cmd
}

#[test]
fn invalid_configuration_stops_the_start_naming_the_variable() {
    for (var, value) in [
        ("MIN_PRIORITY", "Severe"),
        ("GRACE_PERIOD_SECONDS", "soon"),
        ("PORT", "99999"),
        // Out of the documented ranges: refused at start, never a panic later.
        ("API_TIMEOUT_SECONDS", "18446744073709551615"),
        ("API_TIMEOUT_SECONDS", "301"),
        ("API_TIMEOUT_SECONDS", "0"),
        ("DEDUP_SECONDS", "3601"),
        ("MAX_BODY_BYTES", "100"),
        ("MAX_BODY_BYTES", "17000000"),
        ("GRACE_PERIOD_SECONDS", "86401"),
        ("GRACE_PERIOD_SECONDS", "0"),
        ("PROTECTED_NAMESPACES", "Kube-System"),
    ] {
        let out = responder()
            .env("DRY_RUN", "true")
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}={value}: {err}");
        assert!(!err.contains("panicked"), "{var}={value}: {err}");
    }
}

#[test]
fn without_any_kubernetes_configuration_it_refuses_to_start() {
    let out = responder().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no Kubernetes configuration") && err.contains("DRY_RUN"),
        "{err}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn dry_run_serves_without_a_cluster_logs_json_and_stops_on_sigterm() {
    let port = free_port();
    let mut child = responder()
        .env("DRY_RUN", "true")
        .env("LOG_FORMAT", "json")
        .env("PORT", port.to_string())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ready = None;
    while Instant::now() < deadline {
        if let Some(r) = get(port, "/readyz") {
            ready = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ready = ready.expect("serves /readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    let lines: Vec<String> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("SIGTERM")), "{lines:?}");
}
