//! A connector's command line — `spec`, `check --config F`, `run --config F`, `cleanup --config F` —
//! shared by `hstream-io <connector> <verb>` and the connector's own small program
//! (`hstream-io-<connector> <verb>`, see [`standalone_main`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::ConnectorInfo;
use crate::task::{KvBackend, RunOptions, TaskCommand};

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
    /// Drop what a deleted task owns outside HStream (e.g. source-postgresql's
    /// replication slot, when its config says so); print one result JSON line.
    /// Run by `hstream-io serve` on DROP CONNECTOR; HServer never runs it.
    Cleanup {
        /// Task file of the deleted task (config.json as HServer writes it, or YAML).
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
enum Kv {
    Channel,
    File,
    Memory,
}

/// Parses a connector verb's arguments (`args`: the verb and its options) and runs it;
/// returns the process exit code (2 for a bad command line, as clap does). `program` is
/// how help and errors name the command (`hstream-io sink-mysql`, `hstream-io-sink-mysql`).
pub fn connector_main(connector: &ConnectorInfo, program: &str, args: &[String]) -> i32 {
    use clap::{CommandFactory, FromArgMatches};
    let parsed = TaskCli::command()
        .bin_name(program.to_string())
        .try_get_matches_from(args)
        .and_then(|m| TaskCli::from_arg_matches(&m));
    let task = match parsed {
        Ok(task) => task,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let command = match task.verb {
        Verb::Spec => TaskCommand::Spec,
        Verb::Check { config } => TaskCommand::Check { config },
        Verb::Cleanup { config } => TaskCommand::Cleanup { config },
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

/// `main` of a connector's own program, `hstream-io-<connector> <verb> …`: the same verbs as
/// `hstream-io <connector> <verb> …` in a binary that holds only this connector and the
/// runtime. `hstream-io serve` starts its tasks from such a program when one lies next to it:
/// the code a task maps is a third of the full binary's (task RSS, docs/benchmarks.md).
pub fn standalone_main(connector: ConnectorInfo) -> ExitCode {
    process_setup();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = connector_main(&connector, &format!("hstream-io-{}", connector.name), &args);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The program and leading arguments that run `connector`'s verbs next to `program` (the
/// `hstream-io` binary): the connector's own program `hstream-io-<connector>` when it lies
/// beside `program` (it holds only that connector and the runtime, so its task maps about half
/// the code: less RSS per task), else `program <connector>`. Both are built by
/// `cargo build --workspace --bins`; a build of `hstream-io` alone leaves the connector
/// programs as they were (build order, not file times, decides which is newer, so this does
/// not guess).
pub fn connector_program(program: &std::path::Path, connector: &str) -> (PathBuf, Vec<String>) {
    let own = program.with_file_name(format!("hstream-io-{connector}"));
    if own.is_file() {
        (own, Vec::new())
    } else {
        (program.to_path_buf(), vec![connector.to_string()])
    }
}

/// Process-wide settings every hstream-io program applies first, before any thread exists:
/// the glibc malloc arena limit ([`MALLOC_ARENAS`]) and ring as the TLS provider.
pub fn process_setup() {
    limit_malloc_arenas();
    // Before any TLS: ring for every rustls user (aws-lc may be compiled in too).
    crate::install_crypto_provider();
}

/// glibc malloc arenas the process may use. The default (8 per core) lets
/// every thread that frees a task's batches keep its own arena of freed
/// memory; measured on the SQL sink benchmark, two arenas cut the peak RSS of
/// a sink under a 1M-row load from ~65 MB to ~40 MB at no measurable speed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: libc::c_int = 2;

/// Applies [`MALLOC_ARENAS`].
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads run.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_program_prefers_the_connectors_own_program() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("hstream-io");
        let own = dir.path().join("hstream-io-sink-mysql");
        std::fs::write(&main, b"").unwrap();
        // No own program: the main binary with the connector's name.
        assert_eq!(
            connector_program(&main, "sink-mysql"),
            (main.clone(), vec!["sink-mysql".to_string()])
        );
        // With it: it, without the name.
        std::fs::write(&own, b"").unwrap();
        assert_eq!(connector_program(&main, "sink-mysql"), (own, vec![]));
        // Another connector's program is never picked.
        assert_eq!(
            connector_program(&main, "sink-postgresql"),
            (main, vec!["sink-postgresql".to_string()])
        );
    }
}
