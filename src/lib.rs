//! falco-responder: receives Falco events and deletes the offending Kubernetes pod.
//!
//! The data flows one way, **decode → decide → act → answer**, and each folder is one layer of
//! it; a room imports only from the rooms listed above it here (ARCHITECTURE.md walks one event
//! through them):
//! - [`fastfmt`]: string writers for the per-event path (bottom: used by every layer);
//! - [`domain`]: the pure core: the Falco event ([`domain::falco`]), identifiers
//!   ([`domain::ident`]), policy, the identity verdict ([`domain::identity`]), the availability
//!   guards, the breaker's budget arithmetic ([`domain::budget`]), workloads and outcomes;
//! - [`ingest`]: HTTP request → Falco event, for every envelope (pure);
//! - [`config`]: environment variables (the public contract), validated at start-up, handing
//!   each layer its part;
//! - [`obs`]: log lines and metrics;
//! - [`cluster`]: every Kubernetes API call: the client, the pod's GET and removal, the
//!   workload's facts, the breaker's records, the one Event vocabulary, one error type;
//! - [`app`]: one event end to end, the reply, event storms, the one-shot mode;
//! - [`web`]: the HTTP listener, connections, limits, routes.
#![forbid(unsafe_code)]

pub mod app;
pub mod cluster;
pub mod config;
pub mod domain;
pub(crate) mod fastfmt;
pub mod ingest;
pub mod obs;
pub mod web;
