//! Standalone stream service: `hstream-stream-service [--data-dir DIR]
//! [--listen ADDR] [--advertised-address HOST:PORT] [--no-fsync]`.
//!
//! The same service `hstream-io serve` runs; kept as a small binary so the
//! crash tests (and benchmarks) can run it as a separate process.

use std::process::ExitCode;

use hstream_io_stream_service::{FsyncPolicy, ServeOptions, serve};

fn usage() -> ExitCode {
    eprintln!(
        "usage: hstream-stream-service [--data-dir DIR] [--listen ADDR] [--advertised-address HOST:PORT] [--no-fsync]"
    );
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut opts = ServeOptions::new("./hstream-data");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data-dir" => match args.next() {
                Some(v) => opts.data_dir = v.into(),
                None => return usage(),
            },
            "--listen" => match args.next().map(|v| v.parse()) {
                Some(Ok(v)) => opts.listen = v,
                _ => return usage(),
            },
            "--advertised-address" => match args.next() {
                Some(v) => opts.advertised_address = Some(v),
                None => return usage(),
            },
            "--no-fsync" => opts.fsync = FsyncPolicy::Never,
            _ => return usage(),
        }
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match serve(opts, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hstream-stream-service: {e}");
            ExitCode::FAILURE
        }
    }
}
