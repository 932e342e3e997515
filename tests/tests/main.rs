//! The one integration test binary: a module per topic (links once; style §9).

mod driver;
mod sink_mysql;
mod sink_postgresql;
mod smoke;
mod source_postgresql;
mod stream;
mod workload;
mod secrets;
mod worker;
mod source_mysql;
