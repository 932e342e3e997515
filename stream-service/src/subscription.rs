//! Subscriptions: per-shard cursors, delivery over `StreamingFetch`,
//! acknowledgements, and redelivery of batches not fully acknowledged
//! within `ackTimeoutSeconds`.
//!
//! Cursors and unacknowledged batches live in memory; the acknowledged
//! position per shard (the oldest batch not fully acknowledged) is
//! checkpointed into the metadata periodically and at shutdown, so after a
//! restart delivery resumes from the last checkpoint (at-least-once).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hstream_io_runtime::stream::wire;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::codegen::BoxStream;
use tonic::{Response, Status, Streaming};

use crate::errors::{self, invalid_argument};
use crate::meta::SubscriptionMeta;
use crate::service::{Service, lock, received};

/// How often a consumer's delivery loop polls for new data and expired acks.
const POLL: Duration = Duration::from_millis(50);
/// Batches read per shard per poll.
const BATCHES_PER_POLL: usize = 16;

struct Unacked {
    remaining: HashSet<u32>,
    deadline: Instant,
    batch: wire::ReceivedRecord,
}

#[derive(Default)]
struct Progress {
    cursors: HashMap<u64, u64>,
    unacked: BTreeMap<(u64, u64), Unacked>,
    unacked_records: usize,
}

/// A subscription's live state.
pub(crate) struct SubState {
    id: String,
    meta: SubscriptionMeta,
    progress: tokio::sync::Mutex<Progress>,
    closed: AtomicBool,
}

impl SubState {
    pub(crate) fn new(id: String, meta: SubscriptionMeta) -> Self {
        Self {
            id,
            meta,
            progress: tokio::sync::Mutex::new(Progress::default()),
            closed: AtomicBool::new(false),
        }
    }

    /// Stops delivery to every consumer (subscription deleted).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Per shard, the LSN delivery must restart from so that nothing
    /// unacknowledged is skipped.
    pub(crate) async fn checkpoint(&self) -> BTreeMap<u64, u64> {
        let p = self.progress.lock().await;
        let mut out = self.meta.start_lsns.clone();
        for (shard, cur) in &p.cursors {
            out.insert(*shard, *cur);
        }
        for (shard, lsn) in p.unacked.keys() {
            let e = out.entry(*shard).or_insert(*lsn);
            if *lsn < *e {
                *e = *lsn;
            }
        }
        out
    }

    async fn ack(&self, ids: &[wire::RecordId]) {
        let mut p = self.progress.lock().await;
        for id in ids {
            let key = (id.shard_id, id.batch_id);
            let mut done = false;
            let mut removed = false;
            if let Some(u) = p.unacked.get_mut(&key) {
                removed = u.remaining.remove(&id.batch_index);
                done = u.remaining.is_empty();
            }
            if removed {
                p.unacked_records -= 1;
            }
            if done {
                p.unacked.remove(&key);
            }
        }
    }

    /// Batches due for (re)delivery now.
    async fn due(&self, svc: &Service) -> Result<Vec<wire::ReceivedRecord>, Status> {
        let mut p = self.progress.lock().await;
        let now = Instant::now();
        let ack_timeout =
            Duration::from_secs(u64::try_from(self.meta.ack_timeout_secs.max(1)).unwrap_or(600));
        let mut out = Vec::new();
        for u in p.unacked.values_mut() {
            if u.deadline <= now {
                u.deadline = now + ack_timeout;
                out.push(u.batch.clone());
            }
        }
        let max = usize::try_from(self.meta.max_unacked.max(1)).unwrap_or(10_000);
        if p.unacked_records >= max {
            return Ok(out);
        }
        for (shard, log) in svc.stream_logs(&self.meta.stream)? {
            let start = self.meta.start_lsns.get(&shard).copied().unwrap_or(0);
            let cur = *p.cursors.entry(shard).or_insert(start);
            let (batches, next) = log
                .read(cur.max(log.first_lsn()), BATCHES_PER_POLL)
                .map_err(|e| errors::internal("cannot read the shard log", &e))?;
            p.cursors.insert(shard, next.max(cur));
            for b in batches {
                let rr = received(shard, b);
                let n = rr.record_ids.len();
                p.unacked.insert(
                    (shard, rr.record_ids.first().map_or(0, |r| r.batch_id)),
                    Unacked {
                        remaining: rr.record_ids.iter().map(|r| r.batch_index).collect(),
                        deadline: now + ack_timeout,
                        batch: rr.clone(),
                    },
                );
                p.unacked_records += n;
                out.push(rr);
            }
            if p.unacked_records >= max {
                break;
            }
        }
        Ok(out)
    }
}

/// Serves one `StreamingFetch` call.
pub(crate) async fn streaming_fetch(
    svc: Service,
    mut inbound: Streaming<wire::StreamingFetchRequest>,
) -> Result<Response<BoxStream<wire::StreamingFetchResponse>>, Status> {
    let first = inbound.message().await?.ok_or_else(|| {
        invalid_argument("StreamingFetch: the first request must name the subscription".into())
    })?;
    let sub = lock(&svc.inner.subs)
        .get(&first.subscription_id)
        .cloned()
        .ok_or_else(|| errors::subscription_not_found(&first.subscription_id))?;
    sub.ack(&first.ack_ids).await;
    let (tx, rx) = mpsc::channel::<Result<wire::StreamingFetchResponse, Status>>(64);
    tracing::debug!(subscription = %sub.id, consumer = %first.consumer_name, "consumer connected");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                m = inbound.message() => match m {
                    Ok(Some(req)) => sub.ack(&req.ack_ids).await,
                    _ => return,
                },
                _ = tick.tick() => {
                    if sub.closed.load(Ordering::SeqCst) {
                        let _ = tx.send(Err(errors::subscription_not_found(&sub.id))).await;
                        return;
                    }
                    let due = match sub.due(&svc).await {
                        Ok(d) => d,
                        Err(s) => {
                            let _ = tx.send(Err(s)).await;
                            return;
                        }
                    };
                    for b in due {
                        let msg = wire::StreamingFetchResponse { received_records: Some(b) };
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    let out = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    Ok(Response::new(Box::pin(out)))
}
