//! The client side: `hstream-io sql "<statement>"` and
//! `hstream-io connector list|describe|logs|pause|resume|delete|alter|spec`,
//! over gRPC to a running `hstream-io serve` (or an HServer).

use hstream_io_runtime::stream::wire;
use hstream_io_runtime::stream::wire::h_stream_api_client::HStreamApiClient;
use hstream_io_runtime::stream::{ServiceUrl, StreamError};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::sql::{self, Statement};
use crate::table;

/// Output format of the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Readable tables.
    Text,
    /// One JSON document.
    Json,
}

/// A `hstream-io connector …` command.
#[derive(Debug, Clone)]
pub enum ConnectorCommand {
    /// Every connector.
    List,
    /// One connector in full.
    Describe(String),
    /// Lines of its app.log.
    Logs {
        /// Connector name.
        name: String,
        /// First line (1-based).
        begin: i32,
        /// How many lines.
        count: i32,
    },
    /// Pause it.
    Pause(String),
    /// Resume it.
    Resume(String),
    /// Delete it.
    Delete(String),
    /// Merge a JSON object into its config and restart it.
    Alter {
        /// Connector name.
        name: String,
        /// JSON object text.
        config: String,
    },
    /// The spec of a connector type and target.
    Spec {
        /// SOURCE or SINK.
        kind: String,
        /// Target.
        target: String,
    },
}

/// A CLI failure, already worded for the user.
#[derive(Debug)]
struct CliError(String);

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        CliError(describe_status(&s))
    }
}

/// `Name (code): message` from HServer-style status details, else the status message.
pub fn describe_status(s: &tonic::Status) -> String {
    match serde_json::from_slice::<Value>(s.details()) {
        Ok(d) if d["error"].is_i64() => format!(
            "{} ({}): {}",
            d["message"].as_str().unwrap_or("Error"),
            d["error"],
            s.message()
        ),
        _ => {
            // tonic's transport failures say only "transport error": add the causes.
            let mut m = format!("{:?}: {}", s.code(), s.message());
            let mut src = std::error::Error::source(s);
            while let Some(e) = src {
                let t = e.to_string();
                if !m.contains(&t) {
                    m.push_str(": ");
                    m.push_str(&t);
                }
                src = e.source();
            }
            if m.contains("transport error") || m.contains("h2 protocol error") {
                m.push_str(
                    " (check that the server is running and that the URL's scheme matches it: \
                     hstreams:// for a TLS server, hstream:// otherwise)",
                );
            }
            m
        }
    }
}

async fn connect(url: &str) -> Result<HStreamApiClient<Channel>, CliError> {
    let parsed =
        ServiceUrl::parse(url).map_err(|e| CliError(format!("invalid --service-url: {e}")))?;
    // hstreams://: TLS, trusting the system CA store or the PEM file named by HSTREAM_TLS_CA.
    let channel = hstream_io_runtime::stream::connect_channel(url, &Default::default())
        .await
        .map_err(|e| match e {
            StreamError::Connect { reason, .. } => CliError(format!(
                "cannot connect to {url}: {reason}{}; is `hstream-io serve` running there?",
                if parsed.tls {
                    ""
                } else {
                    " (if it serves TLS, use hstreams://)"
                }
            )),
            other => CliError(other.to_string()),
        })?;
    Ok(HStreamApiClient::new(channel))
}

fn block_on<F: std::future::Future<Output = Result<String, CliError>>>(f: F) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(f) {
        Ok(out) => {
            print!("{out}");
            0
        }
        Err(CliError(msg)) => {
            eprintln!("error: {msg}");
            1
        }
    }
}

/// Runs one SQL statement against `url`; prints the result; returns the exit code
/// (2 for a syntax error, 1 for a failed request).
pub fn sql_main(url: &str, statement: &str, output: Output) -> i32 {
    let stmt = match sql::parse(statement) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", e.render(statement));
            return 2;
        }
    };
    block_on(async move {
        let mut api = connect(url).await?;
        exec(&mut api, stmt, output).await
    })
}

fn ok(output: Output, text: String, value: Value) -> String {
    match output {
        Output::Text => format!("{text}\n"),
        Output::Json => format!("{value}\n"),
    }
}

/// Executes one statement with an open client.
async fn exec(
    api: &mut HStreamApiClient<Channel>,
    stmt: Statement,
    output: Output,
) -> Result<String, CliError> {
    match stmt {
        Statement::CreateConnector {
            kind,
            name,
            target,
            if_not_exist,
            options,
        } => {
            let req = wire::CreateConnectorRequest {
                name: name.clone(),
                r#type: kind.into(),
                target,
                config: Value::Object(options).to_string(),
            };
            match api.create_connector(req).await {
                Ok(c) => {
                    let c = c.into_inner();
                    Ok(ok(
                        output,
                        format!(
                            "created {} connector {} ({}, task {})",
                            c.r#type, c.name, c.status, c.task_id
                        ),
                        connector_json(&c),
                    ))
                }
                Err(s) if if_not_exist && s.code() == tonic::Code::AlreadyExists => Ok(ok(
                    output,
                    format!("connector {name} already exists"),
                    json!({"name": name, "existed": true}),
                )),
                Err(s) => Err(s.into()),
            }
        }
        Statement::ShowConnectors => list(api, output).await,
        Statement::DescribeConnector(name) => describe(api, name, output).await,
        Statement::PauseConnector(name) => {
            api.pause_connector(wire::PauseConnectorRequest { name: name.clone() })
                .await?;
            Ok(ok(
                output,
                format!("paused connector {name}"),
                json!({"name": name, "paused": true}),
            ))
        }
        Statement::ResumeConnector(name) => {
            api.resume_connector(wire::ResumeConnectorRequest { name: name.clone() })
                .await?;
            Ok(ok(
                output,
                format!("resumed connector {name}"),
                json!({"name": name, "resumed": true}),
            ))
        }
        Statement::DropConnector { name, if_exists } => {
            match api
                .delete_connector(wire::DeleteConnectorRequest { name: name.clone() })
                .await
            {
                Ok(_) => Ok(ok(
                    output,
                    format!("dropped connector {name}"),
                    json!({"name": name, "dropped": true}),
                )),
                Err(s) if if_exists && s.code() == tonic::Code::NotFound => Ok(ok(
                    output,
                    format!("connector {name} does not exist"),
                    json!({"name": name, "dropped": false}),
                )),
                Err(s) => Err(s.into()),
            }
        }
        Statement::CreateStream {
            name,
            shard_count,
            replicate,
        } => {
            let s = api
                .create_stream(wire::Stream {
                    stream_name: name,
                    replication_factor: replicate,
                    backlog_duration: 0,
                    shard_count,
                    creation_time: None,
                })
                .await?
                .into_inner();
            Ok(ok(
                output,
                format!(
                    "created stream {} ({} shards)",
                    s.stream_name, s.shard_count
                ),
                stream_json(&s),
            ))
        }
        Statement::ShowStreams => {
            let streams = api
                .list_streams(wire::ListStreamsRequest {})
                .await?
                .into_inner()
                .streams;
            let rows = streams
                .iter()
                .map(|s| {
                    vec![
                        s.stream_name.clone(),
                        s.shard_count.to_string(),
                        s.replication_factor.to_string(),
                        backlog(s.backlog_duration),
                    ]
                })
                .collect::<Vec<_>>();
            Ok(match output {
                Output::Text => {
                    table::render(&["Name", "Shards", "Replication", "Retention"], &rows)
                }
                Output::Json => format!(
                    "{}\n",
                    Value::Array(streams.iter().map(stream_json).collect())
                ),
            })
        }
        Statement::DropStream { name, if_exists } => {
            api.delete_stream(wire::DeleteStreamRequest {
                stream_name: name.clone(),
                ignore_non_exist: if_exists,
                force: false,
            })
            .await?;
            Ok(ok(
                output,
                format!("dropped stream {name}"),
                json!({"name": name, "dropped": true}),
            ))
        }
    }
}

fn backlog(secs: u32) -> String {
    if secs == 0 {
        "forever".into()
    } else {
        format!("{secs} s")
    }
}

fn stream_json(s: &wire::Stream) -> Value {
    json!({"name": s.stream_name, "shardCount": s.shard_count, "replicationFactor": s.replication_factor, "backlogDuration": s.backlog_duration})
}

async fn list(api: &mut HStreamApiClient<Channel>, output: Output) -> Result<String, CliError> {
    let cs = api
        .list_connectors(wire::ListConnectorsRequest {})
        .await?
        .into_inner()
        .connectors;
    Ok(match output {
        Output::Text => {
            let rows: Vec<Vec<String>> = cs
                .iter()
                .map(|c| {
                    vec![
                        c.name.clone(),
                        c.r#type.clone(),
                        c.target.clone(),
                        c.status.clone(),
                        created(c),
                    ]
                })
                .collect();
            table::render(&["Name", "Type", "Target", "Status", "Created"], &rows)
        }
        Output::Json => format!(
            "{}\n",
            Value::Array(cs.iter().map(connector_json).collect())
        ),
    })
}

async fn describe(
    api: &mut HStreamApiClient<Channel>,
    name: String,
    output: Output,
) -> Result<String, CliError> {
    let c = api
        .get_connector(wire::GetConnectorRequest { name })
        .await?
        .into_inner();
    let v = connector_json(&c);
    Ok(match output {
        Output::Json => format!("{v}\n"),
        Output::Text => {
            let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
            let rows = vec![
                vec!["Name".into(), c.name.clone()],
                vec!["Type".into(), c.r#type.clone()],
                vec!["Target".into(), c.target.clone()],
                vec!["Status".into(), c.status.clone()],
                vec!["Process".into(), c.docker_status.clone()],
                vec!["Task id".into(), c.task_id.clone()],
                vec!["Node".into(), c.node.clone()],
                vec!["Created".into(), created(&c)],
                vec!["Command".into(), c.image.clone()],
                vec!["Config".into(), pretty(&v["config"])],
                vec!["Offsets".into(), pretty(&v["offsets"])],
            ];
            table::render(&["Field", "Value"], &rows)
        }
    })
}

fn created(c: &wire::Connector) -> String {
    c.creation_time
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// A `Connector` as JSON (config and offsets decoded).
pub fn connector_json(c: &wire::Connector) -> Value {
    json!({
        "name": c.name,
        "type": c.r#type,
        "target": c.target,
        "status": c.status,
        "creationTime": created(c),
        "config": serde_json::from_str::<Value>(&c.config).unwrap_or(Value::String(c.config.clone())),
        "offsets": c.offsets.iter().map(struct_json).collect::<Vec<_>>(),
        "taskId": c.task_id,
        "node": c.node,
        "process": c.docker_status,
        "image": c.image,
    })
}

fn struct_json(s: &prost_types::Struct) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect(),
    )
}

fn value_json(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                json!(*n as i64)
            } else {
                json!(n)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_json).collect()),
        Some(Kind::StructValue(s)) => struct_json(s),
    }
}

/// Runs one `hstream-io connector …` command; returns the exit code.
pub fn connector_main(url: &str, cmd: ConnectorCommand, output: Output) -> i32 {
    block_on(async move {
        let mut api = connect(url).await?;
        match cmd {
            ConnectorCommand::List => list(&mut api, output).await,
            ConnectorCommand::Describe(name) => describe(&mut api, name, output).await,
            ConnectorCommand::Logs { name, begin, count } => {
                let logs = api
                    .get_connector_logs(wire::GetConnectorLogsRequest { name, begin, count })
                    .await?
                    .into_inner()
                    .logs;
                Ok(match output {
                    Output::Text => logs,
                    Output::Json => format!("{}\n", json!({"logs": logs})),
                })
            }
            ConnectorCommand::Pause(name) => {
                exec(&mut api, Statement::PauseConnector(name), output).await
            }
            ConnectorCommand::Resume(name) => {
                exec(&mut api, Statement::ResumeConnector(name), output).await
            }
            ConnectorCommand::Delete(name) => {
                exec(
                    &mut api,
                    Statement::DropConnector {
                        name,
                        if_exists: false,
                    },
                    output,
                )
                .await
            }
            ConnectorCommand::Alter { name, config } => {
                api.alter_connector_config(wire::AlterConnectorConfigRequest {
                    name: name.clone(),
                    config,
                })
                .await?;
                Ok(ok(
                    output,
                    format!("altered connector {name}"),
                    json!({"name": name, "altered": true}),
                ))
            }
            ConnectorCommand::Spec { kind, target } => {
                let spec = api
                    .get_connector_spec(wire::GetConnectorSpecRequest {
                        r#type: kind.to_uppercase(),
                        target,
                    })
                    .await?
                    .into_inner()
                    .spec;
                Ok(format!("{spec}\n"))
            }
        }
    })
}

/// `hstream-io sql` without a statement: reads statements (each ended by `;`)
/// from stdin and runs them one by one; errors are printed and the shell goes
/// on. On a terminal it is an interactive shell with line editing and a
/// history kept across sessions (see [`history_path`]), exit code 0; from a
/// pipe or file it returns 1 if any statement failed.
pub fn shell_main(url: &str, output: Output) -> i32 {
    use std::io::{BufRead, IsTerminal};
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let mut api = match rt.block_on(connect(url)) {
        Ok(api) => api,
        Err(CliError(msg)) => {
            eprintln!("error: {msg}");
            return 1;
        }
    };
    let mut failed = false;
    let mut run = |statement: &str| match sql::parse(statement) {
        Err(e) => {
            failed = true;
            eprintln!("error: {}", e.render(statement.trim_end()));
        }
        Ok(stmt) => match rt.block_on(exec(&mut api, stmt, output)) {
            Ok(out) => print!("{out}"),
            Err(CliError(msg)) => {
                failed = true;
                eprintln!("error: {msg}");
            }
        },
    };
    if std::io::stdin().is_terminal() {
        interactive(&mut run);
        return 0;
    }
    let mut buffer = String::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        buffer.push_str(&line);
        buffer.push('\n');
        if line.trim_end().ends_with(';') {
            run(&std::mem::take(&mut buffer));
        }
    }
    i32::from(failed)
}

/// Where the shell keeps its history: `$HSTREAM_IO_HISTORY`, else
/// `~/.hstream-io_history`; `None` when neither can be named.
pub fn history_path() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("HSTREAM_IO_HISTORY").filter(|p| !p.is_empty()) {
        return Some(path.into());
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| std::path::Path::new(&home).join(".hstream-io_history"))
}

/// The terminal shell: line editing, history (kept across sessions in
/// [`history_path`]), Ctrl-C drops the statement being typed, Ctrl-D leaves.
fn interactive(run: &mut impl FnMut(&str)) {
    use rustyline::error::ReadlineError;
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(editor) => editor,
        Err(e) => {
            eprintln!("error: cannot open the terminal: {e}");
            return;
        }
    };
    let history = history_path();
    if let Some(path) = &history {
        // A first session has no file yet.
        let _ = editor.load_history(path);
    }
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "hstream-io> "
        } else {
            "          > "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if buffer.is_empty() && line.trim().is_empty() {
                    continue;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if !line.trim_end().ends_with(';') {
                    continue;
                }
                let statement = std::mem::take(&mut buffer);
                // One history entry per statement, on one line.
                let entry = statement
                    .lines()
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ");
                let _ = editor.add_history_entry(entry.trim());
                run(&statement);
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: cannot read the terminal: {e}");
                break;
            }
        }
    }
    if let Some(path) = &history
        && let Err(e) = editor.save_history(path)
    {
        eprintln!(
            "warning: cannot save the shell history to {}: {e}",
            path.display()
        );
    }
}
