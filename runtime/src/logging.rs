//! Logging: stderr always, plus `app.log` in task mode. Never stdout.
//!
//! `app.log` goes to `$CONNECTOR_LOG_PATH`, else `/data` when it exists (the
//! folder HServer mounts), else the config file's folder. The level comes from
//! `HSTREAM_IO_LOG` (tracing's env-filter syntax), default `info`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// Environment variable naming the folder of `app.log`.
pub const LOG_PATH_ENV: &str = "CONNECTOR_LOG_PATH";
/// Environment variable with the log filter.
pub const LOG_LEVEL_ENV: &str = "HSTREAM_IO_LOG";

fn filter() -> EnvFilter {
    EnvFilter::try_from_env(LOG_LEVEL_ENV).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Logs to stderr only (spec, check, tools).
pub fn init_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Where `app.log` goes for a task whose config file is `config_path`.
pub fn app_log_dir(config_path: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os(LOG_PATH_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if Path::new("/data").is_dir() {
        return PathBuf::from("/data");
    }
    config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Logs to stderr and to `<dir>/app.log` (appending). Falls back to stderr only,
/// with a warning, when the file cannot be opened.
pub fn init_task(dir: &Path) -> Option<PathBuf> {
    let path = dir.join("app.log");
    let file = std::fs::create_dir_all(dir).and_then(|_| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
    });
    match file {
        Ok(file) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_ansi(false)
                .with_writer(std::io::stderr.and(Mutex::new(file)))
                .try_init();
            Some(path)
        }
        Err(error) => {
            init_stderr();
            tracing::warn!(path = %path.display(), %error, "cannot open app.log; logging to stderr only");
            None
        }
    }
}
