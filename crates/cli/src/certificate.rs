//! The load balancer's certificate when the topology names none, made the
//! way a careful operator would: a local certificate authority, kept in
//! the state directory (`<lb>/tls/ca.pem`, its key `ca-key.pem`, 0600),
//! issues the site's certificate (`certificate.pem`: the site's certificate
//! then the CA's; `key.pem`) for the site, `localhost` and the load
//! balancer's address, valid [`LEAF_DAYS`] days, with basicConstraints,
//! keyUsage, extendedKeyUsage (serverAuth) and subject and authority key
//! identifiers (the Mozilla intermediate profile's expectations). It is
//! issued again, by the same CA, when it has less than [`RENEW_DAYS`]
//! left, names other addresses, or is one of the older self-signed kind:
//! at each start and reload, and by the running load balancer itself
//! ([`due`]). Clients trust `ca.pem` (`curl --cacert`); browsers warn until
//! it is trusted or the real site's certificate is named in
//! `[load_balancer.tls]`.
//!
//! [`expiry`] reads any certificate's end of validity, for `webinfra check`.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};
use webinfra_topology::{LoadBalancer, Topology};

/// How long the site's certificate is valid (the CA/Browser Forum's
/// limit is 398 days).
pub const LEAF_DAYS: i64 = 365;
/// A certificate with less than this left is issued again.
pub const RENEW_DAYS: i64 = 30;
/// How long the local CA is valid.
const CA_DAYS: i64 = 10 * 365;

/// Fills in the default certificate's files when `lb` has TLS without
/// files of its own, issuing them when missing or due.
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
    let names = names(topology, tls);
    let files = Files::in_dir(&state_dir.join(&lb.host).join("tls"));
    files.ensure(&topology.site, &names)?;
    tls.certificate = Some(files.certificate);
    tls.key = Some(files.key);
    Ok(lb)
}

/// Whether the default certificate of `lb` (none named in the topology) is
/// due to be issued again: the running load balancer then reloads.
pub fn due(topology: &Topology, lb: &LoadBalancer, state_dir: &Path) -> bool {
    let Some(tls) = lb.tls.as_ref().filter(|t| t.certificate.is_none()) else {
        return false;
    };
    let files = Files::in_dir(&state_dir.join(&lb.host).join("tls"));
    files.leaf_due(&names(topology, tls), OffsetDateTime::now_utc())
}

/// The names the default certificate is for: the site, `localhost` and the
/// load balancer's HTTPS address.
fn names(topology: &Topology, tls: &webinfra_topology::Tls) -> Vec<String> {
    vec![
        topology.site.clone(),
        "localhost".to_string(),
        tls.listen.ip().to_string(),
    ]
}

/// The end of validity of the first certificate in the PEM file `path`.
pub fn expiry(path: &Path) -> anyhow::Result<OffsetDateTime> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    first_certificate(&pem)
        .map(|c| c.not_after)
        .with_context(|| format!("{}: no certificate to read", path.display()))
}

/// What a certificate says of itself, as far as renewal needs.
struct Seen {
    not_after: OffsetDateTime,
    names: Vec<String>,
    self_issued: bool,
}

fn first_certificate(pem: &[u8]) -> Option<Seen> {
    let block = x509_parser::pem::Pem::iter_from_buffer(pem).next()?.ok()?;
    let cert = block.parse_x509().ok()?;
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(b) => ip_text(b),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Seen {
        not_after: cert.validity().not_after.to_datetime(),
        names,
        self_issued: cert.issuer() == cert.subject(),
    })
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(ip.to_string())
}

/// The default certificate's files.
struct Files {
    ca: PathBuf,
    ca_key: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
}

impl Files {
    fn in_dir(dir: &Path) -> Files {
        Files {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            certificate: dir.join("certificate.pem"),
            key: dir.join("key.pem"),
        }
    }

    /// Whether the site's certificate must be issued (again) at `now`.
    fn leaf_due(&self, names: &[String], now: OffsetDateTime) -> bool {
        let Ok(pem) = std::fs::read(&self.certificate) else {
            return true;
        };
        match first_certificate(&pem) {
            None => true,
            Some(seen) => {
                seen.self_issued
                    || seen.not_after - now < Duration::days(RENEW_DAYS)
                    || names.iter().any(|n| !seen.names.contains(n))
                    || !self.key.exists()
            }
        }
    }

    /// Makes the CA if there is none, and the site's certificate if it is due.
    fn ensure(&self, site: &str, names: &[String]) -> anyhow::Result<()> {
        let dir = self.ca.parent().expect("a file in a dir");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let now = OffsetDateTime::now_utc();
        let (ca, ca_key) = self.authority(site, now)?;
        if !self.leaf_due(names, now) {
            return Ok(());
        }
        let key = KeyPair::generate().context("making the site's key")?;
        let mut leaf = CertificateParams::new(names.to_vec()).context("the site's names")?;
        leaf.distinguished_name = name(site);
        leaf.not_before = now - Duration::hours(1);
        leaf.not_after = now + Duration::days(LEAF_DAYS);
        leaf.serial_number = Some(serial());
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.use_authority_key_identifier_extension = true;
        let leaf = leaf
            .signed_by(&key, &ca, &ca_key)
            .context("issuing the site's certificate")?;
        write_private(&self.key, key.serialize_pem().as_bytes())?;
        let chain = format!("{}{}", leaf.pem(), std::fs::read_to_string(&self.ca)?);
        std::fs::write(&self.certificate, chain)
            .with_context(|| format!("writing {}", self.certificate.display()))?;
        tracing::info!(
            file = %self.certificate.display(),
            names = %names.join(", "),
            days = LEAF_DAYS,
            ca = %self.ca.display(),
            "issued the site's certificate from the local CA"
        );
        Ok(())
    }

    /// The local CA, made on first use; its certificate object rebuilt from
    /// the kept key (the same name and key: what it issues verifies against
    /// the `ca.pem` clients were given).
    fn authority(
        &self,
        site: &str,
        now: OffsetDateTime,
    ) -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
        let params = |now: OffsetDateTime| {
            let mut ca = CertificateParams::default();
            ca.distinguished_name = name(&format!("webinfra local CA for {site}"));
            ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            ca.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            ca.not_before = now - Duration::hours(1);
            ca.not_after = now + Duration::days(CA_DAYS);
            ca.serial_number = Some(serial());
            ca
        };
        if let (Ok(key), true) = (std::fs::read_to_string(&self.ca_key), self.ca.exists()) {
            let key = KeyPair::from_pem(&key)
                .with_context(|| format!("reading {}", self.ca_key.display()))?;
            let ca = params(now).self_signed(&key)?;
            return Ok((ca, key));
        }
        let key = KeyPair::generate().context("making the CA's key")?;
        let ca = params(now)
            .self_signed(&key)
            .context("making the local CA")?;
        write_private(&self.ca_key, key.serialize_pem().as_bytes())?;
        std::fs::write(&self.ca, ca.pem())
            .with_context(|| format!("writing {}", self.ca.display()))?;
        // Whatever the CA issued before is not from this one.
        let _ = std::fs::remove_file(&self.certificate);
        tracing::info!(file = %self.ca.display(), "made a local certificate authority");
        Ok((ca, key))
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "webinfra");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A random positive 16-byte serial number.
fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// Writes `bytes` to a file only its owner can read.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["www.foobar.com", "localhost", "127.0.0.1"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn the_default_certificate_comes_from_a_local_ca_and_is_renewed_before_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::in_dir(dir.path());
        files.ensure("www.foobar.com", &names()).unwrap();
        let pem = std::fs::read(&files.certificate).unwrap();
        let blocks: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(&pem)
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(blocks.len(), 2, "the site's certificate, then the CA's");
        let leaf = blocks[0].parse_x509().unwrap();
        let ca = blocks[1].parse_x509().unwrap();
        let days =
            (leaf.validity().not_after.to_datetime() - OffsetDateTime::now_utc()).whole_days();
        assert!((LEAF_DAYS - 1..=LEAF_DAYS).contains(&days), "{days}");
        assert_eq!(leaf.issuer(), ca.subject());
        assert!(leaf.subject().to_string().contains("www.foobar.com"));
        let bc = leaf.basic_constraints().unwrap().unwrap().value;
        assert!(!bc.ca);
        assert!(leaf.key_usage().unwrap().unwrap().value.digital_signature());
        assert!(
            leaf.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .server_auth
        );
        let ext = |c: &x509_parser::certificate::X509Certificate, oid| {
            c.get_extension_unique(&oid).unwrap().is_some()
        };
        use x509_parser::oid_registry::{
            OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER as AKI,
            OID_X509_EXT_SUBJECT_KEY_IDENTIFIER as SKI,
        };
        assert!(ext(&leaf, AKI) && ext(&leaf, SKI), "key identifiers");
        assert!(ca.basic_constraints().unwrap().unwrap().value.ca);
        assert!(ca.key_usage().unwrap().unwrap().value.key_cert_sign());
        // The leaf verifies against the CA kept in the state dir.
        assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());

        // Not due: kept as it is.
        assert!(!files.leaf_due(&names(), OffsetDateTime::now_utc()));
        files.ensure("www.foobar.com", &names()).unwrap();
        assert_eq!(std::fs::read(&files.certificate).unwrap(), pem);
        // Due RENEW_DAYS before its end; then issued again by the same CA.
        let later = OffsetDateTime::now_utc() + Duration::days(LEAF_DAYS - RENEW_DAYS + 1);
        assert!(files.leaf_due(&names(), later));
        std::fs::remove_file(&files.certificate).unwrap();
        files.ensure("www.foobar.com", &names()).unwrap();
        let again = std::fs::read(&files.certificate).unwrap();
        let block = x509_parser::pem::Pem::iter_from_buffer(&again)
            .next()
            .unwrap()
            .unwrap();
        let renewed = block.parse_x509().unwrap();
        assert!(
            renewed.verify_signature(Some(ca.public_key())).is_ok(),
            "the same CA"
        );
        // Another address: issued again.
        let mut other = names();
        other.push("10.77.0.2".into());
        assert!(files.leaf_due(&other, OffsetDateTime::now_utc()));
    }

    #[test]
    fn an_old_self_signed_certificate_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::in_dir(dir.path());
        let old = rcgen::generate_simple_self_signed(names()).unwrap();
        std::fs::write(&files.certificate, old.cert.pem()).unwrap();
        std::fs::write(&files.key, old.key_pair.serialize_pem()).unwrap();
        assert!(files.leaf_due(&names(), OffsetDateTime::now_utc()));
    }
}
