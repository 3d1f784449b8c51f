//! `testkit/apiserver.rs` under its former path, for the suites that still say `mod support;`.
#[path = "../testkit/apiserver.rs"]
mod apiserver;
pub use apiserver::*;
