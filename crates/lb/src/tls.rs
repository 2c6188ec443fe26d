//! HTTPS on the load balancer: the certificate in use, read at start and
//! again at every reload (a renewed certificate is picked up by `webinfra
//! reload` or SIGHUP; connections already open keep theirs).

use std::path::PathBuf;
use std::sync::Mutex;
use webinfra_proxy::tls::{self, TlsConfig};

/// The certificate and key files and what they held when last read.
pub struct Tls {
    config: TlsConfig,
    loaded: Mutex<Loaded>,
}

#[derive(PartialEq, Eq)]
struct Loaded {
    certificate: PathBuf,
    key: PathBuf,
    /// Both files' contents, to tell whether a reload changed anything.
    contents: Vec<u8>,
}

fn files(t: &webinfra_topology::Tls) -> Result<(PathBuf, PathBuf), String> {
    match (&t.certificate, &t.key) {
        (Some(c), Some(k)) => Ok((c.clone(), k.clone())),
        _ => Err("load_balancer.tls: no certificate and key files".into()),
    }
}

fn read(t: &webinfra_topology::Tls) -> Result<(rustls::ServerConfig, Loaded), String> {
    let (certificate, key) = files(t)?;
    let config = tls::server_config(&certificate, &key)?;
    let mut contents = std::fs::read(&certificate).map_err(|e| e.to_string())?;
    contents.extend(std::fs::read(&key).map_err(|e| e.to_string())?);
    Ok((
        config,
        Loaded {
            certificate,
            key,
            contents,
        },
    ))
}

impl Tls {
    /// Reads the certificate and key `t` names; errors name the file.
    pub fn load(t: &webinfra_topology::Tls) -> Result<Tls, String> {
        let (config, loaded) = read(t)?;
        Ok(Tls {
            config: tls::shared(config),
            loaded: Mutex::new(loaded),
        })
    }

    /// The configuration new connections use.
    pub fn config(&self) -> TlsConfig {
        self.config.clone()
    }

    /// Reads the files again: Some(change) when the certificate changed,
    /// Err (and the running one stays) when they cannot be used.
    pub fn reload(&self, t: &webinfra_topology::Tls) -> Result<Option<String>, String> {
        let (config, fresh) = read(t)?;
        let mut loaded = self.loaded.lock().expect("tls lock");
        if *loaded == fresh {
            return Ok(None);
        }
        let change = format!("new TLS certificate from {}", fresh.certificate.display());
        self.config.store(std::sync::Arc::new(config));
        *loaded = fresh;
        Ok(Some(change))
    }
}
