//! The scene's part for real pods: namespaces whose pods get tokens, pods the kubelet runs.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use serde_json::Value;

use crate::testkit::node;
use crate::testkit::scene::Scene;

impl Scene {
    /// A fresh namespace on the node's API server, once its `default` ServiceAccount has a token
    /// (pods are refused before).
    pub async fn on_node(prefix: &str) -> Scene {
        let scene = Scene::on_server(node::server(), prefix).await;
        node::wait_service_account(&scene.admin, &scene.ns, "default").await;
        scene
    }

    /// A busybox pod the kubelet runs and reports Ready (`node::run_pod`).
    pub async fn real_pod(&self, name: &str, meta: Value, spec: Value) -> Pod {
        node::run_pod(&self.admin, &self.ns, name, meta, spec).await
    }

    /// Waits until pod `name` is Ready with every container id reported.
    pub async fn wait_ready(&self, name: &str) -> Pod {
        node::wait_ready(&self.admin, &self.ns, name).await
    }

    /// Deletes every pod here at once, so that the node has less to do for the next test.
    pub async fn clear(&self) {
        let _ = self
            .pods()
            .delete_collection(
                &DeleteParams::default().grace_period(0),
                &ListParams::default(),
            )
            .await;
    }
}
