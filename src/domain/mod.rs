//! The pure core: what an event says, which pod it names, whether and how that pod must go.
//! No API client, no runtime, no whole `Config`, no I/O: every rule that keeps the wrong pod
//! alive is here, so it can be tested, property-tested and fuzzed without an API server.
//!
//! - [`falco`]: the Falco event and the pod it names; [`ident`]: identifiers, validated;
//! - [`policy`]: event → act on this pod, or skip it and why;
//! - [`identity`]: the live pod vs the event → is it the pod Falco saw, and what to do to it;
//! - [`workload`], [`guards`]: the pod's workload and what availability allows;
//! - [`budget`]: the deletion breaker's arithmetic and its per-process ledger;
//! - [`contain`]: the action per rule, and what containing a pod takes (isolation, release,
//!   evidence, deadline) decided from its facts;
//! - [`plan`], [`step`]: the API's answers in, the next call or the outcome out;
//! - [`outcome`]: what happened to one event.

pub mod budget;
pub mod contain;
pub mod falco;
pub mod guards;
pub mod ident;
pub mod identity;
pub mod outcome;
pub mod plan;
pub mod policy;
pub mod step;
pub mod workload;
