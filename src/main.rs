//! `hstream-io`: HStream IO connector runtime.
//!
//! - `hstream-io <connector> spec | check --config F | run --config F`: the verbs
//!   HServer runs in a connector image;
//! - `hstream-io connectors`: what this binary ships;
//! - `hstream-io schemas` / `hstream-io docs`: generated specs and Markdown docs;
//! - `hstream-io serve`: the embedded HStream-compatible stream service plus the
//!   IO worker (connector tasks and HStreamDB's connector RPCs, same endpoint);
//! - `hstream-io sql "<statement>"` / `hstream-io connector …`: clients of it.

mod generated;
mod registry;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "hstream-io",
    version,
    about = "HStream IO connector runtime: CDC sources and SQL sinks for HStreamDB",
    after_help = "Connector verbs (as HServer runs them):\n  hstream-io <connector> spec\n  hstream-io <connector> check --config /data/config.json\n  hstream-io <connector> run --config /data/config.json\n  hstream-io <connector> cleanup --config /data/config.json   (only hstream-io serve, on delete)\n\nList connectors with `hstream-io connectors`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the connectors: name, kind, HServer target.
    Connectors {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Write (or check) the JSON Schema of every connector.
    Schemas {
        /// Folder to write `<connector>.json` files into.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
        /// Fail, naming the file, when a checked-in schema differs from the code.
        #[arg(long)]
        check: bool,
    },
    /// Write (or check) the Markdown docs of every connector.
    Docs {
        /// Folder to write the pages into.
        #[arg(long, default_value = "docs/connectors")]
        out: PathBuf,
        /// Fail, naming the file, when a checked-in page differs from the code.
        #[arg(long)]
        check: bool,
    },
    /// Run the embedded HStream-compatible stream service and the IO worker
    /// (connector tasks; HStreamDB's connector RPCs on the same endpoint).
    Serve {
        /// Where streams are stored (created if missing).
        #[arg(long, default_value = "hstream-data")]
        data_dir: PathBuf,
        /// Address to listen on for gRPC (HStream API).
        #[arg(long, default_value = "127.0.0.1:6570")]
        listen: std::net::SocketAddr,
        /// HOST:PORT that clients and tasks are told to use (DescribeCluster, lookups);
        /// default: the listen address.
        #[arg(long)]
        advertised_address: Option<String>,
        /// When appends reach the disk: `always` (fsync before acknowledging) or `never` (OS decides).
        #[arg(long, value_enum, default_value_t = Fsync::Always)]
        fsync: Fsync,
        /// Serve gRPC over TLS with this certificate (PEM, leaf first); needs --tls-key.
        /// Clients then use hstreams://HOST:PORT (and HSTREAM_TLS_CA for a private CA).
        #[arg(long, value_name = "PATH", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of --tls-cert; needs --tls-cert.
        #[arg(long, value_name = "PATH", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// Run one SQL statement (HStreamDB's connector and stream statements)
    /// against a running `hstream-io serve`; without one, a shell reading
    /// `;`-terminated statements from stdin.
    Sql {
        /// The statement, e.g. `SHOW CONNECTORS;`.
        statement: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Manage connectors of a running `hstream-io serve` (for scripts).
    #[command(name = "connector")]
    ConnectorAdmin {
        #[command(subcommand)]
        action: ConnectorAction,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// `hstream-io <connector> <verb>`: a connector's verbs.
    #[command(external_subcommand)]
    Connector(Vec<String>),
}

/// Options of the IO worker inside `serve`.
#[derive(clap::Args)]
struct WorkerArgs {
    /// Start every task as `hstream-io <connector> run`, even when the connector's own program
    /// `hstream-io-<connector>` lies next to this binary (by default tasks run from it: it holds
    /// only that connector, so each task process keeps ~8 MB less code resident).
    #[arg(long)]
    single_binary_tasks: bool,
    /// Restarts after consecutive crashes before a task is marked FAILED.
    #[arg(long, default_value_t = 5)]
    task_max_restarts: u32,
    /// First restart delay in milliseconds (doubles per consecutive crash, at most 60 s).
    #[arg(long, default_value_t = 1000)]
    task_restart_backoff_ms: u64,
    /// Seconds between the stop message and SIGTERM when pausing or stopping a task.
    #[arg(long, default_value_t = 10)]
    task_stop_grace: u64,
    /// Address-space limit of every task process, in MiB (RLIMIT_AS); unlimited when unset.
    #[arg(long)]
    task_memory_limit_mb: Option<u64>,
    /// Open-files limit of every task process (RLIMIT_NOFILE); inherited when unset.
    #[arg(long)]
    task_open_files_limit: Option<u64>,
    /// Address for HTTP `/metrics` (Prometheus), `/healthz` and `/readyz`; off when unset.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// Where a client command connects, and how it prints.
#[derive(clap::Args)]
struct ClientArgs {
    /// The server, `hstream://HOST:PORT`.
    #[arg(long, global = true, default_value = "hstream://127.0.0.1:6570")]
    service_url: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Subcommand)]
enum ConnectorAction {
    /// Every connector: name, type, target, status.
    List,
    /// One connector: status, config (secrets redacted), offsets, task, command.
    Describe {
        /// Connector name.
        name: String,
    },
    /// Lines of the connector's app.log.
    Logs {
        /// Connector name.
        name: String,
        /// First line, 1-based.
        #[arg(long, default_value_t = 1)]
        begin: i32,
        /// How many lines.
        #[arg(long, default_value_t = 100)]
        count: i32,
    },
    /// Stop the task; it stays stopped (also across restarts) until resumed.
    Pause {
        /// Connector name.
        name: String,
    },
    /// Run the task again from its stored offsets.
    Resume {
        /// Connector name.
        name: String,
    },
    /// Stop the task and delete the connector.
    Delete {
        /// Connector name.
        name: String,
    },
    /// Merge a JSON object into the connector config, re-check and restart it.
    Alter {
        /// Connector name.
        name: String,
        /// JSON object, e.g. '{"period": 2}'.
        #[arg(long)]
        config_json: String,
    },
    /// The spec (JSON Schema) of a connector type and target.
    Spec {
        /// SOURCE or SINK.
        #[arg(value_name = "TYPE")]
        kind: String,
        /// Target, e.g. generator.
        target: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Fsync {
    Always,
    Never,
}

fn main() -> ExitCode {
    hstream_io_runtime::cli::process_setup();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Connectors { output } => list_connectors(output),
        Command::Schemas { out, check } => generated::schemas(&out, check),
        Command::Docs { out, check } => generated::docs(&out, check),
        Command::Serve {
            data_dir,
            listen,
            advertised_address,
            fsync,
            tls_cert,
            tls_key,
            worker,
        } => {
            let tls = tls_cert.zip(tls_key).map(|(cert_pem_path, key_pem_path)| {
                hstream_io_stream_service::TlsFiles {
                    cert_pem_path,
                    key_pem_path,
                }
            });
            serve(data_dir, listen, advertised_address, fsync, tls, worker)
        }
        Command::Sql { statement, client } => match statement {
            Some(statement) => hstream_io_worker::cli::sql_main(
                &client.service_url,
                &statement,
                client.output.into(),
            ),
            None => hstream_io_worker::cli::shell_main(&client.service_url, client.output.into()),
        },
        Command::ConnectorAdmin { action, client } => connector_admin(action, client),
        Command::Connector(args) => connector_verb(args),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

impl From<Output> for hstream_io_worker::cli::Output {
    fn from(o: Output) -> Self {
        match o {
            Output::Text => Self::Text,
            Output::Json => Self::Json,
        }
    }
}

fn connector_admin(action: ConnectorAction, client: ClientArgs) -> i32 {
    use hstream_io_worker::cli::{ConnectorCommand as C, connector_main};
    let cmd = match action {
        ConnectorAction::List => C::List,
        ConnectorAction::Describe { name } => C::Describe(name),
        ConnectorAction::Logs { name, begin, count } => C::Logs { name, begin, count },
        ConnectorAction::Pause { name } => C::Pause(name),
        ConnectorAction::Resume { name } => C::Resume(name),
        ConnectorAction::Delete { name } => C::Delete(name),
        ConnectorAction::Alter { name, config_json } => C::Alter {
            name,
            config: config_json,
        },
        ConnectorAction::Spec { kind, target } => C::Spec { kind, target },
    };
    connector_main(&client.service_url, cmd, client.output.into())
}

/// `HOST:PORT` tasks and clients are told to use.
fn advertised(listen: std::net::SocketAddr, advertised_address: &Option<String>) -> String {
    match advertised_address {
        Some(a) => a.clone(),
        None if listen.ip().is_unspecified() => format!("127.0.0.1:{}", listen.port()),
        None => listen.to_string(),
    }
}

fn serve(
    data_dir: PathBuf,
    mut listen: std::net::SocketAddr,
    advertised_address: Option<String>,
    fsync: Fsync,
    tls: Option<hstream_io_stream_service::TlsFiles>,
    worker: WorkerArgs,
) -> i32 {
    use hstream_io_stream_service::{Connectors, FsyncPolicy, ServeOptions};
    use hstream_io_worker::{ConnectorEntry, ConnectorService, Worker, WorkerOptions};
    hstream_io_runtime::logging::init_stderr();
    if listen.port() == 0 {
        // Tasks need the real port in their serviceUrl: pick it now.
        match std::net::TcpListener::bind(listen).and_then(|l| l.local_addr()) {
            Ok(a) => listen = a,
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e}; pick another --listen address");
                return 1;
            }
        }
    }
    let node = advertised(listen, &advertised_address);
    let program = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot find this binary to start connector tasks from: {e}");
            return 1;
        }
    };
    // Tasks inherit this process's environment (HSTREAM_TLS_CA for a private CA).
    let scheme = if tls.is_some() { "hstreams" } else { "hstream" };
    let mut worker_options = WorkerOptions::new(
        data_dir.clone(),
        program,
        format!("{scheme}://{node}"),
        node,
    );
    worker_options.connectors = registry::all()
        .iter()
        .map(|c| ConnectorEntry {
            name: c.name.to_string(),
            kind: c.kind.hserver_type().to_string(),
            target: c.target.to_string(),
            spec: (c.spec)(),
        })
        .collect();
    worker_options.connector_programs = !worker.single_binary_tasks;
    worker_options.max_restarts = worker.task_max_restarts;
    worker_options.restart_backoff = Duration::from_millis(worker.task_restart_backoff_ms);
    worker_options.stop_grace = Duration::from_secs(worker.task_stop_grace);
    let metrics_listen = worker.metrics_listen;
    worker_options.task_limits = hstream_io_worker::TaskLimits {
        address_space_bytes: worker
            .task_memory_limit_mb
            .map(|mb| mb.saturating_mul(1 << 20)),
        open_files: worker.task_open_files_limit,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let worker = match Worker::open(worker_options).await {
            Ok(w) => w,
            Err(error) => {
                tracing::error!(%error, "cannot open the IO worker");
                return 1;
            }
        };
        let options = ServeOptions {
            data_dir,
            listen,
            advertised_address,
            fsync: match fsync {
                Fsync::Always => FsyncPolicy::Always,
                Fsync::Never => FsyncPolicy::Never,
            },
            connectors: Some(Connectors(std::sync::Arc::new(ConnectorService::new(
                worker.clone(),
            )))),
            tls,
        };
        let running = match hstream_io_stream_service::start(options).await {
            Ok(r) => r,
            Err(error) => {
                tracing::error!(%error, "stream service failed to start");
                return 1;
            }
        };
        let http = match worker_http(worker.clone(), metrics_listen).await {
            Ok(h) => h,
            Err(message) => {
                tracing::error!(%message, "cannot start the metrics endpoint");
                return 1;
            }
        };
        if let Err(error) = worker.recover().await {
            tracing::error!(%error, "cannot recover connector tasks");
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping connector tasks and the stream service");
        if let Some(h) = http {
            h.abort();
        }
        worker.shutdown().await;
        match running.stop().await {
            Ok(()) => 0,
            Err(error) => {
                tracing::error!(%error, "stream service failed");
                1
            }
        }
    })
}

/// Starts the worker's HTTP endpoint when `--metrics-listen` is given.
async fn worker_http(
    worker: std::sync::Arc<hstream_io_worker::Worker>,
    listen: Option<std::net::SocketAddr>,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let Some(addr) = listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot listen on {addr} for metrics: {e}; pick another --metrics-listen")
    })?;
    tracing::info!(listen = %addr, "metrics endpoint started");
    Ok(Some(tokio::spawn(hstream_io_worker::http::serve(
        listener, worker,
    ))))
}

fn list_connectors(output: Output) -> i32 {
    let all = registry::all();
    match output {
        Output::Text => {
            for c in all {
                println!("{}\t{}\t{}", c.name, c.kind.as_str(), c.target);
            }
        }
        Output::Json => {
            let list: Vec<_> = all
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "name": c.name, "kind": c.kind.as_str(),
                        "type": c.kind.hserver_type(), "target": c.target, "summary": c.summary,
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(list));
        }
    }
    0
}

fn connector_verb(args: Vec<String>) -> i32 {
    let (name, rest) = args
        .split_first()
        .expect("clap gives at least the subcommand name");
    let Some(connector) = registry::find(name) else {
        let names: Vec<String> = registry::all().iter().map(|c| c.name.to_string()).collect();
        match hstream_io_runtime::validate::closest(name, &names) {
            Some(guess) => {
                eprintln!("error: unknown command or connector `{name}`; did you mean `{guess}`?")
            }
            None => eprintln!(
                "error: unknown command or connector `{name}`; connectors are: {} (see `hstream-io connectors`)",
                names.join(", ")
            ),
        }
        return 2;
    };
    hstream_io_runtime::cli::connector_main(&connector, &format!("hstream-io {name}"), rest)
}
