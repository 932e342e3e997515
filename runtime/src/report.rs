//! Delivery counters and offsets, and the 3-second `Report` to HServer.
//!
//! `deliveredRecords` and `deliveredBytes` are deltas since the previous report;
//! `offsets` is the array of the latest *persisted* positions. Ours on top
//! (HServer ignores unknown fields): `snapshot` (a source's initial-snapshot
//! progress) and `lagMs` (how far behind the task is; [`Metrics::observe_lag`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::channel::Channel;
use crate::shutdown::Shutdown;

/// HServer's report period.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(3);

/// Counters shared by the runtime's drivers.
pub struct Metrics {
    records: AtomicU64,
    bytes: AtomicU64,
    total_records: AtomicU64,
    offsets: Mutex<Vec<Value>>,
    snapshot: Mutex<Option<SnapshotProgress>>,
    /// Milliseconds of the latest [`Metrics::observe_lag`]; `u64::MAX` = none yet.
    lag_ms: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            total_records: AtomicU64::new(0),
            offsets: Mutex::default(),
            snapshot: Mutex::default(),
            lag_ms: AtomicU64::new(u64::MAX),
        }
    }
}

/// A source's initial-snapshot progress, shown in every `Report` under
/// `"snapshot"` (and by the worker as metrics) until the snapshot is done.
#[derive(Debug, Clone)]
struct SnapshotProgress {
    started: Instant,
    /// Per table: (rows done, estimated total rows, finished).
    tables: BTreeMap<String, (u64, u64, bool)>,
}

impl SnapshotProgress {
    fn to_json(&self) -> Value {
        let rows_done: u64 = self.tables.values().map(|t| t.0).sum();
        // A finished table's estimate is its real count.
        let rows_total: u64 = self
            .tables
            .values()
            .map(|&(done, total, finished)| if finished { done } else { total.max(done) })
            .sum();
        let tables_done = self.tables.values().filter(|t| t.2).count();
        let done = tables_done == self.tables.len();
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            rows_done as f64 / elapsed
        } else {
            0.0
        };
        let eta = if done {
            Some(0.0)
        } else if rate > 0.0 {
            Some(((rows_total - rows_done) as f64 / rate).ceil())
        } else {
            None
        };
        json!({
            "done": done,
            "rowsDone": rows_done,
            "rowsTotalEstimate": rows_total,
            "tablesDone": tables_done,
            "tables": self.tables.len(),
            "rowsPerSecond": rate.round(),
            "etaSeconds": eta,
        })
    }
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

    /// Declares (or updates) the snapshot progress of one table: `rows_done`
    /// rows read so far out of an estimated `rows_estimate` (e.g. from the
    /// catalog statistics). Call with `finished = true` when the table is
    /// complete. Reports carry the sum over all tables and an ETA.
    pub fn snapshot_progress(
        &self,
        table: &str,
        rows_done: u64,
        rows_estimate: u64,
        finished: bool,
    ) {
        let mut snapshot = self.snapshot.lock().expect("metrics lock poisoned");
        let progress = snapshot.get_or_insert_with(|| SnapshotProgress {
            started: Instant::now(),
            tables: BTreeMap::new(),
        });
        progress
            .tables
            .insert(table.to_string(), (rows_done, rows_estimate, finished));
    }

    /// The snapshot progress as reported (`None` when the task has no snapshot).
    pub fn snapshot_report(&self) -> Option<Value> {
        self.snapshot
            .lock()
            .expect("metrics lock poisoned")
            .as_ref()
            .map(SnapshotProgress::to_json)
    }

    /// Records how far behind the task is, from the newest change it just got
    /// acknowledged downstream: `event_unix_ms` is that change's time at its
    /// origin (a source: the commit timestamp in the binlog / WAL; a sink: the
    /// record's append time in HStream). Reports carry `lagMs` = now − that
    /// time, as measured at the acknowledgement (Debezium's "behind source"):
    /// it keeps its last value while nothing changes.
    pub fn observe_lag(&self, event_unix_ms: i64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let lag = u64::try_from(now.saturating_sub(event_unix_ms)).unwrap_or(0);
        self.lag_ms.store(lag.min(u64::MAX - 1), Ordering::Relaxed);
    }

    /// The lag of the latest [`Metrics::observe_lag`], if any.
    pub fn lag_ms(&self) -> Option<u64> {
        let lag = self.lag_ms.load(Ordering::Relaxed);
        (lag != u64::MAX).then_some(lag)
    }

    /// Records delivered since the task started.
    pub fn total_records(&self) -> u64 {
        self.total_records.load(Ordering::Relaxed)
    }

    /// The next report body; resets the delta counters.
    /// HServer's fields first; `snapshot` is ours (HServer ignores unknown
    /// fields) and present only while a source has snapshot progress.
    pub fn take_report(&self) -> Value {
        let mut report = json!({
            "deliveredRecords": self.records.swap(0, Ordering::Relaxed),
            "deliveredBytes": self.bytes.swap(0, Ordering::Relaxed),
            "offsets": self.offsets.lock().expect("metrics lock poisoned").clone(),
        });
        if let Some(snapshot) = self.snapshot_report() {
            report["snapshot"] = snapshot;
        }
        if let Some(lag) = self.lag_ms() {
            report["lagMs"] = json!(lag);
        }
        report
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
        assert!(m.take_report().get("snapshot").is_none());
        assert!(m.take_report().get("lagMs").is_none());
    }

    #[test]
    fn report_carries_the_latest_lag() {
        let m = Metrics::default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        m.observe_lag(now - 5_000);
        let lag = m.take_report()["lagMs"].as_u64().unwrap();
        assert!((5_000..60_000).contains(&lag), "{lag}");
        // A clock ahead of ours is no lag, not a huge number.
        m.observe_lag(now + 10_000);
        assert_eq!(m.take_report()["lagMs"], 0);
    }

    #[test]
    fn report_carries_snapshot_progress_summed_over_tables() {
        let m = Metrics::default();
        m.snapshot_progress("db.a", 40, 100, false);
        m.snapshot_progress("db.b", 10, 5, true);
        let snapshot = m.take_report()["snapshot"].clone();
        assert_eq!(snapshot["rowsDone"], 50);
        assert_eq!(snapshot["rowsTotalEstimate"], 110);
        assert_eq!(snapshot["tablesDone"], 1);
        assert_eq!(snapshot["tables"], 2);
        assert_eq!(snapshot["done"], false);
        m.snapshot_progress("db.a", 100, 100, true);
        let snapshot = m.take_report()["snapshot"].clone();
        assert_eq!(snapshot["done"], true);
        assert_eq!(snapshot["etaSeconds"], 0.0);
    }
}
