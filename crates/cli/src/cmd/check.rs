//! `webinfra check [FILE]`: validate a topology file.

use std::path::Path;

pub fn check(file: &Path) -> i32 {
    match super::load(file) {
        Ok(t) => {
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
