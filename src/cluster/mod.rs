//! All API I/O: gathers the facts the core decides on and performs the steps it plans, within
//! one deadline per event.
//!
//! - [`client`]: the kube clients (in a pod, KUBECONFIG or ~/.kube/config outside);
//! - [`pods`]: one event's steps carried out (GET, removal with the uid precondition, Events);
//! - [`facts`], [`workloads`], [`evict`]: the guards' facts and the Eviction API;
//! - [`records`]: the deletion breaker's shared records, watched;
//! - [`reservations`]: MIN_AVAILABLE's slots, held by records with deterministic names;
//! - [`contain`]: containment's calls (NetworkPolicy, the pod's JSON patch, log tails, the
//!   evidence ConfigMap and its retention);
//! - [`events`]: the one vocabulary of the Kubernetes Events we write, and their builders;
//! - [`error`]: the one error type, its HTTP status and metric label, the event's deadline.

pub mod client;
pub mod contain;
pub mod error;
pub mod events;
pub mod evict;
pub mod facts;
pub mod pods;
pub mod records;
pub mod reservations;
pub mod workloads;
