//! `webinfra check [FILE]`: validate a topology file, and read the TLS
//! certificates and keys and the error pages it names as the load balancer
//! would (like `haproxy -c` and `nginx -t`).

use std::path::Path;

/// A configured certificate that ends within this many days is warned about.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// Warns, on stderr, about each certificate the file names that expires
/// within [`EXPIRY_WARNING_DAYS`] days, or has expired (the file still checks:
/// the load balancer serves it, clients will refuse it).
fn expiring(file: &Path, tls: &webinfra_topology::Tls) {
    let now = time::OffsetDateTime::now_utc();
    for path in tls
        .certificate
        .iter()
        .chain(tls.more.iter().map(|(c, _)| c))
    {
        let Ok(end) = crate::certificate::expiry(path) else {
            continue;
        };
        let left = end - now;
        if left.is_negative() {
            eprintln!(
                "{}: warning: key `load_balancer.tls`: the certificate {} expired on {} ({} days ago)",
                file.display(),
                path.display(),
                end.date(),
                -left.whole_days()
            );
        } else if left.whole_days() < EXPIRY_WARNING_DAYS {
            eprintln!(
                "{}: warning: key `load_balancer.tls`: the certificate {} expires on {} (in {} days)",
                file.display(),
                path.display(),
                end.date(),
                left.whole_days()
            );
        }
    }
}

pub fn check(file: &Path) -> i32 {
    match super::load(file) {
        Ok(t) => {
            let tls = t.load_balancer.as_ref().and_then(|l| l.tls.as_ref());
            if let Some(Err(e)) = tls.map(webinfra_lb::tls::check) {
                eprintln!("{}: key `load_balancer.tls`: {e}", file.display());
                return 2;
            }
            let lb = t.load_balancer.as_ref();
            if let Some(Err(e)) = lb.map(webinfra_lb::error_pages::ErrorPages::load) {
                eprintln!("{}: {e}", file.display());
                return 2;
            }
            if let Some(tls) = tls {
                expiring(file, tls);
            }
            let comps = webinfra_supervisor::components::components(&t);
            say!(
                "{}: ok ({} hosts, {} components)",
                file.display(),
                t.hosts.len(),
                comps.len()
            );
            0
        }
        Err(code) => code,
    }
}
