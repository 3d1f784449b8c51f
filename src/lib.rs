//! falco-responder: receives Falco events and deletes the offending Kubernetes pod.
//!
//! The data flows one way: **decode → decide → act → answer**.
//! - [`config`]: environment variables (the public contract), validated at start-up;
//! - [`decode`]: HTTP request → [`event::FalcoEvent`], for every envelope (pure);
//! - [`ident`]: every identifier an event names, validated before anything uses it (pure);
//! - [`policy`]: event + config → delete this pod, or skip it and why (pure);
//! - [`verdict`]: live pod + target + event + config + now → what to do to that pod (pure);
//! - [`action`]: the Kubernetes calls (GET, DELETE with a uid precondition, Event) carrying
//!   out the verdict;
//! - [`coalesce`]: one API round trip per pod during an event storm;
//! - [`workload`], [`guards`], [`breaker`], [`evict`]: the pod's workload, the availability
//!   guards, the shared deletion breaker and the Eviction API (issue 10);
//! - [`app`]: one event end to end, shared by [`server`] (HTTP) and [`once`] (Argo Workflows).
#![forbid(unsafe_code)]

pub mod action;
pub mod app;
pub mod availability;
pub mod breaker;
pub mod coalesce;
pub mod config;
pub mod decode;
pub mod deletions;
pub mod event;
pub mod evict;
pub mod guards;
pub mod ident;
pub mod kubeconfig;
pub mod metrics;
pub mod once;
mod peek;
pub mod policy;
pub mod server;
pub mod telemetry;
mod text;
pub mod verdict;
pub mod workload;
