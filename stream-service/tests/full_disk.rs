//! A full disk: appends fail with a clear status, acknowledged records stay
//! readable, the service keeps answering, and it reopens cleanly.
//!
//! Needs root to mount a 1 MiB tmpfs as the data folder; CI runs as root. Without
//! the permission the test fails and says so (it never skips silently).

use std::path::{Path, PathBuf};
use std::process::Command;

use hstream_io_runtime::stream::{Client, Compression, ReaderOffset, Record, StreamOptions};
use hstream_io_stream_service::{ServeOptions, start};

/// A size-limited tmpfs, unmounted on drop.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {} (this test needs root to simulate a full disk)",
            path.display()
        );
        Self { path, _dir: dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn options(dir: &Path) -> ServeOptions {
    let mut opts = ServeOptions::new(dir.join("data"));
    opts.listen = "127.0.0.1:0".parse().unwrap();
    opts
}

async fn read_all(client: &Client, shard: u64) -> Vec<Vec<u8>> {
    let mut reader = client
        .shard_reader("full", shard, ReaderOffset::Earliest)
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let got = reader.read(100).await.unwrap();
        if got.is_empty() {
            return out;
        }
        for r in got {
            match r.record.payload {
                hstream_io_runtime::stream::Payload::Raw(b) => out.push(b),
                other => panic!("unexpected payload {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_appends_clearly_and_keeps_what_was_acknowledged() {
    let disk = SmallDisk::mount("1m");
    // Ballast, deleted once the disk is full, to give the service room again.
    let ballast = disk.path.join("ballast");
    std::fs::write(&ballast, vec![0u8; 256 * 1024]).unwrap();
    let service = start(options(&disk.path)).await.unwrap();
    let client = Client::connect(&service.url()).await.unwrap();
    client
        .create_stream("full", StreamOptions::default())
        .await
        .unwrap();
    let shard = client.list_shards("full").await.unwrap()[0].shard_id;

    let mut acknowledged: Vec<Vec<u8>> = Vec::new();
    let mut failure = None;
    for batch in 0..1000u32 {
        let records: Vec<Record> = (0..10u32)
            .map(|i| {
                Record::raw(
                    String::new(),
                    format!("{batch:05}-{i:02}-{}", "x".repeat(1000)).into_bytes(),
                )
            })
            .collect();
        let payloads: Vec<Vec<u8>> = records
            .iter()
            .map(|r| match &r.payload {
                hstream_io_runtime::stream::Payload::Raw(b) => b.clone(),
                _ => unreachable!(),
            })
            .collect();
        match client
            .append("full", shard, records, Compression::None)
            .await
        {
            Ok(ids) => {
                assert_eq!(ids.len(), 10);
                acknowledged.extend(payloads);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("a 1 MiB disk must fill up");
    let message = failure.to_string();
    eprintln!("append on a full disk: {message}");
    assert!(
        !acknowledged.is_empty(),
        "some appends fit before the disk filled"
    );
    assert!(
        message.contains("No space left") || message.to_lowercase().contains("space"),
        "the error says the disk is full: {message}"
    );

    // Free some space: the next append works and lands right after the
    // acknowledged ones — the failed write left nothing half-visible behind.
    std::fs::remove_file(&ballast).unwrap();
    let after = client
        .append(
            "full",
            shard,
            vec![Record::raw(String::new(), b"after".to_vec())],
            Compression::None,
        )
        .await
        .expect("appends work again once there is space");
    assert_eq!(after.len(), 1);
    acknowledged.push(b"after".to_vec());
    assert_eq!(read_all(&client, shard).await, acknowledged);

    // Reopen on the same disk: recovery keeps exactly the acknowledged records.
    service.stop().await.unwrap();
    let service = start(options(&disk.path)).await.unwrap();
    let client = Client::connect(&service.url()).await.unwrap();
    assert_eq!(read_all(&client, shard).await, acknowledged);
    service.stop().await.unwrap();
}
