//! Key-value state of a task (offsets, snapshot progress) behind one trait.
//!
//! - [`ChannelKv`]: HServer's metastore through `KvGet`/`KvSet` on the channel
//!   (HServer stores keys as `<taskId>_<key>`).
//! - [`FileKv`]: standalone runs; one JSON file replaced atomically (write a
//!   temporary file, fsync, rename, fsync the folder), so a crash leaves either
//!   the old or the new state, never a torn one.
//! - [`MemoryKv`], for tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::channel::Channel;
use crate::error::{Error, ErrorKind, Result};

/// A task's key-value store. Values are opaque strings (connectors store JSON text).
pub trait KvStore: Send + Sync {
    /// The value under `key`, or `None`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>>>;
    /// Stores `value` under `key`; durable when the future resolves.
    fn set<'a>(&'a self, key: &'a str, value: String) -> BoxFuture<'a, Result<()>>;
}

/// KV through the HServer channel.
pub struct ChannelKv {
    channel: Channel,
}

impl ChannelKv {
    /// Uses `channel` for `KvGet`/`KvSet`.
    pub fn new(channel: Channel) -> Self {
        Self { channel }
    }
}

impl KvStore for ChannelKv {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            match self.channel.call("KvGet", json!({ "key": key })).await? {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s)),
                other => Err(Error::new(
                    ErrorKind::Protocol,
                    format!(
                        "KvGet `{key}` answered {}, expected a string or null",
                        crate::validate::type_name(&other)
                    ),
                )),
            }
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: String) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.channel
                .call("KvSet", json!({ "key": key, "value": value }))
                .await
                .map(drop)
        })
    }
}

/// KV in a JSON file, for standalone runs.
pub struct FileKv {
    path: PathBuf,
    map: tokio::sync::Mutex<BTreeMap<String, String>>,
}

impl FileKv {
    /// Opens (or starts) the store at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let map = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("KV file {} is not a JSON object of strings", path.display()),
                )
                .with_source(e)
                .with_hint("Restore it from a backup or delete it to start from scratch.")
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Setup,
                    format!("cannot read KV file {}", path.display()),
                )
                .with_source(e));
            }
        };
        Ok(Self {
            path,
            map: tokio::sync::Mutex::new(map),
        })
    }
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}-{n}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl KvStore for FileKv {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move { Ok(self.map.lock().await.get(key).cloned()) })
    }

    fn set<'a>(&'a self, key: &'a str, value: String) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut map = self.map.lock().await;
            let mut next = map.clone();
            next.insert(key.to_string(), value);
            let bytes = serde_json::to_vec_pretty(&next).expect("a string map always encodes");
            let path = self.path.clone();
            tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
                .await
                .map_err(|e| Error::internal("KV writer panicked").with_source(e))?
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Setup,
                        format!("cannot write KV file {}", self.path.display()),
                    )
                    .with_source(e)
                    .with_hint("Check free disk space and permissions of the folder.")
                })?;
            *map = next;
            Ok(())
        })
    }
}

/// KV in memory, for tests.
#[derive(Default)]
pub struct MemoryKv {
    map: Mutex<BTreeMap<String, String>>,
}

impl MemoryKv {
    /// A copy of everything stored.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.map.lock().expect("kv lock poisoned").clone()
    }
}

impl KvStore for MemoryKv {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        let value = self.map.lock().expect("kv lock poisoned").get(key).cloned();
        Box::pin(async move { Ok(value) })
    }

    fn set<'a>(&'a self, key: &'a str, value: String) -> BoxFuture<'a, Result<()>> {
        self.map
            .lock()
            .expect("kv lock poisoned")
            .insert(key.to_string(), value);
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_kv_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.json");
        let kv = FileKv::open(&path).unwrap();
        assert_eq!(kv.get("a").await.unwrap(), None);
        kv.set("a", "1".into()).await.unwrap();
        kv.set("b", "{\"x\":2}".into()).await.unwrap();
        drop(kv);
        let kv = FileKv::open(&path).unwrap();
        assert_eq!(kv.get("a").await.unwrap().as_deref(), Some("1"));
        assert_eq!(kv.get("b").await.unwrap().as_deref(), Some("{\"x\":2}"));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files left behind");
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.json");
        std::fs::write(&path, "not json").unwrap();
        let err = FileKv::open(&path).err().unwrap();
        assert!(err.to_string().contains("is not a JSON object"), "{err}");
    }

    #[tokio::test]
    async fn memory_kv_round_trips() {
        let kv = MemoryKv::default();
        kv.set("k", "v".into()).await.unwrap();
        assert_eq!(kv.get("k").await.unwrap().as_deref(), Some("v"));
        assert_eq!(kv.snapshot().len(), 1);
    }
}
