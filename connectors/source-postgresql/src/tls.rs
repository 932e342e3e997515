//! TLS of both connections per `tlsMode` and `tlsCa`: the SQL sessions
//! (catalog, snapshot) through `tokio-postgres-rustls`, the replication
//! session through `pgwire-replication`'s own rustls support. Both verify
//! the same way: `verify-full` checks the chain against `tlsCa` (else the
//! web PKI roots) and that the certificate names `host` (a DNS name, or an
//! IP address in its IP SANs); `prefer` and `require` encrypt without
//! verifying; `prefer` falls back to plain text only when the server answers
//! that it has no TLS, never after a failed handshake.
//!
//! Every rustls config here is built with the ring provider named
//! explicitly: `pgwire-replication` brings aws-lc into the dependency graph,
//! and with two providers compiled in, rustls cannot pick one by itself.

use std::io::Write;
use std::sync::Arc;

use hstream_io_runtime::{Error, ErrorKind, Result, TlsMode};
use pgwire_replication::{SslMode as ReplSslMode, TlsConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::PgSourceConfig;

/// The ring provider, which every TLS config of this connector uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of the `tlsCa` PEM text; a config error when it holds none.
pub(crate) fn ca_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::new(ErrorKind::Config, "tlsCa is not valid PEM")
                .with_source(std::io::Error::other(e.to_string()))
                .with_hint("Paste the CA certificate(s) as PEM text, `-----BEGIN CERTIFICATE-----` included.")
        })?;
    if certificates.is_empty() {
        return Err(
            Error::new(ErrorKind::Config, "tlsCa holds no PEM certificate").with_hint(
                "Paste the CA certificate(s) as PEM text, `-----BEGIN CERTIFICATE-----` included.",
            ),
        );
    }
    Ok(certificates)
}

/// The trusted roots of `verify-full`: `tlsCa`, else the web PKI roots.
fn roots(config: &PgSourceConfig) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match &config.tls_ca {
        Some(pem) => {
            let (added, _) = roots.add_parsable_certificates(ca_certificates(pem)?);
            if added == 0 {
                return Err(
                    Error::new(ErrorKind::Config, "tlsCa holds no usable CA certificate")
                        .with_hint(
                            "Give the certificate of the CA that signed the server's certificate.",
                        ),
                );
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// Accepts any server certificate (`prefer`, `require`: encryption without
/// authentication, as libpq's `sslmode=require`) but still checks that the
/// handshake is signed by the key of the certificate the server sent.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls client config of `config.tls_mode` (ring provider).
fn client_config(config: &PgSourceConfig) -> Result<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot set up TLS (ring provider)").with_source(e)
        })?;
    Ok(match config.tls_mode {
        TlsMode::VerifyFull => builder
            .with_root_certificates(roots(config)?)
            .with_no_client_auth(),
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    })
}

/// The TLS of the SQL sessions: tokio-postgres' `sslmode` and the connector.
/// `verify-full` is `require` plus a verifying connector (tokio-postgres has
/// no mode of its own for it).
pub(crate) fn sql(config: &PgSourceConfig) -> Result<(SslMode, MakeRustlsConnect)> {
    let mode = match config.tls_mode {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyFull => SslMode::Require,
    };
    Ok((mode, MakeRustlsConnect::new(client_config(config)?)))
}

/// The TLS of the replication session, and the file holding `tlsCa` for it
/// (the replication client reads its CA from a file, when it connects: keep
/// this value until the session is established).
pub(crate) struct ReplicationTls {
    /// For `ReplicationConfig::with_tls`.
    pub(crate) config: TlsConfig,
    /// `tlsCa`, mode 0600 in the temp folder; deleted on drop.
    _ca_file: Option<tempfile::NamedTempFile>,
}

/// The replication session's TLS per `tlsMode`, with the same host name rule
/// as the SQL sessions: the certificate must name `host` as written (the
/// client's own refusal of IP addresses under verify-full is lifted by
/// naming `host` as the server name to verify, so an IP host is checked
/// against the certificate's IP SANs).
pub(crate) fn replication(config: &PgSourceConfig) -> Result<ReplicationTls> {
    // The replication client builds its rustls config with the process's provider.
    hstream_io_runtime::install_crypto_provider();
    let tls = match config.tls_mode {
        TlsMode::Disable => TlsConfig::disabled(),
        TlsMode::Prefer => TlsConfig {
            mode: ReplSslMode::Prefer,
            ..TlsConfig::default()
        },
        TlsMode::Require => TlsConfig {
            mode: ReplSslMode::Require,
            ..TlsConfig::default()
        },
        TlsMode::VerifyFull => {
            let ca_file = match &config.tls_ca {
                Some(pem) => {
                    ca_certificates(pem)?;
                    Some(write_ca_file(pem)?)
                }
                None => None,
            };
            let tls = TlsConfig {
                mode: ReplSslMode::VerifyFull,
                ca_pem_path: ca_file.as_ref().map(|f| f.path().to_path_buf()),
                sni_hostname: Some(config.host.clone()),
                ..TlsConfig::default()
            };
            return Ok(ReplicationTls {
                config: tls,
                _ca_file: ca_file,
            });
        }
    };
    Ok(ReplicationTls {
        config: tls,
        _ca_file: None,
    })
}

/// `pem` in a new private (0600) temporary file.
fn write_ca_file(pem: &str) -> Result<tempfile::NamedTempFile> {
    let failed = |e: std::io::Error| {
        Error::new(
            ErrorKind::Internal,
            "cannot write tlsCa to a temporary file for the replication session",
        )
        .with_source(e)
        .with_hint("Check that the temp folder (TMPDIR) exists and is writable.")
    };
    let mut file = tempfile::Builder::new()
        .prefix("hstream-io-pg-ca-")
        .suffix(".pem")
        .tempfile()
        .map_err(failed)?;
    file.write_all(pem.as_bytes()).map_err(failed)?;
    file.flush().map_err(failed)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: serde_json::Value) -> PgSourceConfig {
        let mut v = serde_json::json!({"stream":"s","host":"127.0.0.1","user":"u","password":"p",
                                       "database":"d","table":"t"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    const CA: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBSTCB8KADAgECAhQ=\n-----END CERTIFICATE-----\n";

    #[test]
    fn modes_map_to_both_clients() {
        let (mode, _) = sql(&config(serde_json::json!({"tlsMode": "disable"}))).unwrap();
        assert_eq!(mode, SslMode::Disable);
        let (mode, _) = sql(&config(serde_json::json!({}))).unwrap();
        assert_eq!(mode, SslMode::Prefer, "prefer is the default");
        let (mode, _) = sql(&config(serde_json::json!({"tlsMode": "verify-full"}))).unwrap();
        assert_eq!(mode, SslMode::Require);
        let r = replication(&config(serde_json::json!({"tlsMode": "require"}))).unwrap();
        assert_eq!(r.config.mode, ReplSslMode::Require);
        let r = replication(&config(serde_json::json!({"tlsMode": "verify-full"}))).unwrap();
        assert_eq!(r.config.mode, ReplSslMode::VerifyFull);
        assert_eq!(r.config.ca_pem_path, None, "web roots");
        assert_eq!(r.config.sni_hostname.as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn the_ca_goes_to_a_private_file_that_is_removed() {
        use std::os::unix::fs::PermissionsExt;
        let r = replication(&config(
            serde_json::json!({"tlsMode": "verify-full", "tlsCa": CA}),
        ))
        .unwrap();
        let path = r.config.ca_pem_path.clone().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), CA);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by its owner only: {mode:o}");
        drop(r);
        assert!(!path.exists());
    }

    #[test]
    fn a_ca_without_certificates_is_a_config_error() {
        let e = ca_certificates("not a certificate").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let e = replication(&config(
            serde_json::json!({"tlsMode": "verify-full", "tlsCa": "x"}),
        ))
        .err()
        .unwrap();
        assert_eq!(e.kind(), ErrorKind::Config);
    }
}
