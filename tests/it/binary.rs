//! The binary's start-up contract: configuration errors, no cluster, DRY_RUN, JSON logs, SIGTERM.

use std::time::Duration;

use crate::testkit::binary::{self, Responder};

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
        // Configuration that would fail open: an empty list element, an empty token, a bare
        // owner kind nobody has, a built-in protected namespace un-protected by mistake.
        ("PROTECTED_NAMESPACES", ","),
        ("NAMESPACES", ","),
        ("RULES", "a,,b"),
        ("SKIP_OWNER_KINDS", "Deployments"),
        ("AUTH_TOKEN", ""),
        ("UNPROTECT_BUILTIN_NAMESPACES", "vault"),
    ] {
        let err = binary::refused_start(var, value);
        assert!(!err.contains("panicked"), "{var}={value}: {err}");
    }
}

#[test]
fn in_a_cluster_an_unknown_own_namespace_stops_the_start_while_the_breaker_is_on() {
    if std::path::Path::new(falco_responder::config::SA_NAMESPACE_FILE).exists() {
        return; // this machine is a pod: its namespace is known
    }
    let err = binary::refused_start("KUBERNETES_SERVICE_HOST", "127.0.0.1");
    assert!(err.contains("POD_NAMESPACE"), "{err}");
    // Known, or the breaker off: it starts as far as looking for its cluster.
    for env in [
        &[("POD_NAMESPACE", "falco")][..],
        &[
            ("MAX_DELETIONS", "off"),
            ("MAX_DELETIONS_PER_WORKLOAD", "off"),
        ][..],
    ] {
        let out = binary::command()
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", "1")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(2), "{env:?}: {err}");
    }
}

#[test]
fn without_any_kubernetes_configuration_it_refuses_to_start() {
    let out = binary::command().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no Kubernetes configuration") && err.contains("DRY_RUN"),
        "{err}"
    );
}

#[tokio::test]
async fn dry_run_serves_without_a_cluster_logs_json_and_stops_on_sigterm() {
    // Started once /readyz answers 200.
    let mut responder = Responder::start(&[("DRY_RUN", "true"), ("LOG_FORMAT", "json")]).await;
    responder.sigterm();
    let code = responder.exit_code(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
    let logs = responder.logs();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("SIGTERM")), "{lines:?}");
}
