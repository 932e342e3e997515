//! TLS: the service serves gRPC over TLS (`ServeOptions::tls`), a
//! `hstreams://` client trusting the CA works end to end (lookups report
//! `host:port`, the client keeps TLS), and the failure modes are clear:
//! plaintext client against a TLS server, client without the CA, bad files.

use std::path::Path;
use std::time::Duration;

use hstream_io_runtime::stream::{
    Client, ClientOptions, Compression, Payload, ReaderOffset, Record, StreamError, StreamOptions,
};
use hstream_io_stream_service::{ServeError, ServeOptions, TlsFiles, start};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A test CA and a server certificate it signed for `localhost` and
/// 127.0.0.1, written as PEM files; returns the files and the CA certificate (PEM).
fn write_certs(dir: &Path, ca_name: &str) -> (TlsFiles, Vec<u8>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let files = TlsFiles {
        cert_pem_path: dir.join("server.pem"),
        key_pem_path: dir.join("server.key"),
    };
    std::fs::write(&files.cert_pem_path, cert.pem()).unwrap();
    std::fs::write(&files.key_pem_path, key.serialize_pem()).unwrap();
    (files, ca.pem().into_bytes())
}

fn opts(data: &Path, tls: TlsFiles) -> ServeOptions {
    let mut o = ServeOptions::new(data);
    o.listen = "127.0.0.1:0".parse().unwrap();
    o.tls = Some(tls);
    o
}

fn quick(ca: Option<Vec<u8>>) -> ClientOptions {
    ClientOptions {
        retry_attempts: 1,
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        tls_ca_pem: ca,
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn tls_client_creates_appends_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (files, ca) = write_certs(dir.path(), "hstream-io test CA");
    let svc = start(opts(&dir.path().join("data"), files)).await.unwrap();
    assert!(svc.url().starts_with("hstreams://"), "{}", svc.url());
    let url = format!("hstreams://localhost:{}", svc.addr.port());
    let c = Client::connect_with(&url, quick(Some(ca))).await.unwrap();
    // DescribeCluster keeps reporting host:port (no scheme).
    let nodes = c.nodes().await.unwrap();
    assert_eq!(nodes[0].address, format!("127.0.0.1:{}", svc.addr.port()));
    c.create_stream("tls", StreamOptions::default())
        .await
        .unwrap();
    let shard = c.list_shards("tls").await.unwrap()[0].shard_id;
    let ids = c
        .append(
            "tls",
            shard,
            vec![Record::raw("k", b"over tls".to_vec())],
            Compression::None,
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    // The reader is looked up (LookupShardReader → 127.0.0.1:PORT) and dialled over TLS too.
    let mut r = c
        .shard_reader("tls", shard, ReaderOffset::Earliest)
        .await
        .unwrap();
    let got = r.read(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].record.payload, Payload::Raw(b"over tls".to_vec()));
    r.close().await.unwrap();
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn plaintext_client_against_tls_server_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = write_certs(dir.path(), "hstream-io test CA");
    let svc = start(opts(&dir.path().join("data"), files)).await.unwrap();
    let url = format!("hstream://localhost:{}", svc.addr.port());
    let e = Client::connect_with(&url, quick(None)).await.unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(matches!(e, StreamError::Connect { .. }), "{msg}");
    assert!(
        msg.contains(&format!("localhost:{}", svc.addr.port())) && msg.contains("hstreams://"),
        "{msg}"
    );
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn tls_client_without_the_ca_fails_with_a_certificate_error() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = write_certs(dir.path(), "hstream-io test CA");
    let svc = start(opts(&dir.path().join("data"), files)).await.unwrap();
    // A different CA: the server's certificate is not signed by it. (Not the
    // system store: a machine without CA certificates fails earlier, with a
    // TlsConfig error naming the fix.)
    let other = tempfile::tempdir().unwrap();
    let (_, other_ca) = write_certs(other.path(), "another CA");
    let url = format!("hstreams://localhost:{}", svc.addr.port());
    let e = Client::connect_with(&url, quick(Some(other_ca)))
        .await
        .unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(matches!(e, StreamError::Tls { .. }), "{msg}");
    assert!(
        msg.contains("certificate") && msg.contains("HSTREAM_TLS_CA"),
        "{msg}"
    );
    // System roots (the default): the private CA is unknown there either way.
    match Client::connect_with(&url, quick(None)).await {
        Err(StreamError::Tls { reason, .. }) => assert!(reason.contains("certificate"), "{reason}"),
        Err(StreamError::TlsConfig { reason, .. }) => {
            assert!(reason.contains("HSTREAM_TLS_CA"), "{reason}")
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn tls_client_against_plaintext_server_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ca) = write_certs(dir.path(), "hstream-io test CA");
    let mut o = ServeOptions::new(dir.path().join("data"));
    o.listen = "127.0.0.1:0".parse().unwrap();
    let svc = start(o).await.unwrap();
    let url = format!("hstreams://localhost:{}", svc.addr.port());
    let e = Client::connect_with(&url, quick(Some(ca)))
        .await
        .unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(
        matches!(e, StreamError::Tls { .. } | StreamError::Connect { .. }),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("localhost:{}", svc.addr.port())),
        "{msg}"
    );
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn unreadable_or_mismatching_tls_files_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = write_certs(dir.path(), "hstream-io test CA");
    let missing = TlsFiles {
        cert_pem_path: dir.path().join("nope.pem"),
        key_pem_path: files.key_pem_path.clone(),
    };
    let e = start(opts(&dir.path().join("d1"), missing))
        .await
        .unwrap_err();
    assert!(matches!(e, ServeError::Tls(_)), "{e}");
    assert!(e.to_string().contains("nope.pem"), "{e}");
    // The key of another certificate.
    let other = tempfile::tempdir().unwrap();
    let (other_files, _) = write_certs(other.path(), "another CA");
    let mismatched = TlsFiles {
        cert_pem_path: files.cert_pem_path.clone(),
        key_pem_path: other_files.key_pem_path,
    };
    match start(opts(&dir.path().join("d2"), mismatched)).await {
        Err(e) => assert!(matches!(e, ServeError::Tls(_)), "{e}"),
        // rustls may only notice a mismatching key during a handshake.
        Ok(svc) => svc.stop().await.unwrap(),
    }
}
