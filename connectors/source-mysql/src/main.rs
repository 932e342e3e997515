//! `hstream-io-source-mysql`: this connector as its own program, with the verbs of
//! `hstream-io source-mysql <verb>` (`spec`, `check`, `run`, `cleanup`). It holds only this
//! connector and the runtime, so a task started from it maps far less code than one
//! started from the full `hstream-io` binary; `hstream-io serve` prefers it when it lies
//! next to `hstream-io`.

fn main() -> std::process::ExitCode {
    hstream_io_runtime::cli::standalone_main(hstream_io_runtime::ConnectorInfo::source::<
        hstream_io_source_mysql::MysqlSource,
    >())
}
