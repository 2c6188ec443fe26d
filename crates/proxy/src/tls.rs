//! TLS termination: a certificate chain and its key from PEM files, offered
//! with ALPN `h2` and `http/1.1` (TLS 1.2 and 1.3, rustls' safe defaults).
//! The configuration sits behind an [`ArcSwap`] so a reload can replace a
//! renewed certificate without touching open connections.

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The TLS configuration new connections get; a reload swaps it.
pub type TlsConfig = Arc<ArcSwap<rustls::ServerConfig>>;

/// Reads `certificate` (PEM: the server's certificate first, then any
/// intermediates) and `key` (PEM: PKCS#8, PKCS#1 or SEC1) and checks that
/// they belong together. Errors name the file and what is wrong with it.
pub fn server_config(certificate: &Path, key_file: &Path) -> Result<rustls::ServerConfig, String> {
    let at = |p: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| at(certificate, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| at(certificate, &e))?;
    if chain.is_empty() {
        return Err(at(certificate, &"no PEM certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| at(key_file, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{} with {}: {e}", certificate.display(), key_file.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// [`server_config`], ready to be shared and swapped.
pub fn shared(config: rustls::ServerConfig) -> TlsConfig {
    Arc::new(ArcSwap::from_pointee(config))
}
