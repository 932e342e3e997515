//! The HServer channel: JSON lines on stdin/stdout.
//!
//! Requests (`KvGet`, `KvSet`, `Report`) go out as
//! `{"name":…,"id":…,"body":…}` and are matched to their
//! `{"name":"ConnectorResponse","id":…,"body":…}` by id, with a timeout.
//! `{"name":"stop"}` pulls the shutdown trigger. Blank and non-JSON lines are
//! logged and ignored. Nothing else ever writes to stdout in task mode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

use crate::error::{Error, ErrorKind, Result};
use crate::shutdown::{ShutdownTrigger, StopReason};

/// How long a request waits for its response (the reference toolkit's value).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

type Pending = Arc<Mutex<Option<HashMap<String, oneshot::Sender<Value>>>>>;

/// A request/response channel to HServer (or to our own worker).
#[derive(Clone)]
pub struct Channel {
    out: Arc<tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>>,
    /// `None` once the input has closed: no response can arrive any more.
    pending: Pending,
    timeout: Duration,
}

impl Channel {
    /// A channel over the process's stdin and stdout.
    pub fn stdio(trigger: ShutdownTrigger) -> Self {
        Self::new(
            tokio::io::stdin(),
            tokio::io::stdout(),
            trigger,
            DEFAULT_TIMEOUT,
        )
    }

    /// A channel over any reader and writer; starts the reader task at once, so
    /// responses are dispatched before the first request is sent.
    pub fn new(
        input: impl AsyncRead + Send + Unpin + 'static,
        output: impl AsyncWrite + Send + Unpin + 'static,
        trigger: ShutdownTrigger,
        timeout: Duration,
    ) -> Self {
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        tokio::spawn(read_loop(input, pending.clone(), trigger));
        Self {
            out: Arc::new(tokio::sync::Mutex::new(Box::new(output))),
            pending,
            timeout,
        }
    }

    /// Sends request `name` with `body` and waits for the response body.
    pub async fn call(&self, name: &str, body: Value) -> Result<Value> {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().expect("channel lock poisoned");
            match pending.as_mut() {
                Some(map) => map.insert(id.clone(), tx),
                None => return Err(closed(name)),
            };
        }
        let mut line = serde_json::to_vec(&json!({"name": name, "id": id, "body": body}))
            .map_err(|e| Error::internal("cannot encode a channel request").with_source(e))?;
        line.push(b'\n');
        {
            let mut out = self.out.lock().await;
            let written = async {
                out.write_all(&line).await?;
                out.flush().await
            };
            if let Err(e) = written.await {
                self.forget(&id);
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("cannot send {name} on stdout"),
                )
                .with_source(e));
            }
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(_)) => Err(closed(name)),
            Err(_) => {
                self.forget(&id);
                Err(Error::new(
                    ErrorKind::Protocol,
                    format!("no response to {name} within {} s", self.timeout.as_secs()),
                )
                .with_hint("Check that the process that launched this task (HServer or `hstream-io serve`) is healthy."))
            }
        }
    }

    fn forget(&self, id: &str) {
        if let Some(map) = self.pending.lock().expect("channel lock poisoned").as_mut() {
            map.remove(id);
        }
    }
}

fn closed(name: &str) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("cannot complete {name}: stdin is closed"),
    )
    .with_hint("The process that launched this task has gone away; it will be restarted from the last stored offsets.")
}

async fn read_loop(
    input: impl AsyncRead + Send + Unpin,
    pending: Pending,
    trigger: ShutdownTrigger,
) {
    let mut lines = BufReader::new(input).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => dispatch(&line, &pending, &trigger),
            Ok(None) => break,
            Err(error) => {
                tracing::error!(%error, "cannot read stdin");
                break;
            }
        }
    }
    tracing::info!("stdin closed");
    // Dropping the senders fails every waiting call with "stdin is closed".
    pending.lock().expect("channel lock poisoned").take();
    trigger.trigger(StopReason::InputClosed);
}

fn dispatch(line: &str, pending: &Pending, trigger: &ShutdownTrigger) {
    let line = line.trim();
    if line.is_empty() {
        return;
    }
    let Ok(Value::Object(message)) = serde_json::from_str::<Value>(line) else {
        tracing::warn!(
            line_len = line.len(),
            "ignoring a stdin line that is not a JSON object"
        );
        return;
    };
    match message.get("name").and_then(Value::as_str) {
        Some("stop") => trigger.trigger(StopReason::StopCommand),
        Some("ConnectorResponse") => {
            let id = message
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let waiter = pending
                .lock()
                .expect("channel lock poisoned")
                .as_mut()
                .and_then(|map| map.remove(id));
            match waiter {
                Some(tx) => {
                    let _ = tx.send(message.get("body").cloned().unwrap_or(Value::Null));
                }
                None => tracing::warn!(id, "response to an unknown or timed-out request"),
            }
        }
        other => tracing::warn!(name = ?other, "ignoring an unknown message on stdin"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn matches_responses_by_id_and_tolerates_noise() {
        let (trigger, shutdown) = crate::shutdown::channel();
        let (server_in, task_out) = tokio::io::duplex(4096);
        let (mut server_out, task_in) = tokio::io::duplex(4096);
        let ch = Channel::new(task_in, task_out, trigger, Duration::from_secs(5));
        let call = tokio::spawn({
            let ch = ch.clone();
            async move { ch.call("KvGet", json!({"key": "k"})).await }
        });
        let mut reader = BufReader::new(server_in);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let req: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(req["name"], "KvGet");
        assert_eq!(req["body"]["key"], "k");
        let id = req["id"].as_str().unwrap();
        let reply = format!(
            "\n  \nnot json\n{{\"name\":\"ConnectorResponse\",\"id\":\"{id}\",\"body\":\"v\"}}\n"
        );
        server_out.write_all(reply.as_bytes()).await.unwrap();
        assert_eq!(call.await.unwrap().unwrap(), json!("v"));
        assert!(!shutdown.is_triggered());
        server_out
            .write_all(b"{\"name\":\"stop\"}\n")
            .await
            .unwrap();
        shutdown.wait().await;
        assert_eq!(shutdown.reason(), Some(StopReason::StopCommand));
        let mut rest = String::new();
        drop(ch);
        let _ =
            tokio::time::timeout(Duration::from_millis(50), reader.read_to_string(&mut rest)).await;
        assert!(rest.is_empty(), "unexpected output: {rest}");
    }

    #[tokio::test]
    async fn times_out_and_fails_on_closed_input() {
        let (trigger, shutdown) = crate::shutdown::channel();
        let (_server_in, task_out) = tokio::io::duplex(4096);
        let (server_out, task_in) = tokio::io::duplex(4096);
        let ch = Channel::new(task_in, task_out, trigger, Duration::from_millis(100));
        let err = ch.call("KvGet", json!({"key": "k"})).await.unwrap_err();
        assert!(err.to_string().contains("no response to KvGet"), "{err}");
        drop(server_out);
        shutdown.wait().await;
        assert_eq!(shutdown.reason(), Some(StopReason::InputClosed));
        let err = ch.call("KvSet", json!({})).await.unwrap_err();
        assert!(err.to_string().contains("stdin is closed"), "{err}");
    }
}
