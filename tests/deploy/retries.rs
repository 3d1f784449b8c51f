//! Argo Sensors retry a failed delivery, then leave a dead letter they may create; the comments
//! above each `retryStrategy` say how many attempts it makes and when.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::{
    files::*,
    rbac::may,
    schemas::{configmap_validator, validation_errors},
};

/// Every Sensor trigger with a retryStrategy can actually retry (atLeastOnce) and ends in a
/// dead letter (dlqTrigger, itself atLeastOnce) that the Sensor may create.
pub(crate) fn sensor_retry_errors(sensor: &Value) -> Vec<String> {
    let mut errors = vec![];
    let ns = sensor["metadata"]["namespace"].as_str().unwrap_or("?");
    let sa = sensor["spec"]["template"]["serviceAccountName"].as_str();
    let deps: Vec<&str> = sensor["spec"]["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["name"].as_str())
        .collect();
    for (i, t) in sensor["spec"]["triggers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let e = |m: &str| format!("trigger {i}: {m}");
        if t.get("retryStrategy").is_none() {
            errors.push(e("no retryStrategy: a failed delivery is dropped"));
            continue;
        }
        // argo-events pkg/sensors/listener.go: without it, triggerActions returns at once.
        if t["atLeastOnce"] != json!(true) {
            errors.push(e(
                "retryStrategy without atLeastOnce: true never sees a failure",
            ));
        }
        let dlq = &t["dlqTrigger"];
        if !dlq.is_object() {
            errors.push(e(
                "retryStrategy without a dlqTrigger: the last failure drops the event",
            ));
            continue;
        }
        if dlq["atLeastOnce"] != json!(true) {
            errors.push(e(
                "dlqTrigger without atLeastOnce: true (rejected by argo-events validation)",
            ));
        }
        if dlq.get("dlqTrigger").is_some() {
            errors.push(e("dlqTrigger inside a dlqTrigger is ignored"));
        }
        let k8s = &dlq["template"]["k8s"];
        let resource = &k8s["source"]["resource"];
        if k8s["operation"] != "create" || resource["kind"] != "ConfigMap" {
            errors.push(e("the dead letter is a ConfigMap the Sensor creates"));
            continue;
        }
        for err in validation_errors(configmap_validator(), resource) {
            errors.push(e(&format!("dead-letter ConfigMap: {err}")));
        }
        if resource["metadata"]["namespace"] != ns {
            errors.push(e("dead-letter ConfigMap outside the Sensor's namespace"));
        }
        if !resource["metadata"]["generateName"]
            .as_str()
            .is_some_and(|g| g.ends_with('-'))
            || resource["metadata"].get("name").is_some()
        {
            errors.push(e(
                "dead-letter ConfigMap needs generateName (one per event), no name",
            ));
        }
        if resource["metadata"]["labels"]["falco-responder/dead-letter"] != "true" {
            errors.push(e(
                "dead-letter ConfigMap without label falco-responder/dead-letter=true",
            ));
        }
        let params = k8s["parameters"].as_array().cloned().unwrap_or_default();
        if params.is_empty() {
            errors.push(e("the dead letter does not keep the event"));
        }
        for p in &params {
            if !p["src"]["dependencyName"]
                .as_str()
                .is_some_and(|d| deps.contains(&d))
            {
                errors.push(e(&format!(
                    "dead-letter parameter from an unknown dependency: {p}"
                )));
            }
            match p["dest"].as_str().and_then(|d| d.strip_prefix("data.")) {
                Some(key) if resource["data"].get(key).is_some() => {}
                _ => errors.push(e(&format!(
                    "dead-letter parameter dest {} is not a data key",
                    p["dest"]
                ))),
            }
            if p["src"]["useRawData"] == json!(true) {
                errors.push(e(
                    "useRawData would put an object where a ConfigMap wants a string",
                ));
            }
        }
        match sa {
            Some(sa) if may(ns, sa, "", "configmaps", "create") => {}
            _ => errors.push(e(&format!(
                "the Sensor's ServiceAccount {sa:?} may not create ConfigMaps in {ns}"
            ))),
        }
    }
    errors
}

/// Waits as the comments spell them: "2 s, 4 s and 8 s".
pub(crate) fn spelled_waits(first: f64, factor: f64, n: usize) -> String {
    let waits: Vec<String> = (0..n)
        .map(|k| {
            let w = first * factor.powi(k as i32);
            if w.fract() == 0.0 {
                format!("{} s", w as u64)
            } else {
                format!("{w} s")
            }
        })
        .collect();
    match waits.len() {
        0 => String::new(),
        1 => waits[0].clone(),
        n => format!("{} and {}", waits[..n - 1].join(", "), waits[n - 1]),
    }
}

/// Each `retryStrategy:` block in a YAML text is preceded by a comment that states how many
/// attempts it makes and when the retries happen. Argo Events' `steps` counts attempts
/// (pkg/shared/util/retry.go -> wait.ExponentialBackoff); Argo Workflows' `limit` counts
/// retries.
pub(crate) fn retry_comment_errors(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut errors = vec![];
    let mut blocks = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "retryStrategy:" {
            continue;
        }
        blocks += 1;
        let indent = line.len() - line.trim_start().len();
        let mut fields = BTreeMap::new();
        for l in &lines[i + 1..] {
            let l_indent = l.len() - l.trim_start().len();
            if l.trim().is_empty() || l.trim_start().starts_with('#') {
                continue;
            }
            if l_indent <= indent {
                break;
            }
            if let Some((k, v)) = l.trim().split_once(':') {
                fields
                    .entry(k.trim().to_string())
                    .or_insert_with(|| v.trim().trim_matches('"').to_string());
            }
        }
        let mut comment = vec![];
        for l in lines[..i].iter().rev() {
            match l.trim().strip_prefix('#') {
                Some(c) => comment.push(c.trim()),
                None => break,
            }
        }
        comment.reverse();
        let comment = comment.join(" ");
        let num = |k: &str| -> Option<f64> {
            fields
                .get(k)
                .and_then(|v| v.trim_end_matches('s').parse::<f64>().ok())
        };
        let attempts = match (num("steps"), num("limit")) {
            (Some(steps), None) => steps as usize,
            (None, Some(limit)) => limit as usize + 1,
            _ => {
                errors.push(format!(
                    "line {}: retryStrategy without steps or limit",
                    i + 1
                ));
                continue;
            }
        };
        let waits = spelled_waits(
            num("duration").unwrap_or(1.0),
            num("factor").unwrap_or(1.0),
            attempts.saturating_sub(1),
        );
        let want = format!("{attempts} attempts");
        if !comment.contains(&want) || !comment.contains(&waits) {
            errors.push(format!(
                "line {}: the comment above retryStrategy must say {want:?} and the waits {waits:?}: {comment:?}",
                i + 1
            ));
        }
    }
    if blocks == 0 {
        errors.push("no retryStrategy".into());
    }
    errors
}

#[test]
fn argo_sensors_retry_until_success_or_a_dead_letter() {
    let sensors = objs(ARGO, "Sensor");
    assert_eq!(sensors.len(), 3);
    for s in &sensors {
        let errors = sensor_retry_errors(&s.v);
        assert!(errors.is_empty(), "{}:\n{}", s.id(), errors.join("\n"));
    }
    // The check fails without each piece.
    let base = the(ARGO, "Sensor", "falco-responder-knative").v.clone();
    for (what, ptr, value) in [
        ("no atLeastOnce", "/spec/triggers/0/atLeastOnce", None),
        (
            "atLeastOnce false",
            "/spec/triggers/0/atLeastOnce",
            Some(json!(false)),
        ),
        ("no dlqTrigger", "/spec/triggers/0/dlqTrigger", None),
        (
            "dlq without atLeastOnce",
            "/spec/triggers/0/dlqTrigger/atLeastOnce",
            None,
        ),
        ("no retryStrategy", "/spec/triggers/0/retryStrategy", None),
        (
            "named dead letter",
            "/spec/triggers/0/dlqTrigger/template/k8s/source/resource/metadata/name",
            Some(json!("x")),
        ),
        (
            "dead letter data as a number",
            "/spec/triggers/0/dlqTrigger/template/k8s/source/resource/data/event",
            Some(json!(1)),
        ),
        (
            "dead letter elsewhere",
            "/spec/triggers/0/dlqTrigger/template/k8s/source/resource/metadata/namespace",
            Some(json!("default")),
        ),
        (
            "raw data",
            "/spec/triggers/0/dlqTrigger/template/k8s/parameters/0/src/useRawData",
            Some(json!(true)),
        ),
        (
            "no ServiceAccount",
            "/spec/template/serviceAccountName",
            None,
        ),
    ] {
        let mut bad = base.clone();
        edit(&mut bad, ptr, value);
        assert!(!sensor_retry_errors(&bad).is_empty(), "{what}: accepted");
    }
}

#[test]
fn retry_comments_state_the_attempts() {
    for f in [
        "argo/sensor-knative.yaml",
        "argo/sensor-openfaas.yaml",
        "argo/sensor-workflow.yaml",
        "argo/workflowtemplate.yaml",
    ] {
        let errors = retry_comment_errors(&read(f));
        assert!(errors.is_empty(), "{f}:\n{}", errors.join("\n"));
    }
    // The guide says the same about the HTTP Sensors.
    let steps = the(ARGO, "Sensor", "falco-responder-knative").v["spec"]["triggers"][0]
        ["retryStrategy"]["steps"]
        .as_u64()
        .unwrap();
    let argo = read("docs/deploy-argo.md");
    let want = format!(
        "`steps: {steps}` is the first attempt and {} retries",
        steps - 1
    );
    assert!(argo.contains(&want), "docs/deploy-argo.md lacks {want:?}");
    // Wrong comments are caught: "steps: 4" read as 4 retries, and the wrong waits.
    for bad in [
        "      # Retry 4 times: 2 s, 4 s, 8 s, 16 s.\n      retryStrategy:\n        steps: 4\n        duration: 2s\n        factor: 2\n",
        "      # 4 attempts, after 2 s, 4 s and 8 s.\n      retryStrategy:\n        steps: 4\n        duration: 1s\n        factor: 2\n",
        "      # 3 attempts in all, the retries after 5 s and 10 s.\n      retryStrategy:\n        limit: \"3\"\n        backoff:\n          duration: \"5s\"\n          factor: \"2\"\n",
        "      retryStrategy:\n        steps: 2\n",
    ] {
        assert!(!retry_comment_errors(bad).is_empty(), "accepted:\n{bad}");
    }
    assert!(retry_comment_errors(
        "      # 4 attempts, the retries after about 2 s, 4 s and 8 s.\n      retryStrategy:\n        steps: 4\n        duration: 2s\n        factor: 2\n"
    )
    .is_empty());
}
