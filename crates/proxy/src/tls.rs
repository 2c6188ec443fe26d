//! TLS termination: certificate chains and their keys from PEM files, one
//! picked per connection by the name the client asks for (SNI), offered
//! with ALPN `h2` and `http/1.1` (TLS 1.2 and 1.3, rustls' safe defaults).
//! The configuration sits behind an [`ArcSwap`] so a reload can replace a
//! renewed certificate without touching open connections.

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

/// The TLS configuration new connections get; a reload swaps it.
pub type TlsConfig = Arc<ArcSwap<rustls::ServerConfig>>;

/// A configuration serving `certificates`, each a chain (PEM: the server's
/// certificate first, then any intermediates) and its key (PEM: PKCS#8,
/// PKCS#1 or SEC1), checked to belong together. A client that names a
/// server (SNI) gets the first certificate valid for that name (its
/// subject alternative names, wildcards as browsers read them); any other
/// client gets the first certificate. Errors name the file and what is
/// wrong with it.
pub fn server_config(certificates: &[(&Path, &Path)]) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let keys = certificates
        .iter()
        .map(|(certificate, key)| certified(certificate, key, &provider).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err("no certificate".into());
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ByName(keys)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// One certificate chain and its key, read and matched.
fn certified(
    certificate: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let at = |p: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| at(certificate, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| at(certificate, &e))?;
    if chain.is_empty() {
        return Err(at(certificate, &"no PEM certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| at(key_file, &e))?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| format!("{} with {}: {e}", certificate.display(), key_file.display()))
}

/// The certificates, chosen by the name a client asks for.
#[derive(Debug)]
struct ByName(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // One certificate (the usual case): nothing to choose, nothing to parse.
        if let [only] = self.0.as_slice() {
            return Some(only.clone());
        }
        let named = hello.server_name().and_then(|name| {
            let name = ServerName::try_from(name).ok()?;
            self.0.iter().find(|key| valid_for(key, &name))
        });
        named.or(self.0.first()).cloned()
    }
}

/// Whether `key`'s certificate is valid for `name` (as a client checks it).
fn valid_for(key: &CertifiedKey, name: &ServerName<'_>) -> bool {
    key.end_entity_cert()
        .ok()
        .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
        .is_some_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
}

/// [`server_config`], ready to be shared and swapped.
pub fn shared(config: rustls::ServerConfig) -> TlsConfig {
    Arc::new(ArcSwap::from_pointee(config))
}
