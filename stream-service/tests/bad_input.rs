//! Bad input gets a clear gRPC status (with HServer's error code in the
//! details), never a panic; corrupt stored payloads surface as client errors.

use hstream_io_runtime::stream::wire::h_stream_api_client::HStreamApiClient;
use hstream_io_runtime::stream::{Client, ReaderOffset, StreamError, StreamOptions, wire};
use hstream_io_stream_service::{ServeOptions, start};
use tonic::Code;

fn hs_code(s: &tonic::Status) -> i64 {
    let v: serde_json::Value = serde_json::from_slice(s.details()).expect("details are JSON");
    v["error"].as_i64().expect("error code")
}

#[tokio::test]
async fn bad_requests_get_clear_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = ServeOptions::new(dir.path());
    o.listen = "127.0.0.1:0".parse().unwrap();
    let svc = start(o).await.unwrap();
    let client = Client::connect(&svc.url()).await.unwrap();
    client
        .create_stream("s", StreamOptions::default())
        .await
        .unwrap();
    let shard = client.list_shards("s").await.unwrap()[0].shard_id;
    let mut api = HStreamApiClient::connect(format!("http://{}", svc.addr))
        .await
        .unwrap();

    let append = |records: Option<wire::BatchedRecord>| wire::AppendRequest {
        stream_name: "s".into(),
        shard_id: shard,
        records,
    };
    let batch = |ct: i32, n: u32, payload: Vec<u8>| wire::BatchedRecord {
        compression_type: ct,
        publish_time: None,
        batch_size: n,
        payload: payload.into(),
    };
    for req in [
        append(None),
        append(Some(batch(0, 0, vec![1]))),
        append(Some(batch(0, 1, vec![]))),
    ] {
        let s = api.append(req).await.unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(hs_code(&s), 206, "{}", s.message());
    }
    let s = api
        .append(append(Some(batch(7, 1, vec![1]))))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("compressionType"), "{}", s.message());

    let s = api
        .create_stream(wire::Stream {
            stream_name: "x".into(),
            replication_factor: 1,
            backlog_duration: 0,
            shard_count: 0,
            creation_time: None,
        })
        .await
        .unwrap_err();
    assert_eq!(hs_code(&s), 205);

    let s = api
        .create_shard_reader(wire::CreateShardReaderRequest {
            stream_name: "s".into(),
            shard_id: shard,
            shard_offset: None,
            reader_id: "9bad".into(),
            timeout: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(hs_code(&s), 204);
    let s = api
        .read_shard(wire::ReadShardRequest {
            reader_id: "nope".into(),
            max_records: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);

    // Connector RPCs are declared but not served yet.
    let s = api
        .list_connectors(wire::ListConnectorsRequest {})
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented);

    // Corrupt payloads are stored as sent (the server does not decompress) and
    // the reading client reports a decode error instead of panicking.
    api.append(append(Some(batch(1, 1, b"not gzip".to_vec()))))
        .await
        .unwrap();
    api.append(append(Some(batch(2, 1, b"not zstd".to_vec()))))
        .await
        .unwrap();
    api.append(append(Some(batch(0, 3, vec![0xff; 10]))))
        .await
        .unwrap();
    let mut r = client
        .shard_reader("s", shard, ReaderOffset::Earliest)
        .await
        .unwrap();
    let e = r.read(1).await.unwrap_err();
    assert!(matches!(e, StreamError::Decode { .. }), "{e}");
    assert!(e.to_string().contains("gzip"), "{e}");
    let e = r.read(1).await.unwrap_err();
    assert!(matches!(e, StreamError::Decode { .. }), "{e}");
    let e = r.read(1).await.unwrap_err();
    assert!(matches!(e, StreamError::Decode { .. }), "{e}");
    r.close().await.unwrap();
    svc.stop().await.unwrap();
}
