//! Running a connector's `check` verb and reading its `CheckResult`
//! (reference §1.6), with the process group killed on timeout.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::WorkerOptions;
use crate::errors::WorkerError;
use crate::process::{command, signal_group};

/// Runs `<program> <connector> check --config <config>` with output to
/// `<dir>/check.log`; `Ok` when it printed a CheckResult with `result: true`.
pub(crate) async fn run_check(
    opts: &WorkerOptions,
    connector: &str,
    config: &Path,
    dir: &Path,
    timeout: Duration,
) -> Result<(), WorkerError> {
    let log_path = dir.join("check.log");
    let open_log = || {
        std::fs::File::create(&log_path)
            .map_err(|e| WorkerError::Process(format!("cannot create {}: {e}", log_path.display())))
    };
    let log = open_log()?;
    let log2 = log
        .try_clone()
        .map_err(|e| WorkerError::Process(format!("cannot share {}: {e}", log_path.display())))?;
    let mut cmd = command(opts, connector, "check", config, dir);
    cmd.stdout(Stdio::from(log)).stderr(Stdio::from(log2));
    let mut child = cmd.spawn().map_err(|e| {
        WorkerError::Process(format!(
            "cannot start {} {connector} check: {e}",
            opts.program.display()
        ))
    })?;
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status.map_err(|e| WorkerError::Process(format!("check process: {e}")))?,
        Err(_) => {
            if let Some(pid) = child.id() {
                signal_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.wait().await;
            return Err(WorkerError::Process(format!(
                "check process timeout, {} s: the connector could not finish its checks (is the target reachable?); see {}",
                timeout.as_secs(),
                log_path.display()
            )));
        }
    };
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    match first_check_result(&text) {
        Some(result) if result["result"] == Value::Bool(true) => Ok(()),
        Some(result) => Err(WorkerError::CheckFailed(result)),
        None if !status.success() => Err(WorkerError::Process(format!(
            "check process exited unexpectedly ({status}): {}",
            last_lines(&text, 3)
        ))),
        None => Err(WorkerError::Process(format!(
            "check process didn't return a CheckResult line; see {}",
            log_path.display()
        ))),
    }
}

/// Runs `<program> <connector> cleanup --config <config>` with output to
/// `<dir>/cleanup.log`; `Err(message)` unless it printed `result: true`.
pub(crate) async fn run_cleanup(
    opts: &WorkerOptions,
    connector: &str,
    config: &Path,
    dir: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let log_path = dir.join("cleanup.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("cannot share {}: {e}", log_path.display()))?;
    let mut cmd = command(opts, connector, "cleanup", config, dir);
    cmd.stdout(Stdio::from(log)).stderr(Stdio::from(log2));
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "cannot start {} {connector} cleanup: {e}",
            opts.program.display()
        )
    })?;
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status.map_err(|e| format!("cleanup process: {e}"))?,
        Err(_) => {
            if let Some(pid) = child.id() {
                signal_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.wait().await;
            return Err(format!(
                "cleanup did not finish within {} s (is the target reachable?); see {}",
                timeout.as_secs(),
                log_path.display()
            ));
        }
    };
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    match first_check_result(&text) {
        Some(result) if result["result"] == Value::Bool(true) => Ok(()),
        Some(result) => Err(check_message_of(&result)),
        None => Err(format!(
            "cleanup process exited ({status}) without a result line: {}",
            last_lines(&text, 3)
        )),
    }
}

fn check_message_of(result: &Value) -> String {
    let message = result["message"].as_str().unwrap_or("no message");
    match result["type"].as_str() {
        Some(kind) => format!("{kind}: {message}"),
        None => message.to_string(),
    }
}

/// The first line that decodes as an object with a boolean `result`.
fn first_check_result(text: &str) -> Option<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|v| v.get("result").is_some_and(Value::is_boolean))
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_check_result_among_log_lines() {
        let text = "INFO starting\n{\"foo\":1}\n{\"result\":false,\"type\":\"CONFIG\",\"message\":\"bad\"}\n{\"result\":true}\n";
        let r = first_check_result(text).unwrap();
        assert_eq!(r["message"], "bad");
        assert!(first_check_result("nothing here").is_none());
    }
}
