//! Stream layer: the real client (`hstream_io_runtime::stream`) against the
//! embedded service (`hstream_io_stream_service`) in-process.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hstream_io_runtime::stream::{
    Client, ClientOptions, Compression, Payload, ProducerOptions, ReaderOffset, Record, RecordId,
    StatusCode, StreamError, StreamOptions, SubscriptionInfo, SubscriptionOffset, shard_for_key,
    split_key_space,
};
use hstream_io_stream_service::{RunningService, ServeOptions, start};

async fn service(dir: &std::path::Path) -> RunningService {
    let mut o = ServeOptions::new(dir);
    o.listen = "127.0.0.1:0".parse().unwrap();
    start(o).await.expect("start stream service")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn json(i: i64) -> Record {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), serde_json::json!(i));
    m.insert("name".into(), serde_json::json!(format!("n{i}")));
    m.insert("score".into(), serde_json::json!(i as f64 + 0.5));
    Record::json(format!("k{i}"), m).with_attribute("src", "test")
}

fn raw(i: i64) -> Record {
    Record::raw("", format!("raw-{i}").into_bytes())
}

async fn read_all(
    client: &Client,
    stream: &str,
    shard: u64,
    offset: ReaderOffset,
) -> Vec<hstream_io_runtime::stream::ReceivedRecord> {
    let mut r = client
        .shard_reader_with_timeout(stream, shard, offset, Duration::from_millis(200))
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let got = r.read(100).await.unwrap();
        if got.is_empty() {
            break;
        }
        out.extend(got);
    }
    r.close().await.unwrap();
    out
}

#[tokio::test]
async fn every_rpc_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path()).await;
    // the first seed is down: the client moves on to the next one
    let c = Client::connect(&format!("hstream://127.0.0.1:1,{}", svc.addr))
        .await
        .unwrap();

    assert_eq!(c.echo("ping").await.unwrap(), "ping");
    let nodes = c.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].address, svc.addr.to_string());

    let opts = StreamOptions {
        shard_count: 4,
        ..StreamOptions::default()
    };
    c.create_stream("orders", opts.clone()).await.unwrap();
    let dup = c.create_stream("orders", opts.clone()).await.unwrap_err();
    assert_eq!(dup.hserver_code(), Some(201), "{dup}");
    assert_eq!(dup.status(), Some(StatusCode::AlreadyExists));
    c.ensure_stream("orders", opts.clone()).await.unwrap();
    c.ensure_stream("other", StreamOptions::default())
        .await
        .unwrap();
    let mut names = c.list_streams().await.unwrap();
    names.sort();
    assert_eq!(names, vec!["orders", "other"]);
    let info = c.get_stream("orders").await.unwrap();
    assert_eq!((info.shard_count, info.backlog_duration_secs), (4, 86400));

    let shards = c.list_shards("orders").await.unwrap();
    assert_eq!(shards.len(), 4);
    for (s, (start, end)) in shards.iter().zip(split_key_space(4)) {
        assert_eq!((s.start_hash_key, s.end_hash_key), (start, end));
        assert_eq!(s.stream_name, "orders");
    }
    // the empty key lands in shard index 3 of 4
    assert_eq!(
        shard_for_key(&shards, "").unwrap().shard_id,
        shards[3].shard_id
    );

    let shard = shards[0].shard_id;
    let mut expected = Vec::new();
    let mut ids = Vec::new();
    for (n, comp) in [Compression::None, Compression::Gzip, Compression::Zstd]
        .into_iter()
        .enumerate()
    {
        let n = n as i64 * 10;
        let batch = vec![json(n), raw(n + 1), json(n + 2)];
        let got = c
            .append("orders", shard, batch.clone(), comp)
            .await
            .unwrap();
        assert_eq!(got.len(), 3);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, id)| id.batch_index == i as u32 && id.shard_id == shard)
        );
        expected.extend(batch);
        ids.extend(got);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    let tail = c.get_tail_record_id("orders", shard).await.unwrap();
    assert_eq!(tail, *ids.last().unwrap());
    let empty_tail = c
        .get_tail_record_id("orders", shards[1].shard_id)
        .await
        .unwrap();
    assert_eq!(empty_tail.batch_id, 0);

    let mut reader = c
        .shard_reader_with_timeout(
            "orders",
            shard,
            ReaderOffset::Earliest,
            Duration::from_millis(200),
        )
        .await
        .unwrap();
    assert!(
        c.list_shard_readers()
            .await
            .unwrap()
            .contains(&reader.reader_id().to_string())
    );
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let batch = reader.read(1).await.unwrap();
        assert!(
            !batch.is_empty(),
            "read returned nothing before all records arrived"
        );
        assert_eq!(batch.len(), 3, "maxRecords bounds batches, not records");
        got.extend(batch);
    }
    assert!(
        reader.read(10).await.unwrap().is_empty(),
        "empty read after timeout"
    );
    let rid = reader.reader_id().to_string();
    reader.close().await.unwrap();
    assert!(!c.list_shard_readers().await.unwrap().contains(&rid));
    assert_eq!(got.iter().map(|r| r.record_id).collect::<Vec<_>>(), ids);
    let got_records: Vec<Record> = got.into_iter().map(|r| r.record).collect();
    assert_eq!(got_records, expected);
    match &got_records[0].payload {
        Payload::Json(m) => assert_eq!(m["score"], serde_json::json!(0.5)),
        other => panic!("expected JSON, got {other:?}"),
    }
    assert_eq!(
        got_records[0].attributes.get("src").map(String::as_str),
        Some("test")
    );

    c.delete_stream("other", false, false).await.unwrap();
    let gone = c.delete_stream("other", false, false).await.unwrap_err();
    assert_eq!(gone.hserver_code(), Some(200), "{gone}");
    assert_eq!(gone.status(), Some(StatusCode::NotFound));
    c.delete_stream("other", true, false).await.unwrap();
    assert_eq!(c.list_streams().await.unwrap(), vec!["orders"]);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn errors_carry_hserver_codes() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path()).await;
    let c = Client::connect(&svc.url()).await.unwrap();
    let e = c
        .create_stream("1bad name", StreamOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.hserver_code(), Some(204), "{e}");
    assert_eq!(e.status(), Some(StatusCode::InvalidArgument));
    let e = c.list_shards("missing").await.unwrap_err();
    assert_eq!(e.hserver_code(), Some(200));
    assert!(e.to_string().contains("missing"), "{e}");
    let e = c
        .append("missing", 1, vec![raw(1)], Compression::None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(StatusCode::NotFound), "{e}");
    c.create_stream("s", StreamOptions::default())
        .await
        .unwrap();
    let e = c
        .append("s", 12345, vec![raw(1)], Compression::None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(StatusCode::NotFound), "{e}");
    let shard = c.list_shards("s").await.unwrap()[0].shard_id;
    let e = c
        .append("s", shard, vec![], Compression::None)
        .await
        .unwrap_err();
    assert!(matches!(e, StreamError::InvalidArgument(_)), "{e}");
    let e = c
        .shard_reader(
            "s",
            shard,
            ReaderOffset::RecordId(RecordId {
                shard_id: shard + 1,
                batch_id: 1,
                batch_index: 0,
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(e.hserver_code(), Some(901), "{e}");
    // TLS is supported (stream-service/tests/tls.rs): nothing listens on port 1.
    let e = Client::connect("hstreams://127.0.0.1:1").await.unwrap_err();
    assert!(
        matches!(
            e,
            StreamError::Connect { .. } | StreamError::TlsConfig { .. }
        ),
        "{e}"
    );
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn reader_positions() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path()).await;
    let c = Client::connect(&svc.url()).await.unwrap();
    c.create_stream("pos", StreamOptions::default())
        .await
        .unwrap();
    let shard = c.list_shards("pos").await.unwrap()[0].shard_id;

    let b1 = c
        .append("pos", shard, vec![raw(1), raw(2)], Compression::None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let ts = now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b2 = c
        .append(
            "pos",
            shard,
            vec![raw(3), raw(4), raw(5)],
            Compression::None,
        )
        .await
        .unwrap();

    let mut latest = c
        .shard_reader_with_timeout(
            "pos",
            shard,
            ReaderOffset::Latest,
            Duration::from_millis(100),
        )
        .await
        .unwrap();
    assert!(
        latest.read(10).await.unwrap().is_empty(),
        "LATEST skips existing records"
    );
    let b3 = c
        .append("pos", shard, vec![raw(6)], Compression::Zstd)
        .await
        .unwrap();
    let got = latest.read(10).await.unwrap();
    assert_eq!(got.iter().map(|r| r.record_id).collect::<Vec<_>>(), b3);
    latest.close().await.unwrap();

    let all: Vec<RecordId> = b1.iter().chain(&b2).chain(&b3).copied().collect();
    let earliest = read_all(&c, "pos", shard, ReaderOffset::Earliest).await;
    assert_eq!(
        earliest.iter().map(|r| r.record_id).collect::<Vec<_>>(),
        all
    );

    // a record id re-reads its whole batch
    let from_id = read_all(&c, "pos", shard, ReaderOffset::RecordId(b2[2])).await;
    let want: Vec<RecordId> = b2.iter().chain(&b3).copied().collect();
    assert_eq!(
        from_id.iter().map(|r| r.record_id).collect::<Vec<_>>(),
        want
    );

    let from_ts = read_all(&c, "pos", shard, ReaderOffset::Timestamp(ts)).await;
    assert_eq!(
        from_ts.iter().map(|r| r.record_id).collect::<Vec<_>>(),
        want
    );
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn buffered_producer_routes_and_orders() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path()).await;
    let c = Client::connect(&svc.url()).await.unwrap();
    c.create_stream(
        "prod",
        StreamOptions {
            shard_count: 3,
            ..StreamOptions::default()
        },
    )
    .await
    .unwrap();
    let shards = c.list_shards("prod").await.unwrap();
    let opts = ProducerOptions {
        batch_records: 7,
        batch_bytes: 64,
        flow_control_bytes: 200,
        compression: Compression::Gzip,
        ..ProducerOptions::default()
    };
    let p = c.producer("prod", opts).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..500i64 {
        let rec = Record::raw(format!("key-{}", i % 13), format!("{i:08}").into_bytes());
        handles.push((i, p.append(rec).await.unwrap()));
    }
    p.flush().await.unwrap();
    let mut per_shard: HashMap<u64, Vec<(i64, RecordId)>> = HashMap::new();
    for (i, h) in handles {
        let id = h.await.unwrap();
        let want = shard_for_key(&shards, &format!("key-{}", i % 13))
            .unwrap()
            .shard_id;
        assert_eq!(id.shard_id, want, "record {i} routed by key");
        per_shard.entry(id.shard_id).or_default().push((i, id));
    }
    for (shard, recs) in &per_shard {
        assert!(
            recs.windows(2).all(|w| w[0].1 < w[1].1),
            "append order kept in shard {shard}"
        );
        let back = read_all(&c, "prod", *shard, ReaderOffset::Earliest).await;
        let bodies: Vec<i64> = back
            .iter()
            .map(|r| match &r.record.payload {
                Payload::Raw(b) => String::from_utf8_lossy(b).parse().unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(bodies, recs.iter().map(|x| x.0).collect::<Vec<_>>());
    }
    // age-based flush: a single record is delivered without flush()
    let h = p.append(Record::raw("late", b"x".to_vec())).await.unwrap();
    assert!(h.await.is_ok());
    p.close().await.unwrap();
    svc.stop().await.unwrap();
}

/// `append_batch`: one acknowledgement per batch, records routed by key, in
/// order per shard with single `append`s between them, batches larger than a
/// stream batch or the whole flow-control window split and still all stored.
#[tokio::test]
async fn buffered_producer_appends_batches_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path()).await;
    let c = Client::connect(&svc.url()).await.unwrap();
    for (name, shard_count) in [("one", 1), ("three", 3)] {
        c.create_stream(
            name,
            StreamOptions {
                shard_count,
                ..StreamOptions::default()
            },
        )
        .await
        .unwrap();
        let opts = ProducerOptions {
            batch_records: 7,
            batch_bytes: 64,
            flow_control_bytes: 100,
            ..ProducerOptions::default()
        };
        let p = c.producer(name, opts).await.unwrap();
        let mut handles = Vec::new();
        let mut singles = Vec::new();
        let mut i = 0i64;
        // Batches of 0..=60 records of 8 bytes: up to 480 bytes, over the 100-byte window.
        for size in [0usize, 1, 5, 60, 13, 2, 41] {
            let batch: Vec<Record> = (0..size)
                .map(|_| {
                    i += 1;
                    Record::raw(format!("key-{}", i % 11), format!("{i:08}").into_bytes())
                })
                .collect();
            handles.push(p.append_batch(batch).await.unwrap());
            i += 1;
            singles.push(
                p.append(Record::raw(
                    format!("key-{}", i % 11),
                    format!("{i:08}").into_bytes(),
                ))
                .await
                .unwrap(),
            );
        }
        // No flush(): each batch resolves by size or age on its own.
        for h in handles {
            h.wait().await.unwrap();
        }
        for h in singles {
            h.await.unwrap();
        }
        let shards = c.list_shards(name).await.unwrap();
        let mut seen = Vec::new();
        for shard in &shards {
            let back = read_all(&c, name, shard.shard_id, ReaderOffset::Earliest).await;
            let bodies: Vec<i64> = back
                .iter()
                .map(|r| {
                    assert_eq!(
                        shard_for_key(&shards, &r.record.key).unwrap().shard_id,
                        shard.shard_id,
                        "routed by key"
                    );
                    match &r.record.payload {
                        Payload::Raw(b) => String::from_utf8_lossy(b).parse().unwrap(),
                        other => panic!("{other:?}"),
                    }
                })
                .collect();
            assert!(
                bodies.windows(2).all(|w| w[0] < w[1]),
                "order kept in shard {}: {bodies:?}",
                shard.shard_id
            );
            seen.extend(bodies);
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            (1..=i).collect::<Vec<_>>(),
            "every record stored once ({name})"
        );
        p.close().await.unwrap();
    }
    // A failed batch reports the error through its handle.
    let p = c.producer("one", ProducerOptions::default()).await.unwrap();
    c.delete_stream("one", false, true).await.unwrap();
    let h = p.append_batch(vec![raw(1), raw(2)]).await.unwrap();
    let e = h.wait().await.unwrap_err();
    assert!(e.to_string().contains("one"), "error names the stream: {e}");
    let _ = p.close().await;
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn trim_and_restart_keep_acknowledged_records() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path()).await;
    let c = Client::connect(&svc.url()).await.unwrap();
    c.create_stream(
        "dur",
        StreamOptions {
            shard_count: 2,
            ..StreamOptions::default()
        },
    )
    .await
    .unwrap();
    let shard = c.list_shards("dur").await.unwrap()[0].shard_id;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.extend(
            c.append("dur", shard, vec![json(i), raw(i)], Compression::Zstd)
                .await
                .unwrap(),
        );
    }
    c.trim_shards("dur", &[ids[10]]).await.unwrap();
    let after_trim = read_all(&c, "dur", shard, ReaderOffset::Earliest).await;
    assert_eq!(
        after_trim.first().unwrap().record_id,
        ids[10],
        "records before the trim point are gone"
    );
    svc.stop().await.unwrap();

    let svc = service(dir.path()).await;
    let c = Client::connect(&svc.url()).await.unwrap();
    assert_eq!(c.list_streams().await.unwrap(), vec!["dur"]);
    let back = read_all(&c, "dur", shard, ReaderOffset::Earliest).await;
    assert_eq!(
        back.iter().map(|r| r.record_id).collect::<Vec<_>>(),
        ids[10..].to_vec()
    );
    let next = c
        .append("dur", shard, vec![raw(99)], Compression::None)
        .await
        .unwrap();
    assert!(
        next[0] > *ids.last().unwrap(),
        "batch ids keep increasing after a restart"
    );
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn retries_reach_a_restarted_server() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path()).await;
    let addr = svc.addr;
    let opts = ClientOptions {
        retry_attempts: 30,
        retry_backoff: Duration::from_millis(50),
        retry_backoff_max: Duration::from_millis(100),
        ..ClientOptions::default()
    };
    let c = Client::connect_with(&svc.url(), opts).await.unwrap();
    c.create_stream("r", StreamOptions::default())
        .await
        .unwrap();
    let shard = c.list_shards("r").await.unwrap()[0].shard_id;
    svc.stop().await.unwrap();
    let path = dir.path().to_path_buf();
    let restart = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut o = ServeOptions::new(&path);
        o.listen = addr;
        start(o).await.unwrap()
    });
    let ids = c
        .append("r", shard, vec![raw(1)], Compression::None)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    let svc = restart.await.unwrap();
    svc.stop().await.unwrap();

    let few = ClientOptions {
        retry_attempts: 2,
        retry_backoff: Duration::from_millis(10),
        ..ClientOptions::default()
    };
    let dir2 = tempfile::tempdir().unwrap();
    let svc2 = service(dir2.path()).await;
    let c2 = Client::connect_with(&svc2.url(), few).await.unwrap();
    svc2.stop().await.unwrap();
    let e = c2.list_streams().await.unwrap_err();
    assert!(
        matches!(e, StreamError::RetriesExhausted { attempts: 2, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn subscriptions_deliver_and_redeliver() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path()).await;
    let c = Client::connect(&svc.url()).await.unwrap();
    c.create_stream("subs", StreamOptions::default())
        .await
        .unwrap();
    let shard = c.list_shards("subs").await.unwrap()[0].shard_id;
    let e = c.consumer("nope", "c").await.unwrap_err();
    assert_eq!(e.hserver_code(), Some(300), "{e}");
    let ids = c
        .append("subs", shard, vec![raw(1), raw(2)], Compression::None)
        .await
        .unwrap();
    let info = SubscriptionInfo {
        id: "sub1".into(),
        stream: "subs".into(),
        ack_timeout_secs: 1,
        max_unacked_records: 100,
        offset: SubscriptionOffset::Earliest,
    };
    c.create_subscription(&info).await.unwrap();
    assert_eq!(
        c.create_subscription(&info)
            .await
            .unwrap_err()
            .hserver_code(),
        Some(301)
    );
    assert_eq!(c.list_subscriptions().await.unwrap(), vec![info.clone()]);
    let e = c.delete_stream("subs", false, false).await.unwrap_err();
    assert_eq!(e.hserver_code(), Some(202), "{e}");

    let mut consumer = c.consumer("sub1", "c1").await.unwrap();
    let first = consumer.next().await.unwrap().unwrap();
    assert_eq!(first.iter().map(|r| r.record_id).collect::<Vec<_>>(), ids);
    // not acknowledged: delivered again after the ack timeout
    let again = consumer.next().await.unwrap().unwrap();
    assert_eq!(again.iter().map(|r| r.record_id).collect::<Vec<_>>(), ids);
    consumer.ack(ids.clone()).unwrap();
    let more = c
        .append("subs", shard, vec![raw(3)], Compression::Gzip)
        .await
        .unwrap();
    let next = consumer.next().await.unwrap().unwrap();
    assert_eq!(next.iter().map(|r| r.record_id).collect::<Vec<_>>(), more);
    consumer.close().await.unwrap();
    c.delete_subscription("sub1", false).await.unwrap();
    assert!(c.list_subscriptions().await.unwrap().is_empty());
    assert_eq!(
        c.delete_subscription("sub1", false)
            .await
            .unwrap_err()
            .hserver_code(),
        Some(300)
    );
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn subscription_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path()).await;
    let c = Client::connect(&svc.url()).await.unwrap();
    c.create_stream("resume", StreamOptions::default())
        .await
        .unwrap();
    let shard = c.list_shards("resume").await.unwrap()[0].shard_id;
    let first = c
        .append("resume", shard, vec![raw(1)], Compression::None)
        .await
        .unwrap();
    let info = SubscriptionInfo {
        id: "resume_sub".into(),
        stream: "resume".into(),
        ack_timeout_secs: 600,
        max_unacked_records: 100,
        offset: SubscriptionOffset::Earliest,
    };
    c.create_subscription(&info).await.unwrap();
    let mut consumer = c.consumer("resume_sub", "c1").await.unwrap();
    let got = consumer.next().await.unwrap().unwrap();
    assert_eq!(got[0].record_id, first[0]);
    consumer.ack(first.clone()).unwrap();
    let second = c
        .append("resume", shard, vec![raw(2)], Compression::None)
        .await
        .unwrap();
    let got = consumer.next().await.unwrap().unwrap(); // also sends the pending ack
    assert_eq!(got[0].record_id, second[0]);
    consumer.close().await.unwrap();
    // let the server process the ack stream before a graceful stop (not a timing assertion)
    tokio::time::sleep(Duration::from_millis(300)).await;
    svc.stop().await.unwrap();

    let svc = service(dir.path()).await;
    let c = Client::connect(&svc.url()).await.unwrap();
    let mut consumer = c.consumer("resume_sub", "c2").await.unwrap();
    let got = consumer.next().await.unwrap().unwrap();
    assert_eq!(
        got.iter().map(|r| r.record_id).collect::<Vec<_>>(),
        second,
        "acknowledged batch not redelivered, unacknowledged one is"
    );
    consumer.close().await.unwrap();
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn producer_reports_failed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path()).await;
    let c = Client::connect(&svc.url()).await.unwrap();
    c.create_stream("gone", StreamOptions::default())
        .await
        .unwrap();
    let bad = ProducerOptions {
        batch_records: 0,
        batch_bytes: 0,
        batch_age: Duration::ZERO,
        ..ProducerOptions::default()
    };
    assert!(matches!(
        c.producer("gone", bad).await.unwrap_err(),
        StreamError::InvalidArgument(_)
    ));
    assert_eq!(
        c.producer("missing", ProducerOptions::default())
            .await
            .unwrap_err()
            .hserver_code(),
        Some(200)
    );
    let p = c
        .producer("gone", ProducerOptions::default())
        .await
        .unwrap();
    let ok = p.append(raw(1)).await.unwrap();
    p.flush().await.unwrap();
    assert!(ok.await.is_ok());
    c.delete_stream("gone", false, false).await.unwrap();
    let h = p.append(raw(2)).await.unwrap();
    let e = p.flush().await.unwrap_err();
    assert_eq!(e.status(), Some(StatusCode::NotFound), "{e}");
    let he = h.await.unwrap_err();
    assert!(
        he.to_string().contains("gone"),
        "error names the stream: {he}"
    );
    p.close().await.unwrap();
    svc.stop().await.unwrap();
}
