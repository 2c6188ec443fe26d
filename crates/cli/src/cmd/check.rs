//! `webinfra check [FILE]`: validate a topology file, and read the TLS
//! certificates and keys and the error pages it names as the load balancer
//! would (like `haproxy -c` and `nginx -t`).

use std::path::Path;

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
