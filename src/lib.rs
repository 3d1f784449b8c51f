//! falco-responder: receives Falco events and deletes the offending Kubernetes pod, or
//! contains it (`ACTION=contain`: isolated, released from its ReplicaSet, its logs kept, killed
//! later by the kubelet).
//!
//! The data flows one way, **decode → decide → act → answer**, and each folder is one layer of
//! it. The map of the house, one line a room, bottom up: a room imports only from the rooms
//! above it in this list (ARCHITECTURE.md walks one event through them and says where each kind
//! of change goes).
//! - `fastfmt`: string writers for the per-event path, used by every layer, and the one bound
//!   on what is echoed of a sender's string; `cache`: the one cache type (time to live, entry
//!   and byte bounds), used by every per-process memory;
//! - [`domain`]: the pure core (event, identifiers, policy, identity verdict, guards, budget,
//!   workloads, containment, outcomes, and the plan that turns the API's answers into the next
//!   step);
//! - [`ingest`]: request → Falco event, for every envelope, and the cheap first look (pure);
//! - [`config`]: the environment (the public contract) → `Config`, handing each layer its part;
//! - [`obs`]: the log lines and the metrics;
//! - [`cluster`]: every Kubernetes API call, performed as the plan asks; one Event vocabulary,
//!   one error type;
//! - [`app`]: one event end to end, the reply, event storms, the one-shot mode;
//! - [`web`]: the HTTP listener, connections, limits, routes, rendering.
//!
//! `main.rs` is thin: mode, runtime, signals, then `web::run` or `app::once::run`.
#![forbid(unsafe_code)]

pub mod app;
pub(crate) mod cache;
pub mod cluster;
pub mod config;
pub mod domain;
pub(crate) mod fastfmt;
pub mod ingest;
pub mod obs;
pub mod web;
