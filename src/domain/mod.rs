//! The pure core: what an event says, which pod it names, whether and how that pod must go.
//! No API client, no runtime, no whole `Config`, no I/O: every rule that keeps the wrong pod
//! alive is here, so it can be tested, property-tested and fuzzed without an API server.

pub mod budget;
pub mod falco;
pub mod guards;
pub mod ident;
pub mod identity;
pub mod outcome;
pub mod plan;
pub mod policy;
pub mod step;
pub mod workload;
