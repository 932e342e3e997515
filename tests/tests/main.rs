//! The one integration test binary: a module per topic (links once; style §9).

mod driver;
mod secrets;
mod sink_mysql;
mod sink_postgresql;
mod smoke;
mod source_mysql;
mod source_postgresql;
mod stream;
mod tls;
mod worker;
mod workload;
