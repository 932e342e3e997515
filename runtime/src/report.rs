//! Delivery counters and offsets, and the 3-second `Report` to HServer.
//!
//! `deliveredRecords` and `deliveredBytes` are deltas since the previous report;
//! `offsets` is the array of the latest *persisted* positions.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::channel::Channel;
use crate::shutdown::Shutdown;

/// HServer's report period.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(3);

/// Counters shared by the runtime's drivers.
#[derive(Default)]
pub struct Metrics {
    records: AtomicU64,
    bytes: AtomicU64,
    total_records: AtomicU64,
    offsets: Mutex<Vec<Value>>,
}

impl Metrics {
    /// Counts records (and their payload bytes) acknowledged downstream.
    pub fn delivered(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.total_records.fetch_add(records, Ordering::Relaxed);
    }

    /// Replaces the persisted offsets shown in reports.
    pub fn set_offsets(&self, offsets: Vec<Value>) {
        *self.offsets.lock().expect("metrics lock poisoned") = offsets;
    }

    /// Records delivered since the task started.
    pub fn total_records(&self) -> u64 {
        self.total_records.load(Ordering::Relaxed)
    }

    /// The next report body; resets the delta counters.
    pub fn take_report(&self) -> Value {
        json!({
            "deliveredRecords": self.records.swap(0, Ordering::Relaxed),
            "deliveredBytes": self.bytes.swap(0, Ordering::Relaxed),
            "offsets": self.offsets.lock().expect("metrics lock poisoned").clone(),
        })
    }

    fn restore(&self, report: &Value) {
        self.records.fetch_add(
            report["deliveredRecords"].as_u64().unwrap_or(0),
            Ordering::Relaxed,
        );
        self.bytes.fetch_add(
            report["deliveredBytes"].as_u64().unwrap_or(0),
            Ordering::Relaxed,
        );
    }
}

/// Sends one report: on the channel when there is one, else to the log.
/// A report that fails is not lost: its deltas go into the next one.
pub async fn send_report(channel: Option<&Channel>, metrics: &Metrics) {
    let body = metrics.take_report();
    match channel {
        Some(channel) => {
            if let Err(error) = channel.call("Report", body.clone()).await {
                tracing::warn!(%error, "report not delivered; its counts go into the next one");
                metrics.restore(&body);
            }
        }
        None => tracing::info!(
            delivered_records = body["deliveredRecords"].as_u64(),
            delivered_bytes = body["deliveredBytes"].as_u64(),
            offsets = %body["offsets"],
            "report"
        ),
    }
}

/// Reports every `interval` until the shutdown starts (the runtime sends the
/// final report itself after the final offsets are stored).
pub async fn report_loop(
    channel: Option<Channel>,
    metrics: std::sync::Arc<Metrics>,
    interval: Duration,
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            _ = tick.tick() => send_report(channel.as_ref(), &metrics).await,
            _ = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_carries_deltas_and_offsets() {
        let m = Metrics::default();
        m.delivered(3, 30);
        m.delivered(2, 20);
        m.set_offsets(vec![json!({"shardId": 1, "offset": "1-2-3"})]);
        assert_eq!(
            m.take_report(),
            json!({"deliveredRecords": 5, "deliveredBytes": 50, "offsets": [{"shardId": 1, "offset": "1-2-3"}]})
        );
        assert_eq!(m.take_report()["deliveredRecords"], 0);
        assert_eq!(m.total_records(), 5);
    }
}
