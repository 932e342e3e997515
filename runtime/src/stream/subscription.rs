//! Subscriptions: create/list/delete, and a [`Consumer`] over `StreamingFetch`
//! with batched acknowledgements.

use tokio::sync::mpsc;

use super::client::{Client, Route, record_id_from_wire, record_id_to_wire};
use super::codec::decode_batch;
use super::error::StreamError;
use super::types::{ReceivedRecord, RecordId, SubscriptionOffset};
use super::wire;

/// Acks are sent once this many are pending (or on [`Consumer::next`] / [`Consumer::close`]).
const ACK_BATCH: usize = 100;

/// A subscription's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// Subscription id.
    pub id: String,
    /// The stream it reads.
    pub stream: String,
    /// Seconds before an unacknowledged record is delivered again.
    pub ack_timeout_secs: i32,
    /// Most unacknowledged records outstanding per subscription.
    pub max_unacked_records: i32,
    /// Where it started.
    pub offset: SubscriptionOffset,
}

impl From<wire::Subscription> for SubscriptionInfo {
    fn from(s: wire::Subscription) -> Self {
        Self {
            id: s.subscription_id,
            stream: s.stream_name,
            ack_timeout_secs: s.ack_timeout_seconds,
            max_unacked_records: s.max_unacked_records,
            offset: if s.offset == wire::SpecialOffset::Earliest as i32 {
                SubscriptionOffset::Earliest
            } else {
                SubscriptionOffset::Latest
            },
        }
    }
}

impl Client {
    /// Creates a subscription on `stream`.
    pub async fn create_subscription(&self, info: &SubscriptionInfo) -> Result<(), StreamError> {
        let req = wire::Subscription {
            subscription_id: info.id.clone(),
            stream_name: info.stream.clone(),
            ack_timeout_seconds: info.ack_timeout_secs,
            max_unacked_records: info.max_unacked_records,
            offset: match info.offset {
                SubscriptionOffset::Earliest => wire::SpecialOffset::Earliest as i32,
                SubscriptionOffset::Latest => wire::SpecialOffset::Latest as i32,
            },
            creation_time: None,
        };
        self.call(
            "CreateSubscription",
            &format!("subscription {:?} on stream {:?}", info.id, info.stream),
            Route::Any,
            |mut a| {
                let req = req.clone();
                async move { a.create_subscription(req).await }
            },
        )
        .await?;
        Ok(())
    }

    /// All subscriptions.
    pub async fn list_subscriptions(&self) -> Result<Vec<SubscriptionInfo>, StreamError> {
        let r = self
            .call(
                "ListSubscriptions",
                "cluster",
                Route::Any,
                |mut a| async move {
                    a.list_subscriptions(wire::ListSubscriptionsRequest {})
                        .await
                },
            )
            .await?;
        Ok(r.subscription
            .into_iter()
            .map(SubscriptionInfo::from)
            .collect())
    }

    /// Deletes a subscription (`force`: even with active consumers).
    pub async fn delete_subscription(&self, id: &str, force: bool) -> Result<(), StreamError> {
        let req = wire::DeleteSubscriptionRequest {
            subscription_id: id.to_string(),
            force,
        };
        self.call(
            "DeleteSubscription",
            &format!("subscription {id:?}"),
            Route::Any,
            |mut a| {
                let req = req.clone();
                async move { a.delete_subscription(req).await }
            },
        )
        .await?;
        Ok(())
    }

    /// Starts consuming a subscription as `consumer_name`.
    pub async fn consumer(
        &self,
        subscription_id: &str,
        consumer_name: &str,
    ) -> Result<Consumer, StreamError> {
        let route = Route::Subscription(subscription_id.to_string());
        let node = self.resolve(&route).await?;
        let mut api = self.api(&node)?;
        let (tx, rx) = mpsc::unbounded_channel::<wire::StreamingFetchRequest>();
        let first = wire::StreamingFetchRequest {
            subscription_id: subscription_id.to_string(),
            consumer_name: consumer_name.to_string(),
            ack_ids: Vec::new(),
        };
        let _ = tx.send(first);
        let requests =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
        let target = format!("subscription {subscription_id:?}");
        let inbound = api
            .streaming_fetch(requests)
            .await
            .map_err(|s| StreamError::from_status("StreamingFetch", target.clone(), &node, &s))?
            .into_inner();
        Ok(Consumer {
            subscription_id: subscription_id.to_string(),
            consumer_name: consumer_name.to_string(),
            node,
            target,
            tx,
            inbound,
            pending_acks: Vec::new(),
        })
    }
}

/// A subscription consumer: receives batches, acknowledges record ids.
#[derive(Debug)]
pub struct Consumer {
    subscription_id: String,
    consumer_name: String,
    node: String,
    target: String,
    tx: mpsc::UnboundedSender<wire::StreamingFetchRequest>,
    inbound: tonic::Streaming<wire::StreamingFetchResponse>,
    pending_acks: Vec<RecordId>,
}

impl Consumer {
    /// Waits for the next delivered batch; `None` when the server ends the stream.
    /// Sends pending acks first.
    pub async fn next(&mut self) -> Result<Option<Vec<ReceivedRecord>>, StreamError> {
        self.flush_acks()?;
        loop {
            let msg = self.inbound.message().await.map_err(|s| {
                StreamError::from_status("StreamingFetch", self.target.clone(), &self.node, &s)
            })?;
            let Some(msg) = msg else { return Ok(None) };
            let Some(rr) = msg.received_records else {
                continue;
            };
            let Some(batch) = rr.record else { continue };
            let records = decode_batch(&batch, &self.target)?;
            let published = super::types::publish_time_ms(&batch);
            if records.len() != rr.record_ids.len() {
                return Err(StreamError::Decode {
                    what: "StreamingFetch response",
                    target: self.target.clone(),
                    reason: format!("{} ids for {} records", rr.record_ids.len(), records.len()),
                });
            }
            return Ok(Some(
                rr.record_ids
                    .iter()
                    .zip(records)
                    .map(|(id, record)| ReceivedRecord {
                        record_id: record_id_from_wire(id),
                        record,
                        publish_time_ms: published,
                    })
                    .collect(),
            ));
        }
    }

    /// Acknowledges records (sent in batches of 100, or with the next `next`/`close`).
    pub fn ack(&mut self, ids: impl IntoIterator<Item = RecordId>) -> Result<(), StreamError> {
        self.pending_acks.extend(ids);
        if self.pending_acks.len() >= ACK_BATCH {
            self.flush_acks()?;
        }
        Ok(())
    }

    fn flush_acks(&mut self) -> Result<(), StreamError> {
        if self.pending_acks.is_empty() {
            return Ok(());
        }
        let req = wire::StreamingFetchRequest {
            subscription_id: self.subscription_id.clone(),
            consumer_name: self.consumer_name.clone(),
            ack_ids: self
                .pending_acks
                .drain(..)
                .map(|r| record_id_to_wire(&r))
                .collect(),
        };
        self.tx.send(req).map_err(|_| StreamError::Connect {
            node: self.node.clone(),
            reason: format!("{} stream closed; create a new consumer", self.target),
        })
    }

    /// Sends pending acks and ends the fetch stream.
    pub async fn close(mut self) -> Result<(), StreamError> {
        // Queued acks are still sent: the request stream drains the channel before it ends.
        let r = self.flush_acks();
        drop(self.tx);
        r
    }
}
