//! Starting and stopping one task process: the command line, its isolation
//! (own process group, scrubbed environment), signals to the whole group, and
//! bounded line reading so a flooding task cannot exhaust the worker's memory.

use std::collections::VecDeque;
use std::io;
use std::path::Path;

use hstream_io_runtime::cli::connector_program;

use crate::WorkerOptions;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::process::{Child, Command};

/// Environment variables a task inherits from the worker; everything else
/// (credentials, tokens, the worker's own settings) is dropped.
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
];

/// Longest protocol line accepted from a task; longer lines are discarded.
pub(crate) const MAX_LINE: usize = 16 * 1024 * 1024;

/// `<program> <connector> <verb> --config <config>` (or the connector's own program, see
/// [`connector_program`]), isolated: own process group, the task directory as
/// `CONNECTOR_LOG_PATH`, no inherited secrets.
pub(crate) fn command(
    opts: &WorkerOptions,
    connector: &str,
    verb: &str,
    config: &Path,
    dir: &Path,
) -> Command {
    let (program, lead) = program_of(opts, connector);
    let mut cmd = Command::new(program);
    cmd.args(lead).arg(verb).arg("--config").arg(config);
    cmd.env_clear();
    for key in INHERITED_ENV {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.env("CONNECTOR_LOG_PATH", dir)
        .current_dir(dir)
        .process_group(0)
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The program (and leading arguments) that runs `connector`'s verbs under `opts`.
fn program_of(opts: &WorkerOptions, connector: &str) -> (std::path::PathBuf, Vec<String>) {
    if opts.connector_programs {
        connector_program(&opts.program, connector)
    } else {
        (opts.program.clone(), vec![connector.to_string()])
    }
}

/// The command line shown as `Connector.image`.
pub(crate) fn command_line(opts: &WorkerOptions, connector: &str, config: &Path) -> String {
    let (program, lead) = program_of(opts, connector);
    let mut line = program.display().to_string();
    for arg in lead {
        line.push(' ');
        line.push_str(&arg);
    }
    format!("{line} run --config {}", config.display())
}

/// Sends `signal` to the process group led by `pid` (ignores a group that is gone).
pub(crate) fn signal_group(pid: u32, signal: rustix::process::Signal) {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    if let Err(e) = rustix::process::kill_process_group(pid, signal)
        && e != rustix::io::Errno::SRCH
    {
        tracing::warn!(pid = pid.as_raw_nonzero().get(), error = %e, "cannot signal a task's process group");
    }
}

/// Applies `limits` to the running process `pid` (`prlimit`); failures are logged.
pub(crate) fn apply_limits(pid: u32, limits: &crate::TaskLimits) {
    use rustix::process::{Resource, Rlimit, prlimit};
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    for (resource, value, what) in [
        (Resource::As, limits.address_space_bytes, "address space"),
        (Resource::Nofile, limits.open_files, "open files"),
    ] {
        let Some(v) = value else { continue };
        let limit = Rlimit {
            current: Some(v),
            maximum: Some(v),
        };
        if let Err(e) = prlimit(Some(pid), resource, limit) {
            tracing::warn!(pid = pid.as_raw_nonzero().get(), error = %e, "cannot limit the task's {what} to {v}");
        }
    }
}

/// Waits for `child` to exit, escalating: (the caller has already asked it to
/// stop) after `grace` SIGTERM to its group, after `grace / 5` (≥ 1 s) SIGKILL.
pub(crate) async fn wait_or_kill(
    child: &mut Child,
    grace: Duration,
) -> io::Result<std::process::ExitStatus> {
    if let Ok(r) = tokio::time::timeout(grace, child.wait()).await {
        return r;
    }
    if let Some(pid) = child.id() {
        tracing::warn!(
            pid,
            "task did not stop within the grace period; sending SIGTERM"
        );
        signal_group(pid, rustix::process::Signal::TERM);
    }
    let term_wait = (grace / 5).max(Duration::from_secs(1));
    if let Ok(r) = tokio::time::timeout(term_wait, child.wait()).await {
        return r;
    }
    if let Some(pid) = child.id() {
        tracing::warn!(pid, "task ignored SIGTERM; sending SIGKILL");
        signal_group(pid, rustix::process::Signal::KILL);
    }
    child.wait().await
}

/// One line from a task's output.
pub(crate) enum Line {
    /// A complete line (without the newline).
    Text(Vec<u8>),
    /// A line longer than the limit (its content was discarded).
    TooLong,
}

/// Reads one `\n`-terminated line of at most `cap` bytes; `None` at EOF.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    cap: usize,
) -> io::Result<Option<Line>> {
    let mut buf = Vec::new();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => None,
                (true, true) => Some(Line::TooLong),
                (true, false) => Some(Line::Text(buf)),
            });
        }
        any = true;
        let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long {
            if buf.len() + chunk.len() > cap {
                too_long = true;
                buf = Vec::new();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        r.consume(used);
        if done {
            return Ok(Some(if too_long {
                Line::TooLong
            } else {
                Line::Text(buf)
            }));
        }
    }
}

/// The last lines a task wrote on stderr (ANSI colours removed), to explain a crash.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    const KEEP: usize = 50;

    /// Remembers a line.
    pub(crate) fn push(&mut self, raw: &[u8]) {
        let line = strip_ansi(&String::from_utf8_lossy(raw));
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        if self.lines.len() == Self::KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(line.chars().take(2000).collect());
    }

    /// The most telling line: the last ERROR line, else the last line.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.lines
            .iter()
            .rev()
            .find(|l| l.contains("ERROR"))
            .or_else(|| self.lines.back())
            .cloned()
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Reads `child`'s stderr into `tail` until EOF.
pub(crate) async fn collect_stderr(
    stderr: tokio::process::ChildStderr,
    tail: std::sync::Arc<std::sync::Mutex<Tail>>,
) {
    let mut r = tokio::io::BufReader::new(stderr);
    while let Ok(Some(line)) = read_line(&mut r, 64 * 1024).await {
        if let Line::Text(l) = line {
            tail.lock().unwrap_or_else(|p| p.into_inner()).push(&l);
        }
    }
}

/// True when `pid` is alive and its command line mentions `needle` (a task id):
/// a task process left over by a worker that was killed.
pub(crate) fn is_task_process(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(needle))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_dropped_and_reading_goes_on() {
        let data = format!("short\n{}\nnext\nlast", "x".repeat(100));
        let mut r = tokio::io::BufReader::with_capacity(7, data.as_bytes());
        let mut got = Vec::new();
        while let Some(l) = read_line(&mut r, 10).await.unwrap() {
            got.push(match l {
                Line::Text(t) => String::from_utf8(t).unwrap(),
                Line::TooLong => "<too long>".into(),
            });
        }
        assert_eq!(got, ["short", "<too long>", "next", "last"]);
    }

    #[test]
    fn tail_prefers_the_last_error_line() {
        let mut t = Tail::default();
        t.push(b"\x1b[31mERROR\x1b[0m cannot connect to db");
        t.push(b"INFO exiting");
        assert_eq!(
            t.last_error().as_deref(),
            Some("ERROR cannot connect to db")
        );
    }

    #[test]
    fn tasks_run_the_connectors_own_program_unless_told_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("hstream-io");
        std::fs::write(&main, b"").unwrap();
        std::fs::write(dir.path().join("hstream-io-sink-mysql"), b"").unwrap();
        let mut opts = WorkerOptions::new(
            dir.path().into(),
            main.clone(),
            "hstream://h:1".into(),
            "n".into(),
        );
        let config = Path::new("/t/config.json");
        assert_eq!(
            command_line(&opts, "sink-mysql", config),
            format!(
                "{} run --config /t/config.json",
                dir.path().join("hstream-io-sink-mysql").display()
            )
        );
        assert_eq!(
            command_line(&opts, "sink-postgresql", config),
            format!(
                "{} sink-postgresql run --config /t/config.json",
                main.display()
            )
        );
        opts.connector_programs = false;
        assert_eq!(
            command_line(&opts, "sink-mysql", config),
            format!("{} sink-mysql run --config /t/config.json", main.display())
        );
    }
}
