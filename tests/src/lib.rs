//! Integration-test support for hstream-io: private database servers ([`harness`]).
//!
//! The tests themselves are one binary, `tests/tests/main.rs`, with one module per topic.

pub mod harness;
pub mod hserver;
