//! [`ShardReader`]: reads one shard batch by batch (`ReadShard`).

use super::client::{Client, Route, record_id_from_wire};
use super::codec::{EncodedRecord, decode_batch, decode_batch_encoded};
use super::error::StreamError;
use super::types::ReceivedRecord;
use super::wire;

/// HServer's `ShardReaderDataLossGap`: treated as an empty read, as the Java client does.
const DATA_LOSS_GAP: i64 = 903;

/// A record read by [`ShardReader::read_encoded`], with its id.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedEncoded {
    /// Where the record is stored.
    pub record_id: super::types::RecordId,
    /// The record, its payload as stored.
    pub record: EncodedRecord,
    /// When its batch was appended (the server's publish time, unix ms), if the server said.
    pub publish_time_ms: Option<i64>,
}

/// A server-side reader positioned in one shard. Create with
/// [`Client::shard_reader`]; call [`ShardReader::close`] when done (dropping
/// it deletes the server-side reader in the background).
#[derive(Debug)]
pub struct ShardReader {
    client: Client,
    stream: String,
    shard_id: u64,
    reader_id: String,
    closed: bool,
}

impl ShardReader {
    pub(crate) fn new(client: Client, stream: &str, shard_id: u64, reader_id: String) -> Self {
        Self {
            client,
            stream: stream.to_string(),
            shard_id,
            reader_id,
            closed: false,
        }
    }

    /// The server-side reader id.
    pub fn reader_id(&self) -> &str {
        &self.reader_id
    }

    /// The shard this reader reads.
    pub fn shard_id(&self) -> u64 {
        self.shard_id
    }

    /// Reads up to `max_batches` batches and returns their records in order.
    /// Returns an empty list when no data arrives within the reader's timeout.
    pub async fn read(&mut self, max_batches: u32) -> Result<Vec<ReceivedRecord>, StreamError> {
        self.read_with(
            max_batches,
            decode_batch,
            |record_id, record, publish_time_ms| ReceivedRecord {
                record_id,
                record,
                publish_time_ms,
            },
        )
        .await
    }

    /// [`ShardReader::read`] with the payloads left as stored (JSON payloads
    /// not decoded, attributes dropped): for a reader that decodes JSON
    /// payloads itself, later or on another thread (the sink driver).
    pub async fn read_encoded(
        &mut self,
        max_batches: u32,
    ) -> Result<Vec<ReceivedEncoded>, StreamError> {
        self.read_with(
            max_batches,
            decode_batch_encoded,
            |record_id, record, publish_time_ms| ReceivedEncoded {
                record_id,
                record,
                publish_time_ms,
            },
        )
        .await
    }

    async fn read_with<T, R>(
        &mut self,
        max_batches: u32,
        decode: fn(&wire::BatchedRecord, &str) -> Result<Vec<T>, StreamError>,
        received: fn(super::types::RecordId, T, Option<i64>) -> R,
    ) -> Result<Vec<R>, StreamError> {
        let req = wire::ReadShardRequest {
            reader_id: self.reader_id.clone(),
            max_records: max_batches.max(1),
        };
        let target = format!(
            "reader {:?} (stream {:?} shard {})",
            self.reader_id, self.stream, self.shard_id
        );
        let resp = match self
            .client
            .call(
                "ReadShard",
                &target,
                Route::Reader(self.reader_id.clone()),
                |mut a| {
                    let req = req.clone();
                    async move { a.read_shard(req).await }
                },
            )
            .await
        {
            Ok(r) => r,
            Err(e) if e.hserver_code() == Some(DATA_LOSS_GAP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for rr in resp.received_records {
            let Some(batch) = rr.record else {
                return Err(StreamError::Decode {
                    what: "ReadShard response",
                    target,
                    reason: "a received record has no batch".into(),
                });
            };
            let records = decode(&batch, &target)?;
            let published = super::types::publish_time_ms(&batch);
            if records.len() != rr.record_ids.len() {
                return Err(StreamError::Decode {
                    what: "ReadShard response",
                    target,
                    reason: format!(
                        "{} record ids for {} records",
                        rr.record_ids.len(),
                        records.len()
                    ),
                });
            }
            out.extend(
                rr.record_ids
                    .iter()
                    .zip(records)
                    .map(|(id, record)| received(record_id_from_wire(id), record, published)),
            );
        }
        Ok(out)
    }

    /// Deletes the server-side reader.
    pub async fn close(mut self) -> Result<(), StreamError> {
        self.closed = true;
        delete_reader(&self.client, &self.reader_id).await
    }
}

async fn delete_reader(client: &Client, reader_id: &str) -> Result<(), StreamError> {
    let req = wire::DeleteShardReaderRequest {
        reader_id: reader_id.to_string(),
    };
    client
        .call(
            "DeleteShardReader",
            &format!("reader {reader_id:?}"),
            Route::Reader(reader_id.to_string()),
            |mut a| {
                let req = req.clone();
                async move { a.delete_shard_reader(req).await }
            },
        )
        .await?;
    Ok(())
}

impl Drop for ShardReader {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let id = std::mem::take(&mut self.reader_id);
            handle.spawn(async move {
                if let Err(e) = delete_reader(&client, &id).await {
                    tracing::debug!(reader = %id, error = %e, "could not delete dropped shard reader");
                }
            });
        }
    }
}
