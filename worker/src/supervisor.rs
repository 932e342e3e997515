//! One supervised task: starts the process, serves its channel (KvGet/KvSet
//! from the metastore, Reports into live stats and stored offsets, anything
//! else ignored), restarts it after a crash with exponential backoff, and
//! stops it gracefully (stop message → SIGTERM → SIGKILL) when asked.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::WorkerOptions;
use crate::meta::{MetaResult, MetaStore, TaskMeta, TaskStatus};
use crate::process::{self, Line, Tail};

/// A run this long resets the crash counter.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// Longest restart delay.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The metastore plus a lock that makes read-modify-write updates of task
/// metas atomic between the worker and the supervisors.
pub(crate) struct MetaCell {
    pub(crate) store: Arc<dyn MetaStore>,
    lock: tokio::sync::Mutex<()>,
}

impl MetaCell {
    pub(crate) fn new(store: Arc<dyn MetaStore>) -> Self {
        Self {
            store,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Applies `f` to the stored meta of `id` and stores it; `None` if absent.
    pub(crate) async fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut TaskMeta),
    ) -> MetaResult<Option<TaskMeta>> {
        let _guard = self.lock.lock().await;
        let Some(mut meta) = self.store.get_task(id).await? else {
            return Ok(None);
        };
        f(&mut meta);
        self.store.put_task(&meta).await?;
        Ok(Some(meta))
    }
}

/// What the worker shares with its supervisors.
pub(crate) struct Ctx {
    pub(crate) opts: WorkerOptions,
    pub(crate) meta: MetaCell,
}

/// A task's in-memory state (not persisted).
#[derive(Debug, Default, Clone)]
pub(crate) struct Live {
    /// The process id while a process runs.
    pub(crate) pid: Option<u32>,
    /// Restarts after crashes since the supervisor started.
    pub(crate) restarts: u32,
    /// Records and bytes reported since the worker started.
    pub(crate) delivered_records: u64,
    pub(crate) delivered_bytes: u64,
    /// Output lines that were not protocol requests.
    pub(crate) ignored_lines: u64,
    /// The offsets last stored (a report with the same offsets writes nothing).
    pub(crate) stored_offsets: Option<Vec<Value>>,
    /// The latest reported snapshot progress (a source's `snapshot` object).
    pub(crate) snapshot: Option<Value>,
    /// The latest reported lag in milliseconds (`lagMs`).
    pub(crate) lag_ms: Option<u64>,
}

/// A running supervisor.
pub(crate) struct Handle {
    stop: Option<oneshot::Sender<()>>,
    join: JoinHandle<()>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Handle {
    /// Starts supervising `task`, run as `<program> <connector> run`.
    pub(crate) fn start(
        ctx: Arc<Ctx>,
        task: TaskMeta,
        connector: String,
        live: Arc<Mutex<Live>>,
    ) -> Self {
        let (tx, rx) = oneshot::channel();
        let join = tokio::spawn(supervise(ctx, task, connector, live, rx));
        Self {
            stop: Some(tx),
            join,
        }
    }

    /// True once supervision ended (task COMPLETED or FAILED).
    pub(crate) fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Stops the process gracefully (if any) and ends supervision.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.join).await;
    }
}

enum Outcome {
    /// Stopped on request.
    Stopped,
    /// Exited (or could not start) on its own.
    Exited {
        code: Option<i32>,
        why: String,
        ran_for: Duration,
    },
}

async fn supervise(
    ctx: Arc<Ctx>,
    task: TaskMeta,
    connector: String,
    live: Arc<Mutex<Live>>,
    mut stop_rx: oneshot::Receiver<()>,
) {
    let dir = ctx.opts.task_dir(&task.id);
    let config_path = dir.join("config.json");
    let mut failures = 0u32;
    loop {
        let outcome = match write_config(&dir, &config_path, &ctx.opts.service_url, &task) {
            Ok(()) => {
                run_once(
                    &ctx,
                    &task,
                    &connector,
                    &config_path,
                    &dir,
                    &live,
                    &mut stop_rx,
                )
                .await
            }
            Err(why) => Outcome::Exited {
                code: None,
                why,
                ran_for: Duration::ZERO,
            },
        };
        let (code, why, ran_for) = match outcome {
            Outcome::Stopped => return,
            Outcome::Exited { code, why, ran_for } => (code, why, ran_for),
        };
        if code == Some(0) && task.kind == "SOURCE" {
            tracing::info!(task = %task.name, "source finished: COMPLETED");
            set_status(&ctx, &task.id, TaskStatus::Completed, None).await;
            return;
        }
        if code == Some(2) {
            tracing::error!(task = %task.name, %why, "task config is invalid: FAILED");
            let msg =
                format!("{why}; fix the config with AlterConnectorConfig, then RESUME CONNECTOR");
            set_status(&ctx, &task.id, TaskStatus::Failed, Some(msg)).await;
            return;
        }
        if ran_for >= HEALTHY_RUN {
            failures = 0;
        }
        failures += 1;
        if failures > ctx.opts.max_restarts {
            let msg = format!(
                "crashed {failures} times in a row (restart limit {}); last: {why}; RESUME CONNECTOR restarts it",
                ctx.opts.max_restarts
            );
            tracing::error!(task = %task.name, %msg, "giving up: FAILED");
            set_status(&ctx, &task.id, TaskStatus::Failed, Some(msg)).await;
            return;
        }
        let delay = backoff(ctx.opts.restart_backoff, failures);
        tracing::warn!(task = %task.name, %why, ?delay, attempt = failures, "task crashed; restarting");
        lock(&live).restarts += 1;
        let _ = ctx
            .meta
            .update(&task.id, |m| m.last_error = Some(why.clone()))
            .await;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut stop_rx => return,
        }
    }
}

/// `base * 2^(attempt-1)`, at most [`MAX_BACKOFF`].
fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

async fn set_status(ctx: &Ctx, id: &str, status: TaskStatus, error: Option<String>) {
    let updated = ctx
        .meta
        .update(id, |m| {
            if m.status != TaskStatus::Deleted {
                m.status = status;
            }
            if error.is_some() {
                m.last_error = error;
            }
        })
        .await;
    if let Err(e) = updated {
        tracing::error!(task = id, error = %e, "cannot store the task status");
    }
}

/// Writes config.json as HServer does (§1.5), readable by the owner only.
pub(crate) fn write_config(
    dir: &Path,
    path: &Path,
    service_url: &str,
    task: &TaskMeta,
) -> Result<(), String> {
    write_config_value(dir, path, service_url, &task.config, &task.id)
}

/// Writes a task file for `config` (a connector config object) to `path`.
pub(crate) fn write_config_value(
    dir: &Path,
    path: &Path,
    service_url: &str,
    config: &Value,
    task_id: &str,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let body =
        json!({"hstream": {"serviceUrl": service_url}, "connector": config, "task": task_id});
    let tmp = path.with_extension("json.tmp");
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, body.to_string()))
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn pid_file(dir: &Path) -> PathBuf {
    dir.join("pid")
}

async fn run_once(
    ctx: &Arc<Ctx>,
    task: &TaskMeta,
    connector: &str,
    config_path: &Path,
    dir: &Path,
    live: &Arc<Mutex<Live>>,
    stop_rx: &mut oneshot::Receiver<()>,
) -> Outcome {
    let mut cmd = process::command(&ctx.opts, connector, "run", config_path, dir);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Exited {
                code: None,
                why: format!(
                    "cannot start {} {connector} run: {e}",
                    ctx.opts.program.display()
                ),
                ran_for: Duration::ZERO,
            };
        }
    };
    let pid = child.id();
    if let Some(pid) = pid {
        process::apply_limits(pid, &ctx.opts.task_limits);
        let _ = std::fs::write(pid_file(dir), pid.to_string());
    }
    lock(live).pid = pid;
    set_status(ctx, &task.id, TaskStatus::Running, None).await;
    tracing::info!(task = %task.name, pid, "task process started");

    let stdin = Arc::new(tokio::sync::Mutex::new(child.stdin.take()));
    let tail = Arc::new(Mutex::new(Tail::default()));
    let stderr_task = child
        .stderr
        .take()
        .map(|e| tokio::spawn(process::collect_stderr(e, tail.clone())));
    let channel_task = child.stdout.take().map(|out| {
        tokio::spawn(serve_channel(
            ctx.clone(),
            task.id.clone(),
            out,
            stdin.clone(),
            live.clone(),
        ))
    });

    let (status, stopped) = tokio::select! {
        s = child.wait() => (s, false),
        _ = &mut *stop_rx => {
            tracing::info!(task = %task.name, "stopping the task");
            send_line(&stdin, &json!({"name": "stop"})).await;
            (process::wait_or_kill(&mut child, ctx.opts.stop_grace).await, true)
        }
    };
    // Leftovers of the group (children of the task) go with it.
    if let Some(pid) = pid {
        process::signal_group(pid, rustix::process::Signal::KILL);
    }
    for t in [channel_task, stderr_task].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    let _ = std::fs::remove_file(pid_file(dir));
    lock(live).pid = None;
    if stopped {
        return Outcome::Stopped;
    }
    let (code, desc) = match &status {
        Ok(s) => (s.code(), s.to_string()),
        Err(e) => (None, format!("cannot wait for the process: {e}")),
    };
    let why = match lock(&tail).last_error() {
        Some(line) => format!("{desc}; stderr: {line}"),
        None => desc,
    };
    Outcome::Exited {
        code,
        why,
        ran_for: started.elapsed(),
    }
}

async fn send_line(stdin: &tokio::sync::Mutex<Option<ChildStdin>>, value: &Value) {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    if let Some(w) = stdin.lock().await.as_mut() {
        let _ = async {
            w.write_all(&line).await?;
            w.flush().await
        }
        .await;
    }
}

/// Answers the task's requests until its stdout closes.
async fn serve_channel(
    ctx: Arc<Ctx>,
    task_id: String,
    stdout: ChildStdout,
    stdin: Arc<tokio::sync::Mutex<Option<ChildStdin>>>,
    live: Arc<Mutex<Live>>,
) {
    let mut reader = BufReader::new(stdout);
    loop {
        let line = match process::read_line(&mut reader, process::MAX_LINE).await {
            Ok(Some(Line::Text(l))) => l,
            Ok(Some(Line::TooLong)) => {
                lock(&live).ignored_lines += 1;
                continue;
            }
            Ok(None) | Err(_) => return,
        };
        let request = serde_json::from_slice::<Value>(&line).ok().and_then(|v| {
            let name = v.get("name")?.as_str()?.to_string();
            let id = v.get("id")?.as_str()?.to_string();
            Some((name, id, v.get("body").cloned().unwrap_or(Value::Null)))
        });
        let Some((name, id, body)) = request else {
            lock(&live).ignored_lines += 1;
            continue;
        };
        let reply = match name.as_str() {
            "KvGet" => kv_get(&ctx, &task_id, &body).await,
            "KvSet" => kv_set(&ctx, &task_id, &body).await,
            "Report" => Some(report(&ctx, &task_id, &body, &live).await),
            other => {
                tracing::warn!(task = %task_id, request = other, "unknown request from task; ignored");
                lock(&live).ignored_lines += 1;
                None
            }
        };
        if let Some(body) = reply {
            send_line(
                &stdin,
                &json!({"name": "ConnectorResponse", "id": id, "body": body}),
            )
            .await;
        }
    }
}

/// The stored value or null. A metastore failure is not answered, so the task
/// fails (and is restarted) instead of starting over from scratch.
async fn kv_get(ctx: &Ctx, task_id: &str, body: &Value) -> Option<Value> {
    let Some(key) = body.get("key").and_then(Value::as_str) else {
        return Some(Value::Null);
    };
    match ctx.meta.store.kv_get(task_id, key).await {
        Ok(v) => Some(v.map_or(Value::Null, Value::String)),
        Err(e) => {
            tracing::error!(task = task_id, error = %e, "KvGet failed; not answered");
            None
        }
    }
}

/// Stores the value; a failure is not answered (the task must not believe it stored).
async fn kv_set(ctx: &Ctx, task_id: &str, body: &Value) -> Option<Value> {
    let (Some(key), Some(value)) = (
        body.get("key").and_then(Value::as_str),
        body.get("value").and_then(Value::as_str),
    ) else {
        tracing::warn!(
            task = task_id,
            "KvSet without a string key and value; not stored"
        );
        return None;
    };
    match ctx.meta.store.kv_set(task_id, key, value).await {
        Ok(()) => Some(Value::Null),
        Err(e) => {
            tracing::error!(task = task_id, error = %e, "KvSet failed; not answered");
            None
        }
    }
}

async fn report(ctx: &Ctx, task_id: &str, body: &Value, live: &Mutex<Live>) -> Value {
    {
        let mut l = lock(live);
        l.delivered_records += body["deliveredRecords"].as_u64().unwrap_or(0);
        l.delivered_bytes += body["deliveredBytes"].as_u64().unwrap_or(0);
        if let Some(snapshot) = body.get("snapshot").filter(|s| s.is_object()) {
            l.snapshot = Some(snapshot.clone());
        }
        if let Some(lag) = body.get("lagMs").and_then(Value::as_u64) {
            l.lag_ms = Some(lag);
        }
    }
    if let Some(offsets) = body.get("offsets").and_then(Value::as_array)
        && lock(live).stored_offsets.as_ref() != Some(offsets)
    {
        let new = offsets.clone();
        match ctx.meta.update(task_id, |m| m.offsets = new).await {
            Ok(_) => lock(live).stored_offsets = Some(offsets.clone()),
            Err(e) => {
                tracing::warn!(task = task_id, error = %e, "cannot store the reported offsets")
            }
        }
    }
    Value::Null
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Duration::from_secs(1);
        assert_eq!(backoff(b, 1), Duration::from_secs(1));
        assert_eq!(backoff(b, 3), Duration::from_secs(4));
        assert_eq!(backoff(b, 30), MAX_BACKOFF);
    }
}
