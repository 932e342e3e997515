//! What the worker remembers about tasks, behind a small interface
//! ([`MetaStore`]) so a distributed backend can replace the embedded SQLite one
//! ([`crate::sqlite::SqliteMeta`]) without touching the worker logic.
//!
//! Three maps, as HServer keeps them (reference §1.2): task id → [`TaskMeta`],
//! connector name → task id, and the tasks' KV (`<taskId>_<key>` → value).

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A metastore operation failed.
#[derive(Debug, thiserror::Error)]
#[error("metastore {op} failed: {message}")]
pub struct MetaError {
    /// What was attempted, e.g. `put task 6f0e…`.
    pub op: String,
    /// Why it failed.
    pub message: String,
}

/// Result of a metastore operation.
pub type MetaResult<T> = Result<T, MetaError>;

/// HServer's task statuses (`IOTaskStatus`), shown as `Connector.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Created, process not started yet.
    New,
    /// The process runs (or is being restarted after a crash).
    Running,
    /// Paused by the user.
    Stopped,
    /// Gave up: crashed more often than the restart limit, or its config is invalid.
    Failed,
    /// A source that finished (exit 0 on its own).
    Completed,
    /// Deleted; kept as a tombstone.
    Deleted,
}

impl TaskStatus {
    /// The status text (`RUNNING`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Running => "RUNNING",
            Self::Stopped => "STOPPED",
            Self::Failed => "FAILED",
            Self::Completed => "COMPLETED",
            Self::Deleted => "DELETED",
        }
    }
}

/// What the user asked for; the worker brings the task there (also after a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    /// Keep a process running.
    Running,
    /// Keep it stopped (PAUSE CONNECTOR) until resumed.
    Paused,
    /// Gone.
    Deleted,
}

/// One task (= one connector), as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskMeta {
    /// Random UUID v4; names the task directory and the KV namespace.
    pub id: String,
    /// Connector name (unique among live tasks).
    pub name: String,
    /// `SOURCE` or `SINK`.
    #[serde(rename = "type")]
    pub kind: String,
    /// HServer target, e.g. `generator`.
    pub target: String,
    /// The connector config object (`connector` in config.json), secrets included.
    pub config: Value,
    /// Current status.
    pub status: TaskStatus,
    /// Desired state.
    pub desired: Desired,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Why the task last failed (exit status and last error line), if it did.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The offsets of the task's latest report (kept across restarts).
    #[serde(default)]
    pub offsets: Vec<Value>,
}

/// The metadata store.
///
/// Every method is one small atomic operation; the worker serialises lifecycle
/// changes itself, so no transactions across calls are needed.
pub trait MetaStore: Send + Sync + 'static {
    /// Inserts or replaces a task meta.
    fn put_task<'a>(&'a self, task: &'a TaskMeta) -> BoxFuture<'a, MetaResult<()>>;
    /// The task meta of `id`.
    fn get_task<'a>(&'a self, id: &'a str) -> BoxFuture<'a, MetaResult<Option<TaskMeta>>>;
    /// Every task meta (including DELETED tombstones).
    fn list_tasks(&self) -> BoxFuture<'_, MetaResult<Vec<TaskMeta>>>;
    /// Maps `name` to `id`; `false` (and no change) when the name is taken.
    fn bind_name<'a>(&'a self, name: &'a str, id: &'a str) -> BoxFuture<'a, MetaResult<bool>>;
    /// The task id `name` maps to.
    fn lookup_name<'a>(&'a self, name: &'a str) -> BoxFuture<'a, MetaResult<Option<String>>>;
    /// Removes the mapping of `name`.
    fn unbind_name<'a>(&'a self, name: &'a str) -> BoxFuture<'a, MetaResult<()>>;
    /// Reads `<task_id>_<key>`.
    fn kv_get<'a>(
        &'a self,
        task_id: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, MetaResult<Option<String>>>;
    /// Writes `<task_id>_<key>`.
    fn kv_set<'a>(
        &'a self,
        task_id: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, MetaResult<()>>;
    /// Removes every KV entry of a task (on delete).
    fn kv_clear<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, MetaResult<()>>;
}

/// The KV key HServer uses: `<taskId>_<key>`.
pub fn kv_key(task_id: &str, key: &str) -> String {
    format!("{task_id}_{key}")
}
