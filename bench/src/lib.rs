//! Benchmarks of hstream-io: the standard workload ([`workload`]) every benchmark uses, and the
//! physical-limit loaders behind `hstream-io-bench load` ([`load`]), the SQL sink benchmark behind
//! `hstream-io-bench sink` ([`sink`]) and the whole pipeline ([`pipeline`]). Figures:
//! `docs/benchmarks.md`.

pub mod load;
pub mod pipeline;
pub mod sink;
pub mod source_mysql;
pub mod source_pg;
pub mod workload;
