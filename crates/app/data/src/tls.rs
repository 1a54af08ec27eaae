//! TLS for the listeners: a certificate chain and key from PEM files (`[server.tls]`,
//! `[admin.tls]`), served with rustls and its ring provider.
//!
//! Files are read once, at start-up; every error names the config key of the file it
//! is about, so that a wrong path or a key that does not fit the certificate stops
//! start-up (exit 64) with something the operator can act on.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, TlsConfig};

/// The ALPN protocols a listener offers: `h2` first when it speaks HTTP/2, so that
/// clients that can will use it.
pub fn alpn(http2: bool) -> Vec<Vec<u8>> {
    if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    }
}

/// An acceptor for `tls`, whose table is at `key` (e.g. `server.tls`).
pub fn acceptor(
    tls: &TlsConfig,
    key: &str,
    alpn: Vec<Vec<u8>>,
) -> Result<TlsAcceptor, ConfigError> {
    let config = server_config(tls, key, &alpn)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Reads the certificate chain and key and checks that they belong together.
pub fn server_config(
    tls: &TlsConfig,
    key: &str,
    alpn: &[Vec<u8>],
) -> Result<ServerConfig, ConfigError> {
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        key: format!("{key}.{field}"),
        message,
    };
    let cert_path = &tls.cert_file;
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| invalid("cert_file", pem_error(cert_path, &e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("cert_file", pem_error(cert_path, &e)))?;
    if certs.is_empty() {
        return Err(invalid(
            "cert_file",
            format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                cert_path.display()
            ),
        ));
    }
    let key_path = &tls.key_file;
    let private_key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| invalid("key_file", pem_error(key_path, &e)))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("cert_file", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|e| {
            invalid(
                "key_file",
                format!(
                    "{} cannot serve the certificate of {}: {e}",
                    key_path.display(),
                    cert_path.display()
                ),
            )
        })?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

fn pem_error(path: &std::path::Path, error: &rustls_pki_types::pem::Error) -> String {
    match error {
        rustls_pki_types::pem::Error::Io(io) => format!("cannot read {}: {io}", path.display()),
        rustls_pki_types::pem::Error::NoItemsFound => format!(
            "{} holds no PEM private key (-----BEGIN PRIVATE KEY-----)",
            path.display()
        ),
        other => format!("{} is not usable PEM: {other}", path.display()),
    }
}
