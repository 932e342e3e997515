//! A test CA and a server certificate for the private servers, so connectors'
//! TLS modes (require, verify-full with a CA) are tested against real servers.
//!
//! Both servers are started with TLS enabled but not required: `disable` and
//! `prefer` keep working, `require` encrypts, `verify-full` succeeds only with
//! [`ca_pem`] as the trusted CA (the certificate names `localhost` and
//! `127.0.0.1`), and fails against the built-in web roots.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// The PEM files a server is started with.
pub(crate) struct ServerTls {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// Writes `ca.pem`, `server.pem` and `server.key` (mode 0600, owned by
/// `owner` when given: PostgreSQL refuses a key that others can read) into
/// `dir/tls`.
pub(crate) fn write_server_tls(dir: &Path, owner: Option<(u32, u32)>) -> Result<ServerTls, String> {
    let tls = dir.join("tls");
    fs::create_dir_all(&tls).map_err(|e| format!("create {}: {e}", tls.display()))?;
    let err = |e: rcgen::Error| format!("test certificate: {e}");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hstream-io test CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(err)?).map_err(err)?;
    let key = KeyPair::generate().map_err(err)?;
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(err)?
        .signed_by(&key, &ca)
        .map_err(err)?;
    let files = ServerTls {
        ca: tls.join("ca.pem"),
        cert: tls.join("server.pem"),
        key: tls.join("server.key"),
    };
    let write = |path: &Path, text: String| {
        fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
    };
    write(&files.ca, ca.pem())?;
    write(&files.cert, cert.pem())?;
    write(&files.key, key.serialize_pem())?;
    fs::set_permissions(&files.key, fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", files.key.display()))?;
    if let Some((uid, gid)) = owner {
        for path in [&tls, &files.ca, &files.cert, &files.key] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", path.display()))?;
        }
    }
    Ok(files)
}

/// The CA certificate (PEM) that signed the certificate of the server whose
/// directory is `server_dir`.
pub(crate) fn ca_pem(server_dir: &Path) -> String {
    let path = server_dir.join("tls").join("ca.pem");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
