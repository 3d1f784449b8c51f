//! `testkit/sender.rs` under its former path, for the suites that still say `mod common;`.
#[path = "../testkit/sender.rs"]
mod sender;
pub use sender::*;
