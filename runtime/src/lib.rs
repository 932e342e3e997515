//! hstream-io runtime: the connector SDK.
pub mod stream;
