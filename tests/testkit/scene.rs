//! THE end-to-end scene: a real API server (shared, or private for a test that stops it or
//! counts every deletion on it), a fresh namespace, an admin client, responders started against
//! it, and builders for the pods and workloads a test puts there.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod, events::v1::Event as KubeEvent};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

use super::apiserver::{self as support, ApiServer};
use super::binary::Responder;
use super::sender::{Envelope, HttpReply, terminal_shell};

/// How long the controllers get to make and count pods.
pub const WAIT: Duration = Duration::from_secs(60);

#[derive(Clone)]
enum Host {
    Shared(&'static ApiServer),
    Private(Arc<ApiServer>),
}

/// One namespace on an API server, with an admin client.
#[derive(Clone)]
pub struct Scene {
    host: Host,
    pub admin: Client,
    pub ns: String,
}

impl Scene {
    /// A fresh namespace `<prefix>-<8 hex>` on the API server this test binary shares.
    pub async fn new(prefix: &str) -> Scene {
        let server = tokio::task::spawn_blocking(ApiServer::shared)
            .await
            .unwrap();
        Scene::on(Host::Shared(server), prefix).await
    }

    /// The same, with the shared server's kube-controller-manager running (Deployments make
    /// ReplicaSets and pods, the disruption controller computes PodDisruptionBudget status).
    pub async fn with_controllers(prefix: &str) -> Scene {
        let server = tokio::task::spawn_blocking(|| {
            let s = ApiServer::shared();
            s.start_controller_manager();
            s
        })
        .await
        .unwrap();
        Scene::on(Host::Shared(server), prefix).await
    }

    /// A fresh namespace on an API server of its own: for a test that stops it, or that
    /// counts every deletion on the server.
    pub async fn private(prefix: &str) -> Scene {
        let server = tokio::task::spawn_blocking(ApiServer::start).await.unwrap();
        Scene::on(Host::Private(Arc::new(server)), prefix).await
    }

    /// A fresh namespace on `server` (e.g. the one a real node joined, `testkit::node`).
    pub async fn on_server(server: &'static ApiServer, prefix: &str) -> Scene {
        Scene::on(Host::Shared(server), prefix).await
    }

    async fn on(host: Host, prefix: &str) -> Scene {
        let admin = match &host {
            Host::Shared(s) => s.admin_client().await,
            Host::Private(s) => s.admin_client().await,
        };
        let ns = support::namespace(&admin, prefix).await;
        Scene { host, admin, ns }
    }

    /// Another fresh namespace on the same server.
    pub async fn beside(&self, prefix: &str) -> Scene {
        Scene {
            ns: support::namespace(&self.admin, prefix).await,
            ..self.clone()
        }
    }

    /// The same namespace with a fresh admin client (after a restart of the API server).
    pub async fn reconnected(&self) -> Scene {
        Scene {
            admin: self.server().admin_client().await,
            ..self.clone()
        }
    }

    /// An existing namespace (e.g. `kube-system`) on the same server.
    pub fn at(&self, ns: &str) -> Scene {
        Scene {
            ns: ns.to_string(),
            ..self.clone()
        }
    }

    pub fn server(&self) -> &ApiServer {
        match &self.host {
            Host::Shared(s) => s,
            Host::Private(s) => s,
        }
    }

    /// The private server, for blocking calls (stop, restart) off the runtime.
    pub fn private_server(&self) -> Arc<ApiServer> {
        match &self.host {
            Host::Private(s) => s.clone(),
            Host::Shared(_) => panic!("the shared API server is never stopped"),
        }
    }

    /// The admin's kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.server().admin_kubeconfig()
    }

    /// The real binary against this server as admin, with the e2e settings, then `env`.
    pub async fn responder(&self, env: &[(&str, &str)]) -> Responder {
        self.responder_as(&self.kubeconfig(), env).await
    }

    /// The real binary against this server with `kubeconfig`, with the e2e settings, then `env`.
    pub async fn responder_as(&self, kubeconfig: &Path, env: &[(&str, &str)]) -> Responder {
        let kubeconfig = kubeconfig.to_str().unwrap();
        let defaults = [
            ("KUBECONFIG", kubeconfig),
            ("API_TIMEOUT_SECONDS", "5"),
            // The overall deletion budget counts every test's deletions on a shared server: it
            // is tested on a private one. The per-workload one stays on.
            ("MAX_DELETIONS", "off"),
        ];
        Responder::start(&[&defaults[..], env].concat()).await
    }

    /// A kubeconfig for ServiceAccount `name` of this namespace (created if missing): its
    /// requests are authorized by RBAC only.
    pub async fn service_account_kubeconfig(&self, name: &str) -> (String, PathBuf) {
        let token = support::service_account_token(&self.admin, &self.ns, name).await;
        let kubeconfig = self.server().kubeconfig_for_token(&token);
        (token, kubeconfig)
    }

    /// Server-side-applies a manifest of this repository (e.g. `knative/rbac.yaml`) into this
    /// namespace; `"Kind/name"` of each object.
    pub async fn apply(&self, manifest: &str) -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest);
        support::apply_manifests(&self.admin, &path, Some(&self.ns)).await
    }

    // --- Pods ----------------------------------------------------------------------------------

    /// A Running pod `name` with one container `cid` (see `apiserver::create_pod`).
    pub async fn pod(&self, name: &str, cid: &str) -> Pod {
        support::create_pod(&self.admin, &self.ns, name, cid, &[]).await
    }

    /// The same with annotations.
    pub async fn annotated_pod(&self, name: &str, cid: &str, annotations: &[(&str, &str)]) -> Pod {
        support::create_pod(&self.admin, &self.ns, name, cid, annotations).await
    }

    /// A pod as the API has it before the kubelet reports anything: no container ids yet.
    pub async fn bare_pod(&self, name: &str) -> Pod {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": self.ns },
            "spec": {
                "nodeName": "node-1",
                "containers": [{ "name": "main", "image": "alpine" }]
            }
        }))
        .unwrap();
        self.pods().create(&Default::default(), &pod).await.unwrap()
    }

    /// Deletes `name` at once (grace 0) and waits until it is gone.
    pub async fn force_delete(&self, name: &str) {
        let pods = self.pods();
        pods.delete(name, &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
        for _ in 0..100 {
            if pods.get_opt(name).await.unwrap().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{}/{name} was not removed", self.ns);
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    pub async fn get_pod(&self, name: &str) -> Option<Pod> {
        self.pods().get_opt(name).await.unwrap()
    }

    /// Deleted with a grace period: still there, with a deletion timestamp.
    pub async fn terminating(&self, name: &str) -> bool {
        self.get_pod(name)
            .await
            .is_some_and(|p| p.metadata.deletion_timestamp.is_some())
    }

    /// There, and not being deleted.
    pub async fn untouched(&self, name: &str) -> bool {
        self.get_pod(name)
            .await
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    }

    /// Deleted for good: gone, or terminating (the test pods have a node, so DELETE is graceful).
    pub async fn deleted(&self, name: &str) -> bool {
        match self.pods().get_opt(name).await {
            Ok(None) => true,
            Ok(Some(p)) => p.metadata.deletion_timestamp.is_some(),
            Err(e) => panic!("GET {}/{name}: {e}", self.ns),
        }
    }

    /// This very pod (same uid) is there and not being deleted.
    pub async fn exists(&self, pod: &Pod) -> bool {
        let name = pod.metadata.name.as_deref().unwrap();
        self.get_pod(name).await.is_some_and(|p| {
            p.metadata.uid == pod.metadata.uid && p.metadata.deletion_timestamp.is_none()
        })
    }

    // --- Falco's events ------------------------------------------------------------------------

    /// Sends `responder` Falco's Terminal-shell event for `pod` here, seen in container `cid`,
    /// as Falco's http_output does (plain JSON).
    pub async fn shell(&self, responder: &Responder, pod: &str, cid: &str) -> HttpReply {
        self.shell_as(responder, Envelope::Plain, pod, cid).await
    }

    /// The same in `envelope`.
    pub async fn shell_as(
        &self,
        responder: &Responder,
        envelope: Envelope,
        pod: &str,
        cid: &str,
    ) -> HttpReply {
        responder
            .send(envelope, &terminal_shell(&self.ns, pod, cid))
            .await
    }

    // --- Events --------------------------------------------------------------------------------

    /// Events recorded on `pod`, as `kubectl get events` shows them.
    pub async fn events_for(&self, pod: &str) -> Vec<KubeEvent> {
        support::events_for(&self.admin, &self.ns, pod).await
    }

    /// Events recorded on `pod`, once there are `n` (they are written just after the answer).
    pub async fn wait_events(&self, pod: &str, n: usize) -> Vec<KubeEvent> {
        support::wait_events(&self.admin, &self.ns, pod, n).await
    }

    /// How many `reason` Events `pod` has, once it has any.
    pub async fn count_events(&self, pod: &str, reason: &str) -> usize {
        self.wait_events(pod, 1)
            .await
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .count()
    }

    /// The Event with `reason` on `pod`, once it is there (at most 10 s).
    pub async fn wait_event(&self, pod: &str, reason: &str) -> KubeEvent {
        support::wait_for(
            &format!("a {reason} Event on {pod}"),
            Duration::from_secs(10),
            || async {
                self.events_for(pod)
                    .await
                    .into_iter()
                    .rfind(|e| e.reason.as_deref() == Some(reason))
            },
        )
        .await
    }

    // --- Workloads (they need [`Scene::with_controllers`]) ---------------------------------------

    /// Deployment `name` (label `app: name`) with `replicas` pods, no node (no scheduler here).
    pub async fn deployment(&self, name: &str, replicas: i32) {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": { "app": name } },
                "template": {
                    "metadata": { "labels": { "app": name } },
                    "spec": { "containers": [{ "name": "main", "image": "alpine" }] }
                }
            }
        }))
        .unwrap();
        Api::<Deployment>::namespaced(self.admin.clone(), &self.ns)
            .create(&PostParams::default(), &d)
            .await
            .unwrap_or_else(|e| panic!("creating Deployment {}/{name}: {e}", self.ns));
    }

    pub async fn scale(&self, name: &str, replicas: i32) {
        Api::<Deployment>::namespaced(self.admin.clone(), &self.ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
            )
            .await
            .unwrap();
    }

    /// Live (not terminating) pods of `app`, by name.
    pub async fn pods_of(&self, app: &str) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self
            .pods()
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        pods
    }

    /// Waits for `n` pods of `app` made by the controllers, marks the first `ready` of them Ready
    /// (each with its own container id), and waits for the Deployment to count them.
    pub async fn ready_pods(&self, app: &str, n: usize, ready: usize) -> Vec<Pod> {
        let pods = support::wait_for(&format!("{n} pods of {app}"), WAIT, || async {
            let pods = self.pods_of(app).await;
            (pods.len() == n).then_some(pods)
        })
        .await;
        let mut out = Vec::new();
        for (i, p) in pods.iter().enumerate() {
            let name = p.metadata.name.as_deref().unwrap();
            if i < ready && !is_ready(p) {
                out.push(support::mark_pod_ready(&self.admin, &self.ns, name, &new_cid()).await);
            } else if i >= ready && !has_container_id(p) {
                out.push(self.mark_started_not_ready(name).await);
            } else {
                out.push(p.clone());
            }
        }
        self.wait_ready_replicas(app, ready as i32).await;
        out
    }

    /// A started container that is not ready (yet): what Falco can see, what the floor does
    /// not count.
    async fn mark_started_not_ready(&self, name: &str) -> Pod {
        let status = json!({ "status": {
            "phase": "Running",
            "conditions": [{ "type": "Ready", "status": "False" }],
            "containerStatuses": [{
                "name": "main", "image": "alpine", "imageID": "", "ready": false, "restartCount": 0,
                "containerID": format!("containerd://{}", new_cid()), "state": { "running": {} }
            }]
        }});
        self.pods()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap()
    }

    async fn wait_ready_replicas(&self, app: &str, ready: i32) {
        let api = &Api::<Deployment>::namespaced(self.admin.clone(), &self.ns);
        support::wait_for(
            &format!("Deployment {app} to count {ready} ready"),
            WAIT,
            move || async move {
                let d = api.get(app).await.unwrap();
                let s = d.status.unwrap_or_default();
                (s.ready_replicas.unwrap_or(0) == ready
                    && s.observed_generation == d.metadata.generation)
                    .then_some(())
            },
        )
        .await;
    }
}

fn has_container_id(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.container_id.is_some()))
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl Responder {
    /// Sends the Terminal-shell event for `pod` (with its container id); the reply and its JSON.
    pub async fn shell_in(&self, ns: &str, pod: &Pod) -> (HttpReply, serde_json::Value) {
        let name = pod.metadata.name.as_deref().unwrap();
        let r = self
            .send(Envelope::Plain, &terminal_shell(ns, name, &cid_of(pod)))
            .await;
        let v = self.result(&r);
        (r, v)
    }
}

/// A fresh 64-hex container id.
pub fn new_cid() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{a}{b}")
}

/// The container id a pod reports (without `containerd://`).
pub fn cid_of(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .container_id
        .as_deref()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string()
}
