//! All API I/O: gathers the facts the core decides on and performs the steps it plans, within
//! one deadline per event.

pub mod client;
pub mod error;
pub mod events;
pub mod evict;
pub mod facts;
pub mod pods;
pub mod records;
pub mod workloads;
