//! Smoke tests of the real-apiserver harness (`testkit::apiserver`).
//! Needs kube-apiserver and etcd: run `scripts/kube-test-env.sh` first.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

use crate::testkit::apiserver::{self as support, ApiServer};

const CONTAINER_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn creates_namespace_and_pod_with_container_id() {
    let server = ApiServer::shared();
    let client = server.admin_client().await;
    let ns = support::namespace(&client, "smoke").await;
    assert!(ns.starts_with("smoke-"), "{ns}");

    let pod = support::create_pod(
        &client,
        &ns,
        "victim",
        CONTAINER_ID,
        &[("falco.org/protect", "false")],
    )
    .await;
    assert!(pod.metadata.uid.as_deref().is_some_and(|u| !u.is_empty()));
    assert_eq!(
        pod.metadata.annotations.as_ref().unwrap()["falco.org/protect"],
        "false"
    );
    let statuses = pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap();
    assert_eq!(
        statuses[0].container_id.as_deref(),
        Some(&*format!("containerd://{CONTAINER_ID}"))
    );

    // Stored, not just echoed.
    let got = Api::<Pod>::namespaced(client, &ns)
        .get("victim")
        .await
        .unwrap();
    assert_eq!(got.metadata.uid, pod.metadata.uid);
    assert_eq!(
        got.status.unwrap().container_statuses.unwrap()[0]
            .container_id
            .as_deref(),
        Some(&*format!("containerd://{CONTAINER_ID}"))
    );
}

#[tokio::test]
async fn service_account_without_rbac_gets_403_on_delete() {
    let server = ApiServer::shared();
    let admin = server.admin_client().await;
    let ns = support::namespace(&admin, "smoke-rbac").await;
    support::create_pod(&admin, &ns, "victim", CONTAINER_ID, &[]).await;

    let token = support::service_account_token(&admin, &ns, "no-rights").await;
    let client = server.client_for_token(&token).await;
    let err = Api::<Pod>::namespaced(client, &ns)
        .delete("victim", &DeleteParams::default())
        .await
        .expect_err("delete without RBAC must fail");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert_eq!(status.reason, "Forbidden", "{status:?}");
        }
        other => panic!("expected Api error 403, got {other:?}"),
    }
}

#[tokio::test]
async fn apply_manifests_grants_delete() {
    let server = ApiServer::shared();
    let admin = server.admin_client().await;
    let ns = support::namespace(&admin, "smoke-apply").await;
    support::create_pod(&admin, &ns, "victim", CONTAINER_ID, &[]).await;

    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("rbac.yaml");
    std::fs::write(
        &manifest,
        r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: responder
  namespace: placeholder
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: responder
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: responder
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: responder
subjects:
- kind: ServiceAccount
  name: responder
  namespace: placeholder
"#,
    )
    .unwrap();
    let applied = support::apply_manifests(&admin, &manifest, Some(&ns)).await;
    assert_eq!(
        applied,
        vec![
            "ServiceAccount/responder".to_string(),
            format!("ClusterRole/responder-{ns}"),
            format!("ClusterRoleBinding/responder-{ns}"),
        ]
    );
    // Applying again is idempotent.
    support::apply_manifests(&admin, &manifest, Some(&ns)).await;

    let token = support::service_account_token(&admin, &ns, "responder").await;
    let client = server.client_for_token(&token).await;
    // RBAC caches refresh quickly but asynchronously; allow a short settle.
    let pods = Api::<Pod>::namespaced(client, &ns);
    let mut deleted = None;
    for _ in 0..50 {
        match pods.delete("victim", &DeleteParams::default()).await {
            Ok(r) => {
                deleted = Some(r);
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 403 => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    // nodeName is set, so the DELETE is graceful: the pod is still there, Terminating.
    let pod = deleted
        .expect("delete still forbidden after RBAC applied")
        .left()
        .expect("graceful delete returns the pod");
    assert!(pod.metadata.deletion_timestamp.is_some());
}

#[tokio::test]
async fn audit_counts_one_delete() {
    let server = ApiServer::shared();
    let client = server.admin_client().await;
    let ns = support::namespace(&client, "smoke-audit").await;
    let name = format!("audited-{}", &ns[ns.len() - 8..]);
    support::create_pod(&client, &ns, &name, CONTAINER_ID, &[]).await;
    assert_eq!(server.count_audit("delete", "pods", &name), 0);
    assert_eq!(server.count_audit("patch", "pods/status", &name), 1);

    Api::<Pod>::namespaced(client, &ns)
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(server.count_audit("delete", "pods", &name), 1);
    assert_eq!(server.count_audit_in("delete", "pods", Some(&ns), &name), 1);
    assert_eq!(
        server.count_audit_in("delete", "pods", Some("elsewhere"), &name),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_restart_apiserver_on_private_instance() {
    let started = std::time::Instant::now();
    let server = ApiServer::start();
    eprintln!("private ApiServer ready in {:?}", started.elapsed());
    let client = server.admin_client().await;
    let ns = support::namespace(&client, "smoke-restart").await;
    let pod = support::create_pod(&client, &ns, "survivor", CONTAINER_ID, &[]).await;
    let pods = Api::<Pod>::namespaced(client, &ns);

    server.stop_apiserver();
    let err = pods.get("survivor").await.expect_err("apiserver is down");
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "expected a transport error, got {err:?}"
    );

    let restarted = std::time::Instant::now();
    server.restart_apiserver();
    eprintln!("restart ready in {:?}", restarted.elapsed());
    // The same client (same port, same CA) works again; data survived in etcd.
    let got = pods.get("survivor").await.unwrap();
    assert_eq!(got.metadata.uid, pod.metadata.uid);
    // Fresh clients work too.
    let fresh = Api::<Pod>::namespaced(server.admin_client().await, &ns);
    assert_eq!(
        fresh.get("survivor").await.unwrap().metadata.uid,
        pod.metadata.uid
    );
}
