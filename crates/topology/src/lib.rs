//! The topology file: which hosts exist, which roles run on each, on which ports.
//!
//! Config is a pipeline (the sozu model): [`raw`] mirrors the TOML file and keeps
//! every value's byte span, [`validate`] checks the whole file and reports every
//! problem with its line, column and key, and the result is the typed
//! [`Topology`] that the rest of webinfra reads. Nothing downstream re-checks.

pub mod credentials;
mod diagnostic;
mod model;
mod raw;
pub mod replication;
mod validate;

pub use credentials::Credentials;
pub use diagnostic::{Diagnostic, TopologyError};
pub use model::{
    Algorithm, App, Backend, ClientLimits, Database, DbNode, DbRole, HealthCheck, Host,
    LoadBalancer, RateLimit, ServerLimits, ServerPool, Tls, Topology, Web,
};

use std::path::{Path, PathBuf};

/// The topology `webinfra` uses when none is given.
pub const DEFAULT_TOPOLOGY: &str = "topologies/foobar.toml";

impl Topology {
    /// Reads and validates the topology file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let path = path.as_ref();
        let src = std::fs::read_to_string(path).map_err(|e| {
            TopologyError::single(Diagnostic {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                key: String::new(),
                message: format!("cannot read the topology file: {e}"),
            })
        })?;
        let mut topology = Topology::parse_str(&src, &path.display().to_string())?;
        topology.source = Some(path.to_path_buf());
        let base = topology.base_dir();
        let relative = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(dir) = topology.web.as_mut().and_then(|w| w.static_dir.as_mut()) {
            relative(dir);
        }
        if let Some(lb) = topology.load_balancer.as_mut() {
            lb.error_pages.iter_mut().for_each(|(_, p)| relative(p));
        }
        if let Some(tls) = topology.load_balancer.as_mut().and_then(|l| l.tls.as_mut()) {
            tls.certificate
                .iter_mut()
                .chain(tls.key.iter_mut())
                .chain(tls.more.iter_mut().flat_map(|(c, k)| [c, k]))
                .for_each(relative);
        }
        Ok(topology)
    }

    /// Parses and validates topology text; `file` names it in error messages.
    pub fn parse_str(src: &str, file: &str) -> Result<Topology, TopologyError> {
        let raw: raw::RawTopology = toml::from_str(src)
            .map_err(|e| TopologyError::single(Diagnostic::from_toml(&e, src, file)))?;
        validate::validate(raw, src, file)
    }
}
