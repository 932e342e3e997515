//! Durable metadata (streams, shards, readers, subscriptions) in one JSON
//! file, replaced atomically (write temp, fsync, rename, fsync dir) on change.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A shard of a stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShardMeta {
    pub id: u64,
    /// Decimal strings, as on the wire.
    pub start: String,
    pub end: String,
}

/// A stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StreamMeta {
    pub replication_factor: u32,
    pub backlog_secs: u32,
    pub creation_ms: i64,
    pub shards: Vec<ShardMeta>,
}

/// A shard reader (its position is kept in memory; after a restart it
/// starts again from where it was created).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReaderMeta {
    pub stream: String,
    pub shard_id: u64,
    pub start_lsn: u64,
    pub timeout_ms: u32,
}

/// A subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SubscriptionMeta {
    pub stream: String,
    pub ack_timeout_secs: i32,
    pub max_unacked: i32,
    /// 0 EARLIEST, 1 LATEST.
    pub offset: i32,
    pub creation_ms: i64,
    /// Start LSN per shard, fixed at creation.
    pub start_lsns: BTreeMap<u64, u64>,
}

/// Everything persisted besides the shard logs.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub next_shard_id: u64,
    pub streams: BTreeMap<String, StreamMeta>,
    pub readers: BTreeMap<String, ReaderMeta>,
    pub subscriptions: BTreeMap<String, SubscriptionMeta>,
}

pub(crate) fn meta_path(dir: &Path) -> PathBuf {
    dir.join("meta.json")
}

impl Meta {
    /// Loads `meta.json` from `dir`, or a fresh one if absent.
    pub(crate) fn load(dir: &Path, fresh_shard_base: u64) -> io::Result<Self> {
        let path = meta_path(dir);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "metadata file {} is corrupt ({e}); restore it from a backup or move the data directory away",
                        path.display()
                    ),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self {
                next_shard_id: fresh_shard_base,
                ..Self::default()
            }),
            Err(e) => Err(io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Saves atomically.
    pub(crate) fn save(&self, dir: &Path) -> io::Result<()> {
        let path = meta_path(dir);
        let tmp = dir.join("meta.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        fs::write(&tmp, bytes).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot write {}: {e}", tmp.display()))
        })?;
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, &path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot replace {}: {e}", path.display()))
        })?;
        File::open(dir)?.sync_all()
    }
}
