//! HTTPS on the load balancer: the certificates in use (the default one and
//! any more, picked by the name a client asks for), read at start and
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
    /// The files, the default certificate's first.
    files: Vec<(PathBuf, PathBuf)>,
    /// Their contents, to tell whether a reload changed anything.
    contents: Vec<u8>,
}

fn files(t: &webinfra_topology::Tls) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    match (&t.certificate, &t.key) {
        (Some(c), Some(k)) => Ok([(c.clone(), k.clone())]
            .into_iter()
            .chain(t.more.iter().cloned())
            .collect()),
        _ => Err("load_balancer.tls: no certificate and key files".into()),
    }
}

fn read(t: &webinfra_topology::Tls) -> Result<(rustls::ServerConfig, Loaded), String> {
    let files = files(t)?;
    let paths: Vec<_> = files
        .iter()
        .map(|(c, k)| (c.as_path(), k.as_path()))
        .collect();
    let config = tls::server_config(&paths)?;
    let mut contents = Vec::new();
    for path in files.iter().flat_map(|(c, k)| [c, k]) {
        contents.extend(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    Ok((config, Loaded { files, contents }))
}

/// Reads every certificate and key `t` names (not the self-signed one
/// made at start when it names none) as the load balancer would, for
/// `webinfra check`: the first problem, naming its file.
pub fn check(t: &webinfra_topology::Tls) -> Result<(), String> {
    let named = t.certificate.clone().zip(t.key.clone());
    for (certificate, key) in named.iter().chain(&t.more) {
        tls::server_config(&[(certificate, key)])?;
    }
    Ok(())
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
        let names: Vec<_> = fresh
            .files
            .iter()
            .map(|(c, _)| c.display().to_string())
            .collect();
        let s = if names.len() == 1 { "" } else { "s" };
        let change = format!("new TLS certificate{s} from {}", names.join(", "));
        self.config.store(std::sync::Arc::new(config));
        *loaded = fresh;
        Ok(Some(change))
    }
}
