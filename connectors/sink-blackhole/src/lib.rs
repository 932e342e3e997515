//! `sink-blackhole`: reads a stream and discards every record. The smallest
//! sink there is: for testing pipelines and measuring read throughput.

use hstream_io_runtime::{
    Connector, Kind, Result, SinkBatch, SinkConnector, SinkOptions, SinkWriter,
};
use schemars::JsonSchema;
use serde::Deserialize;

/// The connector's name.
pub const NAME: &str = "sink-blackhole";

/// Config of `sink-blackhole`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct BlackholeSinkConfig {
    /// Stream to read.
    #[schemars(length(min = 1, max = 255))]
    pub stream: String,
    #[serde(flatten)]
    #[allow(missing_docs)]
    pub options: SinkOptions,
}

/// The connector.
pub struct BlackholeSink;

impl Connector for BlackholeSink {
    type Config = BlackholeSinkConfig;
    const NAME: &'static str = NAME;
    const KIND: Kind = Kind::Sink;
    const TARGET: &'static str = "blackhole";
    const SUMMARY: &'static str =
        "Reads a stream and discards every record (counts them in reports).";
}

impl SinkConnector for BlackholeSink {
    type Writer = Discard;

    fn stream(config: &Self::Config) -> &str {
        &config.stream
    }

    fn options(config: &Self::Config) -> &SinkOptions {
        &config.options
    }

    async fn open(_config: &Self::Config) -> Result<Discard> {
        Ok(Discard)
    }
}

/// Drops every batch.
pub struct Discard;

impl SinkWriter for Discard {
    type Prepared = ();

    fn preparer(&self) -> impl Fn(&SinkBatch) -> Result<()> + Send + Sync + 'static {
        |_| Ok(())
    }

    async fn write_prepared(&mut self, batch: &SinkBatch, _prepared: &()) -> Result<()> {
        tracing::debug!(
            shard = batch.shard_id,
            records = batch.records.len(),
            "discarded"
        );
        Ok(())
    }
}
