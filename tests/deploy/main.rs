//! Everything that deploys falco-responder, checked as one test binary: the plain manifests
//! (`knative/`, `openfaas/`, `argo/`, `kubernetes/`), `func.yaml`, the Helm chart, the
//! `Dockerfile` and the guides in `docs/`. The static checks run offline; the rest uses the real
//! `helm` and `kubectl` (`HELM` / `KUBECTL`, or the copies scripts/helm-env.sh installs) and one
//! real kube-apiserver shared by the whole binary (tests/testkit, scripts/kube-test-env.sh).
//!
//! Rooms, one concern each:
//! - `files`, `shell`, `tools`: reading the repository, splitting shell commands, running
//!   helm/kubectl (shared by the rest).
//! - `schemas`: every Kubernetes document against the vendored upstream schema of its kind,
//!   `func.yaml` against knative/func's; `stacks`: the OpenFaaS stacks and Falcosidekick values
//!   (no upstream schema); `rejects`: each of those validators refuses broken documents.
//! - `env_contract`: every env var a manifest sets is read by the binary and accepted by
//!   `Config::from_vars`; Knative, func and kn describe the same Service.
//! - `references`: names, namespaces, URLs and ServiceAccounts agree across the manifests.
//! - `rbac`: least privilege and the NetworkPolicies.
//! - `docs_commands`: the guides' commands match the manifests and carry the token end to end.
//! - `safe_defaults`: what a deployment is without choosing anything (token, protected
//!   namespaces, the platforms' timing contracts); `pod_security`: every pod against Pod
//!   Security `restricted`, statically.
//! - `image`: the Dockerfile; `retries`: Argo Sensors retry, then leave a dead letter.
//! - `chart`: `helm lint` / `helm template` offline; `install`: helm install / upgrade /
//!   uninstall on the API server with the real binary; `apply`: every manifest applied to it.

#[path = "../testkit/mod.rs"]
mod testkit;

mod files;
mod shell;
mod tools;

mod apply;
mod chart;
mod docs_commands;
mod env_contract;
mod image;
mod install;
mod pod_security;
mod rbac;
mod references;
mod rejects;
mod retries;
mod safe_defaults;
mod schemas;
mod stacks;
