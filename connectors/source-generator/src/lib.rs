//! `source-generator`: appends records generated from a JSON Schema, every
//! `period` seconds, `batchSize` at a time. For demos, tests and load.

mod config;
mod fake;

pub use config::GeneratorConfig;

use std::time::Duration;

use hstream_io_runtime::stream::Record;
use hstream_io_runtime::{Connector, Kind, Result, Source, SourceContext};
use rand::SeedableRng;
use serde_json::{Value, json};

/// The connector's name.
pub const NAME: &str = "source-generator";

/// The connector.
pub struct GeneratorSource;

impl Connector for GeneratorSource {
    type Config = GeneratorConfig;
    const NAME: &'static str = NAME;
    const KIND: Kind = Kind::Source;
    const TARGET: &'static str = "generator";
    const SUMMARY: &'static str = "Appends records generated from a JSON Schema at a fixed rate.";

    fn validate(config: &GeneratorConfig) -> Vec<hstream_io_runtime::validate::ConfigIssue> {
        config.validate()
    }
}

/// Position: how many records were generated and acknowledged, so a restart
/// continues the count (and `totalRecords` spans restarts).
const POSITION_FIELD: &str = "generatedRecords";

impl Source for GeneratorSource {
    async fn run(config: GeneratorConfig, ctx: SourceContext) -> Result<()> {
        let schema = config
            .parsed_schema()
            .map_err(hstream_io_runtime::Error::config)?;
        let mut generated = ctx
            .start_position()
            .and_then(|p| p.get(POSITION_FIELD))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let mut rng = rand::rngs::StdRng::from_os_rng();
        let mut tick = tokio::time::interval(Duration::from_secs(config.period.into()));
        tracing::info!(stream = %config.stream, generated, "generating");
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = ctx.shutdown().wait() => return Ok(()),
            }
            let mut count = u64::from(config.batch_size);
            if let Some(total) = config.total_records {
                count = count.min(total.saturating_sub(generated));
                if count == 0 {
                    tracing::info!(generated, "totalRecords reached; done");
                    return Ok(());
                }
            }
            let records: Vec<Record> = (0..count)
                .map(|_| {
                    let value = fake::generate(&schema, &mut rng);
                    let key = config
                        .key_field
                        .as_deref()
                        .map(|f| partition_key(value.get(f)))
                        .unwrap_or_default();
                    let map = match value {
                        Value::Object(map) => map,
                        other => [("value".to_string(), other)].into_iter().collect(),
                    };
                    Record::json(key, map)
                })
                .collect();
            generated += count;
            ctx.send(
                &config.stream,
                records,
                Some(json!({ POSITION_FIELD: generated })),
            )
            .await?;
        }
    }
}

/// The partition key for a key field's value: strings as they are, integers
/// without a fractional part (the reference produced "15.0"), `defaultKey`
/// when the field is missing, as the reference does.
pub fn partition_key(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "defaultKey".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 && !n.is_i64() && !n.is_u64() => {
                format!("{}", f as i64)
            }
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_have_no_float_artefact() {
        assert_eq!(partition_key(Some(&json!(15))), "15");
        assert_eq!(partition_key(Some(&json!(15.0))), "15");
        assert_eq!(partition_key(Some(&json!(1.5))), "1.5");
        assert_eq!(partition_key(Some(&json!("k"))), "k");
        assert_eq!(partition_key(None), "defaultKey");
    }
}
