//! # hstream-io IO worker
//!
//! What `hstream-io serve` adds to the stream service: HServer's IO worker,
//! made sturdier (reference §1, §8.2).
//!
//! - [`meta`]: the metadata store interface (task metas, name → id, per-task
//!   KV); [`sqlite`]: its embedded SQLite implementation under `--data-dir`.
//! - [`worker`]: the lifecycle — create (after `check`), pause, resume, alter,
//!   delete, and recovery to every task's desired state after a restart.
//! - `supervisor`: one task = one child process of the same binary
//!   (`<program> <connector> run --config <data-dir>/tasks/<id>/config.json`),
//!   in its own process group with a scrubbed environment, speaking HServer's
//!   channel (KvGet/KvSet/Report/stop); crashes restart with exponential backoff.
//! - [`api`]: HStreamDB's connector RPCs, plugged into the stream service's endpoint.
//! - [`http`]: `/metrics` (Prometheus), `/healthz`, `/readyz` on a second port.
//! - [`sql`]: HStreamDB's connector and stream statements; [`cli`]: the
//!   `hstream-io sql` and `hstream-io connector …` clients.
//!
//! The worker knows connectors only as data ([`ConnectorEntry`]): it never
//! links a connector crate.
#![warn(missing_docs)]

pub mod api;
mod check;
pub mod cli;
pub mod errors;
pub mod http;
mod logs;
pub mod meta;
mod process;
pub mod sql;
pub mod sqlite;
mod supervisor;
mod table;
pub mod worker;

use std::path::PathBuf;
use std::time::Duration;

pub use api::ConnectorService;
pub use errors::WorkerError;
pub use worker::Worker;

/// One connector the worker can run, as the binary's registry describes it.
#[derive(Debug, Clone)]
pub struct ConnectorEntry {
    /// Subcommand name, e.g. `source-generator`.
    pub name: String,
    /// `SOURCE` or `SINK`.
    pub kind: String,
    /// HServer target, e.g. `generator`.
    pub target: String,
    /// The spec (JSON Schema of the connector config).
    pub spec: serde_json::Value,
}

/// How the worker runs tasks.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Root of the worker's state: `io-meta.sqlite` and `tasks/<task-id>/`.
    pub data_dir: PathBuf,
    /// The binary tasks are started from (normally `std::env::current_exe()`).
    pub program: PathBuf,
    /// Start a task from its connector's own program `hstream-io-<connector>` when one lies
    /// next to `program` (less code mapped per task); `false`: always `program <connector>`.
    pub connector_programs: bool,
    /// `hstream.serviceUrl` written into every task's config.json.
    pub service_url: String,
    /// `HOST:PORT` shown as `Connector.node`.
    pub node: String,
    /// The connectors, from the binary's registry.
    pub connectors: Vec<ConnectorEntry>,
    /// Restarts after consecutive crashes before a task becomes FAILED.
    pub max_restarts: u32,
    /// First restart delay; doubles per consecutive crash (capped at 60 s).
    pub restart_backoff: Duration,
    /// Time between the stop message and SIGTERM (and between SIGTERM and SIGKILL: a fifth of it, at least 1 s).
    pub stop_grace: Duration,
    /// How long `check` may take.
    pub check_timeout: Duration,
    /// How long a connector's `cleanup` (on delete) may take.
    pub cleanup_timeout: Duration,
    /// Resource limits applied to every task process.
    pub task_limits: TaskLimits,
}

/// Per-task resource limits (`setrlimit` on the task process, soft = hard).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskLimits {
    /// Address-space limit in bytes (`RLIMIT_AS`); a task exceeding it fails
    /// its allocations and exits, then is restarted like any crash.
    pub address_space_bytes: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
}

impl WorkerOptions {
    /// Defaults: 5 restarts from 1 s, 10 s stop grace, 15 s check timeout, 60 s cleanup timeout.
    pub fn new(data_dir: PathBuf, program: PathBuf, service_url: String, node: String) -> Self {
        Self {
            data_dir,
            program,
            connector_programs: true,
            service_url,
            node,
            connectors: Vec::new(),
            max_restarts: 5,
            restart_backoff: Duration::from_secs(1),
            stop_grace: Duration::from_secs(10),
            check_timeout: Duration::from_secs(15),
            cleanup_timeout: Duration::from_secs(60),
            task_limits: TaskLimits::default(),
        }
    }

    /// `<data-dir>/tasks/<task-id>`.
    pub fn task_dir(&self, task_id: &str) -> PathBuf {
        self.data_dir.join("tasks").join(task_id)
    }
}
