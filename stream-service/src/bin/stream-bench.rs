//! Stream service benchmark: append and read throughput of 100-byte records
//! in batches of 1000 from one client (fsync per batch), each beside the raw
//! ceiling of this machine (sequential fsync'd writes of the same bytes to a
//! file, and reading them back).
//!
//! `cargo run --release -p hstream-io-stream-service --bin stream-bench -- [--records N] [--batch N] [--size BYTES] [--inflight N] [--data-dir DIR] [--no-fsync]`

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hstream_io_runtime::stream::{Client, Compression, ReaderOffset, Record, StreamOptions};
use hstream_io_stream_service::{ServeOptions, start};

struct Args {
    records: usize,
    batch: usize,
    size: usize,
    inflight: usize,
    dir: PathBuf,
    fsync: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        records: 1_000_000,
        batch: 1000,
        size: 100,
        inflight: 1,
        dir: std::env::temp_dir().join(format!("stream-bench-{}", std::process::id())),
        fsync: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--no-fsync" {
            a.fsync = false;
            continue;
        }
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        let num = || {
            v.parse::<usize>()
                .map_err(|_| format!("{k}: {v:?} is not a number"))
        };
        match k.as_str() {
            "--records" => a.records = num()?,
            "--batch" => a.batch = num()?.max(1),
            "--size" => a.size = num()?,
            "--inflight" => a.inflight = num()?.max(1),
            "--data-dir" => a.dir = v.into(),
            _ => return Err(format!("unknown option {k}")),
        }
    }
    Ok(a)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn raw_ceiling(a: &Args) -> std::io::Result<(Duration, Duration)> {
    let path = a.dir.join("raw-ceiling.bin");
    let buf = vec![b'x'; a.batch * a.size];
    let batches = a.records / a.batch;
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    let t = Instant::now();
    for _ in 0..batches {
        f.write_all(&buf)?;
        f.sync_data()?;
    }
    let write = t.elapsed();
    drop(f);
    let mut f = File::open(&path)?;
    let mut rb = vec![0u8; buf.len()];
    let t = Instant::now();
    let mut n = 0;
    for _ in 0..batches {
        f.read_exact(&mut rb)?;
        n += rb.len();
    }
    let read = t.elapsed();
    assert_eq!(n, batches * buf.len());
    std::fs::remove_file(&path)?;
    Ok((write, read))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = parse().map_err(|e| format!("{e}\nusage: stream-bench [--records N] [--batch N] [--size BYTES] [--inflight N] [--data-dir DIR] [--no-fsync]"))?;
    std::fs::create_dir_all(&a.dir)?;
    let batches = a.records / a.batch;
    let total = batches * a.batch;
    println!(
        "{total} records of {} bytes, batches of {}, {} in flight, data dir {}",
        a.size,
        a.batch,
        a.inflight,
        a.dir.display()
    );

    let (raw_w, raw_r) = raw_ceiling(&a)?;

    let data = a.dir.join("service");
    let _ = std::fs::remove_dir_all(&data);
    let mut o = ServeOptions::new(&data);
    o.listen = "127.0.0.1:0".parse()?;
    if !a.fsync {
        o.fsync = hstream_io_stream_service::FsyncPolicy::Never;
    }
    let svc = start(o).await?;
    let c = Client::connect(&svc.url()).await?;
    c.create_stream("bench", StreamOptions::default()).await?;
    let shard = c.list_shards("bench").await?[0].shard_id;
    let batch: Vec<Record> = (0..a.batch)
        .map(|_| Record::raw("", vec![b'x'; a.size]))
        .collect();

    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..a.inflight {
        let c = c.clone();
        let batch = batch.clone();
        let mine = batches / a.inflight + usize::from(w < batches % a.inflight);
        tasks.push(tokio::spawn(async move {
            for _ in 0..mine {
                c.append("bench", shard, batch.clone(), Compression::None)
                    .await?;
            }
            Ok::<_, hstream_io_runtime::stream::StreamError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let append = t.elapsed();

    let t = Instant::now();
    let mut r = c
        .shard_reader_with_timeout(
            "bench",
            shard,
            ReaderOffset::Earliest,
            Duration::from_millis(500),
        )
        .await?;
    let mut read = 0;
    while read < total {
        let got = r.read(100).await?;
        if got.is_empty() {
            return Err(format!("read stopped at {read} of {total} records").into());
        }
        read += got.len();
    }
    let read_t = t.elapsed();
    r.close().await?;
    svc.stop().await?;
    let _ = std::fs::remove_dir_all(&a.dir);

    let mb = |n: usize, d: Duration| (n * a.size) as f64 / d.as_secs_f64() / 1e6;
    println!("| measurement | records/s | MB/s (payload) | % of raw |");
    println!("|---|---:|---:|---:|");
    println!(
        "| raw file: write + fdatasync per batch | {:.0} | {:.1} | 100 |",
        rate(total, raw_w),
        mb(total, raw_w)
    );
    println!(
        "| service: Append ({}, {} in flight) | {:.0} | {:.1} | {:.0} |",
        if a.fsync {
            "fsync per batch"
        } else {
            "no fsync"
        },
        a.inflight,
        rate(total, append),
        mb(total, append),
        100.0 * raw_w.as_secs_f64() / append.as_secs_f64()
    );
    println!(
        "| raw file: sequential read | {:.0} | {:.1} | 100 |",
        rate(total, raw_r),
        mb(total, raw_r)
    );
    println!(
        "| service: ReadShard (100 batches per call, decoded) | {:.0} | {:.1} | {:.0} |",
        rate(read, read_t),
        mb(read, read_t),
        100.0 * raw_r.as_secs_f64() / read_t.as_secs_f64()
    );
    Ok(())
}
