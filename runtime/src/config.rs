//! The task file HServer writes (`config.json`), also accepted as YAML:
//!
//! ```json
//! {"hstream":{"serviceUrl":"hstream://127.0.0.1:6570"},
//!  "connector":{"stream":"s1", …},
//!  "task":"6f0e2c56-…"}
//! ```
//!
//! `HSTREAM_SERVICE_URL` in the environment overrides `hstream.serviceUrl`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::validate::unknown_key_message;

/// Environment variable that overrides `hstream.serviceUrl`.
pub const SERVICE_URL_ENV: &str = "HSTREAM_SERVICE_URL";

const TOP_LEVEL_KEYS: [&str; 3] = ["hstream", "connector", "task"];

/// A parsed task file, before the connector config is validated.
#[derive(Debug, Clone)]
pub struct TaskFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The HStream endpoint, after the environment override.
    pub service_url: Option<String>,
    /// The connector's own config object (not yet validated).
    pub connector: Value,
    /// The task id HServer assigned, when present.
    pub task_id: Option<String>,
}

impl TaskFile {
    /// Reads and parses `path` (JSON, or YAML when it is not JSON).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!("cannot read config file {}", path.display()))
                .with_source(e)
                .with_hint("Pass the path of an existing config.json with --config.")
        })?;
        Self::parse(path, &text)
    }

    /// Parses the text of a task file; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) || !text.trim_start().starts_with('{');
        let root: Value = if is_yaml {
            serde_norway::from_str(text).map_err(|e| {
                Error::config(format!("{} is not valid YAML", path.display())).with_source(e)
            })?
        } else {
            serde_json::from_str(text).map_err(|e| {
                Error::config(format!("{} is not valid JSON", path.display())).with_source(e)
            })?
        };
        let Value::Object(mut root) = root else {
            return Err(Error::config(format!(
                "{} must hold an object with `hstream`, `connector` and `task`",
                path.display()
            )));
        };
        if let Some(key) = root.keys().find(|k| !TOP_LEVEL_KEYS.contains(&k.as_str())) {
            let allowed: Vec<String> = TOP_LEVEL_KEYS.iter().map(|s| s.to_string()).collect();
            return Err(Error::config(format!(
                "{} /{key}: {}",
                path.display(),
                unknown_key_message(key, &allowed)
            )));
        }
        let file_url = match root.get("hstream") {
            None | Some(Value::Null) => None,
            Some(Value::Object(h)) => match h.get("serviceUrl") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    return Err(Error::config(format!(
                        "{} /hstream/serviceUrl: must be a string such as \"hstream://127.0.0.1:6570\"",
                        path.display()
                    )));
                }
            },
            Some(_) => {
                return Err(Error::config(format!(
                    "{} /hstream: must be an object with `serviceUrl`",
                    path.display()
                )));
            }
        };
        let service_url = std::env::var(SERVICE_URL_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .or(file_url);
        let connector = match root.remove("connector") {
            Some(v @ Value::Object(_)) => v,
            None => {
                return Err(
                    Error::config(format!("{} has no `connector` object", path.display()))
                        .with_hint(
                            "Put the connector's parameters under a top-level `connector` key.",
                        ),
                );
            }
            Some(_) => {
                return Err(Error::config(format!(
                    "{} /connector: must be an object",
                    path.display()
                ))
                .with_hint("HServer writes null here when the connector config given to CREATE CONNECTOR was not a JSON object."));
            }
        };
        let task_id = root.get("task").and_then(Value::as_str).map(str::to_string);
        Ok(Self {
            path: path.to_path_buf(),
            service_url,
            connector,
            task_id,
        })
    }

    /// The service URL, or an error saying where to set it.
    pub fn require_service_url(&self) -> Result<&str> {
        self.service_url.as_deref().ok_or_else(|| {
            Error::config(format!("{} /hstream/serviceUrl is missing", self.path.display()))
                .with_hint(format!(
                    "Set hstream.serviceUrl in the config file or the {SERVICE_URL_ENV} environment variable."
                ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hserver_json() {
        let f = TaskFile::parse(
            Path::new("config.json"),
            r#"{"hstream":{"serviceUrl":"hstream://h:1"},"connector":{"stream":"s"},"task":"t1"}"#,
        )
        .unwrap();
        // The environment may override the URL in CI; only check when it is unset.
        if std::env::var(SERVICE_URL_ENV).is_err() {
            assert_eq!(f.service_url.as_deref(), Some("hstream://h:1"));
        }
        assert_eq!(f.connector["stream"], "s");
        assert_eq!(f.task_id.as_deref(), Some("t1"));
    }

    #[test]
    fn parses_yaml() {
        let f = TaskFile::parse(
            Path::new("task.yaml"),
            "hstream:\n  serviceUrl: hstream://h:1\nconnector:\n  stream: s\n  batchSize: 3\n",
        )
        .unwrap();
        assert_eq!(f.connector["batchSize"], 3);
    }

    #[test]
    fn null_connector_is_explained() {
        let err = TaskFile::parse(Path::new("c.json"), r#"{"connector":null}"#).unwrap_err();
        assert!(
            err.to_string().contains("/connector: must be an object"),
            "{err}"
        );
    }

    #[test]
    fn top_level_typo_is_suggested() {
        let err = TaskFile::parse(Path::new("c.json"), r#"{"conector":{}}"#).unwrap_err();
        assert!(
            err.to_string().contains("did you mean `connector`"),
            "{err}"
        );
    }
}

/// TLS mode of a connection to a database (the same four modes for every
/// connector, as libpq's `sslmode` and MySQL's `--ssl-mode` name them).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Never use TLS.
    Disable,
    /// Use TLS when the server offers it, without verifying its certificate.
    #[default]
    Prefer,
    /// Require TLS, without verifying the server's certificate.
    Require,
    /// Require TLS and verify the certificate chain (against `tlsCa` when set)
    /// and that it names `host`.
    VerifyFull,
}
