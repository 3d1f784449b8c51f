//! Request → Falco event: every envelope a sender uses, and the cheap first look that lets a
//! skipped event cost almost nothing.

pub mod decode;
pub(crate) mod peek;
mod unique;
