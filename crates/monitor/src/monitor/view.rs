//! What the monitor publishes: the cluster as the API, `webinfra db status`
//! and `/metrics` report it, built from the last probes and what the
//! monitor remembers (each node's role, the primary's semi-sync state as
//! MariaDB reports it, the problems in words).

use super::Monitor;
use crate::probe::Probe;
use crate::state::{ClusterState, Failover};
use serde::Serialize;
use std::sync::Arc;

/// One node as the API reports it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// SQL address.
    pub address: String,
    /// `primary`, `replica`, `diverged`, `down` or `read-only`.
    pub role: String,
    /// Whether it answered the last probe.
    pub reachable: bool,
    /// The last probe, when it answered.
    pub probe: Option<Probe>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// The cluster as the API reports it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ClusterView {
    /// `ok`, `degraded` or `down`.
    pub status: String,
    /// Why it is not ok.
    pub detail: Option<String>,
    /// The current primary.
    pub primary: Option<String>,
    /// Whether the primary's commits wait for a replica: semi-sync on and a
    /// replica attached to acknowledge ([`Probe::semi_sync_waits`]).
    pub semi_sync: bool,
    /// The primary's semi-sync state in words, with MariaDB's counts.
    pub semi_sync_detail: String,
    /// `Rpl_semi_sync_master_clients` on the primary.
    pub semi_sync_clients: u64,
    /// `Rpl_semi_sync_master_yes_tx` / `_no_tx` on the primary: commits
    /// acknowledged with and without a replica's acknowledgement.
    pub semi_sync_yes_tx: u64,
    /// See `semi_sync_yes_tx`.
    pub semi_sync_no_tx: u64,
    /// Every node.
    pub nodes: Vec<NodeView>,
    /// Nodes kept out after diverging.
    pub diverged: Vec<String>,
    /// How many times the primary changed.
    pub changes: u64,
    /// The last change of primary.
    pub last_failover: Option<Failover>,
}

impl Monitor {
    pub(super) fn publish(
        &self,
        probes: &[Result<Probe, String>],
        st: &ClusterState,
        problem: Option<String>,
    ) {
        let primary = st.primary.clone();
        let mut nodes = Vec::new();
        let mut problems: Vec<String> = problem.into_iter().collect();
        let mut semi: Option<Probe> = None;
        for (node, r) in self.nodes.iter().zip(probes) {
            let name = node.spec.name.clone();
            let is_primary = primary.as_deref() == Some(name.as_str());
            let role = match r {
                Err(_) => "down",
                Ok(_) if st.diverged.contains(&name) => "diverged",
                Ok(p) if is_primary && !p.read_only => "primary",
                Ok(p)
                    if p.slave
                        .as_ref()
                        .is_some_and(|s| s.io_running == "Yes" && s.sql_running == "Yes") =>
                {
                    "replica"
                }
                Ok(_) => "read-only",
            };
            if is_primary {
                semi = r.as_ref().ok().cloned();
            }
            match role {
                "primary" | "replica" => {}
                other => problems.push(format!("{name} is {other}")),
            }
            nodes.push(NodeView {
                name,
                address: node.spec.sql.to_string(),
                role: role.into(),
                reachable: r.is_ok(),
                probe: r.as_ref().ok().cloned(),
                error: r.as_ref().err().cloned(),
            });
        }
        let has_primary = nodes.iter().any(|n| n.role == "primary");
        let status = match (has_primary, problems.is_empty()) {
            (true, true) => "ok",
            (true, false) => "degraded",
            (false, _) => "down",
        };
        self.view.store(Arc::new(ClusterView {
            status: status.into(),
            detail: (!problems.is_empty()).then(|| problems.join("; ")),
            primary,
            semi_sync: semi.as_ref().is_some_and(Probe::semi_sync_waits),
            semi_sync_detail: semi.as_ref().map_or_else(
                || "OFF (no primary answers)".to_string(),
                Probe::semi_sync_words,
            ),
            semi_sync_clients: semi.as_ref().map_or(0, |p| p.semi_sync_clients),
            semi_sync_yes_tx: semi.as_ref().map_or(0, |p| p.semi_sync_yes_tx),
            semi_sync_no_tx: semi.as_ref().map_or(0, |p| p.semi_sync_no_tx),
            nodes,
            diverged: st.diverged.clone(),
            changes: st.changes,
            last_failover: st.last_failover.clone(),
        }));
    }
}
