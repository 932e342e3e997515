//! `hstream-io`: HStream IO connector runtime.
//!
//! - `hstream-io <connector> spec | check --config F | run --config F`: the verbs
//!   HServer runs in a connector image;
//! - `hstream-io connectors`: what this binary ships;
//! - `hstream-io schemas` / `hstream-io docs`: generated specs and Markdown docs;
//! - `hstream-io serve`: the embedded HStream-compatible stream service.

mod generated;
mod registry;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use hstream_io_runtime::task::{KvBackend, RunOptions, TaskCommand};

#[derive(Parser)]
#[command(
    name = "hstream-io",
    version,
    about = "HStream IO connector runtime: CDC sources and SQL sinks for HStreamDB",
    after_help = "Connector verbs (as HServer runs them):\n  hstream-io <connector> spec\n  hstream-io <connector> check --config /data/config.json\n  hstream-io <connector> run --config /data/config.json\n\nList connectors with `hstream-io connectors`."
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
    /// Run the embedded HStream-compatible stream service.
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
    },
    /// `hstream-io <connector> <verb>`: a connector's verbs.
    #[command(external_subcommand)]
    Connector(Vec<String>),
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Parser)]
#[command(name = "hstream-io <connector>", no_binary_name = true)]
struct TaskCli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Print the spec (JSON Schema) as one JSON line.
    Spec,
    /// Validate a config and the environment; print one CheckResult JSON line.
    Check {
        /// Task file (config.json as HServer writes it, or YAML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the task until it is done or stopped.
    Run {
        /// Task file (config.json as HServer writes it, or YAML).
        #[arg(long)]
        config: PathBuf,
        /// Where offsets live: `channel` (HServer's KV over stdin/stdout), `file`, or `memory`.
        #[arg(long, value_enum, default_value_t = Kv::Channel)]
        kv: Kv,
        /// With `--kv file`: the file (default: kv.json next to the config).
        #[arg(long)]
        kv_path: Option<PathBuf>,
        /// Seconds a graceful stop may take.
        #[arg(long, default_value_t = 10)]
        shutdown_timeout: u64,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Fsync {
    Always,
    Never,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kv {
    Channel,
    File,
    Memory,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Connectors { output } => list_connectors(output),
        Command::Schemas { out, check } => generated::schemas(&out, check),
        Command::Docs { out, check } => generated::docs(&out, check),
        Command::Serve { data_dir, listen, advertised_address, fsync } => serve(data_dir, listen, advertised_address, fsync),
        Command::Connector(args) => connector_verb(args),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn serve(data_dir: PathBuf, listen: std::net::SocketAddr, advertised_address: Option<String>, fsync: Fsync) -> i32 {
    use hstream_io_stream_service::{FsyncPolicy, ServeOptions};
    hstream_io_runtime::logging::init_stderr();
    let options = ServeOptions {
        data_dir,
        listen,
        advertised_address,
        fsync: match fsync {
            Fsync::Always => FsyncPolicy::Always,
            Fsync::Never => FsyncPolicy::Never,
        },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(hstream_io_stream_service::serve(options, async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping the stream service");
    }));
    match result {
        Ok(()) => 0,
        Err(error) => {
            tracing::error!(%error, "stream service failed");
            1
        }
    }
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
    let task = match TaskCli::try_parse_from(rest) {
        Ok(task) => task,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let command = match task.verb {
        Verb::Spec => TaskCommand::Spec,
        Verb::Check { config } => TaskCommand::Check { config },
        Verb::Run {
            config,
            kv,
            kv_path,
            shutdown_timeout,
        } => {
            let kv = match kv {
                Kv::Channel => KvBackend::Channel,
                Kv::Memory => KvBackend::Memory,
                Kv::File => KvBackend::File(kv_path.unwrap_or_else(|| {
                    config
                        .parent()
                        .unwrap_or(std::path::Path::new("."))
                        .join("kv.json")
                })),
            };
            TaskCommand::Run {
                config,
                options: RunOptions {
                    kv,
                    shutdown_timeout: Duration::from_secs(shutdown_timeout),
                    ..RunOptions::default()
                },
            }
        }
    };
    (connector.main)(command)
}
