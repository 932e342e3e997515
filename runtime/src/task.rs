//! The three verbs HServer runs — `spec`, `check --config`, `run --config` —
//! plus `cleanup --config` (only our worker runs it, when a connector is
//! deleted), and everything around a task's life: config loading, logging,
//! the channel, KV, reports, signals and the shutdown deadline.
//!
//! Exit codes: 0 clean stop, 1 runtime failure, 2 invalid config,
//! 3 environment failure (connection, permission, setup), 128+signum when a
//! second signal forces the exit.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::channel::Channel;
use crate::check::CheckResult;
use crate::config::TaskFile;
use crate::connector::{Connector, SinkConnector, Source};
use crate::error::{Error, ErrorKind, Result};
use crate::kv::{ChannelKv, FileKv, KvStore, MemoryKv};
use crate::report::{Metrics, REPORT_INTERVAL, report_loop, send_report};
use crate::secret::Scrubber;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::validate::{ConfigIssue, SchemaValidator};

/// HServer's grace period between the stop command and a kill.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// `check` must answer before HServer's 15 s timeout.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(12);
/// How long `cleanup` may take before it gives up (exit 3).
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(50);

/// One verb.
#[derive(Debug, Clone)]
pub enum TaskCommand {
    /// Print the spec as one JSON line.
    Spec,
    /// Validate the config and the environment; print one CheckResult line.
    Check {
        /// The task file.
        config: PathBuf,
    },
    /// Drop what a deleted task owns outside HStream (its connector's
    /// [`Connector::cleanup`]); print one line `{"result":true}` or
    /// `{"result":false,"type":…,"message":…}`. HServer never runs it.
    Cleanup {
        /// The task file of the deleted task.
        config: PathBuf,
    },
    /// Run the task until it is done or stopped.
    Run {
        /// The task file.
        config: PathBuf,
        /// How to run it.
        options: RunOptions,
    },
}

/// Where a running task keeps its KV state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvBackend {
    /// HServer's metastore through the stdin/stdout channel (what HServer expects).
    Channel,
    /// A JSON file (standalone runs).
    File(PathBuf),
    /// Memory only: nothing survives the process (tests, dry runs).
    Memory,
}

/// Options of `run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// KV backend.
    pub kv: KvBackend,
    /// How long a graceful stop may take before the task gives up (exit 1).
    pub shutdown_timeout: Duration,
    /// Report period.
    pub report_interval: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            kv: KvBackend::Channel,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            report_interval: REPORT_INTERVAL,
        }
    }
}

/// What the runtime hands a driver for one run.
pub struct TaskEnv {
    /// The parsed task file.
    pub file: TaskFile,
    /// Observes the shutdown.
    pub shutdown: Shutdown,
    /// Pulls the shutdown (used on fatal errors).
    pub trigger: ShutdownTrigger,
    /// The task's KV store.
    pub kv: Arc<dyn KvStore>,
    /// Counters and offsets for reports.
    pub metrics: Arc<Metrics>,
}

/// Why a config could not be loaded.
pub enum LoadError {
    /// The file itself (unreadable, not JSON/YAML, wrong shape).
    File(Error),
    /// The connector config broke its schema or rules: every issue.
    Invalid(Vec<ConfigIssue>),
}

/// Reads the task file at `path` and validates its connector config for `C`.
pub fn load<C: Connector>(path: &std::path::Path) -> Result<(TaskFile, C::Config), LoadError> {
    let file = TaskFile::read(path).map_err(LoadError::File)?;
    let config = validate_config::<C>(&file.connector).map_err(LoadError::Invalid)?;
    Ok((file, config))
}

/// Validates a connector config object: schema, then serde, then cross-field rules.
pub fn validate_config<C: Connector>(
    value: &serde_json::Value,
) -> Result<C::Config, Vec<ConfigIssue>> {
    let spec = crate::spec::spec::<C>();
    let issues = SchemaValidator::new(spec.clone()).validate(value);
    if !issues.is_empty() {
        return Err(issues);
    }
    // serde quotes offending values in its messages: scrub secrets out.
    let config: C::Config = serde_json::from_value(value.clone()).map_err(|e| {
        vec![ConfigIssue::new(
            "",
            Scrubber::new(&spec, value).scrub(&e.to_string()),
        )]
    })?;
    let issues = C::validate(&config);
    if issues.is_empty() {
        Ok(config)
    } else {
        Err(issues)
    }
}

/// Entry point of a source connector's verbs.
pub fn source_main<C: Source>(command: TaskCommand) -> i32 {
    main_with::<C, _, _>(command, |config, env| {
        crate::source::drive::<C>(config, env)
    })
}

/// Entry point of a sink connector's verbs.
pub fn sink_main<C: SinkConnector>(command: TaskCommand) -> i32 {
    main_with::<C, _, _>(command, |config, env| crate::sink::drive::<C>(config, env))
}

fn main_with<C, F, Fut>(command: TaskCommand, driver: F) -> i32
where
    C: Connector,
    F: FnOnce(C::Config, TaskEnv) -> Fut,
    Fut: Future<Output = Result<()>> + Send,
{
    match command {
        TaskCommand::Spec => {
            println!("{}", crate::spec::spec::<C>());
            0
        }
        TaskCommand::Check { config } => {
            crate::logging::init_stderr();
            let result = check::<C>(&config);
            println!(
                "{}",
                serde_json::to_string(&result).expect("a CheckResult always encodes")
            );
            0
        }
        TaskCommand::Cleanup { config } => {
            crate::logging::init_stderr();
            let (result, code) = cleanup::<C>(&config);
            println!("{result}");
            code
        }
        TaskCommand::Run { config, options } => run::<C, F, Fut>(&config, options, driver),
    }
}

/// The `cleanup` verb: the result line and the exit code (0 when done, else
/// the error's exit code: 2 invalid config, 3 environment, 1 otherwise).
pub fn cleanup<C: Connector>(path: &std::path::Path) -> (serde_json::Value, i32) {
    // TLS of any library must find one provider (also when embedded in a test or another program).
    crate::install_crypto_provider();
    let failed = |kind: &str, message: String, code: i32| {
        tracing::error!(%message, "cleanup failed");
        (
            serde_json::json!({"result": false, "type": kind, "message": message}),
            code,
        )
    };
    let (file, config) = match load::<C>(path) {
        Ok(loaded) => loaded,
        Err(LoadError::File(error)) => return failed("CONFIG", error.to_string(), 2),
        Err(LoadError::Invalid(issues)) => {
            let list: Vec<String> = issues.iter().map(ToString::to_string).collect();
            return failed("CONFIG", format!("invalid config: {}", list.join("; ")), 2);
        }
    };
    let scrubber = Scrubber::new(&crate::spec::spec::<C>(), &file.connector);
    let task_id = file.task_id.clone();
    let outcome = runtime().block_on(async {
        tokio::time::timeout(CLEANUP_TIMEOUT, C::cleanup(&config, task_id.as_deref())).await
    });
    match outcome {
        Ok(Ok(())) => {
            tracing::info!(connector = C::NAME, "cleanup done");
            (serde_json::json!({"result": true}), 0)
        }
        Ok(Err(error)) => failed(
            error.kind().check_type(),
            scrubber.scrub(&error.to_string()),
            error.kind().exit_code(),
        ),
        Err(_) => failed(
            "CONNECTION",
            format!(
                "cleanup did not finish within {} s; a server is probably unreachable",
                CLEANUP_TIMEOUT.as_secs()
            ),
            3,
        ),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime")
}

/// The `check` verb: never fails, always a result.
pub fn check<C: Connector>(path: &std::path::Path) -> CheckResult {
    // TLS of any library must find one provider (also when embedded in a test or another program).
    crate::install_crypto_provider();
    let result = check_unscrubbed::<C>(path);
    let Ok(file) = TaskFile::read(path) else {
        return result;
    };
    let scrubber = Scrubber::new(&crate::spec::spec::<C>(), &file.connector);
    CheckResult {
        message: result.message.map(|m| scrubber.scrub(&m)),
        detail: result.detail.map(|d| scrubber.scrub_value(d)),
        ..result
    }
}

fn check_unscrubbed<C: Connector>(path: &std::path::Path) -> CheckResult {
    match load::<C>(path) {
        Err(LoadError::File(error)) => {
            let mut result = CheckResult::invalid_config(&[ConfigIssue::new("", error.to_string())]);
            result.message = Some(error.to_string());
            result
        }
        Err(LoadError::Invalid(issues)) => CheckResult::invalid_config(&issues),
        Ok((_, config)) => runtime().block_on(async {
            match tokio::time::timeout(CHECK_TIMEOUT, C::check(&config)).await {
                Ok(Ok(())) => CheckResult::ok(),
                Ok(Err(failure)) => CheckResult::failed(&failure),
                Err(_) => CheckResult {
                    result: false,
                    kind: Some("CONNECTION".into()),
                    message: Some(format!(
                        "checks did not finish within {} s; a server is probably unreachable (firewall or wrong host).",
                        CHECK_TIMEOUT.as_secs()
                    )),
                    detail: None,
                },
            }
        }),
    }
}

fn run<C, F, Fut>(path: &std::path::Path, options: RunOptions, driver: F) -> i32
where
    C: Connector,
    F: FnOnce(C::Config, TaskEnv) -> Fut,
    Fut: Future<Output = Result<()>> + Send,
{
    let log_dir = crate::logging::app_log_dir(path);
    let app_log = crate::logging::init_task(&log_dir);
    tracing::info!(connector = C::NAME, config = %path.display(), app_log = ?app_log, "starting task");
    let (file, config) = match load::<C>(path) {
        Ok(loaded) => loaded,
        Err(LoadError::File(error)) => {
            tracing::error!(%error, "cannot load the config; exiting with code 2");
            return 2;
        }
        Err(LoadError::Invalid(issues)) => {
            for issue in &issues {
                tracing::error!(pointer = %issue.pointer, "invalid config: {issue}");
            }
            tracing::error!(
                count = issues.len(),
                "invalid config; run `{} check --config {}` for the full report; exiting with code 2",
                C::NAME,
                path.display()
            );
            return 2;
        }
    };
    let scrubber = Scrubber::new(&crate::spec::spec::<C>(), &file.connector);
    let rt = runtime();
    let code = rt.block_on(async move {
        let (trigger, shutdown) = shutdown::channel();
        if let Err(error) = shutdown::install_signal_handlers(trigger.clone()) {
            tracing::warn!(%error, "cannot install signal handlers");
        }
        let channel = (options.kv == KvBackend::Channel).then(|| Channel::stdio(trigger.clone()));
        let kv: Arc<dyn KvStore> = match &options.kv {
            KvBackend::Channel => Arc::new(ChannelKv::new(channel.clone().expect("channel exists"))),
            KvBackend::File(path) => match FileKv::open(path) {
                Ok(kv) => Arc::new(kv),
                Err(error) => {
                    tracing::error!(%error, "cannot open the KV file");
                    return error.kind().exit_code();
                }
            },
            KvBackend::Memory => Arc::new(MemoryKv::default()),
        };
        let metrics = Arc::new(Metrics::default());
        let reporter = tokio::spawn(report_loop(
            channel.clone(),
            metrics.clone(),
            options.report_interval,
            shutdown.clone(),
        ));
        let env = TaskEnv {
            file,
            shutdown: shutdown.clone(),
            trigger,
            kv,
            metrics: metrics.clone(),
        };
        let outcome = run_until_stopped(driver(config, env), &shutdown, options.shutdown_timeout).await;
        reporter.abort();
        send_report(channel.as_ref(), &metrics).await;
        match outcome {
            Ok(()) => {
                tracing::info!(reason = ?shutdown.reason(), delivered = metrics.total_records(), "task stopped cleanly");
                0
            }
            Err(error) => {
                let message = scrubber.scrub(&error.to_string());
                tracing::error!(error = %message, kind = error.kind().as_str(), "task failed");
                error.kind().exit_code()
            }
        }
    });
    // Do not wait for blocked stdin reads or other detached work.
    rt.shutdown_timeout(Duration::from_millis(100));
    code
}

/// Runs `task`; once the shutdown starts it gets `deadline` to finish.
async fn run_until_stopped(
    task: impl Future<Output = Result<()>>,
    shutdown: &Shutdown,
    deadline: Duration,
) -> Result<()> {
    let mut task = std::pin::pin!(task);
    tokio::select! {
        result = &mut task => result,
        _ = shutdown.wait() => match tokio::time::timeout(deadline, &mut task).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Internal,
                format!("the task did not stop within {} s", deadline.as_secs()),
            ).with_hint("Offsets stored before this point are kept; raise --shutdown-timeout if the target is slow.")),
        },
    }
}
