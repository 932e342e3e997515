//! The IO worker: every lifecycle operation on connectors, and recovery of
//! every task to its desired state when the worker starts.
//!
//! Lifecycle changes are serialised (one at a time); each persists the
//! desired state before acting, so a worker killed half-way recovers to what
//! the user asked for.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use hstream_io_runtime::stream::wire;
use serde_json::{Map, Value, json};

use crate::check::{run_check, run_cleanup};
use crate::errors::{WorkerError, validate_name};
use crate::meta::{Desired, MetaStore, TaskMeta, TaskStatus};
use crate::process::{command_line, is_task_process, signal_group};
use crate::sqlite::SqliteMeta;
use crate::supervisor::{Ctx, Handle, Live, MetaCell, lock, write_config_value};
use crate::{ConnectorEntry, WorkerOptions};

/// The IO worker. Cheap to share behind an `Arc`.
pub struct Worker {
    ctx: Arc<Ctx>,
    /// Supervisors by task id.
    running: tokio::sync::Mutex<HashMap<String, Handle>>,
    /// Live stats by task id (kept across pause/resume).
    lives: Mutex<HashMap<String, Arc<Mutex<Live>>>>,
    /// Serialises lifecycle operations.
    ops: tokio::sync::Mutex<()>,
}

type Result<T, E = WorkerError> = std::result::Result<T, E>;

/// A per-task metric: name, Prometheus type, help text, value (if the task has one).
type MetricFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Live) -> Option<f64>,
);

/// One connector's HServer stats (`ConnectorStats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorStat {
    /// Connector name.
    pub name: String,
    /// `DeliveredInRecords`: records reported as delivered since the worker started.
    pub delivered_in_records: u64,
    /// `DeliveredInBytes`: bytes reported as delivered since the worker started.
    pub delivered_in_bytes: u64,
    /// `IsAlive`: the status is RUNNING.
    pub is_alive: bool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parses a config given as JSON text into an object.
fn config_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!("config must be a JSON object, got {other}")),
        Err(e) => Err(format!("config is not valid JSON: {e}")),
    }
}

impl Worker {
    /// Opens the worker with the embedded SQLite metastore at
    /// `<data-dir>/io-meta.sqlite`. Call [`Worker::recover`] once the stream
    /// service accepts connections.
    pub async fn open(opts: WorkerOptions) -> Result<Arc<Self>> {
        std::fs::create_dir_all(opts.data_dir.join("tasks")).map_err(|e| {
            WorkerError::Process(format!(
                "cannot create {}: {e}; pick a writable --data-dir",
                opts.data_dir.join("tasks").display()
            ))
        })?;
        let store = SqliteMeta::open(&opts.data_dir.join("io-meta.sqlite")).await?;
        Ok(Self::with_store(opts, Arc::new(store)))
    }

    /// A worker over any metastore.
    pub fn with_store(opts: WorkerOptions, store: Arc<dyn MetaStore>) -> Arc<Self> {
        Arc::new(Self {
            ctx: Arc::new(Ctx {
                opts,
                meta: MetaCell::new(store),
            }),
            running: tokio::sync::Mutex::new(HashMap::new()),
            lives: Mutex::new(HashMap::new()),
            ops: tokio::sync::Mutex::new(()),
        })
    }

    fn store(&self) -> &dyn MetaStore {
        &*self.ctx.meta.store
    }

    fn opts(&self) -> &WorkerOptions {
        &self.ctx.opts
    }

    fn live(&self, id: &str) -> Arc<Mutex<Live>> {
        lock(&self.lives).entry(id.to_string()).or_default().clone()
    }

    /// The registry entry for `kind` (SOURCE/SINK, any case) and `target`.
    fn entry(&self, kind: &str, target: &str) -> Result<&ConnectorEntry> {
        let kind = kind.to_ascii_uppercase();
        if kind != "SOURCE" && kind != "SINK" {
            return Err(WorkerError::InvalidType(kind));
        }
        let same_kind = || self.opts().connectors.iter().filter(|c| c.kind == kind);
        same_kind().find(|c| c.target == target).ok_or_else(|| {
            let available: Vec<&str> = same_kind().map(|c| c.target.as_str()).collect();
            WorkerError::Unimplemented {
                kind: kind.clone(),
                target: target.to_string(),
                available: available.join(", "),
            }
        })
    }

    async fn task_by_name(&self, name: &str) -> Result<TaskMeta> {
        let id = self
            .store()
            .lookup_name(name)
            .await?
            .ok_or_else(|| WorkerError::NotFound(name.to_string()))?;
        self.store()
            .get_task(&id)
            .await?
            .filter(|t| t.status != TaskStatus::Deleted)
            .ok_or_else(|| WorkerError::NotFound(name.to_string()))
    }

    async fn start(&self, task: &TaskMeta) -> Result<()> {
        let connector = self.entry(&task.kind, &task.target)?.name.clone();
        let mut running = self.running.lock().await;
        if let Some(old) = running.remove(&task.id) {
            old.stop().await;
        }
        let handle = Handle::start(
            self.ctx.clone(),
            task.clone(),
            connector,
            self.live(&task.id),
        );
        running.insert(task.id.clone(), handle);
        Ok(())
    }

    async fn stop(&self, id: &str) {
        let handle = self.running.lock().await.remove(id);
        if let Some(h) = handle {
            h.stop().await;
        }
    }

    /// Runs `check` for `config` of connector `entry` in `dir` (config written to `file`).
    async fn check(
        &self,
        entry: &str,
        dir: &Path,
        file: &str,
        id: &str,
        config: &Value,
    ) -> Result<()> {
        let path = dir.join(file);
        write_config_value(dir, &path, &self.opts().service_url, config, id)
            .map_err(WorkerError::Process)?;
        run_check(self.opts(), entry, &path, dir, self.opts().check_timeout).await
    }

    /// Brings every stored task to its desired state: kills processes left by a
    /// previous worker, starts the ones that should run, marks paused ones STOPPED.
    pub async fn recover(&self) -> Result<()> {
        let _ops = self.ops.lock().await;
        for task in self.store().list_tasks().await? {
            if task.status == TaskStatus::Deleted {
                continue;
            }
            if self.store().lookup_name(&task.name).await?.as_deref() != Some(task.id.as_str()) {
                // A create interrupted before its name was bound: never visible, never run.
                self.ctx
                    .meta
                    .update(&task.id, |m| m.status = TaskStatus::Deleted)
                    .await?;
                continue;
            }
            let dir = self.opts().task_dir(&task.id);
            if let Some(pid) = std::fs::read_to_string(dir.join("pid"))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
                && is_task_process(pid, &task.id)
            {
                tracing::warn!(task = %task.name, pid, "killing a task process left by the previous worker");
                signal_group(pid, rustix::process::Signal::KILL);
            }
            match task.desired {
                Desired::Running if task.status != TaskStatus::Completed => {
                    tracing::info!(task = %task.name, "recovering task");
                    if let Err(e) = self.start(&task).await {
                        tracing::error!(task = %task.name, error = %e, "cannot recover task");
                    }
                }
                Desired::Deleted => {
                    tracing::info!(task = %task.name, "finishing an interrupted delete");
                    if let Err(e) = self.finish_delete(&task).await {
                        tracing::error!(task = %task.name, error = %e, "cannot finish the delete");
                    }
                }
                Desired::Paused => {
                    self.ctx
                        .meta
                        .update(&task.id, |m| m.status = TaskStatus::Stopped)
                        .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Stops every task process (gracefully) without changing desired states:
    /// the next worker start brings them back.
    pub async fn shutdown(&self) {
        let handles: Vec<Handle> = self.running.lock().await.drain().map(|(_, h)| h).collect();
        futures::future::join_all(handles.into_iter().map(Handle::stop)).await;
    }

    /// `CreateConnector`: validates, runs `check`, stores and starts the task.
    pub async fn create(
        &self,
        name: &str,
        kind: &str,
        target: &str,
        config: &str,
    ) -> Result<wire::Connector> {
        validate_name(name)?;
        let entry = self.entry(kind, target)?.clone();
        let config = config_object(config).map_err(|message| {
            WorkerError::CheckFailed(json!({"result": false, "type": "CONFIG", "message": message}))
        })?;
        let _ops = self.ops.lock().await;
        if self.store().lookup_name(name).await?.is_some() {
            return Err(WorkerError::Exists(name.to_string()));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let dir = self.opts().task_dir(&id);
        let config = Value::Object(config);
        if let Err(e) = self
            .check(&entry.name, &dir, "config.json", &id, &config)
            .await
        {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let task = TaskMeta {
            id: id.clone(),
            name: name.to_string(),
            kind: entry.kind.clone(),
            target: entry.target.clone(),
            config,
            status: TaskStatus::New,
            desired: Desired::Running,
            created_ms: now_ms(),
            last_error: None,
            offsets: Vec::new(),
        };
        self.store().put_task(&task).await?;
        if !self.store().bind_name(name, &id).await? {
            self.ctx
                .meta
                .update(&id, |m| m.status = TaskStatus::Deleted)
                .await?;
            let _ = std::fs::remove_dir_all(&dir);
            return Err(WorkerError::Exists(name.to_string()));
        }
        self.start(&task).await?;
        // Started: RUNNING at once, as HServer answers (the supervisor confirms it).
        let task = self
            .ctx
            .meta
            .update(&id, |m| {
                if m.status == TaskStatus::New {
                    m.status = TaskStatus::Running;
                }
            })
            .await?
            .unwrap_or(task);
        tracing::info!(connector = name, task = %id, "connector created");
        Ok(self.view(&task))
    }

    /// `ListConnectors`: every connector not deleted, oldest first.
    pub async fn list(&self) -> Result<Vec<wire::Connector>> {
        let tasks = self.store().list_tasks().await?;
        Ok(tasks
            .iter()
            .filter(|t| t.status != TaskStatus::Deleted)
            .map(|t| self.view(t))
            .collect())
    }

    /// `GetConnector`.
    pub async fn get(&self, name: &str) -> Result<wire::Connector> {
        Ok(self.view(&self.task_by_name(name).await?))
    }

    /// `GetConnectorSpec`: the spec as JSON text, in the connector's key order.
    pub fn spec(&self, kind: &str, target: &str) -> Result<String> {
        Ok(self.entry(kind, target)?.spec.to_string())
    }

    /// `GetConnectorLogs`: lines `begin ..` (1-based) of the task's app.log.
    pub async fn logs(&self, name: &str, begin: i32, count: i32) -> Result<String> {
        let task = self.task_by_name(name).await?;
        let path = self.opts().task_dir(&task.id).join("app.log");
        crate::logs::page(&path, begin, count)
            .map_err(|e| WorkerError::Process(format!("cannot read {}: {e}", path.display())))
    }

    /// `PauseConnector`: stop message, SIGTERM, SIGKILL; stays paused across restarts.
    pub async fn pause(&self, name: &str) -> Result<()> {
        let _ops = self.ops.lock().await;
        let task = self.task_by_name(name).await?;
        self.ctx
            .meta
            .update(&task.id, |m| m.desired = Desired::Paused)
            .await?;
        self.stop(&task.id).await;
        self.ctx
            .meta
            .update(&task.id, |m| {
                if matches!(m.status, TaskStatus::Running | TaskStatus::New) {
                    m.status = TaskStatus::Stopped;
                }
            })
            .await?;
        tracing::info!(connector = name, "connector paused");
        Ok(())
    }

    /// `ResumeConnector`: runs the task again, from its stored offsets.
    pub async fn resume(&self, name: &str) -> Result<()> {
        let _ops = self.ops.lock().await;
        let task = self.task_by_name(name).await?;
        let task = self
            .ctx
            .meta
            .update(&task.id, |m| {
                m.desired = Desired::Running;
                m.last_error = None;
            })
            .await?
            .unwrap_or(task);
        let alive = self
            .running
            .lock()
            .await
            .get(&task.id)
            .is_some_and(|h| !h.is_finished());
        if !alive {
            lock(&self.live(&task.id)).restarts = 0;
            self.start(&task).await?;
        }
        tracing::info!(connector = name, "connector resumed");
        Ok(())
    }

    /// `DeleteConnector`: stops the task, runs its connector's `cleanup` verb
    /// (drops what the connector owns, as its config says), then marks it
    /// DELETED, frees the name and removes its KV and directory. A failed
    /// cleanup keeps the connector (STOPPED, the error in its meta) and is
    /// returned: the caller sees it, nothing is half-deleted.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let _ops = self.ops.lock().await;
        let task = self.task_by_name(name).await?;
        self.ctx
            .meta
            .update(&task.id, |m| m.desired = Desired::Deleted)
            .await?;
        self.stop(&task.id).await;
        self.finish_delete(&task).await
    }

    /// The part of a delete after the task process stopped (also resumed by
    /// [`Worker::recover`] when the worker died half-way through a delete).
    async fn finish_delete(&self, task: &TaskMeta) -> Result<()> {
        if let Err(why) = self.cleanup(task).await {
            tracing::error!(connector = %task.name, %why, "cleanup failed; the connector is kept, stopped");
            let error = WorkerError::CleanupFailed {
                name: task.name.clone(),
                why,
            };
            let message = error.to_string();
            self.ctx
                .meta
                .update(&task.id, |m| {
                    m.desired = Desired::Paused;
                    m.status = TaskStatus::Stopped;
                    m.last_error = Some(message);
                })
                .await?;
            return Err(error);
        }
        self.ctx
            .meta
            .update(&task.id, |m| m.status = TaskStatus::Deleted)
            .await?;
        self.store().unbind_name(&task.name).await?;
        self.store().kv_clear(&task.id).await?;
        lock(&self.lives).remove(&task.id);
        let _ = std::fs::remove_dir_all(self.opts().task_dir(&task.id));
        tracing::info!(connector = %task.name, "connector deleted");
        Ok(())
    }

    /// Runs `<connector> cleanup` for a stopped task.
    async fn cleanup(&self, task: &TaskMeta) -> Result<(), String> {
        let entry = self
            .entry(&task.kind, &task.target)
            .map_err(|e| e.to_string())?
            .name
            .clone();
        let dir = self.opts().task_dir(&task.id);
        let path = dir.join("config.json");
        write_config_value(
            &dir,
            &path,
            &self.opts().service_url,
            &task.config,
            &task.id,
        )?;
        run_cleanup(
            self.opts(),
            &entry,
            &path,
            &dir,
            self.opts().cleanup_timeout,
        )
        .await
    }

    /// `AlterConnectorConfig`: shallow-merges `config` (a JSON object) into the
    /// connector config, re-runs `check`, stores it and restarts the task
    /// (a paused task stays paused).
    pub async fn alter(&self, name: &str, config: &str) -> Result<()> {
        let patch = config_object(config).map_err(WorkerError::InvalidArgument)?;
        let _ops = self.ops.lock().await;
        let task = self.task_by_name(name).await?;
        let mut merged = task.config.as_object().cloned().unwrap_or_default();
        merged.extend(patch);
        let merged = Value::Object(merged);
        let entry = self.entry(&task.kind, &task.target)?.name.clone();
        let dir = self.opts().task_dir(&task.id);
        let checked = self
            .check(&entry, &dir, "config.check.json", &task.id, &merged)
            .await;
        let _ = std::fs::remove_file(dir.join("config.check.json"));
        checked?;
        let task = self
            .ctx
            .meta
            .update(&task.id, |m| {
                m.config = merged;
                m.last_error = None;
            })
            .await?
            .unwrap_or(task);
        if task.desired == Desired::Running {
            self.start(&task).await?;
        }
        tracing::info!(connector = name, "connector config altered");
        Ok(())
    }

    /// Prometheus text: per-task counters (since this worker started),
    /// restarts, liveness, status, lag and snapshot progress. Labels carry
    /// names only, never config. A task that has no value for a gauge (no
    /// snapshot, no lag reported yet) has no sample in that family.
    pub async fn metrics(&self) -> Result<String> {
        let tasks = self.store().list_tasks().await?;
        let tasks: Vec<(&TaskMeta, Live)> = tasks
            .iter()
            .filter(|t| t.status != TaskStatus::Deleted)
            .map(|t| (t, lock(&self.live(&t.id)).clone()))
            .collect();
        let families: [MetricFamily; 14] = [
            (
                "hstream_io_task_delivered_records_total",
                "counter",
                "Records the task reported as delivered.",
                |l| Some(l.delivered_records as f64),
            ),
            (
                "hstream_io_task_delivered_bytes_total",
                "counter",
                "Bytes the task reported as delivered.",
                |l| Some(l.delivered_bytes as f64),
            ),
            (
                "hstream_io_task_restarts_total",
                "counter",
                "Restarts after crashes.",
                |l| Some(f64::from(l.restarts)),
            ),
            (
                "hstream_io_task_ignored_lines_total",
                "counter",
                "Task output lines that were not protocol requests.",
                |l| Some(l.ignored_lines as f64),
            ),
            (
                "hstream_io_task_up",
                "gauge",
                "1 while the task process runs.",
                |l| Some(if l.pid.is_some() { 1.0 } else { 0.0 }),
            ),
            (
                "hstream_io_task_lag_seconds",
                "gauge",
                "How far behind the task was at its latest acknowledged change: acknowledgement time minus the change's origin time (source: commit time in the source database; sink: append time in the stream).",
                |l| l.lag_ms.map(|ms| ms as f64 / 1000.0),
            ),
            (
                "hstream_io_task_snapshot_done",
                "gauge",
                "1 once the source's initial snapshot is complete.",
                |l| {
                    l.snapshot
                        .as_ref()
                        .map(|s| if s["done"] == true { 1.0 } else { 0.0 })
                },
            ),
            (
                "hstream_io_task_snapshot_rows_done",
                "gauge",
                "Rows the initial snapshot has read.",
                |l| snapshot_value(l, "rowsDone"),
            ),
            (
                "hstream_io_task_snapshot_rows_estimate",
                "gauge",
                "Estimated rows of the initial snapshot (exact for finished tables).",
                |l| snapshot_value(l, "rowsTotalEstimate"),
            ),
            (
                "hstream_io_task_snapshot_tables_done",
                "gauge",
                "Tables whose snapshot is complete.",
                |l| snapshot_value(l, "tablesDone"),
            ),
            (
                "hstream_io_task_snapshot_tables",
                "gauge",
                "Tables in the initial snapshot.",
                |l| snapshot_value(l, "tables"),
            ),
            (
                "hstream_io_task_snapshot_rows_per_second",
                "gauge",
                "Average snapshot read rate since it started.",
                |l| snapshot_value(l, "rowsPerSecond"),
            ),
            (
                "hstream_io_task_snapshot_eta_seconds",
                "gauge",
                "Estimated seconds until the snapshot is complete.",
                |l| snapshot_value(l, "etaSeconds"),
            ),
            (
                "hstream_io_task_snapshot_progress_ratio",
                "gauge",
                "Snapshot rows done / estimated rows (0..1).",
                |l| {
                    let s = l.snapshot.as_ref()?;
                    let total = s["rowsTotalEstimate"].as_f64()?;
                    let done = s["rowsDone"].as_f64()?;
                    Some(if s["done"] == true || total <= 0.0 {
                        1.0
                    } else {
                        (done / total).min(1.0)
                    })
                },
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, get) in families {
            out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
            for (t, live) in &tasks {
                if let Some(v) = get(live) {
                    out += &format!("{name}{{{}}} {v}\n", labels(t));
                }
            }
        }
        out += "# HELP hstream_io_task_status 1 for the task's current status.\n# TYPE hstream_io_task_status gauge\n";
        for (t, _) in &tasks {
            out += &format!(
                "hstream_io_task_status{{{},status=\"{}\"}} 1\n",
                labels(t),
                t.status.as_str()
            );
        }
        Ok(out)
    }

    /// HStreamDB's connector stats (`GetStats` with `ConnectorStats`): per
    /// connector name, records and bytes delivered since this worker started,
    /// and `IsAlive` (1 iff the status is RUNNING, as HServer computes it).
    pub async fn connector_stats(&self) -> Result<Vec<ConnectorStat>> {
        let tasks = self.store().list_tasks().await?;
        Ok(tasks
            .iter()
            .filter(|t| t.status != TaskStatus::Deleted)
            .map(|t| {
                let live = lock(&self.live(&t.id)).clone();
                ConnectorStat {
                    name: t.name.clone(),
                    delivered_in_records: live.delivered_records,
                    delivered_in_bytes: live.delivered_bytes,
                    is_alive: t.status == TaskStatus::Running,
                }
            })
            .collect())
    }

    /// The `Connector` message for `task`, secrets redacted.
    fn view(&self, task: &TaskMeta) -> wire::Connector {
        let mut config = task.config.clone();
        let connector = self.entry(&task.kind, &task.target).ok();
        match connector {
            Some(c) => hstream_io_runtime::secret::redact_config(&c.spec, &mut config),
            // Without a spec, hide every value rather than risk showing a secret.
            None => config = json!("<hidden: unknown connector>"),
        }
        let live = lock(&self.live(&task.id)).clone();
        let process = match (live.pid, task.status) {
            (Some(_), _) => "running".to_string(),
            (None, TaskStatus::Running) => "restarting".to_string(),
            (None, TaskStatus::New) => "created".to_string(),
            (None, TaskStatus::Stopped) => "stopped".to_string(),
            (None, _) => "exited".to_string(),
        };
        let mut process = if live.restarts > 0 {
            format!("{process} (restarts: {})", live.restarts)
        } else {
            process
        };
        if let Some(s) = live.snapshot.as_ref().filter(|s| s["done"] != true) {
            let done = s["rowsDone"].as_u64().unwrap_or(0);
            let total = s["rowsTotalEstimate"].as_u64().unwrap_or(0);
            let eta = s["etaSeconds"]
                .as_f64()
                .map_or("unknown".to_string(), |e| format!("{e:.0} s"));
            process = format!(
                "{process}; snapshot: {done} of ~{total} rows, {}/{} tables, ETA {eta}",
                s["tablesDone"], s["tables"]
            );
        }
        if let Some(lag) = live.lag_ms {
            process = format!("{process}; lag: {:.1} s", lag as f64 / 1000.0);
        }
        if let Some(err) = &task.last_error {
            process = format!("{process}; last error: {err}");
        }
        let config_path = self.opts().task_dir(&task.id).join("config.json");
        wire::Connector {
            name: task.name.clone(),
            r#type: task.kind.clone(),
            target: task.target.clone(),
            creation_time: Some(prost_types::Timestamp {
                seconds: task.created_ms.div_euclid(1000),
                nanos: (task.created_ms.rem_euclid(1000) * 1_000_000) as i32,
            }),
            status: task.status.as_str().to_string(),
            config: config.to_string(),
            offsets: task.offsets.iter().filter_map(to_struct).collect(),
            task_id: task.id.clone(),
            node: self.opts().node.clone(),
            docker_status: process,
            image: connector
                .map(|c| command_line(self.opts(), &c.name, &config_path))
                .unwrap_or_default(),
        }
    }
}

/// A number from the task's latest snapshot progress.
fn snapshot_value(l: &Live, key: &str) -> Option<f64> {
    l.snapshot.as_ref().and_then(|s| s[key].as_f64())
}

fn labels(t: &TaskMeta) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "connector=\"{}\",type=\"{}\",target=\"{}\"",
        esc(&t.name),
        esc(&t.kind),
        esc(&t.target)
    )
}

/// A JSON object as a `google.protobuf.Struct`.
fn to_struct(v: &Value) -> Option<prost_types::Struct> {
    match to_proto(v).kind? {
        prost_types::value::Kind::StructValue(s) => Some(s),
        _ => None,
    }
}

fn to_proto(v: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(to_proto).collect(),
        }),
        Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), to_proto(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    //! The worker against a fake connector program (a shell script), so
    //! misbehaving tasks can be staged: garbage floods, crashes, ignored stops.

    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;

    const FAKE: &str = r#"#!/bin/sh
# $1 = connector, $2 = verb, $4 = config
case "$2" in
  check) echo '{"result":true}'; exit 0 ;;
  cleanup)
    if grep -q '"cleanup":"fail"' "$4"; then
      echo '{"result":false,"type":"CONNECTION","message":"cannot reach the server to drop the slot"}'; exit 3
    fi
    echo '{"result":true}'; exit 0 ;;
esac
mode=$(grep -o '"mode":"[a-z]*"' "$4" | cut -d'"' -f4)
case "$mode" in
  crash) echo "ERROR boom: cannot reach the target" >&2; exit 1 ;;
  flood)
    trap '' TERM
    head -c 3000000 /dev/zero | tr '\0' 'x'; echo
    i=0; while [ $i -lt 3000 ]; do echo "garbage $i {not json"; i=$((i+1)); done
    echo '{"name":"KvSet","id":"1","body":{"key":"k","value":"v1"}}'
    echo '{"name":"Report","id":"2","body":{"deliveredRecords":5,"deliveredBytes":50,"offsets":[{"n":5}],"lagMs":1500,"snapshot":{"done":false,"rowsDone":40,"rowsTotalEstimate":100,"tablesDone":0,"tables":1,"rowsPerSecond":10,"etaSeconds":6}}}'
    while true; do sleep 1; done ;;
esac
"#;

    async fn worker(dir: &Path, max_restarts: u32) -> Arc<Worker> {
        let program = dir.join("fake.sh");
        std::fs::write(&program, FAKE).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut opts = WorkerOptions::new(
            dir.join("data"),
            program,
            "hstream://127.0.0.1:1".into(),
            "127.0.0.1:1".into(),
        );
        opts.connectors = vec![ConnectorEntry {
            name: "fake".into(),
            kind: "SOURCE".into(),
            target: "fake".into(),
            spec: json!({"properties": {"mode": {"type": "string"},
                         "password": {"type": "string", "writeOnly": true}}}),
        }];
        opts.max_restarts = max_restarts;
        opts.restart_backoff = Duration::from_millis(10);
        opts.stop_grace = Duration::from_secs(1);
        Worker::open(opts).await.unwrap()
    }

    async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
        for _ in 0..300 {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_flooding_task_is_served_and_one_ignoring_stop_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(dir.path(), 3).await;
        let c = w
            .create(
                "f1",
                "source",
                "fake",
                r#"{"mode":"flood","password":"hunter2-secret"}"#,
            )
            .await
            .unwrap();
        assert!(
            c.config.contains("******") && !c.config.contains("hunter2"),
            "{}",
            c.config
        );
        let id = c.task_id.clone();
        // The request after 3 MB and 3000 lines of garbage is answered.
        eventually("KvSet after the garbage", async || {
            w.store()
                .kv_get(&id, "k")
                .await
                .unwrap()
                .filter(|v| v == "v1")
        })
        .await;
        let got = eventually("reported offsets", async || {
            Some(w.get("f1").await.unwrap()).filter(|c| !c.offsets.is_empty())
        })
        .await;
        assert_eq!(got.status, "RUNNING");
        let live = lock(&w.live(&id)).clone();
        assert!(live.ignored_lines >= 3000, "{live:?}");
        assert_eq!(live.delivered_records, 5);
        let pid = live.pid.expect("running");
        // Lag and snapshot progress: in GetConnector's process text and in /metrics.
        assert!(
            got.docker_status
                .contains("snapshot: 40 of ~100 rows, 0/1 tables, ETA 6 s; lag: 1.5 s"),
            "{}",
            got.docker_status
        );
        let metrics = w.metrics().await.unwrap();
        let labels = r#"{connector="f1",type="SOURCE",target="fake"}"#;
        for line in [
            format!("hstream_io_task_lag_seconds{labels} 1.5"),
            format!("hstream_io_task_snapshot_rows_done{labels} 40"),
            format!("hstream_io_task_snapshot_rows_estimate{labels} 100"),
            format!("hstream_io_task_snapshot_progress_ratio{labels} 0.4"),
            format!("hstream_io_task_snapshot_eta_seconds{labels} 6"),
            format!("hstream_io_task_snapshot_done{labels} 0"),
        ] {
            assert!(
                metrics.lines().any(|l| l == line),
                "{line} missing in\n{metrics}"
            );
        }
        let stats = w.connector_stats().await.unwrap();
        assert_eq!(
            stats,
            [ConnectorStat {
                name: "f1".into(),
                delivered_in_records: 5,
                delivered_in_bytes: 50,
                is_alive: true
            }]
        );

        // It ignores the stop message and SIGTERM: SIGKILL after the grace period.
        w.pause("f1").await.unwrap();
        assert_eq!(w.get("f1").await.unwrap().status, "STOPPED");
        assert!(
            !crate::process::is_task_process(pid, &id),
            "task process still alive"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_crashing_task_is_restarted_then_failed_with_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(dir.path(), 2).await;
        w.create("c1", "SOURCE", "fake", r#"{"mode":"crash"}"#)
            .await
            .unwrap();
        let failed = eventually("FAILED", async || {
            Some(w.get("c1").await.unwrap()).filter(|c| c.status == "FAILED")
        })
        .await;
        let process = &failed.docker_status;
        assert!(
            process.contains("crashed 3 times in a row (restart limit 2)"),
            "{process}"
        );
        assert!(
            process.contains("ERROR boom: cannot reach the target"),
            "{process}"
        );
        assert!(process.contains("restarts: 2"), "{process}");
        // FAILED survives a worker restart; RESUME runs the task again.
        drop(w);
        let w = worker(dir.path(), 1000).await;
        assert_eq!(w.get("c1").await.unwrap().status, "FAILED");
        w.resume("c1").await.unwrap();
        eventually("a new run after RESUME", async || {
            let c = w.get("c1").await.unwrap();
            (c.status == "RUNNING" && c.docker_status.contains("restarts: 1")).then_some(())
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_failed_cleanup_keeps_the_connector_stopped_with_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(dir.path(), 3).await;
        w.create(
            "d1",
            "SOURCE",
            "fake",
            r#"{"mode":"idle","cleanup":"fail"}"#,
        )
        .await
        .unwrap();
        let err = w.delete("d1").await.unwrap_err();
        assert!(matches!(err, WorkerError::CleanupFailed { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("CONNECTION: cannot reach the server to drop the slot"),
            "{err}"
        );
        // Still there, stopped, the error kept; a worker restart does not run it.
        let c = w.get("d1").await.unwrap();
        assert_eq!(c.status, "STOPPED");
        assert!(
            c.docker_status.contains("cleanup failed"),
            "{}",
            c.docker_status
        );
        drop(w);
        let w = worker(dir.path(), 3).await;
        w.recover().await.unwrap();
        assert_eq!(w.get("d1").await.unwrap().status, "STOPPED");
        // Fixed: the delete goes through.
        w.alter("d1", r#"{"cleanup":"ok"}"#).await.unwrap();
        w.delete("d1").await.unwrap();
        assert!(matches!(
            w.get("d1").await.unwrap_err(),
            WorkerError::NotFound(_)
        ));
    }
}
