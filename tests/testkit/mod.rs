//! The one test kit of the integration tests, by concern:
//! - [`sender`]: the Falco fixtures, the envelopes senders put them in, a raw HTTP client;
//! - [`apiserver`]: a real kube-apiserver + etcd (+ kube-controller-manager) on loopback;
//! - [`binary`]: the one starter of the real `falco-responder` binary;
//! - [`server`]: the one in-process starter (App + `web::run` on a loopback listener);
//! - [`scene`]: the one end-to-end scene (API server, namespace, admin, responders, workloads);
//! - [`node`]: a real node (kubelet, containerd) joined to an API server, and real pods on it.
#![allow(dead_code)]

pub mod apiserver;
pub mod binary;
pub mod node;
pub mod scene;
pub mod sender;
pub mod server;
