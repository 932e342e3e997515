//! Every connector this binary ships, in one explicit list (greppable; nothing
//! registers itself). Adding a connector adds one line here.

use hstream_io_runtime::ConnectorInfo;

/// All connectors, sources first.
pub fn all() -> Vec<ConnectorInfo> {
    vec![
        ConnectorInfo::source::<hstream_io_source_generator::GeneratorSource>(),
        ConnectorInfo::source::<hstream_io_source_mysql::MysqlSource>(),
        ConnectorInfo::source::<hstream_io_source_postgresql::PgSource>(),
        ConnectorInfo::sink::<hstream_io_sink_blackhole::BlackholeSink>(),
        ConnectorInfo::sink::<hstream_io_sink_postgresql::PgSink>(),
        ConnectorInfo::sink::<hstream_io_sink_mysql::MysqlSink>(),
    ]
}

/// The connector called `name` (e.g. `source-generator`).
pub fn find(name: &str) -> Option<ConnectorInfo> {
    all().into_iter().find(|c| c.name == name)
}
