//! Audit events (`source: k8s_audit`) against the real kube-apiserver: requests the API server
//! refused (403 for a user without rights, 409 for a create of an existing name, 422 for a
//! privileged pod it does not allow), a read, and a successful create, each read back from the API server's own audit log and turned into the
//! Falco event the k8saudit plugin emits for it. Only the successful create deletes its pod.

use std::time::{Duration, Instant};

use kube::api::PostParams;
use serde_json::{Value, json};

use crate::testkit::scene::{Scene, new_cid};
use crate::testkit::sender::{Envelope, said};

/// The stock k8saudit rules these requests match (falcosecurity/plugins,
/// plugins/k8saudit/rules/k8s_audit_rules.yaml).
const RULES: &str =
    "Attach/Exec Pod,port-forward,Create Privileged Pod,Create Disallowed Pod,Disallowed K8s User";

/// The `ResponseComplete` audit record of the request `verb` on `ns/pods/name[/sub]` by `user`,
/// the last one if several; waits for the API server to write it.
fn audit_record(scene: &Scene, verb: &str, name: &str, sub: Option<&str>, user: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = scene.server().audit_events().into_iter().rev().find(|e| {
            let o = &e["objectRef"];
            e["stage"] == "ResponseComplete"
                && e["verb"] == verb
                && e["user"]["username"] == user
                && o["resource"] == "pods"
                && o["namespace"] == scene.ns.as_str()
                && o["name"] == name
                && o["subresource"].as_str() == sub
        });
        if let Some(e) = found {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no audit record of {verb} pods/{name} {sub:?} by {user}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Falco event the k8saudit plugin makes of `record` for `rule`, as Falco's JSON output
/// writes it: every `ka.*` field a string (the response code too), `null` when the record has no
/// value. `with_outcome: false` is the stock rules' output, without `ka.response.code`,
/// `ka.auth.decision` and `ka.verb`; `true` adds them as the README's `append_output` does.
fn falco_event(rule: &str, record: &Value, with_outcome: bool) -> String {
    let o = &record["objectRef"];
    let mut fields = json!({
        "ka.user.name": record["user"]["username"],
        "ka.target.name": o["name"],
        "ka.target.namespace": o["namespace"],
        "ka.target.resource": o["resource"],
        "ka.target.subresource": o.get("subresource").cloned().unwrap_or(Value::Null),
        "ka.uri": record["requestURI"],
    });
    if with_outcome {
        fields["ka.response.code"] = record["responseStatus"]["code"]
            .as_u64()
            .map_or(Value::Null, |c| c.to_string().into());
        fields["ka.auth.decision"] = record["annotations"]["authorization.k8s.io/decision"].clone();
        fields["ka.verb"] = record["verb"].clone();
    }
    json!({
        "hostname": "falco-k8saudit",
        "output": format!("{rule} (user={})", record["user"]["username"]),
        "priority": "Notice",
        "rule": rule,
        "source": "k8s_audit",
        "tags": ["k8s"],
        "time": record["stageTimestamp"],
        "output_fields": fields,
    })
    .to_string()
}

fn pod_named(ns: &str, name: &str, privileged: bool) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "alpine",
            "securityContext": {"privileged": privileged}}]}
    }))
    .unwrap()
}

async fn api_error(client: &kube::Client, method: http::Method, path: &str) -> u16 {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .body(Vec::new())
        .unwrap();
    match client.request_text(req).await {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("{path}: expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn refused_audit_requests_never_delete_and_a_successful_create_does() {
    let scene = Scene::new("audit").await;
    let db = scene.pod("db-0", &new_cid()).await;
    let admin = "admin";

    // A ServiceAccount without any role tries to exec into db-0 and to port-forward to it.
    let (token, _) = scene.service_account_kubeconfig("nobody").await;
    let nobody_name = format!("system:serviceaccount:{}:nobody", scene.ns);
    let nobody = scene.server().client_for_token(&token).await;
    let base = format!("/api/v1/namespaces/{}/pods/db-0", scene.ns);
    let exec = format!("{base}/exec?command=sh&stdin=true&stdout=true&tty=true");
    assert_eq!(api_error(&nobody, http::Method::POST, &exec).await, 403);
    let forward = format!("{base}/portforward?ports=5432");
    assert_eq!(api_error(&nobody, http::Method::POST, &forward).await, 403);
    // The admin creates a pod of the same name (409), reads it (200), tries a privileged pod
    // (422: this API server does not allow them) and creates an ordinary one (201).
    let again = pod_named(&scene.ns, "db-0", false);
    let conflict = scene.pods().create(&PostParams::default(), &again).await;
    assert!(
        matches!(&conflict, Err(kube::Error::Api(s)) if s.code == 409),
        "{conflict:?}"
    );
    scene.pods().get("db-0").await.unwrap();
    let privileged = pod_named(&scene.ns, "evil-0", true);
    let invalid = scene
        .pods()
        .create(&PostParams::default(), &privileged)
        .await;
    assert!(
        matches!(&invalid, Err(kube::Error::Api(s)) if s.code == 422),
        "{invalid:?}"
    );
    let created = pod_named(&scene.ns, "new-0", false);
    scene
        .pods()
        .create(&PostParams::default(), &created)
        .await
        .unwrap();

    // What the API server recorded: the code and the authorizer's decision, as the plugin reads
    // them (`responseStatus.code`, the `authorization.k8s.io/decision` annotation).
    let exec_rec = audit_record(&scene, "create", "db-0", Some("exec"), &nobody_name);
    let forward_rec = audit_record(&scene, "create", "db-0", Some("portforward"), &nobody_name);
    let conflict_rec = audit_record(&scene, "create", "db-0", None, admin);
    let get_rec = audit_record(&scene, "get", "db-0", None, admin);
    let invalid_rec = audit_record(&scene, "create", "evil-0", None, admin);
    let create_rec = audit_record(&scene, "create", "new-0", None, admin);
    let shape = |r: &Value| {
        (
            r["responseStatus"]["code"].as_u64(),
            r["annotations"]["authorization.k8s.io/decision"]
                .as_str()
                .map(String::from),
        )
    };
    let forbid = (Some(403), Some("forbid".to_string()));
    assert_eq!(shape(&exec_rec), forbid, "{exec_rec}");
    assert_eq!(shape(&forward_rec), forbid, "{forward_rec}");
    let allow = |code| (Some(code), Some("allow".to_string()));
    assert_eq!(shape(&conflict_rec), allow(409), "{conflict_rec}");
    assert_eq!(shape(&get_rec), allow(200), "{get_rec}");
    assert_eq!(shape(&invalid_rec), allow(422), "{invalid_rec}");
    assert_eq!(shape(&create_rec), allow(201), "{create_rec}");

    let responder = scene
        .responder(&[("RULES", RULES), ("LOG_FORMAT", "json")])
        .await;
    // Named at start: the stock rules' events are skipped until the fields are added.
    let logs = responder.logs_with("k8s_audit rules").await;
    let warn = logs
        .lines()
        .find(|l| l.contains("k8s_audit rules"))
        .unwrap_or_else(|| panic!("no WARN at start: {logs}"));
    assert!(
        warn.contains("WARN") && warn.contains("port-forward") && warn.contains("ka.response.code"),
        "{warn}"
    );

    for (rule, record, expect) in [
        ("Attach/Exec Pod", &exec_rec, r#"ka.response.code="403""#),
        ("port-forward", &forward_rec, r#"ka.response.code="403""#),
        (
            "Create Privileged Pod",
            &conflict_rec,
            r#"ka.response.code="409""#,
        ),
        (
            "Create Privileged Pod",
            &invalid_rec,
            r#"ka.response.code="422""#,
        ),
        ("Disallowed K8s User", &get_rec, r#"ka.verb="get""#),
        // The stock output: no response code, whatever the request's outcome.
        (
            "Create Disallowed Pod",
            &create_rec,
            "without ka.response.code",
        ),
    ] {
        let with_outcome = !expect.starts_with("without");
        let event = falco_event(rule, record, with_outcome);
        let r = responder.send(Envelope::Plain, &event).await;
        assert_eq!(
            r.status,
            200,
            "{rule}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let result = responder.result(&r);
        assert_eq!(result["outcome"], "skipped", "{rule}: {result}");
        assert!(said(&result, "reason").contains(expect), "{rule}: {result}");
    }
    assert!(scene.exists(&db).await, "db-0 was touched");
    assert!(scene.untouched("new-0").await, "new-0 was touched");
    let metrics = responder.metrics().await;
    for line in [
        r#"falco_responder_audit_skipped_total{why="refused"} 4"#,
        r#"falco_responder_audit_skipped_total{why="not_the_pod"} 1"#,
        r#"falco_responder_audit_skipped_total{why="unproven"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }

    // The same create with the fields added: the pod is removed.
    let event = falco_event("Create Disallowed Pod", &create_rec, true);
    let r = responder.send(Envelope::Plain, &event).await;
    let result = responder.result(&r);
    assert_eq!(
        (r.status, &result["outcome"]),
        (200, &json!("deleted")),
        "{result}\n{}",
        responder.logs()
    );
    assert!(scene.deleted("new-0").await);
    assert!(scene.exists(&db).await);
}
