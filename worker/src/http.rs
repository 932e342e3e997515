//! The worker's HTTP port: `GET /metrics` (Prometheus text), `/healthz`
//! (the process answers) and `/readyz` (the metastore answers). A deliberately
//! tiny HTTP/1.1 responder: one request per connection, no body.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::worker::Worker;

/// Serves `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, worker: Arc<Worker>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let worker = worker.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let Ok(Some(request)) = lines.next_line().await else {
                return;
            };
            // Skip the headers.
            while let Ok(Some(h)) = lines.next_line().await {
                if h.is_empty() {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = respond(&worker, path).await;
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = write.write_all(response.as_bytes()).await;
            let _ = write.shutdown().await;
        });
    }
}

async fn respond(worker: &Worker, path: &str) -> (&'static str, String) {
    match path {
        "/metrics" => match worker.metrics().await {
            Ok(text) => ("200 OK", text),
            Err(e) => ("503 Service Unavailable", format!("{e}\n")),
        },
        "/healthz" => ("200 OK", "ok\n".into()),
        "/readyz" => match worker.metrics().await {
            Ok(_) => ("200 OK", "ready\n".into()),
            Err(e) => ("503 Service Unavailable", format!("not ready: {e}\n")),
        },
        _ => (
            "404 Not Found",
            "unknown path; try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}
