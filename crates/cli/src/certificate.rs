//! The load balancer's certificate when the topology names none: a
//! self-signed one for the site (and `localhost` and the load balancer's
//! address), made once and kept in the state directory so it survives
//! restarts. Browsers warn about it; for the real site, name a certificate
//! and key in `[load_balancer.tls]`.

use anyhow::Context;
use std::path::{Path, PathBuf};
use webinfra_topology::{LoadBalancer, Topology};

/// Fills in the self-signed certificate's files when `lb` has TLS without
/// files of its own, making them on first use.
pub fn fill_in(
    topology: &Topology,
    mut lb: LoadBalancer,
    state_dir: &Path,
) -> anyhow::Result<LoadBalancer> {
    let Some(tls) = lb.tls.as_mut() else {
        return Ok(lb);
    };
    if tls.certificate.is_some() {
        return Ok(lb);
    }
    let dir = state_dir.join(&lb.host).join("tls");
    let names = vec![
        topology.site.clone(),
        "localhost".to_string(),
        tls.listen.ip().to_string(),
    ];
    let (certificate, key) = self_signed(&dir, names)?;
    tls.certificate = Some(certificate);
    tls.key = Some(key);
    Ok(lb)
}

/// `dir/certificate.pem` and `dir/key.pem`, made for `names` if missing.
fn self_signed(dir: &Path, names: Vec<String>) -> anyhow::Result<(PathBuf, PathBuf)> {
    let certificate = dir.join("certificate.pem");
    let key = dir.join("key.pem");
    if certificate.exists() && key.exists() {
        return Ok((certificate, key));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let made = rcgen::generate_simple_self_signed(names.clone())
        .context("making a self-signed certificate")?;
    write_private(&key, made.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(&certificate, made.cert.pem())
        .with_context(|| format!("writing {}", certificate.display()))?;
    tracing::info!(file = %certificate.display(), names = %names.join(", "), "made a self-signed certificate");
    Ok((certificate, key))
}

/// Writes `bytes` to a new file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}
